"""State in PostgreSQL, shared by a team and its CI: :class:`PgStateStore` (psycopg 3,
``pip install 'trainform[pg]'``).

Layout. The configured ``schema_name`` (default ``trainform``) holds one registry table,
``<schema>.workspaces(name, schema, created)``. Each CLI workspace (``default`` included)
has a schema of its own, ``<schema>_ws_<name>`` (lower-cased; a name that is not already a
plain lower-case identifier gets a hash suffix, so no two workspaces share one), holding the
same tables as an SQLite state file: ``meta`` (lineage, serial, fingerprint key, schema
version), ``resources``, ``outputs``, ``runs``, ``run_metrics``, ``sweeps``,
``apply_history``, ``state_versions`` and ``lock`` (who holds the lock). So each workspace
has its own state, run history and lock, and the backend-neutral SQL of
:class:`~trainform.state.store.StateStore` runs unchanged with the connection's
``search_path`` set to the workspace's schema. Values are stored as in SQLite (JSON text):
sensitive values are the same salted hashes.

Creating a workspace (on the first write or lock; ``create=True`` at once) uses only
``IF NOT EXISTS`` / ``ON CONFLICT DO NOTHING`` statements, serialised by a transaction-level
advisory lock keyed on that one workspace: nothing blocks other workspaces or other states
(Terraform's pg backend takes one global lock there, hashicorp/terraform#33217). A role that
only reads an existing workspace needs no CREATE right.

Connections. A store has one connection, in autocommit mode outside its explicit
transactions; every write is one transaction. :meth:`PgStateStore.fingerprint_key`, which
providers call from worker threads, uses a short connection of its own.

Locking. :meth:`PgStateStore.acquire_lock` takes a session-level advisory lock keyed on
(schema, workspace) with ``pg_try_advisory_lock`` on the store's connection, polling until the
timeout, and then records its holder (id, user, host, pid, operation, since when, and the
PostgreSQL backend pid) in ``lock``. The lock lasts as long as the session: a command holds
it until it ends (approval prompt included), and a killed command's lock is gone with its
connection, so it is never stale. ``force-unlock ID`` terminates the holder's session
(``pg_terminate_backend``) when the ID is the current holder's.

Durability. A command that holds the lock commits its writes without waiting for the
server to flush its write-ahead log (``synchronous_commit = off`` for the session); releasing
the lock commits with the flush, which makes every earlier commit durable too. Each write is
still one transaction, visible to every other session at once, and survives this process
being killed and the server being stopped or restarted cleanly; only a crash of the server
itself (or its machine) within about half a second of a write can lose that write, as a power
cut can lose SQLite's last writes in WAL mode with ``synchronous=NORMAL``. It halves the cost
of a resource write, which is dominated by that flush (bench/state_backends.py).

Errors from psycopg become :class:`StateError` naming the backend as :func:`redact` shows it
(user@host:port/database, never the password), with what to do. No message, and nothing
stored, holds the connection string's password.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from trainform.errors import LockError, StateError
from trainform.state.locking import current_user, hostname
from trainform.state.secrets import new_key
from trainform.state.store import LockInfo, StateStore, now

if TYPE_CHECKING:
    import psycopg

DEFAULT_SCHEMA = "trainform"
DEFAULT_WORKSPACE = "default"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")
PG_SCHEMA_VERSION = 2

# ---------------------------------------------------------------------- connection strings


def _dsn_pairs(conn_str: str) -> dict[str, str] | None:
    """libpq's ``key=value`` form (values optionally single-quoted, with backslash escapes),
    or None if ``conn_str`` is not in that form."""
    out: dict[str, str] = {}
    i, n = 0, len(conn_str)
    while i < n:
        while i < n and conn_str[i].isspace():
            i += 1
        if i >= n:
            break
        m = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*").match(conn_str, i)
        if not m:
            return None
        key, i = m.group(1), m.end()
        value: list[str] = []
        if i < n and conn_str[i] == "'":
            i += 1
            while i < n and conn_str[i] != "'":
                if conn_str[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(conn_str[i])
                i += 1
            if i >= n:
                return None
            i += 1
        else:
            while i < n and not conn_str[i].isspace():
                if conn_str[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(conn_str[i])
                i += 1
        out[key] = "".join(value)
    return out


def _uri_parts(conn_str: str) -> dict[str, str]:
    """The parts of a ``postgres://`` / ``postgresql://`` URI, as libpq keys."""
    parts = urlsplit(conn_str)
    out: dict[str, str] = {}
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        if user:
            out["user"] = unquote(user)
        if password:
            out["password"] = unquote(password)
    hosts, ports = [], []
    for hp in filter(None, netloc.split(",")):
        if hp.startswith("["):  # [::1]:5432
            host, _, rest = hp[1:].partition("]")
            hosts.append(host)
            ports.append(rest.lstrip(":"))
        else:
            host, _, port = hp.partition(":")
            hosts.append(unquote(host))
            ports.append(port)
    if any(hosts):
        out["host"] = ",".join(hosts)
    if any(ports):
        out["port"] = ",".join(ports)
    if parts.path.strip("/"):
        out["dbname"] = unquote(parts.path.lstrip("/"))
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        out[key] = value
    return out


