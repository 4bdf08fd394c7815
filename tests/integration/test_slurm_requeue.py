"""Requeue, the signal before the time limit, and cancel with a grace period, on the real
two-node Slurm test cluster (tests/slurm.py) through the real CLI: a run with requeue = true
that Slurm requeues runs again in the same folder and its record shows both attempts; a
script that traps SIGTERM checkpoints on `runs cancel`; Slurm's --signal reaches the script
before the job's time limit and the run is recorded as timed out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers import CLI, ok, slurm_config, wait_until
from slurm import SlurmCluster

# Counts its starts in the outputs (which a requeued attempt keeps); the first one waits.
REQUEUED_SCRIPT = """\
import os, pathlib, time
out = pathlib.Path(os.environ["TRAINFORM_OUTPUT_DIR"])
starts = out / "starts"
n = int(starts.read_text()) + 1 if starts.exists() else 1
starts.write_text(str(n))
print("start", n, "restart count", os.environ.get("SLURM_RESTART_COUNT", "-"), flush=True)
# The run's env values are secrets that travel apart from spec.json: every attempt has them.
print("token", "ok" if os.environ.get("API_TOKEN") == "s3cret-value" else "MISSING", flush=True)
if n == 1:
    time.sleep(600)
print("done", n, flush=True)
"""

# Writes a checkpoint when it gets SIGTERM, then exits; otherwise waits.
CHECKPOINT_SCRIPT = """\
import os, pathlib, signal, sys, time
def checkpoint(signum, frame):
    pathlib.Path(os.environ["TRAINFORM_OUTPUT_DIR"], "checkpoint.txt").write_text("step 7")
    print("got SIGTERM: checkpoint written", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, checkpoint)
print("ready", flush=True)
time.sleep(600)
"""


def requeue_cli(
    tmp_path: Path, cluster: SlurmCluster, script: str, compute: str = "", run: str = ""
) -> CLI:
    """A configuration with a slurm compute (plus `compute` lines) and a run of `script`
    with a 20 s grace period (plus `run` lines)."""
    return slurm_config(tmp_path, cluster.conf, script, compute, '  grace_period = "20s"\n' + run)


def shown(cli: CLI) -> dict[str, Any]:
    return dict(json.loads(ok(cli("runs", "show", "run.train", "--json")).out))


def logs(cli: CLI) -> str:
    return ok(cli("runs", "logs", "run.train")).out


def job_of(cluster: SlurmCluster, tmp_path: Path) -> str:
    """The id of the run's job: the one whose working folder is the run's folder."""
    runs = tmp_path / "shared" / "runs"
    for line in cluster.run("squeue", "--noheader", "--format=%i|%Z").stdout.splitlines():
        job_id, _, workdir = line.partition("|")
        if Path(workdir).parent == runs:
            return job_id.strip()
    raise AssertionError(f"no job runs in {runs}")


def state_of(cluster: SlurmCluster, job_id: str) -> str:
    return cluster.run("squeue", "--noheader", f"--jobs={job_id}", "--format=%T").stdout.strip()


def test_a_requeued_run_runs_again_and_its_record_shows_both_attempts(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    cli = requeue_cli(
        tmp_path,
        slurm_cluster,
        REQUEUED_SCRIPT,
        "  requeue = true\n",
        '  env = { API_TOKEN = "s3cret-value" }\n',
    )
    ok(cli("apply", "-auto-approve", "--detach"))
    wait_until("the first attempt running", lambda: "start 1" in logs(cli))
    job = job_of(slurm_cluster, tmp_path)
    (script,) = (tmp_path / "shared" / "runs").glob("*/job.sbatch")
    assert "#SBATCH --requeue" in script.read_text()
    assert "#SBATCH --signal=B:TERM@60" in script.read_text()

    slurm_cluster.run("scontrol", "requeue", job)
    # Slurm holds a requeued job back for two minutes (BeginTime): meanwhile the first
    # attempt's recorded outcome (canceled by Slurm's SIGTERM) is not the run's.
    wait_until("the job pending again", lambda: state_of(slurm_cluster, job) == "PENDING")
    waiting = shown(cli)
    assert waiting["status"] == "queued", waiting
    assert "requeued by Slurm (attempt 2)" in waiting["message"], waiting
    assert [a["attempt"] for a in waiting["attempts"]] == [1, 2], waiting
    slurm_cluster.run("scontrol", "update", f"JobId={job}", "StartTime=now")

    ok(cli("runs", "wait", "run.train"))
    record = shown(cli)
    assert record["status"] == "completed", record
    first, second = record["attempts"]
    assert (first["attempt"], first["ended"], first["status"]) == (1, "requeued", "canceled")
    assert first["started"] and first["finished"], first
    assert (second["attempt"], second["status"]) == (2, "completed"), second
    text = ok(cli("runs", "show", "run.train")).out
    assert "attempts     2" in text and "requeued by Slurm" in text, text
    log = logs(cli)
    # One log across both attempts, the second announced, nothing truncated.
    assert log.index("start 1 restart count -") < log.index("attempt 2 (requeued by Slurm)"), log
    assert log.index("attempt 2 (requeued by Slurm)") < log.index("start 2 restart count 1"), log
    assert "done 2" in log, log
    # Both attempts had the secret value, which the collection then deleted.
    assert log.count("token ok") == 2 and "MISSING" not in log, log
    assert not list((tmp_path / "shared" / "runs").glob("**/secret")), "secrets left behind"


def test_cancel_sends_sigterm_first_and_the_script_checkpoints(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    cli = requeue_cli(tmp_path, slurm_cluster, CHECKPOINT_SCRIPT)
    ok(cli("apply", "-auto-approve", "--detach"))
    wait_until("the run ready", lambda: "ready" in logs(cli))
    ok(cli("runs", "cancel", "run.train"))
    record = shown(cli)
    assert record["status"] == "canceled", record
    assert "SIGTERM" in record["message"], record
    assert "got SIGTERM: checkpoint written" in logs(cli)
    assert (Path(record["outputs_path"]) / "checkpoint.txt").read_text() == "step 7"


def test_slurms_signal_before_the_time_limit_reaches_the_script_and_times_the_run_out(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    cli = requeue_cli(tmp_path, slurm_cluster, CHECKPOINT_SCRIPT, '  signal = "B:TERM@50"\n')
    ok(cli("apply", "-auto-approve", "--detach"))
    wait_until("the run ready", lambda: "ready" in logs(cli))
    # A one-minute limit (the run has no max_duration, so the launcher sets none of its
    # own): Slurm sends SIGTERM to the launcher 50 s (up to a minute more) before it.
    slurm_cluster.run(
        "scontrol", "update", f"JobId={job_of(slurm_cluster, tmp_path)}", "TimeLimit=1"
    )
    record = wait_until(
        "the run timed out",
        lambda: (r := shown(cli))["status"] not in ("queued", "preparing", "running") and r,
        timeout=180,
    )
    assert record["status"] == "timed_out", record
    assert "SIGTERM from Slurm" in record["message"], record
    assert "got SIGTERM: checkpoint written" in logs(cli)
