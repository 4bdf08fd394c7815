"""`compute { type = "slurm" }` through the real CLI on the real two-node Slurm test cluster
(tests/slurm.py; no accounting storage, so finished jobs fall back to the launcher's
status.json): a run completes with its log and metrics, and a partition that does not exist
or is down is refused at plan time, naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import CLI, failed, ok, slurm_config, wait_until
from slurm import SlurmCluster

SCRIPT = """\
import os
from trainform.tracking import log_metric

print("hello from", os.environ["SLURM_JOB_ID"], flush=True)
log_metric("loss", 0.25, step=1)
"""


def slurm_cli(
    tmp_path: Path, cluster: SlurmCluster, partition: str, compute: str = "", run: str = ""
) -> CLI:
    """A configuration with a slurm compute on `partition` (plus `compute` lines) and one run
    of SCRIPT (plus `run` lines)."""
    return slurm_config(
        tmp_path, cluster.conf, SCRIPT, f'  partition = "{partition}"\n{compute}', run
    )


def test_a_run_on_slurm_completes_with_its_log_and_metrics(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    cli = slurm_cli(tmp_path, slurm_cluster, "debug")
    ok(cli("apply", "-auto-approve"))
    shown = json.loads(ok(cli("runs", "show", "run.train", "--json")).out)
    assert shown["status"] == "completed", shown
    logs = ok(cli("runs", "logs", "run.train")).out
    assert "hello from" in logs, logs
    metrics = json.loads(ok(cli("runs", "metrics", "run.train", "--json")).out)
    assert [(p["name"], p["value"], p["step"]) for p in metrics["points"]] == [("loss", 0.25, 1)], (
        metrics
    )
    facts = json.loads(ok(cli("show", "-json")).out)
    assert "debug" in json.dumps(facts), facts


def test_a_partition_that_does_not_exist_is_refused_at_plan_time(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    cli = slurm_cli(tmp_path, slurm_cluster, "nope")
    result = failed(cli("plan"), "compute.hpc", "partition 'nope' does not exist", "debug")
    # Where (the compute block), and nothing about what depends on it (run.train's
    # reference to compute.hpc): planning stops at the refusal.
    assert "on main.train.hcl:1:1" in result.err, result.err
    assert result.err.count("Error:") == 1, result.err


def test_a_partition_that_is_down_is_refused_at_plan_time(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    cli = slurm_cli(tmp_path, slurm_cluster, "gpu")
    slurm_cluster.run("scontrol", "update", "PartitionName=gpu", "State=DOWN")
    try:
        failed(cli("plan"), "compute.hpc", "partition 'gpu' is down")
    finally:
        slurm_cluster.run("scontrol", "update", "PartitionName=gpu", "State=UP")
    ok(cli("plan"))


def test_a_run_waiting_for_nodes_shows_slurms_reason_and_cancels(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    cli = slurm_cli(tmp_path, slurm_cluster, "debug")
    # Both nodes taken: the run's job waits behind this one.
    blocker = slurm_cluster.submit(
        "-N2", "--exclusive", "--output=/dev/null", "--wrap", "sleep 300"
    )
    try:
        ok(cli("apply", "-auto-approve", "--detach"))
        shown = wait_until(
            "the run's job pending with a reason",
            lambda: (
                (s := json.loads(ok(cli("runs", "show", "run.train", "--json")).out))["status"]
                == "queued"
                and "PENDING (" in str(s.get("message"))
                and s
            ),
        )
        message = shown["message"]
        assert any(r in message for r in ("Priority", "Resources")), shown
        ok(cli("runs", "cancel", "run.train"))
        ok(cli("runs", "wait", "run.train"), code=1)
        shown = json.loads(ok(cli("runs", "show", "run.train", "--json")).out)
        assert shown["status"] == "canceled", shown
        assert "CANCELLED" in shown["message"], shown
    finally:
        slurm_cluster.run("scancel", blocker, check=False)


def test_a_job_slurm_has_forgotten_falls_back_to_status_json_and_says_so(
    tmp_path: Path, slurm_cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainform.providers.base import ProviderContext
    from trainform.providers.slurm import SlurmComputeProvider
    from trainform.runs.launcher import write_status

    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    provider = SlurmComputeProvider(ProviderContext(tmp_path, tmp_path / ".trainform"))
    write_status(tmp_path, status="running")
    # A job id slurmctld never had (as one it forgot after MinJobAge).
    status = provider.status({"run_dir": str(tmp_path), "job_id": "999999"})
    assert status["status"] == "lost", status
    assert "accounting storage is disabled" in status["message"], status
    write_status(tmp_path, status="completed", exit_code=0)
    assert provider.status({"run_dir": str(tmp_path), "job_id": "999999"})["status"] == (
        "completed"
    )


def test_max_duration_becomes_the_jobs_time_limit_and_the_launcher_times_the_run_out(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    cli = slurm_cli(
        tmp_path, slurm_cluster, "debug", run='  max_duration = "2s"\n  grace_period = "1s"\n'
    )
    cli.write("src/train.py", "import time\ntime.sleep(120)\n")
    ok(cli("apply", "-auto-approve"), code=1)
    shown = json.loads(ok(cli("runs", "show", "run.train", "--json")).out)
    assert shown["status"] == "timed_out", shown
    (script,) = (tmp_path / "shared" / "runs").glob("*/job.sbatch")
    # 2 s + 1 s grace + the 60 s margin: Slurm's limit is only the backstop.
    assert "#SBATCH --time=0-00:01:03\n" in script.read_text(), script.read_text()


def test_extra_sbatch_args_may_not_set_what_trainform_sets(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    cli = slurm_cli(
        tmp_path,
        slurm_cluster,
        "debug",
        compute='  extra_sbatch_args = ["--comment=ok", "--ti=5"]\n',
    )
    failed(cli("plan"), "compute.hpc", "'--ti=5' sets --time")
