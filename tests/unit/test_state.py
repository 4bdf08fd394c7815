"""The SQLite state store on real files: schema migrations, lineage and serial, resources,
outputs, apply history, the lock (with real processes as holders), sealing of sensitive
values, and how SQLite and filesystem failures reach the user."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trainform.errors import LockError, StateError
from trainform.providers.base import ResourceState
from trainform.state import secrets
from trainform.state.locking import process_start_time
from trainform.state.sqlite import SQLiteStateStore
from trainform.state.store import SCHEMA_VERSION, LockInfo


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / ".trainform" / "state.db"


@pytest.fixture
def store(db: Path) -> Iterator[SQLiteStateStore]:
    s = SQLiteStateStore(db)
    yield s
    s.close()


def resource(address: str = "compute.a", **kw: Any) -> ResourceState:
    kind, _, rest = address.partition(".")
    name = rest.split("[")[0]
    return ResourceState(
        address=address,
        kind=kind,
        name=name,
        key=kw.pop("key", None),
        provider=kw.pop("provider", "local"),
        attributes=kw.pop("attributes", {"description": "x"}),
        computed=kw.pop("computed", {"workdir_path": "/w"}),
        **kw,
    )


def tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        }
    finally:
        conn.close()


def set_schema_version(path: Path, version: int) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", [str(version)])
    conn.close()


def db_bytes(path: Path) -> bytes:
    """Everything SQLite keeps on disk for this database (main file, WAL, shared memory)."""
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))


# --------------------------------------------------------------------------- migrations


V1_TABLES = {"meta", "resources", "outputs", "lock", "apply_history"}


def test_migrations_create_the_current_schema_from_nothing(db: Path) -> None:
    assert not db.exists()
    s = SQLiteStateStore(db)
    try:
        assert SCHEMA_VERSION >= 2
        assert s.schema_version() == SCHEMA_VERSION
    finally:
        s.close()
    assert {*V1_TABLES, "runs"} <= tables(db)


def test_a_schema_5_state_gains_the_nonfinite_column_and_keeps_its_points(db: Path) -> None:
    s = SQLiteStateStore(db)
    s.put_metrics("r1", [{"name": "loss", "step": 0, "value": 0.5, "time": 1.0}])
    s.close()
    with sqlite3.connect(db) as conn:  # as trainform 0.1 with schema 5 left it
        conn.execute("ALTER TABLE run_metrics DROP COLUMN nonfinite")
        conn.execute("UPDATE meta SET value='5' WHERE key='schema_version'")
    conn.close()
    s = SQLiteStateStore(db)
    try:
        assert s.schema_version() == SCHEMA_VERSION
        assert s.metrics("r1") == [
            {"name": "loss", "step": 0, "value": 0.5, "time": 1.0, "source": "client"}
        ]
        s.put_metrics("r1", [{"name": "loss", "step": 1, "value": None, "nonfinite": "inf"}])
        assert s.metrics("r1")[0]["nonfinite"] == "inf"
    finally:
        s.close()


def test_reopening_keeps_data_and_version(db: Path) -> None:
    s = SQLiteStateStore(db)
    s.put_resource(resource())
    lineage = s.lineage_serial()[0]
    s.close()
    s = SQLiteStateStore(db)
    try:
        assert s.schema_version() == SCHEMA_VERSION
        assert list(s.resources()) == ["compute.a"]
        assert s.lineage_serial() == (lineage, 1)
    finally:
        s.close()


def test_upgrade_from_version_1_adds_run_history(db: Path) -> None:
    s = SQLiteStateStore(db)
    s.put_resource(resource())
    s.close()
    # turn it into what schema version 1 wrote: only the tables of the first migration
    conn = sqlite3.connect(db)
    with conn:
        for table in tables(db) - V1_TABLES:
            conn.execute(f"DROP TABLE {table}")
        conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    conn.close()
    assert tables(db) == V1_TABLES
    s = SQLiteStateStore(db)
    try:
        assert s.schema_version() == SCHEMA_VERSION
        assert "runs" in tables(db)
        assert s.count_runs("workspace.ws") == 0
        assert list(s.resources()) == ["compute.a"]
    finally:
        s.close()


def test_newer_schema_version_is_refused(db: Path) -> None:
    SQLiteStateStore(db).close()
    set_schema_version(db, SCHEMA_VERSION + 1)
    with pytest.raises(StateError) as info:
        SQLiteStateStore(db)
    message = str(info.value)
    newer = SCHEMA_VERSION + 1
    assert (
        f"has schema version {newer}, newer than this trainform understands ({SCHEMA_VERSION})"
        in message
    )
    assert "upgrade trainform" in message
    # refusing changed nothing
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
        str(SCHEMA_VERSION + 1),
    )
    conn.close()


# --------------------------------------------------------------------------- lineage and serial


def test_lineage_is_assigned_on_first_write_and_serial_counts_writes(db: Path) -> None:
    s = SQLiteStateStore(db)
    assert s.lineage_serial() == (None, 0)
    s.put_resource(resource("compute.a"))
    lineage, serial = s.lineage_serial()
    assert lineage is not None and len(lineage) == 36
    assert serial == 1
    s.put_resource(resource("compute.b"))
    s.put_resource(resource("compute.a", attributes={"description": "changed"}))
    assert s.lineage_serial() == (lineage, 3)
    s.remove_resource("compute.b")
    assert s.lineage_serial() == (lineage, 4)
    s.close()
    other = SQLiteStateStore(db)
    try:
        assert other.lineage_serial() == (lineage, 4)
    finally:
        other.close()


def test_each_state_file_has_its_own_lineage(tmp_path: Path) -> None:
    a, b = SQLiteStateStore(tmp_path / "a.db"), SQLiteStateStore(tmp_path / "b.db")
    try:
        a.put_resource(resource())
        b.put_resource(resource())
        assert a.lineage_serial()[0] != b.lineage_serial()[0]
    finally:
        a.close()
        b.close()


# --------------------------------------------------------------------------- resources


def test_put_resource_round_trips_every_field(store: SQLiteStateStore) -> None:
    written = ResourceState(
        address='compute.n["a b"]',
        kind="compute",
        name="n",
        key="a b",
        provider="local",
        attributes={"tags": {"k": "v"}, "max_concurrent_runs": 2, "workdir": None, "flag": True},
        computed={"facts": {"cpus": 4, "gpus": [{"index": 0}]}, "workdir_path": "/w"},
        dependencies=("workspace.ws", "environment.e"),
        status="tainted",
    )
    counted = resource("compute.g[3]", key=3)
    store.put_resource(written)
    store.put_resource(counted)
    assert store.resources() == {'compute.n["a b"]': written, "compute.g[3]": counted}


def test_put_resource_replaces_the_record(store: SQLiteStateStore) -> None:
    store.put_resource(resource(status="pending"))
    store.put_resource(resource(attributes={"description": "new"}, computed={}, status="ready"))
    [got] = store.resources().values()
    assert (got.attributes, got.computed, got.status) == ({"description": "new"}, {}, "ready")


def test_remove_resource(store: SQLiteStateStore) -> None:
    store.put_resource(resource("compute.a"))
    store.put_resource(resource("compute.b"))
    store.remove_resource("compute.a")
    assert list(store.resources()) == ["compute.b"]


def test_move_resource(store: SQLiteStateStore) -> None:
    store.put_resource(resource("compute.old", attributes={"description": "kept"}))
    serial = store.lineage_serial()[1]
    store.move_resource("compute.old", 'compute.new["x"]', "compute", "new", "x")
    moved = store.resources()
    assert list(moved) == ['compute.new["x"]']
    got = moved['compute.new["x"]']
    assert (got.name, got.key, got.attributes) == ("new", "x", {"description": "kept"})
    assert store.lineage_serial()[1] == serial + 1


# --------------------------------------------------------------------------- outputs


def test_outputs_are_replaced_as_a_whole(store: SQLiteStateStore) -> None:
    store.put_outputs(
        {
            "a": {"value": [1, {"k": "v"}], "sensitive": False},
            "b": {"value": "x", "sensitive": False},
        }
    )
    assert store.outputs() == {
        "a": {"value": [1, {"k": "v"}], "sensitive": False},
        "b": {"value": "x", "sensitive": False},
    }
    serial = store.lineage_serial()[1]
    store.put_outputs({"b": {"value": "y", "sensitive": False}})
    assert store.outputs() == {"b": {"value": "y", "sensitive": False}}
    assert store.lineage_serial()[1] == serial + 1


def test_unchanged_outputs_do_not_bump_the_serial(store: SQLiteStateStore) -> None:
    outputs = {"a": {"value": 1, "sensitive": False}}
    store.put_outputs(outputs)
    serial = store.lineage_serial()[1]
    store.put_outputs(dict(outputs))
    assert store.lineage_serial()[1] == serial
    store.put_outputs({})
    assert store.outputs() == {}
    assert store.lineage_serial()[1] == serial + 1


# --------------------------------------------------------------------------- apply history


def test_apply_history_rows(store: SQLiteStateStore) -> None:
    first = store.begin_apply("apply -auto-approve")
    [row] = store.history()
    assert row["id"] == first
    assert (row["outcome"], row["finished"], row["command"]) == (
        "running",
        None,
        "apply -auto-approve",
    )
    assert row["host"] == socket.gethostname()
    store.put_resource(resource())
    store.finish_apply(
        first, "ok", [{"address": "compute.a", "actions": ["create"], "outcome": "ok"}]
    )
    second = store.begin_apply("destroy")
    store.finish_apply(second, "failed", [])
    newest, oldest = store.history()
    assert (newest["id"], newest["outcome"], newest["command"]) == (second, "failed", "destroy")
    assert oldest["outcome"] == "ok"
    assert oldest["finished"] is not None
    assert '"compute.a"' in oldest["changes"]
    assert int(oldest["serial"]) == 1
    assert [r["id"] for r in store.history(limit=1)] == [second]


# --------------------------------------------------------------------------- locking


def test_lock_acquire_and_release(db: Path, store: SQLiteStateStore) -> None:
    lock = store.acquire_lock("apply")
    assert (lock.operation, lock.pid, lock.host, lock.taken_over) == (
        "apply",
        os.getpid(),
        socket.gethostname(),
        "",
    )
    store.release_lock(lock)
    again = store.acquire_lock("plan")
    assert again.id != lock.id
    store.release_lock(again)


def test_second_acquire_fails_naming_the_holder(db: Path, store: SQLiteStateStore) -> None:
    held = store.acquire_lock("apply")
    other = SQLiteStateStore(db)
    try:
        with pytest.raises(LockError) as info:
            other.acquire_lock("plan")
        holder = info.value.holder
        assert (holder["id"], holder["operation"], holder["pid"], holder["host"]) == (
            held.id,
            "apply",
            os.getpid(),
            socket.gethostname(),
        )
        message = str(info.value)
        assert held.id in message
        assert "'apply'" in message
        assert f"trainform force-unlock {held.id}" in message
        # releasing someone else's lock object does nothing
        other.release_lock(LockInfo("not-the-id", "x", "plan", "now", 1, "h"))
        with pytest.raises(LockError):
            other.acquire_lock("plan")
        store.release_lock(held)
        other.release_lock(other.acquire_lock("plan"))
    finally:
        other.close()


def test_timeout_fails_while_the_holder_keeps_the_lock(db: Path, store: SQLiteStateStore) -> None:
    held = store.acquire_lock("apply")
    other = SQLiteStateStore(db)
    try:
        with pytest.raises(LockError) as info:
            other.acquire_lock("plan", timeout=0.6)
        assert info.value.holder["id"] == held.id
    finally:
        other.close()
        store.release_lock(held)


def test_timeout_waits_for_a_release(db: Path, store: SQLiteStateStore) -> None:
    held = store.acquire_lock("apply")
    got: list[Any] = []
    started = threading.Event()

    def waiter() -> None:
        other = SQLiteStateStore(db)
        try:
            started.set()
            got.append(other.acquire_lock("plan", timeout=60))
        except LockError as exc:  # pragma: no cover - reported by the assertion below
            got.append(exc)
        finally:
            other.close()

    thread = threading.Thread(target=waiter)
    thread.start()
    started.wait()
    threading.Event().wait(0.5)  # let the waiter find the lock taken at least once
    store.release_lock(held)
    thread.join(timeout=60)
    assert len(got) == 1
    assert isinstance(got[0], LockInfo), got[0]
    assert got[0].operation == "plan"


def write_lock_row(
    db: Path, pid: int, pid_start: str, host: str | None = None, lock_id: str = "old-lock"
) -> None:
    """Record ``pid`` as the holder, as that process's own acquire_lock would have."""
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "INSERT INTO lock (name, id, who, operation, created, pid, host, pid_start) "
            "VALUES ('state', ?, 'someone', 'apply', '2024-01-01T00:00:00+00:00', ?, ?, ?)",
            [lock_id, pid, host or socket.gethostname(), pid_start],
        )
    conn.close()


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_lock_of_a_dead_process_on_this_host_is_taken_over(
    db: Path, store: SQLiteStateStore, sleeper: subprocess.Popen[bytes]
) -> None:
    write_lock_row(db, sleeper.pid, process_start_time(sleeper.pid))
    with pytest.raises(LockError):
        store.acquire_lock("plan")  # alive: refused
    sleeper.kill()
    sleeper.wait()
    lock = store.acquire_lock("plan")
    assert lock.taken_over == "old-lock"
    assert lock.pid == os.getpid()
    store.release_lock(lock)


