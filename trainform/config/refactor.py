"""``moved``, ``removed``, ``import`` and ``check`` blocks, and ``lifecycle`` pre- and
postconditions: reading them from blocks and checking them against the configuration.

Addresses in these blocks are read as written (``compute.box[0]``,
``module.team["a"].compute.box``, ``module.a``) and parsed by :mod:`trainform.config.address`,
so they print the same way everywhere. What they do to state is planned in
:mod:`trainform.planner.moves`; conditions are evaluated in :mod:`trainform.config.conditions`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lark import Token, Tree

from trainform.config import schema as S
from trainform.config.address import (
    Address,
    AddressError,
    ModulePath,
    ModuleStep,
    module_text,
    parse_target,
)
from trainform.config.expr import Scope, evaluate, references
from trainform.config.model import (
    Check,
    Condition,
    Import,
    Moved,
    Removed,
    Resource,
    module_prefix,
)
from trainform.config.source import Expr, RawBlock, Template
from trainform.config.values import FunctionContext
from trainform.errors import ConfigError, Diagnostic, Pos

BLOCK_TYPES = ("moved", "removed", "import", "check")

# Parse-tree nodes a static address is made of (anything else is an expression).
_ADDRESS_NODES = {
    "expr_term",
    "get_attr_expr_term",
    "get_attr",
    "identifier",
    "index_expr_term",
    "braces_index",
    "short_index",
    "int_lit",
    "string",
    "string_part",
    "new_line_or_comment",
}


def address_text(expr: Expr) -> str | None:
    """The text of an address written as a bare traversal (HCL) or a plain string (YAML),
    or None if ``expr`` is something else (a function call, a template with ``${}``)."""
    node = expr.node
    if isinstance(node, Template):
        if len(node.parts) == 1 and isinstance(node.parts[0], str):
            return node.parts[0]
        return None
    if not isinstance(node, Tree):
        return None
    if any(isinstance(t, Tree) and t.data not in _ADDRESS_NODES for t in node.iter_subtrees()):
        return None
    return "".join(
        str(tok) for tok in node.scan_values(lambda v: isinstance(v, Token)) if tok.type != "NL"
    ).strip()


def parse_block_address(expr: Expr, what: str) -> Address | ModulePath:
    """A resource, instance or module address from ``from``/``to``; ConfigError if it is
    none."""
    text = address_text(expr)
    if text is None:
        raise ConfigError(
            Diagnostic(
                f"{what} must be an address such as compute.box, run.train[0] or module.team",
                expr.pos,
                "write it without quotes or ${...}: it names a block, it is not evaluated",
            )
        )
    try:
        return parse_target(text)
    except AddressError as exc:
        raise ConfigError(Diagnostic(f"{what}: {exc}", expr.pos)) from None


def text_of(target: Address | ModulePath) -> str:
    """How address.py prints a parsed ``from``/``to``."""
    return module_text(target) if isinstance(target, tuple) else str(target)


def _literal_bool(blk: RawBlock, name: str, default: bool) -> bool:
    if name not in blk.attrs:
        return default
    try:
        value = evaluate(blk.attrs[name].expr, Scope({}, FunctionContext(Path("."))))
    except ConfigError:
        value = None
    if not isinstance(value, bool):
        raise ConfigError(Diagnostic(f"{name} must be true or false", blk.attrs[name].expr.pos))
    return value


def _only(blk: RawBlock, what: str, attrs: Iterable[str], blocks: Iterable[str] = ()) -> None:
    """ConfigError for an attribute or nested block ``blk`` does not take, or a missing one
    of ``attrs`` (all required)."""
    attrs, blocks = tuple(attrs), tuple(blocks)
    errors = []
    for name, attr in blk.attrs.items():
        if name not in attrs:
            errors.append(
                Diagnostic(
                    f"unsupported attribute {name!r} in {what}",
                    attr.pos,
                    S.did_you_mean(name, [*attrs, *blocks]) or f"it takes {', '.join(attrs)}",
                )
            )
    for nested in blk.blocks:
        if nested.type not in blocks:
            errors.append(
                Diagnostic(
                    f"unsupported block {nested.type!r} in {what}",
                    nested.pos,
                    S.did_you_mean(nested.type, [*blocks, *attrs]),
                )
            )
    for name in attrs:
        if name not in blk.attrs:
            errors.append(Diagnostic(f"{what} requires attribute {name!r}", blk.pos))
    if errors:
        raise ConfigError(errors)


def condition(blk: RawBlock, what: str) -> Condition:
    """A ``precondition``, ``postcondition`` or ``assert`` block."""
    _only(blk, f"{what} block", ("condition", "error_message"))
    return Condition(blk.attrs["condition"].expr, blk.attrs["error_message"].expr, blk.pos)


def lifecycle_conditions(
    blk: RawBlock,
) -> tuple[tuple[Condition, ...], tuple[Condition, ...]]:
    """The preconditions and postconditions of a resource's ``lifecycle`` block."""
    pre = tuple(condition(b, b.type) for b in blk.blocks if b.type == "precondition")
    post = tuple(condition(b, b.type) for b in blk.blocks if b.type == "postcondition")
    return pre, post


