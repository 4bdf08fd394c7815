"""Optional dependencies: the pip extras that features used by only some configurations
need (``pip install 'trainform[bayesian]'``), and the message naming the extra to install.

They are optional because they are large: optuna with numpy and SQLAlchemy is more than half
of what ``pip install trainform`` would otherwise download, paramiko brings compiled
cryptography, and the docker SDK brings requests and its dependencies (a quarter of what a
fresh install of the rest downloads, index pages included). The PostgreSQL state backend
needs psycopg with its bundled libpq (``trainform[pg]``), which only a team sharing state
needs. ``trainform[all]`` installs every extra; ``python bench/quickstart_install.py`` measures the install.
"""

from __future__ import annotations

import importlib.util

EXTRAS = {"optuna": "bayesian", "paramiko": "ssh", "docker": "docker", "psycopg": "pg"}
"""Module → the extra that installs it (see ``[project.optional-dependencies]``)."""


def needs(module: str, feature: str) -> str:
    """The message for ``feature`` when ``module`` is not installed, naming the extra."""
    return f"{feature} needs {module}: pip install 'trainform[{EXTRAS[module]}]'"


def missing(module: str, feature: str) -> str | None:
    """:func:`needs`' message if ``module`` cannot be imported, else None. Looks the module
    up without importing it (cheap enough for validation at plan time)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else needs(module, feature)


COMPUTE_TYPES = {"ssh": "paramiko", "docker-cluster": "docker"}
"""Compute type → the module its provider cannot work without (``trainform init`` checks
them; each provider's ``validate`` says the same at plan time)."""


def for_compute_type(name: str) -> str | None:
    """:func:`needs`' message if compute type ``name`` needs a module that is not
    installed, else None."""
    module = COMPUTE_TYPES.get(name)
    return missing(module, f"compute type {name!r}".replace("'", '"')) if module else None
