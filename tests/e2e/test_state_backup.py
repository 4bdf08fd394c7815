"""State files through the real CLI: a state file that is not trainform's (empty, foreign SQLite,
not SQLite) is an error naming it, never read as "no state"; every command that changes state
keeps the state before it in `state.db.backup`; and the README's restore recipe, run verbatim,
brings it back after the state file was lost.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import CLI, Result, failed, ok

README = Path(__file__).resolve().parents[2] / "README.md"

CONFIG = """\
compute "local" {
  type        = "local"
  description = "DESCRIPTION"
}

run "train" {
  experiment = "backup"
  compute    = compute.local
  source_dir = "src"
  script     = "train.py"
}
"""


def readme_restore() -> str:
    """The README's restore recipe: the sh block under "## State and locking"."""
    section = README.read_text().split("## State and locking", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```sh\n(.*?)```", section, re.S)
    assert found, "no sh block under ## State and locking in README.md"
    return found.group(1)


def sh(cli: CLI, tmp_path: Path, script: str) -> Result:
    """``script`` in the configuration folder, with `trainform` on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "trainform").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m trainform "$@"\n')
    (bin_dir / "trainform").chmod(0o755)
    env = {**cli.env, "PATH": f"{bin_dir}{os.pathsep}{cli.env['PATH']}"}
    proc = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=cli.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def applied(cli: CLI) -> CLI:
    cli.write("main.train.hcl", CONFIG.replace("DESCRIPTION", "one"))
    cli.write("src/train.py", "print('trained')\n")
    ok(cli("apply", "-auto-approve"))
    return cli


def run_ids(cli: CLI) -> list[str]:
    return [r["id"] for r in json.loads(ok(cli("runs", "list", "--json")).out)]


def test_the_readmes_restore_brings_back_the_state_before_the_last_change(
    applied: CLI, tmp_path: Path
) -> None:
    cli = applied
    state = cli.cwd / ".trainform" / "state.db"
    backup = cli.cwd / ".trainform" / "state.db.backup"
    first_runs = run_ids(cli)
    cli.write("main.train.hcl", CONFIG.replace("DESCRIPTION", "two"))
    ok(cli("apply", "-auto-approve"))
    assert backup.is_file()

    state.write_bytes(b"")  # the state file is lost (truncated by a full disk, a bad copy...)
    for command in (("plan",), ("apply", "-auto-approve")):
        result = failed(cli(*command), f"state file {state} is not a trainform state database")
        assert "it is empty (0 bytes)" in result.all, result.all
        assert f"{backup}" in result.all, result.all  # where the previous state is
        assert "will be created" not in result.all, result.all
    assert state.stat().st_size == 0  # refused, not written to

    restored = sh(cli, tmp_path, readme_restore())
    ok(restored)
    # The state before the last apply: only that apply's change is planned again.
    assert "compute.local will be updated in-place" in restored.out, restored.all
    assert '~ description = "one" -> "two"' in restored.out, restored.all
    assert "Plan: 0 to add, 1 to change, 0 to destroy" in restored.out, restored.all
    assert "resubmit" not in restored.out, restored.all
    assert run_ids(cli) == first_runs  # the run history as of the backup
    ok(cli("apply", "-auto-approve"))
    ok(cli("plan", "-detailed-exitcode"), 0)


def test_a_foreign_sqlite_database_is_refused_and_left_untouched(applied: CLI) -> None:
    cli = applied
    state = cli.cwd / ".trainform" / "state.db"
    for name in os.listdir(state.parent):
        if name.startswith("state.db"):
            (state.parent / name).unlink()
    conn = sqlite3.connect(state)
    conn.execute("CREATE TABLE photos (path TEXT)")
    conn.commit()
    conn.close()
    before = state.read_bytes()
    for command in (("plan",), ("apply", "-auto-approve"), ("state", "list")):
        result = failed(cli(*command), f"state file {state} is not a trainform state database")
        assert "SQLite database without trainform's tables (photos)" in result.all, result.all
    assert state.read_bytes() == before
    assert not (state.parent / "state.db.backup").exists()


def test_a_file_that_is_not_sqlite_is_refused(applied: CLI) -> None:
    cli = applied
    state = cli.cwd / ".trainform" / "state.db"
    for name in os.listdir(state.parent):
        if name.startswith("state.db-"):
            (state.parent / name).unlink()
    state.write_text('{"version": 4, "resources": []}\n' * 50)
    result = failed(cli("plan"), f"state file {state} is not a trainform state database")
    assert "it is not an SQLite database" in result.all, result.all
