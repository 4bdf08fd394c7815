"""Resource addresses: ``compute.gpu``, ``run.train[0]``, ``module.team["a"].compute.box``.

One place parses and prints addresses, so every command (``-target``, ``-replace``,
``state mv/rm/show``, ``runs``, ``import``, ``moved`` blocks) reads them the same way.

An address is a module path (each step a module call with an optional instance key) and a
resource (kind, name, optional instance key). Keys are ``None`` (no key), an ``int``
(``count``) or a ``str`` (``for_each``), printed as Terraform prints them: ``[0]``, ``["a"]``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace

from trainform.config.schema import RESOURCE_KINDS

Key = int | str | None


class AddressError(ValueError):
    """Text that is not an address; the message says what was expected."""


def key_text(key: Key) -> str:
    """``""``, ``[0]`` or ``["a"]``."""
    if key is None:
        return ""
    if isinstance(key, int):
        return f"[{key}]"
    return f"[{json.dumps(key)}]"


@dataclass(frozen=True)
class ModuleStep:
    """One module call on a path: ``module.NAME`` with an optional instance key."""

    name: str
    key: Key = None

    def __str__(self) -> str:
        return f"module.{self.name}{key_text(self.key)}"


ModulePath = tuple[ModuleStep, ...]


def module_text(path: ModulePath) -> str:
    """``module.a["x"].module.b`` (empty for the root module)."""
    return ".".join(str(s) for s in path)


def prefixed(path: ModulePath, rest: str) -> str:
    """``rest`` (e.g. ``compute.box``) inside the module instance ``path``."""
    return f"{module_text(path)}.{rest}" if path else rest


@dataclass(frozen=True)
class Address:
    """A resource (``key`` None and ``keyed`` False may mean the whole block) or an instance."""

    module: ModulePath
    kind: str
    name: str
    key: Key = None

    def __str__(self) -> str:
        return prefixed(self.module, f"{self.kind}.{self.name}{key_text(self.key)}")

    @property
    def block(self) -> str:
        """The resource block inside its module instance: no resource key."""
        return prefixed(self.module, f"{self.kind}.{self.name}")

    @property
    def config_block(self) -> str:
        """The block as written in configuration: no key anywhere
        (``module.team.compute.box``)."""
        return prefixed(tuple(ModuleStep(s.name) for s in self.module), f"{self.kind}.{self.name}")

    def with_key(self, key: Key) -> Address:
        return replace(self, key=key)


_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
_KEY = r"\[(?:-?\d+|\"(?:[^\"\\]|\\.)*\")\]"
_STEP = re.compile(rf"(?P<kind>{_NAME})\.(?P<name>{_NAME})(?P<key>{_KEY})?")


def _key(text: str | None, where: str) -> Key:
    if not text:
        return None
    inner = text[1:-1]
    if inner.startswith('"'):
        try:
            value = json.loads(inner)
        except json.JSONDecodeError:
            raise AddressError(f"{where}: bad key {text}") from None
        return str(value)
    number = int(inner)
    if number < 0:
        raise AddressError(f"{where}: an index must be >= 0, got {number}")
    return number


def _steps(text: str) -> list[tuple[str, str, Key]]:
    """Split ``a.b[k].c.d`` into (kind, name, key) pairs; AddressError if it does not split."""
    out: list[tuple[str, str, Key]] = []
    pos = 0
    while pos < len(text):
        m = _STEP.match(text, pos)
        if not m:
            raise AddressError(
                f"{text!r} is not an address such as compute.gpu, run.train[0] or "
                'module.team["a"].compute.box'
            )
        out.append((m["kind"], m["name"], _key(m["key"], text)))
        pos = m.end()
        if pos < len(text):
            if text[pos] != ".":
                raise AddressError(f"{text!r}: expected '.' after {text[:pos]!r}")
            pos += 1
            if pos == len(text):
                raise AddressError(f"{text!r} ends with '.'")
    if not out:
        raise AddressError("an address must not be empty")
    return out


def parse_module_path(text: str) -> ModulePath:
    """``module.a["x"].module.b`` → its steps (``""`` is the root module)."""
    if not text:
        return ()
    steps = _steps(text)
    for kind, _name, _key in steps:
        if kind != "module":
            raise AddressError(f"{text!r} is not a module address such as module.team")
    return tuple(ModuleStep(n, k) for _kind, n, k in steps)


def parse_address(text: str) -> Address:
    """A resource or resource-instance address. Raises :class:`AddressError`."""
    steps = _steps(text.strip())
    *mods, (kind, name, key) = steps
    for mkind, _n, _k in mods:
        if mkind != "module":
            raise AddressError(
                f"{text!r}: {mkind!r} cannot contain other resources; only module.NAME can"
            )
    if kind not in RESOURCE_KINDS:
        hint = "module.NAME is a module, not a resource; " if kind == "module" else ""
        raise AddressError(
            f"{text!r}: {hint}a resource address starts with one of " + ", ".join(RESOURCE_KINDS)
        )
    return Address(tuple(ModuleStep(n, k) for _m, n, k in mods), kind, name, key)


def parse_target(text: str) -> Address | ModulePath:
    """What ``-target`` accepts: a resource, an instance, a module or a module instance."""
    steps = _steps(text.strip())
    if all(kind == "module" for kind, _n, _k in steps):
        return tuple(ModuleStep(n, k) for _kind, n, k in steps)
    return parse_address(text)


def _path_covers(target: ModulePath, path: ModulePath) -> bool:
    """Whether module instance ``path`` is ``target`` or inside it (a keyless target step
    covers every instance of that call)."""
    if len(target) > len(path):
        return False
    return all(t.name == p.name and (t.key is None or t.key == p.key) for t, p in zip(target, path))


def covers(target: Address | ModulePath, address: Address) -> bool:
    """Whether ``-target``/``-replace`` text parsed by :func:`parse_target` selects
    ``address``: the same instance, every instance of a block, or anything in a module."""
    if isinstance(target, tuple):
        return _path_covers(target, address.module)
    if (target.kind, target.name) != (address.kind, address.name):
        return False
    if len(target.module) != len(address.module) or not _path_covers(target.module, address.module):
        return False
    return target.key is None or target.key == address.key


def selects(target_text: str, address_text: str) -> bool:
    """:func:`covers` on texts; False when either is not an address."""
    try:
        return covers(parse_target(target_text), parse_address(address_text))
    except AddressError:
        return False


def config_block_of(text: str) -> str:
    """The configuration block of an address (``module.team.compute.box`` for
    ``module.team["a"].compute.box[0]``); the text itself if it is not an address."""
    try:
        return parse_address(text).config_block
    except AddressError:
        return text


def module_config_prefix(path: ModulePath) -> str:
    """``module.team.`` for ``module.team["a"]``: what the configuration addresses of its
    blocks start with."""
    return "".join(f"module.{s.name}." for s in path)