def test_live_holder_is_never_taken_over(
    db: Path, store: SQLiteStateStore, sleeper: subprocess.Popen[bytes]
) -> None:
    write_lock_row(db, sleeper.pid, process_start_time(sleeper.pid))
    for timeout in (0.0, 0.5):
        with pytest.raises(LockError) as info:
            store.acquire_lock("apply", timeout=timeout)
        assert info.value.holder["pid"] == sleeper.pid
        assert info.value.holder["id"] == "old-lock"
    assert sleeper.poll() is None


def test_recycled_pid_is_not_mistaken_for_the_holder(
    db: Path, store: SQLiteStateStore, sleeper: subprocess.Popen[bytes]
) -> None:
    """A live process with the recorded pid but another start time is not the holder."""
    write_lock_row(db, sleeper.pid, "1")
    lock = store.acquire_lock("plan")
    assert lock.taken_over == "old-lock"
    store.release_lock(lock)


def test_lock_from_another_host_is_never_taken_over(db: Path, store: SQLiteStateStore) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_lock_row(db, dead.pid, "", host="some-other-host")
    with pytest.raises(LockError) as info:
        store.acquire_lock("plan")
    assert info.value.holder["host"] == "some-other-host"


def test_force_unlock_needs_the_right_id(db: Path, store: SQLiteStateStore) -> None:
    with pytest.raises(LockError, match="state is not locked"):
        store.force_unlock("anything")
    write_lock_row(db, 1, "", host="some-other-host", lock_id="remote-lock")
    with pytest.raises(LockError) as info:
        store.force_unlock("wrong-id")
    assert "lock id 'wrong-id' does not match the current lock" in str(info.value)
    assert info.value.holder["id"] == "remote-lock"
    with pytest.raises(LockError):
        store.acquire_lock("plan")  # still held
    removed = store.force_unlock("remote-lock")
    assert (removed.id, removed.host) == ("remote-lock", "some-other-host")
    store.release_lock(store.acquire_lock("plan"))


