"""Refactoring without losing history, through the real CLI: moved blocks (renames, count ->
for_each keys) keep state and run history; removed blocks stop managing without destroying;
import blocks and `trainform import` adopt runs of the history; check blocks warn; pre- and
postconditions stop a plan or an apply with their file:line."""

from __future__ import annotations

import json
import re

from helpers import ok

RUN = """\
run "{name}" {{
  compute    = compute.{compute}
  source_dir = "src"
  script     = "train.py"
  experiment = "e"
  {extra}
}}
"""


def setup(cli, text: str):
    cli.write("src/train.py", "print('trained')\n")
    cli.write("main.train.hcl", text)
    return cli


def compute(name: str, extra: str = "") -> str:
    return f'compute "{name}" {{\n  type = "local"\n  {extra}\n}}\n'


def run(name: str, on: str, extra: str = "") -> str:
    return RUN.format(name=name, compute=on, extra=extra)


def run_ids(cli, address: str) -> list[str]:
    out = ok(cli("runs", "list", "--address", address)).out
    return re.findall(r"^ *(\S+-\d{8}-\d{6}-[0-9a-f]+) ", out, re.M)


def test_moved_renames_a_compute_and_a_run_keeping_state_and_history(cli) -> None:
    setup(cli, compute("old") + run("first", "old"))
    ok(cli("apply", "-auto-approve"))
    before = run_ids(cli, "run.first")
    assert len(before) == 1
    cli.write(
        "main.train.hcl",
        compute("new")
        + run("second", "new")
        + "moved {\n  from = compute.old\n  to   = compute.new\n}\n"
        + "moved {\n  from = run.first\n  to   = run.second\n}\n",
    )
    plan = ok(cli("plan"))
    assert "# compute.old has moved to compute.new" in plan.out
    assert "# run.first has moved to run.second" in plan.out
    assert "Plan: 0 to add, 0 to change, 0 to destroy." in plan.out
    assert "replace" not in plan.out and "submit" not in plan.out
    as_json = json.loads(ok(cli("plan", "-json")).out)
    moved = {c["address"]: c.get("previous_address") for c in as_json["resource_changes"]}
    assert moved == {"compute.new": "compute.old", "run.second": "run.first"}
    assert as_json["applyable"] is True
    ok(cli("plan", "-out", "moves.plan"))
    applied = ok(cli("apply", "moves.plan"))
    assert "Apply complete! Resources: 0 added, 0 changed, 0 destroyed." in applied.out
    assert ok(cli("state", "list")).out.split() == ["compute.new", "run.second"]
    assert run_ids(cli, "run.second") == before  # the history follows the rename
    assert run_ids(cli, "run.first") == []
    again = ok(cli("plan"))
    assert "No changes." in again.out, again.out


def test_moved_with_changes_shows_both(cli) -> None:
    setup(cli, compute("old", "max_concurrent_runs = 1"))
    ok(cli("apply", "-auto-approve"))
    cli.write(
        "main.train.hcl",
        compute("new", "max_concurrent_runs = 2")
        + "moved {\n  from = compute.old\n  to   = compute.new\n}\n",
    )
    plan = ok(cli("plan")).out
    assert "# compute.new will be updated in-place\n  # (moved from compute.old)" in plan
    assert "Plan: 0 to add, 1 to change, 0 to destroy" in plan


def test_count_to_for_each_keys_move_without_replacing(cli) -> None:
    setup(cli, compute("pool", "count = 2"))
    ok(cli("apply", "-auto-approve"))
    cli.write(
        "main.train.hcl",
        compute("pool", 'for_each = toset(["a", "b"])')
        + 'moved {\n  from = compute.pool[0]\n  to   = compute.pool["a"]\n}\n'
        + 'moved {\n  from = compute.pool[1]\n  to   = compute.pool["b"]\n}\n',
    )
    plan = ok(cli("plan")).out
    assert '# compute.pool[0] has moved to compute.pool["a"]' in plan
    assert '# compute.pool[1] has moved to compute.pool["b"]' in plan
    assert "0 to add, 0 to change, 0 to destroy" in plan
    ok(cli("apply", "-auto-approve"))
    assert ok(cli("state", "list")).out.split() == ['compute.pool["a"]', 'compute.pool["b"]']
    assert "No changes." in ok(cli("plan")).out


