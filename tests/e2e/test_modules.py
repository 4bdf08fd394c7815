"""Modules through the CLI: the README's examples/teams commands verbatim, init with local and
git sources (real repositories with tags, refs switched and upgraded), module addresses in
-target, -replace, state and runs commands, and one diagnostic per bad module call."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import CLI, base_env, failed, ok

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()

TEAM = """
variable "name" {
  type = string
}

variable "lr" {
  type    = number
  default = 0.1
}

compute "box" {
  type = "local"
}

run "train" {
  experiment = "team-${var.name}"
  compute    = compute.box
  source_dir = "src"
  script     = "train.py"
  arguments  = ["--lr", var.lr]
}

output "box" {
  value = compute.box.address
}
"""

TRAIN = "import sys\nprint('module source', sys.argv[1:])\n"


def team_module(cli: CLI) -> None:
    cli.write("modules/team/main.train.hcl", TEAM)
    cli.write("modules/team/src/train.py", TRAIN)
    # a root src/ that a module's run must not snapshot
    cli.write("src/train.py", "print('root source')\n")


def two_teams(lr_b: str = "0.2") -> str:
    return f"""
module "team" {{
  source   = "./modules/team"
  for_each = {{ a = 0.1, b = {lr_b} }}
  name     = each.key
  lr       = each.value
}}

output "boxes" {{
  value = {{ for k, t in module.team : k => t.box }}
}}
"""


def test_the_readmes_teams_commands_run_verbatim(tmp_path: Path) -> None:
    script = README.split("### Modules", 1)[1]
    block = re.search(r"^```sh\n(.*?)^```$", script, re.S | re.M)
    assert block, "no sh block in the README's Modules section"
    lines = [ln for ln in block.group(1).splitlines() if ln.strip()]
    assert any("apply" in ln for ln in lines)
    shutil.copytree(
        ROOT / "examples" / "teams",
        tmp_path / "examples" / "teams",
        ignore=shutil.ignore_patterns(".trainform"),
    )
    env = base_env()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    outs = []
    for line in lines:
        proc = subprocess.run(
            ["sh", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, f"{line}\n{proc.stdout}\n{proc.stderr}"
        assert "Traceback" not in proc.stdout + proc.stderr
        outs.append(proc.stdout + proc.stderr)
    apply, listed, runs, plan = outs[1], outs[2], outs[3], outs[4]
    assert "Apply complete! Resources: 4 added" in apply
    # each team's run snapshotted the module's src/ and got its own arguments
    assert "team vision: w=" in apply and "team speech: w=" in apply
    assert listed.split() == [
        'module.team["speech"].compute.box',
        'module.team["speech"].run.train',
        'module.team["vision"].compute.box',
        'module.team["vision"].run.train',
    ]
    assert 'module.team["vision"].run.train' in runs
    assert "speech" not in runs
    assert "No changes." in plan
    manifest = json.loads((tmp_path / "examples/teams/.trainform/modules/modules.json").read_text())
    assert manifest["modules"] == [
        {"key": "team", "source": "./modules/team", "dir": "modules/team"}
    ]


def test_module_addresses_in_target_replace_state_and_runs(cli: CLI) -> None:
    team_module(cli)
    cli.write("main.train.hcl", two_teams())
    ok(cli("init"))
    out = ok(cli("apply", "-auto-approve")).all
    assert "module source ['--lr', '0.2']" in out and "root source" not in out
    assert 'boxes = { a = "module.team[\\"a\\"].compute.box"' in out

    # team b's input changes: a plan of team a alone has nothing to do
    cli.write("main.train.hcl", two_teams("0.3"))
    assert "No changes." in ok(cli("plan", '-target=module.team["a"]')).out
    plan = ok(cli("plan", "-target=module.team")).out
    assert '# module.team["b"].run.train will be resubmitted' in plan
    assert 'module.team["a"]' not in plan.split("Plan:")[0].replace('compute.box"', "")
    shown = json.loads(ok(cli("plan", "-json", '-replace=module.team["a"].compute.box')).out)
    changes = {c["address"]: c for c in shown["resource_changes"]}
    assert changes['module.team["a"].compute.box']["module_address"] == 'module.team["a"]'
    assert changes['module.team["a"].compute.box']["change"]["actions"] == ["delete", "create"]
    forced = ok(cli("plan", '-replace=module.team["a"].run.train')).out
    assert '# module.team["a"].run.train will be resubmitted: requested with -replace' in forced
    out = ok(cli("apply", "-auto-approve", '-target=module.team["b"].run.train')).all
    assert "module source ['--lr', '0.3']" in out

    # state commands
    listed = ok(cli("state", "list", 'module.team["a"]')).out.split()
    assert listed == ['module.team["a"].compute.box', 'module.team["a"].run.train']
    shown_state = ok(cli("state", "show", 'module.team["b"].run.train')).out
    assert '# module.team["b"].run.train (ready)' in shown_state
    # runs commands by module address
    runs = ok(cli("runs", "list", "--address", 'module.team["b"].run.train')).out
    assert runs.count('module.team["b"].run.train') == 2
    assert 'module.team["a"]' not in runs
    assert len(ok(cli("runs", "list", "--address", "module.team")).out.splitlines()) == 4
    logs = ok(cli("runs", "logs", 'module.team["b"].run.train')).out
    assert "module source ['--lr', '0.3']" in logs
    run_id = ok(cli("runs", "list", "--json", "--address", 'module.team["a"]')).out
    (first,) = json.loads(run_id)
    assert first["id"].startswith("team-a-run-train-")
    assert first["address"] in ok(cli("runs", "show", first["id"])).out

    # a whole module instance moves, and its history follows
    moved = ok(cli("state", "mv", 'module.team["b"]', 'module.squad["b"]')).out
    assert 'Moved module.team["b"].run.train to module.squad["b"].run.train' in moved
    runs = ok(cli("runs", "list", "--address", 'module.squad["b"].run.train')).out
    assert runs.count('module.squad["b"].run.train') == 2
    failed(
        cli("state", "mv", 'module.squad["b"].compute.box', "run.box"),
        "cannot move a compute to a run address",
    )
    ok(cli("state", "mv", 'module.squad["b"]', 'module.team["b"]'))
    ok(cli("state", "rm", 'module.team["a"].run.train'))
    assert 'module.team["a"].run.train' not in ok(cli("state", "list")).out
    plan = ok(cli("plan")).out
    assert '# module.team["a"].run.train will be submitted' in plan
    failed(
        cli("plan", '-target=module.team["a"].compute.nope'),
        "no such resource",
        'did you mean "module.team["a"].compute.box"',
    )


def test_count_on_a_module(cli: CLI) -> None:
    team_module(cli)
    cli.write(
        "main.train.hcl",
        """
