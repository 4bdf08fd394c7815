"""Following a submitted run until it ends: status changes, the log lines of every node it
runs on, then collection."""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trainform.errors import ProviderError
from trainform.providers.base import TERMINAL
from trainform.runs.nodes import failing_ranks

# Short runs end within a few polls; long ones are polled four times a second.
FIRST_POLL_SECONDS = 0.02
POLL_SECONDS = 0.25

# Log bytes come from the target and are not trusted. They arrive in pieces of at most 1 MiB
# (the provider contract) and are passed on as blocks of whole lines, so that memory stays
# bounded whatever the size of the log, and decoding, splitting and cleaning run once per
# block rather than once per line. A line that has not ended after MAX_LINE bytes is passed on
# in pieces of MAX_LINE bytes. Each poll reads at most POLL_BUDGET bytes of each node's log
# (then the status and the other nodes are looked at again, without a pause while a log is
# behind). Once the run ended, at most DRAIN_LIMIT more bytes of each log are read from the
# target (a log that something left behind still writes is not followed forever); whatever
# is left after that is read from the copy collected with the run. No byte is left out and
# none is shown twice. A failure summary keeps TAIL_LINES lines of at most TAIL_WIDTH
# characters per rank (of at most SUMMARY_RANKS ranks).
MAX_LINE = 64 << 10
POLL_BUDGET = 32 << 20
DRAIN_LIMIT = 64 << 20
TAIL_LINES = 10
TAIL_WIDTH = 1000
SUMMARY_RANKS = 4

# Control characters, shown as their Unicode control pictures (U+2400 on): C0 but tab and
# newline (ESC is handled with the sequences it starts), DEL, and C1, which is ESC plus a
# letter in 7 bits (U+009B, a CSI, shows as "␛[").
_PICTURES = {c: chr(0x2400 + c) for c in range(0x20) if c not in (0x09, 0x0A, 0x1B)}
_PICTURES[0x7F] = "\u2421"
_PICTURES.update({c: "\u241b" + chr(c - 0x40) for c in range(0x80, 0xA0)})
_CONTROL_BYTES = bytes(c for c in _PICTURES if c < 0x80)
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f-\x9f]")
_SGR = re.compile("\x1b\\[[0-9;:]*m")
_NOT_SGR = re.compile("\x1b(?!\\[[0-9;:]*m)")
ESC_PICTURE = "\u241b"


def neutralise(text: str, colour: bool = False) -> str:
    """``text`` (lines of a run's log) made inert for a terminal or a log viewer.

    A carriage return ends the line, as a newline does (so no text can be written over
    what came before it on the line). Every other control character, including ESC, is
    shown as its Unicode control picture: ESC as ␛, BEL as ␇, backspace as ␈, C1
    controls as ␛ and their 7-bit letter. So window titles (OSC), screen clears and cursor
    moves (CSI), and backspace tricks arrive as visible text and do nothing. SGR sequences
    (``ESC [ ... m``: colours, bold) are kept with ``colour`` and dropped without it. Tab
    and newline are kept. Pure; linear in the text."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\x1b" in text:
        if colour:
            text = _NOT_SGR.sub(ESC_PICTURE, text)
        else:
            text = _SGR.sub("", text).replace("\x1b", ESC_PICTURE)
    if _has_controls(text):
        text = text.translate(_PICTURES)
    return text


def _has_controls(text: str) -> bool:
    """Whether ``text`` has a control character that :func:`neutralise` shows as a picture
    (ASCII text is checked with a byte translation, much faster than a regex)."""
    if text.isascii():
        data = text.encode("ascii")
        return len(data.translate(None, _CONTROL_BYTES)) != len(data)
    return _CONTROLS.search(text) is not None


class LogLine(str):
    """Lines of a run's log as they arrived: one or more whole lines joined by newlines
    (without the last line's end, a carriage return before a newline taken out), or a piece
    of a line longer than MAX_LINE. Decoded as UTF-8 (bytes that are not, as U+FFFD) but
    otherwise as the run wrote them: control characters included, so whoever shows them to
    a terminal passes them through :func:`neutralise` first. Carries the rank of the node
    that wrote them and the run's node count, so that whoever shows them can tell a
    multi-node run's ranks apart."""

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


def collected_log(folder: Path, rank: int) -> Path:
    """Where the log of the node of rank ``rank`` is in a run's collected ``folder``."""
    return (folder / "nodes" / str(rank) if rank else folder) / "output.log"


class NodeLog:
    """One node's log as it is followed: how far it was read, an unfinished last line, and
    its last lines (for a failure summary). With ``raw``, the bytes are passed to it as they
    are read, and neither split into lines nor kept."""

    def __init__(
        self,
        rank: int,
        nodes: int,
        offset: int,
        raw: Callable[[bytes], None] | None = None,
    ) -> None:
        self.rank = rank
        self.nodes = nodes
        self.offset = offset
        self.raw = raw
        self.partial = b""
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)

    def feed(self, chunk: bytes, on_line: Callable[[str], None]) -> None:
        """Pass on the whole lines of what was read so far, as one :class:`LogLine`."""
        if self.raw is not None:
            if chunk:
                self.raw(chunk)
            return
        data = self.partial + chunk if self.partial else chunk
        end = data.rfind(b"\n")
        if end >= 0:
            self._emit(data[:end], on_line)
        start = end + 1
        while len(data) - start > MAX_LINE:  # a line without an end yet: in pieces
            self._emit(data[start : start + MAX_LINE], on_line)
            start += MAX_LINE
        self.partial = data[start:]

    def feed_file(self, path: Path, on_line: Callable[[str], None]) -> bool:
        """Pass on the rest of a copy of this log, from this log's offset on, in pieces of
        1 MiB; False if there is no such file."""
        try:
            with path.open("rb") as fh:
                fh.seek(self.offset)
                while chunk := fh.read(1 << 20):
                    self.offset += len(chunk)
                    self.feed(chunk, on_line)
        except FileNotFoundError:
            return False
        return True

    def flush(self, on_line: Callable[[str], None]) -> None:
        """Pass on an unfinished last line (the log has ended)."""
        if self.partial:
            self._emit(self.partial, on_line)
            self.partial = b""

    def _emit(self, raw: bytes, on_line: Callable[[str], None]) -> None:
        text = raw.decode("utf-8", errors="replace")
        if "\r" in text:
            text = text.replace("\r\n", "\n").removesuffix("\r")
        self._keep_tail(text)
        on_line(LogLine(text, self.rank, self.nodes))

    def _keep_tail(self, text: str) -> None:
        """Keep the last lines of ``text`` (made inert, as they are shown in messages)."""
        start = len(text)
        for _ in range(TAIL_LINES):
            start = text.rfind("\n", 0, start)
            if start < 0:
                break
        for line in text[start + 1 :].split("\n"):
            parts = neutralise(line[:TAIL_WIDTH]).split("\n")
            if len(line) > TAIL_WIDTH:
                parts[-1] += "…"
            self.tail.extend(parts)


