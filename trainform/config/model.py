"""The typed, immutable configuration model.

:class:`Module` is a configuration directory as written (expressions unevaluated, positions
kept); :class:`Instance` is one resource instance after evaluation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

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
class Lifecycle:
    prevent_destroy: bool = False
    ignore_changes: tuple[str, ...] = ()
    create_before_destroy: bool = False


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

    @property
    def address(self) -> str:
        return f"{self.kind}.{self.name}"


@dataclass(frozen=True)
class Settings:
    backend: str = "sqlite"
    state_path: str | None = None
    required_providers: tuple[str, ...] = ()


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


def instance_address(base: str, key: int | str | None) -> str:
    """``compute.gpu``, ``compute.gpu[0]`` or ``compute.gpu["a"]``."""
    if key is None:
        return base
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}[{json.dumps(key)}]"


@dataclass(frozen=True)
class Instance:
    """One evaluated resource instance: what the configuration wants it to be."""

    resource: Resource
    key: int | str | None
    attributes: dict[str, Any]
    sensitive: frozenset[str] = frozenset()
    depends_on: tuple[str, ...] = ()  # resource block addresses
    unknown_inputs: bool = False

    @cached_property
    def address(self) -> str:
        return instance_address(self.resource.address, self.key)


@dataclass
class Evaluated:
    """The result of evaluating a module against variable values and known resource values."""

    instances: dict[str, Instance] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, tuple[Any, bool]] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
