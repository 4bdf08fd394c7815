"""The SQLite state backend: :class:`SQLiteStateStore`, state in one file beside the
configuration (``.trainform/state.db`` by default), with its schema migrations, the backup
kept before a command's first change, and a lock table whose dead holders on this host are
taken over. Everything the backends share is :class:`trainform.state.store.StateStore`."""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainform.errors import LockError, StateError
from trainform.state.locking import current_user, hostname, process_alive, process_start_time
from trainform.state.secrets import new_key
from trainform.state.store import SCHEMA_VERSION, LockInfo, StateStore, _translate, now

if TYPE_CHECKING:
    import sqlite_utils

BACKUP_SUFFIX = ".backup"  # state.db.backup: the state before the last command changed it


def _migrate_1(db: sqlite_utils.Database) -> None:
    db.table("meta").create({"key": str, "value": str}, pk="key")
    db.table("resources").create(
        {
            "address": str,
            "kind": str,
            "name": str,
            "key": str,
            "provider": str,
            "attributes": str,
            "computed": str,
            "dependencies": str,
            "status": str,
            "created_at": str,
            "updated_at": str,
        },
        pk="address",
    )
    db.table("outputs").create({"name": str, "value": str, "sensitive": int}, pk="name")
    db.table("lock").create(
        {
            "name": str,
            "id": str,
            "who": str,
            "operation": str,
            "created": str,
            "pid": int,
            "host": str,
            "pid_start": str,
        },
        pk="name",
    )
    db.table("apply_history").create(
        {
            "id": int,
            "started": str,
            "finished": str,
            "who": str,
            "host": str,
            "command": str,
            "changes": str,
            "outcome": str,
            "serial": int,
        },
        pk="id",
    )


def _migrate_2(db: sqlite_utils.Database) -> None:
    # Run history outlives resources: it is keyed by run id, not by address.
    db.table("runs").create(
        {
            "id": str,
            "address": str,
            "workspace": str,
            "experiment": str,
            "status": str,
            "fingerprint": str,
            "created": str,
            "finished": str,
            "record": str,
        },
        pk="id",
    )
    db.table("runs").create_index(["workspace"])


def _migrate_3(db: sqlite_utils.Database) -> None:
    db.table("run_metrics").create(
        {"run_id": str, "name": str, "step": int, "value": float, "time": float, "source": str}
    )
    db.table("run_metrics").create_index(["run_id", "name"])


def _migrate_4(db: sqlite_utils.Database) -> None:
    db.table("sweeps").create(
        {
            "id": str,
            "address": str,
            "status": str,
            "fingerprint": str,
            "created": str,
            "finished": str,
            "record": str,
        },
        pk="id",
    )


def _migrate_5(db: sqlite_utils.Database) -> None:
    db.table("state_versions").create(
        {
            "serial": int,
            "lineage": str,
            "created": str,
            "who": str,
            "host": str,
            "command": str,
            "plan_digest": str,
            "state": str,
        },
        pk="serial",
    )


def _migrate_6(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE run_metrics ADD COLUMN nonfinite TEXT")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _migrate_1,
    _migrate_2,
    _migrate_3,
    _migrate_4,
    _migrate_5,
    _migrate_6,
]