def _parts(conn_str: str) -> dict[str, str] | None:
    text = conn_str.strip()
    if re.match(r"^postgres(ql)?://", text, re.I):
        try:
            return _uri_parts(text)
        except ValueError:
            return None
    return _dsn_pairs(text)


def redact(conn_str: str) -> str:
    """The connection string for messages: ``user@host:port/database``, without the
    password or any other option (URI and ``key=value`` forms)."""
    parts = _parts(conn_str)
    if parts is None:
        return "(connection string not shown: it cannot be read)"
    host = parts.get("host") or parts.get("hostaddr") or "localhost"
    ports = parts.get("port") or "5432"
    hosts = host.split(",")
    port_list = ports.split(",")
    where = ",".join(
        f"{h or 'localhost'}:{port_list[i] if i < len(port_list) else port_list[-1] or '5432'}"
        for i, h in enumerate(hosts)
    )
    user = parts.get("user", "")
    db = parts.get("dbname") or user or "postgres"
    return f"{user + '@' if user else ''}{where}/{db}"


def _secrets(conn_str: str) -> list[str]:
    """Every form of the password(s) ``conn_str`` carries, longest first."""
    found: set[str] = set()
    parts = _parts(conn_str)
    if parts and parts.get("password"):
        found.add(parts["password"])
    for m in re.finditer(r"password\s*=\s*('(?:[^'\\]|\\.)*'|[^\s&]+)", conn_str, re.I):
        found.add(m.group(1))
        found.add(m.group(1).strip("'"))
    userinfo = re.match(r"^\w+://[^/@]*?:([^@/]*)@", conn_str.strip())
    if userinfo and userinfo.group(1):
        found.add(userinfo.group(1))
    found |= {unquote(s) for s in found}
    return sorted((s for s in found if s), key=len, reverse=True)


def scrub(text: str, conn_str: str) -> str:
    """``text`` (a driver's message) with the connection string replaced by its
    :func:`redact` form and any password in it replaced by ``***``."""
    if conn_str and conn_str in text:
        text = text.replace(conn_str, redact(conn_str))
    for secret in _secrets(conn_str):
        text = text.replace(secret, "***")
    text = re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", text, flags=re.I)
    return re.sub(r"(\w+://[^/@:\s]*):[^@/\s]*@", r"\1:***@", text)


# ---------------------------------------------------------------------- names and keys


def check_schema_name(name: str) -> str:
    """``name`` if it can name trainform's schema; else StateError."""
    if not _SCHEMA_NAME.match(name):
        raise StateError(
            f"invalid PostgreSQL schema_name {name!r}: use lower-case letters, digits and '_' "
            "(up to 40 characters, not starting with a digit)"
        )
    return name


