"""Refactoring around a plan: moved, removed and import blocks, checks and preconditions.

:func:`prepare` turns recorded state into the prior state a plan is made against (moves
applied, removed resources taken out, imported objects read through their providers);
:func:`finish` adds to the plan what that did and what checks and preconditions say; and
:func:`record` makes the same state edits at apply, in one transaction, before anything else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from trainform.config.conditions import (
    check_outcomes,
    check_warnings,
    failure_diagnostic,
    postconditions,
    preconditions,
)
from trainform.config.evaluate import Evaluator
from trainform.config.expr import Scope, evaluate
from trainform.config.model import Evaluated, Import, Instance, Module
from trainform.config.schema import did_you_mean
from trainform.config.values import UNKNOWN, FunctionContext, is_unknown
from trainform.engine.recorded import resource_state
from trainform.errors import ConfigError, Diagnostic, TrainformError
from trainform.planner.diff import Observations
from trainform.planner.jsonconfig import JSON_KINDS
from trainform.planner.jsonplan import checks_json
from trainform.planner.moves import Refactored, apply_moves, apply_removals, forget_change
from trainform.planner.types import DELETE, Plan
from trainform.providers.base import ResourceState
from trainform.providers.registry import Providers
from trainform.runs.history import run_computed
from trainform.state.store import StateStore

if TYPE_CHECKING:
    from trainform.engine.session import Session


@dataclass
class Prepared:
    """Prior state for planning, and how it was made from recorded state."""

    refactored: Refactored
    imported: dict[str, tuple[str, ResourceState]] = field(default_factory=dict)  # addr -> (id, rs)

    @property
    def prior(self) -> dict[str, ResourceState]:
        return {**self.refactored.prior, **{a: rs for a, (_i, rs) in self.imported.items()}}


def prepare(
    module: Module,
    recorded: dict[str, ResourceState],
    evaluated: Evaluated | None,
    store: StateStore,
    providers: Providers,
    functions: FunctionContext,
) -> Prepared:
    """Apply moved and removed blocks to ``recorded`` and read what import blocks adopt.
    ``evaluated`` is the configuration evaluated over recorded facts (only needed when an
    import block names something not yet in state). Raises ConfigError / TrainformError."""
    refactored = apply_removals(module.removed, apply_moves(module.moved, recorded))
    prepared = Prepared(refactored)
    for imp in module.imports:
        if imp.to in refactored.prior:
            continue  # imported already: an import block stays harmless, as in Terraform
        if evaluated is None:
            raise TrainformError("internal: import blocks need an evaluated configuration")
        inst = evaluated.instances.get(imp.to)
        if inst is None:
            raise ConfigError(
                Diagnostic(
                    f"import: the configuration produces no {imp.to}",
                    imp.pos,
                    did_you_mean(imp.to, list(evaluated.instances)),
                )
            )
        ident = import_id(imp, evaluated, functions)
        rs = read_import(inst, ident, refactored.prior, store, providers)
        prepared.imported[imp.to] = (ident, rs)
    return prepared


def import_id(imp: Import, evaluated: Evaluated, functions: FunctionContext) -> str:
    """An import block's ``id``, evaluated (it may use variables and locals)."""
    value = evaluate(imp.id, Scope(evaluated.scopes.get((), {}), functions))
    if is_unknown(value) or not isinstance(value, (str, int)) or value == "":
        raise ConfigError(
            Diagnostic("import: id must be a non-empty string known at plan time", imp.id.pos)
        )
    return str(value)


