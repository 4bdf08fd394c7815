"""mlflow-skinny where remote targets can run it (importable as `mlflow_targets`; its fixtures
are imported by the test modules that use them).

The test environment ``.venv-mlflow3-skinny`` (tests/mlflow_envs.py) is made by root with an
interpreter under /root, which neither the SSH tests' login user (tfuser) nor a container can
run. So its exact package set is made available to them offline, from one wheelhouse:

- ``mlflow_wheelhouse``: ``pip download --no-deps`` of what ``.venv-mlflow3-skinny`` has
  (``pip freeze``), kept in ``.venv-mlflow3-skinny/wheelhouse`` (made once; redone when the
  environment changes);
- ``mlflow_any_user_python``: a virtualenv of the system ``python3`` with those wheels, in a
  folder every user can read: the interpreter of an SSH run as tfuser on this machine;
- ``mlflow_image``: the base image (scripts/build-base-image) with those wheels in
  ``/opt/mlflow``, built from ``tests/images/mlflow/Dockerfile`` without a network and tagged
  by the hash of its recipe (Dockerfile, package set, base image), so it is built once.

The product never installs MLflow: these only give the tests targets that have it.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docker_engine import base_image, docker_client  # noqa: F401 (fixtures used below)
from helpers import unavailable
from mlflow_envs import interpreter

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "tests" / "images" / "mlflow" / "Dockerfile"
IMAGE_REPOSITORY = "trainform-test/mlflow"
# Where the image has it (tests name it as a user-managed environment's python).
IMAGE_PYTHON = "/opt/mlflow/bin/python"
SYSTEM_PYTHON = "/usr/bin/python3"
PIP = ["--disable-pip-version-check", "--quiet"]


def _run(argv: list[str], what: str, timeout: float = 600) -> str:
    """Run ``argv``; a failure makes the tests that need it unavailable, naming ``what``."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        unavailable(f"{what}: {exc}")
        raise AssertionError("unreachable") from exc
    if proc.returncode != 0:
        unavailable(f"{what} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stdout


@pytest.fixture(scope="session")
def mlflow_wheelhouse() -> Path:
    """A folder of wheels of exactly what ``.venv-mlflow3-skinny`` has, with their list in
    ``requirements.txt`` (made once per package set)."""
    python = interpreter("mlflow3-skinny")
    frozen = _run(
        [str(python), "-m", "pip", "freeze", *PIP, "--exclude-editable"],
        "pip freeze of .venv-mlflow3-skinny",
    )
    house = python.parent.parent / "wheelhouse"
    wanted = house / "requirements.txt"
    if wanted.is_file() and wanted.read_text() == frozen:
        return house
    shutil.rmtree(house, ignore_errors=True)
    house.mkdir()
    listed = house / "requirements.in"
    listed.write_text(frozen)
    _run(
        [
            str(python),
            "-m",
            "pip",
            "download",
            *PIP,
            "--no-deps",
            "-r",
            str(listed),
            "-d",
            str(house),
        ],
        "downloading mlflow-skinny's wheels (pip download; needs the package index)",
    )
    listed.unlink()
    wanted.write_text(frozen)  # last: its presence says the wheelhouse is complete
    return house


@pytest.fixture(scope="session")
def mlflow_any_user_python(mlflow_wheelhouse: Path) -> Iterator[str]:
    """The python of a virtualenv of the system python3 with mlflow-skinny 3, installed
    offline, in a folder any user can read (removed after the session)."""
    if not Path(SYSTEM_PYTHON).is_file():
        unavailable(f"{SYSTEM_PYTHON} is missing: run scripts/install-test-deps")
    folder = Path(tempfile.mkdtemp(prefix="trainform-mlflow-"))
    folder.chmod(0o755)
    venv = folder / "venv"
    try:
        _run([SYSTEM_PYTHON, "-m", "venv", str(venv)], "python3 -m venv")
        _run(
            [
                *(str(venv / "bin" / "pip"), "install", *PIP, "--no-index"),
                *("--find-links", str(mlflow_wheelhouse)),
                *("-r", str(mlflow_wheelhouse / "requirements.txt")),
            ],
            "installing mlflow-skinny from the wheelhouse (the system python3 must be the "
            "minor version of .venv-mlflow3-skinny's)",
        )
        yield str(venv / "bin" / "python")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_image(docker_client: Any, base_image: str, mlflow_wheelhouse: Path) -> str:  # noqa: F811
    """The tag of the base image with mlflow-skinny in /opt/mlflow (python: IMAGE_PYTHON),
    built once per recipe and kept, like the base image."""
    recipe = hashlib.sha256()
    for part in (
        DOCKERFILE.read_bytes(),
        (mlflow_wheelhouse / "requirements.txt").read_bytes(),
        base_image.encode(),
    ):
        recipe.update(hashlib.sha256(part).digest())
    tag = f"{IMAGE_REPOSITORY}:{recipe.hexdigest()[:12]}"
    import docker.errors

    try:
        docker_client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    with tempfile.TemporaryDirectory(prefix="trainform-mlflow-image-") as context:
        shutil.copy(DOCKERFILE, Path(context) / "Dockerfile")
        shutil.copytree(mlflow_wheelhouse, Path(context) / "wheelhouse")
        _run(
            [
                *("docker", "build", "--network", "none", "--build-arg", f"BASE={base_image}"),
                *("--label", "trainform.test=mlflow", "-t", tag, context),
            ],
            f"building {tag} from {DOCKERFILE}",
        )
    return tag
