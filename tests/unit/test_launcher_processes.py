"""Every process a run started stops: a daemon the run double-forks (fork, setsid, fork) is
gone after a cancel, a time limit, the run's normal end, and a cancel after its launcher was
killed with SIGKILL; with a cgroup of the run's own ("cgroup", where this machine lets root
make one) and with the fallback that finds processes through /proc ("proc",
``TRAINFORM_LAUNCHER_CGROUP=off``). The launcher runs as ``python3 launcher.py RUN_DIR`` in a
real process, as on targets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from daemons import DAEMON_SCRIPT, cgroup_writable, pids_in, reap, running, wait_gone
from helpers import unavailable
from test_launcher import LAUNCHER, Run, launcher_env

from trainform.runs.launcher import CGROUP_SETTING, LAUNCH_MARKER

__all__ = ["reap"]  # a fixture


@pytest.fixture(params=["cgroup", "proc"])
def mode(request: pytest.FixtureRequest) -> str:
    if request.param == "cgroup" and not cgroup_writable():
        unavailable("no writable cgroup v2 here (run as root on a host with cgroup v2)")
    return str(request.param)


def start(run: Run, mode: str) -> subprocess.Popen[str]:
    return run.start({CGROUP_SETTING: "off"} if mode == "proc" else {})


def started(run: Run, reap: list[int]) -> dict[str, int]:
    run.wait_for(lambda: bool(pids_in(run.output)) and run.status.get("status") == "running")
    pids = pids_in(run.output)
    reap.extend(pids.values())
    assert running(pids["daemon"]) and running(pids["main"])
    return pids


def check_mode(run: Run, mode: str) -> None:
    cgroup = run.status.get("cgroup")
    if mode == "cgroup":
        assert cgroup, run.status
        assert not os.path.exists(cgroup), f"the run's cgroup {cgroup} was left behind"
    else:
        assert cgroup is None, run.status
        assert "tracking its processes through /proc" in (run.dir / "launcher.log").read_text()


def test_cancel_stops_a_daemon_the_run_forked(tmp_path: Path, mode: str, reap: list[int]) -> None:
    run = Run(tmp_path, {"train.py": DAEMON_SCRIPT}, grace_seconds=1)
    proc = start(run, mode)
    try:
        pids = started(run, reap)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 1
    finally:
        proc.kill()
        proc.wait()
    assert run.status["status"] == "canceled"
    wait_gone([pids["daemon"], pids["main"]], "after cancel")
    check_mode(run, mode)


def test_time_limit_stops_a_daemon_that_ignores_sigterm(
    tmp_path: Path, mode: str, reap: list[int]
) -> None:
    run = Run(
        tmp_path,
        {"train.py": DAEMON_SCRIPT},
        arguments=["stubborn"],
        max_duration=2,
        grace_seconds=0.5,
    )
    proc = start(run, mode)
    try:
        pids = started(run, reap)
        assert proc.wait(timeout=60) == 1
    finally:
        proc.kill()
        proc.wait()
    assert run.status["status"] == "timed_out"
    wait_gone([pids["daemon"], pids["main"]], "after the time limit")
    check_mode(run, mode)


def test_a_daemon_left_by_a_completed_run_is_stopped(
    tmp_path: Path, mode: str, reap: list[int]
) -> None:
    run = Run(tmp_path, {"train.py": DAEMON_SCRIPT}, arguments=["exit"])
    proc = start(run, mode)
    try:
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()
    pids = pids_in(run.output)
    reap.extend(pids.values())
    assert run.status["status"] == "completed", run.status
    wait_gone([pids["daemon"]], "after the run completed")
    assert "stopped 1 process(es) it left running" in run.output
    assert f"{pids['daemon']} (python" in run.output
    check_mode(run, mode)


def test_a_daemon_with_a_cleared_environment_is_stopped_while_the_launcher_lives(
    tmp_path: Path, mode: str, reap: list[int]
) -> None:
    """No marker in its environment and not in the run's process group: the cgroup holds it,
    or, in the fallback, its parent link to the launcher (a child subreaper) does."""
    run = Run(tmp_path, {"train.py": DAEMON_SCRIPT}, arguments=["clean-env"], grace_seconds=1)
    proc = start(run, mode)
    try:
        pids = started(run, reap)
        assert LAUNCH_MARKER not in Path(f"/proc/{pids['daemon']}/environ").read_text()
        assert int(Path(f"/proc/{pids['daemon']}/stat").read_text().split()[3]) == proc.pid
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 1
    finally:
        proc.kill()
        proc.wait()
    wait_gone([pids["daemon"], pids["main"]], "after cancel")
    check_mode(run, mode)


def stop_command(run: Run, pid: int) -> None:
    """What a cancel runs on the target (`launcher.py --stop`)."""
    out = subprocess.run(
        [sys.executable, str(LAUNCHER), "--stop", str(run.dir), str(pid)],
        env=launcher_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout == "" and out.stderr == "", out


def test_stop_after_the_launcher_was_killed_finds_the_run_and_its_daemon(
    tmp_path: Path, mode: str, reap: list[int]
) -> None:
    run = Run(tmp_path, {"train.py": DAEMON_SCRIPT}, arguments=["stubborn"])
    proc = start(run, mode)
    try:
        pids = started(run, reap)
        proc.kill()  # the launcher alone: the run and its daemon go on without it
        proc.wait()
        assert running(pids["main"]) and running(pids["daemon"])
        stop_command(run, proc.pid)
        wait_gone([pids["daemon"], pids["main"]], "after --stop")
        cgroup = run.status.get("cgroup")
        assert (cgroup is not None) == (mode == "cgroup")
        assert cgroup is None or not os.path.exists(cgroup)
        stop_command(run, proc.pid)  # idempotent
    finally:
        proc.kill()
        proc.wait()


def test_only_the_cgroup_finds_a_cleared_environment_once_the_launcher_is_gone(
    tmp_path: Path, reap: list[int]
) -> None:
    """The fallback's limit, and why a cgroup is used where it can be: an orphan with no
    marker, outside the process group, whose launcher is gone, is found by its cgroup only."""
    if not cgroup_writable():
        unavailable("no writable cgroup v2 here (run as root on a host with cgroup v2)")
    run = Run(tmp_path, {"train.py": DAEMON_SCRIPT}, arguments=["clean-env"])
    proc = start(run, "cgroup")
    try:
        pids = started(run, reap)
        proc.kill()
        proc.wait()
        stop_command(run, proc.pid)
        wait_gone([pids["daemon"], pids["main"]], "after --stop")
    finally:
        proc.kill()
        proc.wait()


def test_stop_with_a_live_launcher_cancels_through_it(tmp_path: Path, reap: list[int]) -> None:
    run = Run(tmp_path, {"train.py": DAEMON_SCRIPT}, grace_seconds=1)
    proc = start(run, "proc")
    try:
        pids = started(run, reap)
        stop_command(run, proc.pid)
        assert proc.wait(timeout=30) == 1
    finally:
        proc.kill()
        proc.wait()
    assert run.status["status"] == "canceled"
    assert run.status["message"] == "canceled (SIGTERM)"
    wait_gone([pids["daemon"], pids["main"]], "after --stop")


def test_stop_leaves_processes_of_other_runs_alone(tmp_path: Path, reap: list[int]) -> None:
    """Two runs of the same run id (two nodes of one run on one host) have different markers:
    stopping one never touches the other."""
    first = Run(tmp_path / "a", {"train.py": DAEMON_SCRIPT})
    second = Run(tmp_path / "b", {"train.py": DAEMON_SCRIPT})
    one, two = start(first, "proc"), start(second, "proc")
    try:
        pids_one, pids_two = started(first, reap), started(second, reap)
        one.kill()
        one.wait()
        stop_command(first, one.pid)
        wait_gone([pids_one["daemon"], pids_one["main"]], "after --stop")
        assert running(pids_two["daemon"]) and running(pids_two["main"])
        assert second.status["status"] == "running"
    finally:
        for proc in (one, two):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    wait_gone([pids_two["daemon"], pids_two["main"]], "after cancel")
