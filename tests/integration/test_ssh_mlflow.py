"""Scripts that log through MLflow, unchanged, on ssh compute: what they log is read while they
run, over the compute's SSH connection, through the real CLI against a real OpenSSH server on
127.0.0.1 (logging in as tfuser).

The run's environment is a virtualenv of the system python3 with mlflow-skinny 3
(`mlflow_any_user_python`, tests/mlflow_targets.py): tfuser cannot run the root-made test
environments. trainform installs nothing; the launcher on the host finds MLflow there.

Covered: a run's metrics and params shown by `runs metrics` while its script is still waiting
(for a file the test creates on the host), and by `runs show` after it; a sweep whose bandit
policy stops a trial that only calls `mlflow.log_metric`, which could not end otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from helpers import ok
from mlflow_targets import (
    GATED,
    TRIAL,
    assert_bad_trial_stopped,
    assert_gated_run_recorded,
    bandit_sweep,
    environment_block,
    wait_for_gated_points,
)
from test_ssh_compute import (  # noqa: F401 (reap_runs: an autouse fixture for this module too)
    compute_block,
    reap_runs,
    run_block,
    run_show,
)

if TYPE_CHECKING:  # fixtures' types; pytest provides the objects
    from tests.conftest import CLI
    from tests.integration.conftest import SSHServer, UserKey


def test_mlflow_metrics_are_read_while_the_run_runs_over_ssh(
    cli: CLI, sshd: SSHServer, user_key: UserKey, remote_tmp: str, mlflow_any_user_python: str
) -> None:
    gate = Path(remote_tmp) / "gate"
    cli.write(
        "main.train.hcl",
        compute_block(sshd, f"{remote_tmp}/tf", key=user_key)
        + environment_block(mlflow_any_user_python)
        + run_block(environment="environment.mlflow", env={"GATE": str(gate)}),
    )
    cli.write("src/train.py", GATED)
    ok(cli("apply", "-auto-approve", "--detach"))

    wait_for_gated_points(cli, "run.train")  # the script is waiting for the gate
    assert run_show(cli)["status"] == "running"
    gate.touch()
    ok(cli("runs", "wait", "run.train"))
    assert_gated_run_recorded(run_show(cli))


def test_bandit_policy_stops_an_mlflow_trial_over_ssh(
    cli: CLI, sshd: SSHServer, user_key: UserKey, remote_tmp: str, mlflow_any_user_python: str
) -> None:
    cli.write(
        "main.train.hcl",
        compute_block(sshd, f"{remote_tmp}/tf", key=user_key)
        + environment_block(mlflow_any_user_python)
        + bandit_sweep("compute.box", "environment.mlflow"),
    )
    cli.write("src/train.py", TRIAL)
    ok(cli("apply", "-auto-approve", timeout=110))
    assert_bad_trial_stopped(json.loads(ok(cli("sweeps", "show", "tune", "--json")).out))
