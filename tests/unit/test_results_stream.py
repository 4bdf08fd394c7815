"""Reading a run's metrics stream into what the state keeps: whatever a script wrote into
TRAINFORM_METRICS_FILE, each point gets the types the state's columns hold (PostgreSQL
refuses a string in a double precision column), and a non-finite point says what it was."""

from __future__ import annotations

import json
from pathlib import Path

from trainform.runs.results import MAX_LINE, parse_stream, read_stream


def test_points_get_the_column_types_whatever_the_script_wrote() -> None:
    lines = [
        {"kind": "metric", "name": "ok", "value": 0.5, "step": 3, "time": 1.5},
        {"kind": "metric", "name": "text", "value": "abc", "step": "4", "time": "now"},
        {"kind": "metric", "name": "huge", "value": 10**400, "step": 2**70},
        {"kind": "metric", "name": "flag", "value": True, "step": False},
        {"kind": "metric", "name": "nan", "value": None, "nonfinite": "nan", "step": 0},
        {"kind": "metric", "name": "odd", "value": None, "nonfinite": "plenty"},
        {"kind": "metric", "name": "list", "value": [1], "source": ["x"]},
    ]
    got = {
        p["name"]: p for p in parse_stream([json.dumps(x) for x in lines] + ["[1]", "7"])["points"]
    }
    assert got["ok"] == {"name": "ok", "step": 3, "value": 0.5, "time": 1.5, "source": "client"}
    for name in ("text", "huge", "flag", "list", "odd"):
        assert got[name]["value"] is None and "nonfinite" not in got[name], got[name]
    assert got["text"]["step"] is None and got["text"]["time"] is None
    assert got["huge"]["step"] is None and got["flag"]["step"] is None
    assert got["list"]["source"] == "['x']"
    assert got["nan"]["nonfinite"] == "nan" and got["nan"]["value"] is None


def test_a_collected_stream_is_read_a_line_at_a_time_and_an_overlong_line_is_dropped(
    tmp_path: Path,
) -> None:
    """A metrics.jsonl from the target with a line past MAX_LINE (valid JSON, a 3 MiB name):
    that line is dropped whole, the lines around it are read."""
    path = tmp_path / "metrics.jsonl"
    line = {"kind": "metric", "name": "loss", "value": 0.5, "step": 0}
    with path.open("w") as fh:
        fh.write(json.dumps(line) + "\n")
        fh.write(json.dumps({**line, "name": "x" * (3 * MAX_LINE)}) + "\n")
        fh.write(json.dumps({**line, "step": 1}) + "\n")
        fh.write(json.dumps({**line, "step": 2}))  # no end: a script killed mid-write
    points = read_stream(path)["points"]
    assert [(p["name"], p["step"]) for p in points] == [("loss", 0), ("loss", 1), ("loss", 2)]
    assert read_stream(tmp_path / "missing.jsonl")["points"] == []
