"""Where state lives: the backend the configuration names (an SQLite file, or a PostgreSQL
database shared by a team and its CI), and the CLI workspaces in it (``dev``, ``staging``,
``prod``), each with its own state, run history and lock.

The engine and the ``runs`` commands never know which backend they have: they get a store
from :func:`open_state`. A PostgreSQL connection string is a secret (it may hold a
password): it is kept out of ``repr`` and shown only through :meth:`BackendSpec.describe`.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from trainform.errors import StateError

if TYPE_CHECKING:
    from trainform.config.model import Module
    from trainform.state.store import StateStore

DATA_DIR = ".trainform"
DEFAULT_WORKSPACE = "default"
WORKSPACE_ENV = "TRAINFORM_WORKSPACE"  # overrides the selected workspace (TF_WORKSPACE)
PG_ENV = ("TRAINFORM_PG_CONN_STR", "PG_CONN_STR")  # first set wins
WORKSPACE_FILE = "workspace"  # .trainform/workspace: the selected workspace's name
# SQLite: a non-default workspace's file is <state file>.d/<name>/<state file name>, as
# Terraform's terraform.tfstate.d/<name>/ (not .trainform/workspaces/, where workspace
# blocks keep their artifact stores: a CLI workspace "ml" must not share a folder with one).
WORKSPACES_SUFFIX = ".d"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class BackendSpec:
    """A backend as configured: ``kind`` is "sqlite" (``path``: the default workspace's
    file) or "pg" (``conn_str``, ``schema_name``)."""

    kind: str
    path: Path | None = None
    conn_str: str = field(default="", repr=False)
    schema_name: str = "trainform"

    def describe(self) -> str:
        """The backend for messages: the file, or the database with no password."""
        if self.kind == "pg":
            from trainform.state.postgres import redact

            return f"PostgreSQL {redact(self.conn_str)} (schema {self.schema_name})"
        return f"SQLite {self.path}"


def backend_spec(module: Module) -> BackendSpec:
    """The backend ``module``'s ``trainform { backend ... }`` block names (SQLite at
    ``.trainform/state.db`` by default). A pg backend without ``conn_str`` takes it from
    ``TRAINFORM_PG_CONN_STR`` or ``PG_CONN_STR``. Raises StateError when there is none."""
    settings = module.settings
    if settings.backend == "pg":
        conn = settings.conn_str or next((os.environ[v] for v in PG_ENV if os.environ.get(v)), "")
        if not conn:
            raise StateError(
                'the "pg" backend needs a connection string: set conn_str in the backend '
                f"block or {' or '.join(PG_ENV)} in the environment"
            )
        return BackendSpec("pg", conn_str=conn, schema_name=settings.schema_name)
    configured = settings.state_path
    if configured:
        p = Path(configured).expanduser()
        return BackendSpec("sqlite", p if p.is_absolute() else module.directory / p)
    return BackendSpec("sqlite", module.directory / DATA_DIR / "state.db")


def check_workspace_name(name: str) -> str:
    """``name`` if it can name a workspace (letters, digits, ``-`` and ``_``, up to 63
    characters, starting with a letter or digit); else StateError."""
    if not _NAME.match(name):
        raise StateError(
            f"invalid workspace name {name!r}: use letters, digits, '-' and '_' (up to 63 "
            "characters, starting with a letter or digit)"
        )
    return name


def selected_workspace(directory: Path) -> str:
    """The workspace commands in ``directory`` use: ``TRAINFORM_WORKSPACE`` if set, else
    the one ``workspace select`` recorded, else "default"."""
    env = os.environ.get(WORKSPACE_ENV)
    if env:
        return check_workspace_name(env)
    try:
        recorded = (directory / DATA_DIR / WORKSPACE_FILE).read_text().strip()
    except OSError:
        return DEFAULT_WORKSPACE
    return recorded or DEFAULT_WORKSPACE


def sqlite_path(spec: BackendSpec, workspace: str) -> Path:
    """The SQLite file of ``workspace``: the configured file for "default", else
    ``<file>.d/<name>/`` beside it, under the same file name (``.trainform/state.db.d/dev/
    state.db``)."""
    assert spec.path is not None
    if workspace == DEFAULT_WORKSPACE:
        return spec.path
    return _workspaces_folder(spec) / workspace / spec.path.name


def _workspaces_folder(spec: BackendSpec) -> Path:
    """SQLite: the folder holding the non-default workspaces' folders."""
    assert spec.path is not None
    return spec.path.with_name(spec.path.name + WORKSPACES_SUFFIX)


