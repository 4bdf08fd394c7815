"""`trainform runs compare` through the real CLI: two applies of one run with a different
learning rate (a variable), compared by id: the differing param is marked and the same one is
not; `--metric` charts both runs in one chart with a legend, leaving out a NaN and naming a run
without the metric; `--json`; a sweep's trials; the errors; and the README's commands on the
quick-start example, verbatim."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from helpers import CLI, applied_quickstart, base_env, block_after, failed, ok

CONFIG = """\
variable "lr" {
  type    = number
  default = 0.1
}

compute "local" {
  type = "local"
}

run "train" {
  experiment = "tests"
  compute    = compute.local
  source_dir = "src"
  script     = "train.py"
  arguments  = ["--lr", var.lr]
}

run "probe" {
  experiment = "tests"
  compute    = compute.local
  source_dir = "src"
  script     = "probe.py"
}
"""

TRAIN = """\
import sys

from trainform.tracking import log_metric, log_param

lr = float(sys.argv[2])
log_param("lr", lr)
log_param("epochs", 8)
for step in range(8):
    log_metric("loss", 10.0 / (1 + lr * step * 4), step=step)
    log_metric("accuracy", 0.5 + lr * step / 20, step=step)
log_metric("loss", float("nan"), step=8)
"""

PROBE = """\
from trainform.tracking import log_metric

