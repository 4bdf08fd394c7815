"""A run that writes a big log, on local compute, through the real CLI: `apply` shows every
line of it (the last one included, none twice) and collects it whole, `runs logs` prints it
whole and `runs logs --raw` byte for byte, and apply's memory does not grow with the log.

The log is 96 MiB, written faster than it can be shown: more than what is read from the
target once the run has ended (DRAIN_LIMIT), so the rest must come from the collected copy.
Memory is compared with the same apply of a 1 MiB log: the peak RSS of the trainform
process, its VmHWM in /proc (getrusage's would count the pytest process it was forked
from). Nothing is timed. bench/log_follow.py has the figures.
"""

from __future__ import annotations

from pathlib import Path

from big_log import BIG_MIB, MIB, SCRIPT, assert_shown, assert_whole, digest, measured, tail
from helpers import CLI

from trainform.runs.watch import DRAIN_LIMIT

CONFIG = """\
compute "local" {
  type = "local"
}

run "big" {
  experiment = "tests"
  compute    = compute.local
  source_dir = "src"
  script     = "big.py"
  env        = { MIB = var.mib }
}

variable "mib" {
  type = string
}
"""


def test_a_log_of_any_size_is_shown_and_collected_whole_in_bounded_memory(
    cli: CLI, tmp_path: Path
) -> None:
    assert BIG_MIB * MIB > DRAIN_LIMIT + 16 * MIB
    cli.write("main.train.hcl", CONFIG)
    cli.write("src/big.py", SCRIPT)
    small_rss = measured(
        cli, tmp_path / "small.out", "apply", "-auto-approve", TRAINFORM_VAR_mib="1"
    )
    assert_shown(tmp_path / "small.out", 1)

    args = ("apply", "-auto-approve")
    big_rss = measured(cli, tmp_path / "big.out", *args, TRAINFORM_VAR_mib=str(BIG_MIB))
    assert_shown(tmp_path / "big.out", BIG_MIB)
    assert b"run.big: Completed after" in tail(tmp_path / "big.out")
    # Memory does not follow the log's size: 95 MiB more log, a few MB more memory at most.
    assert big_rss - small_rss < 24 * MIB, (small_rss, big_rss)

    # Collected whole: the copy in the workspace holds every byte the run wrote.
    collected = max(cli.cwd.glob("**/runs/big-*/output.log"), key=lambda p: p.stat().st_mtime)
    assert_whole(collected, BIG_MIB)

    # runs logs prints it whole, in bounded memory; --raw byte for byte.
    logs_rss = measured(cli, tmp_path / "logs.out", "runs", "logs", "run.big")
    assert_whole(tmp_path / "logs.out", BIG_MIB)
    assert logs_rss < small_rss + 24 * MIB, (small_rss, logs_rss)
    measured(cli, tmp_path / "raw.out", "runs", "logs", "run.big", "--raw")
    assert digest(tmp_path / "raw.out") == digest(collected)
