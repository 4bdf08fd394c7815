"""Shared fixtures: running the real CLI in a subprocess, with or without the example
third-party provider plugin installed through entry-point metadata; a real PostgreSQL
server (started once, by the first test that asks for it) with a fresh database per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import CLI, base_env

if TYPE_CHECKING:
    from mlflow_server import TrackingServer
    from postgres import PgServer
    from slurm import SlurmCluster
    from spark import SparkCluster

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


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server on a free loopback port, for the whole session (see
    tests/postgres.py); skipped without PostgreSQL, except under CI=true."""
    from postgres import start_server

    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_conn_str(pg_server: PgServer) -> str:
    """The connection string of a new, empty database of this test's own."""
    return pg_server.conn_str(pg_server.create_database())


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    """A real `mlflow server` (SQLite backend, artifact proxy) on a free loopback port, for
    the whole session (see tests/mlflow_server.py); skipped without the .venv-mlflow3
    environment, except under CI=true."""
    from mlflow_server import start_server

    server = start_server(tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield server
    finally:
        server.stop()


def _slurm(accounting: bool) -> Iterator[SlurmCluster]:
    from helpers import unavailable
    from slurm import missing_programs, start_cluster

    missing = missing_programs(accounting)
    if missing:
        unavailable(
            f"Slurm is not installed ({', '.join(missing)} missing): run scripts/install-test-deps"
        )
    if os.geteuid() != 0:
        unavailable("the Slurm test cluster runs its daemons as root: run the tests as root")
    # In the system's temporary folder, not pytest's (mode 700): other local users' clients
    # must reach slurm.conf and the munge socket.
    cluster = start_cluster(accounting=accounting)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A real two-node Slurm cluster (munged, slurmctld, two slurmd) on free loopback ports in
    a temporary folder, for the whole session (see tests/slurm.py); no accounting storage.
    Skipped without Slurm or root, except under CI=true."""
    yield from _slurm(accounting=False)


@pytest.fixture(scope="session")
def slurm_accounting_cluster() -> Iterator[SlurmCluster]:
    """Another such cluster, with accounting: slurmdbd on a MariaDB server of its own, the
    accounts proj42 and other, the QoS normal and high (see tests/slurm.py)."""
    yield from _slurm(accounting=True)


@pytest.fixture(scope="session")
def spark_cluster() -> Iterator[SparkCluster]:
    """A real Spark standalone cluster (a master and one worker from the pyspark wheel, Java
    17) on free loopback ports, for the whole session (see tests/spark.py); skipped without
    Java or pyspark, except under CI=true."""
    from helpers import unavailable
    from spark import missing, start_cluster

    why = missing()
    if why:
        unavailable(why)
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


# mlflow-skinny on remote targets (an SSH login user's virtualenv, a derived image).
from mlflow_targets import (  # noqa: E402, F401 (fixtures)
    mlflow_any_user_python,
    mlflow_image,
    mlflow_wheelhouse,
)