@dataclass
class Refactoring:
    """Moved/removed/import/check blocks, as :class:`Module` fields: the root module's, and
    (moved, removed and check) its modules', each marked with the module that declares it."""

    moved: list[Moved] = field(default_factory=list)
    removed: list[Removed] = field(default_factory=list)
    imports: list[Import] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    def fields(self) -> dict[str, Any]:
        return {
            "moved": tuple(self.moved),
            "removed": tuple(self.removed),
            "imports": tuple(self.imports),
            "checks": tuple(self.checks),
        }

    def in_module(self, path: tuple[str, ...]) -> Refactoring:
        """These blocks as declared in the module at call path ``path``."""
        return Refactoring(
            [replace(m, module=path) for m in self.moved],
            [replace(r, module=path) for r in self.removed],
            [],  # only the root module may import (see child_imports)
            [replace(c, module=path) for c in self.checks],
        )

    def extend(self, other: Refactoring) -> None:
        self.moved += other.moved
        self.removed += other.removed
        self.imports += other.imports
        self.checks += other.checks


def child_imports(found: Refactoring, address: str) -> list[Diagnostic]:
    """Import blocks in a child module are an error, as in Terraform (only the root module
    may import)."""
    return [
        Diagnostic(
            f"Invalid import configuration: an import block was detected in {address}; "
            "import blocks are only allowed in the root module",
            imp.pos,
            f"move it to the root module, with to = {address}.{imp.to}",
        )
        for imp in found.imports
    ]


def read_block(blk: RawBlock, into: Refactoring) -> None:
    """Read one moved/removed/import/check block. Raises ConfigError."""
    if blk.type == "moved":
        _only(blk, "a moved block", ("from", "to"))
        src = parse_block_address(blk.attrs["from"].expr, "from")
        dst = parse_block_address(blk.attrs["to"].expr, "to")
        into.moved.append(Moved(text_of(src), text_of(dst), blk.pos))
    elif blk.type == "removed":
        _only(blk, "a removed block", ("from",), ("lifecycle",))
        src = parse_block_address(blk.attrs["from"].expr, "from")
        if isinstance(src, Address) and src.key is not None:
            raise ConfigError(
                Diagnostic(
                    f"removed: from = {src} names one instance; a removed block takes a "
                    "resource or module without an instance key",
                    blk.attrs["from"].expr.pos,
                    f"write from = {src.with_key(None)}",
                )
            )
        destroy = True  # as in Terraform, without a lifecycle block the object is destroyed
        for nested in blk.blocks:
            if nested.blocks:
                raise ConfigError(
                    Diagnostic(
                        f"unsupported block {nested.blocks[0].type!r} in a removed block's "
                        "lifecycle",
                        nested.blocks[0].pos,
                    )
                )
            unknown = [n for n in nested.attrs if n != "destroy"]
            if unknown:
                raise ConfigError(
                    Diagnostic(
                        f"unsupported attribute {unknown[0]!r} in a removed block's lifecycle",
                        nested.attrs[unknown[0]].pos,
                        "it takes destroy = true or false",
                    )
                )
            destroy = _literal_bool(nested, "destroy", True)
        into.removed.append(Removed(text_of(src), destroy, blk.pos))
    elif blk.type == "import":
        _only(blk, "an import block", ("to", "id"))
        dst = parse_block_address(blk.attrs["to"].expr, "to")
        if not isinstance(dst, Address):
            raise ConfigError(
                Diagnostic(
                    f"import: to = {text_of(dst)} is a module; import into a resource such as "
                    "compute.box",
                    blk.attrs["to"].expr.pos,
                )
            )
        into.imports.append(Import(str(dst), blk.attrs["id"].expr, blk.pos))
    elif blk.type == "check":
        _only(blk, f'check "{blk.labels[0]}"', (), ("assert",))
        asserts = tuple(condition(b, "assert") for b in blk.blocks)
        if not asserts:
            raise ConfigError(
                Diagnostic(
                    f'check "{blk.labels[0]}" has no assert block',
                    blk.pos,
                    "add assert { condition = ... error_message = ... }",
                )
            )
        into.checks.append(Check(blk.labels[0], blk.pos, asserts))


