"""`kill -9` of `apply` while it submits a run on local compute, through the real CLI: the run
is recorded (its id and target, as `submitting`) before it is launched, so that whatever moment
the kill comes, the next `plan` finds it: adopted if it was launched, submitted again if it
never started. No run is lost, none is started twice (checks in tests/kill_apply.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import CLI, ok
from kill_apply import SCRIPT, KillRig, exists, launched, sweep

CONFIG = """\
compute "local" {
  type = "local"
}

run "train" {
  experiment = "kill"
  compute    = compute.local
  source_dir = "src"
  script     = "train.py"
  arguments  = ["--ledger", "LEDGER", "--tag", "TAG"]
}
"""


# Milliseconds from "run.train: Resubmitting..." to the kill: densely over the snapshot, the
# intent and the launch (about 100-300 ms here), then through the watch and the end.
DELAYS_MS = [*range(0, 320, 20), 400, 600, 800, 1000, 1500]


@pytest.fixture
def rig(cli: CLI, tmp_path: Path) -> KillRig:
    ledger = tmp_path / "ledger"
    cli.write("src/train.py", SCRIPT)
    rig = KillRig(
        cli,
        ledger,
        lambda tag: CONFIG.replace("LEDGER", str(ledger)).replace("TAG", tag),
        cli.cwd / ".trainform" / "local" / "runs",
    )
    rig.write("first")
    ok(cli("apply", "-auto-approve"))
    rig.check("first")
    return rig


def test_a_run_launched_but_not_recorded_is_adopted_by_the_next_plan(rig: KillRig) -> None:
    tag, folder = rig.kill_between_launch_and_record("launched")
    history = ok(rig.cli("runs", "list")).out
    assert folder.name in history, history  # recorded before its launch
    plan = rig.converge(tag)
    assert re.search(
        rf"run\.train: run {folder.name} was started by an apply that stopped before "
        r"recording it; adopted \((queued|preparing|running|completed)\)",
        plan,
    ), plan
    assert "will be resubmitted" not in plan, plan


def test_a_run_killed_before_its_launch_is_submitted_again(rig: KillRig) -> None:
    folder = rig.kill_when("unlaunched", exists)
    plan = rig.converge("unlaunched")
    if not launched(folder):  # the kill came before the launch, as intended
        assert re.search(
            rf"run\.train: run {folder.name}: never started: apply was interrupted before it "
            r"was launched on compute\.local; it will be submitted again",
            plan,
        ), plan
        assert "run.train will be resubmitted: was left half-submitted" in plan, plan
        history = {r.split()[0]: r for r in ok(rig.cli("runs", "list")).out.splitlines()[1:]}
        assert "not_started" in history[folder.name], history
        logs = ok(rig.cli("runs", "logs", folder.name))
        assert "has no log: it was never launched (not_started)" in logs.err, logs.all


def test_a_kill_at_any_moment_of_apply_converges(rig: KillRig) -> None:
    sweep(rig, DELAYS_MS)


def test_without_refresh_or_lock_a_run_in_doubt_is_neither_submitted_again_nor_lost(
    rig: KillRig,
) -> None:
    """`-refresh=false` does not look the run up, and `-lock=false` does not record what the
    plan found: apply refuses to submit it a second time in both cases."""
    tag, folder = rig.kill_between_launch_and_record("doubt")
    blind = rig.cli("apply", "-refresh=false", "-auto-approve")
    assert blind.code == 1, blind.all
    assert f"run {folder.name} was being submitted to compute.local when an apply stopped" in (
        blind.out
    ), blind.all
    unlocked = rig.cli("apply", "-lock=false", "-auto-approve")
    assert unlocked.code == 1, unlocked.all
    assert re.search(
        rf"run {folder.name} was started by an apply that stopped before recording it; "
        r"adopted \(\w+\); it was not submitted again",
        unlocked.out,
    ), unlocked.all
    rig.converge(tag)
