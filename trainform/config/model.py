"""The typed, immutable configuration model.

:class:`Module` is a configuration directory as written (expressions unevaluated, positions
kept); :class:`Instance` is one resource instance after evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from trainform.config.address import ModulePath, key_text, module_text, prefixed
from trainform.config.schema import BlockSchema
from trainform.config.source import Expr, RawBlock
from trainform.errors import Pos


@dataclass(frozen=True)
class Validation:
    condition: Expr
    error_message: Expr


@dataclass(frozen=True)
class Variable:
    name: str
    pos: Pos
    type: Any = "any"  # a type spec, see trainform.config.variables
    default: Expr | None = None
    description: str = ""
    sensitive: bool = False
    nullable: bool = True
    validations: tuple[Validation, ...] = ()

    @property
    def required(self) -> bool:
        return self.default is None


@dataclass(frozen=True)
class Output:
    name: str
    pos: Pos
    value: Expr
    description: str = ""
    sensitive: bool = False


@dataclass(frozen=True)
class Local:
    name: str
    pos: Pos
    value: Expr


@dataclass(frozen=True)
class Condition:
    """A ``precondition``/``postcondition`` or a check's ``assert``: where it is written, the
    condition and the message shown when it is false (see trainform.config.conditions)."""

    condition: Expr
    error_message: Expr
    pos: Pos


@dataclass(frozen=True)
class Lifecycle:
    prevent_destroy: bool = False
    ignore_changes: tuple[str, ...] = ()
    create_before_destroy: bool = False
    preconditions: tuple[Condition, ...] = ()
    postconditions: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class Resource:
    """A resource block as written: ``kind.name`` (e.g. ``compute.gpu``)."""

    kind: str
    name: str
    provider: str
    pos: Pos
    schema: BlockSchema
    attributes: dict[str, Expr]
    blocks: tuple[RawBlock, ...] = ()
    count: Expr | None = None
    for_each: Expr | None = None
    depends_on: tuple[str, ...] = ()
    lifecycle: Lifecycle = Lifecycle()
    # The module calls it sits in (("team",) for module.team), and that module's folder
    # (None in the root module, whose folder is Module.directory).
    module_path: tuple[str, ...] = ()
    module_dir: Path | None = None

    @property
    def address(self) -> str:
        """The block as written, with its module path: ``module.team.compute.box``."""
        return module_prefix(self.module_path) + f"{self.kind}.{self.name}"


def module_prefix(path: tuple[str, ...]) -> str:
    """``module.a.module.b.`` for the module call path ("a", "b"); ``""`` for the root."""
    return "".join(f"module.{name}." for name in path)


@dataclass(frozen=True)
class ModuleCall:
    """A ``module "name" { source = ... }`` block and the module it loaded.

    ``path`` is the call path (("team",) or ("team", "inner")); its graph node is
    ``module.team`` and the child's declarations are nodes below it (``module.team.var.x``,
    ``module.team.local.y``, ``module.team.output.z``; resources sit in Module.resources as
    ``module.team.compute.box``)."""

    name: str
    path: tuple[str, ...]
    pos: Pos
    source: str
    directory: Path
    arguments: dict[str, Expr]
    variables: dict[str, Variable]
    locals: dict[str, Local]
    outputs: dict[str, Output]
    count: Expr | None = None
    for_each: Expr | None = None
    depends_on: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        return module_prefix(self.path)[:-1]

    @property
    def prefix(self) -> str:
        """What the child's node names start with: ``module.team.``."""
        return module_prefix(self.path)


def call_chain(calls: dict[str, ModuleCall], path: tuple[str, ...], keys: Any = None) -> str:
    """Where a module sits, innermost call first: ``in module.team (main.train.hcl:12:1)``,
    or ``""`` for the root. ``keys`` (a ModulePath) names the instance."""
    parts = []
    for i in range(len(path), 0, -1):
        call = calls.get(module_prefix(path[:i])[:-1])
        if call is None:
            continue
        shown = module_text(keys[:i]) if keys is not None else call.address
        parts.append(f"in {shown} ({call.pos})")
    return ", ".join(parts)


@dataclass(frozen=True)
class Settings:
    backend: str = "sqlite"
    state_path: str | None = None
    required_providers: tuple[str, ...] = ()
    conn_str: str = field(default="", repr=False)  # backend "pg": a secret, never printed
    schema_name: str = "trainform"


@dataclass(frozen=True)
class Module:
    """One configuration directory, parsed and statically checked."""

    directory: Path
    files: tuple[Path, ...]
    settings: Settings
    variables: dict[str, Variable]
    locals: dict[str, Local]
    outputs: dict[str, Output]
    resources: dict[str, Resource]
    dependencies: dict[str, tuple[str, ...]]  # node -> nodes it refers to (graph edges)
    warnings: tuple[Any, ...] = ()
    calls: dict[str, ModuleCall] = field(default_factory=dict)  # "module.team" -> its call
    # moved / removed / import / check blocks (trainform.config.refactor)
    moved: tuple[Moved, ...] = ()
    removed: tuple[Removed, ...] = ()
    imports: tuple[Import, ...] = ()
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True)
class Moved:
    """``moved { from = ... to = ... }``: addresses as address.py prints them, relative to
    the module that declares the block (``module``, its call path; () for the root). A
    child module's statement applies to every instance of that module."""

    from_: str
    to: str
    pos: Pos
    module: tuple[str, ...] = ()


@dataclass(frozen=True)
class Removed:
    """``removed { from = ... lifecycle { destroy = ... } }``; ``from_`` relative to the
    module that declares it (``module``, as in :class:`Moved`)."""

    from_: str
    destroy: bool
    pos: Pos
    module: tuple[str, ...] = ()


@dataclass(frozen=True)
class Import:
    """``import { to = ... id = ... }`` (``id`` evaluated at plan time)."""

    to: str
    id: Expr
    pos: Pos


@dataclass(frozen=True)
class Check:
    """``check "name" { assert { condition, error_message } ... }``, evaluated in every
    instance of the module that declares it (``module``, its call path; () for the root)."""

    name: str
    pos: Pos
    asserts: tuple[Condition, ...]
    module: tuple[str, ...] = ()


@dataclass(frozen=True)
class Instance:
    """One evaluated resource instance: what the configuration wants it to be."""

    resource: Resource
    key: int | str | None
    attributes: dict[str, Any]
    sensitive: frozenset[str] = frozenset()
    depends_on: tuple[str, ...] = ()  # resource blocks (module.team["a"].compute.box)
    unknown_inputs: bool = False
    module: ModulePath = ()  # the module instance it is in

    @cached_property
    def address(self) -> str:
        res = self.resource
        return prefixed(self.module, f"{res.kind}.{res.name}{key_text(self.key)}")


@dataclass
class Evaluated:
    """The result of evaluating a module against variable values and known resource values."""

    instances: dict[str, Instance] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, tuple[Any, bool]] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    # What expressions saw, per module instance (() is the root): for checks and conditions.
    scopes: dict[ModulePath, dict[str, Any]] = field(default_factory=dict)
    # Which values are sensitive (a trainform.config.evaluate.Sensitivity), for showing them.
    sensitivity: Any = None
