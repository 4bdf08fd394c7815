"""Evaluating a :class:`Module`: variables, locals, resource instances and outputs, in
dependency order. Values of other resources that are known only after apply come from a
resolver the caller supplies (the planner at plan time, the engine at apply time)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from trainform.config import schema as S
from trainform.config.address import (
    AddressError,
    ModulePath,
    ModuleStep,
    module_config_prefix,
    parse_target,
    prefixed,
)
from trainform.config.expr import Ref, Scope, evaluate, redacted_for, references
from trainform.config.model import (
    Evaluated,
    Instance,
    Module,
    ModuleCall,
    Resource,
    Variable,
    call_chain,
    module_prefix,
)
from trainform.config.sensitivity import (
    SensitiveRef,
    expression_paths,
    is_sensitive_expression,
    relative_paths,
)
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


class Sensitivity:
    """Which graph nodes (``var.x``, ``module.a.local.y``, ``module.a.output.z``) and which
    attribute paths of which resource blocks hold sensitive values; filled in as evaluation
    goes, and kept in :class:`Evaluated` for whoever shows values (the console)."""

    def __init__(self, module: Module, nodes: set[str]) -> None:
        self.module = module
        self.nodes = nodes
        self.attrs: dict[str, set[str]] = {}

    @classmethod
    def declared(cls, module: Module) -> Sensitivity:
        """What the declarations mark: sensitive variables and module outputs."""
        nodes = {f"var.{n}" for n, v in module.variables.items() if v.sensitive}
        for call in module.calls.values():
            nodes |= {f"{call.prefix}var.{n}" for n, v in call.variables.items() if v.sensitive}
            nodes |= {f"{call.prefix}output.{n}" for n, o in call.outputs.items() if o.sensitive}
        return cls(module, nodes)

    def ref_paths_in(self, prefix: str) -> SensitiveRef:
        """How references made inside the module instance named by ``prefix`` (``""`` for
        the root, ``module.a.``) are judged (see sensitivity.py)."""
        return lambda ref: self._ref_paths(prefix, ref)

    def _ref_paths(self, prefix: str, ref: Ref) -> set[str] | None:
        """What is sensitive under ``ref``, relative to it (``{""}`` for all of it)."""
        if not ref.steps:  # a bare root (``var``): sensitive whole if anything under it is
            start = f"{prefix}{ref.root}."
            under = [n for n in self.nodes if n.startswith(start)]
            under += [a for a, p in self.attrs.items() if p and a.startswith(start)]
            if ref.root == "module":
                under += [
                    a
                    for a, c in self.module.calls.items()
                    if a.startswith(start) and any(o.sensitive for o in c.outputs.values())
                ]
            return {""} if under else None
        if ref.root == "module":
            call = self.module.calls.get(f"{prefix}module.{ref.steps[0]}")
            if call is None:
                return None
            rest = list(ref.steps[1:])
            if rest and (call.count is not None or call.for_each is not None):
                rest = rest[1:]
            names = [rest[0]] if rest and isinstance(rest[0], str) else list(call.outputs)
            hidden = [n for n in names if f"{call.prefix}output.{n}" in self.nodes]
            return {""} if hidden else None
        key = prefix + ref.key
        if key in self.nodes:
            return {""}
        if ref.root in S.RESOURCE_KINDS and self.attrs.get(key):
            res = self.module.resources[key]
            rest = list(ref.steps[1:])
            if rest and (res.count is not None or res.for_each is not None):
                rest = rest[1:]
            steps: list[str] = []
            for step in rest:
                if not isinstance(step, str):
                    break  # a list index: judged as the list
                steps.append(step)
            return relative_paths(self.attrs[key], steps)
        return None


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
            values[name] = check_variable(name, var, value, where, functions)
        except ConfigError as exc:
            errors.extend(exc.diagnostics)
    if errors:
        raise ConfigError(errors)
    return values


def check_variable(
    name: str, var: Variable, value: Any, where: str, functions: FunctionContext
) -> Any:
    """``value`` (from ``where``) converted to the variable's type and validated. Raises
    ConfigError naming the variable; a sensitive value is never quoted."""
    errors: list[Diagnostic] = []
    try:
        value = convert(value, var.type)
    except ValueError as exc:
        shown = "(sensitive value)" if var.sensitive else repr(value)
        # the reason may quote the value ("got 'hunter2'"), so a secret gets none
        reason = "it does not match the type" if var.sensitive else str(exc)
        raise ConfigError(
            Diagnostic(
                f"invalid value {shown} for variable {name!r} (from {where}): {reason}",
                var.pos,
                f"the variable's type is {spec_name(var.type)}",
            )
        ) from None
    if value is None and not var.nullable:
        raise ConfigError(Diagnostic(f"variable {name!r} must not be null", var.pos))
    if is_unknown(value):
        return value  # validated once known (at apply)
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
    if errors:
        raise ConfigError(errors)
    return value


class Evaluator:
    """Evaluates one module against fixed variable values; reusable for re-evaluation at apply
    time once dependencies are known."""

    def __init__(
        self,
        module: Module,
        variables: dict[str, Any],
        functions: FunctionContext,
        workspace: str = "default",
    ) -> None:
        self.module = module
        self.variables = variables
        self.functions = functions
        self.workspace = workspace  # the CLI workspace: trainform.workspace
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
        on). Raises ConfigError.

        Each module instance (the root, ``module.team["a"]``) has its own scope; a node of a
        module is evaluated once per instance of that module."""
        wanted = set(only) if only is not None else None
        result = Evaluated(variables=dict(self.variables))
        sensitivity = Sensitivity.declared(self.module)
        result.sensitivity = sensitivity
        sensitive_nodes = sensitivity.nodes
        sensitive_attrs = sensitivity.attrs
        cwd = os.getcwd()
        directory = str(self.module.directory)

        def new_scope(variables: dict[str, Any], folder: str) -> dict[str, Any]:
            return {
                "var": variables,
                "local": {},
                "module": {},
                "path": {"module": folder, "root": directory, "cwd": cwd},
                # terraform.workspace is accepted too, so that ported configurations work
                "trainform": {"workspace": self.workspace},
                "terraform": {"workspace": self.workspace},
                **{k: {} for k in S.RESOURCE_KINDS},
            }

        root = new_scope(self.variables, directory)
        root["local"] = result.locals
        scopes: dict[ModulePath, dict[str, Any]] = {(): root}
        # config call address ("" for the root) -> its instances and what their arguments
        # may use (count.index, each.key/value)
        instances_of: dict[str, list[tuple[ModulePath, dict[str, Any]]]] = {"": [((), {})]}
        module_objects: dict[ModulePath, dict[str, Any]] = {}  # outputs as module.NAME shows

        ref_paths_in = sensitivity.ref_paths_in

        def secret_in(prefix: str) -> Callable[[Ref], bool]:
            paths = ref_paths_in(prefix)
            return lambda ref: paths(ref) is not None

        # Sensitivity is judged from a node's expressions, the same for every instance of its
        # module (a node's own instances cannot change it), so it is judged once per node: a
        # module called with for_each over N keys would otherwise walk its trees N times.
        judged: dict[str, bool] = {}  # local, output, module argument -> sensitive
        resource_paths: dict[str, frozenset[str]] = {}  # resource -> its sensitive paths

        errors: list[Diagnostic] = []
        for node in self.order:
            if wanted is not None and node not in wanted:
                continue
            call_addr, prefix, kind, name = self._node_parts(node)
            secret = secret_in(prefix)
            for path, extra in instances_of.get(call_addr, []):
                values = scopes[path]
                try:
                    if node in self.module.calls:
                        call = self.module.calls[node]
                        self._expand_call(
                            call,
                            path,
                            values,
                            secret,
                            scopes,
                            instances_of,
                            module_objects,
                            new_scope,
                        )
                    elif kind == "var":
                        if path:
                            self._argument(node, path, extra, scopes, sensitivity, judged)
                    elif kind == "local":
                        loc = self._locals_of(call_addr)[name]
                        values["local"][name] = evaluate(
                            loc.value, Scope(values, self.functions), secret
                        )
                        hides = judged.get(node)
                        if hides is None:
                            hides = is_sensitive_expression(loc.value, ref_paths_in(prefix))
                            judged[node] = hides
                        if hides:
                            sensitive_nodes.add(node)
                    elif kind == "output":
                        out = self._outputs_of(call_addr)[name]
                        if path:  # what it is if it fails (no error cascade in the caller)
                            module_objects[path][name] = UNKNOWN
                        value = evaluate(out.value, Scope(values, self.functions), secret)
                        hides = judged.get(node)
                        if hides is None:
                            hides = is_sensitive_expression(out.value, ref_paths_in(prefix))
                            judged[node] = hides
                        if hides and not out.sensitive:
                            raise ConfigError(
                                Diagnostic(
                                    f"output {name!r} refers to sensitive values",
                                    out.value.pos,
                                    "set sensitive = true in the output block",
                                )
                            )
                        if path:
                            module_objects[path][name] = value
                        else:
                            result.outputs[name] = (value, out.sensitive)
                    elif node in self.module.resources:
                        res = self.module.resources[node]
                        instances = self._instances(
                            res,
                            values,
                            secret,
                            ref_paths_in(prefix),
                            resolver,
                            path,
                            resource_paths,
                        )
                        sens = set(res.schema.user_attributes()) & {
                            k for k, a in res.schema.attributes.items() if a.sensitive
                        }
                        for inst in instances:
                            result.instances[inst.address] = inst
                            sens |= inst.sensitive
                        sensitive_attrs[node] = sensitive_attrs.get(node, set()) | sens
                except ConfigError as exc:
                    found = exc.diagnostics
                    if path:
                        chain = call_chain(self.module.calls, tuple(s.name for s in path), path)
                        found = [
                            replace(d, hint=f"{d.hint}; {chain}" if d.hint else chain)
                            for d in found
                        ]
                    errors.extend(found)
                    if len(errors) > 20:
                        break
            if len(errors) > 20:
                break
        if errors:
            raise ConfigError(errors)
        result.scopes = scopes
        return result

    def _node_parts(self, node: str) -> tuple[str, str, str, str]:
        """(the module call it belongs to or "", its name prefix, kind, name) of a node."""
        if node in self.module.calls:
            call = self.module.calls[node]
            parent = module_prefix(call.path[:-1])
            return parent[:-1], parent, "module", call.name
        if node in self.module.resources:
            res = self.module.resources[node]
            prefix = module_prefix(res.module_path)
            return prefix[:-1], prefix, res.kind, res.name
        head, kind, name = node.rsplit(".", 2) if node.count(".") >= 2 else ("", *node.split("."))
        prefix = f"{head}." if head else ""
        return head, prefix, kind, name

    def _locals_of(self, call_addr: str) -> dict[str, Any]:
        return self.module.calls[call_addr].locals if call_addr else self.module.locals

    def _outputs_of(self, call_addr: str) -> dict[str, Any]:
        return self.module.calls[call_addr].outputs if call_addr else self.module.outputs

    def _expand_call(
        self,
        call: ModuleCall,
        parent: ModulePath,
        values: dict[str, Any],
        secret: Callable[[Ref], bool],
        scopes: dict[ModulePath, dict[str, Any]],
        instances_of: dict[str, list[tuple[ModulePath, dict[str, Any]]]],
        module_objects: dict[ModulePath, dict[str, Any]],
        new_scope: Callable[[dict[str, Any], str], dict[str, Any]],
    ) -> None:
        """The instances of a module call inside the parent instance ``parent``, each with
        its scope, published in the parent as ``module.NAME``."""
        keyed = self._keys(call, Scope(values, self.functions), secret)
        shown: Any = [] if call.count is not None else {}
        for key, extra in keyed:
            path = (*parent, ModuleStep(call.name, key))
            scopes[path] = new_scope({}, str(call.directory))
            obj: dict[str, Any] = {}
            module_objects[path] = obj
            instances_of.setdefault(call.address, []).append((path, extra))
            if call.count is not None:
                shown.append(obj)
            elif call.for_each is not None:
                shown[str(key)] = obj
            else:
                shown = obj
        values["module"][call.name] = shown

    def _argument(
        self,
        node: str,
        path: ModulePath,
        extra: dict[str, Any],
        scopes: dict[ModulePath, dict[str, Any]],
        sensitivity: Sensitivity,
        judged: dict[str, bool],
    ) -> None:
        """A module instance's input variable: its argument, evaluated in the caller's
        scope (with count.index/each.*), converted and validated by the declaration.
        ``judged`` keeps whether the argument is sensitive, the same for every instance."""
        call_addr, _prefix, _kind, name = self._node_parts(node)
        call = self.module.calls[call_addr]
        var = call.variables[name]
        scopes[path]["var"][name] = UNKNOWN  # what it is if it fails (no error cascade)
        parent = module_prefix(call.path[:-1])
        if name in call.arguments:
            expr = call.arguments[name]
            caller = scopes[path[:-1]]
            paths = sensitivity.ref_paths_in(parent)
            secret = lambda ref: paths(ref) is not None  # noqa: E731
            value = evaluate(expr, Scope({**caller, **extra}, self.functions), secret)
            where = str(expr.pos)
            hides = judged.get(node)
            if hides is None:
                hides = judged[node] = is_sensitive_expression(expr, paths)
            if hides:
                sensitivity.nodes.add(node)
        elif var.default is not None:
            value = evaluate(var.default, Scope({}, self.functions))
            where = str(var.default.pos)
        else:
            raise ConfigError(
                Diagnostic(f"module {call.name!r} requires input variable {name!r}", call.pos)
            )
        scopes[path]["var"][name] = check_variable(
            name,
            replace(var, sensitive=var.sensitive or node in sensitivity.nodes),
            value,
            where,
            self.functions,
        )

    def _keys(
        self, res: Resource | ModuleCall, scope: Scope, secret: Callable[[Ref], bool]
    ) -> list[tuple[int | str | None, dict[str, Any]]]:
        """The instance keys of a resource or module call (from count or for_each), each with
        what its expressions may use (``count.index``, ``each.key``/``each.value``)."""

        def is_sensitive(refs: list[Ref]) -> bool:
            return any(secret(r) for r in refs)

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
        return keyed

    def _instances(
        self,
        res: Resource,
        values: dict[str, Any],
        secret: Callable[[Ref], bool],
        ref_paths: SensitiveRef,
        resolver: Resolver,
        module_path: ModulePath = (),
        resource_paths: dict[str, frozenset[str]] | None = None,
    ) -> list[Instance]:
        """The instances of ``res`` in one instance of its module. ``resource_paths`` keeps
        each resource's sensitive paths, the same for every instance of its module."""
        scope = Scope(values, self.functions)
        keyed = self._keys(res, scope, secret)
        if res.kind == "sweep":
            keyed = [(k, {**extra, "param": ParamMarkers()}) for k, extra in keyed]

        sens_attrs = None if resource_paths is None else resource_paths.get(res.address)
        if sens_attrs is None:
            sens_attrs = self._sensitive_paths(res, secret, ref_paths)
            if resource_paths is not None:
                resource_paths[res.address] = sens_attrs
        depends = tuple(
            instance_block(self.module, d, module_path) for d in self._resource_closure[res.address]
        )
        instances: list[Instance] = []
        for key, extra in keyed:
            iscope = Scope({**values, **extra}, self.functions) if extra else scope
            attrs = self._attributes(res.schema, res.attributes, res.blocks, iscope, res, secret)
            if res.kind == "compute":
                attrs["type"] = res.provider
            if res.module_dir is not None:
                attrs = module_relative(res, attrs, self.module.directory)
            unknown = any(is_unknown(v) for v in attrs.values())
            inst = Instance(res, key, attrs, sens_attrs, depends, unknown, module_path)
            instances.append(inst)
        self._publish(res, instances, values, resolver)
        return instances

    def _sensitive_paths(
        self, res: Resource, secret: Callable[[Ref], bool], ref_paths: SensitiveRef
    ) -> frozenset[str]:
        """The attribute paths of ``res`` that hold sensitive values (see sensitivity.py)."""
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
            if any(secret(r) for r in refs):
                sens_attrs |= {blk.type}
        return sens_attrs

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


