"""MLflow inside runs, through the real CLI: unchanged MLflow scripts run under MLflow 2.x
(mlflow-skinny 2.22 with scikit-learn), 3.x (full) and 3.x skinny, each a user-managed
environment of its own (tests/mlflow_envs.py); what they log (params, metrics with steps,
tags, artifacts, logged models, nested and further runs) shown by `runs show`; autolog with
scikit-learn; metrics read while the run runs (`runs metrics --follow`) and by a sweep's bandit
policy; a user-set MLFLOW_TRACKING_URI respected; NaN, inf, odd names, 100,000 points and a
500 MB artifact; and the README's MLflow section run verbatim.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import CLI, block_after, ok, wait_until
from mlflow_envs import interpreter

LOCAL = 'compute "local" {\n  type = "local"\n  max_concurrent_runs = 4\n}\n'


def environment(env: str) -> str:
    return (
        f'environment "ml" {{\n  python       = "{interpreter(env)}"\n  user_managed = true\n}}\n'
    )


def run_block(name: str, script: str, extra: str = "") -> str:
    return (
        f'run "{name}" {{\n'
        '  experiment  = "mlflow-tests"\n'
        "  compute     = compute.local\n"
        "  environment = environment.ml\n"
        '  source_dir  = "src"\n'
        f'  script      = "{script}"\n'
        f"{extra}"
        "}\n"
    )


def show(cli: CLI, ref: str) -> dict:
    return json.loads(ok(cli("runs", "show", ref, "--json")).out)


def points(cli: CLI, ref: str) -> list[dict]:
    return json.loads(ok(cli("runs", "metrics", ref, "--json")).out)["points"]


def local_run_dir(cli: CLI, run_id: str) -> Path:
    """The run's own folder on local compute (where its launcher ran)."""
    return cli.cwd / ".trainform" / "local" / "runs" / run_id


# -- an unchanged MLflow example script

EXAMPLE = """\
import mlflow

with mlflow.start_run(run_name="main"):
    mlflow.log_param("lr", 0.1)
    mlflow.log_params({"epochs": 3, "optimizer": "adam"})
    mlflow.set_tag("team", "vision")
    for step in range(3):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    with open("notes.txt", "w") as fh:
        fh.write("what the run learnt")
    mlflow.log_artifact("notes.txt")
    mlflow.log_artifact("notes.txt", artifact_path="reports/daily")
    with mlflow.start_run(run_name="fold", nested=True):
        mlflow.log_param("lr", 0.5)
        mlflow.log_metric("loss", 9.0)
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:  # mlflow-skinny alone has no scikit-learn
        pass
    else:
        model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
        if int(mlflow.__version__.split(".")[0]) >= 3:
            mlflow.sklearn.log_model(model, name="classifier")
        else:
            mlflow.sklearn.log_model(model, artifact_path="classifier")

with mlflow.start_run(run_name="evaluation"):
    mlflow.log_metric("score", 0.75)
print("example done")
"""


@pytest.mark.parametrize("env", ["mlflow2", "mlflow3", "mlflow3-skinny"])
def test_an_unchanged_mlflow_script_is_captured(cli: CLI, tmp_path: Path, env: str) -> None:
    cli.write("main.train.hcl", LOCAL + environment(env) + run_block("example", "example.py"))
    cli.write("src/example.py", EXAMPLE)
    applied = ok(cli("apply", "-auto-approve", timeout=300))
    assert "example done" in applied.out, applied.out

    run = show(cli, "run.example")
    assert run["status"] == "completed", run
    # The first MLflow run is the run's own; the nested one and the second one are prefixed.
    assert run["params"] == {"lr": "0.1", "epochs": "3", "optimizer": "adam", "fold/lr": "0.5"}
    loss = run["metrics"]["loss"]
    assert (loss["count"], loss["min"], loss["max"], loss["last_step"]) == (3, 1 / 3, 1.0, 2)
    assert run["metrics"]["fold/loss"]["last"] == 9.0
    assert run["metrics"]["evaluation/score"]["last"] == 0.75
    tags = run["logged_tags"]
    assert tags["team"] == "vision"
    assert tags["mlflow.runName"] == "main"
    assert tags["fold/mlflow.runName"] == "fold"
    assert not [t for t in tags if t.endswith("mlflow.user") or "parentRunId" in t], tags
    steps = sorted(p["step"] for p in points(cli, "run.example") if p["name"] == "loss")
    assert steps == [0, 1, 2]  # MLflow 3 repeats metric lines when a model is logged

    outputs = tmp_path / "outputs"
    ok(cli("runs", "outputs", "run.example", "--to", str(outputs)))
    for rel in ("notes.txt", "reports/daily/notes.txt"):
        assert (outputs / "mlflow" / "runs" / "main" / rel).read_text() == "what the run learnt"

    models = run["models"]
    if env == "mlflow3-skinny":
        assert models == []
    else:
        where = "mlflow/models/classifier" if env == "mlflow3" else "mlflow/runs/main/classifier"
        assert [(m["name"], m["path"]) for m in models] == [("classifier", where)]
        assert {"sklearn", "python_function"} <= set(models[0]["flavors"])
        assert (outputs / where / "MLmodel").is_file()

    text = ok(cli("runs", "show", "run.example")).out
    assert 'team = "vision"' in text
    assert "fold/loss: 9 / 9 / 9 (1)" in text
    if models:
        assert f"classifier (python_function, sklearn): {where}" in text, text
    log = ok(cli("runs", "logs", "run.example")).out
    assert log.count("what the script logs is captured") == 1, log
    assert "MLflow run 'main' is this run's" in log, log


