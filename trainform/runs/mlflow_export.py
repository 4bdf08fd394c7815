"""Exporting runs of the history to an MLflow tracking server.

A trainform run becomes one MLflow run in the experiment named like the run's ``experiment``:
its params (for a sweep trial, its hyperparameters too), every metric point with its step and
time, tags that tie it to trainform (``trainform.run_id``, ``trainform.address``,
``trainform.fingerprint``, ``trainform.git_commit``, ``trainform.compute``,
``trainform.snapshot_id``, ``trainform.sweep``), the tags the run logged itself, its status and
times, and its collected outputs as artifacts when the server proxies artifacts.

Export is idempotent. The MLflow run is created carrying only the ``trainform.run_id`` tag, and
the tag ``trainform.exported = complete`` is set as the very last step. A run found complete is
left alone; a run found without it (an earlier export died midway) is deleted (MLflow keeps it
in its trash until ``mlflow gc``) and exported again whole, so a retry never duplicates a
metric point. Two exports of one run at once (a continuous export and ``runs export``) converge:
whoever finishes last deletes every complete copy but one.

The server is reached through :class:`trainform.runs.mlflow_rest.MlflowServer` (MLflow's REST
API over the standard library: trainform does not depend on mlflow).
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import re
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from trainform.errors import TrainformError
from trainform.providers.base import TERMINAL
from trainform.runs.mlflow_rest import (
    MlflowServer,
    MlflowServerError,
    looks_like_id,
    printable,
    shown_uri,
)
from trainform.state.store import StateStore

RUN_ID_TAG = "trainform.run_id"
EXPORTED_TAG = "trainform.exported"
ENDED = (*TERMINAL, "not_started")
STATUS = {"completed": "FINISHED", "canceled": "KILLED"}  # anything else that ended: FAILED

# runs/log-batch limits as MLflow documents and enforces them (mlflow/utils/validation.py).
MAX_METRICS = 1000
MAX_PARAMS = 100
MAX_TAGS = 100
MAX_REQUEST_BYTES = 900_000  # MLflow refuses a log-batch body over 1,000,000 bytes
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000

_KEY = re.compile(r"^[/\w.\- :]*$")  # MLflow's rule for metric, param and tag names
_INT64 = (-(2**63), 2**63)
_NONFINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


@dataclass(frozen=True)
class Exported:
    """What exporting one run did. ``action``: ``exported`` (a new MLflow run), ``replaced``
    (an earlier, cut-off export was deleted and the run exported again), ``unchanged`` (it was
    exported completely before) or ``skipped`` (it has not ended). ``metrics`` counts the
    metric points sent; ``notes`` say what was left out and why."""

    run_id: str
    action: str
    experiment: str
    experiment_id: str = ""
    mlflow_run_id: str = ""
    params: int = 0
    metrics: int = 0
    artifacts: int = 0
    notes: tuple[str, ...] = ()


def _ms(stamp: Any) -> int | None:
    """A history time (ISO 8601) in milliseconds since the epoch, or None."""
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def _key_problem(key: str) -> str:
    """Why MLflow would refuse ``key`` as a metric, param or tag name; "" if it accepts it."""
    if not key or len(key) > MAX_KEY:
        return f"MLflow takes names of 1 to {MAX_KEY} characters"
    if not _KEY.match(key):
        return "MLflow takes only letters, digits, _ - . : / and spaces in names"
    norm = posixpath.normpath(key)
    if norm != key or norm == "." or norm.startswith(("..", "/")):
        return "MLflow takes no name that reads as another path (//, /./, .., a leading /)"
    return ""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _entries(
    values: Mapping[str, Any], what: str, limit: int, notes: list[str]
) -> list[dict[str, str]]:
    """``values`` as MLflow key/value entries: names MLflow refuses left out, values over
    ``limit`` characters cut to it, each with a note."""
    out = []
    for key, value in values.items():
        problem = _key_problem(key)
        if problem:
            notes.append(f"{what} {printable(key)[:80]!r} not exported: {problem}")
            continue
        text = _text(value)
        if len(text) > limit:
            notes.append(f"{what} {key!r} cut to MLflow's {limit} characters")
            text = text[:limit]
        out.append({"key": key, "value": text})
    return out


def _metric(point: Mapping[str, Any], default_ms: int) -> dict[str, Any] | None:
    """A trainform metric point as MLflow's Metric, or None if it has no value. Non-finite
    values are sent as MLflow's JSON spells them ("NaN", "Infinity", "-Infinity")."""
    value = point.get("value")
    nonfinite = point.get("nonfinite")
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        sent: float | str = float(value)
    elif isinstance(value, float):
        sent = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    elif value is None and nonfinite in _NONFINITE:
        sent = _NONFINITE[str(nonfinite)]
    else:
        return None
    step, when = point.get("step"), point.get("time")
    if not isinstance(when, (int, float)) or isinstance(when, bool) or not math.isfinite(when):
        when = default_ms / 1000
    if not isinstance(step, int) or isinstance(step, bool) or not _INT64[0] <= step < _INT64[1]:
        step = 0  # MLflow's default step; regex-scraped points may have none
    return {
        "key": point["name"],
        "value": sent,
        "timestamp": max(0, min(int(when * 1000), _INT64[1] - 1)),
        "step": step,
    }


