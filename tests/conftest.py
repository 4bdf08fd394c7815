"""Shared fixtures: running the real CLI in a subprocess, with or without the example
third-party provider plugin installed through entry-point metadata."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import CLI, base_env

PLUGINS = Path(__file__).parent / "plugins"


@pytest.fixture(scope="session")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder that, on PYTHONPATH, installs the example provider the way pip would."""
    site = tmp_path_factory.mktemp("site")
    dist = site / "trainform_example-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: trainform-example\nVersion: 0.1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[trainform.providers]\nexample = trainform_example:ExampleProvider\n"
    )
    (site / "trainform_example").symlink_to(PLUGINS / "trainform_example")
    return site


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    """The CLI in an empty configuration folder."""
    folder = tmp_path / "config"
    folder.mkdir()
    return CLI(folder, base_env())


@pytest.fixture
def plugin_cli(tmp_path: Path, plugin_path: Path) -> CLI:
    """The CLI with the example third-party provider installed."""
    folder = tmp_path / "config"
    folder.mkdir()
    env = base_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugin_path), env.get("PYTHONPATH", "")]))
    return CLI(folder, env)
