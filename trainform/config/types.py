"""Terraform's type system over trainform's plain values: inference, unification, conversion
and the type syntax ``type()`` prints.

Values stay plain Python (see values.py): a ``list`` is a tuple and a ``dict`` an object, as
literals make them; :class:`~trainform.config.values.TfList`, ``TfSet`` and ``TfMap`` (list,
dict subclasses, so everything else treats them as lists and dicts) mark what a conversion
function made a list, set or map. Types are plain data:

- ``"string"``, ``"number"``, ``"bool"``, ``"dynamic"`` (null, unknown: any type);
- ``("list", T)``, ``("set", T)``, ``("map", T)``;
- ``("tuple", (T, ...))``, ``("object", (("key", T), ...))`` (keys sorted).

Unification follows cty's ``convert.Unify`` closely enough for what the language does with it
(conditionals, ``coalesce``, ``tolist``, ``tomap``...): strings absorb numbers and bools,
tuples and objects become lists and maps when their elements agree.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, TypeAlias, TypeVar

from trainform.config.values import (
    UNKNOWN,
    FunctionError,
    TfList,
    TfMap,
    TfSet,
)

Type: TypeAlias = Any
"""A type, as described in the module docstring."""

DYNAMIC = "dynamic"
_PRIMITIVES = ("string", "number", "bool")


def is_number(value: Any) -> bool:
    """Whether value is an HCL number (Python's bool is an int; HCL keeps them apart)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number_text(number: int | float) -> str:
    """Terraform's canonical spelling of a number: 1 -> "1", 1.0 -> "1", 1e-7 -> "0.0000001"."""
    if isinstance(number, int):
        return str(number)
    if not math.isfinite(number):
        raise FunctionError(f"{number} cannot be written as a number")
    if number == 0:
        return "-0" if math.copysign(1.0, number) < 0 else "0"
    text = format(Decimal(repr(number)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def infer(value: Any) -> Type:
    """The type of a value."""
    if value is None or value is UNKNOWN:
        return DYNAMIC
    if isinstance(value, bool):
        return "bool"
    if is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (TfList, TfSet)):
        kind = "set" if isinstance(value, TfSet) else "list"
        return (kind, _element_type(value))
    if isinstance(value, TfMap):
        return ("map", _element_type(value))
    if isinstance(value, list):
        return ("tuple", tuple(infer(v) for v in value))
    if isinstance(value, dict):
        return ("object", tuple((k, infer(value[k])) for k in sorted(value)))
    return DYNAMIC


def _element_type(collection: TfList | TfSet | TfMap) -> Type:
    if not collection and collection.element_type is not None:
        return collection.element_type
    values = collection.values() if isinstance(collection, dict) else collection
    found = unify_all([infer(v) for v in values])
    return DYNAMIC if found is None else found


_Collection = TypeVar("_Collection", TfList, TfSet, TfMap)


def typed(collection: _Collection, element_type: Type) -> _Collection:
    """collection, its element type recorded for when it is empty (a list, set or map's
    type, unlike a tuple's or an object's, does not depend on its elements): ``split`` gives
    ``list(string)`` even when it gives ``tolist([])``."""
    collection.element_type = None if element_type == DYNAMIC else element_type
    return collection


def element_type_of(value: Any) -> Type:
    """The type the elements of a list, set, map, tuple or object convert to (as Terraform
    converts an argument of type ``list(any)`` or ``map(any)``), dynamic if there are none.
    Raises FunctionError if they have no type in common."""
    t = infer(value)
    if isinstance(t, tuple) and t[0] in ("list", "set", "map"):
        return t[1]
    if isinstance(t, tuple):
        found = unify_all(_elements(t))
        if found is None:
            raise FunctionError("all elements must have the same type")
        return found
    return DYNAMIC


def unify(a: Type, b: Type) -> Type | None:
    """The most specific type both a and b convert to, or None if there is none."""
    if a == b:
        return a
    if a == DYNAMIC:
        return b
    if b == DYNAMIC:
        return a
    if isinstance(a, str) and isinstance(b, str):
        pair = {a, b}
        return "string" if "string" in pair and pair <= set(_PRIMITIVES) else None
    if isinstance(a, str) or isinstance(b, str):
        return None
    ka, kb = a[0], b[0]
    if ka == kb and ka in ("list", "set", "map"):
        inner = unify(a[1], b[1])
        return None if inner is None else (ka, inner)
    if ka == kb == "tuple" and len(a[1]) == len(b[1]):
        parts = [unify(x, y) for x, y in zip(a[1], b[1], strict=True)]
        return None if None in parts else ("tuple", tuple(parts))
    if ka == kb == "object" and [k for k, _ in a[1]] == [k for k, _ in b[1]]:
        attrs = [(k, unify(x, y)) for (k, x), (_, y) in zip(a[1], b[1], strict=True)]
        return None if any(t is None for _, t in attrs) else ("object", tuple(attrs))
    sequences = ("tuple", "list", "set")
    if ka in sequences and kb in sequences:
        kind = "set" if "set" in (ka, kb) else "list"
        inner = unify_all(_elements(a) + _elements(b))
        return None if inner is None else (kind, inner)
    if ka in ("object", "map") and kb in ("object", "map"):
        inner = unify_all(_elements(a) + _elements(b))
        return None if inner is None else ("map", inner)
    return None


def _elements(t: Type) -> list[Type]:
    if t[0] == "tuple":
        return list(t[1])
    if t[0] == "object":
        return [v for _, v in t[1]]
    return [t[1]]


def unify_all(types: list[Type]) -> Type | None:
    """The type all of ``types`` convert to (dynamic for none), or None."""
    out: Type = DYNAMIC
    for t in types:
        out = unify(out, t)
        if out is None:
            return None
    return out


def convert(value: Any, target: Type) -> Any:
    """value converted to the target type. Raises FunctionError if it cannot be."""
    if target == DYNAMIC or value is None or value is UNKNOWN:
        return value
    if target == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if is_number(value):
            return number_text(value)
    elif target == "number":
        if is_number(value):
            return value
        if isinstance(value, str):
            from trainform.config.functions import _parse_number

            number = _parse_number(value)
            if number is not None:
                return number
            raise FunctionError(f'cannot convert "{value}" to number')
    elif target == "bool":
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
    elif isinstance(target, tuple):
        kind = target[0]
        if kind in ("list", "set") and isinstance(value, list):
            items = [convert(v, target[1]) for v in value]
            if kind == "list":
                return typed(TfList(items), target[1])
            return typed(make_set(items), target[1])
        if kind == "tuple" and isinstance(value, list) and len(value) == len(target[1]):
            return [convert(v, t) for v, t in zip(value, target[1], strict=True)]
        if kind == "map" and isinstance(value, dict):
            return typed(TfMap({k: convert(v, target[1]) for k, v in value.items()}), target[1])
        if kind == "object" and isinstance(value, dict):
            wanted = dict(target[1])
            if set(wanted) <= set(value):
                return {k: convert(value[k], t) for k, t in wanted.items()}
    raise FunctionError(f"cannot convert {describe(infer(value))} to {describe(target)}")


def make_set(items: list[Any]) -> TfSet:
    """A set of items: duplicates dropped, ordered as Terraform orders sets (strings and
    numbers sorted, anything else in first-seen order)."""
    from trainform.config.functions import _distinct

    elements = _distinct(items)
    if elements and all(is_number(e) for e in elements):
        return TfSet(sorted(elements))
    if elements and all(isinstance(e, str) for e in elements):
        return TfSet(sorted(elements))
    return TfSet(elements)


def unified(values: list[Any], what: str = "arguments") -> list[Any]:
    """values converted to the one type they all convert to. Raises FunctionError if none."""
    target = unify_all([infer(v) for v in values])
    if target is None:
        raise FunctionError(f"all {what} must have the same type")
    return [convert(v, target) for v in values]


def describe(t: Type) -> str:
    """A type in one line, for messages: ``list of string``, ``object``..."""
    if isinstance(t, str):
        return t
    if t[0] in ("list", "set", "map"):
        return f"{t[0]} of {describe(t[1])}"
    return t[0]


def type_syntax(t: Type, indent: int = 0) -> str:
    """A type as Terraform's ``type()`` shows it in the console (nested types on their own
    lines, four spaces deeper)."""
    pad = " " * (indent + 4)
    end = " " * indent
    if isinstance(t, str):
        return t
    kind = t[0]
    if kind in ("list", "set", "map"):
        inner = type_syntax(t[1], indent + 4)
        # Terraform writes a primitive or a collection of one in place: list(list(string)).
        if isinstance(t[1], str) or (t[1][0] in ("list", "set", "map") and "\n" not in inner):
            return f"{kind}({inner})"
        return f"{kind}(\n{pad}{inner},\n{end})"
    if kind == "tuple":
        if not t[1]:
            return "tuple([])"
        body = "".join(f"{pad}{type_syntax(e, indent + 4)},\n" for e in t[1])
        return f"tuple([\n{body}{end}])"
    if not t[1]:
        return "object({})"
    body = "".join(f"{pad}{k}: {type_syntax(v, indent + 4)},\n" for k, v in t[1])
    return f"object({{\n{body}{end}}})"