# -- autolog

# numpy arrays, as real scripts pass: MLflow 3 then logs the training data as a dataset and
# writes its training metrics' lines with the dataset's name and digest after the step.
AUTOLOG = """\
import mlflow
import numpy as np
from sklearn.linear_model import LogisticRegression

mlflow.autolog()
X = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]])
y = np.array([0, 0, 0, 1, 1, 1])
LogisticRegression(C=0.5, max_iter=50).fit(X, y)
"""


@pytest.mark.parametrize("env", ["mlflow2", "mlflow3"])
def test_sklearn_autolog_params_and_metrics_are_in_runs_show(cli: CLI, env: str) -> None:
    cli.write("main.train.hcl", LOCAL + environment(env) + run_block("auto", "auto.py"))
    cli.write("src/auto.py", AUTOLOG)
    ok(cli("apply", "-auto-approve", timeout=300))
    run = show(cli, "run.auto")
    assert run["params"]["C"] == "0.5" and run["params"]["max_iter"] == "50", run["params"]
    assert run["metrics"]["training_accuracy_score"]["last"] == 1.0, run["metrics"]
    assert "training_log_loss" in run["metrics"]
    assert run["logged_tags"]["estimator_name"] == "LogisticRegression"
    assert [m["name"] for m in run["models"]] == ["model"], run["models"]
    text = ok(cli("runs", "show", "run.auto")).out
    assert 'C = "0.5"' in text and "training_accuracy_score: 1 / 1 / 1 (1)" in text, text


# -- read while the run runs

WAITER = """\
import os, time
import mlflow

mlflow.log_param("phase", "warm-up")
mlflow.log_metric("live loss", 0.5, step=1)
go_on = os.environ["GO_ON"]
while not os.path.exists(go_on):
    time.sleep(0.05)
mlflow.log_metric("live loss", 0.25, step=2)
"""


def test_mlflow_metrics_are_followed_while_the_run_runs(cli: CLI, tmp_path: Path) -> None:
    go_on = tmp_path / "go-on"
    extra = f'  env         = {{ GO_ON = "{go_on}" }}\n'
    cli.write(
        "main.train.hcl", LOCAL + environment("mlflow3-skinny") + run_block("live", "w.py", extra)
    )
    cli.write("src/w.py", WAITER)
    ok(cli("apply", "-auto-approve", "--detach", timeout=120))
    follow = cli.popen("runs", "metrics", "run.live", "--follow", "--json")
    seen: list[dict] = []
    reader = threading.Thread(
        target=lambda: seen.extend(json.loads(line) for line in follow.stdout or ()),
        daemon=True,
    )
    reader.start()
    try:
        point = wait_until(
            "runs metrics --follow to print the MLflow metric",
            lambda: next((r for r in list(seen) if r.get("name") == "live loss"), None),
        )
        # The script is still waiting for the file: the point was read while it ran.
        assert show(cli, "run.live")["status"] == "running"
        assert (point["value"], point["step"], point["source"]) == (0.5, 1, "mlflow")
        go_on.touch()
        follow.wait(timeout=120)
        reader.join(timeout=10)
    finally:
        go_on.touch()
        if follow.poll() is None:
            follow.kill()
    assert follow.returncode == 0, follow.stderr.read() if follow.stderr else ""
    live = [(r["value"], r["step"]) for r in seen if r.get("name") == "live loss"]
    assert live == [(0.5, 1), (0.25, 2)], seen
    assert {"kind": "param", "name": "phase", "value": "warm-up"} in seen, seen
    assert show(cli, "run.live")["status"] == "completed"


