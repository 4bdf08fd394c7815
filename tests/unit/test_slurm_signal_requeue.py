"""The slurm compute's requeue and signal options: the --signal value checked at plan time,
the directives, the options extra_sbatch_args may not set, and the attempts of a requeued
run as the launcher and the provider record them."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainform.errors import ProviderError
from trainform.providers import slurm_cli as s
from trainform.providers.base import ProviderContext
from trainform.providers.slurm import (
    SlurmComputeProvider,
    current_attempt,
    scheduler_signal,
    with_attempts,
)
from trainform.runs.launcher import all_attempts, attempt_number, ended_attempts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B:TERM@60", "B:TERM@60"),
        ("b:sigusr1@300", "B:USR1@300"),
        ("B:10", "B:USR1@60"),
        ("RB:TERM@5", "RB:TERM@5"),
    ],
)
def test_signal_values_slurm_reads(text: str, expected: str) -> None:
    assert str(s.parse_signal(text)) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("TERM@60", "must start with B:"),
        ("R:TERM", "must start with B:"),
        ("B:KILL@60", "not one the launcher can pass on"),
        ("B:9", "not one the launcher can pass on"),
        ("B:TERM@70000", "at most 65535"),
        ("B:TERM@", "is not [B:]SIGNAL[@SECONDS]"),
        ("B:TERM@60\n#SBATCH --wrap=x", "is not [B:]SIGNAL[@SECONDS]"),
    ],
)
def test_signal_values_refused(text: str, why: str) -> None:
    with pytest.raises(ProviderError, match=f".*{why.replace('[', '.').replace(']', '.')}"):
        s.parse_signal(text)


def test_requeue_and_signal_directives() -> None:
    lines = s.sbatch_directives(
        s.SbatchOptions(requeue=True, signal="b:usr1@300"), job_name="j", output="o"
    )
    assert "#SBATCH --requeue" in lines and "#SBATCH --signal=B:USR1@300" in lines
    default = s.sbatch_directives(s.SbatchOptions(), job_name="j", output="o")
    assert "#SBATCH --no-requeue" in default and "#SBATCH --signal=B:TERM@60" in default
    with pytest.raises(ProviderError, match="must start with B:"):
        s.sbatch_directives(s.SbatchOptions(signal="TERM"), job_name="j", output="o")


@pytest.mark.parametrize("arg", ["--requeue", "--no-requeue", "--signal=B:USR1", "--sig=TERM"])
def test_extra_sbatch_args_cannot_set_requeue_or_signal(arg: str) -> None:
    with pytest.raises(ProviderError, match="trainform sets itself"):
        s.check_extra_sbatch_args([arg])


def test_cancel_signals_the_batch_shell_only() -> None:
    assert s.scancel_argv(["7"], signal="TERM") == ["scancel", "--batch", "--signal=TERM", "7"]


def test_the_compute_refuses_a_bad_signal_at_plan_time(tmp_path: Path) -> None:
    provider = SlurmComputeProvider(ProviderContext(tmp_path, tmp_path / ".trainform"))
    desired = {"workdir": "/scratch", "signal": "TERM@60"}
    assert any("must start with B:" in p for p in provider.validate("compute.hpc", desired))
    assert provider.validate("compute.hpc", {**desired, "signal": "B:USR1@120"}) == []


def test_the_launcher_learns_the_signal_and_when_it_means_the_time_limit() -> None:
    assert scheduler_signal({}) == {"scheduler_signal": {"name": "TERM", "within": 150}}
    assert scheduler_signal({"signal": "B:USR1@300"})["scheduler_signal"]["name"] == "USR1"


def test_the_attempt_comes_from_slurms_restart_count() -> None:
    assert attempt_number({}) == 1
    assert attempt_number({"SLURM_RESTART_COUNT": "2"}) == 3
    assert attempt_number({"SLURM_RESTART_COUNT": "x"}) == 1


FIRST = {
    "status": "canceled",
    "message": "canceled (SIGTERM)",
    "host": "n1",
    "started": "t1",
    "finished": "t2",
    "created": "t0",
}


def test_a_requeued_attempt_moves_into_attempts_once() -> None:
    earlier = ended_attempts(FIRST, 2)
    assert earlier == [
        {
            "attempt": 1,
            "host": "n1",
            "started": "t1",
            "finished": "t2",
            "status": "canceled",
            "message": "canceled (SIGTERM)",
            "ended": "requeued",
        }
    ]
    second = {"status": "running", "attempt": 2, "attempts": earlier, "started": "t3"}
    assert ended_attempts(second, 2) == earlier  # the same attempt again adds nothing
    assert [a["attempt"] for a in ended_attempts(second, 3)] == [1, 2]
    assert ended_attempts(second, 3)[1]["status"] == "interrupted"  # it recorded no outcome
    assert [(a["attempt"], a["status"]) for a in all_attempts(second)] == [
        (1, "canceled"),
        (2, "running"),
    ]
    assert all_attempts(FIRST) == [] and "attempts" not in with_attempts(FIRST)


def test_an_earlier_attempts_outcome_is_not_the_runs_while_slurm_requeues_it() -> None:
    waiting = current_attempt(FIRST, 2)
    assert waiting["status"] == "queued" and waiting["attempt"] == 2
    assert [a["attempt"] for a in with_attempts(waiting)["attempts"]] == [1, 2]
    assert current_attempt(FIRST, None) is FIRST  # not a requeue job, or Slurm is done
    assert current_attempt(FIRST, 1) is FIRST
