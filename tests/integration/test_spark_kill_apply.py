"""`kill -9` of `apply` while it submits a run to a spark compute (a `local[2]` master, through
the real CLI): the run whose driver's launcher started before the kill is found by the next
`plan` and adopted, not reported lost and not submitted twice (the spark compute records the
handle its runner will have, see `expected_handle`; checks in tests/kill_apply.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import spark
from helpers import ok, unavailable
from kill_apply import SCRIPT, KillRig

if TYPE_CHECKING:  # fixtures' types; pytest provides the objects
    from tests.conftest import CLI

RUN = """
run "train" {
  experiment  = "kill"
  compute     = compute.spark
  environment = environment.py
  source_dir  = "src"
  script      = "train.py"
  arguments   = ["--ledger", "LEDGER", "--tag", "TAG"]
}
"""


@pytest.fixture
def rig(cli: CLI) -> KillRig:
    why = spark.missing()
    if why:
        unavailable(why)
    ledger = cli.cwd / "ledger"
    cli.write("src/train.py", SCRIPT)  # a plain script: spark-submit runs it as the driver
    text = (
        spark.compute_block(None) + spark.environment_block() + RUN.replace("LEDGER", str(ledger))
    )
    rig = KillRig(
        cli,
        ledger,
        lambda tag: text.replace("TAG", tag),
        cli.cwd / ".trainform" / "spark" / "runs",
    )
    rig.write("first")
    ok(cli("apply", "-auto-approve", timeout=300))
    rig.check("first")
    return rig


def test_a_spark_run_launched_but_not_recorded_is_adopted(rig: KillRig) -> None:
    tag, folder = rig.kill_between_launch_and_record("launched")
    plan = ok(rig.cli("plan", timeout=180)).out
    assert re.search(
        rf"run\.train: run {folder.name} was started by an apply that stopped before "
        r"recording it; adopted \((queued|preparing|running|completed)\)",
        plan,
    ), plan
    assert "will be resubmitted" not in plan, plan
    # A driver takes a JVM's start: let it end, then the rig's convergence checks.
    ok(rig.cli("runs", "wait", "run.train", timeout=300))
    rig.converge(tag)
    assert Path(folder, "snapshot-py.zip").is_file()  # it ran as a spark driver