# --------------------------------------------------------------------------- sealing


def test_seal_and_match() -> None:
    sealed = secrets.seal("hunter2")
    assert secrets.is_sealed(sealed)
    assert secrets.matches(sealed, "hunter2")
    assert not secrets.matches(sealed, "hunter3")
    assert not secrets.matches(sealed, None)
    assert "hunter2" not in str(sealed)
    # salted: the same value seals differently each time, so equal secrets cannot be spotted
    assert secrets.seal("hunter2") != sealed
    # structured values match regardless of key order, and types count
    assert secrets.matches(secrets.seal({"a": 1, "b": [1, 2]}), {"b": [1, 2], "a": 1})
    assert not secrets.matches(secrets.seal(1), "1")
    assert not secrets.matches("hunter2", "hunter2")  # a plain value is not a seal
    assert not secrets.is_sealed({"__sensitive__": "x", "other": 1})


def test_sealed_values_are_not_in_the_database_files(db: Path, store: SQLiteStateStore) -> None:
    secret, visible = "pa55-w0rd-8c1e", "plain-marker-4d2a"
    store.put_resource(resource(attributes={"password": secrets.seal(secret), "note": visible}))
    store.put_outputs(
        {
            "token": {"value": secrets.seal(secret), "sensitive": True},
            "note": {"value": visible, "sensitive": False},
        }
    )
    data = db_bytes(db)
    assert visible.encode() in data  # the search does see what is stored
    assert secret.encode() not in data
    stored = store.resources()["compute.a"].attributes["password"]
    assert secrets.matches(stored, secret)
    assert secrets.matches(store.outputs()["token"]["value"], secret)


