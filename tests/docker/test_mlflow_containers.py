"""Scripts that log through MLflow, unchanged, in containers, through the real CLI and a real
Docker engine: a run in a container environment on local compute and a run on a docker-cluster
node, each showing its MLflow metrics and params through `runs metrics` while the script is
still waiting (for a file the test creates in its container), and through `runs show` after
it; and a sweep on a docker-cluster whose bandit policy stops a trial that only calls
`mlflow.log_metric`.

The image is `mlflow_image` (tests/mlflow_targets.py): the base image with mlflow-skinny in
/opt/mlflow, built offline from a wheelhouse of the test environment. trainform installs
nothing; the launcher in the container finds MLflow there. Each test checks with
`no_leftovers` that nothing of its configuration folder remains in the engine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import CLI, ok
from mlflow_targets import (
    GATED,
    IMAGE_PYTHON,
    TRIAL,
    assert_bad_trial_stopped,
    assert_gated_run_recorded,
    bandit_sweep,
    environment_block,
    wait_for_gated_points,
)

pytestmark = pytest.mark.usefixtures("no_leftovers")

GATE = "/tmp/go"


def cluster_block(image: str) -> str:
    return (
        'compute "cpu" {\n'
        '  type         = "docker-cluster"\n'
        f'  node_image   = "{image}"\n'
        "  min_nodes    = 1\n"
        "  max_nodes    = 1\n"
        "}\n"
    )


def run_block(compute: str) -> str:
    return (
        'run "train" {\n'
        '  experiment  = "mlflow-targets"\n'
        f"  compute     = {compute}\n"
        "  environment = environment.mlflow\n"
        '  source_dir  = "src"\n'
        '  script      = "train.py"\n'
        f'  env         = {{ GATE = "{GATE}" }}\n'
        '  max_duration = "2m"\n'
        "}\n"
    )


def run_show(cli: CLI) -> dict[str, Any]:
    return dict(json.loads(ok(cli("runs", "show", "run.train", "--json")).out))


def open_gate(docker_client: Any, label: str) -> None:
    """Create GATE in every container labelled ``label`` (the run's, or the cluster's nodes)."""
    containers = docker_client.containers.list(filters={"label": label})
    assert containers, f"no running container labelled {label}"
    for container in containers:
        code, out = container.exec_run(["touch", GATE])
        assert code == 0, out


def destroy(cli: CLI, docker_client: Any, tmp_path: Path) -> None:
    from docker_engine import managed

    ok(cli("destroy", "-auto-approve", timeout=120))
    assert managed(docker_client, tmp_path) == []


def test_mlflow_metrics_are_read_while_the_run_runs_in_a_container_environment(
    cli: CLI, mlflow_image: str, docker_client: Any
) -> None:
    cli.write(
        "main.train.hcl",
        'compute "local" {\n  type = "local"\n}\n'
        + environment_block(IMAGE_PYTHON, docker=mlflow_image)
        + run_block("compute.local"),
    )
    cli.write("src/train.py", GATED)
    ok(cli("apply", "-auto-approve", "--detach"))

    wait_for_gated_points(cli, "run.train")  # the script is waiting for the gate
    run_id = run_show(cli)["id"]
    open_gate(docker_client, f"trainform.run_id={run_id}")
    ok(cli("runs", "wait", "run.train"))
    assert_gated_run_recorded(run_show(cli))


def test_mlflow_metrics_are_read_while_the_run_runs_on_a_docker_cluster(
    cli: CLI, mlflow_image: str, docker_client: Any, tmp_path: Path
) -> None:
    cli.write(
        "main.train.hcl",
        cluster_block(mlflow_image) + environment_block(IMAGE_PYTHON) + run_block("compute.cpu"),
    )
    cli.write("src/train.py", GATED)
    ok(cli("apply", "-auto-approve", "--detach"))

    wait_for_gated_points(cli, "run.train")  # the script is waiting for the gate
    cluster_id = json.loads(ok(cli("compute", "show", "cpu", "--json")).out)["cluster_id"]
    open_gate(docker_client, f"trainform.cluster={cluster_id}")
    ok(cli("runs", "wait", "run.train"))
    assert_gated_run_recorded(run_show(cli))
    destroy(cli, docker_client, tmp_path)


def test_bandit_policy_stops_an_mlflow_trial_on_a_docker_cluster(
    cli: CLI, mlflow_image: str, docker_client: Any, tmp_path: Path
) -> None:
    cli.write(
        "main.train.hcl",
        cluster_block(mlflow_image)
        + environment_block(IMAGE_PYTHON)
        + bandit_sweep("compute.cpu", "environment.mlflow"),
    )
    cli.write("src/train.py", TRIAL)
    ok(cli("apply", "-auto-approve", timeout=110))
    assert_bad_trial_stopped(json.loads(ok(cli("sweeps", "show", "tune", "--json")).out))
    destroy(cli, docker_client, tmp_path)
