"""What a run's script prints, captured through the real CLI: regex metrics whose value is on
the line after its label (``metrics = { acc = { pattern = "...", lines = 2 } }``), bad
``metrics`` entries refused at plan time, and such a pattern in a sweep's trial template; and
Azure ML v1 scripts run unchanged in a real azureml-core environment (tests/mlflow_envs.py):
Azure ML's own train-on-local sample as the README shows it, a sample-style script using
log_list, log_row, log_table, tags and uploads, and a HyperDrive-style sweep over Azure ML's
sklearn sample that picks its best trial by the ``Accuracy`` it logs. The samples are in
tests/azureml_samples, byte for byte as Azure ML ships them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import CLI, README, block_after, failed, ok
from mlflow_envs import interpreter

SAMPLES = Path(__file__).resolve().parents[1] / "azureml_samples"
WHAT_IS_CAPTURED = "### What is captured"

LOCAL = """\
compute "local" {
  type                = "local"
  max_concurrent_runs = 2
}
"""


def environment(python: Path) -> str:
    return f'environment "azureml" {{\n  python       = "{python}"\n  user_managed = true\n}}\n'


def run_block(name: str, script: str, extra: str = "") -> str:
    return (
        f'run "{name}" {{\n  experiment = "capture"\n  compute    = compute.local\n'
        f'  source_dir = "src"\n  script     = "{script}"\n{extra}}}\n'
    )


def show(cli: CLI, ref: str) -> dict:
    return json.loads(ok(cli("runs", "show", ref, "--json")).out)


def metric_points(cli: CLI, ref: str) -> list[dict]:
    return json.loads(ok(cli("runs", "metrics", ref, "--json")).out)["points"]


def values(points: list[dict], name: str) -> list[tuple[int, float | None]]:
    return [(p["step"], p["value"]) for p in points if p["name"] == name]


# -- regex metrics over several lines


PRINTS = """\
for epoch, acc in enumerate([0.5, 0.75, 0.875]):
    print(f"epoch {epoch}")
    print("Accuracy:")
    print(acc, flush=True)
print("Accuracy:")
print("(not measured)")
"""


def test_a_value_on_the_next_line_is_captured_with_lines_2(cli: CLI) -> None:
    readme = block_after(WHAT_IS_CAPTURED, "hcl")  # the README's metrics, verbatim
    assert "lines = 2" in readme
    cli.write("main.train.hcl", LOCAL + run_block("prints", "p.py", readme))
    cli.write("src/p.py", PRINTS)
    ok(cli("apply", "-auto-approve"))
    points = metric_points(cli, "run.prints")
    assert values(points, "acc") == [(0, 0.5), (1, 0.75), (2, 0.875)]
    assert values(points, "loss") == []
    assert {p["source"] for p in points} == {"log"}
    assert show(cli, "run.prints")["metrics"]["acc"]["last"] == 0.875

    # The patterns decide nothing the script computes: changing them updates in place.
    cli.write("main.train.hcl", LOCAL + run_block("prints", "p.py", readme.replace("2 }", "3 }")))
    plan = ok(cli("plan")).out
    assert "run.prints will be updated in-place" in plan, plan
    assert "resubmit" not in plan, plan


def test_bad_metrics_entries_are_refused_at_plan_time(cli: CLI) -> None:
    entries = (
        "  metrics    = {\n"
        '    a = { pattern = "a=([0-9]+)", lines = 11 }\n'
        '    b = { pattern = "b=([0-9]+)", line = 2 }\n'
        '    c = "no group"\n'
        "    d = { lines = 2 }\n"
        '    e = { pattern = "(x)(y)" }\n'
        '    f = { pattern = "f\\n([0-9]+)", lines = 1.5 }\n'
        '    g = "ok=([0-9]+)"\n'
        "  }\n"
    )
    cli.write("main.train.hcl", LOCAL + "\n" + run_block("bad", "p.py", entries))
    cli.write("src/p.py", "print('never runs')\n")
    result = failed(
        cli("plan"),
        "run.bad: metrics.a: lines must be a whole number from 1 to 10, got 11",
        "run.bad: metrics.b: unknown key 'line'",
        "run.bad: metrics.c: the regular expression needs exactly one group, has 0",
        'run.bad: metrics.d: "pattern" is required',
        "run.bad: metrics.e: the regular expression needs exactly one group, has 2",
        "run.bad: metrics.f: lines must be a whole number from 1 to 10, got 1.5",
        "main.train.hcl:6",
    )
    assert "metrics.g" not in result.all
    failed(cli("apply", "-auto-approve"), "metrics.a")
    assert json.loads(ok(cli("runs", "list", "--json")).out) == []


# -- Azure ML v1: Run.get_context() outside Azure ML


def test_the_readme_azure_ml_sample_runs_unchanged(cli: CLI) -> None:
    python = interpreter("azureml")
    cli.write("main.train.hcl", block_after("Azure ML's own sample", "hcl"))
    shutil.copytree(SAMPLES / "train-on-local", cli.cwd / "src")
    env = {
        **cli.env,
        "TRAINFORM_VAR_azureml_python": str(python),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), cli.env.get("PATH", "")]),
    }
    script = block_after("With the variable given", "sh")
    assert script.startswith("trainform apply")
    done = subprocess.run(
        ["bash", "-c", "set -e\n" + script],
        cwd=cli.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr

    points = metric_points(cli, "run.ridge")
    alphas = values(points, "alpha")
    assert [step for step, _ in alphas] == list(range(20))
    assert [v for _, v in alphas] == pytest.approx([i * 0.05 for i in range(20)])
    mse = values(points, "mse")
    assert len(mse) == 20 and all(3000 < v < 4000 for _, v in mse), mse
    assert {p["source"] for p in points} == {"azureml"}
    summary = show(cli, "run.ridge")["metrics"]
    assert summary["mse"]["count"] == 20 and summary["mse"]["min"] < summary["mse"]["max"]
    saved = sorted(p.name for p in (cli.cwd / "models").iterdir())
    assert saved == [f"ridge_{i * 0.05:.2f}.pkl" for i in range(20)]
    # The README's sentence about it says what the test found.
    assert "`alpha` and `mse`, 20 points each" in README.read_text()
    assert "`ridge_*.pkl` files" in README.read_text()


SAMPLE_STYLE = """\
import os