# ----------------------------------------------------------------------------- checks


def _parsed(text: str) -> Address | ModulePath:
    return parse_target(text)


def _block_of(target: Address | ModulePath) -> str:
    """The configuration block (or module call) an address names, without keys."""
    if isinstance(target, tuple):
        return module_text(tuple(ModuleStep(s.name) for s in target))
    return target.config_block


def _within(inner: Address | ModulePath, outer: Address | ModulePath) -> bool:
    """Whether ``inner`` is ``outer`` or lies inside it (a resource inside a module)."""
    if isinstance(outer, tuple):
        path = inner if isinstance(inner, tuple) else inner.module
        return len(path) >= len(outer) and tuple(path[: len(outer)]) == outer
    return inner == outer


def move_cycle(moved: list[Moved]) -> list[Moved]:
    """Statements that chain into a cycle (a -> b, b -> a), or []."""
    parsed = [(_parsed(m.from_), _parsed(m.to)) for m in moved]
    after: dict[int, list[int]] = {i: [] for i in range(len(moved))}
    for i, (src, _dst) in enumerate(parsed):
        for j, (_s, dst) in enumerate(parsed):
            if i != j and (_within(src, dst) or _within(dst, src)):
                after[i].append(j)  # statement i moves what statement j left
    state: dict[int, int] = {}
    stack: list[int] = []

    def visit(i: int) -> list[int]:
        state[i] = 1
        stack.append(i)
        for j in after[i]:
            if state.get(j) == 1:
                return stack[stack.index(j) :]
            if j not in state:
                found = visit(j)
                if found:
                    return found
        stack.pop()
        state[i] = 2
        return []

    for i in range(len(moved)):
        if i not in state:
            found = visit(i)
            if found:
                return [moved[k] for k in sorted(found, key=lambda k: moved[k].pos.line)]
    return []


