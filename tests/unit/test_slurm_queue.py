"""slurm_cli's pieces for job arrays, slots and `compute show`: --array/--dependency
directives, array_spec, and the queue of a compute's jobs parsed from a real squeue 22.05
(an array of four tasks with %1 behind which a singleton job waits on Dependency)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainform.errors import ProviderError
from trainform.providers import slurm_cli as cli

OUTPUTS = Path(__file__).parent / "slurm_outputs"


def test_array_spec_limits_tasks_at_once_only_below_the_count() -> None:
    assert cli.array_spec(4, 2) == "0-3%2"
    assert cli.array_spec(4) == "0-3"
    assert cli.array_spec(4, 4) == "0-3"
    assert cli.array_spec(1, 8) == "0-0"
    for count, at_once in ((0, None), (3, 0)):
        with pytest.raises(ValueError):
            cli.array_spec(count, at_once)


def test_array_and_dependency_directives() -> None:
    lines = cli.sbatch_directives(
        cli.SbatchOptions(),
        job_name="trainform-1a2b3c4d-slot0",
        output="/w/arrays/x/slurm-%a.out",
        array="0-3%2",
        dependency="singleton",
    )
    assert "#SBATCH --array=0-3%2" in lines, lines
    assert "#SBATCH --dependency=singleton" in lines, lines
    assert "#SBATCH --output=/w/arrays/x/slurm-%a.out" in lines, lines
    plain = cli.sbatch_directives(cli.SbatchOptions(), job_name="j", output="/o")
    assert not [line for line in plain if "--array" in line or "--dependency" in line], plain
    with pytest.raises(ProviderError, match="dependency"):
        cli.sbatch_directives(cli.SbatchOptions(), job_name="j", output="/o", dependency="a b")


def test_queue_argv_asks_for_this_users_jobs_one_line_per_array_task() -> None:
    argv = cli.queue_argv("ml")
    assert argv[:4] == ["squeue", "--user=ml", "--noheader", "--array"], argv
    with pytest.raises(ProviderError, match="not a user name"):
        cli.queue_argv("ml --all")
    assert argv[-1].endswith("|%r|%Z"), argv  # the reason, then the free-form path last


def test_queue_of_an_array_and_a_job_waiting_on_its_slot() -> None:
    jobs = cli.parse_queue((OUTPUTS / "22.05_squeue_queue.out").read_text())
    by_id = {j.job_id: j for j in jobs}
    assert sorted(by_id) == ["5_0", "5_1", "5_2", "5_3", "6"], by_id
    assert by_id["5_2"].state == "PENDING" and by_id["5_2"].reason == "JobArrayTaskLimit"
    assert by_id["5_2"].array_task == 2 and by_id["6"].array_task is None
    assert by_id["6"].reason == "Dependency" and by_id["6"].name == "trainform-abc-slot0"
    assert by_id["5_0"].state == "RUNNING" and by_id["5_0"].reason == ""
    assert by_id["5_0"].elapsed == 1 and by_id["5_0"].time_limit is None
    assert by_id["6"].workdir == "/tmp/sweeps_h_x" and by_id["6"].partition == "debug"


def test_queue_keeps_a_path_with_a_bar_and_refuses_other_lines() -> None:
    (job,) = cli.parse_queue("7|n|PENDING|0:00|1:00|1|debug|Priority|/w/a|b\n")
    assert job.workdir == "/w/a|b" and job.time_limit == 60
    for bad in ("7|n|PENDING|0:00\n", "x7|n|PENDING|0:00|1:00|1|debug|Priority|/w\n"):
        with pytest.raises(cli.SlurmOutputError):
            cli.parse_queue(bad)