def metric_entries(
    points: Iterable[Mapping[str, Any]], default_ms: int, notes: list[str]
) -> list[dict[str, Any]]:
    """A run's metric points as MLflow's Metrics, with a note for each name MLflow refuses
    and for points without a value; ``default_ms``: the time of a point that has none."""
    metrics: list[dict[str, Any]] = []
    refused: dict[str, str] = {}
    valueless: dict[str, int] = {}
    for point in points:
        name = str(point.get("name"))
        if name not in refused:
            refused[name] = _key_problem(name)
            if refused[name]:
                notes.append(f"metric {printable(name)[:80]!r} not exported: {refused[name]}")
        if refused[name]:
            continue
        metric = _metric(point, default_ms)
        if metric is not None:
            metrics.append(metric)
        else:
            valueless[name] = valueless.get(name, 0) + 1
    notes += [
        f"metric {printable(name)[:80]!r}: {n} point(s) without a value not exported"
        for name, n in valueless.items()
    ]
    return metrics


def _batches(items: list[dict[str, Any]], count: int) -> Iterator[list[dict[str, Any]]]:
    """``items`` in lists of at most ``count`` whose JSON stays under MAX_REQUEST_BYTES."""
    batch: list[dict[str, Any]] = []
    size = 0
    for item in items:
        item_size = len(json.dumps(item).encode()) + 1
        if batch and (len(batch) >= count or size + item_size > MAX_REQUEST_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item_size
    if batch:
        yield batch


def sweep_trial(store: StateStore, run: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The sweep id and hyperparameters of a run that is a sweep's trial (its address is
    ``sweep.NAME[i]``, the controller records the trials in the sweep's history), or None."""
    address = str(run.get("address") or "")
    if not re.search(r"(^|\.)sweep\.[^.\[]+\[\d+\]$", address):
        return None
    for sweep in store.sweeps(address.rsplit("[", 1)[0]):
        for trial in sweep["record"].get("trials") or []:
            if isinstance(trial, dict) and trial.get("run_id") == run["id"]:
                params = trial.get("params")
                return str(sweep["id"]), dict(params) if isinstance(params, dict) else {}
    return None


def _tags(run: Mapping[str, Any], sweep_id: str | None) -> dict[str, Any]:
    record = run["record"]
    git = record.get("git") if isinstance(record.get("git"), dict) else {}
    ours = {
        RUN_ID_TAG: run["id"],
        "trainform.address": run.get("address"),
        "trainform.fingerprint": run.get("fingerprint"),
        "trainform.git_commit": git.get("commit"),
        "mlflow.source.git.commit": git.get("commit"),  # the MLflow UI shows this one
        "trainform.compute": record.get("compute_address") or record.get("compute_provider"),
        "trainform.snapshot_id": record.get("snapshot_id"),
        "trainform.sweep": sweep_id,
        "trainform.status": run.get("status"),
        "mlflow.runName": run["id"],
    }
    logged = record.get("logged_tags")  # what the script tagged its run with
    tags = {
        str(k): v
        for k, v in (logged.items() if isinstance(logged, dict) else ())
        if not str(k).startswith("trainform.")  # ours: trainform.exported above all
    }
    tags.update({k: v for k, v in ours.items() if v is not None})
    return tags


def _artifacts(server: MlflowServer, artifact_uri: str, outputs: Any, notes: list[str]) -> int:
    """Upload the files under the run's collected outputs folder; returns how many. Links
    and special files are not followed or sent (notes say so)."""
    if not outputs or not Path(str(outputs)).is_dir():
        notes.append(
            f"outputs not exported: no collected outputs folder on this machine "
            f"({outputs or 'none recorded'})"
        )
        return 0
    if not artifact_uri.startswith("mlflow-artifacts:"):
        scheme = artifact_uri.split(":", 1)[0] or "no URI"
        notes.append(
            f"outputs not exported: the server stores artifacts at {scheme}: itself, and "
            "takes uploads only through its artifact proxy (`mlflow server` with "
            "--serve-artifacts, the default since MLflow 2)"
        )
        return 0
    # mlflow-artifacts:/1/RUN/artifacts (or mlflow-artifacts://host/...: this server anyway)
    base = urllib.parse.urlsplit(artifact_uri).path.strip("/")
    if not base or any(not looks_like_id(part) for part in base.split("/")):
        notes.append(f"outputs not exported: unexpected artifact URI {printable(artifact_uri)!r}")
        return 0
    root = Path(str(outputs))
    count = 0
    for folder, dirs, files in os.walk(root):  # never into a linked folder
        dirs.sort()
        linked = [d for d in dirs if Path(folder, d).is_symlink()]
        for name in sorted(files) + linked:
            path = Path(folder, name)
            relative = path.relative_to(root).as_posix()
            if path.is_symlink() or not path.is_file():
                notes.append(f"output {relative!r} not exported: not a regular file")
                continue
            if "#" in relative:
                notes.append(f"output {relative!r} not exported: MLflow takes no '#' in paths")
                continue
            try:
                quoted = "/".join(urllib.parse.quote(p, safe="") for p in relative.split("/"))
            except UnicodeEncodeError:
                notes.append(f"output {relative!r} not exported: its name is not UTF-8")
                continue
            try:
                server.upload(f"{base}/{quoted}", path)
            except MlflowServerError as exc:
                if exc.status != 400:  # only a refusal of this one file lets the others go
                    raise
                notes.append(f"output {relative!r} not exported: the server refused it ({exc})")
                continue
            except OSError as exc:  # the file itself (the server's errors are the above)
                notes.append(f"output {relative!r} not exported: {exc.strerror}")
                continue
            count += 1
    return count


def export_run(server: MlflowServer, store: StateStore, run: Mapping[str, Any]) -> Exported:
    """Export one run of the history (a row of ``store.runs()``) to ``server``; idempotent
    (see the module's docstring). Blocks on the network; raises MlflowServerError."""
    experiment = str(run.get("experiment") or "Default")
    if run.get("status") not in ENDED:
        return Exported(
            run["id"],
            "skipped",
            experiment,
            notes=(f"not exported: it has not ended ({run.get('status')}); export it once it has",),
        )
    if not looks_like_id(str(run["id"])):
        raise server.error(f"run id {str(run['id'])!r} cannot be searched for in MLflow")
    experiment_id = server.experiment_id(experiment)
    found = server.find_runs(experiment_id, RUN_ID_TAG, run["id"])
    if any(r["tags"].get(EXPORTED_TAG) == "complete" for r in found):
        kept = _keep_one(server, found)
        return Exported(run["id"], "unchanged", experiment, experiment_id, kept)
    for stale in found:  # cut off midway: its metrics would be sent twice
        server.call("runs/delete", {"run_id": stale["id"]})

    record = run["record"]
    notes: list[str] = []
    start = _ms(record.get("started")) or _ms(run.get("created"))
    end = _ms(run.get("finished"))
    mlflow_run, artifact_uri = server.create_run(
        experiment_id, run["id"], start, {RUN_ID_TAG: run["id"]}
    )
    trial = sweep_trial(store, run)
    params = dict(record.get("params") or {})
    params.update(trial[1] if trial else {})  # the sweep's choice is what the trial ran with
    param_entries = _entries(params, "param", MAX_PARAM_VALUE, notes)
    tag_entries = _entries(_tags(run, trial[0] if trial else None), "tag", MAX_TAG_VALUE, notes)
    metrics = metric_entries(store.metrics(run["id"]), end or start or 0, notes)
    for kind, entries, count in (
        ("params", param_entries, MAX_PARAMS),
        ("tags", tag_entries, MAX_TAGS),
        ("metrics", metrics, MAX_METRICS),
    ):
        for batch in _batches(entries, count):
            server.call("runs/log-batch", {"run_id": mlflow_run, kind: batch})
    artifacts = _artifacts(server, artifact_uri, record.get("outputs_path"), notes)
    update: dict[str, Any] = {"run_id": mlflow_run, "status": STATUS.get(run["status"], "FAILED")}
    if end is not None:
        update["end_time"] = end
    server.call("runs/update", update)
    server.call("runs/set-tag", {"run_id": mlflow_run, "key": EXPORTED_TAG, "value": "complete"})
    # Another export of this run may have finished meanwhile: keep one complete copy.
    kept = _keep_one(server, server.find_runs(experiment_id, RUN_ID_TAG, run["id"])) or mlflow_run
    return Exported(
        run["id"],
        "replaced" if found else "exported",
        experiment,
        experiment_id,
        kept,
        len(param_entries),
        len(metrics),
        artifacts,
        tuple(notes),
    )


def _keep_one(server: MlflowServer, found: list[dict[str, Any]]) -> str:
    """Delete every completely exported copy of a run but the one with the smallest id (the
    rule every export follows, so concurrent ones converge on the same); return its id."""
    complete = sorted(r["id"] for r in found if r["tags"].get(EXPORTED_TAG) == "complete")
    for extra in complete[1:]:
        server.call("runs/delete", {"run_id": extra})
    return complete[0] if complete else ""


def export_runs(
    server: MlflowServer, store: StateStore, runs: Iterable[Mapping[str, Any]]
) -> Iterator[Exported]:
    """Export each run in turn, yielding what was done as it is done; stops at the first
    MlflowServerError (raised from the iteration)."""
    for run in runs:
        yield export_run(server, store, run)


def mirror_run(store: StateStore, workspace: str, address: str, run_id: str) -> list[str]:
    """Continuous export: if workspace ``workspace`` (an address) sets
    ``mlflow_tracking_uri``, export run ``run_id`` (of run address ``address``) there.
    Never raises: a failure, or what was left out, comes back as warnings for the caller to
    show (the next ``trainform runs export`` catches up). Blocks on the network; costs one
    state read when the attribute is unset."""
    if workspace == "default":  # no workspace block: nothing can set the attribute
        return []
    resource = store.resources().get(workspace)
    uri = resource.attributes.get("mlflow_tracking_uri") if resource is not None else None
    if not isinstance(uri, str) or not uri:
        return []
    run = next((r for r in store.runs(address) if r["id"] == run_id), None)
    if run is None:
        return []
    try:
        done = export_run(MlflowServer(uri, timeout=10.0), store, run)
    except Exception as exc:  # whatever it is, the run and the apply go on
        why = str(exc) if isinstance(exc, TrainformError) else f"unexpected error: {exc!r}"
        return [
            f"run {run_id} was not exported to MLflow ({why}); `trainform runs export "
            f"--mlflow {shown_uri(uri)} {run_id}` retries"
        ]
    return [f"MLflow export of {run_id}: {note}" for note in done.notes]
