"""The tracking client that training scripts call: what it writes, what it refuses, and that
concurrent writers never interleave lines."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

import trainform
from trainform import tracking
from trainform.tracking import log_metric, log_metrics, log_param


@pytest.fixture
def metrics_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "metrics.jsonl"
    monkeypatch.setenv("TRAINFORM_METRICS_FILE", str(path))
    return path


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_metric_and_param_lines(metrics_file: Path) -> None:
    before = time.time()
    log_metric("loss", 0.25, step=3)
    log_metric("loss", 1)  # ints are recorded as floats; no step
    log_metric("ratio", Fraction(1, 4), step=0)  # type: ignore[arg-type]
    log_param("optimizer", "adam")
    log_param("layers", [64, 64, {"dropout": 0.1}])
    log_param("seed", None)
    lines = read(metrics_file)
    for line in lines:
        assert before <= line.pop("time") <= time.time()
    assert lines == [
        {"kind": "metric", "name": "loss", "value": 0.25, "step": 3},
        {"kind": "metric", "name": "loss", "value": 1.0, "step": None},
        {"kind": "metric", "name": "ratio", "value": 0.25, "step": 0},
        {"kind": "param", "name": "optimizer", "value": "adam"},
        {"kind": "param", "name": "layers", "value": [64, 64, {"dropout": 0.1}]},
        {"kind": "param", "name": "seed", "value": None},
    ]
    assert isinstance(read(metrics_file)[1]["value"], float)


def test_non_finite_values_stay_strict_json(metrics_file: Path) -> None:
    log_metric("loss", math.nan, step=1)
    log_metric("loss", math.inf)
    log_metric("loss", -math.inf)
    text = metrics_file.read_text()
    assert "NaN" not in text and "Infinity" not in text
    lines = [json.loads(line, parse_constant=pytest.fail) for line in text.splitlines()]
    assert [(r["value"], r["nonfinite"]) for r in lines] == [
        (None, "nan"),
        (None, "inf"),
        (None, "-inf"),
    ]
    assert lines[0]["step"] == 1


def test_log_metrics_writes_all_at_one_step(metrics_file: Path) -> None:
    log_metrics({"accuracy": 0.9, "f1": 0.8}, step=7)
    lines = read(metrics_file)
    assert [(r["name"], r["value"], r["step"]) for r in lines] == [
        ("accuracy", 0.9, 7),
        ("f1", 0.8, 7),
    ]
    assert lines[0]["time"] == lines[1]["time"]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: log_metric("", 1.0), ValueError, "must not be empty"),
        (lambda: log_metric("  ", 1.0), ValueError, "must not be empty"),
        (lambda: log_metric(3, 1.0), TypeError, "name must be a str"),  # type: ignore[arg-type]
        (lambda: log_metric("loss", True), TypeError, "real number, not bool"),
        (lambda: log_metric("loss", "0.5"), TypeError, "real number, not str"),  # type: ignore[arg-type]
        (lambda: log_metric("loss", None), TypeError, "real number, not NoneType"),  # type: ignore[arg-type]
        (lambda: log_metric("loss", 1j), TypeError, "real number, not complex"),  # type: ignore[arg-type]
        (lambda: log_metric("loss", 1.0, step=-1), ValueError, "step must be >= 0"),
        (lambda: log_metric("loss", 1.0, step=1.5), TypeError, "step must be an int"),  # type: ignore[arg-type]
        (lambda: log_metric("loss", 1.0, step=True), TypeError, "step must be an int"),
        (lambda: log_metrics({"a": 1.0, "b": "x"}), TypeError, "metric 'b'"),  # type: ignore[dict-item]
        (lambda: log_metrics([("a", 1.0)]), TypeError, "must be a mapping"),  # type: ignore[arg-type]
        (lambda: log_param("", 1), ValueError, "must not be empty"),
        (lambda: log_param("p", object()), TypeError, "cannot be written as JSON"),
        (lambda: log_param("p", {"x": math.nan}), ValueError, "NaN and infinities"),
    ],
)
def test_invalid_input_is_refused_and_nothing_written(
    metrics_file: Path, call: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        call()
    assert not metrics_file.exists()


def test_without_the_variable_nothing_is_written_and_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRAINFORM_METRICS_FILE", raising=False)
    monkeypatch.setattr(tracking, "_warned", False)
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log_metric("loss", 0.5)
        log_metrics({"a": 1.0})
        log_param("p", 1)
    assert len(caught) == 1
    assert "TRAINFORM_METRICS_FILE is not set" in str(caught[0].message)
    assert caught[0].filename == __file__  # points at the caller's line
    assert list(tmp_path.iterdir()) == []
    # Validation still applies: a bug is found when running by hand too.
    with pytest.raises(TypeError):
        log_metric("loss", "x")  # type: ignore[arg-type]


def test_concurrent_threads_never_interleave_lines(metrics_file: Path) -> None:
    threads = 8
    per_thread = 300
    long_name = "x" * 3000  # lines longer than a pipe buffer would be split by naive writes

    def work(i: int) -> None:
        for step in range(per_thread):
            log_metric(f"{long_name}{i}", float(step), step=step)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    lines = read(metrics_file)
    assert len(lines) == threads * per_thread
    for i in range(threads):
        steps = [r["step"] for r in lines if r["name"] == f"{long_name}{i}"]
        assert steps == list(range(per_thread))  # each thread's lines in its own order


def test_concurrent_processes_never_interleave_lines(tmp_path: Path) -> None:
    """Processes using a copy of the module the way targets get it: on PYTHONPATH, alone."""
    lib = tmp_path / "lib" / "trainform"
    lib.mkdir(parents=True)
    package = Path(trainform.__file__).parent
    shutil.copy(package / "__init__.py", lib / "__init__.py")
    shutil.copy(package / "tracking.py", lib / "tracking.py")
    path = tmp_path / "metrics.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(TRAINFORM_METRICS_FILE=str(path), PYTHONPATH=str(tmp_path / "lib"))
    code = (
        "import sys\n"
        "import trainform.tracking as t\n"
        "assert t.__file__.startswith(sys.argv[2]), t.__file__\n"
        "for s in range(400):\n"
        "    t.log_metrics({'m' + sys.argv[1]: s, 'pad' * 500: 0.0}, step=s)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(i), str(tmp_path / "lib")], env=env, cwd=tmp_path
        )
        for i in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    lines = read(path)
    assert len(lines) == 4 * 400 * 2
    for i in range(4):
        assert [r["step"] for r in lines if r["name"] == f"m{i}"] == list(range(400))