def read_import(
    inst: Instance,
    ident: str,
    prior: dict[str, ResourceState],
    store: StateStore,
    providers: Providers,
) -> ResourceState:
    """The state an import of ``ident`` into ``inst`` records: the configuration's
    attributes and what the provider (or, for a run, the run history) says exists. Raises
    TrainformError if ``ident`` names nothing, or something already managed."""
    address = inst.address
    if address in prior:
        raise TrainformError(
            f"{address} is already managed by trainform; to import it again, first "
            f"`trainform state rm {address}`"
        )
    if any(is_unknown(v) for v in inst.attributes.values()):
        raise TrainformError(
            f"{address}: its configuration depends on values known only after apply; "
            "apply what it depends on first"
        )
    res = inst.resource
    if res.kind == "run":
        computed = _adopted_run(address, ident, prior, store)
    elif res.kind == "compute":
        for other in prior.values():
            if other.kind == "compute" and ident in (
                other.computed.get("cluster_id"),
                *(f"{other.attributes.get('username')}@{h}" for h in _hosts_of(other)),
            ):
                raise TrainformError(
                    f"{address}: import id {ident!r} is already managed by trainform as "
                    f"{other.address}"
                )
        computed = providers.get(res.provider).import_existing(address, inst.attributes, ident)
    else:
        raise TrainformError(
            f"{address}: a {res.kind} cannot be imported (import supports ssh and "
            "docker-cluster computes, and runs)"
        )
    return resource_state(inst, computed, "ready")


def _hosts_of(rs: ResourceState) -> list[str]:
    hosts = rs.attributes.get("hosts") or [rs.attributes.get("address")]
    return [str(h) for h in hosts if h] + [
        f"{h}:{rs.attributes.get('port') or 22}" for h in hosts if h
    ]


def _adopted_run(
    address: str, ident: str, prior: dict[str, ResourceState], store: StateStore
) -> dict[str, Any]:
    """A run of the history (``trainform submit``'s, or one a removed block let go) as the
    computed attributes of the run resource that adopts it."""
    for other in prior.values():
        if other.kind == "run" and other.computed.get("run_id") == ident:
            raise TrainformError(
                f"{address}: run {ident!r} is already managed by trainform as {other.address}"
            )
    runs = store.runs()
    run = next((r for r in runs if r["id"] == ident), None)
    if run is None:
        hint = did_you_mean(ident, [r["id"] for r in runs])
        raise TrainformError(
            f"{address}: import id {ident!r}: no run with that id in the run history"
            + (f"; {hint}" if hint else " (`trainform runs list` shows them)")
        )
    return run_computed(run)


def finish(
    plan: Plan,
    prepared: Prepared,
    module: Module,
    evaluated: Evaluated | None,
    functions: FunctionContext,
    refingerprinted: dict[str, tuple[str, str]] | None = None,
) -> Plan:
    """The plan with its moves, imports and forgets, and the warnings of check blocks.
    Raises ConfigError for a precondition that is false."""
    moved = prepared.refactored.moved
    changes = []
    for c in plan.changes:
        if c.address in moved and c.actions != DELETE:
            c = replace(c, previous_address=moved[c.address])
        elif c.address in moved and c.action_reason == "delete_because_no_resource_config":
            c = replace(c, action_reason="delete_because_no_move_target")
        if c.address in prepared.imported:
            c = replace(c, importing=prepared.imported[c.address][0])
        changes.append(c)
    if plan.mode == "normal":
        changes += [forget_change(rs) for rs in prepared.refactored.forgotten.values()]
    warnings = list(plan.warnings)
    checks: list[dict[str, Any]] = []
    if evaluated is not None and plan.mode == "normal":
        problems = []
        planned = {c.address for c in plan.resource_changes if c.actions != DELETE}
        conditions = []  # every evaluated instance's conditions, for the JSON plan's checks
        for address, inst in sorted(evaluated.instances.items()):
            before = preconditions(evaluated, inst, functions)
            after = postconditions(evaluated, inst, functions)
            if (before or after) and inst.resource.kind in JSON_KINDS:
                conditions.append((inst, before + after))
            if address in planned:
                problems += [
                    failure_diagnostic("precondition", address, outcome)
                    for outcome in before
                    if outcome.ok is False
                ]
        if problems:
            raise ConfigError(problems)
        outcomes = check_outcomes(module, evaluated, functions)
        warnings += check_warnings(module, evaluated, functions, final=False, outcomes=outcomes)
        checks = checks_json(outcomes, conditions)
    refreshed = dict(plan.refreshed)
    for address, (_old, new) in (refingerprinted or {}).items():
        if address in refreshed:  # what refresh read is recorded after the edits: keep it
            refreshed[address] = {**refreshed[address], "fingerprint": new}
    forgotten = sorted(prepared.refactored.forgotten)
    if forgotten and plan.mode == "normal":
        warnings.append(
            "Some objects will no longer be managed by trainform: "
            + ", ".join(forgotten)
            + ". Applying this plan discards their records in state but does not destroy "
            "them (run history stays); import them to manage them again."
        )
    return replace(
        plan,
        refreshed=refreshed,
        changes=tuple(sorted(changes, key=lambda c: c.address)),
        moved=tuple(sorted((old, new) for new, old in moved.items())),
        imported=tuple(asdict(rs) for _i, rs in prepared.imported.values()),
        refingerprinted=tuple(
            (a, old, new) for a, (old, new) in sorted((refingerprinted or {}).items())
        ),
        warnings=tuple(warnings),
        checks=tuple(checks),
    )


