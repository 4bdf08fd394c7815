"""A run's metrics stream (``metrics.jsonl`` in its folder on the target), read from here while
the run runs: what ``runs metrics`` shows before the run is collected, and what ``runs metrics
--follow`` prints as it arrives. Every metric source on the target (trainform.tracking, log
patterns, MLflow, Azure ML) ends up in that one stream, read through the compute provider's
``metrics(handle, offset)``."""

from __future__ import annotations

from typing import Any

from trainform.runs.results import MAX_LINE, parse_points

# A line longer than MAX_LINE is dropped whole; one call reads at most READ_BUDGET bytes (the
# next call goes on from there).
READ_BUDGET = 64 << 20


class MetricsStream:
    """The metrics stream of one submitted run (``computed``: its computed attributes), read
    from the start through ``provider`` (the ``run`` provider: ``read_metrics``)."""

    def __init__(self, provider: Any, computed: dict[str, Any]) -> None:
        self.provider = provider
        self.computed = computed
        self.offset = 0
        self.partial = b""
        self.skipping = False  # in a line longer than MAX_LINE, until its end

    def read(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The points and params of the whole lines that arrived since the last call (up to
        READ_BUDGET bytes of them); blocks for the reads from the target. Raises
        ProviderError if the target cannot be reached."""
        lines: list[bytes] = []
        budget = READ_BUDGET
        while budget > 0:
            chunk, self.offset = self.provider.read_metrics(self.computed, self.offset)
            if not chunk:
                break
            budget -= len(chunk)
            *whole, rest = (self.partial + bytes(chunk)).split(b"\n")
            if self.skipping and whole:
                whole, self.skipping = whole[1:], False  # the end of the long line
            elif self.skipping:
                rest = b""
            if len(rest) > MAX_LINE:
                rest, self.skipping = b"", True
            self.partial = rest
            lines += whole
        return parse_points(line.decode("utf-8", "replace") for line in lines)
