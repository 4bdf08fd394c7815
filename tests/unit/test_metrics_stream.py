"""Reading a running run's metrics stream from here (trainform.runs.metrics_stream): a real
growing file read in pieces, as a provider's ``metrics(handle, offset)`` returns it (at most
``piece`` bytes per call, like the 1 MiB of the real providers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainform.providers.local import read_from
from trainform.runs import metrics_stream
from trainform.runs.metrics_stream import MetricsStream


class FileReader:
    """The run provider's ``read_metrics`` over a file on this machine, ``piece`` bytes a call."""

    def __init__(self, path: Path, piece: int) -> None:
        self.path = path
        self.piece = piece
        self.calls = 0

    def read_metrics(self, computed: dict[str, Any], offset: int) -> tuple[bytes, int]:
        self.calls += 1
        return read_from(self.path, offset, self.piece)


def metric(name: str, value: float, step: int) -> str:
    return json.dumps({"kind": "metric", "name": name, "value": value, "step": step}) + "\n"


def test_lines_are_passed_on_whole_as_they_arrive(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    stream = MetricsStream(FileReader(path, piece=7), {})
    assert stream.read() == ([], {})  # no file yet

    first = metric("loss", 0.5, 0) + json.dumps({"kind": "param", "name": "lr", "value": "0.1"})
    path.write_text(first + "\n" + metric("loss", 0.25, 1)[:10])  # the last line unfinished
    points, params = stream.read()
    assert [(p["name"], p["value"], p["step"]) for p in points] == [("loss", 0.5, 0)]
    assert params == {"lr": "0.1"}

    with path.open("a") as fh:
        fh.write(metric("loss", 0.25, 1)[10:])
    points, params = stream.read()
    assert [(p["value"], p["step"]) for p in points] == [(0.25, 1)] and params == {}
    assert stream.read() == ([], {})


def test_an_overlong_line_is_dropped_and_the_next_ones_are_read(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setattr(metrics_stream, "MAX_LINE", 100)
    path = tmp_path / "metrics.jsonl"
    stream = MetricsStream(FileReader(path, piece=64), {})
    path.write_text(metric("a", 1, 0) + '{"name": "' + "x" * 150)
    points, _ = stream.read()
    assert [p["name"] for p in points] == ["a"]
    assert stream.partial == b"" and stream.skipping  # not kept in memory
    with path.open("a") as fh:
        fh.write("x" * 300 + '", "value": 1}\n' + metric("b", 2, 1))
    points, _ = stream.read()
    assert [p["name"] for p in points] == ["b"]
    assert not stream.skipping


def test_one_read_stops_after_its_budget(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(metrics_stream, "READ_BUDGET", 200)
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(metric("m", i, i) for i in range(50)))
    reader = FileReader(path, piece=100)
    stream = MetricsStream(reader, {})
    first, _ = stream.read()
    assert 0 < len(first) < 50 and reader.calls == 2
    rest: list[dict[str, Any]] = []
    while batch := stream.read()[0]:
        rest += batch
    assert [p["step"] for p in first + rest] == list(range(50))
