"""Every process a run started stops, through the real CLI on local compute: a run that
double-forks a daemon (fork, setsid, fork) leaves nothing behind after `runs cancel`,
`max_duration`, `destroy`, its normal end, or `runs cancel` once its launcher was killed
with SIGKILL. "cgroup" runs with a cgroup of the run's own (trainform runs as root here);
"proc" is the fallback for machines where no cgroup is writable
(`TRAINFORM_LAUNCHER_CGROUP=off`)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from daemons import DAEMON_SCRIPT, cgroup_writable, pids_in, reap, running, wait_gone
from helpers import CLI, failed, ok, unavailable, wait_until

from trainform.runs.launcher import CGROUP_SETTING

__all__ = ["reap"]  # a fixture


@pytest.fixture(params=["cgroup", "proc"])
def mode(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment the CLI (and so the launchers it starts) runs with."""
    if request.param == "cgroup" and not cgroup_writable():
        unavailable("no writable cgroup v2 here (run as root on a host with cgroup v2)")
    return {CGROUP_SETTING: "off"} if request.param == "proc" else {}


def configure(cli: CLI, *arguments: str, extra: str = "") -> None:
    cli.write(
        "main.train.hcl",
        'compute "local" {\n  type = "local"\n}\n'
        'run "daemon" {\n'
        '  experiment   = "daemons"\n'
        "  compute      = compute.local\n"
        '  source_dir   = "src"\n'
        '  script       = "train.py"\n'
        f"  arguments    = {json.dumps(list(arguments))}\n"
        '  grace_period = "1s"\n'
        f"{extra}"
        "}\n",
    )
    cli.write("src/train.py", DAEMON_SCRIPT)


def show(cli: CLI) -> dict[str, Any]:
    return dict(json.loads(ok(cli("runs", "show", "run.daemon", "--json")).out))


def started(cli: CLI, reap: list[int], **env: str) -> dict[str, int]:
    ok(cli("apply", "-auto-approve", "--detach", timeout=60, **env))
    pids: dict[str, int] = wait_until(
        "the run to start its daemon",
        lambda: pids_in(cli("runs", "logs", "run.daemon").out),
        timeout=60,
    )
    reap.extend(pids.values())
    assert running(pids["daemon"]) and running(pids["main"])
    return pids


def test_runs_cancel_stops_the_daemon(cli: CLI, mode: dict[str, str], reap: list[int]) -> None:
    configure(cli, "stubborn")
    pids = started(cli, reap, **mode)
    assert "canceled" in ok(cli("runs", "cancel", "run.daemon", **mode)).out
    wait_gone([pids["daemon"], pids["main"]], "after runs cancel")


def test_max_duration_stops_the_daemon(cli: CLI, reap: list[int]) -> None:
    configure(cli, "stubborn", extra='  max_duration = "2s"\n')
    failed(cli("apply", "-auto-approve", timeout=120), "timed out")
    pids = pids_in(ok(cli("runs", "logs", "run.daemon")).out)
    reap.extend(pids.values())
    assert show(cli)["status"] == "timed_out"
    wait_gone([pids["daemon"], pids["main"]], "after max_duration")


def test_destroy_stops_the_daemon(cli: CLI, reap: list[int]) -> None:
    configure(cli)
    pids = started(cli, reap)
    ok(cli("destroy", "-auto-approve", timeout=60))
    wait_gone([pids["daemon"], pids["main"]], "after destroy")


def test_a_completed_run_stops_the_daemon_it_left_and_says_so(cli: CLI, reap: list[int]) -> None:
    configure(cli, "exit")
    applied = ok(cli("apply", "-auto-approve", timeout=120))
    pids = pids_in(ok(cli("runs", "logs", "run.daemon")).out)
    reap.extend(pids.values())
    assert show(cli)["status"] == "completed"
    wait_gone([pids["daemon"]], "after the run completed")
    assert "stopped 1 process(es) it left running" in applied.out, applied.out


def test_runs_cancel_after_the_launcher_was_killed_stops_the_daemon(
    cli: CLI, mode: dict[str, str], reap: list[int]
) -> None:
    configure(cli, "stubborn")
    pids = started(cli, reap, **mode)
    run_id = show(cli)["id"]
    status = cli.cwd / ".trainform" / "local" / "runs" / run_id / "status.json"
    launcher = int(json.loads(status.read_text())["launcher_pid"])
    os.kill(launcher, signal.SIGKILL)
    wait_gone([launcher], "the launcher killed with SIGKILL")
    assert running(pids["daemon"]) and running(pids["main"])
    ok(cli("runs", "cancel", "run.daemon", **mode))
    wait_gone([pids["daemon"], pids["main"]], "after runs cancel")
    cgroup = json.loads(status.read_text()).get("cgroup")
    assert (cgroup is not None) == (mode == {})
    assert cgroup is None or not Path(cgroup).exists(), f"cgroup {cgroup} left behind"
