"""Capture sources that read the run's output: the run's ``metrics`` regular expressions, and
what azureml-core's offline run prints. Standard library only, Python >= 3.8 (runs on targets).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from re import Pattern
from typing import Any

from trainform.capture import Source, Stream


class PatternError(ValueError):
    """A ``metrics`` entry of a spec that cannot be used (the message names it)."""


def compile_patterns(metrics: dict[str, Any]) -> dict[str, Pattern[str]]:
    """The spec's ``metrics`` compiled; raises :class:`PatternError` naming the bad one."""
    compiled: dict[str, Pattern[str]] = {}
    for name, pattern in metrics.items():
        if not isinstance(pattern, str):
            raise PatternError(f"metric {name}: the pattern must be a string")
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise PatternError(f"metric {name}: invalid regular expression: {exc}") from None
        if regex.groups != 1:
            raise PatternError(
                f"metric {name}: the regular expression needs exactly one group, has {regex.groups}"
            )
        compiled[name] = regex
    return compiled


class LogPatterns(Source):
    """Output lines that match a run's ``metrics`` regexes, as metric points (step: how many
    values of that metric were seen before)."""

    def __init__(self, stream: Stream, patterns: dict[str, Any]) -> None:
        self.stream = stream
        self.patterns = compile_patterns(patterns)
        self.counts = {name: 0 for name in self.patterns}
        self.pending = b""

    def feed(self, data: bytes) -> None:
        pieces = re.split(rb"[\r\n]", self.pending + data)
        self.pending = pieces.pop()
        if len(self.pending) > 1 << 16:  # a very long line: match what we have
            pieces.append(self.pending)
            self.pending = b""
        self._scrape(pieces)

    def finish(self) -> None:
        pieces, self.pending = [self.pending], b""
        self._scrape(pieces)

    def _scrape(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            if not piece:
                continue
            line = piece.decode("utf-8", "replace")
            for name, pattern in self.patterns.items():
                match = pattern.search(line)
                if not match:
                    continue
                try:
                    value = float(match.group(1))
                except (TypeError, ValueError):
                    continue
                self.stream.metric(name, value, self.counts[name], time.time(), "log")
                self.counts[name] += 1
        self.stream.flush()


class AzureMLOffline(Source):
    """What azureml-core's offline run (``Run.get_context()`` outside Azure ML) prints."""

    def __init__(
        self, stream: Stream, cwd: Path, outputs: Path, version: str, note: Callable[[str], None]
    ) -> None:
        self.stream = stream
        self.cwd = cwd
        self.outputs = outputs
        self.version = version
        self.note = note
