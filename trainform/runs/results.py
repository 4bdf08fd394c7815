"""Reading what a finished run left in its folder: metrics, params and the outputs path."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def read_points(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Metric points and params from a metrics.jsonl file (bad lines are skipped: a script
    killed mid-write must not make its other metrics unreadable)."""
    points: list[dict[str, Any]] = []
    params: dict[str, Any] = {}
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return points, params
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("name"), str):
            continue
        if rec.get("kind") == "param":
            params[rec["name"]] = rec.get("value")
        elif rec.get("kind", "metric") == "metric":
            points.append(
                {
                    "name": rec["name"],
                    "step": rec.get("step"),
                    "value": rec.get("value"),
                    "time": rec.get("time"),
                    "source": rec.get("source", "client"),
                }
            )
    return points, params


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
    """Summary of a collected run folder: outputs path, params, metric summary and points."""
    points, params = read_points(run_dir / "metrics.jsonl")
    return {
        "outputs_path": str(run_dir / "outputs"),
        "params": params,
        "metrics": summarise(points),
        "points": points,
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