import numpy as np
from azureml.core import Run

run = Run.get_context()
run.tag("team", "vision")
run.set_tags({"dataset": "iris", "fold": 3})
run.add_properties({"owner": "ml-team"})
run.log("kernel", "rbf")
for epoch in range(3):
    run.log("Accuracy", 0.8 + epoch / 20)
    run.log_row("per epoch", epoch=epoch, loss=1.0 / (epoch + 1))
run.log_list("losses", np.array([0.5, 0.25, np.nan]))
run.log_table("curve", {"recall": [0.1, 0.5], "precision": [0.9, 0.7]})
run.log_image("plot", path="report.txt")

os.makedirs("outputs", exist_ok=True)
with open("outputs/model.txt", "w") as f:
    f.write("weights")
with open("report.txt", "w") as f:
    f.write("a report")
os.makedirs("plots", exist_ok=True)
with open("plots/roc.txt", "w") as f:
    f.write("roc")
run.upload_file("reports/report.txt", "report.txt")
run.upload_file("outputs/copy.txt", "./report.txt")
run.upload_folder("plots", "plots")
run.upload_file("../escape.txt", "report.txt")
run.complete()
"""


def test_an_azure_ml_script_logs_lists_rows_tables_tags_and_uploads(cli: CLI) -> None:
    python = interpreter("azureml")
    cli.write(
        "main.train.hcl",
        LOCAL
        + environment(python)
        + run_block("aml", "train.py", "  environment = environment.azureml\n"),
    )
    cli.write("src/train.py", SAMPLE_STYLE)
    ok(cli("apply", "-auto-approve"))
    run = show(cli, "run.aml")
    assert run["status"] == "completed", run
    points = metric_points(cli, "run.aml")
    assert values(points, "Accuracy") == [(0, 0.8), (1, pytest.approx(0.85)), (2, 0.9)]
    assert values(points, "per epoch/loss") == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
    assert values(points, "per epoch/epoch") == [(0, 0.0), (1, 1.0), (2, 2.0)]
    assert values(points, "losses") == [(0, 0.5), (1, 0.25), (2, None)]
    assert values(points, "curve/recall") == [(0, 0.1), (1, 0.5)]
    assert values(points, "curve/precision") == [(0, 0.9), (1, 0.7)]
    assert not {"kernel", "plot"} & {p["name"] for p in points}
    assert run["metrics"]["Accuracy"]["last"] == 0.9
    assert run["logged_tags"] == {
        "team": "vision",
        "dataset": "iris",
        "fold": "3",
        "owner": "ml-team",
    }
    table = ok(cli("runs", "metrics", "run.aml")).out
    assert "per epoch/loss" in table and "curve/recall" in table, table

    outputs = Path(run["outputs_path"])
    found = {str(p.relative_to(outputs)): p.read_text() for p in outputs.rglob("*") if p.is_file()}
    assert found == {
        "model.txt": "weights",
        "reports/report.txt": "a report",
        "copy.txt": "a report",
        "plots/roc.txt": "roc",
    }
    log = ok(cli("runs", "logs", "run.aml")).out
    assert "Azure ML metric kernel is not a number: not captured" in log, log
    assert "Azure ML log_image (plot) is not captured" in log, log
    assert "'../escape.txt' is not a relative path inside the outputs" in log, log


HDCONFIG = """\
sampling:
    type: grid
    parameter_space:
    - name: --kernel
      expression: choice
      values: [linear, sigmoid]
    - name: --penalty
      expression: choice
      values: [0.01, 0.1]