def describe_workspace(spec: BackendSpec, workspace: str) -> str:
    """A workspace's state for messages: ``SQLite FILE`` (the workspace's own file), or
    ``workspace "dev" (PostgreSQL ... )``."""
    sqlite = spec.kind == "sqlite"
    where = f"SQLite {sqlite_path(spec, workspace)}" if sqlite else spec.describe()
    if workspace == DEFAULT_WORKSPACE:
        return where
    return f'workspace "{workspace}" ({where})'


def open_state(spec: BackendSpec, workspace: str, create: bool = False) -> StateStore:
    """The store of ``workspace`` in the backend. With ``create=False`` nothing is made
    until the first write or lock (a plan leaves no empty state behind)."""
    if spec.kind == "pg":
        from trainform.state.postgres import PgStateStore

        return PgStateStore(spec.conn_str, spec.schema_name, workspace, create=create)
    from trainform.state.sqlite import SQLiteStateStore

    return SQLiteStateStore(sqlite_path(spec, workspace), create=create)


def _workspace_folder(spec: BackendSpec, name: str) -> Path:
    """SQLite: the folder that holds a non-default workspace (it exists iff the workspace
    does, whether or not anything was recorded in it yet)."""
    return sqlite_path(spec, name).parent


def workspaces(spec: BackendSpec) -> list[str]:
    """The backend's workspaces, sorted, "default" always among them. Raises StateError."""
    if spec.kind == "pg":
        from trainform.state.postgres import pg_list_workspaces

        names = set(pg_list_workspaces(spec.conn_str, spec.schema_name))
    else:
        folder = _workspaces_folder(spec)
        try:
            names = {d.name for d in folder.iterdir() if d.is_dir() and _NAME.match(d.name)}
        except FileNotFoundError:
            names = set()
        except OSError as exc:
            raise StateError(f"cannot list the workspaces in {folder}: {exc.strerror}") from None
    return sorted(names | {DEFAULT_WORKSPACE})


def workspace_exists(spec: BackendSpec, name: str) -> bool:
    if name == DEFAULT_WORKSPACE:
        return True
    if spec.kind == "pg":
        return name in workspaces(spec)
    return _workspace_folder(spec, name).is_dir()


def missing_workspace(spec: BackendSpec, name: str) -> StateError:
    """The error for a workspace that does not exist, listing those that do."""
    return StateError(
        f'workspace "{name}" does not exist in {spec.describe()} (the workspaces: '
        f"{', '.join(workspaces(spec))}); create it with `trainform workspace new {name}`"
    )


def current_workspace(spec: BackendSpec, directory: Path) -> str:
    """The selected workspace (see :func:`selected_workspace`), checked to exist. Raises
    StateError naming where the selection came from."""
    name = selected_workspace(directory)
    if workspace_exists(spec, name):
        return name
    source = (
        f"{WORKSPACE_ENV}={name}"
        if os.environ.get(WORKSPACE_ENV)
        else f"selected in {directory / DATA_DIR / WORKSPACE_FILE}"
    )
    raise StateError(f"{missing_workspace(spec, name)} ({source})")


