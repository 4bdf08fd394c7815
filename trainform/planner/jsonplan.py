"""The machine-readable plan (``plan -json``, ``show -json PLANFILE``): Terraform's JSON
plan format, field for field, so that tools written for Terraform plans (checkov's
``terraform_plan`` framework, OPA/conftest policies) read trainform's.

Top level, as Terraform 1.11 writes it: ``format_version`` ("1.2"), ``terraform_version``
(trainform's version: tools look for the field), ``variables``, ``planned_values``,
``resource_drift``, ``resource_changes``, ``output_changes``, ``prior_state`` (omitted when
nothing is recorded yet), ``configuration``, ``relevant_attributes``, ``checks`` (when the
configuration has check blocks or resource conditions), ``timestamp``, ``applyable``,
``complete`` (false for a ``-target`` plan), ``errored``.

As in Terraform, ``prior_state`` is the whole prior state as refreshed (every recorded
resource, also those ``-target`` leaves out: kept on the plan when it is made,
``Plan.prior_state``), and ``planned_values`` what the plan covers (its changes: with
``-target``, the targets alone). Outputs carry Terraform's JSON ``type``
(:func:`trainform.planner.jsonstate.json_type`) in ``planned_values`` and ``prior_state``;
``output_changes`` has none, and no ``after`` while the value is unknown.

``checks`` (:func:`checks_json`): check blocks (kind ``check``) and resources'
preconditions and postconditions (kind ``resource``), evaluated once at plan time. Outputs
take no preconditions in trainform, so there is no ``output_value`` kind.

``relevant_attributes`` is Terraform's heuristic (``relevantResourceAttrsForPlan``), made
when planning (:func:`trainform.planner.jsonconfig.relevant_attributes`): the resource
attributes that the configuration of every changed resource instance and changed output
refers to, directly or through variables, locals, module outputs and other resources'
attributes.

A resource change is ``{address, module_address (in a module only), mode, type, name,
index (only with count/for_each), provider_name, change: {actions, before, after,
after_unknown, before_sensitive, after_sensitive, replace_paths, importing},
action_reason, previous_address}``; ``after_unknown`` and ``*_sensitive`` mirror the
values (nested maps and lists) with ``true`` where a value is unknown or sensitive. Types
and provider names are those of :mod:`trainform.planner.jsonconfig`.

``action_reason`` takes Terraform's codes: ``replace_because_tainted`` (tainted, or left
half-created by an interrupted apply), ``replace_by_request`` (``-replace``),
``replace_because_cannot_update`` (a force-new attribute changed; a running run whose
inputs changed is canceled and resubmitted), ``delete_because_no_resource_config``,
``delete_because_no_module``, ``delete_because_count_index``, ``delete_because_each_key``,
``delete_because_wrong_repetition`` and ``delete_because_no_move_target``. A run resubmitted
in place (``update``) has none, as Terraform gives none for an update.

Secrets never appear: where Terraform would write a sensitive value in clear (``before``,
``after``, ``planned_values``, ``prior_state``, ``variables``, outputs, a sensitive
variable's default in ``configuration``), this writes ``null`` and marks it sensitive.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trainform import __version__
from trainform.planner.jsonstate import (
    mirror,
    resource_head,
    resource_json,
    state_values,
)
from trainform.planner.types import DELETE, FORGET, Change, Drift, Plan

FORMAT_VERSION = "1.2"


def _public(c: Change, values: dict[str, Any] | None) -> dict[str, Any] | None:
    from trainform.planner.diff import public_values

    return None if values is None else public_values(c.kind, c.provider, values)


def _unknown(c: Change, after: dict[str, Any] | None) -> dict[str, Any]:
    if after is None or not c.after_unknown:
        return {}  # as Terraform: nothing unknown, an empty object
    return mirror({k: v for k, v in after.items() if k not in c.after_unknown}, c.after_unknown)


def _sensitive(values: dict[str, Any] | None, paths: tuple[str, ...]) -> Any:
    return False if values is None else mirror(values, paths)


def resource_change(c: Change) -> dict[str, Any]:
    before, after = _public(c, c.before), _public(c, c.after)
    if after is not None:
        after = {k: v for k, v in after.items() if k not in c.after_unknown}
    change: dict[str, Any] = {
        "actions": list(c.actions),
        "before": before,
        "after": after,
        "after_unknown": _unknown(c, after),
        "before_sensitive": _sensitive(before, c.before_sensitive),
        "after_sensitive": _sensitive(after, c.after_sensitive),
    }
    if c.replace_paths:
        change["replace_paths"] = [[p] for p in c.replace_paths]
    if c.importing is not None:
        change["importing"] = {"id": c.importing}
    out = resource_head(c.address, c.kind, c.name, c.key, c.provider)
    out["change"] = change
    if c.action_reason:
        out["action_reason"] = c.action_reason
    if c.previous_address is not None:
        out["previous_address"] = c.previous_address
    return out


def _unflatten(flat: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with the dotted-path leaves of ``flat`` set over it."""
    import copy

    out = copy.deepcopy(base)
    for path, value in flat.items():
        *parents, leaf = path.split(".")
        node = out
        for step in parents:
            nxt = node.get(step)
            if not isinstance(nxt, dict):
                nxt = node[step] = {}
            node = nxt
        node[leaf] = value
    return out