policy:
    type: NoTerminationPolicy
primary_metric_name: Accuracy
primary_metric_goal: Maximize
max_total_runs: 4
max_concurrent_runs: 2
"""

# Accuracy of Azure ML's train_iris.py on iris' test split, per (kernel, penalty).
IRIS = {
    ("linear", 0.01): 32 / 38,
    ("linear", 0.1): 37 / 38,
    ("sigmoid", 0.01): 9 / 38,
    ("sigmoid", 0.1): 9 / 38,
}


def test_a_sweep_over_azure_mls_sklearn_sample_finds_the_best_accuracy(cli: CLI) -> None:
    python = interpreter("azureml")
    shutil.copytree(SAMPLES / "sklearn-hyperdrive", cli.cwd / "src")
    cli.write("hdconfig.yml", HDCONFIG)
    cli.write(
        "main.train.hcl",
        LOCAL
        + environment(python)
        + 'sweep "iris" {\n  experiment        = "iris"\n  hyperdrive_config = "hdconfig.yml"\n'
        "  trial {\n    compute     = compute.local\n    environment = environment.azureml\n"
        '    source_dir  = "src"\n    script      = "train_iris.py"\n  }\n}\n',
    )
    result = ok(cli("apply", "-auto-approve", timeout=300))
    assert "no trial reported" not in result.all
    record = json.loads(ok(cli("sweeps", "show", "iris", "--json")).out)["record"]
    trials = record["trials"]
    assert len(trials) == 4 and all(t["status"] == "completed" for t in trials), trials
    for t in trials:
        expected = IRIS[(t["params"]["--kernel"], t["params"]["--penalty"])]
        assert t["best"] == pytest.approx(expected), t
    best = record["best"]
    assert best["best"] == pytest.approx(37 / 38), best
    assert "Accuracy = 0.973684 with --kernel=linear, --penalty=0.1" in result.out, result.out


def test_a_sweep_trial_template_takes_a_several_line_pattern(cli: CLI) -> None:
    cli.write(
        "src/p.py",
        "import sys\n"
        'lr = float(sys.argv[sys.argv.index("--lr") + 1])\n'
        "for epoch in range(3):\n"
        '    print("Accuracy:")\n'
        "    print(round(1 - abs(lr - 0.1) - 0.1 / (epoch + 1), 4), flush=True)\n",
    )
    trial = (
        '  trial {\n    compute    = compute.local\n    source_dir = "src"\n'
        '    script     = "p.py"\n'
        '    metrics    = { acc = { pattern = "^Accuracy:\\n([0-9.]+)$", lines = 2 } }\n  }\n'
    )
    cli.write(
        "main.train.hcl",
        LOCAL + 'sweep "lr" {\n  experiment = "lr"\n  sampling {\n    algorithm = "grid"\n  }\n'
        '  parameter "--lr" {\n    distribution = "choice"\n    values       = [0.01, 0.1, 0.5]\n'
        '  }\n  objective {\n    metric = "acc"\n    goal   = "maximize"\n  }\n'
        "  limits {\n    max_total_runs      = 3\n    max_concurrent_runs = 2\n  }\n"
        f"{trial}}}\n",
    )
    result = ok(cli("apply", "-auto-approve", timeout=180))
    assert "acc = 0.9667 with --lr=0.1" in result.out, result.out
    record = json.loads(ok(cli("sweeps", "show", "lr", "--json")).out)["record"]
    bests = {t["params"]["--lr"]: t["best"] for t in record["trials"]}
    assert bests == {0.01: 0.8767, 0.1: 0.9667, 0.5: 0.5667}, bests