def validate(
    found: Refactoring,
    resources: dict[str, Resource],
    calls: Iterable[str] = (),
    declared: dict[str, set[str]] | None = None,
    module: tuple[str, ...] = (),
) -> list[Diagnostic]:
    """Static problems with the blocks of one module (call path ``module``; their addresses
    are relative to it): moves that conflict, chain into a cycle or leave their source
    declared; removed resources still declared; imports into blocks that do not exist;
    references in checks and in that module's postconditions to what is not declared."""
    errors: list[Diagnostic] = []
    prefix = module_prefix(module)
    calls = {c.removeprefix(prefix) for c in calls if c.startswith(prefix)}
    # what the module declares, addressed from inside it (its own modules' resources too)
    resources = {a.removeprefix(prefix): r for a, r in resources.items() if a.startswith(prefix)}
    by_from: dict[str, Moved] = {}
    by_to: dict[str, Moved] = {}
    good: list[Moved] = []
    for m in found.moved:
        src, dst = _parsed(m.from_), _parsed(m.to)
        if isinstance(src, tuple) != isinstance(dst, tuple):
            errors.append(
                Diagnostic(
                    f"moved: cannot move {m.from_} to {m.to}: both must be modules, or both "
                    "resources",
                    m.pos,
                )
            )
            continue
        if isinstance(src, Address) and isinstance(dst, Address) and src.kind != dst.kind:
            errors.append(
                Diagnostic(
                    f"moved: cannot move a {src.kind} ({m.from_}) to a {dst.kind} address ({m.to})",
                    m.pos,
                    "a moved block renames; it cannot change what kind of resource it is",
                )
            )
            continue
        if m.from_ == m.to:
            errors.append(Diagnostic(f"moved: from and to are the same address ({m.to})", m.pos))
            continue
        if m.from_ in by_from:
            first = by_from[m.from_]
            errors.append(
                Diagnostic(
                    f"Ambiguous move statements: a statement at {first.pos} declared that "
                    f"{m.from_} moved to {first.to}, but this statement instead declares that "
                    f"it moved to {m.to}",
                    m.pos,
                    "each resource can move to only one destination; remove one of them",
                )
            )
            continue
        if m.to in by_to:
            first = by_to[m.to]
            errors.append(
                Diagnostic(
                    f"Ambiguous move statements: a statement at {first.pos} declared that "
                    f"{first.from_} moved to {m.to}, but this statement instead declares that "
                    f"{m.from_} moved there",
                    m.pos,
                    "each resource can have moved from only one source; remove one of them",
                )
            )
            continue
        by_from[m.from_], by_to[m.to] = m, m
        good.append(m)
        block = _block_of(src)
        same_block = _block_of(dst) == block  # compute.box[0] -> compute.box["a"]
        unkeyed = (isinstance(src, Address) and src.key is None) or (
            isinstance(src, tuple) and all(s.key is None for s in src)
        )
        if unkeyed and not same_block and (block in resources or block in calls):
            where = resources[block].pos if block in resources else None
            errors.append(
                Diagnostic(
                    f"Moved object still declared: this statement declares that {m.from_} "
                    f"moved to {m.to}, but {block} is still declared"
                    + (f" at {where}" if where else ""),
                    m.pos,
                    f"rename that block to {_block_of(dst)}, or remove this moved block",
                )
            )
    cycle = move_cycle(good)
    if cycle:
        chain = "; ".join(f"{m.pos.file}:{m.pos.line}: {m.from_} -> {m.to}" for m in cycle)
        errors.append(
            Diagnostic(
                f"Cyclic dependency in move statements: {chain}",
                cycle[0].pos,
                "a chain of moves must end at an address that no other moved block names",
            )
        )
    for r in found.removed:
        target = _parsed(r.from_)
        block = _block_of(target)
        if block in resources or block in calls:
            where = resources[block].pos if block in resources else None
            errors.append(
                Diagnostic(
                    f"Removed resource still exists: the removed block declares that {r.from_} "
                    "was removed, but it is still declared in the configuration"
                    + (f" at {where}" if where else ""),
                    r.pos,
                    f"delete the {block} block, or this removed block",
                )
            )
    seen: dict[str, Import] = {}
    for imp in found.imports:
        target = _parsed(imp.to)
        assert isinstance(target, Address)
        if imp.to in seen:
            errors.append(
                Diagnostic(
                    f"import: {imp.to} is imported twice (first at {seen[imp.to].pos})", imp.pos
                )
            )
            continue
        seen[imp.to] = imp
        if target.config_block not in resources:
            errors.append(
                Diagnostic(
                    f"import: {imp.to} is not in the configuration; write its {target.kind} "
                    "block first (import brings an existing object under a block's management)",
                    imp.pos,
                    S.did_you_mean(target.config_block, list(resources)),
                )
            )
        elif references(imp.id):
            bad = [r for r in references(imp.id) if r.root not in ("var", "local")]
            if bad:
                errors.append(
                    Diagnostic("import: id may refer only to variables and locals", bad[0].pos)
                )
    if declared is not None:
        for chk in found.checks:
            for a in chk.asserts:
                errors.extend(condition_reference_errors(a, declared, allow_self=False))
        for res in resources.values():
            if res.module_path != module:
                continue  # checked with the names of the module that declares it
            for cond in res.lifecycle.postconditions:
                errors.extend(
                    condition_reference_errors(
                        cond,
                        declared,
                        allow_self=True,
                        count=res.count is not None,
                        each=res.for_each is not None,
                    )
                )
    return errors


def declared_names(
    resources: dict[str, Resource], variables: Iterable[str], locals_: Iterable[str]
) -> dict[str, set[str]]:
    """Root name -> the names declared under it, for :func:`condition_reference_errors`."""
    out: dict[str, set[str]] = {"var": set(variables), "local": set(locals_)}
    for kind in S.RESOURCE_KINDS:
        out[kind] = {r.name for r in resources.values() if r.kind == kind}
    return out


def condition_reference_errors(
    cond: Condition,
    declared: dict[str, set[str]],
    allow_self: bool,
    count: bool = False,
    each: bool = False,
) -> list[Diagnostic]:
    """References in a check's assertion or a postcondition to what does not exist."""
    errors = []
    roots = {*declared, "path", "module", "trainform", "terraform"}
    roots |= {"self"} if allow_self else set()
    roots |= {"count"} if count else set()
    roots |= {"each"} if each else set()
    for expr in (cond.condition, cond.error_message):
        for ref in references(expr):
            if ref.root not in roots:
                hint = S.did_you_mean(ref.root, sorted(roots))
                if ref.root == "self":
                    hint = "self is only available in a resource's postcondition"
                errors.append(Diagnostic(f"unknown reference {ref.root!r}", ref.pos, hint))
            elif (
                ref.root in declared
                and ref.steps
                and isinstance(ref.steps[0], str)
                and ref.steps[0] not in declared[ref.root]
            ):
                errors.append(
                    Diagnostic(
                        f"reference to undeclared {ref.key!r}",
                        ref.pos,
                        S.did_you_mean(ref.steps[0], sorted(declared[ref.root])),
                    )
                )
    return errors


def pos_text(pos: Pos) -> str:
    return f"{pos.file}:{pos.line}"
