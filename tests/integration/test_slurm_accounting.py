"""Accounting on the real Slurm test clusters (tests/slurm.py). On the cluster with slurmdbd
(MariaDB): ended jobs' statuses come from sacct once slurmctld forgets them (COMPLETED,
FAILED with its exit code, TIMEOUT, CANCELLED), many jobs resolve with one squeue and one
sacct, plan refuses an account or QoS the user does not have (naming the known ones), and the
facts list the user's accounts and QoS. On the cluster without: an ended job's exit code comes
from `scontrol show job` before the launcher's status.json, and an account cannot be checked
(a warning).

The sacct test is slow (about 2 minutes): a time limit is at least a minute, and slurmctld
purges ended jobs every 60 s."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import CLI, failed, ok, slurm_config, wait_until
from slurm import SlurmCluster

from trainform.providers.base import ProviderContext
from trainform.providers.slurm import SlurmComputeProvider


def provider(
    tmp_path: Path, cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch
) -> SlurmComputeProvider:
    """The provider, its Slurm client pointed at `cluster`."""
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    return SlurmComputeProvider(ProviderContext(tmp_path, tmp_path / ".trainform"))


def state(cluster: SlurmCluster, job_id: str) -> str:
    """The job's state in squeue ("" once slurmctld forgot it)."""
    job = cluster.job(job_id)
    return job.state if job else ""


def config(tmp_path: Path, cluster: SlurmCluster, extra: str, run_extra: str = "") -> CLI:
    """A configuration with a slurm compute (`extra`: more of its attributes) and one run
    (`run_extra`: more of its attributes)."""
    return slurm_config(
        tmp_path, cluster.conf, "print('accounted', flush=True)\n", extra, run_extra
    )


def test_ended_jobs_take_their_status_from_sacct(
    tmp_path: Path, slurm_accounting_cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = slurm_accounting_cluster
    slurm = provider(tmp_path, cluster, monkeypatch)
    out = f"--output={tmp_path / 'slurm-%j.out'}"
    jobs = {
        "completed": cluster.submit(out, "--wrap", "true"),
        "failed": cluster.submit(out, "--wrap", "exit 3"),
        "timed_out": cluster.submit(out, "--time=0:01", "--wrap", "sleep 600"),
        "canceled": cluster.submit(out, "--wrap", "sleep 600"),
    }
    cluster.run("scancel", jobs["canceled"])
    # The run folders hold no status.json: the status can only be Slurm's.
    handles = {k: {"run_dir": str(tmp_path / k), "job_id": v} for k, v in jobs.items()}

    def forgotten() -> bool:
        return all(cluster.job(j) is None for j in jobs.values())

    wait_until("slurmctld forgets the ended jobs", forgotten, timeout=240)
    for expected, handle in handles.items():
        status = slurm.status(handle)
        assert status["status"] == expected, (expected, status)
        assert status["message"].startswith(f"Slurm job {handle['job_id']}: "), status
    assert "exit code 3" in slurm.status(handles["failed"])["message"]
    assert "TIMEOUT" in slurm.status(handles["timed_out"])["message"]

    # Many at once: one squeue and one sacct, running and ended jobs alike.
    running = cluster.submit(out, "--wrap", "sleep 600")
    try:
        wait_until("the job runs", lambda: state(cluster, running) == "RUNNING")
        found = slurm.jobs(slurm.host({}), [*jobs.values(), running, "999999"])
    finally:
        cluster.run("scancel", running, check=False)
    states = {k: getattr(found[v][0], "state", None) for k, v in jobs.items()}
    assert states == {
        "completed": "COMPLETED",
        "failed": "FAILED",
        "timed_out": "TIMEOUT",
        "canceled": "CANCELLED",
    }
    assert found[running][0] is not None and found[running][0].state == "RUNNING"
    assert found["999999"] == (None, "Slurm knows no job 999999 any more")


def test_plan_refuses_an_account_the_user_does_not_have(
    tmp_path: Path, slurm_accounting_cluster: SlurmCluster
) -> None:
    cli = config(tmp_path, slurm_accounting_cluster, '  account = "other"\n')
    failed(cli("plan"), "unknown account 'other' for user 'root'", "(known: proj42, root)")


def test_plan_refuses_an_unknown_qos(
    tmp_path: Path, slurm_accounting_cluster: SlurmCluster
) -> None:
    cli = config(tmp_path, slurm_accounting_cluster, '  qos = "turbo"\n')
    failed(cli("plan"), "unknown qos 'turbo' for user 'root'", "(known: high, normal)")


def test_a_run_with_account_and_qos_and_the_facts_listing_them(
    tmp_path: Path, slurm_accounting_cluster: SlurmCluster
) -> None:
    cli = config(tmp_path, slurm_accounting_cluster, '  account = "proj42"\n  qos = "high"\n')
    ok(cli("apply", "-auto-approve"))
    shown = json.loads(ok(cli("runs", "show", "run.train", "--json")).out)
    assert shown["status"] == "completed", shown
    state = json.loads(ok(cli("show", "-json")).out)
    facts = json.dumps(state)
    assert '"accounting": true' in facts and '"accounts": ["proj42", "root"]' in facts, facts
    assert '"qos": ["high", "normal"]' in facts, facts

    # A run's own account or QoS (its slurm block) is checked against the recorded facts.
    main = (tmp_path / "config" / "main.train.hcl").read_text()
    for slurm, refusal in (
        ('account = "other"', "unknown account 'other' for user 'root'"),
        ('qos = "turbo"', "unknown qos 'turbo' for user 'root'"),
    ):
        head, _, _ = main.rpartition("}\n")  # the run block's end
        cli.write("main.train.hcl", f"{head}  slurm {{ {slurm} }}\n}}\n")
        failed(cli("plan"), refusal)
    cli.write("main.train.hcl", main)
    ok(cli("plan"))


def test_without_accounting_an_ended_jobs_exit_code_comes_from_scontrol(
    tmp_path: Path, slurm_cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    slurm = provider(tmp_path, slurm_cluster, monkeypatch)
    job = slurm_cluster.submit(f"--output={tmp_path / 'slurm.out'}", "--wrap", "exit 3")
    wait_until("the job fails", lambda: state(slurm_cluster, job) == "FAILED")
    # squeue's record has no exit code and sacct is disabled: only scontrol knows it.
    status = slurm.status({"run_dir": str(tmp_path), "job_id": job})
    assert status["status"] == "failed", status
    assert "exit code 3" in status["message"], status


def test_without_accounting_an_account_is_a_warning(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    cli = config(tmp_path, slurm_cluster, '  account = "proj42"\n')
    result = ok(cli("plan"))
    assert "cannot check account 'proj42' (no accounting storage)" in result.all, result.all