def module_relative(res: Resource, attrs: dict[str, Any], root: Path) -> dict[str, Any]:
    """``attrs`` of a module's resource with the relative paths its schema marks
    ``path="module"`` (see schema.Attribute), nested blocks' included, made relative to the
    root configuration (which providers resolve them against) instead of the module's
    folder: ``source_dir = "src"`` in ``modules/team`` is ``modules/team/src``. Absolute
    and ``~`` paths are kept."""
    assert res.module_dir is not None
    folder = res.module_dir

    def rewrite(values: Any, sch: S.BlockSchema) -> Any:
        if isinstance(values, list):
            return [rewrite(v, sch) for v in values]
        if not isinstance(values, dict):
            return values
        out = dict(values)
        for name, attr in sch.attributes.items():
            value = out.get(name)
            relative = isinstance(value, str) and not value.startswith(("/", "~"))
            if attr.path == "module" and relative and value:
                out[name] = os.path.relpath(os.path.normpath(folder / str(value)), root)
        for name, nested in sch.blocks.items():
            if name in out:
                out[name] = rewrite(out[name], nested.schema)
        return out

    result: dict[str, Any] = rewrite(attrs, res.schema)
    return result


def instance_block(module: Module, block: str, inside: ModulePath) -> str:
    """The resource block ``block`` (a configuration address, ``module.team.compute.box``)
    as seen from the module instance ``inside``: the module steps it shares with ``inside``
    take their keys (team "a"'s run waits for team "a"'s box); the others stay keyless,
    which selects every instance (see address.covers)."""
    res = module.resources[block]
    steps: list[ModuleStep] = []
    for i, name in enumerate(res.module_path):
        if i < len(inside) and inside[i].name == name and len(steps) == i:
            steps.append(inside[i])
        else:
            steps.append(ModuleStep(name))
    return prefixed(tuple(steps), f"{res.kind}.{res.name}")


def target_blocks(module: Module, targets: Iterable[str]) -> set[str]:
    """The configuration blocks ``-target`` texts name (a module target: every block in
    it); texts that are not addresses name nothing."""
    out: set[str] = set()
    for text in targets:
        try:
            target = parse_target(text)
        except AddressError:
            continue
        if isinstance(target, tuple):
            prefix = module_config_prefix(target)
            out |= {a for a in module.resources if a.startswith(prefix)}
        elif target.config_block in module.resources:
            out.add(target.config_block)
    return out


def block_nodes(module: Module, addresses: Iterable[str]) -> set[str]:
    """Graph nodes needed to evaluate the given resource blocks (themselves and what they
    depend on)."""
    from trainform.graph import dependencies_closure

    return dependencies_closure(module.dependencies, addresses)
