"""Helpers the executors import: shipped to them in the snapshot's zip (--py-files)."""

from __future__ import annotations

import re

WORD = re.compile(r"[a-z']+")


def words(line: str) -> list[str]:
    """The lower-case words of a line."""
    return WORD.findall(line.lower())
