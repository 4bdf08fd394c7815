"""Where sensitive values sit inside an instance's attributes: dotted paths.

``variables`` means the whole attribute is sensitive; ``variables.TOKEN`` only that key of the
map, so the other keys stay visible in plans and state (as in Terraform, where sensitivity
marks values, not whole attributes). Paths are found statically, from the expressions: a
literal map's entries are judged one by one, and a plain reference to another resource
carries that resource's paths along (``environment = environment.gpu`` makes
``environment.variables.TOKEN`` sensitive). Anything else that refers to a sensitive value
is sensitive whole.

The same paths are used to seal values for state (:func:`seal_paths`), to mask them in plans
(:func:`mask_paths`) and to list the sealed leaves of recorded attributes
(:func:`sealed_paths`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

from lark import Tree

from trainform.config.expr import Ref, object_entries, references, single_reference
from trainform.config.source import Expr, Template, node_pos
from trainform.errors import ConfigError, Diagnostic
from trainform.state import secrets

SensitiveRef = Callable[[Ref], "set[str] | None"]
"""For a reference: None if it carries nothing sensitive; else the paths, relative to the
referenced value, that are sensitive (``{""}`` for the whole value)."""


def expression_paths(name: str, expr: Expr, ref_paths: SensitiveRef) -> set[str]:
    """The sensitive paths of attribute (or map entry) ``name`` set to ``expr``.

    ``sensitive(...)`` anywhere in the expression makes it sensitive whole; an expression
    that is ``nonsensitive(x)`` is not sensitive, and references inside ``nonsensitive(...)``
    do not count. Raises ConfigError for ``nonsensitive(x)`` where x is not sensitive, as
    Terraform does (the call would hide nothing)."""
    call = _call(expr)
    if call is not None and call[0] == "nonsensitive":
        args = call[1]
        if len(args) == 1 and not expression_paths(name, args[0], ref_paths):
            raise ConfigError(
                Diagnostic(
                    "nonsensitive(): the given value is not sensitive, so this call is redundant",
                    node_pos(call[2], expr.pos.file, expr.pos),
                    "remove the nonsensitive() call",
                )
            )
        return set()
    if _calls(expr.node, "sensitive"):
        return {name}
    entries = object_entries(expr)
    if entries is not None:
        out: set[str] = set()
        for key, sub in entries:
            if "." in key:  # a dotted key cannot be told apart from a path: judge it whole
                if expression_paths(key, sub, ref_paths):
                    return {name}
                continue
            out |= expression_paths(f"{name}.{key}", sub, ref_paths)
        return out
    ref = single_reference(expr)
    if ref is not None:
        found = ref_paths(ref)
        if found is None:
            return set()
        return {f"{name}.{p}" if p else name for p in found}
    if any(ref_paths(r) is not None for r in _references_outside_nonsensitive(expr)):
        return {name}
    return set()


def is_sensitive_expression(expr: Expr, ref_paths: SensitiveRef) -> bool:
    """Whether any part of the value of ``expr`` is sensitive (see expression_paths)."""
    return bool(expression_paths("value", expr, ref_paths))


def _unwrap(node: object) -> object:
    if isinstance(node, Template):
        trees = [p for p in node.parts if isinstance(p, Tree)]
        return trees[0] if len(node.parts) == 1 and len(trees) == 1 else None
    while isinstance(node, Tree) and node.data == "expr_term":
        kids = [c for c in node.children if isinstance(c, Tree)]
        if len(kids) != 1:
            return None
        node = kids[0]
    return node


def _call(expr: Expr) -> tuple[str, list[Expr], Tree] | None:
    """(name, argument expressions, node) if expr is a single function call."""
    node = _unwrap(expr.node)
    if not (isinstance(node, Tree) and node.data == "function_call"):
        return None
    args = next((c for c in node.children if isinstance(c, Tree) and c.data == "arguments"), None)
    kids = (
        []
        if args is None
        else [c for c in args.children if isinstance(c, Tree) and c.data != "new_line_or_comment"]
    )
    return str(node.children[0].children[0]), [Expr(k, expr.pos) for k in kids], node


def _function_calls(node: object, name: str) -> list[Tree]:
    """Every call of function ``name`` in a parse tree (YAML templates and lists included)."""
    found: list[Tree] = []
    if isinstance(node, Template):
        for part in node.parts:
            found.extend(_function_calls(part, name))
    elif isinstance(node, list):
        for item in node:
            found.extend(_function_calls(getattr(item, "node", item), name))
    elif isinstance(node, dict):
        for item in node.values():
            found.extend(_function_calls(getattr(item, "node", item), name))
    elif isinstance(node, Tree):
        for sub in node.iter_subtrees():
            if sub.data == "function_call" and str(sub.children[0].children[0]) == name:
                found.append(sub)
    return found


def _calls(node: object, name: str) -> bool:
    return bool(_function_calls(node, name))


def _references_outside_nonsensitive(expr: Expr) -> list[Ref]:
    inside = {
        (r.root, r.steps, r.pos)
        for call in _function_calls(expr.node, "nonsensitive")
        for r in references(Expr(call, expr.pos))
    }
    return [r for r in references(expr) if (r.root, r.steps, r.pos) not in inside]


def relative_paths(paths: Iterable[str], steps: list[str]) -> set[str] | None:
    """Of a resource's sensitive ``paths``, what lies under the attribute path ``steps``
    (relative to it; ``""`` for all of it), or None if nothing does."""
    here = ".".join(steps)
    out: set[str] = set()
    for p in paths:
        if not here or p.startswith(here + "."):
            out.add(p[len(here) + 1 :] if here else p)
        elif p == here or here.startswith(p + "."):
            return {""}
    return out or None


def _split(path: str) -> tuple[str, list[str]]:
    first, _, rest = path.partition(".")
    return first, rest.split(".") if rest else []


def _replace(
    values: dict[str, Any], paths: Iterable[str], leaf: Callable[[Any], Any]
) -> dict[str, Any]:
    out = dict(values)
    copied: set[str] = set()
    for path in sorted(paths):  # a whole attribute sorts before the paths inside it
        first, rest = _split(path)
        value = out.get(first)
        if value is None:
            continue
        if not rest or not isinstance(value, dict) or secrets.is_sealed(value):
            out[first] = leaf(value)  # not a map (any more): hidden whole
            continue
        if first not in copied:
            out[first] = value = copy.deepcopy(value)
            copied.add(first)
        node: Any = value
        for step in rest[:-1]:
            node = node.get(step) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(rest[-1]) is not None:
            node[rest[-1]] = leaf(node[rest[-1]])
    return out


def seal_paths(values: dict[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """``values`` with the value at each path replaced by its salted hash."""
    return _replace(values, paths, lambda v: v if secrets.is_sealed(v) else secrets.seal(v))


def mask_paths(values: dict[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """``values`` with the value at each path replaced by None (a plan never holds it)."""
    return _replace(values, paths, lambda _: None)


def sealed_paths(values: dict[str, Any]) -> tuple[str, ...]:
    """The paths of every sealed value in recorded attributes, sorted."""
    out: list[str] = []

    def walk(value: Any, path: str) -> None:
        if secrets.is_sealed(value):
            out.append(path)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}.{k}")

    for name, value in values.items():
        walk(value, name)
    return tuple(sorted(out))


def top_level(paths: Iterable[str]) -> set[str]:
    """The attributes that are sensitive whole."""
    return {p for p in paths if "." not in p}
