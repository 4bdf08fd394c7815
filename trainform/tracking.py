"""Report metrics and parameters from a training script to trainform.

The launcher that runs a script sets ``TRAINFORM_METRICS_FILE`` and puts this module on
``PYTHONPATH``, so the target needs no trainform install::

    from trainform.tracking import log_metric, log_metrics, log_param

    log_param("optimizer", "adam")
    for step in range(100):
        loss = train_one_step()
        log_metric("loss", loss, step=step)
    log_metrics({"accuracy": 0.93, "f1": 0.91})

Each call appends JSON lines to that file, one per value::

    {"kind": "metric", "name": "loss", "value": 0.25, "step": 3, "time": 1700000000.0}
    {"kind": "param", "name": "optimizer", "value": "adam", "time": 1700000000.0}

A non-finite metric is written with ``"value": null`` and ``"nonfinite"`` set to ``"nan"``,
``"inf"`` or ``"-inf"``, so the file stays strict JSON. When the variable is not set (the
script was started by hand) the calls do nothing apart from one warning.

The calls are safe from several threads and several processes at once: each call is one
``os.write`` on a file opened with ``O_APPEND``, so lines never interleave. Invalid input raises
``TypeError`` (wrong type) or ``ValueError`` (right type, wrong value) before anything is written.

This module is copied to targets on its own: it uses the standard library only (Python >= 3.8)
and imports nothing from trainform.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import threading
import time
import warnings
from collections.abc import Mapping
from typing import Any

__all__ = ["ENV_VAR", "log_metric", "log_metrics", "log_param"]

ENV_VAR = "TRAINFORM_METRICS_FILE"

_lock = threading.Lock()
_warned = False


def log_metric(name: str, value: float, step: int | None = None) -> None:
    """Record one value of metric ``name`` (optionally at training ``step``).

    ``value`` must be a real number (``bool`` is refused); NaN and infinities are recorded as
    non-finite. ``step`` must be an ``int`` >= 0 or ``None``. Raises ``TypeError`` or
    ``ValueError`` for invalid input; does nothing (one warning) when ``TRAINFORM_METRICS_FILE``
    is unset.
    """
    _append([_metric_record(name, value, step)])


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Record several metrics at the same ``step``, as one write.

    Every name and value is validated as for :func:`log_metric` before anything is written, so
    an invalid entry records none of them.
    """
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a mapping of name to value, not {type(metrics).__name__}")
    _append([_metric_record(name, value, step) for name, value in metrics.items()])


def log_param(name: str, value: Any) -> None:
    """Record a parameter (a hyperparameter, a setting): any JSON-serialisable value.

    Raises ``TypeError`` if ``value`` cannot be written as JSON, ``ValueError`` if it contains
    NaN or an infinity.
    """
    _check_name(name)
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        raise ValueError(
            f"parameter {name!r}: NaN and infinities cannot be written as JSON"
        ) from None
    except (TypeError, RecursionError):
        raise TypeError(
            f"parameter {name!r}: a {type(value).__name__} value cannot be written as JSON"
        ) from None
    _append([{"kind": "param", "name": name, "value": value}])


def _check_name(name: object) -> None:
    if not isinstance(name, str):
        raise TypeError(f"a metric or parameter name must be a str, not {type(name).__name__}")
    if not name.strip():
        raise ValueError("a metric or parameter name must not be empty")


def _metric_record(name: object, value: object, step: object) -> dict[str, Any]:
    _check_name(name)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"metric {name!r}: value must be a real number, not {type(value).__name__}")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, numbers.Integral):
            raise TypeError(
                f"metric {name!r}: step must be an int or None, not {type(step).__name__}"
            )
        if step < 0:
            raise ValueError(f"metric {name!r}: step must be >= 0, got {step}")
        step = int(step)
    number = float(value)
    record: dict[str, Any] = {"kind": "metric", "name": name, "value": number, "step": step}
    if not math.isfinite(number):
        record["value"] = None
        record["nonfinite"] = "nan" if math.isnan(number) else ("inf" if number > 0 else "-inf")
    return record


def _append(records: list[dict[str, Any]]) -> None:
    global _warned
    path = os.environ.get(ENV_VAR)
    with _lock:
        if not path:
            if not _warned:
                _warned = True
                warnings.warn(
                    f"{ENV_VAR} is not set (the script was not started by trainform): "
                    "metrics and parameters are not recorded",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return
        now = time.time()
        data = "".join(
            json.dumps({**record, "time": now}, allow_nan=False) + "\n" for record in records
        ).encode("utf-8")
        if not data:
            return
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, data)
            # A regular file takes the whole buffer unless the disk is full; finish the
            # rest rather than leave half a line.
            while written < len(data):
                written += os.write(fd, data[written:])
        finally:
            os.close(fd)
