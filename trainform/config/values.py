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


PARAM_MARK = "\x00param:"


class ParamMarkers(dict[str, str]):
    """``param`` in a sweep's trial template: ``param.lr`` evaluates to a marker string that
    the sweep controller replaces with each trial's value (so one evaluation serves every
    trial). Any name is accepted here; the loader has checked the names."""

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str)

    def __getitem__(self, key: str) -> str:
        return f"{PARAM_MARK}{key}\x00"


def substitute_params(value: Any, params: dict[str, Any]) -> Any:
    """Replace parameter markers in an evaluated template: a value that is exactly a marker
    becomes the parameter's value (keeping its type); markers inside strings become text."""
    if isinstance(value, str) and PARAM_MARK in value:
        for name, v in params.items():
            marker = f"{PARAM_MARK}{name}\x00"
            if value == marker:
                return v
            value = value.replace(marker, str(v))
        return value
    if isinstance(value, list):
        return [substitute_params(v, params) for v in value]
    if isinstance(value, dict):
        return {k: substitute_params(v, params) for k, v in value.items()}
    return value