# --------------------------------------------------------------------------- failures


def test_state_path_under_a_file_is_a_state_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a folder")
    for path in (tmp_path / "afile" / "state.db", tmp_path / "afile" / "sub" / "state.db"):
        with pytest.raises(StateError) as info:
            SQLiteStateStore(path)
        message = str(info.value)
        assert str(path) in message
        assert "check that the state file and its folder are writable" in message


def test_state_path_that_is_a_folder_is_a_state_error(tmp_path: Path) -> None:
    (tmp_path / "state.db").mkdir()
    with pytest.raises(StateError) as info:
        SQLiteStateStore(tmp_path / "state.db")
    assert "unable to open database file" in str(info.value)
    assert "check that the state file and its folder are writable" in str(info.value)


def test_damaged_state_file_is_a_state_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not an SQLite database, just text " * 100)
    with pytest.raises(StateError) as info:
        SQLiteStateStore(path)
    assert "file is not a database" in str(info.value)
    assert "keep a copy before repairing it" in str(info.value)


def test_full_disk_is_a_state_error_and_changes_nothing(db: Path, store: SQLiteStateStore) -> None:
    """SQLite's own "database or disk is full" error, produced by capping the database size
    with PRAGMA max_page_count (which is per connection, so the store's own connection)."""
    store.put_resource(resource("compute.a"))
    before = store.lineage_serial()
    conn: sqlite3.Connection = getattr(store, "conn", None) or store.db.conn  # type: ignore[attr-defined]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages}")
    with pytest.raises(StateError) as info:
        store.put_resource(resource("compute.big", attributes={"blob": "x" * 200_000}))
    assert "database or disk is full" in str(info.value)
    assert "free some disk space and run the command again; state was not changed" in str(
        info.value
    )
    assert list(store.resources()) == ["compute.a"]
    assert store.lineage_serial() == before
    # the store is still usable once there is room again
    conn.execute("PRAGMA max_page_count=1073741823")
    store.put_resource(resource("compute.b"))
    assert list(store.resources()) == ["compute.a", "compute.b"]


