"""Runs that end while trainform is not watching them, through the real CLI: after
`apply --detach`, after Ctrl-C during `apply`, after `runs cancel`, and after the launcher is
killed with SIGKILL. In each case `plan` works at once (a value that waits on the run is
`(known after apply)`, never a null interpolation error), and once the run has ended the next
`plan` records its real outcome: outputs collected, history and state updated, outputs known.

The configuration mirrors the quick-start example's output (`"${run.train.outputs_path}/..."`);
its script waits for a file the test creates, so the test decides when the run ends.
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest
from helpers import CLI, ok, wait_until

from trainform.state.locking import process_running as alive

CONFIG = """\
workspace "main" {
  force_destroy = true
}

compute "local" {
  type = "local"
}

run "train" {
  experiment = "unwatched"
  workspace  = workspace.main
  compute    = compute.local
  source_dir = "src"
  script     = "train.py"
  arguments  = ["--release", "RELEASE"]
}

output "model" {
  value = "${run.train.outputs_path}/model.json"
}
"""

SCRIPT = """\
import json, os, sys, time
release = sys.argv[2]
print("started", os.getpid(), flush=True)
while not os.path.exists(release):
    time.sleep(0.05)
out = os.environ["TRAINFORM_OUTPUT_DIR"]
with open(os.path.join(out, "model.json"), "w") as fh:
    json.dump({"w": 1}, fh)
print("trained", flush=True)
"""


@pytest.fixture
def setup(cli: CLI, tmp_path: Path) -> tuple[CLI, Path]:
    release = tmp_path / "release"
    cli.write("main.train.hcl", CONFIG.replace("RELEASE", str(release)))
    cli.write("src/train.py", SCRIPT)
    ok(cli("init"))
    return cli, release


def run_record(cli: CLI) -> dict:
    return json.loads(ok(cli("runs", "show", "run.train", "--json")).out)


def plan_while_running(cli: CLI) -> None:
    """`plan` works while the run goes on: the output waits, nothing is resubmitted."""
    plan = ok(cli("plan"))
    assert "cannot interpolate" not in plan.all, plan.all
    assert re.search(r"run\.train is running \(run train-\S+\)", plan.out), plan.out
    assert "model = (known after apply)" in plan.out, plan.out
    assert "will be resubmitted" not in plan.out, plan.out


def ended_and_recorded(cli: CLI, status: str) -> str:
    """The next `plan` records the run's end; returns that plan's text."""
    plan = ok(cli("plan", "-detailed-exitcode"), 2 if status != "completed" else 0)
    assert re.search(
        rf"run\.train: run train-\S+ {status} while trainform was not watching; recorded",
        plan.out,
    ), plan.out
    state = ok(cli("state", "show", "run.train")).out
    assert re.search(rf'status\s+= "{status}"', state), state
    assert re.search(r'outputs_path\s+= "/\S+/outputs"', state), state
    record = run_record(cli)
    assert record["status"] == status, record
    return plan.out


def detached_and_started(cli: CLI) -> None:
    ok(cli("apply", "-auto-approve", "--detach"))
    wait_until("the script to start", lambda: "started" in cli("runs", "logs", "run.train").out)


def model_output(cli: CLI) -> Path:
    value = json.loads(ok(cli("output", "-json", "model")).out)
    return Path(value)


def test_detached_run_settles_on_the_next_plan(setup: tuple[CLI, Path]) -> None:
    cli, release = setup
    ok(cli("apply", "-auto-approve", "--detach"))
    plan_while_running(cli)
    release.touch()
    wait_until("the run to finish", lambda: run_record(cli)["status"] == "completed", timeout=30)
    ended_and_recorded(cli, "completed")
    assert json.loads(model_output(cli).read_text()) == {"w": 1}
    # now up to date: no changes, and CI's -detailed-exitcode says so
    plan = ok(cli("plan", "-detailed-exitcode"), 0)
    assert "No changes." in plan.out, plan.out
    destroy = ok(cli("destroy", "-auto-approve"))
    assert "run.train will be forgotten (history kept)" in destroy.out, destroy.out


def test_refresh_records_a_run_that_ended_and_its_outputs(setup: tuple[CLI, Path]) -> None:
    cli, release = setup
    ok(cli("apply", "-auto-approve", "--detach"))
    release.touch()
    wait_until("the run to finish", lambda: run_record(cli)["status"] == "completed", timeout=30)
    refreshed = ok(cli("refresh"))
    assert "completed while trainform was not watching; recorded" in refreshed.out
    assert model_output(cli).is_file()
    metrics_free = run_record(cli)
    assert metrics_free["outputs_path"], metrics_free


def test_ctrl_c_during_apply_exits_130_and_the_run_settles_later(
    setup: tuple[CLI, Path],
) -> None:
    cli, release = setup
    proc = cli.popen("apply", "-auto-approve")
    assert proc.stdout is not None
    seen = ""
    for line in proc.stdout:
        seen += line
        if "started" in line:
            break
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    out = seen + rest + err
    assert proc.returncode == 130, out
    assert "run.train keeps running in the background" in out, out
    assert "trainform runs wait run.train" in out, out
    plan_while_running(cli)
    release.touch()
    wait_until("the run to finish", lambda: run_record(cli)["status"] == "completed", timeout=30)
    ended_and_recorded(cli, "completed")
    assert model_output(cli).is_file()
    ok(cli("plan", "-detailed-exitcode"), 0)


def test_canceled_run_is_recorded_and_planned_again_with_the_reason(
    setup: tuple[CLI, Path],
) -> None:
    cli, _ = setup
    detached_and_started(cli)
    assert "canceled" in ok(cli("runs", "cancel", "run.train")).out
    plan = ended_and_recorded(cli, "canceled")
    assert re.search(
        r"run\.train will be resubmitted: the last run train-\S+ was canceled", plan
    ), plan
    assert '~ status = "canceled" -> (known after apply)' in plan, plan
    # the canceled run's own outputs folder is what the output names until a new run ends
    assert model_output(cli).parent.is_dir()


def test_killed_launcher_run_is_running_until_its_command_ends_then_lost(
    setup: tuple[CLI, Path],
) -> None:
    cli, release = setup
    detached_and_started(cli)
    run_id = run_record(cli)["id"]
    status = cli.cwd / ".trainform" / "local" / "runs" / run_id / "status.json"
    launcher = int(json.loads(status.read_text())["launcher_pid"])
    script = int(cli("runs", "logs", "run.train").out.split("started", 1)[1].split()[0])
    os.kill(launcher, signal.SIGKILL)
    wait_until("the launcher to die", lambda: not alive(launcher), timeout=10)
    # the command it started still runs: the run is not over, so nothing is resubmitted
    assert alive(script)
    plan_while_running(cli)
    release.touch()
    wait_until("the script to end", lambda: not alive(script), timeout=30)
    plan = ended_and_recorded(cli, "lost")
    assert re.search(r"the last run train-\S+ was lost: the launcher", plan), plan
    # the outputs it wrote were collected
    assert json.loads(model_output(cli).read_text()) == {"w": 1}
