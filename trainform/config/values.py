"""Special values of the expression language: unknown values, function-call context, and the
language's limits (sizes past which a configuration is refused with a diagnostic naming the
limit, rather than exhausting memory or time)."""

from __future__ import annotations

import hashlib
import math
import os
import stat
from collections.abc import Callable
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


class TfList(list[Any]):
    """A list value made by a conversion (``tolist``) or a function documented to return a
    list: Terraform's ``list(T)``, as opposed to a literal ``[...]`` (a tuple). Everything that
    takes a list takes it (JSON, state and fingerprints see a list); only ``type()`` and the
    console rendering tell it apart."""

    element_type: Any = None
    """The element type when the elements cannot tell it, because there are none (an empty
    ``split`` result is still a ``list(string)``): see types.typed(). None means dynamic."""


class TfSet(list[Any]):
    """A set value (``toset``, the set functions): distinct elements in Terraform's order."""

    element_type: Any = None
    """As :attr:`TfList.element_type`."""


class TfMap(dict[str, Any]):
    """A map value (``tomap``): Terraform's ``map(T)``, as opposed to a literal ``{...}``
    (an object)."""

    element_type: Any = None
    """As :attr:`TfList.element_type`."""


class TypeName(str):
    """A type as ``type()`` returns it: the console prints it bare, not quoted."""

    __slots__ = ()


class FunctionError(Exception):
    """A built-in function was called with bad arguments; the message is shown to the user."""


# --- limits -----------------------------------------------------------------------------------
# Each limit is named in the diagnostic that enforces it and listed in the README's "Language
# limits". They bound what one configuration can make trainform do: a fuzzed or hostile file
# gets a diagnostic within seconds, never a crash, a hang or gigabytes of memory.

MAX_CONFIG_FILE_BYTES = 256 * 1024
"""Size of one configuration file (*.train.hcl, *.train.yaml): python-hcl2 parses about
150 KiB a second, so a file at the limit is parsed in under two seconds (once: parse trees
are cached)."""
MAX_BLOCKS = 10_000
"""Top-level blocks in one configuration (all its files)."""
MAX_NESTING_DEPTH = 64
"""Levels of nesting: blocks, brackets, calls, operators, conditionals, interpolations, YAML
collections, and the values expressions make."""
MAX_NUMBER_DIGITS = 100
"""Digits of a number before its decimal point (so every number is below 10**100)."""
MAX_STRING_LENGTH = 4 * 1024 * 1024
"""Characters of one string, and of all the strings of one value together."""
MAX_COLLECTION_SIZE = 100_000
"""Elements of one value, nested elements included (a shared element counts each time)."""
MAX_INSTANCES = 1_000
"""Instances of one block, through count or for_each."""
MAX_FILE_BYTES = 4 * 1024 * 1024
"""Size of a file read by file() or filesha256() (regular files only)."""
MAX_EVALUATION_STEPS = 500_000
"""Work in evaluating one expression: one step per sub-expression, element or for iteration."""

_NUMBER_BOUND = 10**MAX_NUMBER_DIGITS


class LimitError(ValueError):
    """A value or a configuration exceeds one of the limits above; the message names it."""


