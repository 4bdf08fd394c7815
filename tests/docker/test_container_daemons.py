"""Every process a run started stops in a container too, against the real Docker engine: the
launcher inside the container (where /sys/fs/cgroup is read-only, so it uses its /proc
fallback) stops a daemon the run double-forked when the run completes, and a cancel leaves
no container, hence no process, behind.

Fixtures: `cli` (tests/conftest.py); `base_image`, `docker_client` and `no_leftovers`
(tests/docker/conftest.py).
"""

from __future__ import annotations

import json
from typing import Any

from daemons import DAEMON_SCRIPT, pids_in
from helpers import ok, wait_until

CONFIG = """\
compute "local" {
  type = "local"
}
environment "base" {
  docker {
    image = "trainform/base:latest"
  }
}
run "daemon" {
  experiment   = "containers"
  compute      = compute.local
  environment  = environment.base
  source_dir   = "src"
  script       = "train.py"
  arguments    = %s
  grace_period = "1s"
}
"""


def show(cli: Any) -> dict[str, Any]:
    return dict(json.loads(ok(cli("runs", "show", "run.daemon", "--json")).out))


def test_a_daemon_in_a_container_is_stopped_when_the_run_completes(
    cli: Any, base_image: str, docker_client: Any, no_leftovers: None
) -> None:
    cli.write("src/train.py", DAEMON_SCRIPT)
    cli.write("main.train.hcl", CONFIG % json.dumps(["exit"]))
    applied = ok(cli("apply", "-auto-approve", timeout=300))
    assert show(cli)["status"] == "completed"
    pids = pids_in(ok(cli("runs", "logs", "run.daemon")).out)
    assert pids, applied.out
    # in the container's pid namespace: the launcher says it stopped the daemon
    assert f"it left running: {pids['daemon']} (python" in applied.out, applied.out


def test_canceling_a_run_in_a_container_stops_its_daemon(
    cli: Any, base_image: str, docker_client: Any, no_leftovers: None
) -> None:
    cli.write("src/train.py", DAEMON_SCRIPT)
    cli.write("main.train.hcl", CONFIG % json.dumps(["stubborn"]))
    ok(cli("apply", "-auto-approve", "--detach", timeout=300))
    wait_until(
        "the run to start its daemon",
        lambda: pids_in(cli("runs", "logs", "run.daemon").out),
        timeout=120,
    )
    run_id = show(cli)["id"]
    container = next(
        c for c in docker_client.containers.list(filters={"label": f"trainform.run_id={run_id}"})
    )
    top = container.top(ps_args="-eo pid,args")["Processes"]
    assert any("train.py stubborn" in " ".join(p) for p in top), top
    assert "canceled" in ok(cli("runs", "cancel", "run.daemon", timeout=60)).out
    wait_until(
        "the run's container (and every process in it) to be gone",
        lambda: (
            not docker_client.containers.list(
                all=True, filters={"label": f"trainform.run_id={run_id}"}
            )
        ),
        timeout=30,
    )
