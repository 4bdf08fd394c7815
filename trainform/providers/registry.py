"""Finding providers through the ``trainform.providers`` entry-point group.

Entry points are listed without importing them; a provider's module is imported only when a
configuration uses it, so a broken or heavy provider costs nothing until then.

The built-in providers are registered through the same entry points (pyproject.toml), and are
also known here by name, so that a configuration using only them is loaded without reading
every installed package's metadata: ``importlib.metadata`` and the scan cost about 15 ms of
each command's start. A test checks that both lists agree.
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING

from trainform.config.schema import did_you_mean
from trainform.errors import ProviderNotFound
from trainform.providers.base import Provider, ProviderContext

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

GROUP = "trainform.providers"

BUILTIN = {
    "local": "trainform.providers.local:LocalComputeProvider",
    "workspace": "trainform.providers.workspace:WorkspaceProvider",
    "environment": "trainform.providers.environment:EnvironmentProvider",
    "dataset": "trainform.providers.dataset:DatasetProvider",
    "run": "trainform.providers.run:RunProvider",
    "sweep": "trainform.providers.sweep:SweepProvider",
    "ssh": "trainform.providers.ssh:SSHComputeProvider",
    "docker-cluster": "trainform.providers.docker_cluster:DockerClusterProvider",
    "slurm": "trainform.providers.slurm:SlurmComputeProvider",
    "spark": "trainform.providers.spark:SparkComputeProvider",
}


@functools.lru_cache(maxsize=1)
def _entry_points() -> dict[str, EntryPoint]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=GROUP)}


def is_provider(name: str) -> bool:
    """Whether a provider ``name`` is installed (built-in names without a metadata scan)."""
    return name in BUILTIN or name in _entry_points()


def provider_names() -> list[str]:
    """Names of every installed provider (built-in and third-party)."""
    return sorted(set(BUILTIN) | set(_entry_points()))


@functools.cache
def provider_class(name: str) -> type[Provider]:
    """The provider class registered as ``name``. Raises ProviderNotFound with a hint."""
    if name in BUILTIN:
        module, _, attr = BUILTIN[name].partition(":")
        builtin: type[Provider] = getattr(importlib.import_module(module), attr)
        return builtin
    ep = _entry_points().get(name)
    if ep is None:
        raise ProviderNotFound(
            f"no provider {name!r} is installed "
            f"(installed: {', '.join(provider_names()) or 'none'})"
            + (
                f"; {did_you_mean(name, provider_names())}"
                if did_you_mean(name, provider_names())
                else ""
            )
        )
    try:
        cls = ep.load()
    except ImportError as exc:
        raise ProviderNotFound(
            f"provider {name!r} cannot be loaded: {exc} "
            f"(is the package that provides it installed with its extras?)"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ProviderNotFound(f"entry point {name!r} ({ep.value}) is not a trainform Provider")
    return cls


class Providers:
    """Provider instances for one command, created on first use and shared."""

    def __init__(self, context: ProviderContext) -> None:
        self.context = context
        self._instances: dict[str, Provider] = {}

    def get(self, name: str) -> Provider:
        if name not in self._instances:
            self._instances[name] = provider_class(name)(self.context)
        return self._instances[name]
