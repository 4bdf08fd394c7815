"""A real Docker engine and a locally built base image (Debian with python3) as fixtures,
for every test folder that needs them (tests/docker, tests/integration): their conftest.py
imports them from here (tests/ is on sys.path through tests/conftest.py).

The image comes from `scripts/build-base-image` (debootstrap + `docker import`; no registry is
needed), cached by its recipe hash. Under CI=true a missing engine fails the test; locally it
skips and says what to start.

Everything trainform creates carries the labels `trainform.managed` and `trainform.project`
(the configuration folder); the `no_leftovers` fixture checks after a test that nothing of the
test's own folder remains, and removes what does.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import unavailable

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def docker_client() -> Any:
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as exc:
        unavailable(f"no Docker engine ({exc}); install docker.io and start dockerd (as root)")
    return client


@pytest.fixture(scope="session")
def base_image(docker_client: Any) -> str:
    """The tag of the base image, built on first use."""
    proc = subprocess.run(
        [str(ROOT / "scripts" / "build-base-image")], capture_output=True, text=True, timeout=900
    )
    if proc.returncode != 0:
        unavailable(f"scripts/build-base-image failed:\n{proc.stderr[-2000:]}")
    return proc.stdout.strip().splitlines()[-1]


PROJECT_LABEL = "trainform.project"  # the configuration folder that created the object


def managed(client: Any, under: Path) -> list[str]:
    """trainform's containers, networks and volumes created for configurations under ``under``."""
    flt = {"label": PROJECT_LABEL}
    objects = [
        *(("container", c) for c in client.containers.list(all=True, filters=flt)),
        *(("network", n) for n in client.networks.list(filters=flt)),
        *(("volume", v) for v in client.volumes.list(filters=flt)),
    ]
    return [
        f"{kind} {obj.name}"
        for kind, obj in objects
        if _labels(obj).get(PROJECT_LABEL, "").startswith(str(under))
    ]


def _labels(obj: Any) -> dict[str, str]:
    attrs = obj.attrs
    return dict(attrs.get("Labels") or (attrs.get("Config") or {}).get("Labels") or {})


@pytest.fixture
def no_leftovers(docker_client: Any, tmp_path: Path) -> Iterator[None]:
    """After the test, no container, network or volume of a configuration under the test's
    tmp_path may remain (whatever remains is removed, so one failure does not cascade)."""
    yield
    left = managed(docker_client, tmp_path)
    for name in left:
        kind, _, ident = name.partition(" ")
        with contextlib.suppress(Exception):
            if kind == "container":
                docker_client.containers.get(ident).remove(force=True)
            elif kind == "network":
                docker_client.networks.get(ident).remove()
            else:
                docker_client.volumes.get(ident).remove(force=True)
    assert not left, f"left behind: {sorted(left)}"


@pytest.fixture
def built_images(docker_client: Any) -> Iterator[list[str]]:
    """Tags the test built; removed afterwards (their contexts are unique to the test)."""
    tags: list[str] = []
    yield tags
    for tag in tags:
        with contextlib.suppress(Exception):
            docker_client.images.remove(tag, force=True)
