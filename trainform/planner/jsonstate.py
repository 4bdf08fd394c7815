"""State in Terraform's JSON state representation (``show -json``; a plan's
``prior_state`` and ``planned_values``).

``{format_version, terraform_version, values: {outputs, root_module}}`` where a module is
``{resources, address, child_modules}`` (the root has no address; a module instance's
resources sit in its own entry, nested as the calls are) and a resource is ``{address,
mode, type, name, index, provider_name, schema_version, values, sensitive_values,
depends_on, tainted}``. ``index`` is omitted when the instance has no key, and empty
``depends_on``/``child_modules`` are omitted, as Terraform does.

Secrets are never present: where Terraform writes a sensitive value, this writes ``null``
and marks the path ``true`` in ``sensitive_values``. Values are what :func:`recorded_values`
gives, so provider bookkeeping (a workspace's ``created_dir``, a run's ``handle``) never
appears. ``terraform_version`` holds trainform's version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from trainform import __version__
from trainform.config.address import AddressError, ModulePath, module_text, parse_address
from trainform.planner.jsonconfig import provider_name, resource_type

STATE_FORMAT_VERSION = "1.0"

Path = tuple[str | int, ...]


def as_bool(value: Any, flagged: Callable[[Path], bool], path: Path = ()) -> Any:
    """Terraform's mirror of a value (``sensitive_values``, ``after_unknown``): ``true``
    where ``flagged``, lists element by element (``false`` for a plain element), maps and
    objects keeping only the entries that are not plain ``false``."""
    if flagged(path):
        return True
    if isinstance(value, list):
        return [as_bool(v, flagged, (*path, i)) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            mark = as_bool(v, flagged, (*path, k))
            if mark is not False:
                out[k] = mark
        return out
    return False


def mirror(values: dict[str, Any] | None, paths: Iterable[str]) -> dict[str, Any]:
    """The mirror of ``values`` with ``true`` at each dotted path (``variables.TOKEN``),
    also where the value itself is absent (a secret or an unknown left out)."""
    wanted = {tuple(p.split(".")) for p in paths}
    out = as_bool(values or {}, lambda path: tuple(str(s) for s in path) in wanted)
    for steps in sorted(wanted):
        node: Any = out
        for step in steps[:-1]:
            if not isinstance(node, dict):
                break
            node = node.setdefault(step, {})
        else:
            if isinstance(node, dict):
                node[steps[-1]] = True
    return dict(out)


def module_address(address: str) -> str:
    """``module.team["a"]`` for ``module.team["a"].compute.box``; "" in the root module."""
    try:
        return module_text(parse_address(address).module)
    except AddressError:
        return ""


def resource_head(address: str, kind: str, name: str, key: Any, provider: str) -> dict[str, Any]:
    """The fields that name a resource instance, in Terraform's order."""
    out: dict[str, Any] = {"address": address}
    module = module_address(address)
    if module:
        out["module_address"] = module
    out.update(mode="managed", type=resource_type(kind, provider), name=name)
    if key is not None:  # as Terraform: no index for an instance without count/for_each
        out["index"] = key
    out["provider_name"] = provider_name(provider)
    return out


def resource_json(
    address: str,
    kind: str,
    name: str,
    key: Any,
    provider: str,
    values: dict[str, Any],
    sensitive_paths: Iterable[str],
    depends_on: Iterable[str] = (),
    tainted: bool = False,
) -> dict[str, Any]:
    """One resource of a state's (or planned values') module."""
    out = resource_head(address, kind, name, key, provider)
    out.pop("module_address", None)  # a state's module says where it is
    out["schema_version"] = 0
    out["values"] = values
    out["sensitive_values"] = mirror(values, sensitive_paths)
    if depends_on:
        out["depends_on"] = list(depends_on)
    if tainted:
        out["tainted"] = True
    return out


def _module_path(address: str) -> ModulePath:
    try:
        return parse_address(address).module
    except AddressError:
        return ()


def root_module(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """Resources (each from :func:`resource_json`) arranged in Terraform's module tree:
    the root's resources, and ``child_modules`` nested as the module calls are."""
    root: dict[str, Any] = {}
    nodes: dict[ModulePath, dict[str, Any]] = {(): root}

    def node(path: ModulePath) -> dict[str, Any]:
        if path not in nodes:
            parent = node(path[:-1])
            nodes[path] = {"address": module_text(path)}
            parent.setdefault("child_modules", []).append(nodes[path])
        return nodes[path]

    for res in sorted(resources, key=lambda r: r["address"]):
        node(_module_path(res["address"])).setdefault("resources", []).append(res)
    # Terraform's order of keys: resources, address, child_modules
    for entry in nodes.values():
        ordered: dict[str, Any] = {
            k: entry[k] for k in ("resources", "address", "child_modules") if k in entry
        }
        entry.clear()
        entry.update(ordered)
        if "child_modules" in entry:
            entry["child_modules"].sort(key=lambda m: m["address"])
    return root


def json_type(value: Any) -> Any:
    """Terraform's JSON form of a value's type (cty's type JSON, as state outputs carry it):
    ``"string"``, ``"number"``, ``"bool"``, ``"dynamic"``, ``["list", T]``, ``["set", T]``,
    ``["map", T]``, ``["tuple", [T, ...]]``, ``["object", {name: T}]``. The type is
    :func:`trainform.config.types.infer`'s: a list made by ``tolist`` is a list, a literal
    ``[...]`` a tuple, as in Terraform; a value read back from state or a plan file is plain
    JSON, so there lists are tuples and maps objects."""
    from trainform.config.types import infer

    def form(t: Any) -> Any:
        if isinstance(t, str):
            return t
        kind, inner = t
        if kind == "tuple":
            return ["tuple", [form(e) for e in inner]]
        if kind == "object":
            return ["object", {k: form(v) for k, v in inner}]
        return [kind, form(inner)]

    return form(infer(value))


def outputs_json(outputs: dict[str, tuple[Any, bool]]) -> dict[str, Any]:
    """``{name: {sensitive, value, type}}`` as a state holds outputs; a sensitive output's
    value is null and has no type (state keeps only a salted hash of it)."""
    return {
        name: {"sensitive": True, "value": None}
        if sensitive
        else {"sensitive": False, "value": value, "type": json_type(value)}
        for name, (value, sensitive) in sorted(outputs.items())
    }


def state_values(resources: list[dict[str, Any]], outputs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if outputs:
        out["outputs"] = outputs
    out["root_module"] = root_module(resources)
    return out


def state_json(
    resources: Iterable[Any],
    outputs: dict[str, dict[str, Any]],
    observed: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A recorded state (``ResourceState``s, and outputs as the store gives them:
    ``{name: {value, sensitive}}``) as Terraform's ``show -json`` prints it; with
    ``observed`` (address -> computed values a refresh read), as refreshed (a plan's
    ``prior_state``)."""
    from trainform.config.sensitivity import sealed_paths
    from trainform.planner.diff import recorded_values

    shown = [
        resource_json(
            r.address,
            r.kind,
            r.name,
            r.key,
            r.provider,
            recorded_values(r, (observed or {}).get(r.address)),
            sealed_paths(r.attributes),
            r.dependencies,
            tainted=r.status in ("tainted", "pending"),
        )
        for r in resources
    ]
    data: dict[str, Any] = {
        "format_version": STATE_FORMAT_VERSION,
        "terraform_version": __version__,
    }
    if shown or outputs:
        data["values"] = state_values(
            shown, outputs_json({n: (o["value"], o["sensitive"]) for n, o in outputs.items()})
        )
    return data
