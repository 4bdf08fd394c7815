"""The planner: a pure function of (configuration, prior state, observed reality) -> Plan.

Refreshing (asking providers what exists) happens before, in :mod:`trainform.planner.refresh`;
nothing here has side effects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trainform.config.address import (
    AddressError,
    config_block_of,
    module_config_prefix,
    parse_address,
    parse_target,
    selects,
)
from trainform.config.evaluate import Evaluator, target_blocks
from trainform.config.model import Evaluated, Instance, Module
from trainform.config.schema import BlockSchema, did_you_mean
from trainform.config.sensitivity import mask_paths, sealed_paths
from trainform.config.values import PARAM_MARK, UNKNOWN, is_unknown
from trainform.errors import Diagnostic, PlanError, PlanRefusal, TrainformError
from trainform.graph import dependencies_closure
from trainform.planner.jsonconfig import configuration_json, relevant_attributes
from trainform.planner.jsonstate import json_type, state_json
from trainform.planner.moves import fingerprint_before_rename
from trainform.planner.types import (
    CREATE,
    DELETE,
    NOOP,
    REPLACE,
    REPLACE_CBD,
    UPDATE,
    Change,
    Drift,
    OutputChange,
    Plan,
    leaving_change,
)
from trainform.providers.base import (
    AWAITED,
    TERMINAL,
    PlanValues,
    Provider,
    ResourceState,
    awaited_values,
    with_sensitive_paths,
)
from trainform.providers.registry import Providers
from trainform.runs.spec import FINGERPRINTED
from trainform.state import secrets

PLANNED_KINDS = ("workspace", "compute", "environment", "dataset", "run", "sweep")


@dataclass
class PlanOptions:
    mode: str = "normal"  # normal | destroy | refresh-only
    targets: tuple[str, ...] = ()
    replace: tuple[str, ...] = ()
    # Build what only Terraform's JSON plan shows (variables, configuration, prior state,
    # relevant attributes): for `plan -json` and saved plans, not for every plan and apply.
    describe: bool = False


@dataclass
class Observations:
    """What refresh found: computed attributes per address, addresses found gone, and
    addresses that could not be read (with the reason)."""

    computed: dict[str, dict[str, Any]] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    unreachable: dict[str, str] = field(default_factory=dict)


# How a plan says a run or sweep ended ("the last run X was canceled").
ENDED = {
    "failed": "failed",
    "canceled": "was canceled",
    "timed_out": "timed out",
    "lost": "was lost",
}


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def _mask(values: dict[str, Any], sensitive: Iterable[str]) -> dict[str, Any]:
    # A value with an unknown anywhere inside (a map with one unknown entry) is left out
    # whole: it is named in after_unknown, and a plan must stay JSON-serialisable.
    known = {k: v for k, v in values.items() if not is_unknown(v)}
    return mask_paths(known, sensitive)


def attribute_changed(prior: Any, desired: Any) -> bool:
    """Whether a recorded attribute differs from the desired value (sealed secrets, whole or
    inside maps, are compared by hash; values are schema-typed, so Python equality is exact
    enough)."""
    if desired is UNKNOWN or is_unknown(desired):
        return True
    if secrets.is_sealed(prior):
        return not secrets.matches(prior, desired)
    if isinstance(prior, dict) and isinstance(desired, dict):
        return prior.keys() != desired.keys() or any(
            attribute_changed(prior[k], desired[k]) for k in prior
        )
    return bool(prior != desired or (type(prior) is not type(desired) and isinstance(prior, bool)))


class Planner:
    """Plans one configuration against one prior state. Use :meth:`plan`."""

    def __init__(
        self,
        module: Module,
        evaluator: Evaluator,
        prior: dict[str, ResourceState],
        observed: Observations,
        options: PlanOptions,
        lineage: str | None,
        serial: int,
        prior_outputs: dict[str, dict[str, Any]],
        run_counts: dict[str, int] | None = None,
        providers: Providers | None = None,
    ) -> None:
        self.module = module
        self.evaluator = evaluator
        self.prior = prior
        self.observed = observed
        self.options = options
        self.lineage = lineage
        self.serial = serial
        self.prior_outputs = prior_outputs
        self.run_counts = run_counts or {}
        self.providers = providers
        self.changes: dict[str, Change] = {}
        self.evaluated: Evaluated | None = None
        self.warnings: list[str] = []
        # Destroys the plan must refuse (prevent_destroy, run history), raised only if the
        # change survives --target filtering.
        self._refusals: dict[str, PlanError] = {}
        # Blocks moved blocks renamed (new -> old), and runs whose fingerprint changed only
        # because the compute they ran on was renamed (address -> (recorded, new)).
        self.renamed_blocks: dict[str, str] = {}
        self.refingerprinted: dict[str, tuple[str, str]] = {}

    # -- the resolver the evaluator calls as each resource is evaluated
    def resolve(self, inst: Instance) -> dict[str, Any]:
        change = self._plan_instance(inst)
        self.changes[inst.address] = change
        computed = inst.resource.schema.published()
        if "rerun" in change.changed:  # a new run: only what the plan computed is known
            attrs = inst.resource.schema.attributes
            after = change.after or {}
            return {k: after.get(k, UNKNOWN) if attrs[k].computed else UNKNOWN for k in computed}
        if change.actions in (NOOP, UPDATE):
            known = self._current_computed(inst.address)
            if self.providers is None:
                return {k: known.get(k, UNKNOWN) for k in computed}
            return awaited_values(self.providers.get(inst.resource.provider), known, computed)
        return {k: UNKNOWN for k in computed}

    def _current_computed(self, address: str) -> dict[str, Any]:
        if address in self.observed.computed:
            return self.observed.computed[address]
        prior = self.prior.get(address)
        return prior.computed if prior else {}

    def _live_prior(self, address: str) -> ResourceState | None:
        prior = self.prior.get(address)
        if prior is None or address in self.observed.gone:
            return None
        return prior

    def _plan_instance(self, inst: Instance) -> Change:
        res = inst.resource
        verbs = self._verbs(res.kind, res.provider)
        prior = self._live_prior(inst.address)
        desired = inst.attributes
        after = _mask(desired, inst.sensitive)
        after_unknown = tuple(
            sorted(
                [k for k, v in desired.items() if is_unknown(v)]
                + [k for k, a in res.schema.attributes.items() if a.computed]
            )
        )
        base: dict[str, Any] = dict(
            address=inst.address,
            kind=res.kind,
            name=res.name,
            key=inst.key,
            provider=res.provider,
            after_sensitive=tuple(sorted(inst.sensitive)),
            depends_on=inst.depends_on,
        )
        if self.options.mode == "refresh-only":
            before = None if prior is None else self._before(prior)
            return Change(actions=NOOP, verb="no-op", before=before, after=before, **base)
        if res.kind in ("run", "sweep"):
            return self._plan_run(inst, prior, after, after_unknown, base)
        pv = self._provider_values(inst, prior)
        if prior is None:
            reason = self._recreate_reason(inst.address)
            return Change(
                actions=CREATE,
                verb=verbs["create"],
                before=None,
                after=after,
                after_unknown=after_unknown,
                reason=reason,
                **base,
            )
        before = self._before(prior)
        ignored = set(res.lifecycle.ignore_changes)
        changed = []
        # nested blocks (environment's docker { ... }) are recorded and compared as attributes
        for name in [*res.schema.user_attributes(), *res.schema.blocks]:
            if name in ignored or "all" in ignored:
                if name in prior.attributes:
                    after[name] = None if name in inst.sensitive else prior.attributes[name]
                continue
            if attribute_changed(prior.attributes.get(name), desired.get(name)):
                changed.append(name)
        if res.kind == "compute" and prior.provider != res.provider:
            changed.append("type")
        attrs = res.schema.attributes
        force = [n for n in changed if n == "type" or (n in attrs and attrs[n].force_new)]
        for bname, spec in res.schema.blocks.items():
            if bname in changed and spec.force_new:
                force.append(bname)
        computed_after = public_values(prior.kind, prior.provider, prior.computed)
        before_sensitive = sealed_paths(prior.attributes)
        replace_reason = code = ""
        if prior.status in ("tainted", "pending"):
            replace_reason = (
                "is tainted, so must be replaced"
                if prior.status == "tainted"
                else "was left half-created by an interrupted apply, so must be replaced"
            )
            code = "replace_because_tainted"
        elif self._forced_replace(inst.address):
            replace_reason, code = "will be replaced, as requested", "replace_by_request"
        elif force:
            replace_reason, code = "must be replaced", "replace_because_cannot_update"
        if replace_reason:
            self._check_prevent_destroy(inst.address, res.lifecycle.prevent_destroy)
            actions = REPLACE_CBD if res.lifecycle.create_before_destroy else REPLACE
            return Change(
                actions=actions,
                verb="replace",
                before=before,
                after=after,
                after_unknown=after_unknown,
                before_sensitive=before_sensitive,
                changed=tuple(changed),
                replace_paths=tuple(sorted(force)),
                reason=replace_reason,
                action_reason=code,
                **base,
            )
        after = {**after, **computed_after}
        unknown_now = tuple(sorted(k for k, v in desired.items() if is_unknown(v)))
        if changed or pv.reasons:
            reason = "will be updated in-place"
            return Change(
                actions=UPDATE,
                verb="update",
                before=before,
                after=after,
                after_unknown=unknown_now,
                before_sensitive=before_sensitive,
                changed=tuple(changed),
                reason=f"{reason}: {'; '.join(pv.reasons)}" if pv.reasons else reason,
                **base,
            )
        return Change(
            actions=NOOP,
            verb="no-op",
            before=before,
            after=after,
            before_sensitive=before_sensitive,
            **base,
        )

    def _provider_values(self, inst: Instance, prior: ResourceState | None) -> PlanValues:
        """What a provider has to say about a resource at plan time: warnings (password
        authentication) and reasons to update it although its configuration is unchanged
        (a cluster healing nodes lost outside trainform)."""
        if self.providers is None or is_unknown(inst.attributes):
            return PlanValues()
        try:
            provider = self.providers.get(inst.resource.provider)
        except TrainformError:
            return PlanValues()  # reported by validation
        if type(provider).plan_values is Provider.plan_values:
            return PlanValues()  # most providers have nothing to say; skip the call
        try:
            pv = provider.plan_values(
                inst.address, with_sensitive_paths(inst.attributes, inst.sensitive), prior
            )
        except TrainformError as exc:
            raise plan_refusal(inst, exc) from None
        self.warnings.extend(f"{inst.address}: {w}" for w in pv.warnings)
        return pv

    def _plan_run(
        self,
        inst: Instance,
        prior: ResourceState | None,
        after: dict[str, Any],
        after_unknown: tuple[str, ...],
        base: dict[str, Any],
    ) -> Change:
        """Runs are declarative: a completed run whose fingerprint matches is up to date; a
        changed fingerprint or a failed run means a new run (``~ resubmit``); a running run
        whose inputs changed is cancelled and resubmitted (``-/+``)."""
        res = inst.resource
        desired = inst.attributes
        compute = (
            desired.get("compute")
            if res.kind == "run"
            else (desired.get("trial") or {}).get("compute")
        )
        if self.providers is None or not (
            isinstance(compute, dict) and isinstance(compute.get("type"), str)
        ):
            pv = PlanValues()
        else:
            try:
                pv = self.providers.get(res.provider).plan_values(
                    inst.address, with_sensitive_paths(desired, inst.sensitive), prior
                )
            except TrainformError as exc:
                raise plan_refusal(inst, exc) from None
        self.warnings.extend(f"{inst.address}: {w}" for w in pv.warnings)
        # References to other resources show (and are stored in plans) as their addresses.
        refs = {
            k
            for k, v in desired.items()
            if isinstance(v, dict) and isinstance(v.get("address"), str)
        }
        after = {
            k: (desired[k]["address"] if k in refs and k not in inst.sensitive else v)
            for k, v in after.items()
        }
        after.update({k: desired[k]["address"] for k in refs if k not in inst.sensitive})
        after.update(pv.computed)
        after = {k: _for_display(v) for k, v in after.items()}
        after_unknown = tuple(k for k in after_unknown if k not in pv.computed and k not in refs)
        if prior is None:
            return Change(
                actions=CREATE,
                verb="submit",
                before=None,
                after=after,
                after_unknown=after_unknown,
                reason=", ".join(pv.reasons),  # e.g. an image that will be built first
                **base,
            )
        current = {**prior.computed, **self.observed.computed.get(inst.address, {})}
        before = self._before(prior)
        status = current.get("status")
        run = (
            f"sweep {current.get('sweep_id')}"
            if res.kind == "sweep"
            else f"run {current.get('run_id')}"
        )
        fp_changed = "fingerprint" in pv.computed and current.get("fingerprint") != pv.computed.get(
            "fingerprint"
        )
        if fp_changed and self.renamed_blocks and self.providers is not None:
            old = fingerprint_before_rename(
                self.providers.get(res.provider), inst, prior, self.renamed_blocks
            )
            if old is not None and old == current.get("fingerprint"):
                fp_changed = False
                self.refingerprinted[inst.address] = (old, pv.computed["fingerprint"])
        forced = self._forced_replace(inst.address)
        inputs = ", ".join(pv.reasons) or "its inputs changed"
        # Attributes that change how a run is recorded or watched, never what it computes.
        others = [
            n
            for n in (
                *("tags", "wait", "max_duration", "grace_period", "metrics", "outputs_dir"),
                "slurm",  # resource requests (a nested block)
            )
            if (n in res.schema.user_attributes() or n in res.schema.blocks)
            and attribute_changed(prior.attributes.get(n), desired.get(n))
        ]
        common = dict(
            before=before, after=after, before_sensitive=sealed_paths(prior.attributes), **base
        )
        if status in ("queued", "preparing", "running") and prior.status != "pending":
            if pv.awaits and not forced:  # decided by the next apply, once it has ended
                return Change(actions=NOOP, verb="no-op", reason=f"is running ({run})", **common)
            if fp_changed or forced:
                why = inputs if fp_changed else "replacement was requested"
                return Change(
                    actions=REPLACE,
                    verb="resubmit",
                    changed=("rerun",),
                    reason=f"is running ({run}) and will be canceled and resubmitted: {why}",
                    action_reason="replace_because_cannot_update"
                    if fp_changed
                    else "replace_by_request",
                    after_unknown=after_unknown,
                    **common,
                )
            if others:
                return Change(
                    actions=UPDATE,
                    verb="update",
                    changed=tuple(others),
                    reason="will be updated in-place",
                    **common,
                )
            return Change(actions=NOOP, verb="no-op", reason=f"is running ({run})", **common)
        reason = ""
        awaited = False
        if prior.status == "pending":
            reason = "was left half-submitted by an interrupted apply"
        elif fp_changed:
            reason = inputs
        elif status in ("failed", "canceled", "timed_out", "lost"):
            detail = str(current.get("message") or "").removeprefix(f"{status} ")
            if detail.startswith("(") and detail.endswith(")"):
                detail = detail[1:-1]
            reason = f"the last {run} {ENDED[status]}" + (
                f": {detail}" if detail and detail != status else ""
            )
        elif prior.status == "tainted":
            reason = f"the last submission of {inst.address} failed"
        elif forced:
            reason = "requested with -replace"
        elif pv.awaits:
            reason, awaited = inputs, True
        if reason:
            shown: list[str] = [
                k
                for k in ("fingerprint", "snapshot_id")
                if k in pv.computed and pv.computed[k] != current.get(k)
            ]
            shown += [
                n
                for n in (*FINGERPRINTED, "arguments")
                if attribute_changed(prior.attributes.get(n), desired.get(n))
            ]
            # The new run's id and status: a resubmission never shows as an empty block.
            fresh = [k for k in ("run_id", "sweep_id", "status") if k in res.schema.attributes]
            return Change(
                actions=UPDATE,
                verb="resubmit",
                changed=("rerun", *((AWAITED,) if awaited else ()), *others, *shown, *fresh),
                reason=reason,
                after_unknown=tuple(sorted({*after_unknown, *fresh})),
                **common,
            )
        if others:
            return Change(
                actions=UPDATE,
                verb="update",
                changed=tuple(others),
                reason="will be updated in-place",
                **common,
            )
        return Change(actions=NOOP, verb="no-op", **common)

    def _before(self, prior: ResourceState) -> dict[str, Any]:
        """A recorded resource as plans show it, computed values as just observed (see
        :func:`recorded_values`)."""
        return recorded_values(prior, self.observed.computed.get(prior.address))

    def _verbs(self, kind: str, provider: str) -> dict[str, str]:
        from trainform.providers.registry import provider_class

        try:
            return provider_class(provider).verbs
        except Exception:  # a missing provider is reported by refresh/validation
            return {"create": "create", "delete": "destroy"}

    def _forced_replace(self, address: str) -> bool:
        return any(address == r or selects(r, address) for r in self.options.replace)

    def _recreate_reason(self, address: str) -> str:
        """Why a recorded resource that is not there any more is created again."""
        status = self.prior[address].status if address in self.prior else None
        if status == "tainted":
            return "is tainted: its last apply failed"
        if status == "pending":
            return "was left half-created by an interrupted apply"
        return "has been deleted outside trainform" if status else ""

    def _check_prevent_destroy(self, address: str, prevent: bool) -> None:
        if prevent:
            self._refusals.setdefault(
                address,
                PlanError(
                    f"{address} has lifecycle.prevent_destroy set, but the plan would destroy it; "
                    "remove prevent_destroy (or the change that forces replacement) to proceed"
                ),
            )

    def _delete_code(self, address: str) -> str:
        """Terraform's action_reason for deleting a recorded instance that the configuration
        no longer produces."""
        addr = parse_address(address)
        res = self.module.resources.get(addr.config_block)
        evaluated = self.evaluated
        if addr.module and evaluated is not None and addr.module not in evaluated.scopes:
            return "delete_because_no_module"
        if res is None:
            return "delete_because_no_resource_config"
        if isinstance(addr.key, int) and res.count is not None:
            return "delete_because_count_index"
        if isinstance(addr.key, str) and res.for_each is not None:
            return "delete_because_each_key"
        return "delete_because_wrong_repetition"

    def _delete_change(self, prior: ResourceState, reason: str, code: str = "") -> Change:
        res = self.module.resources.get(config_block_of(prior.address))
        if res is not None:
            self._check_prevent_destroy(prior.address, res.lifecycle.prevent_destroy)
        if prior.kind == "workspace":
            runs = self.run_counts.get(prior.address, 0)
            force = prior.attributes.get("force_destroy") is True
            if runs and not force:
                where = (
                    f' (workspace "{prior.name}" in {Path(res.pos.file).name}:{res.pos.line})'
                    if res is not None
                    else ""
                )
                self._refusals.setdefault(
                    prior.address,
                    PlanError(
                        f"{prior.address} holds the history of {runs} run(s); to destroy it with "
                        f"its artifact store, set force_destroy = true on it{where} and apply "
                        f"first; to keep them, stop managing it with "
                        f"`trainform state rm {prior.address}` instead"
                    ),
                )
        verbs = self._verbs(prior.kind, prior.provider)
        verb = verbs["delete"]
        if prior.kind in ("run", "sweep"):
            status = self._current_computed(prior.address).get("status")
            why = "" if reason.startswith("will be") else f"{reason}; "
            if status is None or status in TERMINAL:
                verb, reason = "forget", f"{why}history kept"
            else:
                reason = f"{why}it is {status}; history kept"
        change = leaving_change(
            prior,
            DELETE,
            verb,
            reason,
            before=self._before(prior),
            before_sensitive=sealed_paths(prior.attributes),
        )
        return replace(change, action_reason=code)

    # -- the whole plan
    def plan(self) -> Plan:
        if self.options.targets:
            self._check_targets()
        if self.options.mode == "destroy":
            self.evaluated = Evaluated()
            changes = self._destroy_changes()
        else:
            planned = {a: r for a, r in self.module.resources.items() if r.kind in PLANNED_KINDS}
            only = None
            if self.options.targets:
                blocks = target_blocks(self.module, self.options.targets)
                only = dependencies_closure(self.module.dependencies, blocks)
            self.evaluated = self.evaluator.run(self.resolve, only)
            for addr, inst in self.evaluated.instances.items():
                if inst.resource.address in planned and addr not in self.changes:
                    self.changes[addr] = self._plan_instance(inst)
            changes = [c for c in self.changes.values() if c.kind in PLANNED_KINDS]
            if self.options.mode == "normal":
                for addr, prior in sorted(self.prior.items()):
                    if addr in self.evaluated.instances or addr in self.observed.gone:
                        continue
                    block_addr = config_block_of(prior.address)
                    if (
                        only is not None
                        and block_addr not in only
                        and not self._matches_target(addr)
                    ):
                        continue
                    block = self.module.resources.get(block_addr)
                    reason = (
                        "is not in the configuration"
                        if block is None
                        else "is no longer produced by count/for_each"
                    )
                    changes.append(
                        self._delete_change(prior, reason, self._delete_code(prior.address))
                    )
        if self.options.targets:
            keep = self._targeted(changes)
            changes = [c for c in changes if c.address in keep]
        kept = {c.address for c in changes if c.actions != NOOP}
        for addr in sorted(self._refusals):
            if addr in kept:
                raise self._refusals[addr]
        outputs = self.output_changes()
        drift = self._drift()
        warnings = tuple(self.warnings)
        plan = Plan(
            mode=self.options.mode,
            changes=tuple(sorted(changes, key=lambda c: c.address)),
            outputs=outputs,
            drift=drift,
            lineage=self.lineage,
            serial=self.serial,
            refreshed={a: v for a, v in sorted(self.observed.computed.items())},
            gone=tuple(sorted(self.observed.gone)),
            targets=self.options.targets,
            replace=self.options.replace,
            warnings=warnings,
            timestamp=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        if not self.options.describe:
            return plan
        return replace(
            plan,
            variables=self._variables_json(),
            configuration=configuration_json(self.module),
            prior_state=state_json(
                [r for a, r in sorted(self.prior.items()) if a not in self.observed.gone],
                self.prior_outputs,
                self.observed.computed,
            ),
            relevant_attributes=tuple(
                relevant_attributes(
                    self.module,
                    [c.address for c in plan.changes if c.actions != NOOP],
                    [o.name for o in outputs if o.actions != NOOP],
                )
            ),
        )

    def _variables_json(self) -> dict[str, Any]:
        """The root module's variable values as Terraform's JSON plan gives them, a
        sensitive one as null marked sensitive (its value is never in a plan)."""
        out: dict[str, Any] = {}
        for name, var in sorted(self.module.variables.items()):
            if name not in self.evaluator.variables:
                continue
            value = self.evaluator.variables[name]
            if var.sensitive:
                out[name] = {"value": None, "sensitive": True}
            elif not is_unknown(value):
                out[name] = {"value": value}
        return out

    def _check_targets(self) -> None:
        known = set(self.module.resources) | set(self.prior) | set(self.module.calls)
        known |= {parse_address(a).block for a in self.prior if _is_address(a)}
        for t in self.options.targets:
            try:
                target = parse_target(t)
            except AddressError as exc:
                raise PlanError(f"--target {t}: {exc}") from None
            if isinstance(target, tuple):
                config = module_config_prefix(target)[:-1]
                found = config in self.module.calls
            else:
                config = target.config_block
                found = config in self.module.resources
            if not found and not any(selects(t, a) for a in self.prior):
                raise PlanError(
                    f"--target {t}: no such resource in the configuration or state"
                    + (
                        f"; {did_you_mean(t, sorted(known))}"
                        if did_you_mean(t, sorted(known))
                        else ""
                    )
                )

    def _matches_target(self, address: str) -> bool:
        return any(address == t or selects(t, address) for t in self.options.targets)

    def _targeted(self, changes: list[Change]) -> set[str]:
        by_addr = {c.address: c for c in changes}
        keep = {c.address for c in changes if self._matches_target(c.address)}
        if self.options.mode == "destroy":
            # destroying a target destroys what depends on it
            grew = True
            while grew:
                grew = False
                for c in changes:
                    if c.address not in keep and any(
                        d in keep or any(selects(d, k) for k in keep) for d in c.depends_on
                    ):
                        keep.add(c.address)
                        grew = True
            return keep
        stack = list(keep)
        while stack:
            c = by_addr[stack.pop()]
            for dep in c.depends_on:
                for other in by_addr:
                    if (other == dep or selects(dep, other)) and other not in keep:
                        keep.add(other)
                        stack.append(other)
        return keep

    def _destroy_changes(self) -> list[Change]:
        return [
            self._delete_change(prior, "will be destroyed")
            for prior in self.prior.values()
            if prior.address not in self.observed.gone
        ]

    def output_changes(self) -> tuple[OutputChange, ...]:
        out: list[OutputChange] = []
        new: dict[str, tuple[Any, bool]] = {}
        if self.options.mode == "normal" and self.evaluated is not None:
            new = self.evaluated.outputs
        if self.options.targets:
            return ()
        for name in sorted(set(new) | set(self.prior_outputs)):
            prior = self.prior_outputs.get(name)
            if name not in new:
                if self.options.mode != "refresh-only":
                    out.append(
                        OutputChange(
                            name,
                            DELETE,
                            before=None
                            if prior and prior["sensitive"]
                            else (prior or {}).get("value"),
                            sensitive=bool(prior and prior["sensitive"]),
                        )
                    )
                continue
            value, sensitive = new[name]
            unknown = is_unknown(value)
            shown = None if (sensitive or unknown) else value
            if prior is None:
                actions = CREATE
            elif (
                unknown
                or attribute_changed(prior["value"], value)
                or prior["sensitive"] != sensitive
            ):
                actions = UPDATE
            else:
                actions = NOOP
            before = None if prior is None or prior["sensitive"] else prior["value"]
            kind = None if unknown else json_type(value)
            out.append(OutputChange(name, actions, before, shown, sensitive, unknown, kind))
        return tuple(out)

    def _drift(self) -> tuple[Drift, ...]:
        drift = []
        for addr, prior in sorted(self.prior.items()):
            if addr in self.observed.gone:
                if prior.status in ("tainted", "pending") and addr in self.changes:
                    continue  # a failed or interrupted create left nothing; it is planned again
                drift.append(Drift(addr, "deleted", "has been deleted"))
            elif addr in self.observed.unreachable:
                drift.append(Drift(addr, "unreachable", self.observed.unreachable[addr]))
            elif addr in self.observed.computed and prior.kind not in ("run", "sweep"):
                # runs and sweeps change by design as they progress
                now = self.observed.computed[addr]
                shown = public_values(prior.kind, prior.provider, now)
                recorded = public_values(prior.kind, prior.provider, prior.computed)
                if shown != recorded:
                    before, after = _changed_leaves(recorded, shown)
                    drift.append(Drift(addr, "changed", "has changed", before, after))
        return tuple(drift)


def _is_address(text: str) -> bool:
    try:
        parse_address(text)
    except AddressError:
        return False
    return True


def _for_display(value: Any) -> Any:
    """Template values as plans show them: resource objects by address, sweep parameter
    markers as ``${param.NAME}``, unset nested attributes left out."""
    if isinstance(value, dict):
        if isinstance(value.get("address"), str) and "name" in value:
            return value["address"]
        return {k: _for_display(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_for_display(v) for v in value]
    if isinstance(value, str) and PARAM_MARK in value:
        return re.sub("\x00param:([^\x00]*)\x00", r"${param.\1}", value)
    return value


def _as_reference(value: Any) -> Any:
    """A resource object (a reference such as ``compute = compute.local``) as its address."""
    if isinstance(value, dict) and isinstance(value.get("address"), str) and "name" in value:
        return value["address"]
    return value


def _changed_leaves(
    before: dict[str, Any], after: dict[str, Any], prefix: str = ""
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Flattened ``path -> value`` of the leaves that differ between two computed dicts."""
    b: dict[str, Any] = {}
    a: dict[str, Any] = {}
    for key in sorted(set(before) | set(after)):
        path = f"{prefix}{key}"
        x, y = before.get(key), after.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            sb, sa = _changed_leaves(x, y, path + ".")
            b.update(sb)
            a.update(sa)
        elif canonical(x) != canonical(y):
            b[path], a[path] = x, y
    return b, a


