"""The Slurm test cluster itself (tests/slurm.py, the `slurm_cluster` fixture) behaves like a
real two-node cluster: what the Slurm provider's tests will rely on (pending, multi-node,
cancel, time limit, a controller restart), checked with Slurm's own commands.

Jobs wait for a file the test creates instead of sleeping, so no test depends on timing. The
TIMEOUT test is last and the slowest (about 60-90 s): a limit is at least a minute and
slurmctld checks limits every 30 s.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import wait_until

if TYPE_CHECKING:
    from slurm import Job, SlurmCluster

    from tests.integration.conftest import TestUser

ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING")


@pytest.fixture
def cluster(slurm_cluster: SlurmCluster) -> Iterator[SlurmCluster]:
    """The session's cluster with both nodes idle; the test's jobs are cancelled after it."""
    slurm_cluster.wait_idle()
    yield slurm_cluster
    jobs = slurm_cluster.run("squeue", "--noheader", "--format=%i").stdout.split()
    if jobs:
        slurm_cluster.run("scancel", *jobs)


def held(folder: Path, command: str = "true") -> str:
    """A job script that waits until `folder/go` exists, then runs `command`."""
    return f"while [ ! -e {folder}/go ]; do sleep 0.1; done; {command}"


def known(cluster: SlurmCluster, job_id: str) -> Job:
    """The job now; fails if slurmctld does not know it."""
    job = cluster.job(job_id)
    assert job is not None, f"slurmctld does not know job {job_id}"
    return job


def reaches(cluster: SlurmCluster, job_id: str, *states: str, timeout: float = 60) -> Job:
    """Wait until the job is in one of `states`; fail if it ends in another."""

    def check() -> Job | None:
        job = known(cluster, job_id)
        if job.state in states:
            return job
        assert job.state in ACTIVE, f"job {job_id} ended {job.state} ({job.reason})"
        return None

    found: Job = wait_until(f"job {job_id} {'/'.join(states)}", check, timeout)
    return found


def test_two_idle_nodes_in_two_partitions(cluster: SlurmCluster) -> None:
    assert cluster.node_states() == {"n1": "idle", "n2": "idle"}
    out = cluster.run("sinfo", "--noheader", "--format=%P|%a|%l|%N").stdout
    assert sorted(out.split()) == ["debug*|up|infinite|n[1-2]", "gpu|up|1:00:00|n2"]


def test_two_node_job_runs_one_task_per_node(cluster: SlurmCluster, tmp_path: Path) -> None:
    out = tmp_path / "out"
    job_id = cluster.submit(
        "--nodes=2",
        f"--output={out}",
        "--wrap",
        "srun sh -c 'echo $SLURM_NODEID $SLURMD_NODENAME $SLURM_JOB_NODELIST'",
    )
    reaches(cluster, job_id, "COMPLETED")
    assert sorted(out.read_text().splitlines()) == ["0 n1 n[1-2]", "1 n2 n[1-2]"]


def test_exclusive_job_pends_behind_a_running_one_then_runs(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    first = cluster.submit("--nodes=2", "--output=/dev/null", "--wrap", held(tmp_path))
    reaches(cluster, first, "RUNNING")
    second = cluster.submit("--nodes=2", "--exclusive", "--output=/dev/null", "--wrap", "true")
    assert known(cluster, second).state == "PENDING"
    # Resources: the nodes are busy; Priority: a job ahead of it waits for them (the reason
    # the backfill scheduler gives). None, the reason until the scheduler looked, passes.
    wait_until(
        "a pending reason", lambda: known(cluster, second).reason in ("Priority", "Resources")
    )
    assert known(cluster, first).state == "RUNNING"
    (tmp_path / "go").touch()
    reaches(cluster, first, "COMPLETED")
    assert reaches(cluster, second, "COMPLETED").nodes == "n[1-2]"


def test_scancel_cancels_a_running_job(cluster: SlurmCluster, tmp_path: Path) -> None:
    job_id = cluster.submit("--output=/dev/null", "--wrap", held(tmp_path))
    reaches(cluster, job_id, "RUNNING")
    cluster.run("scancel", job_id)
    reaches(cluster, job_id, "CANCELLED")


def test_a_job_survives_a_controller_restart(cluster: SlurmCluster, tmp_path: Path) -> None:
    out = tmp_path / "out"
    job_id = cluster.submit("--nodes=2", f"--output={out}", "--wrap", held(tmp_path, "echo done"))
    reaches(cluster, job_id, "RUNNING")
    cluster.restart_controller()
    assert known(cluster, job_id).state == "RUNNING"
    (tmp_path / "go").touch()
    reaches(cluster, job_id, "COMPLETED")
    assert out.read_text() == "done\n"


def test_an_unprivileged_user_submits_and_the_job_runs_as_them(
    cluster: SlurmCluster, tfuser: TestUser
) -> None:
    folder = tfuser.home / f"slurm-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    os.chown(folder, tfuser.uid, tfuser.gid)
    try:
        job_id = cluster.submit(
            f"--chdir={folder}", "--output=out", "--wrap", "id -un", user=tfuser.name
        )
        reaches(cluster, job_id, "COMPLETED")
        assert (folder / "out").read_text() == f"{tfuser.name}\n"
        assert (folder / "out").stat().st_uid == tfuser.uid
    finally:
        shutil.rmtree(folder)


def test_a_job_past_its_time_limit_is_timeout(cluster: SlurmCluster) -> None:
    job_id = cluster.submit("--time=0:01", "--output=/dev/null", "--wrap", "sleep 600")
    job = reaches(cluster, job_id, "TIMEOUT", timeout=150)
    assert job.reason == "TimeLimit"