def record(store: StateStore, plan: Plan) -> None:
    """Make a plan's state edits, in one transaction: moves (run history follows), forgets,
    imports (an adopted run's history row takes the resource's address), and renamed runs'
    fingerprints. Before the walk; idempotent for edits already made."""
    imported = []
    for data in plan.imported:
        imported.append(ResourceState(**{**data, "dependencies": tuple(data["dependencies"])}))
    forgotten = [c.address for c in plan.changes if c.actions == ("forget",)]
    if not (plan.moved or imported or forgotten or plan.refingerprinted):
        return
    store.edit_resources(
        moves=list(plan.moved),
        forget=forgotten,
        put=imported,
        fingerprints=list(plan.refingerprinted),
    )


def unknown_facts(inst: Instance) -> dict[str, Any]:
    return {k: UNKNOWN for k in inst.resource.schema.published()}


def rekey(observations: Observations, prepared: Prepared) -> Observations:
    """Refresh's findings (made under recorded addresses) under the addresses moved blocks
    give them."""
    moved = {old: new for new, old in prepared.refactored.moved.items()}
    if not moved:
        return observations
    return Observations(
        computed={moved.get(a, a): v for a, v in observations.computed.items()},
        gone={moved.get(a, a) for a in observations.gone},
        unreachable={moved.get(a, a): v for a, v in observations.unreachable.items()},
    )


def checks_after_apply(
    module: Module, evaluator: Evaluator, store: StateStore, providers: Providers
) -> list[str]:
    """Check blocks' warnings over what state records after an apply."""
    from trainform.engine.apply import _recorded

    state = store.resources()
    try:
        evaluated = evaluator.run(lambda inst: _recorded(state, providers, inst))
    except TrainformError as exc:
        return [f"Check blocks could not be evaluated after apply: {exc}"]
    return check_warnings(module, evaluated, evaluator.functions, final=True)


def import_now(session: Session, address: str, ident: str) -> ResourceState:
    """``trainform import ADDR ID``: read ``ident`` into ``address`` and record it in state
    at once. Raises TrainformError (a bad address, no such block, a bad id, or something
    already managed)."""
    from trainform.config.address import AddressError, parse_address
    from trainform.engine.session import _prior_computed

    try:
        canonical = str(parse_address(address))
    except AddressError as exc:
        raise TrainformError(str(exc)) from None
    prior = session.store.resources()
    if canonical in prior:
        raise TrainformError(
            f"{canonical} is already managed by trainform; to import it again, first "
            f"`trainform state rm {canonical}`"
        )
    evaluated = session.evaluator().run(lambda inst: _prior_computed(prior, inst))
    inst = evaluated.instances.get(canonical)
    if inst is None:
        hint = did_you_mean(canonical, list(evaluated.instances))
        raise TrainformError(
            f"configuration for import target {canonical} does not exist: write its block "
            "first (import brings an existing object under a block's management)"
            + (f"; {hint}" if hint else "")
        )
    rs = read_import(inst, ident, prior, session.store, session.providers)
    session.store.edit_resources(moves=[], forget=[], put=[rs], fingerprints=[])
    return rs
