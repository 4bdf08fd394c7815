"""Reading what a finished run left in its folder: metrics, params, logged tags and models,
and the outputs path."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

# A metrics stream comes from the target and is not trusted: a line that has not ended after
# MAX_LINE bytes is dropped whole (a metric line is far shorter).
MAX_LINE = 1 << 20

# Most tags and logged models kept of one run (a script may log any number).
MAX_TAGS = 1000
MAX_MODELS = 1000


def parse_stream(lines: Iterable[str]) -> dict[str, Any]:
    """What lines of a metrics stream (``metrics.jsonl``, see :mod:`trainform.capture`) hold:
    ``points`` (metric points), ``params`` and ``logged_tags`` (name: value, the last one
    logged), ``models`` (``{"name", "path", "flavors", "source"}``, path relative to the
    outputs folder). Bad lines are skipped (a script killed mid-write must not make its other
    metrics unreadable), and so are tags and models past :data:`MAX_TAGS` and
    :data:`MAX_MODELS`."""
    points: list[dict[str, Any]] = []
    params: dict[str, Any] = {}
    tags: dict[str, str] = {}
    models: list[dict[str, Any]] = []
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("name"), str):
            continue
        kind = rec.get("kind", "metric")
        if kind == "param":
            params[rec["name"]] = rec.get("value")
        elif kind == "tag":
            if rec["name"] in tags or len(tags) < MAX_TAGS:
                tags[rec["name"]] = str(rec.get("value"))
        elif kind == "model":
            flavors = rec.get("flavors")
            if isinstance(rec.get("path"), str) and len(models) < MAX_MODELS:
                models.append(
                    {
                        "name": rec["name"],
                        "path": rec["path"],
                        "flavors": [str(f) for f in flavors] if isinstance(flavors, list) else [],
                        "source": str(rec.get("source", "")),
                    }
                )
        elif kind == "metric":
            points.append(_point(rec))
    return {"points": points, "params": params, "logged_tags": tags, "models": models}


_NONFINITE = ("nan", "inf", "-inf")


def _point(rec: dict[str, Any]) -> dict[str, Any]:
    """A metric line as a point whose fields have the types the state's columns hold
    (whatever a script wrote: a value that is not a finite number is None, with
    ``nonfinite`` when the line says which non-finite number it was)."""
    step = rec.get("step")
    point: dict[str, Any] = {
        "name": rec["name"],
        "step": step
        if isinstance(step, int) and not isinstance(step, bool) and -(2**63) <= step < 2**63
        else None,
        "value": _finite(rec.get("value")),
        "time": _finite(rec.get("time")),
        "source": str(rec.get("source", "client")),
    }
    if point["value"] is None and rec.get("nonfinite") in _NONFINITE:
        point["nonfinite"] = rec["nonfinite"]
    return point


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, or None (not a number, not finite, too big)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def parse_points(lines: Iterable[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Metric points and params of lines of a metrics stream (see :func:`parse_stream`)."""
    found = parse_stream(lines)
    return found["points"], found["params"]


def read_stream(path: Path) -> dict[str, Any]:
    """:func:`parse_stream` of a metrics.jsonl file (nothing for a missing one), read a line
    at a time: the file came from the target, so a line longer than MAX_LINE is skipped
    whole, never held."""
    try:
        with path.open("rb") as fh:
            return parse_stream(_bounded_lines(fh))
    except OSError:
        return parse_stream([])


def _bounded_lines(fh: BinaryIO) -> Iterator[str]:
    while line := fh.readline(MAX_LINE + 1):
        if len(line) > MAX_LINE:
            while line and not line.endswith(b"\n"):  # the rest of the long line
                line = fh.readline(MAX_LINE + 1)
            continue
        yield line.decode("utf-8", "replace")


def read_points(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Metric points and params from a metrics.jsonl file (see :func:`parse_stream`)."""
    found = read_stream(path)
    return found["points"], found["params"]


def summarise(points: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per metric: last value, min, max, number of points, last step."""
    out: dict[str, dict[str, Any]] = {}
    for p in points:
        value = p.get("value")
        if (
            not isinstance(value, (int, float))
            or isinstance(value, bool)
            or not math.isfinite(value)
        ):
            continue
        s = out.setdefault(p["name"], {"last": value, "min": value, "max": value, "count": 0})
        s["last"] = value
        s["min"] = min(s["min"], value)
        s["max"] = max(s["max"], value)
        s["count"] += 1
        s["last_step"] = p.get("step")
    return out


def read_results(run_dir: Path) -> dict[str, Any]:
    """Summary of a collected run folder: outputs path, params, metric summary and points,
    logged tags and models (see :func:`read_stream`)."""
    found = read_stream(run_dir / "metrics.jsonl")
    return {
        "outputs_path": str(run_dir / "outputs"),
        "params": found["params"],
        "metrics": summarise(found["points"]),
        "points": found["points"],
        "logged_tags": found["logged_tags"],
        "models": found["models"],
    }


def judge_liveness(
    status: dict[str, Any], launcher_alive: bool, group_alive: bool, where: str
) -> dict[str, Any]:
    """A run's status once it is known whether its launcher (``where``: "pid 12" or "on
    host-a") and the process group it started still live. A launcher that vanished without
    recording an outcome leaves a run ``lost``, but only once nothing it started runs any
    more: until then the run is still ``running`` (so it is neither collected early nor
    submitted a second time beside itself)."""
    from trainform.providers.base import TERMINAL

    if status.get("status") in TERMINAL or launcher_alive:
        return status
    if group_alive:
        return {
            **status,
            "status": "running",
            "message": f"the launcher ({where}) is gone but the command it started still "
            f"runs (process group {status.get('pgid')}); its exit code will not be known",
        }
    return {
        **status,
        "status": "lost",
        "message": f"the launcher ({where}) ended without recording an outcome; see "
        "launcher.err in the run folder",
    }