def resource_drift(d: Drift, change: Change | None) -> dict[str, Any] | None:
    """A drift as Terraform shows it: a change from the recorded object to what the
    refresh read (``update``), or to nothing (``delete``)."""
    from trainform.config.address import AddressError, parse_address

    if d.kind not in ("changed", "deleted"):
        return None  # unreachable: Terraform has no drift for it (the plan stops)
    try:
        addr = parse_address(d.address)
    except AddressError:
        return None
    provider = change.provider if change is not None else addr.kind
    recorded = (change.before if change is not None else None) or {}
    sensitive = change.before_sensitive if change is not None else ()
    if d.kind == "deleted":
        before: dict[str, Any] | None = _unflatten(d.before, recorded) if recorded else None
        after, actions = None, ["delete"]
    else:
        after = _unflatten(d.after, recorded)
        before, actions = _unflatten(d.before, recorded), ["update"]
    out = resource_head(d.address, addr.kind, addr.name, addr.key, provider)
    out["change"] = {
        "actions": actions,
        "before": before,
        "after": after,
        "after_unknown": {},
        "before_sensitive": _sensitive(before, sensitive),
        "after_sensitive": _sensitive(after, sensitive),
    }
    return out


def _planned_resources(plan: Plan) -> list[dict[str, Any]]:
    out = []
    for c in plan.changes:
        if c.actions in (DELETE, FORGET) or c.after is None:
            continue
        after = _public(c, c.after) or {}
        values = {k: v for k, v in after.items() if k not in c.after_unknown}
        out.append(
            resource_json(
                c.address,
                c.kind,
                c.name,
                c.key,
                c.provider,
                values,
                c.after_sensitive,
                c.depends_on,
            )
        )
    return out


def _status(oks: list[bool | None]) -> str:
    return "fail" if False in oks else "unknown" if None in oks else "pass"


def _checks(
    entries: list[tuple[dict[str, Any], dict[str, Any], list[Any]]],
) -> list[dict[str, Any]]:
    """Terraform's ``checks`` from (the checkable object's address, one instance's address,
    that instance's outcomes) triples: one entry per object with its aggregate status
    (``fail`` if any instance fails, else ``unknown`` if any is unknown, else ``pass``) and
    its instances, each with the messages of its failed conditions (sorted, as Terraform
    does); objects and instances sorted by ``to_display``."""
    objects: dict[str, tuple[dict[str, Any], dict[str, tuple[dict[str, Any], list[Any]]]]] = {}
    for config, instance, outcomes in entries:
        _config, instances = objects.setdefault(config["to_display"], (config, {}))
        _address, found = instances.setdefault(instance["to_display"], (instance, []))
        found.extend(outcomes)
    out = []
    for _shown, (config, instances) in sorted(objects.items()):
        shown = []
        every: list[bool | None] = []
        for _name, (address, outcomes) in sorted(instances.items()):
            oks = [o.ok for o in outcomes]
            every += oks
            entry: dict[str, Any] = {"address": address, "status": _status(oks)}
            problems = sorted(o.message for o in outcomes if o.ok is False)
            if problems:
                entry["problems"] = [{"message": m} for m in problems]
            shown.append(entry)
        out.append({"address": config, "status": _status(every), "instances": shown})
    return out


