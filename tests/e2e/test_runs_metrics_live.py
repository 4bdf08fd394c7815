"""`runs metrics` of a run that is still running, through the real CLI on local compute: the
points and params logged so far are read from the run's target (not only once the run is
collected), and `--follow` prints each as it arrives until the run ends, as text or JSON
lines. (The same on ssh, docker-cluster and container targets, with MLflow-logged metrics:
tests/integration/test_ssh_mlflow.py, tests/docker/test_mlflow_containers.py.)"""

from __future__ import annotations

import json
from pathlib import Path

from helpers import CLI, ok, wait_until

# Logs a param and two points, waits (at most a minute) for the file GATE names, logs a third.
SCRIPT = """\
import os, time
from trainform.tracking import log_metric, log_param

log_param("lr", 0.5)
log_metric("loss", 1.0, step=0)
log_metric("loss", 0.5, step=1)
deadline = time.time() + 60
while not os.path.exists(os.environ["GATE"]) and time.time() < deadline:
    time.sleep(0.05)
log_metric("loss", 0.25, step=2)
"""


def configure(cli: CLI, gate: Path) -> None:
    cli.write("src/train.py", SCRIPT)
    cli.write(
        "main.train.hcl",
        'compute "local" {\n  type = "local"\n}\n'
        'run "train" {\n'
        '  experiment = "live"\n'
        "  compute    = compute.local\n"
        '  source_dir = "src"\n'
        '  script     = "train.py"\n'
        f'  env        = {{ GATE = "{gate}" }}\n'
        "}\n",
    )


def test_runs_metrics_shows_what_a_running_run_logged_so_far(cli: CLI, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    configure(cli, gate)
    ok(cli("apply", "-auto-approve", "--detach"))
    seen = wait_until(
        "the two points logged before the gate",
        lambda: (
            len((m := json.loads(ok(cli("runs", "metrics", "run.train", "--json")).out))["points"])
            == 2
            and m
        ),
    )
    assert seen["params"] == {"lr": 0.5}, seen
    assert seen["summary"]["loss"]["last"] == 0.5, seen
    table = ok(cli("runs", "metrics", "run.train")).out
    assert "loss" in table and "0.5" in table, table
    assert json.loads(ok(cli("runs", "show", "run.train", "--json")).out)["status"] == "running"

    gate.touch()
    ok(cli("runs", "wait", "run.train"))
    done = json.loads(ok(cli("runs", "metrics", "run.train", "--json")).out)
    assert [p["value"] for p in done["points"]] == [1.0, 0.5, 0.25], done


def test_runs_metrics_follow_prints_points_as_they_arrive_until_the_run_ends(
    cli: CLI, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    configure(cli, gate)
    ok(cli("apply", "-auto-approve", "--detach"))
    follow = cli.popen("runs", "metrics", "run.train", "--follow", "--json")
    try:
        assert follow.stdout is not None
        lines = [json.loads(follow.stdout.readline()) for _ in range(3)]
        # The run waits for the gate: these arrived while it ran.
        assert lines[0] == {"kind": "param", "name": "lr", "value": 0.5}, lines
        assert [(r["name"], r["value"], r["step"]) for r in lines[1:]] == [
            ("loss", 1.0, 0),
            ("loss", 0.5, 1),
        ], lines
        assert follow.poll() is None
        gate.touch()
        rest, err = follow.communicate(timeout=60)
    finally:
        follow.kill()
    assert follow.returncode == 0, err
    last = [json.loads(line) for line in rest.splitlines()]
    assert [(r["kind"], r["value"], r["step"]) for r in last] == [("metric", 0.25, 2)], rest
    # It recorded how the run ended, as runs wait would have.
    run = json.loads(ok(cli("runs", "show", "run.train", "--json")).out)
    assert run["status"] == "completed" and run["metrics"]["loss"]["count"] == 3, run

    # A finished run: its collected points, as text, and the command ends at once.
    text = ok(cli("runs", "metrics", "run.train", "--follow")).out.splitlines()
    assert text == [
        "param lr = 0.5",
        "loss = 1 (step 0)",
        "loss = 0.5 (step 1)",
        "loss = 0.25 (step 2)",
    ], text
