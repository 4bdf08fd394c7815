"""The required Slurm scenarios of issue 15, through the real CLI on the real test cluster
(tests/slurm.py): a run queued behind another job shows Slurm's reason in `apply` and
`runs show`, then runs; Slurm's own time limit ends a run as timed out; `runs cancel` leaves no
job and no process behind; a restarted slurmctld neither loses a run nor stops `runs wait`;
Ctrl-C to `apply` leaves the job running and the next `apply` submits nothing twice.

test_slurm_compute.py has the basics (a run completes, plan-time refusals, cancel while
pending, the launcher's max_duration); these build on its configuration."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from pathlib import Path

from helpers import CLI, ok, wait_until
from slurm import SlurmCluster
from test_slurm_compute import slurm_cli

# Runs until the file named by its argument exists, so the test decides when it ends.
WAITING_SCRIPT = """\
import os, sys, time
print("started", os.environ["SLURM_JOB_ID"], flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
print("released", flush=True)
"""


def waiting_cli(tmp_path: Path, cluster: SlurmCluster, partition: str = "debug") -> CLI:
    """slurm_cli's configuration whose run waits for ``tmp_path/release``."""
    cli = slurm_cli(tmp_path, cluster, partition, run=f'  arguments = ["{tmp_path / "release"}"]\n')
    cli.write("src/train.py", WAITING_SCRIPT)
    return cli


def shown(cli: CLI) -> dict:
    return json.loads(ok(cli("runs", "show", "run.train", "--json")).out)


def jobs_of(cluster: SlurmCluster, shared: Path, states: str = "all") -> dict[str, str]:
    """Job id → state of the jobs Slurm knows whose working folder is in the workdir
    ``shared`` (trainform runs each job in its run's folder)."""
    out = cluster.run("squeue", "--noheader", f"--states={states}", "--format=%i|%T|%Z").stdout
    jobs = (line.split("|", 2) for line in out.splitlines())
    return {job: state for job, state, folder in jobs if folder.startswith(f"{shared}/")}


def started(cli: CLI) -> str:
    """Block until the run's script printed its first line; returns the Slurm job id."""
    found = wait_until(
        "the script's first line in `runs logs`",
        lambda: re.search(r"started (\d+)", cli("runs", "logs", "run.train").out),
    )
    return str(found.group(1))


def processes_of(job_id: str, run_dir: Path) -> list[int]:
    """Processes of a Slurm job (its environment names it) or of a run folder (the launcher's
    command line names it)."""
    marker = f"SLURM_JOB_ID={job_id}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker in environ or str(run_dir).encode() in cmdline:
            found.append(int(entry))
    return found


class Streamed:
    """A CLI process whose stdout and stderr are read as they come (``text``)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.text = ""
        self._lock = threading.Lock()
        self._readers = [
            threading.Thread(target=self._read, args=(stream,), daemon=True)
            for stream in (proc.stdout, proc.stderr)
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._lock:
                self.text += line

    def wait_for(self, pattern: str, what: str) -> re.Match[str]:
        """The first match of ``pattern`` in the output; fails if the process ends first."""

        def found() -> re.Match[str] | None:
            match = re.search(pattern, self.text)
            assert match or self.proc.poll() is None, f"{what}: exited\n{self.text}"
            return match

        return wait_until(what, found)  # type: ignore[no-any-return]

    def finish(self, timeout: float = 120) -> int:
        """Wait for the process to exit (killing it after ``timeout``); its exit code."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        for reader in self._readers:
            reader.join(10)
        return code


def test_a_run_queued_behind_another_job_shows_the_reason_then_runs_and_completes(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    cli = slurm_cli(tmp_path, slurm_cluster, "gpu")
    # The gpu partition's only node, taken whole.
    blocker = slurm_cluster.submit(
        "--partition=gpu", "--exclusive", "--output=/dev/null", "--wrap", "sleep 300"
    )
    try:
        wait_until("the blocker to run", lambda: slurm_cluster.job(blocker).state == "RUNNING")  # type: ignore[union-attr]
        apply = Streamed(cli.popen("apply", "-auto-approve"))
        line = apply.wait_for(
            r"run\.train: queued: Slurm job (\d+): PENDING \((Resources|Priority)\)",
            "apply's status line with Slurm's reason",
        )
        job = line.group(1)
        text = ok(cli("runs", "show", "run.train")).out
        assert re.search(
            rf"status\s+queued\s+Slurm job {job}: PENDING \(Resources|Priority", text
        ), text
        assert slurm_cluster.job(job).state == "PENDING"  # type: ignore[union-attr]
    finally:
        slurm_cluster.run("scancel", blocker, check=False)
    assert apply.finish() == 0, apply.text
    assert "run.train: Completed after" in apply.text, apply.text
    assert re.search(rf"hello from {job}\b", apply.text), apply.text
    assert shown(cli)["status"] == "completed"


def test_a_run_slurm_ends_at_its_time_limit_is_timed_out(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    # Slurm's limit is the backstop behind the launcher's max_duration (test_slurm_compute):
    # here Slurm itself ends the job (the partition's limit, brought forward with EndTime).
    cli = waiting_cli(tmp_path, slurm_cluster)
    ok(cli("apply", "-auto-approve", "--detach"))
    job = started(cli)
    slurm_cluster.run("scontrol", "update", f"JobId={job}", "EndTime=now")
    waited = ok(cli("runs", "wait", "run.train", "--quiet", timeout=120), code=1)
    assert re.search(rf"timed_out: Slurm job {job}: TIMEOUT", waited.out), waited.out
    record = shown(cli)
    assert record["status"] == "timed_out", record
    text = ok(cli("runs", "show", "run.train")).out
    assert re.search(rf"status\s+timed_out\s+Slurm job {job}: TIMEOUT", text), text


def test_runs_cancel_of_a_running_run_leaves_no_job_and_no_process(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    cli = waiting_cli(tmp_path, slurm_cluster)
    ok(cli("apply", "-auto-approve", "--detach"))
    job = started(cli)
    record = shown(cli)
    assert record["status"] == "running", record
    run_dir = tmp_path / "shared" / "runs" / record["id"]
    assert processes_of(job, run_dir)  # what the check below looks for does exist
    assert "canceled" in ok(cli("runs", "cancel", "run.train")).out
    record = shown(cli)
    assert record["status"] == "canceled", record
    assert jobs_of(slurm_cluster, run_dir.parent.parent, "pending,running,completing") == {}
    wait_until("no process of the job", lambda: not processes_of(job, run_dir), timeout=30)
    assert "released" not in ok(cli("runs", "logs", "run.train")).out


def test_a_restarted_slurmctld_loses_no_run_and_runs_wait_follows_it_to_the_end(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    cli = waiting_cli(tmp_path, slurm_cluster)
    ok(cli("apply", "-auto-approve", "--detach"))
    job = started(cli)
    waiting = Streamed(cli.popen("runs", "wait", "run.train"))
    slurm_cluster.stop_controller()
    try:
        # Slurm cannot be asked (squeue gives up after its own retries): the run stays as its
        # launcher records it, saying why, and `runs wait` goes on; never "lost".
        down = shown(cli)
        assert down["status"] == "running", down
        assert "Slurm did not answer" in down["message"], down
        assert "Unable to contact slurm controller" in down["message"], down
        assert waiting.proc.poll() is None, waiting.text
    finally:
        slurm_cluster.start_controller(fresh=False)
    wait_until(
        "slurmctld to answer again",
        lambda: "is UP" in slurm_cluster.run("scontrol", "ping", check=False).stdout,
    )
    slurm_cluster.restart_controller()  # and once more, as a plain restart
    assert slurm_cluster.job(job).state == "RUNNING"  # type: ignore[union-attr]
    record = shown(cli)
    assert record["status"] == "running" and not record.get("message"), record
    (tmp_path / "release").touch()
    assert waiting.finish() == 0, waiting.text
    assert "released" in waiting.text and "completed" in waiting.text, waiting.text
    assert shown(cli)["status"] == "completed"


def test_ctrl_c_to_apply_leaves_the_job_running_and_the_next_apply_submits_nothing_twice(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    cli = waiting_cli(tmp_path, slurm_cluster)
    apply = Streamed(cli.popen("apply", "-auto-approve"))
    apply.wait_for(r"started \d+", "the script's first line in apply's output")
    apply.proc.send_signal(signal.SIGINT)
    assert apply.finish() == 130, apply.text
    assert "run.train keeps running in the background" in apply.text, apply.text
    run_id = shown(cli)["id"]
    shared = tmp_path / "shared"
    assert list(jobs_of(slurm_cluster, shared).values()) == ["RUNNING"]
    # Applied again while the job runs, then after it ended: one run, one job.
    again = Streamed(cli.popen("apply", "-auto-approve"))
    wait_until("the second apply to be under way", lambda: "run.train" in again.text)
    (tmp_path / "release").touch()
    assert again.finish() == 0, again.text
    ok(cli("apply", "-auto-approve"))
    ok(cli("plan", "-detailed-exitcode"))
    assert shown(cli)["status"] == "completed"
    assert [p.name for p in (tmp_path / "shared" / "runs").iterdir()] == [run_id]
    assert list(jobs_of(slurm_cluster, shared).values()) == ["COMPLETED"]
    listed = ok(cli("runs", "list")).out
    assert listed.count("train-") == 1, listed
