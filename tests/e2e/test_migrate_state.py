"""`trainform init -migrate-state` and `-reconfigure` through the real CLI: state and history
of every workspace moved from SQLite to a real PostgreSQL server and back, losing nothing
(resources, runs, metrics, sweeps, apply history, versions: the plan afterwards has nothing
to do); a changed backend refused by `init` and by other commands until one is chosen; the
recorded backend never holding the password."""

from __future__ import annotations

import json

import pytest
from backends import history, pg_conn_str
from helpers import CLI, failed, ok

CONFIG = """\
workspace "ml" {
  description = "artifacts of ${trainform.workspace}"
}

compute "local" {
  type                = "local"
  max_concurrent_runs = 2
}

run "train" {
  experiment = "tests"
  workspace  = workspace.ml
  compute    = compute.local
  source_dir = "src"
  script     = "train.py"
  arguments  = ["--env", trainform.workspace]
}

output "env" {
  value = trainform.workspace
}
"""

TRAIN = """\
import sys
from trainform.tracking import log_metric
for step in range(1, 4):
    log_metric("loss", 1.0 / step, step=step)
print("trained in", sys.argv[2])
"""


def pg_block(schema: str = "trainform") -> str:
    return f'trainform {{\n  backend "pg" {{\n    schema_name = "{schema}"\n  }}\n}}\n\n'


def sqlite_block(path: str) -> str:
    return f'trainform {{\n  backend "sqlite" {{\n    path = "{path}"\n  }}\n}}\n\n'


@pytest.fixture
def password_conn_str(request: pytest.FixtureRequest) -> str:
    """A database of this test's own, reached as a role that must give its password."""
    pg_conn_str(request)  # skips (fails under CI) without PostgreSQL
    from postgres import PASSWORD, PASSWORD_ROLE

    server = request.getfixturevalue("pg_server")
    database = server.create_database(owner=PASSWORD_ROLE)
    return str(server.conn_str(database, user=PASSWORD_ROLE, password=PASSWORD))


def test_state_moves_to_postgresql_and_back_losing_nothing(
    cli: CLI, password_conn_str: str
) -> None:
    from postgres import PASSWORD

    cli.write("src/train.py", TRAIN)
    cli.write("main.train.hcl", CONFIG)
    ok(cli("init"))
    assert json.loads((cli.cwd / ".trainform" / "backend.json").read_text())["kind"] == "sqlite"
    ok(cli("apply", "-auto-approve", timeout=120))
    ok(cli("workspace", "new", "dev"))
    ok(cli("apply", "-auto-approve", timeout=120))
    ok(cli("workspace", "new", "empty"))  # a workspace with nothing in it moves too
    ok(cli("workspace", "select", "dev"))
    before = {ws: history(cli, ws) for ws in ("default", "dev")}
    assert [r["status"] for r in before["dev"]["runs"]] == ["completed"]
    assert "0.333" in before["dev"]["metrics"][0]

    # the configuration now names PostgreSQL
    cli.env["TRAINFORM_PG_CONN_STR"] = password_conn_str
    cli.write("main.train.hcl", pg_block() + CONFIG)
    refused = failed(cli("plan"), "the backend changed", "-migrate-state", "-reconfigure")
    failed(cli("runs", "list"), "the backend changed")
    failed(cli("init"), "The backend changed", "init -migrate-state", "init -reconfigure")
    for result in (refused, failed(cli("init"))):
        assert PASSWORD not in result.all
    failed(cli("init", "-migrate-state", "-reconfigure"), "exclude each other")

    out = ok(cli("init", "-migrate-state")).out
    assert 'workspace "default": ' in out and 'workspace "dev": ' in out, out
    assert 'workspace "empty": empty' in out
    assert "1 runs" in out and "3 run_metrics" in out, out
    assert "Copied and verified." in out
    assert PASSWORD not in out
    recorded = (cli.cwd / ".trainform" / "backend.json").read_text()
    assert json.loads(recorded)["kind"] == "pg"
    assert PASSWORD not in recorded and "password" not in recorded

    assert ok(cli("workspace", "list")).out.splitlines() == ["  default", "* dev", "  empty"]
    for ws in ("default", "dev"):
        assert history(cli, ws) == before[ws], ws
    # nothing to do: the runs' fingerprints, resources and outputs came across as they were
    ok(cli("plan", "-detailed-exitcode"), 0)
    ok(cli("plan", "-detailed-exitcode", TRAINFORM_WORKSPACE="default"), 0)

    # a change made in PostgreSQL, then back to SQLite (a new file: the old one is left as
    # it was, and a migration never overwrites a state)
    cli.write("src/train.py", TRAIN + "# changed\n")
    ok(cli("apply", "-auto-approve", timeout=120))
    in_pg = {ws: history(cli, ws) for ws in ("default", "dev")}
    assert len(in_pg["dev"]["runs"]) == 2
    cli.write("main.train.hcl", sqlite_block("back/state.db") + CONFIG)
    failed(cli("plan"), "the backend changed")
    out = ok(cli("init", "-migrate-state")).out
    assert "2 runs" in out and "6 run_metrics" in out, out
    assert (cli.cwd / "back" / "state.db").is_file()
    assert (cli.cwd / "back" / "state.db.d" / "dev" / "state.db").is_file()
    for ws in ("default", "dev"):
        assert history(cli, ws) == in_pg[ws], ws
    ok(cli("plan", "-detailed-exitcode"), 0)