def test_moving_onto_an_address_in_state_is_one_diagnostic(cli) -> None:
    setup(cli, compute("a") + compute("b"))
    ok(cli("apply", "-auto-approve"))
    cli.write("main.train.hcl", compute("b") + "moved {\n  from = compute.a\n  to = compute.b\n}\n")
    result = ok(cli("plan"), 1)
    assert "compute.a could not move to compute.b: both are in the state" in result.err
    assert "main.train.hcl:5" in result.err
    assert "Traceback" not in result.all


def test_removed_with_destroy_false_forgets_a_run_and_keeps_its_history(cli) -> None:
    setup(cli, compute("box") + run("x", "box"))
    ok(cli("apply", "-auto-approve"))
    history = run_ids(cli, "run.x")
    cli.write(
        "main.train.hcl",
        compute("box") + "removed {\n  from = run.x\n  lifecycle {\n    destroy = false\n  }\n}\n",
    )
    plan = ok(cli("plan")).out
    assert "# run.x will no longer be managed by trainform, but will not be destroyed" in plan
    assert "# (destroy = false is set in the configuration)" in plan
    # Terraform's warning after the summary lists what apply will stop tracking
    assert "Warning: Some objects will no longer be managed by trainform" in plan
    assert " - run.x\n" in plan
    ok(cli("apply", "-auto-approve"))
    assert ok(cli("state", "list")).out.split() == ["compute.box"]
    assert run_ids(cli, "run.x") == history
    assert "No changes." in ok(cli("plan")).out


def test_removed_still_declared_is_an_error(cli) -> None:
    setup(cli, compute("box") + "removed {\n  from = compute.box\n}\n")
    result = ok(cli("plan"), 1)
    assert "Removed resource still exists" in result.err and "main.train.hcl:5" in result.err


def test_import_adopts_a_submitted_run(cli) -> None:
    setup(cli, compute("local"))
    ok(cli("apply", "-auto-approve"))
    submitted = ok(cli("submit", "train.py", "--compute", "local", "--source-dir", "src"))
    run_id = re.search(r"Submitted (\S+)", submitted.out).group(1)
    cli.write(
        "main.train.hcl",
        compute("local")
        + 'run "adopted" {\n  compute = compute.local\n  source_dir = "src"\n'
        + '  script = "train.py"\n  experiment = "adhoc"\n}\n',
    )
    imported = ok(cli("import", "run.adopted", run_id))
    assert "Import successful!" in imported.out
    assert ok(cli("state", "list")).out.split() == ["compute.local", "run.adopted"]
    assert run_ids(cli, "run.adopted") == [run_id]
    assert "No changes." in ok(cli("plan")).out  # the same fingerprint: up to date
    again = ok(cli("import", "run.adopted", run_id), 1)
    assert "run.adopted is already managed by trainform" in again.err


def test_import_block_adopts_a_run_and_resubmits_it_if_inputs_differ(cli) -> None:
    setup(cli, compute("local"))
    ok(cli("apply", "-auto-approve"))
    submitted = ok(cli("submit", "train.py", "--compute", "local", "--source-dir", "src"))
    run_id = re.search(r"Submitted (\S+)", submitted.out).group(1)
    block = f'import {{\n  to = run.r\n  id = "{run_id}"\n}}\n'
    # the experiment is not in a run's fingerprint: the submitted run is up to date
    cli.write("main.train.hcl", compute("local") + run("r", "local") + block)
    plan = ok(cli("plan")).out
    assert "# run.r will be imported\n" in plan
    assert "Plan: 1 to import, 0 to add, 0 to change, 0 to destroy." in plan
    # other arguments: adopted, then resubmitted, with the reason
    other = run("r", "local", 'arguments = ["--lr", "0.1"]')
    cli.write("main.train.hcl", compute("local") + other + block)
    plan = ok(cli("plan")).out
    assert "# run.r will be resubmitted: its inputs changed" in plan
    assert f'# (imported from "{run_id}")' in plan
    assert "Plan: 1 to import, 0 to add, 1 to change, 0 to destroy" in plan
    as_json = json.loads(ok(cli("plan", "-json")).out)
    (change,) = [c for c in as_json["resource_changes"] if c["address"] == "run.r"]
    assert change["change"]["importing"] == {"id": run_id}
    applied = ok(cli("apply", "-auto-approve"))
    assert "Apply complete! Resources: 1 imported, 0 added, 1 changed, 0 destroyed." in applied.out
    assert run_ids(cli, "run.r")[1] == run_id  # the adopted run, then the resubmission
    assert "No changes." in ok(cli("plan")).out  # an applied import block stays harmless


