"""The configuration as Terraform's JSON plan gives it (``configuration``), and the names
trainform's resources take in Terraform's JSON formats.

Names (documented in the README's "JSON plan" section):

- ``type``: ``trainform_<kind>`` (``trainform_workspace``, ``trainform_environment``,
  ``trainform_run``, ``trainform_sweep``), and for compute ``trainform_<provider>_compute``
  with the provider's ``-`` written ``_`` (``trainform_local_compute``,
  ``trainform_ssh_compute``, ``trainform_docker_cluster_compute``): a compute's provider
  decides its attributes, as an AWS resource type does.
- ``provider_name``: ``registry.trainform.dev/trainform/<provider>`` (``.../ssh``,
  ``.../run``); ``provider_config_key`` is the provider's name (``ssh``).

Expressions follow Terraform's rules: ``references`` lists every reference an expression
makes, each multi-step one unwrapped step by step (``compute.gpu.facts.cpus``,
``compute.gpu.facts``, ``compute.gpu``; an instance's resource without its key); an
expression without references and function calls has its ``constant_value``. A constant
that is a secret (a sensitive attribute, variable or output, or ``sensitive(...)``) is
written ``"constant_value": null`` with ``"sensitive": true``: the plan never holds it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from lark import Tree

from trainform.config.expr import Ref, Scope, evaluate, references
from trainform.config.model import Module, ModuleCall, Output, Resource, Variable, module_prefix
from trainform.config.schema import BlockSchema
from trainform.config.sensitivity import is_sensitive_expression
from trainform.config.source import Expr, RawBlock, Template
from trainform.config.values import FunctionContext, is_unknown
from trainform.errors import TrainformError

# The resource kinds the JSON formats show.
JSON_KINDS = ("workspace", "compute", "environment", "dataset", "run", "sweep")
PROVIDER_HOST = "registry.trainform.dev/trainform"


def resource_type(kind: str, provider: str) -> str:
    """``trainform_run``; for compute ``trainform_<provider>_compute``."""
    if kind == "compute":
        return f"trainform_{re.sub(r'[^A-Za-z0-9]', '_', provider)}_compute"
    return f"trainform_{kind}"


def provider_name(provider: str) -> str:
    return f"{PROVIDER_HOST}/{provider}"


def _has_call(node: Any) -> bool:
    if isinstance(node, Template):
        return any(_has_call(p) for p in node.parts)
    if isinstance(node, list):
        return any(_has_call(getattr(i, "node", i)) for i in node)
    if isinstance(node, dict):
        return any(_has_call(getattr(i, "node", i)) for i in node.values())
    if isinstance(node, Tree):
        return any(sub.data == "function_call" for sub in node.iter_subtrees())
    return False


def _steps_text(steps: tuple[str | int, ...]) -> str:
    return "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps)


class _Writer:
    def __init__(self, module: Module) -> None:
        self.module = module
        self.functions = FunctionContext(Path(module.directory))

    # -- expressions
    def reference_strings(self, ref: Ref, prefix: str) -> list[str]:
        """Terraform's unwrapped references for one reference made in the module instance
        whose nodes start with ``prefix`` (``""``, ``module.team.``)."""
        if not ref.steps:
            return [ref.root]
        first, rest = ref.steps[0], ref.steps[1:]
        subject = f"{ref.root}.{first}"
        extra: list[str] = []
        if ref.root == "module":
            call = self.module.calls.get(f"{prefix}module.{first}")
            keyed = call is not None and (call.count is not None or call.for_each is not None)
            if keyed and rest:
                extra.append(subject)
                subject += f"[{json.dumps(rest[0])}]"
                rest = rest[1:]
            if rest and isinstance(rest[0], str):  # an output: the call is named too
                extra.append(subject.split("[")[0])
                subject += f".{rest[0]}"
                rest = rest[1:]
        else:
            res = self.module.resources.get(f"{prefix}{subject}")
            if res is not None and (res.count is not None or res.for_each is not None) and rest:
                extra.append(subject)
                subject += f"[{json.dumps(rest[0])}]"
                rest = rest[1:]
        out = [subject + _steps_text(rest[:i]) for i in range(len(rest), 0, -1)]
        return [*out, subject, *extra]

    def expression(self, expr: Expr, prefix: str, secret: bool = False) -> dict[str, Any]:
        refs: list[str] = []
        for ref in references(expr):
            for text in self.reference_strings(ref, prefix):
                if text not in refs:
                    refs.append(text)
        if refs:
            return {"references": refs}
        if secret or is_sensitive_expression(expr, lambda _ref: None):
            return {"constant_value": None, "sensitive": True}
        if _has_call(expr.node):
            return {}
        try:
            value = evaluate(expr, Scope({}, self.functions))
        except TrainformError:
            return {}
        return {} if is_unknown(value) else {"constant_value": value}

    def expressions(
        self, attrs: dict[str, Expr], blocks: list[RawBlock], schema: BlockSchema, prefix: str
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, expr in sorted(attrs.items()):
            attr = schema.attributes.get(name)
            out[name] = self.expression(expr, prefix, secret=bool(attr and attr.sensitive))
        for block in blocks:
            spec = schema.blocks.get(block.type)
            inner = spec.schema if spec is not None else BlockSchema(open_attributes=True)
            body = self.expressions(
                {n: a.expr for n, a in block.attrs.items()}, block.blocks, inner, prefix
            )
            if spec is not None and spec.many:
                out.setdefault(block.type, []).append(body)
            else:
                out[block.type] = body
        return out

    # -- blocks
    def resource(self, res: Resource, prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "address": f"{res.kind}.{res.name}",
            "mode": "managed",
            "type": resource_type(res.kind, res.provider),
            "name": res.name,
            "provider_config_key": res.provider,
            "expressions": self.expressions(res.attributes, list(res.blocks), res.schema, prefix),
            "schema_version": 0,
        }
        if res.count is not None:
            out["count_expression"] = self.expression(res.count, prefix)
        if res.for_each is not None:
            out["for_each_expression"] = self.expression(res.for_each, prefix)
        if res.depends_on:
            out["depends_on"] = list(res.depends_on)
        return out

    def output(self, out: Output, prefix: str) -> dict[str, Any]:
        shown: dict[str, Any] = {}
        if out.sensitive:
            shown["sensitive"] = True
        shown["expression"] = self.expression(out.value, prefix, secret=out.sensitive)
        if out.description:
            shown["description"] = out.description
        return shown

    def variable(self, var: Variable) -> dict[str, Any]:
        shown: dict[str, Any] = {}
        if var.default is not None:
            value = self.expression(var.default, "", secret=var.sensitive)
            shown["default"] = value.get("constant_value")
        if var.description:
            shown["description"] = var.description
        if var.sensitive:
            shown["sensitive"] = True
        return shown

    def module_json(
        self,
        path: tuple[str, ...],
        variables: dict[str, Variable],
        outputs: dict[str, Output],
    ) -> dict[str, Any]:
        prefix = module_prefix(path)
        out: dict[str, Any] = {}
        if outputs:
            out["outputs"] = {n: self.output(o, prefix) for n, o in sorted(outputs.items())}
        resources = [
            self.resource(r, prefix)
            for a, r in sorted(self.module.resources.items())
            if r.module_path == path and r.kind in JSON_KINDS
        ]
        if resources:
            out["resources"] = resources
        calls = {
            c.name: self.call(c)
            for _a, c in sorted(self.module.calls.items())
            if c.path[:-1] == path
        }
        if calls:
            out["module_calls"] = calls
        if variables:
            out["variables"] = {n: self.variable(v) for n, v in sorted(variables.items())}
        return out

    def call(self, call: ModuleCall) -> dict[str, Any]:
        prefix = module_prefix(call.path[:-1])
        out: dict[str, Any] = {"source": call.source}
        out["expressions"] = {
            name: self.expression(
                expr,
                prefix,
                secret=bool(call.variables.get(name) and call.variables[name].sensitive),
            )
            for name, expr in sorted(call.arguments.items())
        }
        if call.count is not None:
            out["count_expression"] = self.expression(call.count, prefix)
        if call.for_each is not None:
            out["for_each_expression"] = self.expression(call.for_each, prefix)
        out["module"] = self.module_json(call.path, call.variables, call.outputs)
        if call.depends_on:
            out["depends_on"] = list(call.depends_on)
        return out


def configuration_json(module: Module) -> dict[str, Any]:
    """Terraform's ``configuration`` object for a loaded configuration: ``provider_config``
    and ``root_module`` (resources with their expressions, module calls, variables and
    outputs). Pure; secrets never appear (see the module docstring)."""
    writer = _Writer(module)
    providers = sorted({r.provider for r in module.resources.values() if r.kind in JSON_KINDS})
    return {
        "provider_config": {p: {"name": p, "full_name": provider_name(p)} for p in providers},
        "root_module": writer.module_json((), module.variables, module.outputs),
    }


def _block_exprs(attrs: dict[str, Expr], blocks: list[RawBlock]) -> list[Expr]:
    out = list(attrs.values())
    for block in blocks:
        out += _block_exprs({n: a.expr for n, a in block.attrs.items()}, block.blocks)
    return out


def relevant_attributes(
    module: Module, changed: list[str], outputs: list[str]
) -> list[dict[str, Any]]:
    """Terraform's ``relevant_attributes``: the resource attributes that contributed,
    directly or through other values, to the plan's changes. As Terraform's heuristic
    (``relevantResourceAttrsForPlan``): start from the references of every changed resource
    instance (``changed``, addresses of changes other than no-ops) and every changed root
    output (``outputs``), and follow them through variables (the module call's argument),
    locals, module outputs and resource attributes (that attribute's expression; a whole
    resource, all of its expressions), keeping every reference to a resource's attribute:
    ``{resource: "compute.a", attribute: ["description"]}``, the instance named as written
    (``compute.b[0]``, or ``compute.b`` without a key) inside its module instance. Sorted
    by resource, then attribute."""
    from trainform.config.address import (
        AddressError,
        ModulePath,
        ModuleStep,
        key_text,
        parse_address,
        prefixed,
    )

    def names(path: ModulePath) -> tuple[str, ...]:
        return tuple(s.name for s in path)

    def call_of(path: ModulePath) -> ModuleCall | None:
        return module.calls.get(module_prefix(names(path))[:-1]) if path else None

    def resource_exprs(res: Resource, steps: tuple[str | int, ...]) -> list[Expr]:
        if steps and isinstance(steps[0], str):
            if steps[0] in res.attributes:
                return [res.attributes[steps[0]]]
            blocks = [b for b in res.blocks if b.type == steps[0]]
            return _block_exprs({}, blocks)
        return _block_exprs(res.attributes, list(res.blocks))

    found: set[tuple[str, tuple[str | int, ...]]] = set()
    seen: set[tuple[ModulePath, str, tuple[str | int, ...]]] = set()
    pending: list[tuple[ModulePath, Ref]] = []

    def queue(path: ModulePath, exprs: list[Expr]) -> None:
        pending.extend((path, ref) for e in exprs for ref in references(e))

    for address in changed:
        try:
            addr = parse_address(address)
        except AddressError:
            continue
        res = module.resources.get(module_prefix(names(addr.module)) + f"{addr.kind}.{addr.name}")
        if res is not None:
            queue(addr.module, resource_exprs(res, ()))
    for name in outputs:
        if name in module.outputs:
            queue((), [module.outputs[name].value])
    while pending:
        path, ref = pending.pop()
        if (path, ref.root, ref.steps) in seen or not ref.steps:
            continue
        seen.add((path, ref.root, ref.steps))
        first, rest = ref.steps[0], ref.steps[1:]
        prefix = module_prefix(names(path))
        if ref.root in JSON_KINDS and isinstance(first, str):
            res = module.resources.get(f"{prefix}{ref.root}.{first}")
            if res is None:
                continue
            key = None
            if (res.count is not None or res.for_each is not None) and rest:
                key, rest = rest[0], rest[1:]
            found.add((prefixed(path, f"{res.kind}.{first}{key_text(key)}"), rest))
            queue(path, resource_exprs(res, rest))
        elif ref.root == "var" and path:
            call = call_of(path)
            if call is not None and first in call.arguments:
                queue(path[:-1], [call.arguments[first]])
        elif ref.root == "local":
            call = call_of(path)
            local = (call.locals if call is not None else module.locals).get(str(first))
            if local is not None:
                queue(path, [local.value])
        elif ref.root == "module" and isinstance(first, str):
            call = module.calls.get(f"{prefix}module.{first}")
            if call is None:
                continue
            key = None
            if (call.count is not None or call.for_each is not None) and rest:
                key, rest = rest[0], rest[1:]
            child = (*path, ModuleStep(first, key))
            wanted = [rest[0]] if rest and isinstance(rest[0], str) else list(call.outputs)
            queue(child, [call.outputs[n].value for n in wanted if n in call.outputs])
    return [{"resource": r, "attribute": list(a)} for r, a in sorted(found, key=str)]
