"""The PostgreSQL backend through the real CLI, as a team would use it: the configuration
names `backend "pg"`, the connection string (with its password) comes from
TRAINFORM_PG_CONN_STR. Applies converge; two applies from two processes take turns on the
lock, and the one that cannot wait names the holder; a killed apply leaves no lock; a server
restart in the middle of an apply fails it clearly and the next apply converges. The
password never appears in output, state or plan files.

The run's script waits for a file the test creates, so the test decides when the first apply
ends (no timing is assumed)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import psycopg
import pytest
from helpers import CLI, failed, ok, wait_until
from postgres import PASSWORD, PASSWORD_ROLE, PgServer

SCRIPT = """\
import pathlib, sys, time
here = pathlib.Path(sys.argv[1])
(here / "started").write_text("yes")
while not (here / "go").exists():
    time.sleep(0.05)
print("trained")
"""

CONFIG = """\
trainform {
  backend "pg" {
    schema_name = "team_state"
  }
}

variable "token" {
  type      = string
  sensitive = true
}

workspace "main" {
  description = "pg backend"
}

compute "box" {
  type = "local"
}

run "train" {
  experiment = "pg"
  compute    = compute.box
  source_dir = "src"
  script     = "train.py"
  arguments  = ["GATE"]
  env        = { TOKEN = var.token }
}

output "token" {
  value     = var.token
  sensitive = true
}
"""


@pytest.fixture
def team(cli: CLI, pg_server: PgServer, tmp_path: Path) -> CLI:
    """The CLI on a configuration whose state is in a new database owned by a role that
    logs in with a password."""
    db = pg_server.create_database(owner=PASSWORD_ROLE)
    cli.env["TRAINFORM_PG_CONN_STR"] = pg_server.conn_str(db, PASSWORD_ROLE, PASSWORD)
    cli.env["TRAINFORM_VAR_token"] = "tok-pg-cli-71b2"
    gate = tmp_path / "gate"
    gate.mkdir()
    cli.write("src/train.py", SCRIPT)
    cli.write("main.train.hcl", CONFIG.replace("GATE", str(gate)))
    return cli


def gate(cli: CLI) -> Path:
    return cli.cwd.parent / "gate"


def everything_stored(cli: CLI) -> str:
    """Every value in every table of the state database, as text."""
    out = []
    with psycopg.connect(cli.env["TRAINFORM_PG_CONN_STR"]) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema LIKE 'team_state%'"
        ).fetchall()
        assert len(tables) > 5, tables
        for schema, table in tables:
            out.append(str(conn.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall()))
    return "\n".join(out)


def apply_bg(cli: CLI, *args: str) -> subprocess.Popen[str]:
    return cli.popen("apply", "-auto-approve", *args)


def test_apply_converges_and_the_password_is_never_shown(team: CLI) -> None:
    gate(team).joinpath("go").write_text("")
    first = ok(team("apply", "-auto-approve"))
    assert "Apply complete! Resources: 3 added" in first.out
    plan = ok(team("plan", "-out=plan.bin", "-detailed-exitcode"))
    assert "No changes" in plan.out
    pulled = ok(team("state", "pull")).out
    versions = ok(team("state", "list-versions")).out
    bad = ok(team("plan", "-var", "token=x", "-lock-timeout=5s"))  # any command at all
    for text in (first.all, plan.all, pulled, versions, bad.all):
        assert PASSWORD not in text
    assert PASSWORD not in (team.cwd / "plan.bin").read_text()
    assert PASSWORD not in everything_stored(team)
    assert "tok-pg-cli-71b2" not in everything_stored(team)
    # the state really is in PostgreSQL: no SQLite file was made
    assert not (team.cwd / ".trainform" / "state.db").exists()


def test_two_applies_take_turns_and_one_that_cannot_wait_names_the_holder(team: CLI) -> None:
    first = apply_bg(team)
    wait_until("the first apply runs its script", gate(team).joinpath("started").exists)
    second = apply_bg(team, "-lock-timeout=120s")
    impatient = failed(team("apply", "-auto-approve", "-lock-timeout=1s"), "state is locked")
    assert f"(pid {first.pid}) for 'apply' since" in impatient.all
    assert "@" in impatient.all and PASSWORD not in impatient.all
    assert second.poll() is None  # still waiting for the lock
    gate(team).joinpath("go").write_text("")
    out1, err1 = first.communicate(timeout=120)
    assert first.returncode == 0, out1 + err1
    out2, err2 = second.communicate(timeout=120)
    assert second.returncode == 0, out2 + err2
    assert "No changes" in out2  # it planned after the first had recorded everything
    assert PASSWORD not in out1 + err1 + out2 + err2


def test_a_killed_apply_leaves_no_lock(team: CLI) -> None:
    first = team.popen("apply", "-auto-approve")
    wait_until("the apply runs its script", gate(team).joinpath("started").exists)
    held = failed(team("plan", "-lock-timeout=0s"), "state is locked")
    assert f"(pid {first.pid})" in held.all
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=60)
    gate(team).joinpath("go").write_text("")

    def lock_gone() -> bool:
        with psycopg.connect(team.env["TRAINFORM_PG_CONN_STR"]) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype='advisory' AND granted"
            ).fetchone()
            return row is not None and row[0] == 0

    wait_until("the server ends the killed apply's session", lock_gone)
    again = ok(team("apply", "-auto-approve", "-lock-timeout=0s"))
    assert "state is locked" not in again.all
    assert "No changes" in ok(team("plan")).out


def test_a_server_restart_mid_apply_fails_it_clearly_and_the_next_converges(
    team: CLI, pg_server: PgServer
) -> None:
    first = apply_bg(team)
    wait_until("the apply runs its script", gate(team).joinpath("started").exists)
    pg_server.restart()
    gate(team).joinpath("go").write_text("")
    out, err = first.communicate(timeout=120)
    assert first.returncode == 1, out + err
    assert "Traceback" not in out + err
    text = out + err
    assert f"lost the connection to the PostgreSQL state backend {PASSWORD_ROLE}@127.0.0.1:" in text
    assert "every completed change was committed, the one in progress was not" in text
    assert PASSWORD not in text
    ok(team("apply", "-auto-approve"))
    assert "No changes" in ok(team("plan")).out
    listed = ok(team("state", "list")).out.split()
    assert listed == ["compute.box", "run.train", "workspace.main"]
