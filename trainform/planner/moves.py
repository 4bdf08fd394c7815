"""What ``moved`` and ``removed`` blocks do to the prior state, before it is planned against.

Pure: prior state in, prior state as the configuration now names it out. Apply records the
same moves in state first, before it changes anything (:mod:`trainform.engine.refactor`).

Moves follow Terraform's rules. A statement moves a resource instance (``compute.box[0]`` to
``compute.box["a"]``), every instance of a resource (``compute.old`` to ``compute.new``,
keys kept), or everything in a module (``module.a`` to ``module.b``). Statements that chain
(a -> b, b -> c) are applied in chain order, so what was at ``a`` ends at ``c``. An object
cannot move onto an address that state already holds.

A statement declared in a child module (``Moved.module``) is relative to that module and
applies to each of its instances that state holds objects in; statements are applied
outermost module first, so a module moved by its caller is found at its new address.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from trainform.config.address import (
    Address,
    AddressError,
    ModulePath,
    ModuleStep,
    parse_address,
    parse_target,
    prefixed,
)
from trainform.config.model import Instance, Moved, Removed
from trainform.config.refactor import move_cycle
from trainform.errors import ConfigError, Diagnostic
from trainform.planner.types import FORGET, Change, leaving_change
from trainform.providers.base import Provider, ResourceState, with_sensitive_paths

Target = Address | ModulePath


def destination(src: Target, dst: Target, addr: Address) -> Address | None:
    """Where the statement ``src`` -> ``dst`` moves the instance ``addr``, or None if it
    does not apply to it. A side without a key next to one with a key means the no-key
    instance; both without keys mean every instance, each keeping its key."""
    if isinstance(src, tuple):
        if not isinstance(dst, tuple) or not src or len(addr.module) < len(src):
            return None
        prefix = addr.module[: len(src)]
        if any(p.name != s.name for p, s in zip(prefix, src)):
            return None
        if any(p.key != s.key for p, s in zip(prefix[:-1], src[:-1])):
            return None
        last, want = prefix[-1], src[-1]
        if want.key is None and dst[-1].key is None:
            step = ModuleStep(dst[-1].name, last.key)
        elif last.key == want.key:
            step = dst[-1]
        else:
            return None
        return Address((*dst[:-1], step, *addr.module[len(src) :]), addr.kind, addr.name, addr.key)
    if isinstance(dst, tuple):
        return None
    if (addr.module, addr.kind, addr.name) != (src.module, src.kind, src.name):
        return None
    if src.key is None and dst.key is None:
        return dst.with_key(addr.key)
    return dst if addr.key == src.key else None


def chain_order(statements: tuple[Moved, ...] | list[Moved]) -> list[Moved]:
    """Statements in the order they apply: one whose ``from`` is (inside) another's ``to``
    goes after it. Statements must be free of cycles (see refactor.validate)."""
    parsed = [(parse_target(m.from_), parse_target(m.to)) for m in statements]
    remaining = list(range(len(statements)))
    order: list[Moved] = []

    def feeds(j: int, i: int) -> bool:  # statement j's `to` is what statement i moves
        to, src = parsed[j][1], parsed[i][0]
        if isinstance(to, tuple):
            path = src if isinstance(src, tuple) else src.module
            return tuple(path[: len(to)]) == to
        return isinstance(src, Address) and src.block == to.block

    while remaining:
        ready = [i for i in remaining if not any(feeds(j, i) for j in remaining if j != i)]
        if not ready:  # a cycle slipped through; keep the written order
            ready = remaining[:1]
        for i in ready:
            order.append(statements[i])
            remaining.remove(i)
    return order


def module_instances(call_path: tuple[str, ...], addresses: Iterable[str]) -> list[ModulePath]:
    """The instances of the module at ``call_path`` (names only) that ``addresses`` (state)
    hold objects in: ``module.team["a"]`` and ``module.team["b"]`` for ("team",)."""
    found: dict[ModulePath, None] = {}
    for address in addresses:
        try:
            path = parse_address(address).module
        except AddressError:
            continue
        head = path[: len(call_path)]
        if len(head) == len(call_path) and tuple(s.name for s in head) == call_path:
            found[head] = None
    return list(found)


def in_instances(statements: list[Moved], addresses: Iterable[str]) -> list[Moved]:
    """Statements of child modules as absolute statements, one per module instance found in
    ``addresses``; root statements as they are."""
    addresses = list(addresses)
    out: list[Moved] = []
    for stmt in statements:
        if not stmt.module:
            out.append(stmt)
            continue
        for inst in module_instances(stmt.module, addresses):
            absolute = (prefixed(inst, stmt.from_), prefixed(inst, stmt.to))
            out.append(replace(stmt, from_=absolute[0], to=absolute[1], module=()))
    return out


@dataclass
class Refactored:
    """Prior state as the configuration now names it: ``prior`` keyed by new addresses,
    ``moved`` new address -> old address (instances), ``forgotten`` the states removed
    blocks with ``destroy = false`` take out (planned as FORGET changes)."""

    prior: dict[str, ResourceState]
    moved: dict[str, str] = field(default_factory=dict)
    forgotten: dict[str, ResourceState] = field(default_factory=dict)
    renamed_blocks: dict[str, str] = field(default_factory=dict)  # new block -> old block


def apply_moves(statements: tuple[Moved, ...], prior: dict[str, ResourceState]) -> Refactored:
    """Apply moved blocks to ``prior``. Raises ConfigError (with each statement's file:line)
    when an object would move onto an address state already holds."""
    if not statements or not prior:
        return Refactored(dict(prior))
    state = dict(prior)
    origin = {a: a for a in state}  # current address -> address in prior state
    errors: list[Diagnostic] = []
    renamed: dict[str, str] = {}
    for depth in sorted({len(m.module) for m in statements}):
        level = in_instances([m for m in statements if len(m.module) == depth], state)
        if move_cycle(level):
            raise ConfigError(Diagnostic("Cyclic dependency in move statements", level[0].pos))
        _move_level(level, state, origin, renamed, errors)
    if errors:
        raise ConfigError(errors)
    moved = {new: old for new, old in origin.items() if new != old}
    blocks = {old: new for new, old in renamed.items() if new != old}
    if blocks:  # dependencies recorded under old names follow the moves
        for address, rs in list(state.items()):
            deps = tuple(blocks.get(d, d) for d in rs.dependencies)
            if deps != rs.dependencies:
                state[address] = replace(rs, dependencies=deps)
    return Refactored(state, moved, renamed_blocks={n: o for n, o in renamed.items() if n != o})


def _move_level(
    statements: list[Moved],
    state: dict[str, ResourceState],
    origin: dict[str, str],
    renamed: dict[str, str],
    errors: list[Diagnostic],
) -> None:
    """Apply absolute statements to ``state`` (in place), in chain order."""
    for stmt in chain_order(statements):
        src, dst = parse_target(stmt.from_), parse_target(stmt.to)
        plans: list[tuple[str, Address]] = []
        for address in sorted(state):
            try:
                addr = parse_address(address)
            except AddressError:
                continue
            new = destination(src, dst, addr)
            if new is not None and str(new) != address:
                plans.append((address, new))
        leaving = {a for a, _ in plans}
        for address, new in plans:
            target = str(new)
            if target in state and target not in leaving:
                errors.append(
                    Diagnostic(
                        f"{address} could not move to {target}: state already holds "
                        f"{target} (from {origin[target]})"
                        if origin[target] != target
                        else f"{address} could not move to {target}: both are in the state",
                        stmt.pos,
                        f"keep one of them: `trainform state rm {target}` stops managing the "
                        "one there, or remove this moved block to keep both",
                    )
                )
                continue
        if errors:
            continue
        moving = {a: state.pop(a) for a, _ in plans}
        for address, new in plans:
            rs = moving[address]
            state[str(new)] = replace(
                rs, address=str(new), kind=new.kind, name=new.name, key=new.key
            )
            origin[str(new)] = origin.pop(address)
            old_block = parse_address(address).block
            renamed.setdefault(new.block, renamed.get(old_block, old_block))


def apply_removals(statements: tuple[Removed, ...], refactored: Refactored) -> Refactored:
    """Take what removed blocks with ``destroy = false`` name out of the prior state (those
    with ``destroy = true`` are planned as any resource no longer configured: destroyed)."""
    for stmt in statements:
        if stmt.destroy:
            continue
        for inst in module_instances(stmt.module, refactored.prior) if stmt.module else [()]:
            _forget(prefixed(inst, stmt.from_) if inst else stmt.from_, refactored)
    return refactored


def _forget(from_: str, refactored: Refactored) -> None:
    """Move what the absolute address ``from_`` covers from ``prior`` to ``forgotten``."""
    target = parse_target(from_)
    for address in sorted(refactored.prior):
        try:
            addr = parse_address(address)
        except AddressError:
            continue
        inside = (
            tuple(addr.module[: len(target)]) == target
            if isinstance(target, tuple)
            else addr.with_key(None) == target
        )
        if inside:
            refactored.forgotten[address] = refactored.prior.pop(address)


def forget_change(rs: ResourceState) -> Change:
    """How a plan shows a resource a removed block stops managing."""
    return leaving_change(
        rs, FORGET, "forget", reason="destroy = false is set in the configuration"
    )


def fingerprint_before_rename(
    provider: Provider, inst: Instance, prior: ResourceState, renamed: dict[str, str]
) -> str | None:
    """A run's fingerprint as it would be had the compute it runs on kept the name a moved
    block renamed (the fingerprint names its compute), or None if that compute was not
    renamed. A run equal but for that is up to date, not resubmitted."""
    compute = inst.attributes.get("compute")
    if not isinstance(compute, dict) or not isinstance(compute.get("address"), str):
        return None
    try:
        block = parse_address(compute["address"])
    except AddressError:
        return None
    old_block = renamed.get(block.block)
    if old_block is None:
        return None
    old = str(parse_address(old_block).with_key(block.key))
    desired = {**inst.attributes, "compute": {**compute, "address": old}}
    pv = provider.plan_values(inst.address, with_sensitive_paths(desired, inst.sensitive), prior)
    fp = pv.computed.get("fingerprint")
    return fp if isinstance(fp, str) else None
