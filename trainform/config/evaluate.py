"""Evaluating a :class:`Module`: variables, locals, resource instances and outputs, in
dependency order. Values of other resources that are known only after apply come from a
resolver the caller supplies (the planner at plan time, the engine at apply time)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from trainform.config import schema as S
from trainform.config.expr import Ref, Scope, evaluate, redacted_for, references
from trainform.config.model import Evaluated, Instance, Module, Resource
from trainform.config.sensitivity import SensitiveRef, expression_paths, relative_paths
from trainform.config.source import Expr, RawBlock
from trainform.config.values import (
    MAX_INSTANCES,
    UNKNOWN,
    FunctionContext,
    ParamMarkers,
    is_unknown,
)
from trainform.config.variables import VariableValues, convert, spec_name, value_from_text
from trainform.errors import ConfigError, Diagnostic, Pos
from trainform.graph import evaluation_order

Resolver = Callable[[Instance], dict[str, Any]]
"""resolver(instance) -> the computed attributes other resources may read (UNKNOWN if not yet
known)."""

Prompt = Callable[[str, str, bool], str]


def resolve_variables(
    module: Module,
    raw: VariableValues,
    prompt: Prompt | None,
    functions: FunctionContext,
    lenient: bool = False,
) -> dict[str, Any]:
    """Convert and validate every declared variable. A required variable with no value is
    asked for through ``prompt`` (on a TTY), otherwise it is an error naming the variable
    (or, with ``lenient``, unknown: ``validate`` checks a configuration without inputs)."""
    values: dict[str, Any] = {}
    errors: list[Diagnostic] = []
    scope = Scope({}, functions)
    for name, var in sorted(module.variables.items()):
        if name in raw.values:
            value, where = raw.values[name], raw.origin[name]
        elif var.default is not None:
            value, where = evaluate(var.default, scope), str(var.default.pos)
        elif lenient:
            values[name] = UNKNOWN
            continue
        elif prompt is not None:
            value, where = prompt(name, var.description, var.sensitive), "prompt"
            value = value_from_text(value, var.type)
        else:
            errors.append(
                Diagnostic(
                    f"no value for required variable {name!r}",
                    var.pos,
                    f"pass --var {name}=..., set TRAINFORM_VAR_{name}, or add it to trainform.tfvars",
                )
            )
            continue
        try:
            value = convert(value, var.type)
        except ValueError as exc:
            shown = "(sensitive value)" if var.sensitive else repr(value)
            # the reason may quote the value ("got 'hunter2'"), so a secret gets none
            reason = "it does not match the type" if var.sensitive else str(exc)
            errors.append(
                Diagnostic(
                    f"invalid value {shown} for variable {name!r} (from {where}): {reason}",
                    var.pos,
                    f"the variable's type is {spec_name(var.type)}",
                )
            )
            continue
        if value is None and not var.nullable:
            errors.append(Diagnostic(f"variable {name!r} must not be null", var.pos))
            continue
        vscope = Scope({"var": {name: value}}, functions)
        # the scope holds this variable alone: any reference is to it
        secret = (lambda _ref: True) if var.sensitive else None
        for v in var.validations:
            ok = evaluate(v.condition, vscope, secret)
            if ok is False:
                msg = evaluate(v.error_message, vscope, secret)
                if var.sensitive and references(v.error_message):
                    msg = "(the error message refers to the sensitive value, so it is not shown)"
                errors.append(
                    Diagnostic(f"invalid value for variable {name!r}: {msg}", v.condition.pos)
                )
            elif ok is not True:
                errors.append(
                    Diagnostic("a validation condition must be true or false", v.condition.pos)
                )
        values[name] = value
    if errors:
        raise ConfigError(errors)
    return values


class Evaluator:
    """Evaluates one module against fixed variable values; reusable for re-evaluation at apply
    time once dependencies are known."""

    def __init__(
        self, module: Module, variables: dict[str, Any], functions: FunctionContext
    ) -> None:
        self.module = module
        self.variables = variables
        self.functions = functions
        self.order = evaluation_order(module.dependencies)
        self._resource_closure = self._resource_dependencies()

    def _resource_dependencies(self) -> dict[str, tuple[str, ...]]:
        """For each resource, the resources it depends on through any chain of locals."""
        out: dict[str, tuple[str, ...]] = {}
        cache: dict[str, set[str]] = {}

        def reach(node: str) -> set[str]:
            if node in cache:
                return cache[node]
            found: set[str] = set()
            for dep in self.module.dependencies.get(node, ()):
                if dep in self.module.resources:
                    found.add(dep)
                else:
                    found |= reach(dep)
            cache[node] = found
            return found

        for addr in self.module.resources:
            out[addr] = tuple(sorted(reach(addr)))
        return out

    def sensitive_vars(self) -> set[str]:
        return {n for n, v in self.module.variables.items() if v.sensitive}

    def run(self, resolver: Resolver, only: Iterable[str] | None = None) -> Evaluated:
        """Evaluate every node (or only the given nodes, which must include what they depend
        on). Raises ConfigError."""
        wanted = set(only) if only is not None else None
        result = Evaluated(variables=dict(self.variables))
        sensitive_nodes = {f"var.{n}" for n in self.sensitive_vars()}
        sensitive_attrs: dict[str, set[str]] = {}
        cwd = os.getcwd()
        directory = str(self.module.directory)
        values: dict[str, Any] = {
            "var": self.variables,
            "local": result.locals,
            "path": {"module": directory, "root": directory, "cwd": cwd},
            **{k: {} for k in S.RESOURCE_KINDS},
        }

        def ref_paths(ref: Ref) -> set[str] | None:
            """What is sensitive under ``ref``, relative to it (see sensitivity.py)."""
            if ref.key in sensitive_nodes:
                return {""}
            if ref.root in S.RESOURCE_KINDS and sensitive_attrs.get(ref.key):
                res = self.module.resources[ref.key]
                rest = list(ref.steps[1:])
                if rest and (res.count is not None or res.for_each is not None):
                    rest = rest[1:]
                steps: list[str] = []
                for step in rest:
                    if not isinstance(step, str):
                        break  # a list index: judged as the list
                    steps.append(step)
                return relative_paths(sensitive_attrs[ref.key], steps)
            return None

        def is_sensitive(refs: list[Ref]) -> bool:
            return any(ref_paths(ref) is not None for ref in refs)

        def secret(ref: Ref) -> bool:
            return ref_paths(ref) is not None

        errors: list[Diagnostic] = []
        for node in self.order:
            if wanted is not None and node not in wanted:
                continue
            kind, _, name = node.partition(".")
            try:
                if kind == "local":
                    loc = self.module.locals[name]
                    result.locals[name] = evaluate(loc.value, Scope(values, self.functions), secret)
                    if is_sensitive(references(loc.value)):
                        sensitive_nodes.add(node)
                elif kind == "output":
                    out = self.module.outputs[name]
                    value = evaluate(out.value, Scope(values, self.functions), secret)
                    if is_sensitive(references(out.value)) and not out.sensitive:
                        raise ConfigError(
                            Diagnostic(
                                f"output {name!r} refers to sensitive values",
                                out.value.pos,
                                "set sensitive = true in the output block",
                            )
                        )
                    result.outputs[name] = (value, out.sensitive)
                elif node in self.module.resources:
                    res = self.module.resources[node]
                    instances = self._instances(res, values, secret, ref_paths, resolver)
                    sens = set(res.schema.user_attributes()) & {
                        k for k, a in res.schema.attributes.items() if a.sensitive
                    }
                    for inst in instances:
                        result.instances[inst.address] = inst
                        sens |= inst.sensitive
                    sensitive_attrs[node] = sens
            except ConfigError as exc:
                errors.extend(exc.diagnostics)
                if len(errors) > 20:
                    break
        if errors:
            raise ConfigError(errors)
        return result

    def _instances(
        self,
        res: Resource,
        values: dict[str, Any],
        secret: Callable[[Ref], bool],
        ref_paths: SensitiveRef,
        resolver: Resolver,
    ) -> list[Instance]:
        def is_sensitive(refs: list[Ref]) -> bool:
            return any(secret(r) for r in refs)

        scope = Scope(values, self.functions)
        keyed: list[tuple[int | str | None, dict[str, Any]]] = []
        if res.count is not None:
            n = evaluate(res.count, scope, secret)
            if n is UNKNOWN:
                raise ConfigError(
                    Diagnostic(
                        "count depends on values known only after apply",
                        res.count.pos,
                        "use values known at plan time, or apply with --target first",
                    )
                )
            if isinstance(n, bool) or not isinstance(n, (int, float)) or n < 0 or int(n) != n:
                shown = "(sensitive value)" if is_sensitive(references(res.count)) else repr(n)
                raise ConfigError(
                    Diagnostic(f"count must be a whole number >= 0, got {shown}", res.count.pos)
                )
            if n > MAX_INSTANCES:
                raise ConfigError(
                    Diagnostic(
                        f"count may be at most {MAX_INSTANCES} (the limit of instances of "
                        "one block)",
                        res.count.pos,
                    )
                )
            keyed = [(i, {"count": {"index": i}}) for i in range(int(n))]
        elif res.for_each is not None:
            if is_sensitive(references(res.for_each)):
                raise ConfigError(
                    Diagnostic(
                        "for_each cannot use sensitive values: its keys become resource "
                        "addresses, shown in plans and stored in state",
                        res.for_each.pos,
                    )
                )
            coll = evaluate(res.for_each, scope)
            if is_unknown(coll):
                raise ConfigError(
                    Diagnostic(
                        "for_each depends on values known only after apply", res.for_each.pos
                    )
                )
            if isinstance(coll, (dict, list)) and len(coll) > MAX_INSTANCES:
                raise ConfigError(
                    Diagnostic(
                        f"for_each may have at most {MAX_INSTANCES} elements (the limit of "
                        "instances of one block)",
                        res.for_each.pos,
                    )
                )
            if isinstance(coll, dict):
                keyed = [(k, {"each": {"key": k, "value": coll[k]}}) for k in sorted(coll)]
            elif isinstance(coll, list) and all(isinstance(x, str) for x in coll):
                if len(set(coll)) != len(coll):
                    raise ConfigError(
                        Diagnostic("for_each set has duplicate elements", res.for_each.pos)
                    )
                keyed = [(k, {"each": {"key": k, "value": k}}) for k in sorted(coll)]
            else:
                raise ConfigError(
                    Diagnostic(
                        "for_each must be a map or a list of strings",
                        res.for_each.pos,
                        "use toset([...]) or a map",
                    )
                )
        else:
            keyed = [(None, {})]
        if res.kind == "sweep":
            keyed = [(k, {**extra, "param": ParamMarkers()}) for k, extra in keyed]

        paths: set[str] = set()
        for k, e in res.attributes.items():
            paths |= expression_paths(k, e, ref_paths)
        sens_attrs = frozenset(paths) | frozenset(
            k for k, a in res.schema.attributes.items() if a.sensitive and k in res.attributes
        )
        for blk in res.blocks:  # a nested block (docker { ... }) is stored as one attribute
            stack: list[RawBlock] = [blk]
            refs: list[Ref] = []
            while stack:
                b = stack.pop()
                refs.extend(r for a in b.attrs.values() for r in references(a.expr))
                stack.extend(b.blocks)
            if is_sensitive(refs):
                sens_attrs |= {blk.type}
        depends = self._resource_closure[res.address]
        instances: list[Instance] = []
        for key, extra in keyed:
            iscope = Scope({**values, **extra}, self.functions) if extra else scope
            attrs = self._attributes(res.schema, res.attributes, res.blocks, iscope, res, secret)
            if res.kind == "compute":
                attrs["type"] = res.provider
            unknown = any(is_unknown(v) for v in attrs.values())
            inst = Instance(res, key, attrs, sens_attrs, depends, unknown)
            instances.append(inst)
        self._publish(res, instances, values, resolver)
        return instances

    def _attributes(
        self,
        schema: S.BlockSchema,
        exprs: dict[str, Expr],
        blocks: tuple[RawBlock, ...] | list[RawBlock],
        scope: Scope,
        res: Resource,
        secret: Callable[[Ref], bool],
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if schema.open_attributes:  # a run's inline compute { ... }: checked by its provider
            out.update({k: evaluate(e, scope, secret) for k, e in exprs.items()})
            for b in blocks:
                out[b.type] = self._attributes(
                    schema, {k: a.expr for k, a in b.attrs.items()}, b.blocks, scope, res, secret
                )
            return out
        for name, attr in schema.user_attributes().items():
            if name in exprs:
                value = evaluate(exprs[name], scope, secret)
                try:
                    value = self._checked(res, name, attr, value, exprs[name].pos)
                except ConfigError as exc:
                    raise redacted_for(exc, exprs[name], scope, secret) from None
                out[name] = value
            else:
                out[name] = attr.default
        for bname, nested in schema.blocks.items():
            found = [b for b in blocks if b.type == bname]
            if not found and bname in schema.attributes:
                continue  # the attribute of the same name is used (run's compute = ...)
            values = [
                self._attributes(
                    nested.schema,
                    {k: a.expr for k, a in b.attrs.items()},
                    b.blocks,
                    scope,
                    res,
                    secret,
                )
                for b in found
            ]
            if nested.labels:  # parameter "lr" { ... } -> {"lr": {...}}
                out[bname] = {b.labels[0]: v for b, v in zip(found, values)}
            elif nested.many:
                out[bname] = values
            else:
                out[bname] = values[0] if values else None
        return out

    @staticmethod
    def _checked(res: Resource, name: str, attr: S.Attribute, value: Any, pos: Pos) -> Any:
        """``value`` converted to the attribute's type; ConfigError if it has another type or
        is not one of the allowed values."""
        value, err = S.check_type(value, attr.type)
        if err:
            raise ConfigError(Diagnostic(f"{res.address}: attribute {name!r}: {err}", pos))
        if attr.allowed and value is not UNKNOWN and value not in attr.allowed:
            raise ConfigError(
                Diagnostic(
                    f"{res.address}: attribute {name!r} must be one of "
                    + ", ".join(repr(a) for a in attr.allowed),
                    pos,
                    S.did_you_mean(str(value), [str(a) for a in attr.allowed]),
                )
            )
        return value

    def _publish(
        self, res: Resource, instances: list[Instance], values: dict[str, Any], resolver: Resolver
    ) -> None:
        """Make the instances visible to later expressions as ``kind.name``."""

        def value_of(inst: Instance) -> dict[str, Any]:
            return {**inst.attributes, **resolver(inst), "name": res.name, "address": inst.address}

        if res.count is not None:
            shown: Any = [value_of(i) for i in instances]
        elif res.for_each is not None:
            shown = {str(i.key): value_of(i) for i in instances}
        else:
            shown = value_of(instances[0])
        values[res.kind][res.name] = shown


def block_nodes(module: Module, addresses: Iterable[str]) -> set[str]:
    """Graph nodes needed to evaluate the given resource blocks (themselves and what they
    depend on)."""
    from trainform.graph import dependencies_closure

    return dependencies_closure(module.dependencies, addresses)