def workspace_schema(schema_name: str, workspace: str) -> str:
    """The schema that holds ``workspace``'s tables (see the module docstring)."""
    prefix = f"{schema_name}_ws_"
    slug = re.sub(r"[^a-z0-9_]", "_", workspace.lower())
    if slug != workspace or len(prefix) + len(slug) > 63:
        tag = hashlib.sha256(workspace.encode()).hexdigest()[:8]
        slug = f"{slug[: 63 - len(prefix) - 9]}_{tag}"
    return prefix + slug


def _key(*parts: str) -> int:
    """A signed 64-bit advisory lock key for ``parts``."""
    digest = hashlib.sha256("\0".join(("trainform", *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def state_lock_key(schema_name: str, workspace: str) -> int:
    return _key("state", schema_name, workspace)


def _quote(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


# ---------------------------------------------------------------------- DDL

_WORKSPACE_TABLES = [
    "CREATE TABLE IF NOT EXISTS {s}.meta (key text PRIMARY KEY, value text)",
    """CREATE TABLE IF NOT EXISTS {s}.resources (
        address text PRIMARY KEY, kind text, name text, key text, provider text,
        attributes text, computed text, dependencies text, status text,
        created_at text, updated_at text)""",
    "CREATE TABLE IF NOT EXISTS {s}.outputs (name text PRIMARY KEY, value text, sensitive integer)",
    """CREATE TABLE IF NOT EXISTS {s}.lock (
        name text PRIMARY KEY, id text, who text, operation text, created text, pid bigint,
        host text, backend_pid bigint)""",
    """CREATE TABLE IF NOT EXISTS {s}.apply_history (
        id bigserial PRIMARY KEY, started text, finished text, who text, host text,
        command text, changes text, outcome text, serial bigint)""",
    """CREATE TABLE IF NOT EXISTS {s}.runs (
        id text PRIMARY KEY, address text, workspace text, experiment text, status text,
        fingerprint text, created text, finished text, record text)""",
    "CREATE INDEX IF NOT EXISTS runs_workspace ON {s}.runs (workspace)",
    """CREATE TABLE IF NOT EXISTS {s}.run_metrics (
        rowid bigserial PRIMARY KEY, run_id text, name text, step bigint,
        value double precision, time double precision, source text)""",
    "CREATE INDEX IF NOT EXISTS run_metrics_run ON {s}.run_metrics (run_id, name)",
    """CREATE TABLE IF NOT EXISTS {s}.sweeps (
        id text PRIMARY KEY, address text, status text, fingerprint text, created text,
        finished text, record text)""",
    """CREATE TABLE IF NOT EXISTS {s}.state_versions (
        serial bigint PRIMARY KEY, lineage text, created text, who text, host text,
        command text, plan_digest text, state text)""",
]
# PG_MIGRATIONS[v] takes a workspace schema from version v to v + 1.
PG_MIGRATIONS: list[list[str]] = [
    _WORKSPACE_TABLES,
    ["ALTER TABLE {s}.run_metrics ADD COLUMN IF NOT EXISTS nonfinite text"],
]


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        from trainform.extras import needs

        raise StateError(needs("psycopg", 'the "pg" state backend')) from None
    return psycopg


def _exists_in(conn: psycopg.Connection[Any], table: str) -> bool:
    """Whether ``table`` (schema-qualified, quoted) exists."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [table]).fetchone()
    return bool(row and row[0])


def _lost(where: str, text: str) -> StateError:
    return StateError(
        f"lost the connection to {where}: the server closed the connection; the state lock "
        "went with it; every completed change was committed, the one in progress was not; "
        f"run the command again ({text})"
    )


def _message(exc: BaseException, conn_str: str) -> str:
    """psycopg's message on one line, without the password, ready for a sentence after it
    (libpq's lines joined with "; ", its closing punctuation dropped)."""
    lines = (" ".join(line.split()) for line in str(exc).splitlines())
    text = scrub("; ".join(line for line in lines if line), conn_str).rstrip(" .?!")
    return text or type(exc).__name__


def _error(exc: BaseException, conn_str: str, where: str, lost: bool) -> StateError:
    """The StateError for a psycopg error (``lost``: the connection is gone)."""
    pg = _psycopg()
    text = _message(exc, conn_str)
    if isinstance(exc, pg.errors.InsufficientPrivilege):
        return StateError(
            f"permission denied on {where}: {text}. The role needs CREATE on the database "
            "(once, to create the schemas) and full rights on trainform's schemas; ask the "
            "database's owner to grant them, or use another role"
        )
    if lost:
        return _lost(where, text)
    return StateError(f"{where}: {text}")


def _connect(conn_str: str, where: str) -> psycopg.Connection[Any]:
    pg = _psycopg()
    options: dict[str, Any] = {"autocommit": True}
    parts = _parts(conn_str) or {}
    if "application_name" not in parts:
        options["application_name"] = "trainform"
    if "connect_timeout" not in parts:
        options["connect_timeout"] = 15
    try:
        return pg.connect(conn_str, **options)
    except pg.Error as exc:
        if isinstance(exc, pg.errors.InsufficientPrivilege):
            raise _error(exc, conn_str, where, False) from None
        text = _message(exc, conn_str)
        raise StateError(
            f"cannot connect to {where}: {text}. Check that the server runs and accepts "
            "connections from this host, and the connection string (conn_str in the backend "
            "block, or TRAINFORM_PG_CONN_STR / PG_CONN_STR)"
        ) from None


def _backend_name(conn_str: str) -> str:
    return f"the PostgreSQL state backend {redact(conn_str)}"


# ---------------------------------------------------------------------- the store


class PgStateStore(StateStore):
    """The state of one workspace in PostgreSQL (see the module docstring). Connects at
    once (StateError if it cannot). With ``create=False`` nothing is created until the first
    write or lock: reads of a workspace that does not exist yet see empty state."""

    def __init__(
        self,
        conn_str: str,
        schema_name: str = DEFAULT_SCHEMA,
        workspace: str = DEFAULT_WORKSPACE,
        create: bool = False,
    ) -> None:
        super().__init__()
        self._conn_str = conn_str
        self.schema_name = check_schema_name(schema_name)
        self.workspace = workspace
        self.ws_schema = workspace_schema(schema_name, workspace)
        self.db_errors = (_psycopg().Error,)
        self._conn: psycopg.Connection[Any] | None = None
        self._ready = False  # the workspace's tables exist, at this version
        self._lock_key = state_lock_key(schema_name, workspace)
        self._holding: LockInfo | None = None
        self._connection()
        if create:
            self._run(self._ensure)

    def __repr__(self) -> str:
        return f"PgStateStore({self.describe()})"

    def describe(self) -> str:
        return (
            f"PostgreSQL {redact(self._conn_str)} (schema {self.schema_name}, "
            f"workspace {self.workspace})"
        )

    @property
    def where(self) -> str:
        return _backend_name(self._conn_str)

    def _run(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self.db_errors as exc:
            raise self._state_error(exc) from None

    def _state_error(self, exc: BaseException) -> StateError:
        lost = self._conn is not None and (self._conn.broken or self._conn.closed)
        return _error(exc, self._conn_str, self.where, lost)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            conn = _connect(self._conn_str, self.where)
            try:
                conn.execute(
                    "SELECT set_config('search_path', %s, false)", [_quote(self.ws_schema)]
                )
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    # ------------------------------------------------------------------ primitives
    def execute(self, sql: str, params: Any = ()) -> Any:
        if params:
            return self._connection().execute(sql.replace("%", "%%").replace("?", "%s"), params)
        return self._connection().execute(sql)

    def _executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        with self._connection().cursor() as cur:
            cur.executemany(sql.replace("%", "%%").replace("?", "%s"), rows)

    def _version(self) -> int | None:
        """The workspace schema's version; None if it has no tables yet."""
        found = self.execute(
            "SELECT to_regclass(?) IS NOT NULL", [f"{_quote(self.ws_schema)}.meta"]
        ).fetchone()[0]
        if not found:
            return None
        row = self.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _check_version(self, version: int) -> None:
        if version > PG_SCHEMA_VERSION:
            raise StateError(
                f"workspace {self.workspace} in {self.where} has schema version {version}, "
                f"newer than this trainform understands ({PG_SCHEMA_VERSION}); upgrade trainform"
            )

    def _exists(self) -> bool:
        if self._ready:
            return True
        version = self._version()
        if version is None:
            return False
        self._check_version(version)
        if version < PG_SCHEMA_VERSION:
            self._ensure()
        self._ready = True
        return True

    def _ensure(self) -> None:
        """Create (or bring up to date) the registry and this workspace's schema and
        tables, idempotently; see the module docstring for why no global lock is taken."""
        if self._ready:
            return
        pg = _psycopg()
        from psycopg import sql

        conn = self._connection()
        registry = sql.Identifier(self.schema_name)
        ws = sql.Identifier(self.ws_schema)
        for attempt in range(5):
            try:
                with conn.transaction():
                    conn.execute(
                        "SELECT pg_advisory_xact_lock(%s)",
                        [_key("create", self.schema_name, self.workspace)],
                    )
                    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(registry))
                    conn.execute(
                        sql.SQL(
                            "CREATE TABLE IF NOT EXISTS {}.workspaces (name text PRIMARY KEY, "
                            "schema text NOT NULL UNIQUE, created text NOT NULL)"
                        ).format(registry)
                    )
                    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ws))
                    version = self._version() or 0
                    self._check_version(version)
                    for step in PG_MIGRATIONS[version:]:
                        for statement in step:
                            conn.execute(sql.SQL(statement).format(s=ws))
                    self._set_meta("schema_version", str(PG_SCHEMA_VERSION))
                    conn.execute(
                        sql.SQL(
                            "INSERT INTO {}.workspaces (name, schema, created) VALUES (%s, %s, %s) "
                            "ON CONFLICT (name) DO NOTHING"
                        ).format(registry),
                        [self.workspace, self.ws_schema, now()],
                    )
                break
            except (pg.errors.UniqueViolation, pg.errors.DuplicateObject) as exc:
                # Another workspace's first command made the registry at the same moment.
                if attempt == 4:
                    raise exc
                time.sleep(0.05 * (attempt + 1))
        self._ready = True

    @contextmanager
    def _tx(self) -> Iterator[None]:
        self._ensure()
        conn = self._connection()
        # Pipeline mode: the statements of a transaction that reads nothing back (a resource
        # write) go to the server together with BEGIN and COMMIT, in one round trip.
        with conn.pipeline(), conn.transaction():
            yield

    def _after_copy(self) -> None:
        self.execute(
            "SELECT setval(pg_get_serial_sequence('apply_history', 'id'), "
            "coalesce(max(id), 0) + 1, false) FROM apply_history"
        )
        self.execute(
            "SELECT setval(pg_get_serial_sequence('run_metrics', 'rowid'), "
            "coalesce(max(rowid), 0) + 1, false) FROM run_metrics"
        )

    def _load_fingerprint_key(self) -> bytes:
        """Read (or make and record) the key on a connection of its own, so that a worker
        thread never runs a statement inside the main thread's transaction."""
        conn = _connect(self._conn_str, self.where)
        try:
            meta = f"{_quote(self.ws_schema)}.meta"
            if not _exists_in(conn, meta):
                return new_key()  # nothing recorded yet: a key for this process only
            conn.execute(
                f"INSERT INTO {meta} (key, value) VALUES ('fingerprint_key', %s) "
                "ON CONFLICT (key) DO NOTHING",
                [new_key().hex()],
            )
            row = conn.execute(f"SELECT value FROM {meta} WHERE key='fingerprint_key'").fetchone()
            assert row is not None
            return bytes.fromhex(row[0])
        except _psycopg().Error as exc:
            raise _error(exc, self._conn_str, self.where, conn.broken) from None
        finally:
            conn.close()

    # ------------------------------------------------------------------ locking
    def _holder(self) -> tuple[LockInfo | None, int | None]:
        """The lock's holder as recorded, and the backend pid that holds it (None, None when
        no session holds it). The record is None while the holder has not written it yet."""
        unsigned = self._lock_key & 0xFFFFFFFFFFFFFFFF
        row = self.execute(
            "SELECT pid FROM pg_locks WHERE locktype='advisory' AND granted AND objsubid=1 "
            "AND database=(SELECT oid FROM pg_database WHERE datname=current_database()) "
            "AND classid::bigint=? AND objid::bigint=?",
            [unsigned >> 32, unsigned & 0xFFFFFFFF],
        ).fetchone()
        if row is None:
            return None, None
        rec = self.execute(
            "SELECT id, who, operation, created, pid, host, backend_pid FROM lock "
            "WHERE name='state'"
        ).fetchone()
        if rec is None or rec[6] != row[0]:
            return None, row[0]
        return LockInfo(rec[0], rec[1], rec[2], rec[3], rec[4], rec[5]), row[0]

    def acquire_lock(self, operation: str, timeout: float = 0.0) -> LockInfo:
        """Take the workspace's lock, waiting up to ``timeout`` seconds; it is held until
        :meth:`release_lock`, :meth:`close` or the end of the process. Raises LockError
        naming the holder."""
        return self._run(self._acquire, operation, timeout)

    def _acquire(self, operation: str, timeout: float) -> LockInfo:
        self._ensure()
        deadline = time.monotonic() + timeout
        while not self.execute("SELECT pg_try_advisory_lock(?)", [self._lock_key]).fetchone()[0]:
            if time.monotonic() >= deadline:
                holder, backend = self._holder()
                if holder is not None:
                    raise LockError(
                        f"state is locked: {holder.describe()}. The lock is released when that "
                        "command ends or its connection drops; if it hangs, "
                        f"`trainform force-unlock {holder.id}` ends its session",
                        holder=holder.__dict__,
                    )
                raise LockError(
                    f"state is locked by PostgreSQL session {backend} on {self.where}, which "
                    "has not said who it is (a command starting, or a workspace being deleted)"
                )
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
        info = LockInfo(
            str(uuid.uuid4()), current_user(), operation, now(), os.getpid(), hostname()
        )
        try:
            # While the lock is held, commits do not wait for the server's disk: the
            # release's commit waits for it, and with it for every earlier one (see Durability).
            self.execute("SELECT set_config('synchronous_commit', 'off', false)")
            with self._tx():
                self._upsert(
                    "lock",
                    {
                        "name": "state",
                        "id": info.id,
                        "who": info.who,
                        "operation": operation,
                        "created": info.created,
                        "pid": info.pid,
                        "host": info.host,
                        "backend_pid": self.execute("SELECT pg_backend_pid()").fetchone()[0],
                    },
                    "name",
                )
        except BaseException:
            if self._conn is not None and not self._conn.broken:
                self.execute("SELECT pg_advisory_unlock(?)", [self._lock_key])
            raise
        self._holding = info
        return info

    def release_lock(self, lock: LockInfo) -> None:
        """Release the lock. On a lost connection there is nothing to do: the lock went
        with the session."""
        if self._conn is None or self._conn.broken or self._conn.closed:
            self._holding = None
            return
        try:
            with self._tx():
                self.execute("SET LOCAL synchronous_commit TO on")
                self.execute("DELETE FROM lock WHERE name='state' AND id=?", [lock.id])
            self.execute("SELECT set_config('synchronous_commit', 'on', false)")
            self.execute("SELECT pg_advisory_unlock(?)", [self._lock_key])
        except self.db_errors as exc:
            if self._conn.broken or self._conn.closed:
                return
            raise self._state_error(exc) from None
        finally:
            self._holding = None

    def force_unlock(self, lock_id: str) -> LockInfo:
        """End the session holding the lock with this id (``pg_terminate_backend``): its
        command stops at its next statement, with every completed change recorded. Raises
        LockError if no session holds the lock, or another lock is held."""
        return self._run(self._force_unlock, lock_id)

    def _force_unlock(self, lock_id: str) -> LockInfo:
        if not self._exists():
            raise LockError("state is not locked")
        holder, backend = self._holder()
        if backend is None:
            raise LockError(
                "state is not locked: no PostgreSQL session holds its lock (a killed "
                "command's lock ends with its connection)"
            )
        if holder is None or holder.id != lock_id:
            shown = holder.describe() if holder else f"PostgreSQL session {backend}"
            raise LockError(
                f"lock id {lock_id!r} does not match the current lock: {shown}",
                holder=holder.__dict__ if holder else {},
            )
        self.execute("SELECT pg_terminate_backend(?)", [backend])
        with self._tx():
            self.execute("DELETE FROM lock WHERE name='state' AND id=?", [lock_id])
        return replace(
            holder, note=f"its PostgreSQL session (backend pid {backend}) was terminated"
        )

    def close(self) -> None:
        """Close the connection (releasing the lock if held); the store connects again
        when next used."""
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._ready = False
        self._holding = None


# ---------------------------------------------------------------------- workspaces


@contextmanager
def _admin(conn_str: str) -> Iterator[tuple[psycopg.Connection[Any], str]]:
    where = _backend_name(conn_str)
    conn = _connect(conn_str, where)
    try:
        yield conn, where
    except _psycopg().Error as exc:
        raise _error(exc, conn_str, where, conn.broken) from None
    finally:
        conn.close()


def pg_list_workspaces(conn_str: str, schema_name: str) -> list[str]:
    """The workspaces in ``schema_name``, sorted, "default" always among them. Raises
    StateError."""
    check_schema_name(schema_name)
    with _admin(conn_str) as (conn, _where):
        registry = f"{_quote(schema_name)}.workspaces"
        if not _exists_in(conn, registry):
            return [DEFAULT_WORKSPACE]
        names = {r[0] for r in conn.execute(f"SELECT name FROM {registry}").fetchall()}
    return sorted(names | {DEFAULT_WORKSPACE})


def pg_create_workspace(conn_str: str, schema_name: str, name: str) -> None:
    """Create workspace ``name`` (idempotent; blocks no other workspace). Raises
    StateError."""
    PgStateStore(conn_str, schema_name, name, create=True).close()


def pg_delete_workspace(
    conn_str: str, schema_name: str, name: str, only_if_empty: bool = False
) -> None:
    """Drop workspace ``name``: its schema with its state, history and versions. Refused
    (StateError) for "default", while a command holds its lock, and, with
    ``only_if_empty``, if its state manages resources (checked under the lock, in the
    transaction that drops it). Deleting one that does not exist does nothing."""
    check_schema_name(schema_name)
    if name == DEFAULT_WORKSPACE:
        raise StateError('the "default" workspace cannot be deleted')
    ws = workspace_schema(schema_name, name)
    with _admin(conn_str) as (conn, where), conn.transaction():
        row = conn.execute(
            "SELECT pg_try_advisory_xact_lock(%s)", [state_lock_key(schema_name, name)]
        ).fetchone()
        if not (row and row[0]):
            held = ""
            lock_table = f"{_quote(ws)}.lock"
            if _exists_in(conn, lock_table):
                row = conn.execute(
                    f"SELECT id, who, operation, created, pid, host FROM {lock_table} "
                    "WHERE name='state'"
                ).fetchone()
                if row:
                    held = ": " + LockInfo(*row).describe()
            raise LockError(
                f"workspace {name} in {where} is in use{held}; delete it when that command ends"
            )
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [_key("create", schema_name, name)])
        resources = f"{_quote(ws)}.resources"
        if only_if_empty and _exists_in(conn, resources):
            count = conn.execute(f"SELECT count(*) FROM {resources}").fetchone()
            if count and count[0]:
                raise StateError(
                    f"workspace {name} in {where} is not empty: a command recorded "
                    f"{count[0]} resource(s) in it meanwhile; nothing was deleted"
                )
        conn.execute(f"DROP SCHEMA IF EXISTS {_quote(ws)} CASCADE")
        registry = f"{_quote(schema_name)}.workspaces"
        if _exists_in(conn, registry):
            conn.execute(f"DELETE FROM {registry} WHERE name=%s", [name])
