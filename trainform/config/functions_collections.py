"""Terraform's collection, set, number and type functions that functions.py does not hold:
``sum``, ``alltrue``, ``chunklist``, ``setproduct``, ``transpose``, ``type``... Registered
with functions.py's :func:`_fn`, so they check arity and report errors the same way.

Results that Terraform types as lists, sets or maps are made :class:`TfList`, :class:`TfSet`
and :class:`TfMap` (see types.py). Sizes are checked before anything is built: a product of
sets or a chunking is refused past the collection size limit rather than built.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from trainform.config.functions import (
    _fn,
    _identity,
    _num_result,
    _show,
    _want_bool,
    _want_int,
    _want_list,
    _want_map,
    _want_num,
    _want_sequence,
    _want_str,
)
from trainform.config.types import (
    element_type_of,
    infer,
    make_set,
    type_syntax,
    typed,
    unified,
    unify_all,
)
from trainform.config.values import (
    MAX_COLLECTION_SIZE,
    FunctionContext,
    FunctionError,
    LimitError,
    TfList,
    TfMap,
    TfSet,
    TypeName,
)


def _too_many(count: int) -> None:
    if count > MAX_COLLECTION_SIZE:
        raise LimitError(
            f"the result would hold {count} elements, more than {MAX_COLLECTION_SIZE} "
            "(the collection size limit)"
        )


@_fn("sum", "sum(list): The total of a list of numbers.")
def _sum(ctx: FunctionContext, items: Any) -> Any:
    elements = _want_list(items, "argument")
    if not elements:
        raise FunctionError("cannot sum an empty list")
    numbers = [_want_num(v, f"element {i}") for i, v in enumerate(elements)]
    if all(isinstance(n, int) for n in numbers):
        return sum(numbers)
    # Decimal arithmetic on the shortest spellings, as Terraform's big floats: 0.1 + 0.2 = 0.3.
    total = sum(Decimal(repr(n)) if isinstance(n, float) else Decimal(n) for n in numbers)
    return _num_result(float(total), numbers)


@_fn("alltrue", "alltrue(list): Whether every element is true (true for an empty list).")
def _alltrue(ctx: FunctionContext, items: Any) -> bool:
    flags = [_want_bool(v, f"element {i}") for i, v in enumerate(_want_list(items, "argument"))]
    return all(flags)


@_fn("anytrue", "anytrue(list): Whether any element is true (false for an empty list).")
def _anytrue(ctx: FunctionContext, items: Any) -> bool:
    flags = [_want_bool(v, f"element {i}") for i, v in enumerate(_want_list(items, "argument"))]
    return any(flags)


@_fn("coalescelist", "coalescelist(lists...): The first list that is not empty.")
def _coalescelist(ctx: FunctionContext, first: Any, *rest: Any) -> Any:
    for number, value in enumerate((first, *rest), start=1):
        if value is None:
            continue
        if _want_sequence(value, f"argument {number}"):
            return value
    raise FunctionError("no non-empty list among the arguments")


def _sets(first: Any, rest: tuple[Any, ...]) -> tuple[list[list[Any]], Any]:
    """The arguments' elements, converted to the one type all of them share, and that type."""
    args = (first, *rest)
    lists = [_want_list(v, f"argument {i}") for i, v in enumerate(args, start=1)]
    element = unify_all([element_type_of(v) for v in args])
    if element is None:
        raise FunctionError("all set elements must have the same type")
    flat = unified([e for items in lists for e in items], "set elements")
    out, start = [], 0
    for items in lists:
        out.append(flat[start : start + len(items)])
        start += len(items)
    return out, element


@_fn("setunion", "setunion(sets...): The set of elements in any of the sets.")
def _setunion(ctx: FunctionContext, first: Any, *rest: Any) -> list[Any]:
    lists, element = _sets(first, rest)
    return typed(make_set([e for items in lists for e in items]), element)


@_fn("setintersection", "setintersection(sets...): The set of elements in all of the sets.")
def _setintersection(ctx: FunctionContext, first: Any, *rest: Any) -> list[Any]:
    (head, *others), element = _sets(first, rest)
    keep = [{_identity(e) for e in items} for items in others]
    return typed(make_set([e for e in head if all(_identity(e) in k for k in keep)]), element)


@_fn("setsubtract", "setsubtract(a, b): The set of elements of a that are not in b.")
def _setsubtract(ctx: FunctionContext, a: Any, b: Any) -> list[Any]:
    (first, second), element = _sets(a, (b,))
    drop = {_identity(e) for e in second}
    return typed(make_set([e for e in first if _identity(e) not in drop]), element)


@_fn(
    "setproduct",
    "setproduct(sets...): Every combination of one element from each set, as lists.",
)
def _setproduct(ctx: FunctionContext, first: Any, *rest: Any) -> list[Any]:
    # Each argument is a list or set: its elements take one type, as tolist() would give.
    args = (first, *rest)
    lists = [
        unified(_want_list(v, f"argument {i}"), f"elements of argument {i}")
        for i, v in enumerate(args, start=1)
    ]
    count = math.prod(len(items) for items in lists)
    _too_many(count * (len(lists) + 1))
    combos: list[list[Any]] = [[]]
    for items in lists:
        combos = [[*combo, e] for combo in combos for e in items]
    # Each combination is a tuple; a set among the arguments makes a set of them.
    element = ("tuple", tuple(element_type_of(v) for v in args))
    if any(isinstance(v, TfSet) for v in args):
        return typed(make_set(combos), element)
    return typed(TfList(combos), element)


