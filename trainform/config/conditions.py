"""Evaluating conditions: ``check`` blocks' assertions and resources' ``precondition`` and
``postcondition`` blocks, against the values an evaluation saw (:attr:`Evaluated.scopes`).

A condition is true, false, or unknown (it depends on values known only after apply). As in
Terraform, a failed check is a warning and never fails a command; a failed precondition or
postcondition is an error with the condition's file:line and its message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainform.config.address import module_text
from trainform.config.expr import Scope, evaluate
from trainform.config.model import Check, Condition, Evaluated, Instance, Module
from trainform.config.values import FunctionContext, is_unknown
from trainform.errors import ConfigError, Diagnostic

KNOWN_AFTER_APPLY = (
    "the condition could not be evaluated at this time; a result will be known when this "
    "plan is applied"
)


@dataclass(frozen=True)
class Outcome:
    """A condition's result: ``ok`` True, False, or None when unknown (or not evaluable,
    then ``message`` says why)."""

    condition: Condition
    ok: bool | None
    message: str = ""

    @property
    def where(self) -> str:
        pos = self.condition.pos
        return f"{pos.file}:{pos.line}"


def evaluate_condition(
    cond: Condition, values: dict[str, Any], functions: FunctionContext
) -> Outcome:
    """Evaluate one condition in ``values`` (a scope: var, local, resources, self, ...)."""
    scope = Scope(values, functions)
    try:
        value = evaluate(cond.condition, scope)
    except ConfigError as exc:
        return Outcome(cond, None, exc.diagnostics[0].message)
    if is_unknown(value):
        return Outcome(cond, None, KNOWN_AFTER_APPLY)
    if not isinstance(value, bool):
        return Outcome(cond, False, f"the condition must be true or false, got {value!r}")
    if value:
        return Outcome(cond, True)
    try:
        message = evaluate(cond.error_message, scope)
    except ConfigError as exc:
        message = f"(its error_message could not be evaluated: {exc.diagnostics[0].message})"
    if is_unknown(message):
        message = "(known after apply)"
    return Outcome(cond, False, str(message))


def instance_values(
    evaluated: Evaluated,
    inst: Instance,
    functions: FunctionContext,
    self_value: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The scope an instance's conditions see: its module instance's values, its
    ``count.index`` or ``each.key``/``each.value``, and ``self`` when given. None if that
    module instance was not evaluated (``-target`` left it out)."""
    base = evaluated.scopes.get(inst.module)
    if base is None:
        return None
    values = dict(base)
    res = inst.resource
    if res.count is not None and isinstance(inst.key, int):
        values["count"] = {"index": inst.key}
    elif res.for_each is not None and inst.key is not None:
        each_value: Any = inst.key
        try:
            coll = evaluate(res.for_each, Scope(base, functions))
            if isinstance(coll, dict):
                each_value = coll.get(str(inst.key))
        except ConfigError:
            pass
        values["each"] = {"key": inst.key, "value": each_value}
    if self_value is not None:
        values["self"] = self_value
    return values


def published(evaluated: Evaluated, inst: Instance) -> dict[str, Any] | None:
    """The instance's value as other expressions see it (``compute.box`` after its facts
    were resolved), or None."""
    values = evaluated.scopes.get(inst.module) or {}
    shown = (values.get(inst.resource.kind) or {}).get(inst.resource.name)
    if inst.key is None:
        return shown if isinstance(shown, dict) else None
    if isinstance(shown, list) and isinstance(inst.key, int) and inst.key < len(shown):
        item = shown[inst.key]
        return item if isinstance(item, dict) else None
    if isinstance(shown, dict):
        item = shown.get(str(inst.key))
        return item if isinstance(item, dict) else None
    return None


def preconditions(
    evaluated: Evaluated, inst: Instance, functions: FunctionContext
) -> list[Outcome]:
    """The outcomes of an instance's preconditions."""
    conds = inst.resource.lifecycle.preconditions
    if not conds:
        return []
    values = instance_values(evaluated, inst, functions)
    if values is None:
        return [Outcome(c, None, KNOWN_AFTER_APPLY) for c in conds]
    return [evaluate_condition(c, values, functions) for c in conds]


def postconditions(
    evaluated: Evaluated, inst: Instance, functions: FunctionContext
) -> list[Outcome]:
    """The outcomes of an instance's postconditions, ``self`` being its value in
    ``evaluated`` (evaluate over state once the instance was created or updated)."""
    conds = inst.resource.lifecycle.postconditions
    if not conds:
        return []
    me = published(evaluated, inst)
    values = instance_values(evaluated, inst, functions, me)
    if values is None or me is None:
        return [Outcome(c, None, f"{inst.address} has no recorded value") for c in conds]
    return [evaluate_condition(c, values, functions) for c in conds]


def failure_diagnostic(kind: str, address: str, outcome: Outcome) -> Diagnostic:
    """A failed precondition or postcondition, as Terraform words it."""
    return Diagnostic(
        f"Resource {kind} failed: {outcome.message}",
        outcome.condition.pos,
        f"this {kind} of {address} is false",
    )


def failure_text(kind: str, address: str, outcome: Outcome) -> str:
    return f"Resource {kind} failed ({outcome.where}): {outcome.message}"


def check_outcomes(
    module: Module, evaluated: Evaluated, functions: FunctionContext
) -> list[tuple[Check, str, Outcome]]:
    """Every assertion of every check block, evaluated in the values of each instance of
    the module that declares it, with that instance's address (``""`` for the root,
    ``module.team["a"]``). A child module's check is evaluated in the instances that the
    evaluation reached (``-target`` may leave some out)."""
    out = []
    for chk in module.checks:
        where: list[tuple[str, dict[str, Any] | None]]
        if chk.module:
            where = [
                (module_text(path), values)
                for path, values in evaluated.scopes.items()
                if tuple(s.name for s in path) == chk.module
            ]
        else:
            where = [("", evaluated.scopes.get(()))]
        for shown, values in where:
            for a in chk.asserts:
                if values is None:
                    out.append((chk, shown, Outcome(a, None, KNOWN_AFTER_APPLY)))
                else:
                    out.append((chk, shown, evaluate_condition(a, values, functions)))
    return out


def check_warnings(
    module: Module,
    evaluated: Evaluated,
    functions: FunctionContext,
    final: bool,
    outcomes: list[tuple[Check, str, Outcome]] | None = None,
) -> list[str]:
    """Warnings for failed assertions, and (at plan time, ``final`` False) for assertions
    known only after apply. After apply (``final``) an assertion still unknown is said so.
    ``outcomes``: those of :func:`check_outcomes`, when the caller has them already."""
    warnings = []
    if outcomes is None:
        outcomes = check_outcomes(module, evaluated, functions)
    for chk, inside, o in outcomes:
        name = f'check "{chk.name}"' + (f" in {inside}" if inside else "")
        if o.ok is False:
            warnings.append(f"Check block assertion failed: {name} ({o.where}): {o.message}")
        elif o.ok is None and o.message == KNOWN_AFTER_APPLY and not final:
            warnings.append(
                f"Check block assertion known after apply: {name} ({o.where}): {o.message}"
            )
        elif o.ok is None:
            warnings.append(
                f"Check block assertion could not be evaluated: {name} ({o.where}): {o.message}"
            )
    return warnings
