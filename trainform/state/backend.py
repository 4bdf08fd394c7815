"""Where state lives: the backend the configuration names (an SQLite file, or a PostgreSQL
database shared by a team and its CI), and the CLI workspaces in it (``dev``, ``staging``,
``prod``), each with its own state, run history and lock.

The engine and the ``runs`` commands never know which backend they have: they get a store
from :func:`open_state`. A PostgreSQL connection string is a secret (it may hold a
password): it is kept out of ``repr`` and shown only through :meth:`BackendSpec.describe`.
"""

from __future__ import annotations

import os
import re
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
WORKSPACES_DIR = "workspaces"  # SQLite: <state dir>/workspaces/<name>/<state file name>
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
    ``workspaces/<name>/`` beside it, under the same file name."""
    assert spec.path is not None
    if workspace == DEFAULT_WORKSPACE:
        return spec.path
    return spec.path.parent / WORKSPACES_DIR / workspace / spec.path.name


def open_state(spec: BackendSpec, workspace: str, create: bool = False) -> StateStore:
    """The store of ``workspace`` in the backend. With ``create=False`` nothing is made
    until the first write or lock (a plan leaves no empty state behind)."""
    if spec.kind == "pg":
        from trainform.state.postgres import PgStateStore

        return PgStateStore(spec.conn_str, spec.schema_name, workspace, create=create)
    from trainform.state.store import SQLiteStateStore

    return SQLiteStateStore(sqlite_path(spec, workspace), create=create)
