"""Run history in PostgreSQL read from another machine: a second working copy (another
folder, as another runner or a colleague's laptop) shares the state but not the first
copy's artifact store. `runs list`, `runs show` and `runs metrics` work from there; `runs
logs` of a finished run whose collected log is not on this machine says where it is and
what to do, instead of printing nothing and exiting 0."""

from __future__ import annotations

import shutil
from pathlib import Path

from helpers import CLI, failed, ok

CONFIG = """\
trainform {
  backend "pg" {
    schema_name = "elsewhere"
  }
}

workspace "ml" {}

compute "box" {
  type = "local"
}

run "train" {
  experiment   = "e1"
  workspace    = workspace.ml
  compute      = compute.box
  source_dir   = "src"
  script       = "train.py"
  max_duration = "5m"
}
"""

SCRIPT = """\
from trainform import tracking
print("hello from train")
tracking.log_metric("acc", 0.9)
"""


def test_run_history_reads_from_another_copy_and_logs_say_where_they_are(
    cli: CLI, pg_conn_str: str, tmp_path: Path
) -> None:
    cli.env["TRAINFORM_PG_CONN_STR"] = pg_conn_str
    cli.write("main.train.hcl", CONFIG)
    cli.write("src/train.py", SCRIPT)
    ok(cli("apply", "-auto-approve"))
    assert "hello from train" in ok(cli("runs", "logs", "run.train")).out

    other = tmp_path / "laptop" / "infra"
    other.parent.mkdir(parents=True)
    shutil.copytree(cli.cwd, other, ignore=shutil.ignore_patterns(".trainform"))
    laptop = CLI(other, dict(cli.env))
    # The first copy's store is gone from this "machine".
    moved = cli.cwd.with_name(cli.cwd.name + ".elsewhere")
    cli.cwd.rename(moved)
    try:
        assert "run.train" in ok(laptop("runs", "list")).out
        assert "completed" in ok(laptop("runs", "show", "run.train")).out
        assert "acc" in ok(laptop("runs", "metrics", "run.train")).out
        res = failed(laptop("runs", "logs", "run.train"), "log is not on this machine")
        assert str(cli.cwd / ".trainform") in res.err
        assert "runs show" in res.err
    finally:
        moved.rename(cli.cwd)
    assert "hello from train" in ok(laptop("runs", "logs", "run.train")).out