def state_fingerprint_key(path: Path) -> bytes:
    """The fingerprint key kept in the state file at ``path`` (made and recorded if it has
    none; a connection of its own, so any thread may ask). Writing it is no change of state:
    the serial stays. Where there is no state file yet (``plan -lock=false`` before the first
    apply) a new key, for this process only. Raises StateError."""
    if not path.exists():
        return new_key()
    try:
        conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        try:
            has_meta = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
            ).fetchone()
            if not has_meta:
                return new_key()
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('fingerprint_key', ?)",
                [new_key().hex()],
            )
            row = conn.execute("SELECT value FROM meta WHERE key='fingerprint_key'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StateError(f"state database {path}: {exc} (reading the fingerprint key)") from None
    return bytes.fromhex(row[0])


def _set_aside_stale_wal(path: Path) -> None:
    """Rename a write-ahead log that belongs to another file than ``path`` (left beside it
    when a backup was copied over the state file): SQLite would replay it into the copy.

    A database in rollback-journal mode (header bytes 18-19 = 1, as backups are written)
    never has a live ``-wal``: SQLite switches the header to WAL before it creates one, so
    checking the log first and the header second cannot mistake a live log for a stale one."""
    wal = Path(f"{path}-wal")
    try:
        if wal.stat().st_size == 0:
            return
        with path.open("rb") as fh:
            header = fh.read(20)
    except OSError:
        return
    if not header.startswith(b"SQLite format 3\0") or header[18] != 1:
        return
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in ("-wal", "-shm"):
        with suppress(OSError):
            Path(f"{path}{suffix}").rename(f"{path}{suffix}.stale-{stamp}")


class SQLiteStateStore(StateStore):
    """State in one SQLite file (default ``.trainform/state.db``). Not thread-safe: one
    command uses it from one thread.

    With ``create=False`` a missing file is not created by opening: reads see empty state,
    and the file is made by the first write or lock. A file made only for a lock is in
    SQLite's rollback-journal mode until something is recorded (then WAL); if nothing was,
    releasing the lock deletes the file again, so a plan leaves no empty state behind. The
    released lock's row stays in the deleted file, so a process that waits on that file sees
    it held until it notices the file is gone and reopens the path."""

    db_errors = (sqlite3.Error,)

    def __init__(self, path: Path, create: bool = True) -> None:
        super().__init__()
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the open file
        self._created = False  # this store made the file for a lock; it may delete it
        self._made_dir = False
        self._wal = False
        self._backed_up = False  # the backup was written before this store's first change
        if create or path.exists():
            self._open(wal=True)

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection, creating the file if it does not exist yet."""
        if self._conn is None:
            self._open(wal=False)
        assert self._conn is not None
        return self._conn

    def _exists(self) -> bool:
        """Whether there is a state file to read (opened now if another process made it)."""
        if self._conn is None and self.path.exists():
            self._open(wal=True)
        return self._conn is not None

    @_translate
    def _open(self, wal: bool) -> None:
        try:
            existed = self.path.exists()
            self._made_dir = not self.path.parent.exists()
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(
                f"state database {self.path}: cannot create its folder: {exc.strerror} "
                "(check that the state file and its folder are writable)"
            ) from None
        existed = existed and self._check_file()
        if existed:
            _set_aside_stale_wal(self.path)
        conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
        try:
            # Still 0 bytes: it was deleted (made only for a lock) and made anew meanwhile.
            existed = existed and self.path.stat().st_size > 0
            if existed:
                self._check_tables(conn)
            # An existing file keeps its mode: WAL, or rollback-journal while it is made
            # only for a lock (see the class docstring).
            set_wal = wal and not existed
            mode = conn.execute("PRAGMA journal_mode" + ("=WAL" if set_wal else "")).fetchone()
            conn.execute("PRAGMA synchronous=NORMAL")
            self._conn = conn
            self._wal = bool(mode) and mode[0] == "wal"
            self._migrate()
            st = self.path.stat()
        except BaseException:
            self._conn = None
            conn.close()
            raise
        self._identity = (st.st_dev, st.st_ino)
        self._created = not existed and not self._wal

    def describe(self) -> str:
        return f"SQLite {self.path}"

    def _state_error(self, exc: BaseException) -> StateError:
        text = str(exc)
        if "disk is full" in text or "disk I/O" in text:
            hint = "free some disk space and run the command again; state was not changed"
        elif "readonly" in text or "unable to open" in text:
            hint = "check that the state file and its folder are writable"
        else:
            hint = "the state database may be damaged; keep a copy before repairing it"
        return StateError(f"state database {self.path}: {text} ({hint})")

    def _load_fingerprint_key(self) -> bytes:
        return state_fingerprint_key(self.path)

    @property
    def backup_path(self) -> Path:
        """Where the state as it was before the last command that changed it is kept."""
        return self.path.with_name(self.path.name + BACKUP_SUFFIX)

    def _not_ours(self, why: str) -> StateError:
        backup = ""
        if self.backup_path.exists():
            backup = (
                f"; the state as it was before its last change is in {self.backup_path} "
                "(README, 'State and locking', says how to restore it)"
            )
        return StateError(
            f"state file {self.path} is not a trainform state database: {why}. It is neither "
            "read as empty state (a plan would create everything again) nor written to; move "
            f"it away, or set the state path to the right file{backup}"
        )

    def _check_file(self) -> bool:
        """Whether the state file still exists; raise StateError if it is empty. One that
        another trainform process has just made (SQLite creates it empty, then writes its
        tables) is waited for."""
        deadline = time.monotonic() + 5
        while True:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                return False  # deleted meanwhile (a file made only for a lock)
            if st.st_size > 0:
                return True
            if time.time() - st.st_mtime > 5 or time.monotonic() > deadline:
                raise self._not_ours("it is empty (0 bytes)")
            time.sleep(0.05)

    def _check_tables(self, conn: sqlite3.Connection) -> None:
        """Raise StateError unless ``conn`` holds trainform's tables (never creates them in
        another application's database)."""
        try:
            names = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            version = None
            if "meta" in names:
                version = conn.execute(
                    "SELECT value FROM meta WHERE key='schema_version'"
                ).fetchone()
        except sqlite3.DatabaseError as exc:
            if "not a database" not in str(exc):
                raise
            raise self._not_ours(
                f"it is not an SQLite database, or a damaged one ({exc}: keep a copy before "
                "repairing it)"
            ) from None
        if version is None and not self._blank_file(conn, names):
            shown = ", ".join(sorted(names)[:8]) or "none"
            raise self._not_ours(f"it is an SQLite database without trainform's tables ({shown})")

    def _blank_file(self, conn: sqlite3.Connection, names: set[str]) -> bool:
        """An SQLite file with no tables that another trainform process is creating (it
        writes its tables in the first transaction): waited for briefly."""
        if names:
            return False
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone():
                return True
        return False

    def _backup(self) -> None:
        """Before the first change of managed state by this store (one command), keep the
        state as it is in :attr:`backup_path`, as Terraform keeps ``terraform.tfstate.backup``
        (nothing is kept while no resource or output was ever recorded).
        The copy is a complete database in rollback-journal mode without the lock, written
        to a temporary file and renamed, so copying it over the state file restores it."""
        if self._backed_up or not self._exists() or self._meta("lineage") is None:
            return
        tmp = self.backup_path.with_name(f".{self.backup_path.name}.tmp-{os.getpid()}")
        try:
            tmp.unlink(missing_ok=True)
            dest = sqlite3.connect(str(tmp), isolation_level=None)
            try:
                self.conn.backup(dest)
                dest.execute("PRAGMA journal_mode=DELETE")
                dest.execute("DELETE FROM lock")
            finally:
                dest.close()
            with suppress(OSError):
                os.chmod(tmp, self.path.stat().st_mode & 0o777)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.backup_path)
        except OSError as exc:
            with suppress(OSError):
                tmp.unlink()
            raise StateError(
                f"state database {self.path}: cannot write its backup {self.backup_path}: "
                f"{exc.strerror or exc}; state was not changed"
            ) from None
        self._backed_up = True

    def _moved(self) -> bool:
        """Whether the open file is no longer the one at the path (another process deleted
        the file it had made only for a lock)."""
        if self._conn is None:
            return False
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return True
        return (st.st_dev, st.st_ino) != self._identity

    def _reopen(self) -> None:
        self.close()
        self._open(wal=False)

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def _executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self.conn.executemany(sql, rows)

    @contextmanager
    def _tx(self) -> Iterator[None]:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if conn.in_transaction:  # SQLite has already rolled back after e.g. a full disk
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def _record(self) -> Iterator[None]:
        """A transaction that records something: the file is kept from now on (WAL mode)."""
        if not self._wal:
            mode = self.conn.execute("PRAGMA journal_mode=WAL").fetchone()
            self._wal = bool(mode) and mode[0] == "wal"
            self._created = False
        with self._tx():
            yield

    def _migrate(self) -> None:
        with self._tx():
            version = 0
            has_meta = self.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
            ).fetchone()
            if has_meta:
                row = self.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StateError(
                    f"state database {self.path} has schema version {version}, newer than this "
                    f"trainform understands ({SCHEMA_VERSION}); upgrade trainform"
                )
            if version < SCHEMA_VERSION:
                import sqlite_utils  # only needed to create tables

                db = sqlite_utils.Database(self.conn)
                for step in MIGRATIONS[version:]:
                    step(db)
                self._upsert("meta", {"key": "schema_version", "value": str(SCHEMA_VERSION)}, "key")

    # ------------------------------------------------------------------ locking
    def _holder(self) -> tuple[LockInfo, str] | None:
        row = self.execute(
            "SELECT id, who, operation, created, pid, host, pid_start FROM lock WHERE name='state'"
        ).fetchone()
        if row is None:
            return None
        return LockInfo(row[0], row[1], row[2], row[3], row[4], row[5]), row[6]

    @_translate
    def acquire_lock(self, operation: str, timeout: float = 0.0) -> LockInfo:
        """Take the state lock, waiting up to ``timeout`` seconds. A lock left by a process
        that died on this host is taken over; a live holder's never is. Raises LockError
        naming the holder."""
        deadline = time.monotonic() + timeout
        pid = os.getpid()
        mine = LockInfo(str(uuid.uuid4()), current_user(), operation, now(), pid, hostname())
        while True:
            if self._moved():
                self._reopen()
            me = mine
            with self._tx():
                held = self._holder()
                if held is not None:
                    info, start = held
                    if info.host == me.host and not process_alive(info.pid, start):
                        self.execute("DELETE FROM lock WHERE name='state'")
                        me = LockInfo(
                            me.id, me.who, me.operation, me.created, pid, me.host, info.id
                        )
                        held = None
                if held is None:
                    self._insert(
                        "lock",
                        {
                            "name": "state",
                            "id": me.id,
                            "who": me.who,
                            "operation": operation,
                            "created": me.created,
                            "pid": pid,
                            "host": me.host,
                            "pid_start": process_start_time(pid),
                        },
                    )
            if held is None:
                if not self._moved():
                    return me
                continue  # taken in a file its maker has just deleted: take it in the new one
            if time.monotonic() >= deadline:
                raise LockError(
                    f"state is locked: {held[0].describe()}. If that process is gone and was on "
                    f"another host, run `trainform force-unlock {held[0].id}`",
                    holder=held[0].__dict__,
                )
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))

    @_translate
    def release_lock(self, lock: LockInfo) -> None:
        """Release the lock. A file this store made for the lock, in which nothing was
        recorded, is deleted instead, with the lock's row still in it (see the class
        docstring)."""
        discarded = False
        with self._tx():
            if (
                self._created
                and self.execute("PRAGMA journal_mode").fetchone()[0] != "wal"
                and self._blank()
            ):
                with suppress(OSError):
                    self.path.unlink()
                    discarded = True
            if not discarded:
                self.execute("DELETE FROM lock WHERE name='state' AND id=?", [lock.id])
        if discarded:
            made_dir = self._made_dir
            self.close()
            if made_dir:
                with suppress(OSError):
                    self.path.parent.rmdir()  # only if nothing else was put there

    @_translate
    def force_unlock(self, lock_id: str) -> LockInfo:
        """Remove the lock with this id. Raises LockError if no such lock is held."""
        if not self._exists():
            raise LockError("state is not locked")
        with self._tx():
            held = self._holder()
            if held is None:
                raise LockError("state is not locked")
            if held[0].id != lock_id:
                raise LockError(
                    f"lock id {lock_id!r} does not match the current lock: {held[0].describe()}",
                    holder=held[0].__dict__,
                )
            self.execute("DELETE FROM lock WHERE name='state'")
            return held[0]

    def close(self) -> None:
        """Close the connection; the store opens the file again when next used."""
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._identity = None
        self._created = self._made_dir = self._wal = False