def select_workspace(directory: Path, name: str) -> None:
    """Record ``name`` as the workspace commands in ``directory`` use (the file is removed
    for "default", as a fresh directory has none)."""
    path = directory / DATA_DIR / WORKSPACE_FILE
    try:
        if name == DEFAULT_WORKSPACE:
            path.unlink(missing_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(name + "\n")
    except OSError as exc:
        raise StateError(
            f"cannot record the selected workspace in {path}: {exc.strerror}"
        ) from None


def new_workspace(spec: BackendSpec, name: str) -> None:
    """Create an empty workspace. Raises StateError if it exists (or the name is invalid).
    Takes no lock that other workspaces wait on."""
    check_workspace_name(name)
    if workspace_exists(spec, name):
        raise StateError(f'workspace "{name}" already exists')
    if spec.kind == "pg":
        from trainform.state.postgres import pg_create_workspace

        pg_create_workspace(spec.conn_str, spec.schema_name, name)
        return
    folder = _workspace_folder(spec, name)
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        raise StateError(f'workspace "{name}" already exists') from None
    except OSError as exc:
        raise StateError(f"cannot create workspace folder {folder}: {exc.strerror}") from None


def _delete_sqlite_workspace(spec: BackendSpec, name: str) -> None:
    import shutil

    folder = _workspace_folder(spec, name)
    try:
        shutil.rmtree(folder)
    except OSError as exc:
        raise StateError(f"cannot delete workspace folder {folder}: {exc.strerror}") from None


def delete_workspace(
    spec: BackendSpec, name: str, force: bool = False, lock: bool = True, lock_timeout: float = 0.0
) -> int:
    """Delete a workspace with its state and run history; return how many resources its
    state still managed (non-zero only with ``force``). Refused for "default", for a
    missing workspace, for one whose state manages resources (unless ``force``), and while
    its lock is held (LockError, after ``lock_timeout``). The caller refuses the current
    workspace."""
    check_workspace_name(name)
    if name == DEFAULT_WORKSPACE:
        raise StateError('the "default" workspace cannot be deleted')
    if not workspace_exists(spec, name):
        raise missing_workspace(spec, name)
    store = open_state(spec, name, create=False)
    try:
        held = store.acquire_lock("workspace delete", lock_timeout) if lock else None
        try:
            managed = sorted(store.resources())
            if managed and not force:
                shown = ", ".join(managed[:5]) + (", ..." if len(managed) > 5 else "")
                raise StateError(
                    f'workspace "{name}" is not empty: its state manages {len(managed)} '
                    f"resource{'s' if len(managed) != 1 else ''} ({shown}). Destroy them "
                    "first (`trainform destroy` in that workspace), or delete it with -force, "
                    "after which trainform can no longer track or manage them"
                )
            if spec.kind == "sqlite":  # under the lock: no command starts in it meanwhile
                _delete_sqlite_workspace(spec, name)
                held = None  # the lock was a row of the file just deleted
        finally:
            if held is not None:
                store.release_lock(held)
    finally:
        store.close()
    if spec.kind == "pg":  # its own transaction takes the lock again and checks again
        from trainform.state.postgres import pg_delete_workspace

        pg_delete_workspace(spec.conn_str, spec.schema_name, name, only_if_empty=not force)
    return len(managed)


def location(spec: BackendSpec, workspace: str) -> dict[str, str]:
    """Where a workspace's state is, for a background process's spec file: no connection
    string (a secret); the process reads it from ``TRAINFORM_PG_CONN_STR``, which
    :func:`child_environment` sets."""
    if spec.kind == "pg":
        return {"kind": "pg", "schema_name": spec.schema_name, "workspace": workspace}
    return {"kind": "sqlite", "path": str(sqlite_path(spec, workspace)), "workspace": workspace}


def child_environment(spec: BackendSpec) -> dict[str, str]:
    """The environment of a background process that opens the state at a
    :func:`location`: this one's, with the pg connection string."""
    env = dict(os.environ)
    if spec.kind == "pg":
        env[PG_ENV[0]] = spec.conn_str
    return env


def open_location(where: dict[str, str]) -> StateStore:
    """The store at a :func:`location` (a spec file that has only ``state_path`` is an
    SQLite file's, as written before backends). Raises StateError."""
    if where.get("kind") == "pg":
        conn = next((os.environ[v] for v in PG_ENV if os.environ.get(v)), "")
        if not conn:
            raise StateError(
                f"the state is in PostgreSQL but {PG_ENV[0]} is not set in this process's "
                "environment"
            )
        spec = BackendSpec("pg", conn_str=conn, schema_name=where["schema_name"])
        return open_state(spec, where.get("workspace", DEFAULT_WORKSPACE), create=True)
    from trainform.state.sqlite import SQLiteStateStore

    return SQLiteStateStore(Path(where["path"]))


# --------------------------------------------------------------- the initialised backend
BACKEND_FILE = "backend.json"  # .trainform/backend.json: the backend `init` set up


def without_password(conn_str: str) -> str:
    """A connection string in libpq's ``key=value`` form, keys sorted, with no password
    (libpq reads it from PGPASSWORD or ~/.pgpass). Raises StateError, never quoting
    ``conn_str`` (it may hold the password)."""
    try:
        from psycopg import ProgrammingError
        from psycopg.conninfo import conninfo_to_dict, make_conninfo
    except ImportError:
        raise StateError('the "pg" backend needs psycopg: pip install "psycopg[binary]"') from None

    try:
        parts = conninfo_to_dict(conn_str)
    except ProgrammingError:
        raise StateError(
            "the pg backend's connection string cannot be parsed: use a URL "
            "(postgres://USER@HOST:PORT/DB) or libpq's key=value form"
        ) from None
    parts.pop("password", None)
    return make_conninfo(**{k: str(v) for k, v in sorted(parts.items())})


def backend_record(spec: BackendSpec, directory: Path) -> dict[str, str]:
    """What ``.trainform/backend.json`` records of a backend: never a password. An SQLite
    file inside the configuration's ``directory`` is recorded relative to it, so that
    moving the folder (or checking it out elsewhere) is no change of backend."""
    if spec.kind == "pg":
        return {
            "kind": "pg",
            "conn_str": without_password(spec.conn_str),
            "schema_name": spec.schema_name,
        }
    assert spec.path is not None
    path = spec.path.resolve()
    with suppress(ValueError):
        path = path.relative_to(directory.resolve())
    return {"kind": "sqlite", "path": str(path)}


def recorded_backend(directory: Path) -> BackendSpec | None:
    """The backend ``init`` recorded for ``directory``, or None. A pg backend's connection
    string is the recorded one (no password: libpq finds it), or the one in
    TRAINFORM_PG_CONN_STR / PG_CONN_STR if that names the same server and database.
    Raises StateError for a file that is not a record."""
    path = directory / DATA_DIR / BACKEND_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        raise StateError(
            f"{path} is not a backend record: run `trainform init -reconfigure`"
        ) from None
    if not isinstance(record, dict) or record.get("kind") not in ("sqlite", "pg"):
        raise StateError(f"{path} is not a backend record: run `trainform init -reconfigure`")
    if record["kind"] == "sqlite":
        return BackendSpec("sqlite", directory / record["path"])  # relative, or absolute
    conn = str(record["conn_str"])
    for name in PG_ENV:
        value = os.environ.get(name)
        if value:
            with suppress(StateError):
                if without_password(value) == conn:
                    conn = value
                    break
    return BackendSpec("pg", conn_str=conn, schema_name=str(record["schema_name"]))


def same_backend(a: BackendSpec, b: BackendSpec, directory: Path) -> bool:
    return backend_record(a, directory) == backend_record(b, directory)


def record_backend(directory: Path, spec: BackendSpec) -> None:
    """Record ``spec`` as the backend ``init`` set up (atomically; no password)."""
    path = directory / DATA_DIR / BACKEND_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(backend_record(spec, directory), indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def previous_backend(directory: Path, spec: BackendSpec) -> BackendSpec | None:
    """The backend state was in before, if ``spec`` is another one: the recorded one, or,
    where ``init`` recorded none yet (a directory from before backends were recorded), the
    default SQLite file if it holds state."""
    recorded = recorded_backend(directory)
    if recorded is None:
        default = BackendSpec("sqlite", directory / DATA_DIR / "state.db")
        if spec.kind == "sqlite" or not default.path or not default.path.exists():
            return None
        recorded = default
    return None if same_backend(recorded, spec, directory) else recorded


def check_initialised(directory: Path, spec: BackendSpec) -> None:
    """Raise StateError if the configuration names another backend than the one ``init``
    recorded, or, where none was recorded, than the default SQLite file that holds state
    (state would silently be read from the wrong place)."""
    previous = previous_backend(directory, spec)
    if previous is not None:
        was = (
            f"`trainform init` set up {previous.describe()}"
            if recorded_backend(directory) is not None
            else f"state is in {previous.describe()}"
        )
        raise StateError(
            f"the backend changed: {was}, and the configuration now names {spec.describe()}. Run `trainform init -migrate-state` "
            "to copy the state and history of every workspace to the new backend, or "
            "`trainform init -reconfigure` to use the new one and leave the old one as it is"
        )


def migrate_state(
    old: BackendSpec, new: BackendSpec, lock_timeout: float = 0.0, force: bool = False
) -> list[tuple[str, dict[str, int] | None]]:
    """Copy every workspace's state and history from ``old`` to ``new`` (creating the
    workspaces there), holding both workspaces' locks while each is copied, and verifying
    the copy (trainform.state.migrate.copy_all). Returns (workspace, counts) per workspace;
    counts are empty for an empty workspace (only created) and None for one that ``new``
    already holds exactly (copied by an earlier, interrupted migration). Before anything is
    copied, a workspace that ``new`` holds other state for is refused unless ``force``
    (then it is replaced), so a refused migration changes nothing. Raises StateError /
    LockError."""
    from trainform.state.migrate import copy_all

    names = workspaces(old)
    plan: list[tuple[str, str]] = []  # (workspace, "empty" | "same" | "copy")
    conflicts: list[str] = []
    for name in names:
        src = open_state(old, name, create=False)
        dst = open_state(new, name, create=False) if workspace_exists(new, name) else None
        try:
            if src.is_empty():
                plan.append((name, "empty"))
            elif dst is None or dst.is_empty():
                plan.append((name, "copy"))
            elif dst.digests() == src.digests():
                plan.append((name, "same"))
            else:
                lineage, serial = dst.lineage_serial()
                conflicts.append(f'"{name}" (lineage {lineage}, serial {serial})')
                plan.append((name, "copy"))
        finally:
            src.close()
            if dst is not None:
                dst.close()
    if conflicts and not force:
        raise StateError(
            f"{new.describe()} already holds other state for workspace(s) "
            f"{', '.join(conflicts)}; nothing was copied. Move that state away, or run "
            "`trainform init -migrate-state -force-copy` to replace it with the old backend's"
        )
    copied: list[tuple[str, dict[str, int] | None]] = []
    for name, what in plan:
        if not workspace_exists(new, name):
            new_workspace(new, name)
        if what != "copy":
            copied.append((name, {} if what == "empty" else None))
            continue
        src = open_state(old, name, create=False)
        dst = open_state(new, name, create=True)
        try:
            src_lock = src.acquire_lock("init -migrate-state", lock_timeout)
            try:
                dst_lock = dst.acquire_lock("init -migrate-state", lock_timeout)
                try:
                    copied.append((name, copy_all(src, dst, force=force)))
                finally:
                    dst.release_lock(dst_lock)
            finally:
                src.release_lock(src_lock)
        finally:
            src.close()
            dst.close()
    return copied