@_fn(
    "chunklist",
    "chunklist(list, size): The list split into lists of at most size elements.",
)
def _chunklist(ctx: FunctionContext, items: Any, size: Any) -> list[Any]:
    elements = unified(_want_list(items, "list"), "elements")
    element = element_type_of(items)
    width = _want_int(size, "size")
    if width < 0:
        raise FunctionError(f"size must not be negative, got {width}")
    if width == 0:
        return typed(TfList([typed(TfList(elements), element)]), ("list", element))
    _too_many(len(elements) + len(elements) // width + 1)
    chunks = (
        typed(TfList(elements[i : i + width]), element) for i in range(0, len(elements), width)
    )
    return typed(TfList(chunks), ("list", element))


@_fn(
    "transpose",
    "transpose(map): For a map of lists of strings, the map from each string to the keys "
    "that list it.",
)
def _transpose(ctx: FunctionContext, mapping: Any) -> dict[str, Any]:
    out: dict[str, list[str]] = {}
    table = _want_map(mapping, "argument")
    for key in sorted(table):
        for i, item in enumerate(_want_list(table[key], f"value of {key!r}")):
            out.setdefault(_want_str(item, f"element {i} of {key!r}"), []).append(key)
    return typed(
        TfMap({k: typed(TfList(v), "string") for k, v in sorted(out.items())}), ("list", "string")
    )


@_fn(
    "matchkeys",
    "matchkeys(values, keys, searchset): The elements of values whose element at the same "
    "position in keys is in searchset.",
)
def _matchkeys(ctx: FunctionContext, values: Any, keys: Any, searchset: Any) -> list[Any]:
    items = _want_list(values, "values")
    names = _want_list(keys, "keys")
    wanted = _want_list(searchset, "searchset")
    if len(items) != len(names):
        raise FunctionError(f"values has {len(items)} elements but keys has {len(names)}")
    if names and wanted and unify_all([infer(names[0]), infer(wanted[0])]) is None:
        raise FunctionError("keys and searchset must be of the same type")
    search = {_identity(v) for v in unified(wanted + names, "keys and searchset")[: len(wanted)]}
    keyed = unified(names + wanted, "keys and searchset")[: len(names)]
    found = TfList(v for v, k in zip(items, keyed, strict=True) if _identity(k) in search)
    return typed(found, element_type_of(values))


@_fn("log", "log(number, base): The logarithm of number in base.")
def _log(ctx: FunctionContext, value: Any, base: Any) -> float:
    x = _want_num(value, "number")
    b = _want_num(base, "base")
    try:
        return math.log(x) / math.log(b)
    except (ValueError, ZeroDivisionError):
        raise FunctionError(
            f"the logarithm of {_show(x)} in base {_show(b)} is undefined"
        ) from None


@_fn("type", "type(value): The value's type in Terraform's syntax (for the console).")
def _type(ctx: FunctionContext, value: Any) -> str:
    if isinstance(value, TypeName):  # Terraform's type() of a type is the type "type"
        return TypeName("type")
    return TypeName(type_syntax(infer(value)))


@_fn(
    "sensitive",
    "sensitive(value): value, marked sensitive: the attribute it sets is hidden in plans and "
    "sealed in state.",
)
def _sensitive(ctx: FunctionContext, value: Any) -> Any:
    return value  # marked statically, by the attribute's expression (sensitivity.py)


@_fn(
    "nonsensitive",
    "nonsensitive(value): value with its sensitive mark removed (an error if it has none).",
)
def _nonsensitive(ctx: FunctionContext, value: Any) -> Any:
    return value  # checked statically (sensitivity.py)


@_fn("ephemeralasnull", "ephemeralasnull(value): value (trainform has no ephemeral values).")
def _ephemeralasnull(ctx: FunctionContext, value: Any) -> Any:
    return value


@_fn("list", "list(...): Removed in Terraform 0.12; write [...] or use tolist().")
def _list(ctx: FunctionContext, *values: Any) -> Any:
    raise FunctionError("the list() function was removed; write [a, b] or use tolist()")


@_fn("map", "map(...): Removed in Terraform 0.12; write {...} or use tomap().")
def _map(ctx: FunctionContext, *values: Any) -> Any:
    raise FunctionError("the map() function was removed; write {a = b} or use tomap()")


def _lazy(name: str, doc: str) -> None:
    """Register a function the evaluator calls itself (its arguments are evaluated lazily),
    so that it is listed and documented like the others."""

    @_fn(name, doc)
    def _never(ctx: FunctionContext, *args: Any) -> Any:
        raise FunctionError("is evaluated by the expression evaluator")


_lazy(
    "try",
    "try(expressions...): The value of the first expression that evaluates without an error.",
)
_lazy("can", "can(expression): Whether the expression evaluates without an error.")
