"""The provider registry: built-in providers are found by name without reading installed
packages' metadata, and that table must match the entry points pyproject.toml registers."""

from __future__ import annotations

from importlib.metadata import entry_points

from trainform.providers.base import Provider
from trainform.providers.registry import BUILTIN, GROUP, is_provider, provider_class


def test_the_builtin_table_matches_the_entry_points() -> None:
    registered = {
        ep.name: ep.value
        for ep in entry_points(group=GROUP)
        if ep.dist is not None and ep.dist.name == "trainform"
    }
    assert registered == BUILTIN


def test_builtin_providers_load_by_name() -> None:
    for name in BUILTIN:
        assert is_provider(name)
        cls = provider_class(name)
        assert issubclass(cls, Provider)
        assert cls.name == name
    assert not is_provider("no-such-provider")