# -------------------------------------------------------------- files that are not trainform's


def _old(path: Path) -> Path:
    """Make ``path`` look as if nobody were writing it now (a minute old)."""
    stamp = path.stat().st_mtime - 60
    os.utime(path, (stamp, stamp))
    return path


@pytest.mark.parametrize("create", [True, False])
def test_an_empty_state_file_is_an_error_naming_it_not_empty_state(db: Path, create: bool) -> None:
    db.parent.mkdir(parents=True)
    db.touch()
    _old(db)
    with pytest.raises(StateError) as info:
        SQLiteStateStore(db, create=create).resources()
    message = str(info.value)
    assert f"state file {db} is not a trainform state database: it is empty (0 bytes)" in message
    assert db.stat().st_size == 0  # nothing was written into it


def test_another_applications_sqlite_database_is_refused_and_left_as_it_was(db: Path) -> None:
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE songs (title TEXT)")
    conn.execute("INSERT INTO songs VALUES ('la')")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    for create in (True, False):
        with pytest.raises(StateError) as info:
            SQLiteStateStore(db, create=create).resources()
        assert (
            f"state file {db} is not a trainform state database: it is an SQLite database "
            "without trainform's tables (songs)"
        ) in str(info.value)
    assert tables(db) == {"songs"}  # no trainform table was created in it
    assert db.read_bytes() == before


def test_a_file_that_is_not_sqlite_is_refused_naming_it(db: Path) -> None:
    db.parent.mkdir(parents=True)
    db.write_text("name,value\na,1\n" * 100)
    with pytest.raises(StateError) as info:
        SQLiteStateStore(db, create=False).lineage_serial()
    assert f"state file {db} is not a trainform state database: it is not an SQLite" in str(
        info.value
    )


def test_a_state_file_another_process_is_creating_is_waited_for(db: Path) -> None:
    """SQLite creates the file empty when it connects and writes the tables in a first
    transaction: a reader that comes in between waits for them instead of calling the file
    foreign."""
    db.parent.mkdir(parents=True)
    made = SQLiteStateStore(db.with_name("made.db"))
    made.put_resource(resource("compute.a"))
    made.close()
    creator = sqlite3.connect(db)  # the file exists now, empty
    creator.execute("SELECT 1").fetchone()
    assert db.exists() and db.stat().st_size == 0

    def write_tables() -> None:
        import time

        time.sleep(0.3)
        source = sqlite3.connect(db.with_name("made.db"))
        source.backup(creator)
        source.close()

    maker = threading.Thread(target=write_tables)
    maker.start()
    try:
        store = SQLiteStateStore(db, create=False)
        assert list(store.resources()) == ["compute.a"]
        store.close()
    finally:
        maker.join()
        creator.close()


