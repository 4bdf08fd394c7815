"""The state store: :class:`StateStore`, which holds everything a state backend does the same
way. The backends are :class:`trainform.state.sqlite.SQLiteStateStore` and
:class:`trainform.state.postgres.PgStateStore`.

A store holds the managed resources and outputs (with the state's lineage and serial), the
run history (``runs``, ``run_metrics``, ``sweeps``), the apply history, the state versions
and the lock. The base class writes its SQL in the dialect both SQLite and PostgreSQL accept
(``?`` placeholders, which the PostgreSQL store translates; ``INSERT ... ON CONFLICT (pk) DO
UPDATE``; ``RETURNING``); a backend provides the connection, transactions, table creation,
locking and the translation of its driver's errors into :class:`StateError`.

Every write is one transaction; a change to managed resources or outputs increments the
serial (and assigns the lineage on first write), so a saved plan can tell that state moved.
History rows (runs, metrics, sweeps, applies) are not managed state: they never move the
serial. A *state version* (:meth:`StateStore.record_version`) keeps the whole state document
each time a command moved the serial, with who ran it, where, and the plan's digest.
Sensitive values are in state only as salted hashes (:mod:`trainform.state.secrets`), in every
backend and in every version.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from trainform.errors import StateError
from trainform.providers.base import ResourceState
from trainform.state.locking import current_user, hostname

if TYPE_CHECKING:
    pass

SCHEMA_VERSION = 6
STATE_FORMAT_VERSION = "1"  # export_state's document
T = TypeVar("T")


@dataclass(frozen=True)
class LockInfo:
    """Who holds a state lock (the same record in every backend). ``note`` says what
    releasing it did beyond removing the record (PostgreSQL: the holder's session ended)."""

    id: str
    who: str
    operation: str
    created: str
    pid: int
    host: str
    taken_over: str = ""  # the id of a dead holder's lock this one replaced
    note: str = ""

    def describe(self) -> str:
        text = (
            f"lock {self.id} held by {self.who}@{self.host} (pid {self.pid}) "
            f"for {self.operation!r} since {self.created}"
        )
        return f"{text}; {self.note}" if self.note else text


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _translate(fn: Callable[..., T]) -> Callable[..., T]:
    """Turn the backend driver's errors into StateError (see StateStore._state_error)."""

    @functools.wraps(fn)
    def wrapper(self: StateStore, *args: Any, **kwargs: Any) -> T:
        try:
            return fn(self, *args, **kwargs)
        except self.db_errors as exc:
            raise self._state_error(exc) from None

    return wrapper


# What every backend stores, table by table: the columns a copy or a digest reads, in the
# order they are read (run_metrics keeps its points in the order they were written: SQLite's
# rowid, a column of that name in PostgreSQL).
TABLES: dict[str, tuple[tuple[str, ...], str]] = {
    "resources": (
        (
            "address",
            "kind",
            "name",
            "key",
            "provider",
            "attributes",
            "computed",
            "dependencies",
            "status",
            "created_at",
            "updated_at",
        ),
        "address",
    ),
    "outputs": (("name", "value", "sensitive"), "name"),
    "runs": (
        (
            "id",
            "address",
            "workspace",
            "experiment",
            "status",
            "fingerprint",
            "created",
            "finished",
            "record",
        ),
        "id",
    ),
    # nonfinite ("nan", "inf", "-inf") says what a point whose value is null was.
    "run_metrics": (
        ("run_id", "name", "step", "value", "time", "source", "nonfinite"),
        "run_id, name, rowid",
    ),
    "sweeps": (
        ("id", "address", "status", "fingerprint", "created", "finished", "record"),
        "id",
    ),
    "apply_history": (
        ("id", "started", "finished", "who", "host", "command", "changes", "outcome", "serial"),
        "id",
    ),
    "state_versions": (
        ("serial", "lineage", "created", "who", "host", "command", "plan_digest", "state"),
        "serial",
    ),
}
COPIED_META = ("lineage", "serial", "fingerprint_key")  # the rest (schema_version) is the backend's
VERSION_KEYS = TABLES["state_versions"][0][:-1]  # all but the state document
RESOURCE_FIELDS = TABLES["resources"][0][:-2]  # ResourceState's: all but the timestamps


def digest_contents(contents: dict[str, list[tuple[Any, ...]]]) -> dict[str, str]:
    """sha256 per table of :meth:`StateStore.contents`: equal iff the rows are equal."""
    return {
        table: hashlib.sha256(
            json.dumps([list(r) for r in rows], sort_keys=True, default=str).encode()
        ).hexdigest()
        for table, rows in contents.items()
    }


class StateStore:
    """What the planner, engine, run history and state commands need from a state backend,
    and everything about it that does not depend on the backend. Not thread-safe: one
    command uses a store from one thread (only :meth:`fingerprint_key` may be called from
    any thread).

    A backend provides: :meth:`execute` and :meth:`_executemany` (``?`` placeholders),
    :meth:`_exists` (whether there is state to read; reads of a store that does not exist
    yet see empty state and create nothing), :meth:`_tx` (one transaction, creating the
    store first if needed), :meth:`_load_fingerprint_key`, the lock (:meth:`acquire_lock`,
    :meth:`release_lock`, :meth:`force_unlock`), :meth:`close`, :meth:`describe`, and
    ``db_errors`` with :meth:`_state_error` (its driver's errors, and the StateError each
    becomes)."""

    db_errors: tuple[type[BaseException], ...] = ()

    def __init__(self) -> None:
        self._key: bytes | None = None  # see fingerprint_key
        self._key_lock = threading.Lock()

    # ------------------------------------------------------------------ backend primitives
    def describe(self) -> str:
        """The store for messages (never a password)."""
        raise NotImplementedError

    def execute(self, sql: str, params: Any = ()) -> Any:
        """Run one statement; returns a cursor (``fetchone``, ``fetchall``, iteration)."""
        raise NotImplementedError

    def _executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def _exists(self) -> bool:
        raise NotImplementedError

    @contextmanager
    def _tx(self) -> Iterator[None]:
        raise NotImplementedError
        yield  # pragma: no cover

    @contextmanager
    def _record(self) -> Iterator[None]:
        """A transaction that records something."""
        with self._tx():
            yield

    def _backup(self) -> None:
        """Keep the state as it was before this command's first change (where the backend
        can; PostgreSQL keeps state versions instead)."""

    def _state_error(self, exc: BaseException) -> StateError:
        raise NotImplementedError

    def _load_fingerprint_key(self) -> bytes:
        raise NotImplementedError

    def _after_copy(self) -> None:
        """Called inside :meth:`replace_contents`' transaction after the rows are in."""

    def acquire_lock(self, operation: str, timeout: float = 0.0) -> LockInfo:
        raise NotImplementedError

    def release_lock(self, lock: LockInfo) -> None:
        raise NotImplementedError

    def force_unlock(self, lock_id: str) -> LockInfo:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ rows and meta
    def _upsert(self, table: str, row: dict[str, Any], pk: str, keep: tuple[str, ...] = ()) -> None:
        """Insert ``row``, or update the row with its ``pk`` (except the ``keep`` columns)."""
        cols = list(row)
        updates = ", ".join(f"{c}=excluded.{c}" for c in cols if c != pk and c not in keep)
        self.execute(
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)}) "
            f"ON CONFLICT ({pk}) DO UPDATE SET {updates}",
            [row[c] for c in cols],
        )

    def _insert(self, table: str, row: dict[str, Any], returning: str = "") -> Any:
        """Insert one row; with ``returning``, the value of that column (a generated id)."""
        cols = list(row)
        sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
        if not returning:
            self.execute(sql, [row[c] for c in cols])
            return None
        rows = self.execute(f"{sql} RETURNING {returning}", [row[c] for c in cols]).fetchall()
        return rows[0][0]

    def _meta(self, key: str) -> str | None:
        row = self.execute("SELECT value FROM meta WHERE key=?", [key]).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self._upsert("meta", {"key": key, "value": value}, "key")

    def _bump(self) -> None:
        # Writes only, no reads: a server backend sends a write's statements in one round trip.
        self.execute(
            "INSERT INTO meta (key, value) VALUES ('lineage', ?) ON CONFLICT (key) DO NOTHING",
            [str(uuid.uuid4())],
        )
        self.execute(
            "INSERT INTO meta (key, value) VALUES ('serial', '1') ON CONFLICT (key) DO UPDATE "
            "SET value = CAST(CAST(meta.value AS INTEGER) + 1 AS TEXT)"
        )

    def _blank(self) -> bool:
        """Nothing was ever recorded: no lineage, resources, outputs, history or versions."""
        if self._meta("lineage") is not None or self._meta("serial") is not None:
            return False
        return not any(self.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone() for t in TABLES)

    @_translate
    def is_empty(self) -> bool:
        """Whether nothing was ever recorded here (a migration's destination must be)."""
        return not self._exists() or self._blank()

    @_translate
    def lineage_serial(self) -> tuple[str | None, int]:
        if not self._exists():
            return None, 0
        return self._meta("lineage"), int(self._meta("serial") or 0)

    def fingerprint_key(self) -> bytes:
        """The state's random key for keyed hashes of sensitive run inputs (see
        :func:`trainform.runs.spec.fingerprint`): made on first use and kept in ``meta``, so
        equal secrets fingerprint equal within this state, and differently in any other.
        Thread-safe: providers call it from worker threads. Raises StateError."""
        with self._key_lock:
            if self._key is None:
                self._key = self._load_fingerprint_key()
            return self._key

    @_translate
    def schema_version(self) -> int:
        if not self._exists():
            return SCHEMA_VERSION
        return int(self._meta("schema_version") or 0)

    # ------------------------------------------------------------------ resources
    @_translate
    def resources(self) -> dict[str, ResourceState]:
        out: dict[str, ResourceState] = {}
        if not self._exists():
            return out
        for row in self.execute(
            f"SELECT {', '.join(RESOURCE_FIELDS)} FROM resources ORDER BY address"
        ).fetchall():
            out[row[0]] = ResourceState(
                address=row[0],
                kind=row[1],
                name=row[2],
                key=json.loads(row[3]),
                provider=row[4],
                attributes=json.loads(row[5]),
                computed=json.loads(row[6]),
                dependencies=tuple(json.loads(row[7])),
                status=row[8],
            )
        return out

    @_translate
    def put_resource(self, resource: ResourceState) -> None:
        self._backup()
        with self._record():
            self._put(resource)
            self._bump()

    def _put(self, resource: ResourceState) -> None:
        stamp = now()
        self._upsert(
            "resources",
            {
                "address": resource.address,
                "kind": resource.kind,
                "name": resource.name,
                "key": json.dumps(resource.key),
                "provider": resource.provider,
                "attributes": json.dumps(resource.attributes, sort_keys=True),
                "computed": json.dumps(resource.computed, sort_keys=True),
                "dependencies": json.dumps(list(resource.dependencies)),
                "status": resource.status,
                "created_at": stamp,
                "updated_at": stamp,
            },
            "address",
            keep=("created_at",),
        )

    @_translate
    def remove_resource(self, address: str) -> None:
        self._backup()
        with self._record():
            self.execute("DELETE FROM resources WHERE address=?", [address])
            self._bump()

    @_translate
    def move_resource(self, source: str, dest: str, kind: str, name: str, key: Any) -> None:
        self._backup()
        with self._record():
            self._move(source, dest, kind, name, key)
            self._bump()

    def _move(self, source: str, dest: str, kind: str, name: str, key: Any) -> None:
        """Rename a resource; its run and sweep history follows it (and, for a workspace,
        the runs recorded into it)."""
        self.execute(
            "UPDATE resources SET address=?, kind=?, name=?, key=? WHERE address=?",
            [dest, kind, name, json.dumps(key), source],
        )
        self.execute("UPDATE runs SET address=? WHERE address=?", [dest, source])
        self.execute("UPDATE sweeps SET address=? WHERE address=?", [dest, source])
        if kind == "workspace":
            self.execute("UPDATE runs SET workspace=? WHERE workspace=?", [dest, source])

    @_translate
    def edit_resources(
        self,
        moves: list[tuple[str, str]],
        forget: list[str],
        put: list[ResourceState],
        fingerprints: list[tuple[str, str, str]],
    ) -> None:
        """State edits of moved/removed/import blocks, in one transaction: ``moves`` (old
        address, new address; history follows, dependencies are renamed), ``forget``
        (addresses no longer managed; nothing else is touched), ``put`` (imported
        resources; an adopted run's history row takes the resource's address), and
        ``fingerprints`` (a run's recorded fingerprint renamed with the compute it ran on:
        address, old, new). Edits already made are skipped."""
        from trainform.config.address import parse_address

        self._backup()
        with self._record():
            current = set(self.resources())
            blocks: dict[str, str] = {}
            for old, new in moves:
                if old not in current or new in current:
                    continue
                addr = parse_address(new)
                self._move(old, new, addr.kind, addr.name, addr.key)
                current = (current - {old}) | {new}
                blocks[parse_address(old).block] = addr.block
            if blocks:
                for row in self.execute("SELECT address, dependencies FROM resources").fetchall():
                    deps = json.loads(row[1])
                    renamed = [blocks.get(d, d) for d in deps]
                    if renamed != deps:
                        self.execute(
                            "UPDATE resources SET dependencies=? WHERE address=?",
                            [json.dumps(renamed), row[0]],
                        )
            for address in forget:
                self.execute("DELETE FROM resources WHERE address=?", [address])
            for rs in put:
                if rs.address in current:
                    continue
                self._put(rs)
                if rs.kind == "run" and rs.computed.get("run_id"):
                    self.execute(
                        "UPDATE runs SET address=? WHERE id=?", [rs.address, rs.computed["run_id"]]
                    )
            resources = self.resources()
            for address, old_fp, new_fp in fingerprints:
                run = resources.get(address)
                if run is None or run.computed.get("fingerprint") != old_fp:
                    continue
                computed = {**run.computed, "fingerprint": new_fp}
                self.execute(
                    "UPDATE resources SET computed=? WHERE address=?",
                    [json.dumps(computed, sort_keys=True), address],
                )
                if run.computed.get("run_id"):
                    self.execute(
                        "UPDATE runs SET fingerprint=? WHERE id=?",
                        [new_fp, run.computed["run_id"]],
                    )
            self._bump()

    # ------------------------------------------------------------------ outputs
    @_translate
    def outputs(self) -> dict[str, dict[str, Any]]:
        if not self._exists():
            return {}
        return {
            row[0]: {"value": json.loads(row[1]), "sensitive": bool(row[2])}
            for row in self.execute(
                "SELECT name, value, sensitive FROM outputs ORDER BY name"
            ).fetchall()
        }

    @_translate
    def put_outputs(self, outputs: dict[str, dict[str, Any]]) -> None:
        """Replace all outputs (values already sealed where sensitive); bumps the serial only
        if something changed."""
        if outputs == self.outputs():
            return
        self._backup()
        with self._record():
            self.execute("DELETE FROM outputs")
            for name, out in outputs.items():
                self._insert(
                    "outputs",
                    {
                        "name": name,
                        "value": json.dumps(out["value"], sort_keys=True),
                        "sensitive": int(out["sensitive"]),
                    },
                )
            self._bump()

    # ------------------------------------------------------------------ history
    @_translate
    def count_runs(self, workspace: str) -> int:
        if not self._exists():
            return 0
        row = self.execute("SELECT count(*) FROM runs WHERE workspace=?", [workspace]).fetchone()
        return int(row[0])

    # History tables (runs, sweeps) hold a few columns to query by and a JSON record. They
    # are not managed state: writes do not bump the serial, and rows outlive their resources.
    HISTORY_COLUMNS: ClassVar[dict[str, tuple[str, ...]]] = {
        table: tuple(c for c in TABLES[table][0] if c != "record") for table in ("runs", "sweeps")
    }

    def _put_history(self, table: str, item: dict[str, Any]) -> None:
        row = {k: item.get(k) for k in self.HISTORY_COLUMNS[table]}
        row["record"] = json.dumps(item.get("record", {}), sort_keys=True, default=str)
        with self._record():
            self._upsert(table, row, "id")

    def _history(self, table: str, address: str | None, limit: int) -> list[dict[str, Any]]:
        keys = self.HISTORY_COLUMNS[table]
        if not self._exists():
            return []
        where, params = ("WHERE address=?", [address]) if address else ("", [])
        rows = self.execute(
            f"SELECT {', '.join(keys)}, record FROM {table} {where} "
            "ORDER BY created DESC, id DESC LIMIT ?",
            [*params, limit],
        ).fetchall()
        return [{**dict(zip(keys, r[:-1])), "record": json.loads(r[-1] or "{}")} for r in rows]

    @_translate
    def put_run(self, run: dict[str, Any]) -> None:
        """Insert or update one run of the history (keyed by ``id``)."""
        self._put_history("runs", run)

    @_translate
    def runs(self, address: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Runs, newest first; optionally only those of one run address."""
        return self._history("runs", address, limit)

    @_translate
    def put_sweep(self, sweep: dict[str, Any]) -> None:
        """Insert or update one sweep of the history (keyed by ``id``)."""
        self._put_history("sweeps", sweep)

    @_translate
    def sweeps(self, address: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Sweeps, newest first; optionally only those of one sweep address."""
        return self._history("sweeps", address, limit)

    @_translate
    def put_metrics(self, run_id: str, points: list[dict[str, Any]]) -> None:
        """Replace the metric points of a run."""
        with self._record():
            self.execute("DELETE FROM run_metrics WHERE run_id=?", [run_id])
            self._executemany(
                "INSERT INTO run_metrics (run_id, name, step, value, time, source, nonfinite) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        run_id,
                        p["name"],
                        p.get("step"),
                        p.get("value"),
                        p.get("time"),
                        p.get("source", "client"),
                        p.get("nonfinite"),
                    )
                    for p in points
                ],
            )

    @_translate
    def metrics(self, run_id: str) -> list[dict[str, Any]]:
        if not self._exists():
            return []
        """A run's metric points, by name, in the order they were written; a non-finite one
        has value None and ``nonfinite`` ("nan", "inf" or "-inf")."""
        rows = self.execute(
            "SELECT name, step, value, time, source, nonfinite FROM run_metrics WHERE run_id=? "
            "ORDER BY name, rowid",
            [run_id],
        ).fetchall()
        keys = ("name", "step", "value", "time", "source")
        return [
            {**dict(zip(keys, r[:-1])), **({"nonfinite": r[-1]} if r[-1] else {})} for r in rows
        ]

    @_translate
    def begin_apply(self, command: str) -> int:
        with self._record():
            return int(
                self._insert(
                    "apply_history",
                    {
                        "started": now(),
                        "finished": None,
                        "who": current_user(),
                        "host": hostname(),
                        "command": command,
                        "changes": "[]",
                        "outcome": "running",
                        "serial": None,
                    },
                    returning="id",
                )
            )

    @_translate
    def finish_apply(self, apply_id: int, outcome: str, changes: list[dict[str, Any]]) -> None:
        with self._record():
            self.execute(
                "UPDATE apply_history SET finished=?, outcome=?, changes=?, serial=? WHERE id=?",
                [now(), outcome, json.dumps(changes), self._meta("serial"), apply_id],
            )

    @_translate
    def history(self, limit: int = 20) -> list[dict[str, Any]]:
        if not self._exists():
            return []
        keys = TABLES["apply_history"][0]
        rows = self.execute(
            f"SELECT {', '.join(keys)} FROM apply_history ORDER BY id DESC LIMIT ?", [limit]
        ).fetchall()
        return [dict(zip(keys, r)) for r in rows]

    # ------------------------------------------------------------------ state versions
    def _export(self) -> dict[str, Any]:
        lineage, serial = self._meta("lineage"), int(self._meta("serial") or 0)
        resources = [
            {
                **{f: getattr(rs, f) for f in RESOURCE_FIELDS},
                "dependencies": list(rs.dependencies),
            }
            for rs in self.resources().values()
        ]
        return {
            "format_version": STATE_FORMAT_VERSION,
            "lineage": lineage,
            "serial": serial,
            "resources": resources,
            "outputs": self.outputs(),
        }

    @_translate
    def export_state(self) -> dict[str, Any]:
        """The state document: ``format_version``, ``lineage``, ``serial``, ``resources``
        (each with :class:`ResourceState`'s fields) and ``outputs``. Sensitive values are
        the salted hashes state holds, never a value in clear."""
        if not self._exists():
            return {
                "format_version": STATE_FORMAT_VERSION,
                "lineage": None,
                "serial": 0,
                "resources": [],
                "outputs": {},
            }
        return self._export()

    def _add_version(self, command: str, plan_digest: str | None) -> int | None:
        """Inside a transaction: record the state as a version if its serial moved since
        the last version; returns that serial, or None."""
        serial = int(self._meta("serial") or 0)
        last = self.execute("SELECT max(serial) FROM state_versions").fetchone()[0]
        if serial == 0 or (last is not None and int(last) >= serial):
            return None
        self._insert(
            "state_versions",
            {
                "serial": serial,
                "lineage": self._meta("lineage"),
                "created": now(),
                "who": current_user(),
                "host": hostname(),
                "command": command,
                "plan_digest": plan_digest,
                "state": json.dumps(self._export(), sort_keys=True),
            },
        )
        return serial

    @_translate
    def record_version(self, command: str, plan_digest: str | None) -> int | None:
        """Record the current state as a version (with who, where, ``command`` and the
        plan's sha256) if the serial moved since the last version was recorded. Returns the
        serial recorded, or None when nothing changed. Idempotent; raises StateError."""
        if not self._exists() or self.lineage_serial()[1] == 0:
            return None
        with self._record():
            return self._add_version(command, plan_digest)

    @_translate
    def versions(self, limit: int = 100) -> list[dict[str, Any]]:
        """Recorded versions, newest first: serial, lineage, created, who, host, command,
        plan_digest."""
        if not self._exists():
            return []
        rows = self.execute(
            f"SELECT {', '.join(VERSION_KEYS)} FROM state_versions ORDER BY serial DESC LIMIT ?",
            [limit],
        ).fetchall()
        return [dict(zip(VERSION_KEYS, r)) for r in rows]

    @_translate
    def version(self, serial: int) -> dict[str, Any] | None:
        """One version as :meth:`versions` lists it, with ``state``: its document; None if
        there is no version of that serial."""
        if not self._exists():
            return None
        row = self.execute(
            f"SELECT {', '.join(VERSION_KEYS)}, state FROM state_versions WHERE serial=?",
            [serial],
        ).fetchone()
        if row is None:
            return None
        return {**dict(zip(VERSION_KEYS, row[:-1])), "state": json.loads(row[-1])}

    @_translate
    def import_state(self, doc: dict[str, Any], force: bool = False) -> None:
        """Replace managed resources and outputs with those of ``doc`` (an
        :meth:`export_state` document), in one transaction, as ``state push`` does; the
        serial becomes the larger of the document's and the current one plus one, and a
        version "state push" is recorded. Refused (StateError) when the lineage differs,
        the document's serial is older than the state's, or equal with other content,
        unless ``force``. Pushing the state that is already there changes nothing."""
        lineage, serial, resources, outputs = _check_document(doc)
        current_lineage, current_serial = self.lineage_serial()
        if current_lineage is not None and not force:
            if lineage != current_lineage:
                raise StateError(
                    f"cannot push state of lineage {lineage} over {self.describe()}, whose "
                    f"lineage is {current_lineage}: it is another state. Pass -force to "
                    "replace it anyway"
                )
            if serial < current_serial:
                raise StateError(
                    f"cannot push state serial {serial}: {self.describe()} is at serial "
                    f"{current_serial}, newer than the document. Pull the current state, or "
                    "pass -force to replace it anyway"
                )
            if serial == current_serial:
                here = self._export()
                if here["resources"] == resources and here["outputs"] == outputs:
                    return
                raise StateError(
                    f"cannot push state serial {serial}: {self.describe()} is at the same "
                    "serial with other content. Pass -force to replace it anyway"
                )
        self._backup()
        with self._record():
            self.execute("DELETE FROM resources")
            self.execute("DELETE FROM outputs")
            for item in resources:
                self._put(ResourceState(**{**item, "dependencies": tuple(item["dependencies"])}))
            for name, out in outputs.items():
                self._insert(
                    "outputs",
                    {
                        "name": name,
                        "value": json.dumps(out["value"], sort_keys=True),
                        "sensitive": int(bool(out["sensitive"])),
                    },
                )
            if lineage is not None:
                self._set_meta("lineage", lineage)
            self._set_meta("serial", str(max(serial, current_serial + 1)))
            if lineage is None:
                self._bump()  # a document that never had a lineage gets one here
            self._add_version("state push", None)

    # ------------------------------------------------------------------ copying (migrate.py)
    @_translate
    def contents(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row this store holds, table by table (see ``TABLES``), and ``meta``: the
        lineage, serial and fingerprint key (recorded now if there was none, so that run
        fingerprints stay equal in a copy)."""
        if not self._exists():
            return {"meta": [], **{t: [] for t in TABLES}}
        self.fingerprint_key()  # recorded now if it was not yet
        with self._tx():  # one consistent reading
            return self._read_contents()

    def _meta_rows(self) -> list[tuple[Any, ...]]:
        rows = [(k, self._meta(k)) for k in COPIED_META]
        return [r for r in rows if r[1] is not None]

    def _read_contents(self) -> dict[str, list[tuple[Any, ...]]]:
        """:meth:`contents` inside a transaction (the fingerprint key as recorded)."""
        out: dict[str, list[tuple[Any, ...]]] = {"meta": self._meta_rows()}
        for table, (cols, order) in TABLES.items():
            rows = self.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {order}")
            out[table] = [tuple(r) for r in rows.fetchall()]
        return out

    @_translate
    def replace_contents(self, contents: dict[str, list[tuple[Any, ...]]]) -> None:
        """Replace everything with ``contents`` (another store's :meth:`contents`) in one
        transaction, verified before it commits: if any table reads back other than it was
        given, StateError and nothing changed."""
        self._backup()
        with self._record():
            for table in TABLES:
                self.execute(f"DELETE FROM {table}")
            self.execute(
                f"DELETE FROM meta WHERE key IN ({', '.join('?' for _ in COPIED_META)})",
                list(COPIED_META),
            )
            for key, value in contents["meta"]:
                if value is not None:
                    self._set_meta(key, value)
            for table, (cols, _order) in TABLES.items():
                rows = contents.get(table, [])
                if rows:
                    self._executemany(
                        f"INSERT INTO {table} ({', '.join(cols)}) "
                        f"VALUES ({', '.join('?' for _ in cols)})",
                        # rows copied by an older trainform lack the newer columns, which
                        # are added at the end of a table's list
                        [tuple(r) + (None,) * (len(cols) - len(r)) for r in rows],
                    )
            self._after_copy()
            wanted, got = digest_contents(contents), digest_contents(self._read_contents())
            differ = sorted(t for t in wanted if wanted[t] != got.get(t))
            if differ:
                raise StateError(
                    f"copying state into {self.describe()}: {', '.join(differ)} read back "
                    "differently from what was copied; nothing was changed"
                )
        with self._key_lock:
            self._key = None

    @_translate
    def digests(self) -> dict[str, str]:
        """sha256 per table of everything held (:func:`digest_contents`)."""
        if not self._exists():
            return digest_contents(self.contents())
        with self._tx():
            return digest_contents(self._read_contents())


def _check_document(doc: Any) -> tuple[str | None, int, list[dict[str, Any]], dict[str, Any]]:
    """The lineage, serial, resources and outputs of a state document; StateError naming
    what is wrong with one that is not."""

    def bad(why: str) -> StateError:
        return StateError(f"not a trainform state document: {why}")

    if not isinstance(doc, dict):
        raise bad("it is not a JSON object")
    if doc.get("format_version") != STATE_FORMAT_VERSION:
        raise bad(
            f"format_version is {doc.get('format_version')!r}, this trainform reads "
            f"{STATE_FORMAT_VERSION!r}"
        )
    lineage, serial = doc.get("lineage"), doc.get("serial")
    if lineage is not None and not isinstance(lineage, str):
        raise bad("lineage must be a string")
    if not isinstance(serial, int) or isinstance(serial, bool) or serial < 0:
        raise bad("serial must be a whole number")
    resources, outputs = doc.get("resources"), doc.get("outputs")
    if not isinstance(resources, list):
        raise bad("resources must be a list")
    for i, item in enumerate(resources):
        if not isinstance(item, dict) or set(item) != set(RESOURCE_FIELDS):
            raise bad(f"resources[{i}] must have exactly the fields {', '.join(RESOURCE_FIELDS)}")
        for f in ("address", "kind", "name", "provider", "status"):
            if not isinstance(item[f], str):
                raise bad(f"resources[{i}].{f} must be a string")
        if not isinstance(item["attributes"], dict) or not isinstance(item["computed"], dict):
            raise bad(f"resources[{i}]: attributes and computed must be objects")
        if not isinstance(item["dependencies"], list):
            raise bad(f"resources[{i}].dependencies must be a list")
    if not isinstance(outputs, dict) or not all(
        isinstance(o, dict) and set(o) == {"value", "sensitive"} for o in outputs.values()
    ):
        raise bad('outputs must map names to {"value": ..., "sensitive": true|false}')
    return lineage, serial, resources, outputs
