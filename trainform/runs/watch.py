"""Following a submitted run until it ends: status changes, the log lines of every node it
runs on, then collection."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from trainform.errors import ProviderError
from trainform.providers.base import TERMINAL
from trainform.runs.nodes import failing_ranks

# Short runs end within a few polls; long ones are polled four times a second.
FIRST_POLL_SECONDS = 0.02
POLL_SECONDS = 0.25

# Log bytes come from the target and are not trusted: a "line" without an end is passed on
# in pieces of at most MAX_LINE bytes, a failure summary keeps TAIL_LINES lines of at most
# TAIL_WIDTH characters per rank (of at most SUMMARY_RANKS ranks), and once the run ended
# at most DRAIN_LIMIT more bytes per node are read (a log that still grows is not followed
# forever).
MAX_LINE = 64 << 10
TAIL_LINES = 10
TAIL_WIDTH = 1000
SUMMARY_RANKS = 4
DRAIN_LIMIT = 64 << 20


class LogLine(str):
    """A line of a run's log, with the rank of the node that wrote it and the run's node
    count, so that whoever shows it can tell a multi-node run's ranks apart."""

    rank: int
    nodes: int

    def __new__(cls, text: str, rank: int = 0, nodes: int = 1) -> LogLine:
        line = super().__new__(cls, text)
        line.rank = rank
        line.nodes = nodes
        return line


def node_address(address: str, line: str) -> str:
    """The address a log line is shown under: a multi-node run's lines carry the rank of
    their node (``run.ddp[1]``), a single-node run's the run's address."""
    if isinstance(line, LogLine) and line.nodes > 1:
        return f"{address}[{line.rank}]"
    return address


class NodeLog:
    """One node's log as it is followed: how far it was read, an unfinished last line, and
    its last lines (for a failure summary)."""

    def __init__(self, rank: int, nodes: int, offset: int) -> None:
        self.rank = rank
        self.nodes = nodes
        self.offset = offset
        self.partial = b""
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)

    def feed(self, chunk: bytes, on_line: Callable[[str], None]) -> None:
        """Pass on each complete line of what was read so far."""
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        for raw in lines:
            self._emit(raw, on_line)
        while len(self.partial) > MAX_LINE:
            self._emit(self.partial[:MAX_LINE], on_line)
            self.partial = self.partial[MAX_LINE:]

    def flush(self, on_line: Callable[[str], None]) -> None:
        """Pass on an unfinished last line (the log has ended)."""
        if self.partial:
            self._emit(self.partial, on_line)
            self.partial = b""

    def _emit(self, raw: bytes, on_line: Callable[[str], None]) -> None:
        for start in range(0, max(len(raw), 1), MAX_LINE):
            text = raw[start : start + MAX_LINE].decode("utf-8", errors="replace").rstrip("\r")
            self.tail.append(text if len(text) <= TAIL_WIDTH else text[:TAIL_WIDTH] + "…")
            on_line(LogLine(text, self.rank, self.nodes))


def follow(
    provider: Any,
    computed: dict[str, Any],
    on_line: Callable[[str], None],
    on_status: Callable[[str, str], None],
    stop: threading.Event,
    offset: int = 0,
    ranks: Sequence[int] | None = None,
    from_start: bool = False,
) -> tuple[dict[str, Any], dict[str, Any] | None, list[str]]:
    """Poll ``provider`` (a RunProvider) until the run ends or ``stop`` is set.

    Calls ``on_line`` with each complete log line (a :class:`LogLine`) of the nodes of rank
    ``ranks`` (default: every node), and ``on_status(status, message)`` on each change.
    Rank 0's log is read from ``offset`` on and the others' after what the submit already
    showed (the handle's ``log_shown_by_rank``), or, ``from_start``, every log from its
    beginning. Returns the updated computed attributes, the collected results (None if it was
    stopped before the end) and the lines to show if the run failed: a single-node run's
    last lines; for a multi-node run, under a ``rank N (node):`` line each, the last lines
    of the ranks that failed (those still going are stopped by the target and end
    canceled, so they are left out). Raises ProviderError if the target cannot be
    reached.
    """
    computed = dict(computed)
    compute = provider.providers.get(str(computed.get("compute_provider")))
    handle = computed["handle"]
    count = len(compute.nodes(handle))
    shown = [] if from_start else [offset, *(handle.get("log_shown_by_rank") or [])[1:]]
    logs = [
        NodeLog(rank, count, int(shown[rank]) if rank < len(shown) else 0)
        for rank in (range(count) if ranks is None else ranks)
    ]

    def read(log: NodeLog) -> bytes:
        # Only a multi-node run names the rank: a provider that runs one node may predate it.
        if count > 1:
            chunk, log.offset = compute.logs(handle, log.offset, node=log.rank)
        else:
            chunk, log.offset = compute.logs(handle, log.offset)
        return bytes(chunk)

    def state() -> tuple[Any, Any]:
        # A queued run may say why it waits (no free slot); report that change too.
        status = computed.get("status")
        return status, computed.get("message") if status == "queued" else None

    last = state()
    delay = FIRST_POLL_SECONDS
    while True:
        # The status first: once it is final, the reads below and the drain see every line.
        computed.update(provider.status_of(computed))
        for log in logs:
            log.feed(read(log), on_line)
        if state() != last:
            last = state()
            on_status(str(last[0]), str(computed.get("message") or ""))
        if computed.get("status") in TERMINAL:
            break
        if stop.is_set():
            return computed, None, _summary(compute, handle, computed, logs)
        time.sleep(delay)
        delay = min(POLL_SECONDS, delay * 1.5)
    # The launcher writes the final status after the last log line; drain what is left.
    for log in logs:
        budget = DRAIN_LIMIT
        while budget > 0:
            chunk = read(log)
            if not chunk:
                break
            budget -= len(chunk)
            log.feed(chunk, on_line)
        log.flush(on_line)
    results = provider.collect(computed)
    computed["outputs_path"] = results["outputs_path"]
    return computed, results, _summary(compute, handle, computed, logs)


def _summary(
    compute: Any, handle: dict[str, Any], computed: dict[str, Any], logs: list[NodeLog]
) -> list[str]:
    """The lines to show under a failure (see :func:`follow`)."""
    if not logs:
        return []
    if logs[0].nodes == 1:
        return list(logs[0].tail)
    if computed.get("status") not in TERMINAL or computed.get("status") == "completed":
        return []
    try:
        # The nodes' own statuses, which the run's status leaves out; names are known now.
        ranks = failing_ranks(compute.status(handle))
        names = compute.nodes(handle)
    except ProviderError:
        ranks, names = None, []
    followed = {log.rank: log for log in logs}
    chosen = [r for r in (ranks if ranks is not None else sorted(followed)) if r in followed]
    lines: list[str] = []
    for rank in chosen[:SUMMARY_RANKS]:
        name = names[rank] if rank < len(names) else ""
        lines.append(f"rank {rank}" + (f" ({name})" if name else "") + ":")
        lines += [f"  {line}" for line in followed[rank].tail] or ["  (no log lines)"]
    if len(chosen) > SUMMARY_RANKS:
        rest = ", ".join(str(r) for r in chosen[SUMMARY_RANKS:])
        lines.append(f"(ranks {rest} failed too: see `trainform runs logs RUN --node N`)")
    return lines
