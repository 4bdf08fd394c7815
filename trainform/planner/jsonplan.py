"""The machine-readable plan format (``plan --json``, ``show --json PLANFILE``).

Versioned by ``format_version`` (a change that removes or renames a field bumps the major
number). Modelled on Terraform's JSON plan: ``resource_changes`` with ``change.actions``,
``before``/``after``, and ``after_unknown``/``before_sensitive``/``after_sensitive`` as
objects mirroring the values with ``true`` where a value is unknown or sensitive. Sensitive
values are never present: they appear as ``null`` and are flagged in ``*_sensitive``.
"""

from __future__ import annotations

from typing import Any

from trainform import __version__
from trainform.planner.types import Plan

FORMAT_VERSION = "1.0"


def _flags(paths: tuple[str, ...]) -> dict[str, Any]:
    """Dotted paths (``variables.TOKEN``) as nested objects of ``true``, as Terraform's
    ``*_sensitive`` mirror the values."""
    out: dict[str, Any] = {}
    for path in sorted(paths):
        *parents, leaf = path.split(".")
        node: Any = out
        for step in parents:
            node = node.setdefault(step, {})
            if node is True:
                break
        else:
            node[leaf] = True
    return out


def _module_address(address: str) -> str:
    """``module.team["a"]`` for ``module.team["a"].compute.box``; "" in the root module."""
    from trainform.config.address import AddressError, module_text, parse_address

    try:
        return module_text(parse_address(address).module)
    except AddressError:
        return ""


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """The plan as a JSON-serialisable dict (deterministic: sorted addresses)."""
    changes: list[dict[str, Any]] = []
    for c in plan.changes:
        after = None
        if c.after is not None:
            after = {k: v for k, v in c.after.items() if k not in c.after_unknown}
        entry: dict[str, Any] = {"address": c.address}
        module = _module_address(c.address)
        if module:  # as Terraform: only for resources inside a module
            entry["module_address"] = module
        changes.append(
            {
                **entry,
                "mode": "managed",
                "type": c.kind,
                "name": c.name,
                "index": c.key,
                "provider": c.provider,
                "change": {
                    "actions": list(c.actions),
                    "before": c.before,
                    "after": after,
                    "after_unknown": _flags(c.after_unknown),
                    "before_sensitive": _flags(c.before_sensitive),
                    "after_sensitive": _flags(c.after_sensitive),
                    "replace_paths": [[p] for p in c.replace_paths],
                },
                "action_reason": c.reason,
                "depends_on": list(c.depends_on),
            }
        )
        if c.previous_address is not None:  # as Terraform: a moved block moved it here
            changes[-1]["previous_address"] = c.previous_address
        if c.importing is not None:
            changes[-1]["change"]["importing"] = {"id": c.importing}
    outputs = {
        o.name: {
            "actions": list(o.actions),
            "before": o.before,
            "after": o.after,
            "after_unknown": o.after_unknown,
            "before_sensitive": o.sensitive,
            "after_sensitive": o.sensitive,
        }
        for o in plan.outputs
    }
    drift = [
        {
            "address": d.address,
            "kind": d.kind,
            "message": d.message,
            "before": d.before,
            "after": d.after,
        }
        for d in plan.drift
    ]
    return {
        "format_version": FORMAT_VERSION,
        "trainform_version": __version__,
        "mode": plan.mode,
        "prior_state": {"lineage": plan.lineage, "serial": plan.serial},
        "resource_changes": changes,
        "resource_drift": drift,
        "output_changes": outputs,
        "targets": list(plan.targets),
        "replace": list(plan.replace),
        "has_changes": plan.has_changes,
    }
