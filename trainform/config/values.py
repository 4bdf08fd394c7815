"""Special values of the expression language: unknown values and function-call context."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class UnknownType:
    """A value known only after apply (a fact gathered from a host, an id).

    There is one instance, :data:`UNKNOWN`; any operation involving it yields it.
    """

    _instance: UnknownType | None = None

    def __new__(cls) -> UnknownType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "(known after apply)"

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (UnknownType, ())


UNKNOWN = UnknownType()


def is_unknown(value: Any) -> bool:
    """True if value is unknown or contains an unknown anywhere inside it."""
    if value is UNKNOWN:
        return True
    if isinstance(value, dict):
        return any(is_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(is_unknown(v) for v in value)
    return False


class FunctionError(Exception):
    """A built-in function was called with bad arguments; the message is shown to the user."""


@dataclass
class FunctionContext:
    """What a built-in function may know about its call: where relative paths start, and a
    record of every file read (path -> sha256), so a saved plan can tell that an input changed."""

    base_dir: Path
    files_read: dict[str, str] = field(default_factory=dict)

    def read_file(self, path: str) -> bytes:
        """Read a file relative to the configuration directory and record its hash."""
        full = (self.base_dir / path).resolve() if not Path(path).is_absolute() else Path(path)
        try:
            data = full.read_bytes()
        except OSError as exc:
            raise FunctionError(f"cannot read file {path!r}: {exc.strerror}") from None
        self.files_read[str(full)] = hashlib.sha256(data).hexdigest()
        return data
