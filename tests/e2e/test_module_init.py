"""`trainform init` and modules: installs whose module call was removed are pruned (folder
and modules.json entry), as `terraform init` does; the provider check reads every module's
blocks, so a module's compute type whose extra is missing is named at init."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from helpers import CLI, failed, ok


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def repository(tmp_path: Path) -> Path:
    repo = tmp_path / "box.git"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "main.train.hcl").write_text('output "hello" {\n  value = "hi"\n}\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v1")
    git(repo, "tag", "v1")
    return repo


def calls(cli: CLI, repo: Path, *names: str) -> None:
    text = "".join(f'module "{n}" {{\n  source = "git::file://{repo}?ref=v1"\n}}\n' for n in names)
    cli.write("main.train.hcl", text or 'compute "box" {\n  type = "local"\n}\n')


def installed(cli: CLI) -> tuple[list[str], list[str]]:
    base = cli.cwd / ".trainform" / "modules"
    folders = sorted(p.name for p in base.iterdir() if p.is_dir())
    manifest = json.loads((base / "modules.json").read_text())
    return folders, sorted(m["key"] for m in manifest["modules"])


def test_init_prunes_installs_of_removed_module_calls(cli: CLI, tmp_path: Path) -> None:
    repo = repository(tmp_path)
    calls(cli, repo, "a", "b")
    ok(cli("init"))
    assert installed(cli) == (["a", "b"], ["a", "b"])

    calls(cli, repo, "a")
    res = ok(cli("init"))
    assert "module.b: removed" in res.out, res.out
    assert installed(cli) == (["a"], ["a"])
    ok(cli("plan"))

    calls(cli, repo)
    ok(cli("init"))
    assert installed(cli) == ([], [])


def test_init_with_a_broken_root_keeps_what_is_installed(cli: CLI, tmp_path: Path) -> None:
    repo = repository(tmp_path)
    calls(cli, repo, "a")
    ok(cli("init"))
    cli.write("main.train.hcl", 'module "a" {\n  source = \n')  # a syntax error
    cli("init")
    assert installed(cli) == (["a"], ["a"])


SSH_MODULE = """\
compute "far" {
  type             = "ssh"
  address          = "127.0.0.1"
  username         = "nobody"
  private_key_file = "id_ed25519"
}
"""


def test_init_names_a_modules_compute_type_whose_extra_is_missing(cli: CLI, tmp_path: Path) -> None:
    site = tmp_path / "site-without"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\nsys.modules['paramiko'] = None\n")
    bare = CLI(cli.cwd, {**cli.env, "PYTHONPATH": str(site)})
    cli.write("main.train.hcl", 'module "remote" {\n  source = "./modules/remote"\n}\n')
    cli.write("modules/remote/main.train.hcl", SSH_MODULE)
    res = failed(bare("init"), "compute type \"ssh\" needs paramiko: pip install 'trainform[ssh]'")
    assert 'compute "far" at modules/remote/main.train.hcl:1:1' in res.all, res.all
    ok(cli("init"))  # where paramiko is installed