def checks_json(
    outcomes: list[tuple[Any, str, Any]],
    resource_outcomes: Iterable[tuple[Any, list[Any]]] = (),
) -> list[dict[str, Any]]:
    """Terraform's ``checks``: check blocks' results (``trainform.config.conditions
    .check_outcomes``: (check, the module instance it was evaluated in, outcome)), kind
    ``check``; and resources' preconditions and postconditions (``resource_outcomes``:
    (instance, its outcomes) for every evaluated instance whose block has conditions),
    kind ``resource``, one instance per resource instance (``instance_key`` under
    count/for_each). Statuses are ``pass``, ``fail`` or ``unknown`` (a condition that
    depends on what is known only after apply)."""
    from trainform.config.address import module_text
    from trainform.config.model import module_prefix
    from trainform.planner.jsonconfig import resource_type

    entries: list[tuple[dict[str, Any], dict[str, Any], list[Any]]] = []
    for chk, inside, outcome in outcomes:
        config_module = module_prefix(tuple(chk.module))
        config: dict[str, Any] = {"kind": "check", "name": chk.name}
        if chk.module:
            config["module"] = config_module[:-1]
        config["to_display"] = f"{config_module}check.{chk.name}"
        instance = {
            **({"module": inside} if inside else {}),
            "to_display": f"{inside + '.' if inside else ''}check.{chk.name}",
        }
        entries.append((config, instance, [outcome]))
    for inst, results in resource_outcomes:
        res = inst.resource
        config = {"kind": "resource", "mode": "managed", "name": res.name}
        if res.module_path:
            config["module"] = module_prefix(res.module_path)[:-1]
        config["to_display"] = res.address
        config["type"] = resource_type(res.kind, res.provider)
        instance = {}
        if inst.module:
            instance["module"] = module_text(inst.module)
        if inst.key is not None:
            instance["instance_key"] = inst.key
        instance["to_display"] = inst.address
        entries.append((config, instance, list(results)))
    return _checks(entries)


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """The plan in Terraform's JSON plan format (deterministic but for ``timestamp``:
    sorted addresses and keys)."""
    by_address = {c.address: c for c in plan.changes}
    planned_outputs = {
        o.name: {
            "sensitive": o.sensitive,
            **({} if o.type is None else {"type": o.type}),
            **({} if o.after_unknown else {"value": o.after}),
        }
        for o in plan.outputs
        if o.actions != DELETE
    }
    output_changes = {
        o.name: {
            "actions": list(o.actions),
            "before": o.before,
            **({} if o.after_unknown else {"after": o.after}),  # as Terraform: none if unknown
            "after_unknown": o.after_unknown,
            "before_sensitive": o.sensitive,
            "after_sensitive": o.sensitive,
        }
        for o in plan.outputs
    }
    drift = [
        entry
        for d in plan.drift
        if (entry := resource_drift(d, by_address.get(d.address))) is not None
    ]
    # every instance, no-ops included, as Terraform lists them
    changes = [resource_change(c) for c in plan.changes]
    data: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "terraform_version": __version__,
        "variables": plan.variables,
        "planned_values": state_values(_planned_resources(plan), planned_outputs),
        "resource_drift": drift,
        "resource_changes": changes,
        "output_changes": output_changes,
    }
    if plan.prior_state.get("values"):  # as Terraform: none when nothing is recorded
        data["prior_state"] = plan.prior_state
    data["configuration"] = plan.configuration
    data["relevant_attributes"] = list(plan.relevant_attributes)
    if plan.checks:
        data["checks"] = list(plan.checks)
    data["timestamp"] = plan.timestamp
    data["applyable"] = plan.has_changes
    data["complete"] = not plan.targets  # as Terraform: a targeted plan is not complete
    data["errored"] = False
    # as Terraform: empty collections are left out
    for key in ("variables", "resource_drift", "output_changes", "relevant_attributes"):
        if not data[key]:
            del data[key]
    return data