# -- a sweep over a script that only logs through MLflow

SWEEP_TRAIN = """\
import argparse, math, time
import mlflow

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
args = parser.parse_args()
ceiling = 0.9 - 0.15 * abs(math.log10(args.lr) + 2)
for epoch in range(1, 9):
    time.sleep(0.2)
    mlflow.log_metric("Accuracy", ceiling * (1 - math.exp(-epoch / 2)), step=epoch)
"""


def test_a_bandit_sweep_stops_a_trial_that_logs_only_through_mlflow(cli: CLI) -> None:
    cli.write(
        "main.train.hcl",
        LOCAL + environment("mlflow3-skinny") + 'sweep "tune" {\n'
        '  experiment = "mlflow-tests"\n'
        "  trial {\n"
        "    compute     = compute.local\n"
        "    environment = environment.ml\n"
        '    source_dir  = "src"\n'
        '    script      = "train.py"\n'
        '    arguments   = ["--lr", param.lr]\n'
        "  }\n"
        '  sampling {\n    algorithm = "grid"\n  }\n'
        '  parameter "lr" {\n    distribution = "choice"\n    values       = [0.01, 1.0]\n  }\n'
        '  objective {\n    metric = "Accuracy"\n    goal   = "maximize"\n  }\n'
        "  early_termination {\n"
        '    policy              = "bandit"\n'
        "    slack_factor        = 0.2\n"
        "    evaluation_interval = 1\n"
        "    delay_evaluation    = 3\n"
        "  }\n"
        "  limits {\n    max_total_runs      = 2\n    max_concurrent_runs = 1\n  }\n"
        "}\n",
    )
    cli.write("src/train.py", SWEEP_TRAIN)
    ok(cli("apply", "-auto-approve", timeout=300))
    sweep = json.loads(ok(cli("sweeps", "show", "tune", "--json")).out)
    trials = {t["params"]["lr"]: t for t in sweep["record"]["trials"]}
    good, hopeless = trials[0.01], trials[1.0]
    assert good["status"] == "completed" and good["reports"] == 8, good
    assert hopeless["status"] == "stopped", hopeless
    assert 3 <= hopeless["reports"] < 8, hopeless
    assert "bandit threshold" in hopeless["stopped"], hopeless
    best = sweep["record"]["best"]
    assert best["params"] == {"lr": 0.01}
    assert best["best"] == pytest.approx(0.9 * (1 - math.exp(-4)))


# -- a tracking URI the user set

LOGS_ELSEWHERE = """\
import os
import mlflow

with open(os.path.join(os.environ["TRAINFORM_OUTPUT_DIR"], "uri"), "w") as fh:
    fh.write(mlflow.get_tracking_uri())
if mlflow.get_tracking_uri().startswith("file:"):
    mlflow.log_metric("elsewhere", 1.0)
"""


def test_a_tracking_uri_set_by_the_user_is_respected(cli: CLI, tmp_path: Path) -> None:
    store = tmp_path / "their store"
    secret_uri = "http://alice:s3cret@127.0.0.1:9/"
    cli.write(
        "main.train.hcl",
        LOCAL
        + environment("mlflow3-skinny")
        + run_block(
            "theirs",
            "t.py",
            f'  env         = {{ MLFLOW_TRACKING_URI = "{store.as_uri()}",'
            ' MLFLOW_ALLOW_FILE_STORE = "true" }\n',
        )
        + run_block(
            "remote", "t.py", f'  env         = {{ MLFLOW_TRACKING_URI = "{secret_uri}" }}\n'
        ),
    )
    cli.write("src/t.py", LOGS_ELSEWHERE)
    ok(cli("apply", "-auto-approve", timeout=300))

    for ref, uri, shown in (
        ("run.theirs", store.as_uri(), "(file:)"),
        ("run.remote", secret_uri, "(http://127.0.0.1:9)"),
    ):
        log = ok(cli("runs", "logs", ref)).out
        notes = [line for line in log.splitlines() if "MLFLOW_TRACKING_URI is set" in line]
        assert len(notes) == 1 and shown in notes[0], log
        assert "trainform reads nothing from MLflow" in notes[0]
        assert "s3cret" not in log and "alice" not in log
        assert "captured" not in log, log
        dest = tmp_path / ref
        ok(cli("runs", "outputs", ref, "--to", str(dest)))
        assert (dest / "uri").read_text() == uri
        assert not (dest / "mlflow").exists()
        assert points(cli, ref) == []
        assert not (local_run_dir(cli, show(cli, ref)["id"]) / "mlruns").exists()
    # MLflow logged where the user pointed it.
    assert list(store.glob("*/*/metrics/elsewhere")), list(store.rglob("*"))


