"""trainform.state.backend: where each workspace's SQLite state lives, workspace names and
selection, the record `init` keeps of a backend (never a password), and the location a
background process is given (never a connection string)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainform.errors import StateError
from trainform.state import backend as B


def sqlite(tmp_path: Path) -> B.BackendSpec:
    return B.BackendSpec("sqlite", tmp_path / ".trainform" / "state.db")


def test_workspaces_have_their_own_file_apart_from_workspace_blocks(tmp_path: Path) -> None:
    spec = sqlite(tmp_path)
    assert B.sqlite_path(spec, "default") == tmp_path / ".trainform" / "state.db"
    dev = B.sqlite_path(spec, "dev")
    assert dev == tmp_path / ".trainform" / "state.db.d" / "dev" / "state.db"
    # the artifact stores of workspace blocks are in .trainform/workspaces/: no clash
    (tmp_path / ".trainform" / "workspaces" / "ml").mkdir(parents=True)
    assert B.workspaces(spec) == ["default"]
    B.new_workspace(spec, "dev")
    assert B.workspaces(spec) == ["default", "dev"]
    assert B.workspace_exists(spec, "dev") and not B.workspace_exists(spec, "ml")
    with pytest.raises(StateError, match='workspace "dev" already exists'):
        B.new_workspace(spec, "dev")
    assert B.delete_workspace(spec, "dev") == 0
    assert B.workspaces(spec) == ["default"]
    with pytest.raises(StateError, match='"default" workspace cannot be deleted'):
        B.delete_workspace(spec, "default")


@pytest.mark.parametrize("name", ["", "../x", "a/b", "-x", "x" * 64, "sp ace", ".hidden"])
def test_bad_workspace_names_are_refused(name: str) -> None:
    with pytest.raises(StateError, match="invalid workspace name"):
        B.check_workspace_name(name)


def test_the_selection_comes_from_the_environment_then_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(B.WORKSPACE_ENV, raising=False)
    assert B.selected_workspace(tmp_path) == "default"
    B.select_workspace(tmp_path, "dev")
    assert B.selected_workspace(tmp_path) == "dev"
    monkeypatch.setenv(B.WORKSPACE_ENV, "prod")
    assert B.selected_workspace(tmp_path) == "prod"
    with pytest.raises(StateError, match="TRAINFORM_WORKSPACE=prod"):
        B.current_workspace(sqlite(tmp_path), tmp_path)
    monkeypatch.delenv(B.WORKSPACE_ENV)
    B.select_workspace(tmp_path, "default")
    assert not (tmp_path / ".trainform" / "workspace").exists()


def test_the_recorded_backend_never_holds_a_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in B.PG_ENV:
        monkeypatch.delenv(name, raising=False)
    url = "postgresql://ci:s3cret-pw@db.example:5433/state?sslmode=require"
    spec = B.BackendSpec("pg", conn_str=url, schema_name="team")
    B.record_backend(tmp_path, spec)
    text = (tmp_path / ".trainform" / "backend.json").read_text()
    assert "s3cret" not in text and "password" not in text
    assert json.loads(text) == {
        "kind": "pg",
        "conn_str": "dbname=state host=db.example port=5433 sslmode=require user=ci",
        "schema_name": "team",
    }
    # the same server in libpq's key=value form, with another password, is the same backend
    same = B.BackendSpec(
        "pg",
        conn_str="host=db.example port=5433 dbname=state user=ci password=x sslmode=require",
        schema_name="team",
    )
    assert B.same_backend(spec, same, tmp_path)
    other = B.BackendSpec("pg", conn_str=url, schema_name="other")
    assert not B.same_backend(spec, other, tmp_path)
    # read back: without the password (libpq finds it), or the environment's if it matches
    assert B.recorded_backend(tmp_path).conn_str == json.loads(text)["conn_str"]
    monkeypatch.setenv("TRAINFORM_PG_CONN_STR", url)
    assert B.recorded_backend(tmp_path).conn_str == url
    monkeypatch.setenv("TRAINFORM_PG_CONN_STR", url.replace("db.example", "other.example"))
    assert "s3cret" not in B.recorded_backend(tmp_path).conn_str


def test_an_unparsable_connection_string_is_not_echoed() -> None:
    with pytest.raises(StateError) as caught:
        B.without_password("s3cret%%garbage")
    assert "s3cret" not in str(caught.value)


def test_a_changed_backend_is_refused_until_init_chooses(tmp_path: Path) -> None:
    old = sqlite(tmp_path)
    B.check_initialised(tmp_path, old)  # nothing recorded: nothing to compare
    B.record_backend(tmp_path, old)
    B.check_initialised(tmp_path, old)
    new = B.BackendSpec("sqlite", tmp_path / "elsewhere.db")
    with pytest.raises(StateError, match=r"the backend changed.*-migrate-state.*-reconfigure"):
        B.check_initialised(tmp_path, new)
    assert B.previous_backend(tmp_path, new) == old
    assert B.previous_backend(tmp_path, old) is None
    # recorded relative to the configuration: a moved folder is the same backend
    record = json.loads((tmp_path / ".trainform" / "backend.json").read_text())
    assert record == {"kind": "sqlite", "path": ".trainform/state.db"}
    moved = tmp_path / "moved"
    moved.mkdir()
    (tmp_path / ".trainform").rename(moved / ".trainform")
    B.check_initialised(moved, sqlite(moved))


def test_a_background_process_gets_no_connection_string(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "postgresql://ci:s3cret-pw@127.0.0.1:1/db"
    spec = B.BackendSpec("pg", conn_str=url, schema_name="team")
    where = B.location(spec, "dev")
    assert where == {"kind": "pg", "schema_name": "team", "workspace": "dev"}
    assert B.child_environment(spec)["TRAINFORM_PG_CONN_STR"] == url
    for name in B.PG_ENV:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(StateError, match="TRAINFORM_PG_CONN_STR is not set"):
        B.open_location(where)
    local = B.location(sqlite(tmp_path), "dev")
    assert local["path"].endswith("state.db.d/dev/state.db")
