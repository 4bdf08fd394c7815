"""`trainform graph -type=plan` through the real CLI: the resources of the plan, each
labelled and coloured with its planned action, as `trainform plan` names it."""

from __future__ import annotations

import re

from helpers import ok

CONFIG = """\
variable "team" {
  type    = string
  default = "ml"
}

locals {
  owner = "team-${var.team}"
}

workspace "main" {
  description = "Experiments of ${local.owner}"
}

compute "box" {
  type = "local"
  tags = { team = var.team }
}

compute "pool" {
  type       = "local"
  count      = 2
  depends_on = [workspace.main]
}
"""

ADDRESSES = ["compute.box", "compute.pool[0]", "compute.pool[1]", "workspace.main"]


def nodes(dot: str) -> dict[str, dict[str, str]]:
    """node -> its attributes, from the DOT text."""
    out = {}
    for name, attrs in re.findall(r'^  "([^"]+)" \[(.*)\];$', dot, re.M):
        out[name] = dict(re.findall(r'(\w+) = ("(?:[^"\\]|\\.)*"|\w+)', attrs))
    return out


def label(dot: str, address: str) -> str:
    return nodes(dot)[address]["label"].strip('"').split("\\n")[1]


def test_a_fresh_configuration_plans_creates(cli):
    cli.write("main.train.hcl", CONFIG)
    dot = ok(cli("graph", "-type=plan")).out
    assert dot.startswith("digraph trainform {") and dot.rstrip().endswith("}")
    assert sorted(nodes(dot)) == ADDRESSES  # resources only: no var or local nodes
    assert "var.team" not in dot and "local.owner" not in dot
    assert label(dot, "workspace.main") == "+ create"
    assert label(dot, "compute.box") == "+ attach"  # the local provider's own verb
    assert nodes(dot)["compute.box"]["fillcolor"] == nodes(dot)["workspace.main"]["fillcolor"]
    assert '"compute.pool[0]" -> "workspace.main";' in dot
    assert '"compute.pool[1]" -> "workspace.main";' in dot
    assert not (cli.cwd / ".trainform" / "state.db").exists()  # planning wrote nothing
    # both spellings of the flag
    assert ok(cli("graph", "--type", "plan")).out == dot
    assert ok(cli("graph", "--type=plan")).out == dot


def test_after_apply_a_change_shows_update_replace_and_no_changes(cli):
    cli.write("main.train.hcl", CONFIG)
    ok(cli("apply", "-auto-approve"))
    unchanged = ok(cli("graph", "-type=plan")).out
    assert {label(unchanged, a) for a in ADDRESSES} == {"no changes"}

    text = CONFIG.replace("tags = { team = var.team }", 'tags = { team = "vision" }')
    text = text.replace("count      = 2\n", 'count      = 2\n  workdir    = "/tmp/elsewhere"\n')
    cli.write("main.train.hcl", text)
    dot = ok(cli("graph", "-type=plan")).out
    assert label(dot, "compute.box") == "~ update"
    assert label(dot, "compute.pool[0]") == "-/+ replace"  # workdir forces replacement
    assert label(dot, "workspace.main") == "no changes"
    styles = {a: n["fillcolor"] for a, n in nodes(dot).items()}
    assert len({styles["compute.box"], styles["compute.pool[0]"], styles["workspace.main"]}) == 3
    # the same actions as the plan's text
    plan = ok(cli("plan")).out
    assert "# compute.box will be updated in-place" in plan
    assert "# compute.pool[0] must be replaced" in plan


def test_plan_destroy_shows_what_destroy_would_do(cli):
    cli.write("main.train.hcl", CONFIG)
    ok(cli("apply", "-auto-approve"))
    dot = ok(cli("graph", "-type=plan-destroy")).out
    assert label(dot, "workspace.main") == "- destroy"
    assert label(dot, "compute.box") == "- detach"


def test_plain_graph_is_unchanged_and_a_bad_type_is_a_usage_error(cli):
    cli.write("main.train.hcl", CONFIG)
    dot = ok(cli("graph")).out
    assert '"var.team"' in dot and "label" not in dot  # the dependency graph, as before
    bad = cli("graph", "-type=apply")
    assert bad.code == 1 and "Invalid value" in bad.err


PIPELINE = """\
compute "box" { type = "local" }
dataset "raw" { source = "data" }
run "prep" {
  experiment = "p"
  compute    = compute.box
  script     = "prep.py"
  inputs     = { raw = dataset.raw }
  outputs    = { features = "outputs/features" }
}
run "train" {
  experiment = "p"
  compute    = compute.box
  script     = "train.py"
  inputs     = { features = run.prep.outputs["features"] }
}
sweep "tune" {
  experiment = "p"
  sampling {
    algorithm = "grid"
  }
  parameter "lr" {
    distribution = "choice"
    values       = [0.1]
  }
  objective {
    metric = "loss"
    goal   = "minimize"
  }
  trial {
    compute    = compute.box
    script     = "train.py"
    inputs     = { features = run.prep.outputs["features"], raw = dataset.raw }
  }
}
"""


def test_pipeline_graph_draws_datasets_runs_and_the_named_outputs_between_them(cli):
    cli.write("main.train.hcl", PIPELINE)
    (cli.cwd / "data").mkdir()
    for name in ("prep.py", "train.py"):
        cli.write(name, "print(1)\n")
    dot = ok(cli("graph", "-type=pipeline")).out
    assert dot.startswith("digraph pipeline {")
    assert '"dataset.raw" [shape = cylinder];' in dot
    assert '"run.prep" [shape = box];' in dot and '"sweep.tune" [shape = box3d];' in dot
    assert "compute.box" not in dot  # data flow only
    assert '"dataset.raw" -> "run.prep" [label = "raw"];' in dot
    assert '"run.prep" -> "run.train" [label = "features"];' in dot
    assert '"run.prep" -> "sweep.tune" [label = "features"];' in dot
    assert '"dataset.raw" -> "sweep.tune" [label = "raw"];' in dot
    assert not (cli.cwd / ".trainform" / "state.db").exists()  # nothing was planned