# -- bad input

BAD_INPUT = """\
import time
import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric

with mlflow.start_run(run_name="bad input") as run:
    mlflow.log_metric("nan metric", float("nan"))
    mlflow.log_metric("inf metric", float("inf"), step=1)
    mlflow.log_metric("inf metric", float("-inf"), step=2)
    mlflow.log_metric("train/loss per batch", 0.5, step=7)
    mlflow.log_param("optimizer/name", "adam w")
    now = int(time.time() * 1000)
    client = MlflowClient()
    for start in range(0, 100_000, 10_000):
        batch = [Metric("many points", float(i), now, i) for i in range(start, start + 10_000)]
        client.log_batch(run.info.run_id, metrics=batch)
    with open("big.bin", "wb") as fh:
        fh.truncate(500 * 1024 * 1024)  # sparse here; MLflow copies it into its store
    mlflow.log_artifact("big.bin")
"""


def test_nan_odd_names_many_points_and_a_big_artifact(cli: CLI, tmp_path: Path) -> None:
    cli.write("main.train.hcl", LOCAL + environment("mlflow3-skinny") + run_block("bad", "bad.py"))
    cli.write("src/bad.py", BAD_INPUT)
    try:
        ok(cli("apply", "-auto-approve", timeout=600))
        run = show(cli, "run.bad")
        assert run["status"] == "completed", run
        many = run["metrics"]["many points"]
        assert (many["count"], many["min"], many["max"]) == (100_000, 0.0, 99_999.0)
        assert run["metrics"]["train/loss per batch"]["last_step"] == 7
        assert run["params"] == {"optimizer/name": "adam w"}
        by_name: dict[str, list] = {}
        for p in points(cli, "run.bad"):
            by_name.setdefault(p["name"], []).append((p["step"], p["value"], p.get("nonfinite")))
        # Kept in the state as what they were (the export sends them as such).
        assert by_name["nan metric"] == [(0, None, "nan")]
        assert by_name["inf metric"] == [(1, None, "inf"), (2, None, "-inf")]
        assert len(by_name["many points"]) == 100_000

        # The artifact was moved inside the run's folder, not copied there.
        run_dir = local_run_dir(cli, run["id"])
        moved = run_dir / "src" / "outputs" / "mlflow" / "runs" / "bad input" / "big.bin"
        assert moved.stat().st_size == 500 * 1024 * 1024
        assert not list((run_dir / "mlruns").glob("*/*/artifacts/big.bin"))
        collected = Path(run["outputs_path"]) / "mlflow" / "runs" / "bad input" / "big.bin"
        assert collected.stat().st_size == 500 * 1024 * 1024
    finally:
        for big in cli.cwd.rglob("big.bin"):
            big.unlink()


# -- the README's commands


def test_the_readme_mlflow_example_runs_verbatim(cli: CLI) -> None:
    cli.write("main.train.hcl", block_after("<!-- mlflow capture config -->", "hcl"))
    cli.write("src/train.py", block_after("<!-- mlflow capture script -->", "python"))
    env = {
        **cli.env,
        "TRAINFORM_VAR_mlflow_python": str(interpreter("mlflow3-skinny")),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), cli.env.get("PATH", "")]),
    }
    done = subprocess.run(
        ["sh", "-ec", block_after("<!-- mlflow capture commands -->", "sh")],
        cwd=cli.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "Traceback" not in out
    assert 'lr = "0.01"' in out, out
    assert "accuracy: 0.9 / 0.5 / 0.9 (5)" in out, out
    assert 'mlflow.runName = "baseline"' in out, out
    saved = cli.cwd / "saved" / "mlflow" / "runs" / "baseline" / "confusion.txt"
    assert saved.read_text() == "[[5, 1], [0, 6]]\n"