def follow(
    provider: Any,
    computed: dict[str, Any],
    on_line: Callable[[str], None],
    on_status: Callable[[str, str], None],
    stop: threading.Event,
    offset: int = 0,
    ranks: Sequence[int] | None = None,
    from_start: bool = False,
    raw: Callable[[bytes], None] | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None, list[str]]:
    """Poll ``provider`` (a RunProvider) until the run ends or ``stop`` is set.

    Calls ``on_line`` with the log lines (a :class:`LogLine` per block of whole lines) of
    the nodes of rank ``ranks`` (default: every node), and ``on_status(status, message)``
    on each change; with ``raw``, calls it with the log's bytes as they are read instead of
    ``on_line``. Rank 0's log is read from ``offset`` on and the others' after what the
    submit already showed (the handle's ``log_shown_by_rank``), or, ``from_start``, every
    log from its beginning. Every byte of the log is passed on once, whatever its size, in
    bounded memory (see DRAIN_LIMIT). Returns the updated computed attributes, the
    collected results (None if it was stopped before the end) and the lines to show if the
    run failed: a single-node run's last lines; for a multi-node run, under a ``rank N
    (node):`` line each, the last lines of the ranks that failed (those still going are
    stopped by the target and end canceled, so they are left out). Raises ProviderError if
    the target cannot be reached.
    """
    computed = dict(computed)
    compute = provider.providers.get(str(computed.get("compute_provider")))
    handle = computed["handle"]
    count = len(compute.nodes(handle))
    shown = [] if from_start else [offset, *(handle.get("log_shown_by_rank") or [])[1:]]
    logs = [
        NodeLog(rank, count, int(shown[rank]) if rank < len(shown) else 0, raw)
        for rank in (range(count) if ranks is None else ranks)
    ]

    def read(log: NodeLog) -> bytes:
        # Only a multi-node run names the rank: a provider that runs one node may predate it.
        if count > 1:
            chunk, log.offset = compute.logs(handle, log.offset, node=log.rank)
        else:
            chunk, log.offset = compute.logs(handle, log.offset)
        return bytes(chunk)

    def catch_up(log: NodeLog, budget: int) -> bool:
        """Pass on up to about ``budget`` more bytes; True if the end was reached."""
        while budget > 0:
            chunk = read(log)
            if not chunk:
                return True
            budget -= len(chunk)
            log.feed(chunk, on_line)
        return False

    def state() -> tuple[Any, Any]:
        # A queued run may say why it waits (no free slot); report that change too.
        status = computed.get("status")
        return status, computed.get("message") if status == "queued" else None

    last = state()
    delay = FIRST_POLL_SECONDS
    while True:
        # The status first: once it is final, the reads below and the drain see every line.
        computed.update(provider.status_of(computed))
        behind = [not catch_up(log, POLL_BUDGET) for log in logs]
        if state() != last:
            last = state()
            on_status(str(last[0]), str(computed.get("message") or ""))
        if computed.get("status") in TERMINAL:
            break
        if stop.is_set():
            return computed, None, _summary(compute, handle, computed, logs)
        if not any(behind):
            time.sleep(delay)
            delay = min(POLL_SECONDS, delay * 1.5)
    # The launcher writes the final status after the last log line; drain what is left.
    unfinished = [log for log in logs if not catch_up(log, DRAIN_LIMIT)]
    for log in logs:
        if log not in unfinished:
            log.flush(on_line)
    results = provider.collect(computed)
    computed.update(collected_fields(results))
    folder = Path(str(computed.get("workspace_path"))) / "runs" / str(computed.get("run_id"))
    for log in unfinished:
        # Still written after the run ended, faster than it was read: the rest comes from
        # the copy collected with the run (which does not grow).
        if not log.feed_file(collected_log(folder, log.rank), on_line):
            on_line(
                LogLine(
                    f"[trainform] the log goes on after byte {log.offset}, but no copy of it "
                    "was collected",
                    log.rank,
                    log.nodes,
                )
            )
        log.flush(on_line)
    return computed, results, _summary(compute, handle, computed, logs)


def collected_fields(results: dict[str, Any]) -> dict[str, Any]:
    """What a run's collection adds to its computed attributes: where its outputs are, and
    its named outputs' content."""
    return {k: results[k] for k in ("outputs_path", "outputs") if k in results}


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