module "team" {
  source = "./modules/team"
  count  = 2
  name   = "t${count.index}"
}

output "first" {
  value = module.team[0].box
}
""",
    )
    plan = ok(cli("plan")).out
    for i in (0, 1):
        assert f"# module.team[{i}].compute.box will be attached" in plan
        assert f'experiment      = "team-t{i}"' in plan
    assert 'first = "module.team[0].compute.box"' in plan
    assert "Plan: 4 to add" in ok(cli("plan", "-target=module.team[1]")).out.replace("2 to", "4 to")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_git_sources_with_refs(cli: CLI, tmp_path: Path) -> None:
    repo = tmp_path / "repo.git"
    (repo / "box").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    greeting = 'output "greeting" {{\n  value = "{}"\n}}\n'
    (repo / "box" / "main.train.hcl").write_text(greeting.format("v1"))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v1")
    git(repo, "tag", "v1")
    (repo / "box" / "main.train.hcl").write_text(greeting.format("v2"))
    git(repo, "commit", "-qam", "v2")
    git(repo, "tag", "v2")

    def use(source: str) -> None:
        cli.write(
            "main.train.hcl",
            f'module "box" {{\n  source = "{source}"\n}}\n\n'
            'output "greeting" {\n  value = module.box.greeting\n}\n',
        )

    use(f"git::file://{repo}//box?ref=v1")
    failed(cli("plan"), "module.box: not installed; run `trainform init`", "main.train.hcl:2:12")
    out = ok(cli("init")).out
    assert "module.box" in out and "installed, commit" in out
    assert 'greeting = "v1"' in ok(cli("plan")).out
    manifest = json.loads((cli.cwd / ".trainform/modules/modules.json").read_text())
    (entry,) = manifest["modules"]
    assert entry["key"] == "box" and entry["dir"] == ".trainform/modules/box/box"
    assert entry["commit"] == git(repo, "rev-parse", "v1^{commit}").strip()
    assert "already installed" in ok(cli("init")).out  # idempotent

    use(f"git::file://{repo}//box?ref=v2")
    failed(cli("plan"), "module.box: not installed (its source changed since init)")
    ok(cli("init"))
    assert 'greeting = "v2"' in ok(cli("plan")).out

    # a branch moves on: init keeps what it resolved, init -upgrade resolves it again
    use(f"git::{repo}//box?ref=main")
    ok(cli("init"))
    (repo / "box" / "main.train.hcl").write_text(greeting.format("v3"))
    git(repo, "commit", "-qam", "v3")
    ok(cli("init"))
    assert 'greeting = "v2"' in ok(cli("plan")).out
    ok(cli("init", "-upgrade"))
    assert 'greeting = "v3"' in ok(cli("plan")).out

    use(f"git::file://{repo}//box?ref=v9")
    failed(cli("init"), "has no ref 'v9'", "main.train.hcl:2:12")
    use(f"git::file://{tmp_path}/nope.git?ref=v1")
    failed(cli("init"), "nope.git does not exist", "main.train.hcl:2:12")
    use(f"git::file://{repo}?ref=v1")
    failed(cli("init"), "no configuration files", "main.train.hcl:2:12")


def test_each_bad_module_call_is_one_diagnostic(cli: CLI) -> None:
    team_module(cli)

    def check(text: str, *needles: str) -> None:
        cli.write("main.train.hcl", text)
        result = failed(cli("validate"), *needles)
        assert result.all.count("Error:") == 1, result.all

    check('module "m" {\n  source = "./modules/nope"\n}\n', "does not exist", "main.train.hcl:2:12")
    (cli.cwd / "modules" / "empty").mkdir()
    check('module "m" {\n  source = "./modules/empty"\n}\n', "no configuration files")
    check(
        'module "m" {\n  source = "./modules/team"\n  count = 1\n  for_each = {}\n  name = "x"\n}\n',
        "count and for_each cannot both be set",
        "main.train.hcl:4:3",
    )
    check(
        'module "m" {\n  source = "./modules/team"\n}\n',
        "module 'm' requires input variable 'name'",
        "main.train.hcl:1:1",
    )
    check(
        'module "m" {\n  source = "./modules/team"\n  name = "x"\n  lrr = 1\n}\n',
        "module 'm' has no input variable 'lrr'",
        'did you mean "lr"?',
    )
    check(
        'module "m" {\n  source = "./modules/team"\n  name = "x"\n}\n'
        'output "o" {\n  value = module.m.boxx\n}\n',
        "module.m has no output 'boxx'",
        'did you mean "box"?',
        "main.train.hcl:6:11",
    )
    check(
        'module "m" {\n  source = "./modules/team"\n  name = "x"\n  lr = "fast"\n}\n',
        "invalid value 'fast' for variable 'lr'",
        "modules/team/main.train.hcl:6:1",
        "in module.m (main.train.hcl:1:1)",
    )
    cli.write("modules/a/main.train.hcl", 'module "b" {\n  source = "../b"\n}\n')
    cli.write("modules/b/main.train.hcl", 'module "a" {\n  source = "../a"\n}\n')
    check(
        'module "a" {\n  source = "./modules/a"\n}\n',
        "module cycle: module.a -> module.a.module.b -> module.a.module.b.module.a",
        "modules/b/main.train.hcl:1:1",
        "in module.a.module.b (modules/a/main.train.hcl:1:1), in module.a (main.train.hcl:1:1)",
    )
    cli.write("modules/team/extra.train.hcl", 'compute "x" {\n  type = "lcoal"\n}\n')
    check(
        'module "m" {\n  source = "./modules/team"\n  name = "x"\n}\n',
        "unknown compute type 'lcoal'",
        "modules/team/extra.train.hcl:2:10",
        "in module.m (main.train.hcl:1:1)",
    )
