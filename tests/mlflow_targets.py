"""mlflow-skinny where remote targets can run it, and the scripts the tests run there
(importable as `mlflow_targets`; tests/conftest.py imports its fixtures, and `mlflow_image`
takes `docker_client` and `base_image` from the folder of the test that asks for it).

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
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import CLI, ok, unavailable, wait_until
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


def make_wheelhouse() -> Path:
    """A folder of wheels of exactly what ``.venv-mlflow3-skinny`` has, with their list in
    ``requirements.txt`` (made once per package set; needs the package index then)."""
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
            *(str(python), "-m", "pip", "download", *PIP, "--no-deps"),
            *("-r", str(listed), "-d", str(house)),
        ],
        "downloading mlflow-skinny's wheels (pip download; needs the package index)",
    )
    listed.unlink()
    wanted.write_text(frozen)  # last: its presence says the wheelhouse is complete
    return house


def make_any_user_venv(folder: Path, wheelhouse: Path) -> str:
    """Make ``folder`` (readable by every user) a virtualenv of the system python3 with the
    wheelhouse's packages, installed offline; returns its python."""
    if not Path(SYSTEM_PYTHON).is_file():
        unavailable(f"{SYSTEM_PYTHON} is missing: run scripts/install-test-deps")
    _run([SYSTEM_PYTHON, "-m", "venv", str(folder)], "python3 -m venv")
    folder.chmod(0o755)
    _run(
        [
            *(str(folder / "bin" / "pip"), "install", *PIP, "--no-index"),
            *("--find-links", str(wheelhouse), "-r", str(wheelhouse / "requirements.txt")),
        ],
        "installing mlflow-skinny from the wheelhouse (the system python3 must be the "
        "minor version of .venv-mlflow3-skinny's)",
    )
    return str(folder / "bin" / "python")


@pytest.fixture(scope="session")
def mlflow_wheelhouse() -> Path:
    """:func:`make_wheelhouse`, once per session."""
    return make_wheelhouse()


@pytest.fixture(scope="session")
def mlflow_any_user_python(mlflow_wheelhouse: Path) -> Iterator[str]:
    """The python of a virtualenv of the system python3 with mlflow-skinny 3 in a folder any
    user can read (:func:`make_any_user_venv`; removed after the session)."""
    folder = Path(tempfile.mkdtemp(prefix="trainform-mlflow-"))
    folder.chmod(0o755)
    try:
        yield make_any_user_venv(folder / "venv", mlflow_wheelhouse)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_image(docker_client: Any, base_image: str, mlflow_wheelhouse: Path) -> str:
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


# -- what the tests run on these targets -----------------------------------------------------

# Logs a param and three points, then waits (at most a minute) for the file GATE names, which
# the test creates on the target once it has seen the three points, and logs a fourth.
GATED = """\
import os, time
import mlflow

mlflow.log_param("lr", 0.1)
for step in range(3):
    mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
print("waiting for the gate", flush=True)
deadline = time.time() + 60
while not os.path.exists(os.environ["GATE"]) and time.time() < deadline:
    time.sleep(0.05)
mlflow.log_metric("loss", 0.125, step=3)
print("done", flush=True)
"""

# A trial of a sweep: --quality good logs accuracy 0.9 at steps 1-4 and ends; bad logs 0.1 at
# steps 1-4 and then sleeps two minutes (longer than the tests wait), so that only the
# sweep's policy ends it early.
TRIAL = """\
import argparse, time
import mlflow

parser = argparse.ArgumentParser()
parser.add_argument("--quality", required=True)
args, _ = parser.parse_known_args()
value = 0.9 if args.quality == "good" else 0.1
for step in range(1, 5):
    mlflow.log_metric("accuracy", value, step=step)
if args.quality == "bad":
    print("hopeless, waiting", flush=True)
    time.sleep(120)
"""


def bandit_sweep(compute: str, environment: str) -> str:
    """A sweep "tune" of TRIAL (in src/train.py): the good trial, then the bad one, which the
    bandit policy stops once it has reported twice."""
    return f"""
sweep "tune" {{
  experiment = "mlflow-targets"
  trial {{
    compute      = {compute}
    environment  = {environment}
    source_dir   = "src"
    script       = "train.py"
    arguments    = ["--quality", param.quality]
    max_duration = "5m"
  }}
  sampling {{
    algorithm = "grid"
  }}
  parameter "quality" {{
    distribution = "choice"
    values       = ["good", "bad"]
  }}
  objective {{
    metric = "accuracy"
    goal   = "maximize"
  }}
  early_termination {{
    policy              = "bandit"
    slack_factor        = 0.2
    evaluation_interval = 1
    delay_evaluation    = 2
  }}
  limits {{
    max_total_runs      = 2
    max_concurrent_runs = 1
  }}
}}
"""


def assert_bad_trial_stopped(sweep: dict[str, Any]) -> None:
    """``sweeps show tune --json`` of a finished bandit_sweep: the good trial completed with
    its four reports, the bad one was stopped by the policy (it could not have ended by
    itself while the test waited), and the good one is the best."""
    trials = {t["params"]["quality"]: t for t in sweep["record"]["trials"]}
    assert trials["good"]["status"] == "completed" and trials["good"]["reports"] == 4, trials
    bad = trials["bad"]
    assert bad["status"] == "stopped", bad
    assert "bandit threshold" in bad["stopped"], bad
    assert sweep["record"]["best"]["params"] == {"quality": "good"}, sweep["record"]["best"]


def environment_block(python: str, docker: str = "") -> str:
    """A user-managed environment "mlflow" of ``python`` (in image ``docker`` if given)."""
    image = f'  docker {{\n    image = "{docker}"\n  }}\n' if docker else ""
    return (
        f'environment "mlflow" {{\n  python       = "{python}"\n  user_managed = true\n{image}}}\n'
    )


def live_metrics(cli: CLI, ref: str) -> dict[str, Any]:
    """`runs metrics REF --json` now (the run may still be going)."""
    return dict(json.loads(ok(cli("runs", "metrics", ref, "--json")).out))


def wait_for_gated_points(cli: CLI, ref: str) -> dict[str, Any]:
    """`runs metrics --json` of a run of GATED once it shows the three points logged before
    the gate (the script is then waiting for the test)."""
    seen = wait_until(
        f"the MLflow points {ref} logged so far, shown by runs metrics",
        lambda: (m := live_metrics(cli, ref))["summary"].get("loss", {}).get("count") == 3 and m,
    )
    assert [p["step"] for p in seen["points"]] == [0, 1, 2], seen
    assert {p["source"] for p in seen["points"]} == {"mlflow"}, seen
    assert seen["params"] == {"lr": "0.1"}, seen
    return dict(seen)


def assert_gated_run_recorded(run: dict[str, Any]) -> None:
    """``runs show --json`` of a finished run of GATED: its param and its four points."""
    assert run["status"] == "completed", run
    assert run["params"] == {"lr": "0.1"}, run["params"]
    assert run["metrics"]["loss"]["count"] == 4, run["metrics"]
    assert run["metrics"]["loss"]["last"] == 0.125, run["metrics"]
