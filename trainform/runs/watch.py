"""Following a submitted run until it ends: status changes, log lines, then collection."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from trainform.providers.base import TERMINAL

# Short runs end within a few polls; long ones are polled four times a second.
FIRST_POLL_SECONDS = 0.02
POLL_SECONDS = 0.25


def follow(
    provider: Any,
    computed: dict[str, Any],
    on_line: Callable[[str], None],
    on_status: Callable[[str, str], None],
    stop: threading.Event,
    offset: int = 0,
) -> tuple[dict[str, Any], dict[str, Any] | None, list[str]]:
    """Poll ``provider`` (a RunProvider) until the run ends or ``stop`` is set.

    Calls ``on_line`` for each complete log line and ``on_status(status, message)`` on each
    change. Returns the updated computed attributes, the collected results (None if it was
    stopped before the end) and the last log lines. Raises ProviderError if the target
    cannot be reached.
    """
    computed = dict(computed)
    tail: deque[str] = deque(maxlen=15)
    partial = b""

    def state() -> tuple[Any, Any]:
        # A queued run may say why it waits (no free slot); report that change too.
        status = computed.get("status")
        return status, computed.get("message") if status == "queued" else None

    last = state()
    delay = FIRST_POLL_SECONDS
    while True:
        status, chunk, offset = provider.poll(computed, offset)
        computed.update(status)
        data = partial + chunk
        *lines, partial = data.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", errors="replace").rstrip("\r")
            tail.append(line)
            on_line(line)
        if state() != last:
            last = state()
            on_status(str(last[0]), str(computed.get("message") or ""))
        if computed.get("status") in TERMINAL:
            break
        if stop.is_set():
            return computed, None, list(tail)
        time.sleep(delay)
        delay = min(POLL_SECONDS, delay * 1.5)
    # The launcher writes the final status after the last log line; drain what is left.
    while True:
        chunk, offset = provider.poll(computed, offset)[1:]
        if not chunk:
            break
        partial += chunk
    for raw in partial.split(b"\n"):
        if raw:
            line = raw.decode("utf-8", errors="replace").rstrip("\r")
            tail.append(line)
            on_line(line)
    results = provider.collect(computed)
    computed["outputs_path"] = results["outputs_path"]
    return computed, results, list(tail)
