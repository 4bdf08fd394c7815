"""Shared fixtures: running the real CLI in a subprocess, with or without the example
third-party provider plugin installed through entry-point metadata."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

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


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def all(self) -> str:
        return self.out + self.err


@dataclass
class CLI:
    """Runs `python -m trainform` in a configuration folder."""

    cwd: Path
    env: dict[str, str]

    def __call__(
        self, *args: str, input: str | None = None, timeout: float = 120, **env: str
    ) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "trainform", *args],
            cwd=self.cwd,
            env={**self.env, **env},
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "trainform", *args],
            cwd=self.cwd,
            env={**self.env, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def write(self, name: str, text: str) -> Path:
        path = self.cwd / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORM_")}
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    return env


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    """The CLI in an empty configuration folder."""
    folder = tmp_path / "config"
    folder.mkdir()
    return CLI(folder, _base_env())


@pytest.fixture
def plugin_cli(tmp_path: Path, plugin_path: Path) -> CLI:
    """The CLI with the example third-party provider installed."""
    folder = tmp_path / "config"
    folder.mkdir()
    env = _base_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugin_path), env.get("PYTHONPATH", "")]))
    return CLI(folder, env)


def wait_until(what: str, check: Callable[[], object], timeout: float = 30.0) -> object:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s")
        time.sleep(0.2)