def test_import_errors_name_the_id(cli) -> None:
    setup(cli, compute("local") + run("r", "local"))
    ok(cli("apply", "-auto-approve"))
    result = ok(cli("import", "run.nope", "x"), 1)
    assert "configuration for import target run.nope does not exist" in result.err
    cli.write("main.train.hcl", compute("local") + run("r", "local") + run("s", "local"))
    result = ok(cli("import", "run.s", "no-such-run"), 1)
    assert "import id 'no-such-run': no run with that id in the run history" in result.err
    (managed,) = run_ids(cli, "run.r")
    result = ok(cli("import", "run.s", managed), 1)
    assert f"run {managed!r} is already managed by trainform as run.r" in result.err
    result = ok(cli("import", "compute.local", "x"), 1)
    assert "already managed" in result.err
    cli.write("main.train.hcl", compute("local") + compute("other") + run("r", "local"))
    result = ok(cli("import", "compute.other", "x"), 1)
    assert "a local compute cannot be imported" in result.err
    assert "Traceback" not in result.all


CHECK = """\
check "gpu" {
  assert {
    condition     = compute.box.facts.cpus > 100000
    error_message = "the GPU box has too few CPUs"
  }
}
"""


def test_check_blocks_warn_on_plan_and_after_apply_without_failing(cli) -> None:
    setup(cli, compute("box") + CHECK)
    first = ok(cli("plan"))  # compute.box not attached yet: its facts are unknown
    assert 'Check block assertion known after apply: check "gpu" (main.train.hcl:' in first.out
    applied = ok(cli("apply", "-auto-approve"))
    assert (
        'Warning: Check block assertion failed: check "gpu" (main.train.hcl:6): the GPU box '
        "has too few CPUs" in applied.out
    )
    plan = ok(cli("plan"))
    assert "Check block assertion failed" in plan.out and "No changes." in plan.out


def test_a_failing_precondition_stops_the_plan(cli) -> None:
    setup(
        cli,
        compute(
            "box",
            "lifecycle {\n    precondition {\n      condition = 1 > 2\n"
            '      error_message = "one is not more than two"\n    }\n  }',
        ),
    )
    result = ok(cli("plan"), 1)
    assert "Resource precondition failed: one is not more than two" in result.err
    assert "main.train.hcl:4" in result.err


def test_a_failing_postcondition_fails_the_apply_with_state_kept(cli) -> None:
    text = compute(
        "box",
        "lifecycle {\n    postcondition {\n      condition = self.facts.cpus >= var.cpus\n"
        '      error_message = "needs ${var.cpus} CPUs"\n    }\n  }',
    )
    setup(cli, 'variable "cpus" {\n  default = 100000\n}\n' + text)
    result = ok(cli("apply", "-auto-approve"), 1)
    assert "Resource postcondition failed (main.train.hcl:7): needs 100000 CPUs" in result.out
    assert ok(cli("state", "list")).out.split() == ["compute.box"]  # recorded all the same
    fixed = ok(cli("apply", "-auto-approve", "-var", "cpus=1"))
    assert "No changes." in fixed.out or "Apply complete!" in fixed.out
    assert "No changes." in ok(cli("plan", "-var", "cpus=1")).out


def test_the_readme_refactoring_example_runs_verbatim(cli) -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rest = readme.split("### Refactoring, imports and checks", 1)[1]
    hcl = re.search(r"^```hcl\n(.*?)^```$", rest, re.S | re.M).group(1)
    commands = re.search(r"^```sh\n(.*?)^```$", rest, re.S | re.M).group(1).splitlines()
    before = hcl.split("moved {")[0].replace('"trainer"', '"local"').replace("trainer", "local")
    before = before.replace('run "baseline"', 'run "train"')
    setup(cli, before)
    ok(cli("apply", "-auto-approve"))
    (old_run,) = run_ids(cli, "run.train")
    cli.write("main.train.hcl", hcl)
    outputs = []
    for line in commands:
        words = line.split()
        assert words[0] == "trainform", line
        outputs.append(ok(cli(*words[1:])).out)
    assert "# compute.local has moved to compute.trainer" in outputs[0]
    assert "# run.train has moved to run.baseline" in outputs[0]
    assert "Apply complete! Resources: 0 added, 0 changed, 0 destroyed." in outputs[1]
    assert old_run in outputs[2]