def public_values(kind: str, provider: str, values: dict[str, Any]) -> dict[str, Any]:
    """Of a resource's recorded values, those its schema declares (and a compute's
    ``type``). Providers record bookkeeping beside them (a workspace's ``created_dir``, a
    run's ``handle`` and ``upload``) that apply needs but that plans, ``show`` and the JSON
    formats never show: this is the one place that leaves it out."""
    try:
        schema = schema_of(kind, provider)
    except TrainformError:
        return dict(values)  # a provider that is not installed: nothing to filter with
    known = {*schema.attributes, *schema.blocks, "type"}
    return {k: v for k, v in values.items() if k in known}


def recorded_values(prior: ResourceState, observed: dict[str, Any] | None = None) -> dict[str, Any]:
    """A recorded resource as plans and ``show`` present it: its public values (see
    :func:`public_values`), secrets masked (None), computed values as ``observed`` by a
    refresh (else as recorded), references to other resources by address."""
    current = {**prior.computed, **(observed or {})}
    # A published attribute (a run's outputs) shows as configured, not as recorded.
    current = {k: v for k, v in current.items() if k not in prior.attributes}
    values = {**_mask(prior.attributes, sealed_paths(prior.attributes)), **current}
    public = public_values(prior.kind, prior.provider, values)
    return {k: _as_reference(v) for k, v in public.items()}


def schema_of(kind: str, provider: str) -> BlockSchema:
    from trainform.config.loader import resource_schema

    return resource_schema(kind, provider)


def plan_refusal(inst: Instance, exc: TrainformError) -> PlanRefusal:
    """A provider's refusal at plan time (a partition that does not exist, an unknown
    account), at the block of the resource it is about."""
    return PlanRefusal(Diagnostic(f"{inst.address}: {exc}", inst.resource.pos))