def number_problem(value: int | float) -> str | None:
    """Why a number is refused (not finite, or past the number size limit), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"a number must be finite and have at most {MAX_NUMBER_DIGITS} digits"
    if abs(value) >= _NUMBER_BOUND:
        return f"a number may have at most {MAX_NUMBER_DIGITS} digits (the number size limit)"
    return None


Sizes = dict[int, tuple[Any, int, int, int]]
"""id(container) -> (container, elements, characters, depth): sizes already measured. The
container is kept so that its id cannot be reused while the entry exists."""


def measure(
    value: Any, known: Sizes | None = None, charge: Callable[[int], None] | None = None
) -> tuple[int, int]:
    """(elements, characters) of a value: its elements and theirs, nested ones included, and
    the characters of all its strings (map keys included), a shared part counted each time
    it appears. Raises :class:`LimitError` if the value or a part of it is past the
    collection size, string length, number size or nesting limits. ``known`` remembers containers already measured (so a value referred to many
    times is measured once); ``charge`` is told the number of elements of each container
    measured afresh."""
    elements, chars, _ = _measure(value, {} if known is None else known, charge, 0)
    return elements, chars


def _measure(
    value: Any, known: Sizes, charge: Callable[[int], None] | None, level: int
) -> tuple[int, int, int]:
    if isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            raise LimitError(
                f"a string may have at most {MAX_STRING_LENGTH} characters (the string length "
                f"limit); this one has {len(value)}"
            )
        return 0, len(value), 0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        problem = number_problem(value)
        if problem:
            raise LimitError(problem)
        return 0, 0, 0
    if not isinstance(value, (list, dict)):
        return 0, 0, 0
    hit = known.get(id(value))
    if hit is not None and hit[0] is value:
        _, elements, chars, depth = hit
    else:
        if level >= MAX_NESTING_DEPTH:
            raise LimitError(_too_deep("a value"))
        if charge is not None:
            charge(len(value))
        elements, chars, depth = len(value), 0, 0
        if isinstance(value, dict):
            chars = sum(len(k) for k in value if isinstance(k, str))
        check_totals(elements, chars)
        for item in value.values() if isinstance(value, dict) else value:
            e, c, d = _measure(item, known, charge, level + 1)
            elements += e
            chars += c
            depth = max(depth, d + 1)
            check_totals(elements, chars)
        if len(known) > 200_000:  # a cache only: start afresh rather than grow without end
            known.clear()
        known[id(value)] = (value, elements, chars, depth)
    if level + depth > MAX_NESTING_DEPTH:
        raise LimitError(_too_deep("a value"))
    return elements, chars, depth


def check_totals(elements: int, chars: int) -> None:
    """Raise LimitError if a value of this many elements and characters is past a limit."""
    if elements > MAX_COLLECTION_SIZE:
        raise LimitError(
            f"a value may hold at most {MAX_COLLECTION_SIZE} elements, nested ones included "
            "(the collection size limit)"
        )
    if chars > MAX_STRING_LENGTH:
        raise LimitError(
            f"a value may hold at most {MAX_STRING_LENGTH} characters of text in all its "
            "strings (the string length limit)"
        )


def _too_deep(what: str) -> str:
    return f"{what} may be nested at most {MAX_NESTING_DEPTH} levels deep (the nesting limit)"


@dataclass
class FunctionContext:
    """What a built-in function may know about its call: where relative paths start, and a
    record of every file read (path -> sha256), so a saved plan can tell that an input changed."""

    base_dir: Path
    files_read: dict[str, str] = field(default_factory=dict)
    module_dirs: tuple[Path, ...] = ()
    """The folders of the modules the configuration loads (local ones wherever they are,
    installed ones): templatefile() reads there too, as in ``base_dir``."""
    sizes: Sizes = field(default_factory=dict, repr=False, compare=False)
    apply_time: bool = False
    """True while the engine evaluates at apply time: the non-deterministic functions
    (``timestamp``, ``uuid``) are decided then and are unknown at plan time, as in Terraform."""

    def read_file(self, path: str) -> bytes:
        """Read a file relative to the configuration directory and record its hash. Only a
        regular file of at most :data:`MAX_FILE_BYTES` is read: a FIFO, a device
        (``/dev/zero``) or a folder is refused without blocking."""
        full = (self.base_dir / path).resolve() if not Path(path).is_absolute() else Path(path)
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
            fd = os.open(full, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise FunctionError(f"cannot read file {path!r}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "rb") as fh:
                if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                    raise FunctionError(f"{path!r} is not a regular file")
                data = fh.read(MAX_FILE_BYTES + 1)  # the size may be changing: read, not stat
        except OSError as exc:
            raise FunctionError(f"cannot read file {path!r}: {exc.strerror}") from None
        if len(data) > MAX_FILE_BYTES:
            raise FunctionError(
                f"file {path!r} is larger than {MAX_FILE_BYTES} bytes (the limit of file "
                "and filesha256)"
            )
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
