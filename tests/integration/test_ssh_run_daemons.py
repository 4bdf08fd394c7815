"""Every process a run started stops on an SSH host, through the real CLI against a real
OpenSSH server on 127.0.0.1, as the unprivileged user tfuser: a run that double-forks a
daemon (fork, setsid, fork) leaves nothing behind after `runs cancel`, `max_duration`,
`destroy`, its normal end, or `runs cancel` once its launcher was killed with SIGKILL.

tfuser may not create a cgroup here (its processes sit in a root-owned cgroup), so these
runs use the launcher's fallback: the process group, the launcher's descendants (it is a
child subreaper) and the processes carrying the run's launch marker.

Fixtures: `cli` (tests/conftest.py); the server, `tfuser` and keys
(tests/integration/conftest.py). Helpers come from tests/helpers.py, tests/daemons.py and
test_ssh_compute.py.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemons import DAEMON_SCRIPT, pids_in, reap, running, wait_gone
from helpers import failed, ok, wait_until
from test_ssh_compute import (  # noqa: F401 (reap_runs: an autouse fixture for this module too)
    ENVIRONMENT,
    compute_block,
    reap_runs,
    run_show,
)

if TYPE_CHECKING:  # fixtures' types; pytest provides the objects
    from tests.conftest import CLI
    from tests.integration.conftest import SSHServer, TestUser, UserKey

__all__ = ["reap"]  # a fixture


RUN = """\
run "train" {
  experiment   = "ssh-daemons"
  compute      = compute.box
  environment  = environment.system
  source_dir   = "src"
  script       = "train.py"
  arguments    = %s
  grace_period = "1s"
%s}
"""


def configure(
    cli: CLI, sshd: SSHServer, key: UserKey, remote_tmp: str, *arguments: str, extra: str = ""
) -> None:
    run = RUN % (json.dumps(list(arguments)), extra)
    cli.write(
        "main.train.hcl", compute_block(sshd, f"{remote_tmp}/tf", key=key) + ENVIRONMENT + run
    )
    cli.write("src/train.py", DAEMON_SCRIPT)


def run_dir(cli: CLI, remote_tmp: str) -> Path:
    return Path(remote_tmp) / "tf" / "runs" / run_show(cli)["id"]


def started(cli: CLI, reap: list[int], tfuser: TestUser) -> dict[str, int]:
    ok(cli("apply", "--auto-approve", "--detach", timeout=120))
    pids: dict[str, int] = wait_until(
        "the run to start its daemon on the host",
        lambda: pids_in(cli("runs", "logs", "run.train").out),
        timeout=60,
    )
    reap.extend(pids.values())
    assert running(pids["daemon"]) and running(pids["main"])
    assert Path(f"/proc/{pids['daemon']}").stat().st_uid == tfuser.uid
    return pids


def cgroup_of(cli: CLI, remote_tmp: str) -> Any:
    """The cgroup the run had on the host (None: the fallback was used)."""
    return json.loads((run_dir(cli, remote_tmp) / "status.json").read_text()).get("cgroup")


def test_runs_cancel_stops_the_daemon_on_the_host(
    cli: CLI,
    sshd: SSHServer,
    user_key: UserKey,
    remote_tmp: str,
    tfuser: TestUser,
    reap: list[int],
) -> None:
    configure(cli, sshd, user_key, remote_tmp, "stubborn")
    pids = started(cli, reap, tfuser)
    assert "canceled" in ok(cli("runs", "cancel", "run.train", timeout=60)).out
    wait_gone([pids["daemon"], pids["main"]], "after runs cancel")
    if cgroup_of(cli, remote_tmp) is None:
        log = (run_dir(cli, remote_tmp) / "launcher.log").read_text()
        assert "tracking its processes through /proc" in log, log


def test_max_duration_stops_the_daemon_on_the_host(
    cli: CLI, sshd: SSHServer, user_key: UserKey, remote_tmp: str, reap: list[int]
) -> None:
    configure(cli, sshd, user_key, remote_tmp, "stubborn", extra='  max_duration = "3s"\n')
    failed(cli("apply", "--auto-approve", timeout=120), "timed out")
    pids = pids_in(ok(cli("runs", "logs", "run.train")).out)
    reap.extend(pids.values())
    assert run_show(cli)["status"] == "timed_out"
    wait_gone([pids["daemon"], pids["main"]], "after max_duration")


def test_destroy_stops_the_daemon_on_the_host(
    cli: CLI,
    sshd: SSHServer,
    user_key: UserKey,
    remote_tmp: str,
    tfuser: TestUser,
    reap: list[int],
) -> None:
    configure(cli, sshd, user_key, remote_tmp)
    pids = started(cli, reap, tfuser)
    ok(cli("destroy", "--auto-approve", timeout=120))
    wait_gone([pids["daemon"], pids["main"]], "after destroy")


def test_a_completed_run_stops_the_daemon_it_left_on_the_host(
    cli: CLI, sshd: SSHServer, user_key: UserKey, remote_tmp: str, reap: list[int]
) -> None:
    configure(cli, sshd, user_key, remote_tmp, "exit")
    applied = ok(cli("apply", "--auto-approve", timeout=120))
    pids = pids_in(ok(cli("runs", "logs", "run.train")).out)
    reap.extend(pids.values())
    assert run_show(cli)["status"] == "completed"
    wait_gone([pids["daemon"]], "after the run completed")
    assert "stopped 1 process(es) it left running" in applied.out, applied.out


def test_runs_cancel_after_the_launcher_was_killed_stops_the_daemon_on_the_host(
    cli: CLI,
    sshd: SSHServer,
    user_key: UserKey,
    remote_tmp: str,
    tfuser: TestUser,
    reap: list[int],
) -> None:
    """No launcher is left to stop the run: the cancel finds the run's main process by its
    process group, and the daemon (re-parented to init, in a session of its own) by the
    launch marker in its environment."""
    configure(cli, sshd, user_key, remote_tmp, "stubborn")
    pids = started(cli, reap, tfuser)
    status = run_dir(cli, remote_tmp) / "status.json"
    launcher = int(json.loads(status.read_text())["launcher_pid"])
    os.kill(launcher, signal.SIGKILL)
    wait_gone([launcher], "the launcher killed with SIGKILL")
    assert running(pids["daemon"]) and running(pids["main"])
    ok(cli("runs", "cancel", "run.train", timeout=60))
    wait_gone([pids["daemon"], pids["main"]], "after runs cancel")
