"""A saved plan applies from another checkout of the same configuration at another path, as
in review-gated CI where the planning and the applying job run on different runners (GitLab
shell runners' `builds/TOKEN/CONCURRENT_ID/...`, per-job folders) or a reviewer applies the
artifact locally: inputs inside the repository are recorded relative to the configuration
folder and checked against the applying checkout's files. State is shared in PostgreSQL, as
in CI.

Each checkout is a git repository holding `envs/prod` (the configuration), `modules/box` (a
local module beside it), `vars/prod.tfvars` and `shared/note.txt` (read by file()); the
configuration also calls a module from a git repository that `trainform init` installs into
each checkout's `.trainform/modules`.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from backends import Backend
from helpers import CLI, base_env, failed, ok

ROOT = """
variable "lr" {
  type = number
}

variable "store" {
  type = string
}

locals {
  msg  = trimspace(file("data/msg.txt"))
  note = trimspace(file("../../shared/note.txt"))
}

workspace "team" {
  artifact_store = var.store
}

compute "main" {
  type = "local"
  tags = { msg = local.msg, note = local.note, lr = var.lr }
}

module "box" {
  source = "../../modules/box"
  name   = "prod"
  lr     = var.lr
  ws     = workspace.team
}

module "lib" {
  source = "git::file://%s?ref=v1"
}

output "banner" {
  value = module.box.banner
}

output "greeting" {
  value = module.lib.greeting
}
"""

BOX = """
variable "name" {
  type = string
}

variable "lr" {
  type = number
}

variable "ws" {
  type = any
}

compute "box" {
  type = "local"
  tags = { banner = templatefile("${path.module}/banner.tpl", { name = var.name }) }
}

run "train" {
  experiment = "relocate"
  workspace  = var.ws
  compute    = compute.box
  source_dir = "src"
  script     = "train.py"
  arguments  = ["--lr", var.lr]
}

output "banner" {
  value = templatefile("${path.module}/banner.tpl", { name = var.name })
}
"""

LIB = 'output "greeting" {\n  value = "hello from lib"\n}\n'

ADDRESSES = {
    "workspace.team",
    "compute.main",
    "module.box.compute.box",
    "module.box.run.train",
}


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def lib_repo(tmp_path: Path) -> Path:
    """A git repository holding a module, tagged v1 (the same absolute URL for every checkout,
    as a team's module repository would be)."""
    repo = tmp_path / "lib.git"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "main.train.hcl").write_text(LIB)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v1")
    git(repo, "tag", "v1")
    return repo


def checkout(where: Path, backend_block: str, lib: Path) -> Path:
    """Write the infrastructure repository at ``where`` (a git work tree); return its
    configuration folder, envs/prod."""
    files = {
        "envs/prod/main.train.hcl": backend_block + ROOT % lib,
        "envs/prod/data/msg.txt": "from the configuration folder\n",
        "modules/box/main.train.hcl": BOX,
        "modules/box/banner.tpl": "[${name}]",
        "modules/box/src/train.py": "import sys\nprint('training with', sys.argv[1:])\n",
        "vars/prod.tfvars": "lr = 0.5\n",
        "shared/note.txt": "from the repository\n",
    }
    for name, text in files.items():
        path = where / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(where, "init", "-q", "-b", "main")
    return where / "envs" / "prod"


def two_checkouts(tmp_path: Path, conn_str: str, lib: Path) -> tuple[CLI, CLI]:
    """Two runners' checkouts of one repository at different paths (and depths), sharing
    the state in PostgreSQL and the artifact store, each initialised."""
    env = base_env()
    env["TRAINFORM_VAR_store"] = str(tmp_path / "shared-volume" / "artifacts")
    clis = []
    for where in (
        tmp_path / "runner-a" / "builds" / "Zx8kQ2" / "0" / "team" / "infra",
        tmp_path / "runner-b" / "work" / "job-17" / "infra",
    ):
        cli = CLI(Path("."), env)
        block = Backend("pg", cli, conn_str).block  # also puts the conn string in cli.env
        cli.cwd = checkout(where, block, lib)
        ok(cli("init"))
        clis.append(cli)
    return clis[0], clis[1]


def plan_into(a: CLI, b: CLI, name: str = "plan.bin") -> dict:
    """Plan in ``a``'s checkout and hand the plan file to ``b`` (as a CI artifact would be);
    return the plan file's content."""
    ok(a("plan", "-var-file=../../vars/prod.tfvars", f"-out={name}"))
    data = (a.cwd / name).read_bytes()
    (b.cwd / name).write_bytes(data)
    return dict(json.loads(data))


