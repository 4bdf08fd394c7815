"""YAML configurations use the whole language as HCL does: lifecycle pre- and
postconditions, check blocks and removed blocks' lifecycle; and modules written in YAML,
called from HCL and the other way round."""

from __future__ import annotations

from helpers import CLI, failed, ok

CONDITIONS = """\
variable:
  cores:
    type: number
    default: 1

compute:
  box:
    type: local
    lifecycle:
      precondition:
        condition: ${var.cores >= 1}
        error_message: "cores must be at least 1, got ${var.cores}"
      postcondition:
        - condition: ${self.facts.cpus >= var.cores}
          error_message: "the box has fewer than ${var.cores} CPUs"

check:
  enough:
    assert:
      condition: ${compute.box.facts.cpus >= 100000}
      error_message: the box is no supercomputer
"""


def test_yaml_preconditions_stop_a_plan_with_their_file_and_line(cli: CLI) -> None:
    cli.write("main.train.yaml", CONDITIONS)
    res = failed(cli("plan", "-var", "cores=0"), "cores must be at least 1, got 0")
    assert "Resource precondition failed" in res.err
    assert "main.train.yaml:11:" in res.err, res.err


def test_yaml_postconditions_fail_an_apply(cli: CLI) -> None:
    cli.write("main.train.yaml", CONDITIONS)
    res = failed(cli("apply", "-auto-approve", "-var", "cores=100000"))
    assert "the box has fewer than 100000 CPUs" in res.all
    assert "main.train.yaml:14" in res.all, res.all
    ok(cli("apply", "-auto-approve"))


def test_yaml_check_blocks_warn(cli: CLI) -> None:
    cli.write("main.train.yaml", CONDITIONS)
    res = ok(cli("apply", "-auto-approve"))
    assert 'check "enough"' in res.all and "the box is no supercomputer" in res.all, res.all
    assert "main.train.yaml:20" in res.all


def test_yaml_removed_block_keeps_its_lifecycle(cli: CLI) -> None:
    cli.write("main.train.yaml", "compute:\n  box:\n    type: local\n")
    ok(cli("apply", "-auto-approve"))
    cli.write(
        "main.train.yaml",
        "removed:\n  from: compute.box\n  lifecycle:\n    destroy: false\n",
    )
    plan = ok(cli("plan"))
    assert "compute.box" in plan.out and "0 to destroy" in plan.out, plan.out


YAML_MODULE = """\
variable:
  name:
    type: string
compute:
  box:
    type: local
run:
  train:
    compute: ${compute.box}
    source_dir: src
    script: train.py
    experiment: team-${var.name}
output:
  experiment:
    value: ${run.train.experiment}
moved:
  from: compute.old
  to: compute.box
check:
  named:
    assert:
      condition: ${var.name != "b"}
      error_message: team ${var.name} fails the check
"""

HCL_ROOT = """\
module "team" {
  source   = "./modules/team"
  for_each = toset(["a", "b"])
  name     = each.key
}

output "experiments" {
  value = { for k, m in module.team : k => m.experiment }
}
"""

HCL_MODULE = """\
variable "name" {
  type = string
}

compute "box" {
  type = "local"
}

run "train" {
  compute    = compute.box
  source_dir = "src"
  script     = "train.py"
  experiment = "team-${var.name}"
}

output "experiment" {
  value = run.train.experiment
}
"""

YAML_ROOT = """\
module:
  team:
    source: ./modules/team
    count: 2
    name: t${count.index}
output:
  experiments:
    value: ${module.team[*].experiment}
"""


def test_a_yaml_module_called_from_hcl(cli: CLI) -> None:
    cli.write("main.train.hcl", HCL_ROOT)
    cli.write("modules/team/main.train.yaml", YAML_MODULE)
    cli.write("modules/team/src/train.py", "print('module source')\n")
    res = ok(cli("apply", "-auto-approve"))
    assert 'check "named" in module.team["b"]' in res.all and "team b fails" in res.all
    assert 'check "named" in module.team["a"]' not in res.all
    assert ok(cli("state", "list")).out.split() == [
        'module.team["a"].compute.box',
        'module.team["a"].run.train',
        'module.team["b"].compute.box',
        'module.team["b"].run.train',
    ]
    out = ok(cli("output", "-json", "experiments")).out
    assert '"team-a"' in out and '"team-b"' in out
    logs = ok(cli("runs", "logs", 'module.team["a"].run.train')).out
    assert "module source" in logs  # snapshotted from the module's folder


def test_an_hcl_module_called_from_yaml(cli: CLI) -> None:
    cli.write("main.train.yaml", YAML_ROOT)
    cli.write("modules/team/main.train.hcl", HCL_MODULE)
    cli.write("modules/team/src/train.py", "print('module source')\n")
    ok(cli("apply", "-auto-approve"))
    assert ok(cli("state", "list")).out.split() == [
        "module.team[0].compute.box",
        "module.team[0].run.train",
        "module.team[1].compute.box",
        "module.team[1].run.train",
    ]
    out = ok(cli("output", "-json", "experiments")).out
    assert '"team-t0"' in out and '"team-t1"' in out
    assert "No changes." in ok(cli("plan")).out


def test_a_bad_yaml_module_names_its_file_and_the_call(cli: CLI) -> None:
    cli.write("main.train.hcl", HCL_ROOT)
    cli.write("modules/team/main.train.yaml", YAML_MODULE.replace("source_dir", "sorce_dir"))
    res = failed(cli("plan"), "sorce_dir")
    assert "modules/team/main.train.yaml:10:" in res.err, res.err
    assert "in module.team (main.train.hcl:1:1)" in res.err, res.err