def test_a_plan_on_a_missing_file_still_sees_no_state(db: Path) -> None:
    store = SQLiteStateStore(db, create=False)
    assert store.resources() == {} and store.lineage_serial() == (None, 0)
    assert not db.exists()


# -------------------------------------------------------------------------------------- backups


def _backup_of(db: Path) -> Path:
    return db.with_name(db.name + ".backup")


def _command(db: Path, *addresses: str, remove: str = "") -> None:
    """One command's changes, through its own store (as each CLI command opens one)."""
    store = SQLiteStateStore(db, create=False)
    lock = store.acquire_lock("apply")
    for address in addresses:
        store.put_resource(resource(address))
    if remove:
        store.remove_resource(remove)
    store.release_lock(lock)
    store.close()


def test_each_command_that_changes_state_keeps_the_state_before_it_as_backup(db: Path) -> None:
    _command(db, "compute.a")
    assert not _backup_of(db).exists()  # nothing was recorded before: nothing to keep
    _command(db, "compute.b", "compute.c")
    backup = SQLiteStateStore(_backup_of(db), create=False)
    assert list(backup.resources()) == ["compute.a"]  # before this command, not per write
    assert backup.lineage_serial() == (SQLiteStateStore(db).lineage_serial()[0], 1)
    assert backup.execute("SELECT count(*) FROM lock").fetchone()[0] == 0
    backup.close()
    _command(db, remove="compute.a")
    backup = SQLiteStateStore(_backup_of(db), create=False)
    assert list(backup.resources()) == ["compute.a", "compute.b", "compute.c"]
    backup.close()
    # Backups are self-contained files in rollback-journal mode, never a WAL of their own.
    assert _backup_of(db).read_bytes()[18:20] == b"\x01\x01"
    assert not Path(f"{_backup_of(db)}-wal").exists()


def test_a_command_that_changes_no_resource_keeps_the_backup(db: Path) -> None:
    _command(db, "compute.a")
    _command(db, "compute.b")
    before = _backup_of(db).read_bytes()
    store = SQLiteStateStore(db, create=False)
    store.put_run({"id": "r1", "address": "run.x", "workspace": "default", "record": {}})
    store.put_outputs(store.outputs())  # unchanged
    store.close()
    assert _backup_of(db).read_bytes() == before


def test_restoring_the_backup_by_a_copy_never_replays_the_replaced_files_log(db: Path) -> None:
    """A process killed with SIGKILL leaves its write-ahead log beside the state file; the
    README's restore (copy the backup over the state file) must not have SQLite replay that
    log into the restored copy (plain SQLite would: the log is named after the path)."""
    _command(db, "compute.a")
    _command(db, "compute.b")
    code = (
        "import os, sys; from pathlib import Path\n"
        "from trainform.state.sqlite import SQLiteStateStore\n"
        "from trainform.providers.base import ResourceState\n"
        "s = SQLiteStateStore(Path(sys.argv[1]))\n"
        "for n in 'cde': s.put_resource(ResourceState(f'compute.{n}', 'compute', n, None, 'local'))\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(db)], check=True)  # backup: a and b
    wal = Path(f"{db}-wal")
    assert wal.stat().st_size > 0  # the killed process's log, never checkpointed
    db.write_bytes(_backup_of(db).read_bytes())  # cp .trainform/state.db.backup ...
    store = SQLiteStateStore(db, create=False)
    assert list(store.resources()) == ["compute.a", "compute.b"]  # not c, d, e
    store.put_resource(resource("compute.z"))  # and it is writable as usual
    store.close()
    assert list(SQLiteStateStore(db).resources()) == ["compute.a", "compute.b", "compute.z"]
    assert list(db.parent.glob("state.db-wal.stale-*")), list(db.parent.iterdir())


def test_a_live_write_ahead_log_is_never_set_aside(db: Path) -> None:
    _command(db, "compute.a")
    writer = SQLiteStateStore(db)
    writer.put_resource(resource("compute.b"))  # its log is live while it is open
    reader = SQLiteStateStore(db, create=False)
    assert list(reader.resources()) == ["compute.a", "compute.b"]
    assert not list(db.parent.glob("*.stale-*"))
    reader.close()
    writer.close()
