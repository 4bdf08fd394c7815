"""`kill -9` of `apply` while it submits a run to an SSH target, through the real CLI against a
real OpenSSH server (fixtures in conftest.py): the run launched on the host before the kill is
found there by the next `plan` and adopted, one that never started is submitted again, and a
kill at any moment converges with no run lost or started twice (checks in tests/kill_apply.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import ok
from kill_apply import SCRIPT, KillRig, exists, launched, sweep

if TYPE_CHECKING:  # fixtures' types; pytest provides the objects
    from tests.conftest import CLI
    from tests.integration.conftest import SSHServer, UserKey


def config(server: SSHServer, key: UserKey, workdir: str, ledger: str) -> str:
    return f"""\
compute "box" {{
  type             = "ssh"
  address          = "{server.address}"
  port             = {server.port}
  username         = "tfuser"
  private_key_file = "{key.private_path}"
  host_key         = "{server.fingerprint}"
  workdir          = "{workdir}"
}}

environment "system" {{
  python       = "python3"
  user_managed = true
}}

run "train" {{
  experiment  = "kill"
  compute     = compute.box
  environment = environment.system
  source_dir  = "src"
  script      = "train.py"
  arguments   = ["--ledger", "{ledger}", "--tag", "TAG"]
}}
"""


@pytest.fixture
def rig(cli: CLI, sshd: SSHServer, user_key: UserKey, remote_tmp: str) -> KillRig:
    workdir = f"{remote_tmp}/tf"
    ledger = f"{remote_tmp}/ledger"  # written by the run as tfuser, on this machine
    cli.write("src/train.py", SCRIPT)
    text = config(sshd, user_key, workdir, ledger)
    rig = KillRig(cli, Path(ledger), lambda tag: text.replace("TAG", tag), Path(workdir) / "runs")
    rig.write("first")
    ok(cli("apply", "-auto-approve", timeout=180))
    rig.check("first")
    return rig


def test_a_run_launched_on_the_host_but_not_recorded_is_adopted(rig: KillRig) -> None:
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


def test_a_run_killed_before_its_launch_on_the_host_is_submitted_again(rig: KillRig) -> None:
    folder = rig.kill_when("unlaunched", exists)
    plan = rig.converge("unlaunched")
    if not launched(folder):
        assert re.search(
            rf"run\.train: run {folder.name}: never started: apply was interrupted before it "
            r"was launched on compute\.box; it will be submitted again",
            plan,
        ), plan


def test_a_kill_at_any_moment_of_an_ssh_apply_converges(rig: KillRig) -> None:
    sweep(rig, [*range(0, 500, 40), 600, 800, 1000, 1500])
