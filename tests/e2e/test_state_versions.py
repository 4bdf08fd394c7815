"""State versions and moving state by hand, through the real CLI, on SQLite and PostgreSQL:
every apply records a version (serial, when, who@host, command, plan digest) that
`state list-versions` lists and `state show -version N` shows as it was (secrets as
(sensitive)); `state pull` prints the state document; `state push` replaces it, refusing a
document of another lineage or an older serial unless -force, and waiting for the lock."""

from __future__ import annotations

import json

import pytest
from backends import KINDS, Backend, backend_for
from helpers import CLI, failed, ok

from trainform.state.backend import open_state

CONFIG = """\
variable "token" {
  type      = string
  sensitive = true
  default   = "hunter2-token"
}

workspace "ml" {
  description = "version ${var.n}"
}

output "n" {
  value = var.n
}

output "secret" {
  value     = var.token
  sensitive = true
}
"""


@pytest.fixture(params=KINDS)
def backend(request: pytest.FixtureRequest, cli: CLI) -> Backend:
    return backend_for(request, cli)


def apply(backend: Backend, n: int) -> None:
    backend.write(f'variable "n" {{\n  default = {n}\n}}\n\n' + CONFIG)
    ok(backend.cli("apply", "-auto-approve"))


def versions(cli: CLI) -> list[list[str]]:
    lines = ok(cli("state", "list-versions")).out.splitlines()
    assert lines[0].split() == ["SERIAL", "CREATED", "WHO", "COMMAND", "PLAN"], lines
    return [line.split() for line in lines[1:]]


def test_each_apply_records_a_version_that_show_version_shows(backend: Backend) -> None:
    cli = backend.cli
    backend.write('variable "n" {\n  default = 1\n}\n\n' + CONFIG)
    assert "No state versions recorded yet." in ok(cli("state", "list-versions")).out
    apply(backend, 1)
    apply(backend, 2)
    rows = versions(cli)
    assert len(rows) == 2, rows
    newest, oldest = rows
    assert int(newest[0]) > int(oldest[0])
    assert "@" in newest[2] and newest[3] == "trainform" and newest[4] == "apply"
    assert len(newest[-1]) == 12 and newest[-1] != oldest[-1]  # the plans' digests differ

    old = ok(cli("state", "show", "-version", oldest[0])).out
    assert f"# state version {oldest[0]}" in old and "workspace.ml (ready)" in old
    assert "n = 1" in old and "secret = (sensitive)" in old
    assert "hunter2" not in old
    one = ok(cli("state", "show", "-version", oldest[0], "workspace.ml")).out
    assert '"version 1"' in one
    assert '"version 2"' in ok(cli("state", "show", "-version", newest[0], "workspace.ml")).out
    assert '"version 2"' in ok(cli("state", "show", "workspace.ml")).out  # the current one
    failed(cli("state", "show", "-version", "99"), "no state version 99", f"versions: {newest[0]}")
    failed(
        cli("state", "show", "-version", oldest[0], "workspace.mll"),
        f"no resource 'workspace.mll' in state version {oldest[0]}",
        "workspace.ml",
    )
    # state rm moves the serial: a version of its own, with no plan
    ok(cli("state", "rm", "workspace.ml"))
    rows = versions(cli)
    assert len(rows) == 3 and rows[0][2:] == [rows[0][2], "state", "rm", "-"], rows


def test_the_plan_digest_is_the_saved_plans(backend: Backend) -> None:
    from trainform.engine.session import plan_digest
    from trainform.planner import planfile

    cli = backend.cli
    backend.write('variable "n" {\n  default = 1\n}\n\n' + CONFIG)
    ok(cli("plan", "-out=p.plan"))
    ok(cli("apply", "p.plan"))
    digest = plan_digest(planfile.load(cli.cwd / "p.plan").plan)
    assert versions(cli)[0][-1] == digest[:12]
    store = open_state(backend.spec(), "default")
    try:
        (version,) = store.versions()
        assert version["plan_digest"] == digest
        assert version["command"].startswith("trainform apply")
    finally:
        store.close()


def test_pull_prints_the_state_document_and_push_refuses_what_would_lose_state(
    backend: Backend, tmp_path
) -> None:
    cli = backend.cli
    apply(backend, 1)
    pulled = ok(cli("state", "pull")).out
    doc = json.loads(pulled)
    assert doc["format_version"] == "1" and doc["serial"] > 0 and doc["lineage"]
    assert [r["address"] for r in doc["resources"]] == ["workspace.ml"]
    assert doc["outputs"]["n"] == {"value": 1, "sensitive": False}
    assert "hunter2" not in pulled  # secrets only as salted hashes
    (tmp_path / "v1.json").write_text(pulled)

    apply(backend, 2)
    serial = json.loads(ok(cli("state", "pull")).out)["serial"]
    failed(
        cli("state", "push", str(tmp_path / "v1.json")),
        f"cannot push state serial {doc['serial']}",
        f"at serial {serial}, newer than the document",
        "-force",
    )
    other = {**doc, "lineage": "another-lineage", "serial": serial + 5}
    (tmp_path / "other.json").write_text(json.dumps(other))
    failed(
        cli("state", "push", str(tmp_path / "other.json")),
        "cannot push state of lineage another-lineage",
        f"whose lineage is {doc['lineage']}",
    )
    assert '"version 2"' in ok(cli("state", "show", "workspace.ml")).out  # nothing changed

    # -force pushes the older document back (from stdin), as a new serial
    out = ok(cli("state", "push", "-force", "-", input=pulled)).out
    assert f"(serial {serial + 1})" in out
    assert '"version 1"' in ok(cli("state", "show", "workspace.ml")).out
    assert versions(cli)[0][3:5] == ["state", "push"]
    # a document pushed onto the state it came from, pulled again, is accepted as it is
    again = ok(cli("state", "pull")).out
    ok(cli("state", "push", "-", input=again))
    assert json.loads(ok(cli("state", "pull")).out)["serial"] == serial + 1

    failed(cli("state", "push", "-", input="{not json"), "stdin:1:2: not a state document")
    failed(cli("state", "push", str(tmp_path / "missing.json")), "cannot read")


def test_push_waits_for_the_lock_and_names_its_holder(backend: Backend) -> None:
    cli = backend.cli
    apply(backend, 1)
    pulled = ok(cli("state", "pull")).out
    store = open_state(backend.spec(), "default")
    lock = store.acquire_lock("a test holding it")
    try:
        failed(
            cli("state", "push", "-lock-timeout=1s", "-", input=pulled),
            "state is locked",
            "a test holding it",
        )
        ok(cli("state", "push", "-lock=false", "-", input=pulled))  # as Terraform's -lock=false
    finally:
        store.release_lock(lock)
        store.close()
    ok(cli("state", "push", "-", input=pulled))


def test_pull_of_a_workspace_with_nothing_applied_is_an_empty_document(backend: Backend) -> None:
    backend.write('variable "n" {\n  default = 1\n}\n\n' + CONFIG)
    doc = json.loads(ok(backend.cli("state", "pull")).out)
    assert doc == {
        "format_version": "1",
        "lineage": None,
        "serial": 0,
        "resources": [],
        "outputs": {},
    }
