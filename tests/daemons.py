"""A training script that leaves a daemon behind (fork, ``setsid``, fork), as a run that starts
a server, a data-loading service or a tool's background helper does, and checks that it is
gone. Shared by the launcher tests, the local end-to-end tests and the SSH tests of "every
process a run started stops" (importable as `daemons`, like `helpers`)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Iterator

import pytest

# argv: any of
#   stubborn   the daemon ignores SIGTERM (only SIGKILL stops it)
#   clean-env  the daemon execs a new program with an empty environment (no marker)
#   exit       the main process exits at once (the run completes, the daemon stays)
# It prints "daemon PID" and "main PID" once the daemon runs, then sleeps unless told to exit.
DAEMON_SCRIPT = """\
import os, signal, sys, time

mode = sys.argv[1:]
read_end, write_end = os.pipe()
if os.fork() == 0:
    os.close(read_end)
    if os.fork() > 0:
        os._exit(0)
    os.setsid()  # leaves the run's session and process group
    if os.fork() > 0:
        os._exit(0)  # the daemon is orphaned: its parent is no longer the run's process
    if "stubborn" in mode:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.chdir("/")
    os.write(write_end, str(os.getpid()).encode())
    os.close(write_end)
    if "clean-env" in mode:
        os.execve(sys.executable, [sys.executable, "-c", "import time; time.sleep(300)"], {})
    time.sleep(300)
    os._exit(0)
os.close(write_end)
daemon = b""
while True:
    chunk = os.read(read_end, 64)
    if not chunk:
        break
    daemon += chunk
print("daemon", daemon.decode(), flush=True)
print("main", os.getpid(), flush=True)
if "exit" not in mode:
    time.sleep(300)
"""


def pids_in(log: str) -> dict[str, int]:
    """``{"daemon": pid, "main": pid}`` from the script's output (empty until it printed)."""
    found = dict(re.findall(r"^(daemon|main) (\d+)$", log, re.M))
    return {k: int(v) for k, v in found.items()} if len(found) == 2 else {}


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is dead: only its exit status is left)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def wait_gone(pids: list[int], what: str, timeout: float = 5.0) -> None:
    """Fail unless every pid has ended within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while any(running(p) for p in pids):
        if time.monotonic() > deadline:
            alive = [p for p in pids if running(p)]
            pytest.fail(f"{what}: pid(s) {alive} still running {timeout:g} s later")
        time.sleep(0.05)


@pytest.fixture
def reap() -> Iterator[list[int]]:
    """Pids a test saw its runs start; any still running at the end are killed, so a failing
    test leaves no 300-second sleeper behind."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if running(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def cgroup_writable() -> bool:
    """Whether this process may create a child of its own cgroup v2 (as root on most hosts;
    not in an unprivileged container or an unprivileged login session)."""
    from trainform.runs.launcher import _cgroup2_own_dir

    parent, _ = _cgroup2_own_dir()
    if parent is None:
        return False
    probe = os.path.join(parent, f"trainform-probe-{os.getpid()}")
    try:
        os.mkdir(probe)
    except OSError:
        return False
    os.rmdir(probe)
    return True
