"""Metric capture on the target: what a run's script logs, turned into its metrics stream.

The launcher (``trainform/runs/launcher.py``) ships this package beside itself and asks
:func:`sources` which capture sources a run has. Each source turns one way of logging into
lines of the run's ``metrics.jsonl`` (the one stream every reader follows: ``runs metrics
--follow``, sweep policies, collection):

- ``trainform.tracking`` writes that file itself (no source needed);
- :class:`trainform.capture.logs.LogPatterns`: the run's ``metrics`` regular expressions over
  its output, one line or several;
- :class:`trainform.capture.logs.AzureMLOffline`: what azureml-core's offline run prints
  (``Run.get_context().log(...)`` outside Azure ML);
- :class:`trainform.capture.mlflow.MlflowStore`: the MLflow tracking store the launcher points
  MLflow at, inside the run's folder, read while the run runs.

A source is fed the run's output as it arrives (:meth:`Source.feed`), polled while the run runs
(:meth:`Source.poll`, every few tenths of a second) and finished once the run's process has
exited (:meth:`Source.finish`). Sources never raise on what the script wrote: everything the
script logs is hostile input, parsed with limits; a source that fails is switched off with one
note in the run's log, and the run goes on.

Lines of ``metrics.jsonl`` (one JSON object each)::

    {"kind": "metric", "name": "loss", "value": 0.25, "step": 3, "time": 1700000000.0,
     "source": "mlflow"}                       # non-finite: "value": null, "nonfinite": "nan"
    {"kind": "param", "name": "lr", "value": "0.1", "source": "mlflow"}
    {"kind": "tag", "name": "team", "value": "a", "source": "mlflow"}
    {"kind": "model", "name": "model", "path": "mlflow/main/model", "flavors": ["sklearn"],
     "source": "mlflow"}                       # path: relative to the run's outputs folder

Standard library only, Python >= 3.8: this runs on targets.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Longest name and value kept (characters); longer ones are cut, marked with "…".
MAX_NAME = 250
MAX_VALUE = 5000


class Stream:
    """The run's ``metrics.jsonl``, appended to in batches: each :meth:`flush` is one write on
    an O_APPEND descriptor, so lines from several writers (the script's own
    ``trainform.tracking`` calls) never interleave."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pending: list[str] = []

    def metric(self, name: str, value: float, step: int | None, when: float, source: str) -> None:
        record: dict[str, Any] = {
            "kind": "metric",
            "name": _clip(name, MAX_NAME),
            "value": value,
            "step": step,
        }
        if not math.isfinite(value):
            record["value"] = None
            record["nonfinite"] = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        record["time"] = when
        record["source"] = source
        self.pending.append(json.dumps(record))

    def param(self, name: str, value: Any, source: str) -> None:
        self._named("param", name, value, source)

    def tag(self, name: str, value: Any, source: str) -> None:
        self._named("tag", name, value, source)

    def model(self, name: str, path: str, flavors: list[str], source: str) -> None:
        self.pending.append(
            json.dumps(
                {
                    "kind": "model",
                    "name": _clip(name, MAX_NAME),
                    "path": path,
                    "flavors": [_clip(f, MAX_NAME) for f in flavors[:20]],
                    "source": source,
                }
            )
        )

    def flush(self) -> None:
        if not self.pending:
            return
        data = ("\n".join(self.pending) + "\n").encode("utf-8")
        self.pending = []
        fd = os.open(str(self.path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def _named(self, kind: str, name: str, value: Any, source: str) -> None:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        self.pending.append(
            json.dumps(
                {
                    "kind": kind,
                    "name": _clip(name, MAX_NAME),
                    "value": _clip(text, MAX_VALUE),
                    "time": time.time(),
                    "source": source,
                }
            )
        )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Source:
    """One way a run's script logs. The launcher calls :meth:`feed` with the run's output as
    it arrives, :meth:`poll` while the run runs, and :meth:`finish` once, after its process
    exited. Each writes what it found to its :class:`Stream` and flushes it. ``failure``:
    what the output says went wrong (a failed run's status message adds it)."""

    failure = ""

    def feed(self, data: bytes) -> None:
        """Bytes the run wrote to stdout/stderr (any boundaries)."""

    def poll(self, now: float) -> None:
        """The run is running (``now``: time.monotonic()); read what is new, if due."""

    def finish(self) -> None:
        """The run's process has exited: read the rest, move files into the outputs."""


# Printed by the run's interpreter: the versions of the logging libraries it has.
_DETECT = """\
import json
try:
    from importlib import metadata
except ImportError:
    metadata = None
found = {}
for dist in ("mlflow", "mlflow-skinny", "azureml-core"):
    try:
        found[dist] = metadata.version(dist) if metadata else None
    except Exception:
        found[dist] = None
print(json.dumps(found))
"""


def detect(
    python: str, env: dict[str, str], cwd: Path, cache: Path | None = None
) -> dict[str, str | None]:
    """Versions of mlflow, mlflow-skinny and azureml-core in the run's environment, asked of
    its own interpreter (``python`` with the run's ``env``); nothing found when it cannot say.
    With ``cache`` (a file in a virtualenv trainform built, whose packages never change), the
    answer is kept there and reused while PYTHONPATH is the same: no interpreter to start."""
    key = env.get("PYTHONPATH", "")
    if cache is not None:
        try:
            kept = json.loads(cache.read_text(encoding="utf-8"))
            if kept.get("pythonpath") == key and isinstance(kept.get("found"), dict):
                return _versions(kept["found"])
        except (OSError, ValueError, AttributeError):
            pass
    try:
        out = subprocess.run(
            [python, "-c", _DETECT],
            env=env,
            cwd=str(cwd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            timeout=60,
            check=False,
        ).stdout
        found = json.loads(out.decode("utf-8", "replace").strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return {}
    if not isinstance(found, dict):
        return {}
    versions = _versions(found)
    if cache is not None:
        partial = cache.with_name(f"{cache.name}.{os.getpid()}")
        try:
            partial.write_text(json.dumps({"pythonpath": key, "found": versions}))
            os.replace(partial, cache)
        except OSError:  # a read-only environment: ask again next time
            with contextlib.suppress(OSError):
                partial.unlink()
    return versions


def _versions(found: dict[Any, Any]) -> dict[str, str | None]:
    return {str(k): v if isinstance(v, str) else None for k, v in found.items()}


def sources(
    *,
    run_dir: Path,
    python: str,
    env: dict[str, str],
    detect_cache: Path | None,
    cwd: Path,
    outputs: Path,
    experiment: str,
    patterns: dict[str, Any],
    stream_path: Path,
    note: Callable[[str], None],
) -> list[Source]:
    """The capture sources of a run, its environment variables set for them (``env`` is
    changed in place: MLflow pointed at a store in ``run_dir``). ``patterns`` are the spec's
    ``metrics`` (already checked by :func:`trainform.capture.logs.compile_patterns`);
    ``detect_cache`` is where :func:`detect` may keep its answer.
    ``note`` writes one line into the run's log."""
    from trainform.capture import logs, mlflow

    found: list[Source] = []
    if patterns:
        found.append(logs.LogPatterns(Stream(stream_path), patterns))
    versions = detect(python, env, cwd, detect_cache)
    mlflow_version = versions.get("mlflow") or versions.get("mlflow-skinny")
    if mlflow_version:
        store = mlflow.setup(
            env, run_dir, outputs, experiment, mlflow_version, Stream(stream_path), note
        )
        if store is not None:
            found.append(store)
    azureml_version = versions.get("azureml-core")
    if azureml_version:
        found.append(logs.AzureMLOffline(Stream(stream_path), cwd, outputs, azureml_version, note))
    return found