log_metric("accuracy", 0.25, step=0)
"""


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> tuple[CLI, str, str, str]:
    """run.train applied with lr 0.1 and then 0.5, and run.probe once: (cli, the first
    run's id, the second's, the probe's)."""
    folder = tmp_path_factory.mktemp("compare") / "config"
    cli = CLI(folder, base_env())
    cli.write("main.train.hcl", CONFIG)
    cli.write("src/train.py", TRAIN)
    cli.write("src/probe.py", PROBE)
    ok(cli("apply", "-auto-approve"))
    ok(cli("apply", "-auto-approve", "-var", "lr=0.5"))
    runs = json.loads(ok(cli("runs", "list", "--json")).out)
    train = [r["id"] for r in runs if r["address"] == "run.train"]
    probe = [r["id"] for r in runs if r["address"] == "run.probe"]
    assert len(train) == 2 and len(probe) == 1, runs
    newest, oldest = train
    return cli, oldest, newest, probe[0]


def row(text: str, label: str) -> str:
    """The table line whose label is ``label`` (after the marker column)."""
    found = re.search(rf"^[* ]\s+{re.escape(label)}  .*$", text, re.M)
    assert found, f"no row {label!r} in\n{text}"
    return found.group(0)


def test_compare_marks_the_rows_that_differ(applied) -> None:
    cli, first, second, _ = applied
    text = ok(cli("runs", "compare", first, second)).out
    header = text.splitlines()[0]
    assert header.index(first) < header.index(second), text
    assert re.fullmatch(r"\*\s+lr\s+0\.1\s+0\.5\s*", row(text, "lr")), text
    assert re.fullmatch(r" \s+epochs\s+8\s+8\s*", row(text, "epochs")), text  # the same: no *
    assert row(text, "loss last").startswith("*"), text
    assert row(text, "loss min (best)").startswith("*"), text
    best = row(text, "accuracy max (best)")  # accuracy is maximised, by its name
    assert re.fullmatch(r"\*\s+accuracy max \(best\)\s+0\.535\s+0\.675\s*", best), text
    assert "* marks a row whose values differ" in text, text
    # the same runs named by address and id give the same table
    assert ok(cli("runs", "compare", first, "run.train")).out == text


def test_compare_charts_one_metric_of_every_run(applied) -> None:
    cli, first, second, probe = applied
    text = ok(cli("runs", "compare", first, second, probe, "--metric", "loss")).out
    chart = text[text.index("loss over steps 0 .. 7") :]
    plot = [line.split("|", 1)[1] for line in chart.splitlines() if "|" in line]
    assert len(plot) == 12, chart
    assert any("*" in line for line in plot) and any("o" in line for line in plot), chart
    assert f"  * {first} (run.train) (8 points, 1 not finite, left out)" in chart, chart
    assert f"  o {second} (run.train) (8 points, 1 not finite, left out)" in chart, chart
    assert f"{probe} (run.probe) has no metric 'loss'" in chart, chart
    assert "nan" not in chart.lower(), chart

    data = json.loads(ok(cli("runs", "compare", first, second, "--metric", "loss", "--json")).out)
    assert [r["id"] for r in data["runs"]] == [first, second]
    assert data["params"]["lr"] == {"values": [0.1, 0.5], "differs": True}
    assert data["params"]["epochs"] == {"values": [8, 8], "differs": False}
    loss = data["metrics"]["loss"]
    assert loss["goal"] == "min" and loss["goal_from"] == "name"
    assert loss["last"]["differs"] and loss["points"] == [8, 8]
    assert loss["best"]["values"][0] == pytest.approx(10 / (1 + 0.1 * 7 * 4))
    series = data["chart"]["series"]
    assert [s["run"] for s in series] == [first, second]
    assert [p[0] for p in series[0]["points"]] == list(range(8))
    assert series[0]["skipped"] == 1 and data["chart"]["missing"] == []

    goal = json.loads(ok(cli("runs", "compare", first, second, "--goal", "loss=max", "--json")).out)
    assert goal["metrics"]["loss"]["best"]["values"] == [10.0, 10.0]
    assert goal["metrics"]["loss"]["best"]["differs"] is False


def test_the_existing_single_run_chart_skips_what_is_not_finite(applied) -> None:
    cli, first, _, _ = applied
    chart = ok(cli("runs", "metrics", first, "--chart", "loss")).out
    assert chart.splitlines()[0] == "loss over 8 points (step 0 .. 7); 1 not finite, left out"


def test_compare_errors(applied) -> None:
    cli, first, second, probe = applied
    failed(cli("runs", "compare", first), "at least two runs", first)
    failed(cli("runs", "compare", first, first), "at least two runs")
    failed(cli("runs", "compare"), "at least two runs")
    failed(cli("runs", "compare", first, "run.trian"), "no run 'run.trian'", "did you mean")
    failed(
        cli("runs", "compare", first, second, "--metric", "nonsense"),
        "none of the runs has a metric 'nonsense'",
        "'accuracy', 'loss'",
    )
    failed(cli("runs", "compare", first, probe, "--goal", "loss"), "NAME=min or NAME=max")
    failed(cli("runs", "compare", first, "--sweep", "nope"), "no sweep 'nope'")


def test_compare_the_trials_of_a_sweep(cli: CLI) -> None:
    cli.write(
        "main.train.hcl",
        'compute "local" {\n  type = "local"\n  max_concurrent_runs = 2\n}\n\n'
        'sweep "tune" {\n'
        '  experiment = "tests"\n'
        "  trial {\n"
        "    compute    = compute.local\n"
        '    source_dir = "src"\n'
        '    script     = "train.py"\n'
        '    arguments  = ["--lr", param.lr]\n'
        "  }\n"
        '  sampling {\n    algorithm = "grid"\n  }\n'
        '  parameter "lr" {\n    distribution = "choice"\n    values       = [0.2, 0.4]\n  }\n'
        '  objective {\n    metric = "loss"\n    goal   = "maximize"\n  }\n'
        "  limits {\n    max_total_runs      = 2\n    max_concurrent_runs = 2\n  }\n"
        "}\n",
    )
    # The script logs no params: the sweep's hyperparameters are what compare shows.
    cli.write("src/train.py", TRAIN.replace('log_param("lr", lr)\n', ""))
    ok(cli("apply", "-auto-approve", timeout=180))
    text = ok(cli("runs", "compare", "--sweep", "tune")).out
    assert re.fullmatch(r"\*\s+lr\s+0\.2\s+0\.4\s*", row(text, "lr")), text
    assert row(text, "loss max (best)"), text  # the sweep's objective, not the name's rule
    assert "sweep.tune[0]" in text and "sweep.tune[1]" in text, text
    data = json.loads(ok(cli("runs", "compare", "--sweep", "tune", "--json")).out)
    assert [r["sweep"]["trial"] for r in data["runs"]] == [0, 1]
    assert data["metrics"]["loss"]["goal_from"] == "sweep"
    assert data["metrics"]["loss"]["best"]["values"] == [10.0, 10.0]


def test_readme_compare_commands_run_verbatim(tmp_path: Path) -> None:
    """The README's `runs compare` sequence, after the quick start (init and apply)."""
    cli = applied_quickstart(tmp_path)
    env = cli.env
    script = block_after("**Comparing runs.**", "sh")
    proc = subprocess.run(
        ["sh", "-c", "set -e\n" + script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert re.search(r"^\*\s+lr\s+0\.5\s+0\.1\s*$", out, re.M), out
    assert re.search(r"^ \s+epochs\s+10\s+10\s*$", out, re.M), out
    assert "loss over steps 0 .. 9" in out, out
    assert len(re.findall(r"^  [*o] train-\S+ \(run\.train\) \(10 points\)$", out, re.M)) == 2, out
