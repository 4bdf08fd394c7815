"""Reading a run's metrics stream into what the state keeps: whatever a script wrote into
TRAINFORM_METRICS_FILE, each point gets the types the state's columns hold (PostgreSQL
refuses a string in a double precision column), and a non-finite point says what it was."""

from __future__ import annotations

import json

from trainform.runs.results import parse_stream


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
