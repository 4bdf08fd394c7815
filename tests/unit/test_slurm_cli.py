"""The Slurm command layer of the ``slurm`` compute: argv that only use options Slurm 20.11
has, and parsers run on outputs captured from a real Slurm 22.05 (and hand-written 20.11
lines, see slurm_outputs/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainform.errors import ProviderError
from trainform.providers import slurm_cli as s
from trainform.providers.base import TERMINAL

OUT = Path(__file__).parent / "slurm_outputs"


def out(name: str) -> str:
    return (OUT / name).read_text()


def test_version_upstream_and_debian_spellings():
    assert s.parse_version(out("22.05_version.out")) == s.SlurmVersion(22, 5, 8)
    old = s.parse_version(out("20.11_version_handwritten.out"))
    assert old == s.SlurmVersion(20, 11, 9) and old >= s.OLDEST_SUPPORTED
    assert s.parse_version("slurm 24.05.4\n") > s.SlurmVersion(23, 11, 10)
    assert str(s.SlurmVersion(22, 5, 8)) == "22.05.8"
    with pytest.raises(s.SlurmOutputError, match="not a Slurm version"):
        s.parse_version("bash: sinfo: command not found")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1:00:00", 3600),
        ("2-00:00:00", 172800),
        ("0:05", 5),
        ("10:00", 600),
        ("00:01:22", 82),
        ("1-12", 129600),
        ("1-00:30", 88200),
        ("30", 1800),
        ("infinite", None),
        ("UNLIMITED", None),
        ("Partition_Limit", None),
        ("n/a", None),
    ],
)
def test_durations(text, seconds):
    assert s.parse_duration(text) == seconds


def test_bad_duration_and_time_limit_format():
    with pytest.raises(s.SlurmOutputError, match="not a Slurm time"):
        s.parse_duration("soon")
    assert s.format_time_limit(90) == "0-00:01:30"
    assert s.format_time_limit(2 * 86400 + 3661.2) == "2-01:01:02"
    assert s.parse_duration(s.format_time_limit(7200)) == 7200
    with pytest.raises(ValueError, match="positive"):
        s.format_time_limit(0)


def test_sinfo_argv_uses_node_lines_and_explicit_format():
    argv = s.sinfo_argv(["gpu"])
    assert argv[:3] == ["sinfo", "--Node", "--noheader"]
    assert argv[3].startswith("--format=%P|") and argv[-1] == "--partition=gpu"


def test_partitions_from_real_sinfo():
    debug, gpu = s.parse_sinfo(out("22.05_sinfo.out"))
    assert (debug.name, debug.default, debug.up, debug.time_limit) == ("debug", True, True, None)
    assert (gpu.name, gpu.default, gpu.time_limit) == ("gpu", False, 3600)
    assert debug.node_count == 2 and gpu.node_count == 1
    assert (debug.max_cpus, debug.max_memory_mb, debug.max_gpus) == (2, 6026, 2)
    assert gpu.groups[0].gres == ("gpu:2",) and debug.groups[0].gres == ()
    assert debug.states == {"allocated": 2}
    assert all(g.usable for g in debug.groups)


def test_partition_down_and_drained_node():
    debug, gpu = s.parse_sinfo(out("22.05_sinfo_down_drain.out"))
    assert not gpu.up and gpu.avail == "down"
    assert debug.states == {"draining": 1, "allocated": 1}
    assert [g.usable for g in debug.groups] == [False, True]


def test_grouped_sinfo_with_an_invalid_node():
    debug, gpu = s.parse_sinfo(out("22.05_sinfo_inval_grouped.out"))
    assert debug.states == {"inval": 1, "idle": 1}
    assert not gpu.groups[0].usable


def test_sinfo_flags_counts_and_gres_forms():
    (p,) = s.parse_sinfo(
        "batch|up|2-00:00:00|3|64+|256000+|gpu:a100:4(S:0-1),shard:8|idle~|g[1-3]\n"
        "batch|up|2-00:00:00|1|128|512000|gpu:h100:8(S:0,1)|mixed*|g4\n"
    )
    assert p.time_limit == 172800 and p.node_count == 4
    first, second = p.groups
    assert (first.state, first.flags, first.gpus) == ("idle", "~", 4)
    assert second.gres == ("gpu:h100:8(S:0,1)",) and second.gpus == 8
    assert first.usable and not second.usable  # "*": not responding
    assert (p.max_cpus, p.max_memory_mb, p.max_gpus) == (128, 512000, 8)


def test_sinfo_refuses_lines_of_another_form():
    with pytest.raises(s.SlurmOutputError, match="9 were asked for"):
        s.parse_sinfo("PARTITION AVAIL  TIMELIMIT  NODES  STATE NODELIST\n")
    with pytest.raises(s.SlurmOutputError, match="as a CPU count"):
        s.parse_sinfo("debug|up|infinite|1|lots|6026|(null)|idle|n1\n")
    with pytest.raises(s.SlurmOutputError, match="more than"):
        s.parse_sinfo("x" * (s.MAX_OUTPUT_CHARS + 1))


def test_squeue_argv_shows_ended_jobs_and_array_tasks():
    argv = s.squeue_argv(["10", "13"])
    assert "--states=all" in argv and "--array" in argv and "--jobs=10,13" in argv
    assert not any("only-job-state" in a or "json" in a for a in argv)
    with pytest.raises(ValueError):
        s.squeue_argv([])


def test_squeue_pending_running_and_array_tasks():
    jobs = {r.job_id: r for r in s.parse_squeue(out("22.05_squeue_pending.out"))}
    assert (jobs["10"].state, jobs["10"].reason, jobs["10"].nodes) == ("PENDING", "Resources", "")
    assert jobs["11"].reason == "Priority"
    assert jobs["12"].reason == "PartitionTimeLimit" and jobs["12"].time_limit == 172800
    assert {"13_0", "13_1", "13_2", "13_3"} <= set(jobs)
    assert jobs["3"].state == "RUNNING" and jobs["3"].nodes == "n[1-2]" and jobs["3"].reason == ""
    assert jobs["3"].elapsed == 55 and jobs["3"].time_limit == 600
    assert s.run_status(jobs["10"]) == ("queued", "Resources")
    assert s.run_status(jobs["3"]) == ("running", "")


def test_squeue_ended_jobs_and_a_reason_with_spaces():
    jobs = {r.job_id: r for r in s.parse_squeue(out("22.05_squeue_mixed.out"))}
    assert (jobs["6_0"].array_job_id, jobs["6_2"].array_job_id, jobs["1"].array_job_id) == (
        "8",
        "6",
        "",
    )
    assert jobs["5"].reason.startswith("Nodes required for job are DOWN, DRAINED")
    assert s.run_status(jobs["1"]) == ("completed", "")
    assert s.run_status(jobs["2"])[0] == "failed"
    assert s.run_status(jobs["5"]) == ("canceled", "CANCELLED")
    assert s.run_status(jobs["7"])[0] == "timed_out"


def test_unknown_job_ids_and_disabled_accounting_are_recognised():
    assert s.invalid_job_id(out("22.05_squeue_unknown.err"))
    assert s.invalid_job_id(out("22.05_scontrol_unknown.err"))
    assert s.parse_squeue(out("22.05_squeue_unknown.out")) == []
    assert s.accounting_disabled(out("22.05_sacct_disabled.err"))
    assert not s.accounting_disabled(out("20.11_sacct_handwritten.out"))
    assert not s.invalid_job_id(out("22.05_squeue_pending.out"))


def test_sacct_argv():
    argv = s.sacct_argv(["7", "8"])
    assert argv[:3] == ["sacct", "--parsable2", "--noheader"] and "--jobs=7,8" in argv
    assert argv[-1] == "--format=JobID,State,ExitCode,NodeList,Start,End,Elapsed,Reason"


def test_sacct_jobs_steps_arrays_and_het_jobs():
    records = s.parse_sacct(out("20.11_sacct_handwritten.out"))
    by_id = {(r.job_id, r.step): r for r in records}
    assert by_id[("100", "batch")].state == "COMPLETED" and ("100", "extern") in by_id
    cancelled = by_id[("102", "")]
    assert (cancelled.state, cancelled.canceled_by, cancelled.signal) == ("CANCELLED", 1000, 15)
    assert by_id[("102", "0")].nodes == "n[1-2]"
    assert by_id[("103", "")].elapsed == 2 * 86400 + 30
    assert by_id[("101", "")].exit_code == 3
    pending = by_id[("105_[2-3]", "")]
    assert (pending.nodes, pending.start, pending.end) == ("", "", "")
    assert by_id[("105_0", "batch")].state == "RUNNING"
    assert ("106+0", "") in by_id and ("106+0", "batch") in by_id

    assert s.run_status(s.sacct_job(records, "102")) == ("canceled", "CANCELLED by uid 1000")
    assert s.run_status(s.sacct_job(records, "103"))[0] == "timed_out"
    status, message = s.run_status(s.sacct_job(records, "101"))
    assert status == "failed" and "FAILED" in message and "exit code 3" in message
    # a job FAILED whose batch step ran out of memory says so
    status, message = s.run_status(s.sacct_job(records, "104"))
    assert status == "failed" and message.startswith("OUT_OF_MEMORY")
    assert s.run_status(s.sacct_job(records, "107"))[1].startswith("NODE_FAIL")
    assert s.run_status(s.sacct_job(records, "108")) == ("queued", "QOSMaxJobsPerUserLimit")
    assert s.sacct_job(records, "999") is None


def test_sacct_truncated_state_and_bad_lines():
    (r,) = s.parse_sacct("5|CANCELLED+|0:0|n1|Unknown|Unknown|00:00:00|None\n")
    assert r.state == "CANCELLED"
    with pytest.raises(s.SlurmOutputError, match="sacct output line 1"):
        s.parse_sacct("5|not a state|0:0|n1|Unknown|Unknown|00:00:00|None\n")
    with pytest.raises(s.SlurmOutputError, match="8 were asked for"):
        s.parse_sacct("5|COMPLETED|0:0\n")


def test_scontrol_job_records():
    failed = s.parse_scontrol_job(out("22.05_scontrol_failed.out"))
    assert (failed.job_id, failed.state, failed.exit_code) == ("2", "FAILED", 3)
    assert failed.extra["JobName"] == "bad" and failed.time_limit is None
    cancelled = s.parse_scontrol_job(out("22.05_scontrol_cancelled.out"))
    assert cancelled.reason.startswith("Nodes required for job are DOWN, DRAINED")
    timeout = s.parse_scontrol_job(out("22.05_scontrol_timeout.out"))
    assert (timeout.state, timeout.signal, timeout.elapsed) == ("TIMEOUT", 15, 82)
    assert s.run_status(timeout)[0] == "timed_out"
    array = s.parse_scontrol_job(out("22.05_scontrol_array.out"))
    assert (array.job_id, array.array_job_id, array.state) == ("6_2", "6", "COMPLETED")


def test_scontrol_values_with_spaces():
    job = s.parse_scontrol_job(out("22.05_scontrol_directives.out"))
    assert job.extra["Command"] == "/tmp/slurm-s2/jobs/my dir/run job.sh --lr 0.1 x=1"
    assert job.extra["AllocNode:Sid"] == "localhost:30014"
    assert job.extra["TRES"] == "cpu=1,node=1,billing=1"
    assert job.extra["MinMemoryNode"] == "1G" and job.time_limit == 120
    requeued = s.parse_scontrol_job(out("22.05_scontrol_requeued.out"))
    assert requeued.extra["JobName"] == "long one"


def test_scontrol_without_a_job_is_refused():
    with pytest.raises(s.SlurmOutputError, match="no JobId"):
        s.parse_scontrol_job(out("22.05_scontrol_unknown.out"))


def test_requeued_then_cancelled_job_counts_attempts():
    running = s.parse_scontrol_job(out("22.05_scontrol_requeued.out"))
    assert running.restarts == 1
    cancelled = s.parse_scontrol_job(out("22.05_scontrol_cancelled_running.out"))
    assert (cancelled.state, cancelled.restarts) == ("CANCELLED", 1)
    pending_again = s.JobRecord("3", "PENDING", reason="BeginTime", restarts=1)
    status, message = s.run_status(pending_again)
    assert status == "queued" and "attempt 2" in message and "BeginTime" in message


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("PENDING", "queued"),
        ("CONFIGURING", "queued"),
        ("RUNNING", "running"),
        ("COMPLETING", "running"),
        ("COMPLETED", "completed"),
        ("FAILED", "failed"),
        ("OUT_OF_MEMORY", "failed"),
        ("NODE_FAIL", "failed"),
        ("BOOT_FAIL", "failed"),
        ("DEADLINE", "failed"),
        ("CANCELLED", "canceled"),
        ("TIMEOUT", "timed_out"),
        ("PREEMPTED", "queued"),
        ("REQUEUED", "queued"),
        ("SUSPENDED", "running"),
        ("SOMETHING_NEW", "running"),
    ],
)
def test_state_mapping(state, status):
    got, message = s.run_status(s.JobRecord("1", state))
    assert got == status
    if got in ("failed", "timed_out") or state in ("PREEMPTED", "REQUEUED", "SOMETHING_NEW"):
        assert state in message
    assert (got in TERMINAL) == (
        state
        in (
            "COMPLETED",
            "FAILED",
            "OUT_OF_MEMORY",
            "NODE_FAIL",
            "BOOT_FAIL",
            "DEADLINE",
            "CANCELLED",
            "TIMEOUT",
        )
    )


def test_preempted_without_requeue_is_over():
    assert s.run_status(s.JobRecord("1", "PREEMPTED"), requeue=False)[0] == "failed"


def test_sbatch_directives():
    lines = s.sbatch_directives(
        s.SbatchOptions(
            node_count=2,
            ntasks_per_node=4,
            gpus_per_node=4,
            cpus_per_task=8,
            mem=64000,
            max_duration=2 * 86400 + 90,
            partition="gpu",
            account="proj42",
            qos="normal",
            constraint="a100&ib",
            exclusive=True,
            requeue=True,
        ),
        job_name="tf-run-1",
        output="/scratch/tf/run-1/slurm-%j.log",
        chdir="/scratch/tf/run-1",
    )
    assert all(line.startswith("#SBATCH --") for line in lines)
    body = [line.removeprefix("#SBATCH ") for line in lines]
    for expected in (
        "--job-name=tf-run-1",
        "--output=/scratch/tf/run-1/slurm-%j.log",
        "--chdir=/scratch/tf/run-1",
        "--nodes=2",
        "--ntasks-per-node=4",
        "--gpus-per-node=4",
        "--cpus-per-task=8",
        "--mem=64000",
        "--time=2-00:01:30",
        "--partition=gpu",
        "--account=proj42",
        "--qos=normal",
        "--constraint=a100&ib",
        "--exclusive",
        "--signal=B:TERM@60",
        "--requeue",
    ):
        assert expected in body
    minimal = s.sbatch_directives(s.SbatchOptions(signal=None), job_name="j", output="o.log")
    assert "#SBATCH --no-requeue" in minimal and not any("signal" in x for x in minimal)
    assert not any("--time" in x or "--partition" in x for x in minimal)


def test_sbatch_directives_refuse_bad_values():
    with pytest.raises(ProviderError, match="partition value"):
        s.sbatch_directives(
            s.SbatchOptions(partition="gpu\n#SBATCH --wrap=x"), job_name="j", output="o"
        )
    with pytest.raises(ProviderError, match="output value"):
        s.sbatch_directives(s.SbatchOptions(), job_name="j", output="/a b/log")
    with pytest.raises(ProviderError, match="mem must be"):
        s.sbatch_directives(s.SbatchOptions(mem="lots"), job_name="j", output="o")
    with pytest.raises(ProviderError, match="node_count"):
        s.sbatch_directives(s.SbatchOptions(node_count=0), job_name="j", output="o")
    assert "#SBATCH --mem=16G" in s.sbatch_directives(
        s.SbatchOptions(mem="16g"), job_name="j", output="o"
    )


@pytest.mark.parametrize(
    ("args", "owned"),
    [
        (["--output=x"], "--output"),
        (["--out=x"], "--output"),
        (["-o", "x"], "--output"),
        (["-ox"], "--output"),
        (["-QJ", "name"], "--job-name"),
        (["--time", "10"], "--time"),
        (["-t10"], "--time"),
        (["--nodes=3"], "--nodes"),
        (["-N", "3"], "--nodes"),
        (["--partition=x"], "--partition"),
        (["-A", "acct"], "--account"),
        (["--qos=high"], "--qos"),
        (["--wrap=sleep 1"], "--wrap"),
        (["--parsable"], "--parsable"),
        (["--array=0-3"], "--array"),
        (["-d", "afterok:1"], "--dependency"),
        (["--export=ALL"], "--export"),
        (["--chdir=/"], "--chdir"),
        (["-e", "err"], "--error"),
    ],
)
def test_extra_sbatch_args_denylist(args, owned):
    with pytest.raises(ProviderError, match=f"sets {owned}, which trainform sets itself"):
        s.check_extra_sbatch_args(args)


def test_extra_sbatch_args_allowed():
    args = ["--mail-type=END", "--gres=gpu:a100:2", "-w", "n1", "--mem-per-gpu=8G", "-vQ"]
    assert s.check_extra_sbatch_args(args) == args
    assert s.sbatch_argv("/w/run.sh", ["--comment=x"]) == [
        "sbatch",
        "--parsable",
        "--comment=x",
        "/w/run.sh",
    ]
    with pytest.raises(ProviderError, match="one-line"):
        s.check_extra_sbatch_args(["--comment=a\nb"])
    with pytest.raises(ProviderError, match="end sbatch's options"):
        s.check_extra_sbatch_args(["--"])


def test_sbatch_output_and_scancel():
    assert s.parse_sbatch("17\n") == "17"
    assert s.parse_sbatch("sbatch: warning: something\n42;tfs2\n") == "42"
    with pytest.raises(s.SlurmOutputError, match="not a job id"):
        s.parse_sbatch("sbatch: error: Batch job submission failed\n")
    assert s.scancel_argv(["4", "5"]) == ["scancel", "4", "5"]
    assert s.scancel_argv(["4"], signal="TERM") == ["scancel", "--batch", "--signal=TERM", "4"]


def test_a_pending_job_without_a_reason_has_no_message_of_its_own() -> None:
    """Slurm prints reason None for a job it has not looked at yet: the status then names
    the state alone ("PENDING"), not a made-up reason ("PENDING (pending)")."""
    assert s.run_status(s.JobRecord(job_id="1", state="PENDING")) == ("queued", "")
    assert s.run_status(s.JobRecord(job_id="1", state="CONFIGURING")) == ("queued", "")
    assert s.run_status(s.JobRecord(job_id="1", state="PENDING", reason="Priority")) == (
        "queued",
        "Priority",
    )