def test_reconfigure_uses_the_new_backend_and_leaves_the_old(cli: CLI, request) -> None:
    cli.write("src/train.py", TRAIN)
    cli.write("main.train.hcl", CONFIG)
    ok(cli("init"))
    ok(cli("apply", "-auto-approve", timeout=120))
    cli.env["TRAINFORM_PG_CONN_STR"] = pg_conn_str(request)
    cli.write("main.train.hcl", pg_block("fresh") + CONFIG)
    out = ok(cli("init", "-reconfigure")).out
    assert "was left as it is" in out
    assert json.loads(ok(cli("runs", "list", "--json")).out) == []  # a new, empty state
    assert "workspace.ml will be created" in ok(cli("plan")).out
    # the old state is still there for whoever goes back
    cli.write("main.train.hcl", CONFIG)
    failed(cli("plan"), "the backend changed")
    ok(cli("init", "-reconfigure"))
    assert len(json.loads(ok(cli("runs", "list", "--json")).out)) == 1
    ok(cli("plan", "-detailed-exitcode"), 0)


def test_init_without_a_record_notices_state_left_in_the_default_file(cli: CLI, request) -> None:
    """A directory applied before init recorded backends: moving to pg is not silent."""
    cli.write("main.train.hcl", 'workspace "ml" {}\n')
    ok(cli("apply", "-auto-approve"))
    (cli.cwd / ".trainform" / "backend.json").unlink(missing_ok=True)
    cli.env["TRAINFORM_PG_CONN_STR"] = pg_conn_str(request)
    cli.write("main.train.hcl", pg_block() + 'workspace "ml" {}\n')
    failed(cli("init"), "state was in SQLite", ".trainform/state.db")
    ok(cli("init", "-migrate-state"))
    assert ok(cli("state", "list")).out == "workspace.ml\n"


def test_plan_without_init_refuses_a_new_backend_while_the_default_file_holds_state(
    cli: CLI, request
) -> None:
    """Applied without `init` (no backend recorded), then a pg block added: `plan` must not
    plan everything anew in the empty database, abandoning the SQLite state."""
    cli.write("main.train.hcl", 'workspace "ml" {}\n')
    ok(cli("apply", "-auto-approve"))
    assert not (cli.cwd / ".trainform" / "backend.json").exists()
    cli.env["TRAINFORM_PG_CONN_STR"] = pg_conn_str(request)
    cli.write("main.train.hcl", pg_block() + 'workspace "ml" {}\n')
    for command in (("plan",), ("apply", "-auto-approve"), ("state", "list")):
        failed(cli(*command), "the backend changed: state is in SQLite", "init -migrate-state")
    ok(cli("init", "-migrate-state"))
    ok(cli("plan", "-detailed-exitcode"), 0)


def test_a_destination_with_other_state_is_refused_before_anything_is_copied(
    cli: CLI, request
) -> None:
    """Two workspaces to move; PostgreSQL already holds other state for one of them. The
    migration copies nothing (not even the other workspace) and names -force-copy, which
    replaces it; a migration run again after it finds the same state there and says so."""
    conn = pg_conn_str(request)
    cli.write("main.train.hcl", 'workspace "ml" {}\n')
    ok(cli("init"))
    ok(cli("apply", "-auto-approve"))
    ok(cli("workspace", "new", "dev"))
    ok(cli("apply", "-auto-approve"))
    ok(cli("workspace", "select", "default"))
    local = {ws: history(cli, ws)["state"] for ws in ("default", "dev")}

    # Someone else's state in the database's "dev", made from another folder.
    other = CLI(cli.cwd.parent / "other", {**cli.env, "TRAINFORM_PG_CONN_STR": conn})
    other.cwd.mkdir()
    other.write("main.train.hcl", pg_block() + 'workspace "theirs" {}\n')
    ok(other("init"))
    ok(other("workspace", "new", "dev"))
    ok(other("apply", "-auto-approve"))
    theirs = json.loads(ok(other("state", "pull", TRAINFORM_WORKSPACE="dev")).out)

    cli.env["TRAINFORM_PG_CONN_STR"] = conn
    cli.write("main.train.hcl", pg_block() + 'workspace "ml" {}\n')
    failed(cli("init", "-force-copy"), "-force-copy goes with -migrate-state")
    failed(
        cli("init", "-migrate-state"),
        'already holds other state for workspace(s) "dev"',
        "nothing was copied",
        "init -migrate-state -force-copy",
    )
    assert json.loads(ok(other("state", "pull", TRAINFORM_WORKSPACE="dev")).out) == theirs
    assert "workspace.ml" not in ok(other("state", "list")).out  # default not copied either

    out = ok(cli("init", "-migrate-state", "-force-copy")).out
    assert "Copied and verified." in out
    for ws in ("default", "dev"):
        assert history(cli, ws)["state"] == local[ws]
    ok(cli("plan", "-detailed-exitcode"), 0)

    # Interrupted after copying (the record of the new backend lost): run again, it converges.
    (cli.cwd / ".trainform" / "backend.json").unlink()
    out = ok(cli("init", "-migrate-state")).out
    assert 'workspace "default": already there (the same state)' in out
    assert 'workspace "dev": already there (the same state)' in out