def test_a_plan_made_in_one_checkout_applies_from_another(
    tmp_path: Path, pg_conn_str: str, lib_repo: Path
) -> None:
    a, b = two_checkouts(tmp_path, pg_conn_str, lib_repo)
    saved = plan_into(a, b)

    # The planning checkout's folder is only in config_dir (information): every input inside
    # the repository is relative to the configuration folder, the init-installed module too.
    assert saved["config_dir"] == str(a.cwd.resolve())
    assert str(tmp_path / "runner-a") not in json.dumps({**saved, "config_dir": None})
    assert set(saved["inputs"]) == {
        "main.train.hcl",
        "data/msg.txt",
        "../../shared/note.txt",
        "../../vars/prod.tfvars",
        "../../modules/box/main.train.hcl",
        "../../modules/box/banner.tpl",
        ".trainform/modules/lib/main.train.hcl",
    }

    applied = ok(b("apply", "plan.bin"))
    assert "Apply complete! Resources: 4 added" in applied.out, applied.out
    assert "training with ['--lr', '0.5']" in applied.out

    # The shared state is right, seen from either checkout: everything planned exists, and
    # the planning checkout has nothing left to do.
    for cli in (a, b):
        assert set(ok(cli("state", "list")).out.split()) == ADDRESSES
    assert json.loads(ok(a("output", "-json", "banner")).out) == "[prod]"
    assert json.loads(ok(a("output", "-json", "greeting")).out) == "hello from lib"
    replan = ok(a("plan", "-var-file=../../vars/prod.tfvars", "-detailed-exitcode"))
    assert "No changes" in replan.out, replan.out
    ok(b("plan", "-var-file=../../vars/prod.tfvars", "-detailed-exitcode"))


@pytest.mark.parametrize(
    ("change", "shown"),
    [
        (
            lambda root: (root / "modules/box/banner.tpl").write_text("<${name}>"),
            "../../modules/box/banner.tpl changed",
        ),
        (
            lambda root: (root / "modules/box/main.train.hcl").write_text(
                BOX.replace('"relocate"', '"moved"')
            ),
            "../../modules/box/main.train.hcl changed",
        ),
        (
            lambda root: (root / "vars/prod.tfvars").write_text("lr = 0.7\n"),
            "../../vars/prod.tfvars changed",
        ),
        (
            lambda root: (root / "shared/note.txt").write_text("edited\n"),
            "../../shared/note.txt changed",
        ),
        (lambda root: (root / "envs/prod/data/msg.txt").unlink(), "data/msg.txt was removed"),
        (
            lambda root: (root / "envs/prod/.trainform/modules/lib/main.train.hcl").write_text(
                LIB.replace("hello", "bye")
            ),
            ".trainform/modules/lib/main.train.hcl changed",
        ),
        (
            lambda root: (root / "envs/prod/extra.train.hcl").write_text(
                'output "x" {\n  value = 1\n}\n'
            ),
            "extra.train.hcl was added",
        ),
    ],
    ids=["template", "module", "var-file", "file", "removed", "installed-module", "added"],
)
def test_a_change_in_the_applying_checkout_makes_the_plan_stale(
    tmp_path: Path, pg_conn_str: str, lib_repo: Path, change: Callable[[Path], object], shown: str
) -> None:
    a, b = two_checkouts(tmp_path, pg_conn_str, lib_repo)
    plan_into(a, b)
    change(b.cwd.parent.parent)
    refused = failed(b("apply", "plan.bin"), f"the saved plan is stale: {shown} since the plan")
    assert str(tmp_path / "runner-a") not in refused.all  # named in the applying checkout
    failed(b("state", "list"), "nothing has been applied there")  # refused before acting


def old_format(saved: dict, config_dir: Path) -> dict:
    """``saved`` as trainform wrote it before plan files were relocatable (format 1): every
    input keyed by its absolute path."""
    inputs = {
        str((config_dir / name).resolve()): digest for name, digest in saved["inputs"].items()
    }
    return {**saved, "format_version": 1, "inputs": inputs}


def test_an_old_format_plan_applies_only_in_its_folder(
    tmp_path: Path, pg_conn_str: str, lib_repo: Path
) -> None:
    a, b = two_checkouts(tmp_path, pg_conn_str, lib_repo)
    saved = plan_into(a, b)
    old = json.dumps(old_format(saved, a.cwd))
    (a.cwd / "old.bin").write_text(old)
    (b.cwd / "old.bin").write_text(old)
    planned_in = saved["config_dir"]
    failed(
        b("apply", "old.bin"),
        f"old.bin was made for the configuration in {planned_in}; run from there or with "
        f"-C {planned_in}",
    )
    failed(b("state", "list"), "nothing has been applied there")
    # in its own folder it still applies, and still notices a changed input
    (a.cwd / "data" / "msg.txt").write_text("edited\n")
    failed(a("apply", "old.bin"), "the saved plan is stale: data/msg.txt changed")
    (a.cwd / "data" / "msg.txt").write_text("from the configuration folder\n")
    applied = ok(a("apply", "old.bin"))
    assert "Apply complete! Resources: 4 added" in applied.out, applied.out


def test_without_git_only_the_configuration_folder_is_relative(cli: CLI) -> None:
    """Outside a git work tree the configuration folder is the repository: a module beside
    it is recorded by its absolute path (another checkout's copy of it is not checked)."""
    from trainform.planner.planfile import repository_root

    assert repository_root(cli.cwd) == cli.cwd.resolve(), "the test folder is inside a git tree"
    cli.write("main.train.hcl", 'module "box" {\n  source = "../modules/box"\n}\n')
    module = cli.write("../modules/box/main.train.hcl", 'compute "box" {\n  type = "local"\n}\n')
    ok(cli("plan", "-out=plan.bin"))
    inputs = json.loads((cli.cwd / "plan.bin").read_text())["inputs"]
    assert set(inputs) == {"main.train.hcl", str(module.resolve())}
