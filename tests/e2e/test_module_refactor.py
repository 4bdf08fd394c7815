"""moved, removed, import and check blocks inside child modules, through the CLI: their
addresses are relative to the module and apply to every instance of it (as in Terraform);
an import block in a child module is an error, as Terraform makes it."""

from __future__ import annotations

import re

from helpers import CLI, failed, ok

ROOT = """
module "team" {
  source   = "./modules/team"
  for_each = toset(["a", "b"])
  name     = each.key
}
"""

MODULE = """
variable "name" {
  type = string
}

compute "%(box)s" {
  type = "local"
}

run "%(run)s" {
  compute    = compute.%(box)s
  source_dir = "src"
  script     = "train.py"
  experiment = "team-${var.name}"
}
"""

MOVES = """
moved {
  from = compute.box
  to   = compute.trainer
}

moved {
  from = run.train
  to   = run.fit
}
"""


def run_ids(cli: CLI, address: str) -> list[str]:
    out = ok(cli("runs", "list", "--address", address)).out
    return re.findall(r"^ *(\S+-\d{8}-\d{6}-[0-9a-f]+) ", out, re.M)


def teams(cli: CLI, box: str = "box", run: str = "train", extra: str = "") -> None:
    cli.write("main.train.hcl", ROOT)
    cli.write("modules/team/main.train.hcl", MODULE % {"box": box, "run": run} + extra)
    cli.write("modules/team/src/train.py", "print('trained')\n")


def test_a_rename_inside_a_module_moves_every_instance_keeping_history(cli: CLI) -> None:
    teams(cli)
    ok(cli("apply", "-auto-approve"))
    before = {k: run_ids(cli, f'module.team["{k}"].run.train') for k in "ab"}
    assert all(len(ids) == 1 for ids in before.values()), before

    teams(cli, "trainer", "fit", MOVES)
    plan = ok(cli("plan"))
    for k in "ab":
        inst = f'module.team["{k}"]'
        assert f"# {inst}.compute.box has moved to {inst}.compute.trainer" in plan.out, plan.out
        assert f"# {inst}.run.train has moved to {inst}.run.fit" in plan.out
    assert "Plan: 0 to add, 0 to change, 0 to destroy." in plan.out, plan.out
    assert "replace" not in plan.out and "submit" not in plan.out

    ok(cli("apply", "-auto-approve"))
    assert ok(cli("state", "list")).out.split() == [
        'module.team["a"].compute.trainer',
        'module.team["a"].run.fit',
        'module.team["b"].compute.trainer',
        'module.team["b"].run.fit',
    ]
    for k in "ab":  # each instance's history follows its own rename
        assert run_ids(cli, f'module.team["{k}"].run.fit') == before[k]
        assert run_ids(cli, f'module.team["{k}"].run.train') == []
    assert "No changes." in ok(cli("plan")).out


def test_a_moved_block_in_a_module_must_not_leave_its_source_declared(cli: CLI) -> None:
    teams(cli, extra='compute "trainer" {\n  type = "local"\n}\n' + MOVES)
    res = failed(cli("plan"), "Moved object still declared", "in module.team (main.train.hcl:2:1)")
    assert "modules/team/main.train.hcl:" in res.err


def test_removed_in_a_module_forgets_every_instance(cli: CLI) -> None:
    teams(cli)
    ok(cli("apply", "-auto-approve"))
    cli.write(
        "modules/team/main.train.hcl",
        'variable "name" {\n  type = string\n}\n'
        'compute "box" {\n  type = "local"\n}\n'
        "removed {\n  from = run.train\n  lifecycle {\n    destroy = false\n  }\n}\n",
    )
    plan = ok(cli("plan"))
    assert "Plan: 0 to add, 0 to change, 0 to destroy." in plan.out, plan.out
    assert 'module.team["a"].run.train' in plan.out and 'module.team["b"].run.train' in plan.out
    assert "cancel" not in plan.out
    ok(cli("apply", "-auto-approve"))
    assert ok(cli("state", "list")).out.split() == [
        'module.team["a"].compute.box',
        'module.team["b"].compute.box',
    ]
    assert len(run_ids(cli, 'module.team["a"].run.train')) == 1  # history stays


def test_a_check_in_a_module_warns_once_per_instance(cli: CLI) -> None:
    check = """
check "named" {
  assert {
    condition     = var.name == "a"
    error_message = "team ${var.name} is not team a"
  }
}
"""
    teams(cli, extra=check)
    plan = ok(cli("plan"))
    text = plan.out + plan.err
    assert 'check "named" in module.team["b"]' in text, text
    assert "team b is not team a" in text
    assert 'check "named" in module.team["a"]' not in text
    applied = ok(cli("apply", "-auto-approve"))
    assert "team b is not team a" in applied.out + applied.err


def test_an_import_block_in_a_module_is_one_diagnostic(cli: CLI) -> None:
    imp = '\nimport {\n  to = compute.box\n  id = "me@localhost:22"\n}\n'
    teams(cli, extra=imp)
    line = (MODULE + imp).splitlines().index("import {") + 1
    res = failed(cli("plan"), "only allowed in the root module")
    assert res.err.count("import block was detected") == 1, res.err
    assert f"modules/team/main.train.hcl:{line}:" in res.err, res.err
