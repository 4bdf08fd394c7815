"""The state backend a CLI test's configuration names (importable as `backends`, like
`helpers`): SQLite (the default file) or PostgreSQL (a database of the test's own, from the
`pg_conn_str` fixture). Tests parametrize over both with :func:`backend_for`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers import CLI, ok, unavailable

from trainform.state.backend import BackendSpec

KINDS = ["sqlite", "pg"]


class Backend:
    """How a test's configuration names its state backend: :meth:`write` puts the
    ``trainform { backend ... }`` block before the configuration; the pg connection string
    is given in TRAINFORM_PG_CONN_STR, as CI would."""

    def __init__(self, kind: str, cli: CLI, conn_str: str = "", schema: str = "trainform"):
        self.kind = kind
        self.cli = cli
        self.schema = schema
        self.conn_str = conn_str
        if conn_str:
            cli.env["TRAINFORM_PG_CONN_STR"] = conn_str

    @property
    def block(self) -> str:
        if self.kind == "sqlite":
            return ""
        return f'trainform {{\n  backend "pg" {{\n    schema_name = "{self.schema}"\n  }}\n}}\n\n'

    def write(self, config: str) -> None:
        self.cli.write("main.train.hcl", self.block + config)

    def spec(self) -> BackendSpec:
        if self.kind == "sqlite":
            return BackendSpec("sqlite", self.cli.cwd / ".trainform" / "state.db")
        return BackendSpec("pg", conn_str=self.conn_str, schema_name=self.schema)


def pg_conn_str(request: pytest.FixtureRequest) -> str:
    """A new database's connection string (the `pg_conn_str` fixture)."""
    try:
        return str(request.getfixturevalue("pg_conn_str"))
    except pytest.FixtureLookupError:
        unavailable("the pg_conn_str fixture (a PostgreSQL server) is not in tests/conftest.py")
        raise


def backend_for(request: pytest.FixtureRequest, cli: CLI) -> Backend:
    """The Backend of a fixture parametrized over :data:`KINDS`."""
    if request.param == "pg":
        return Backend("pg", cli, pg_conn_str(request))
    return Backend("sqlite", cli)


def history(cli: CLI, workspace: str) -> dict[str, Any]:
    """Everything a user can read about a workspace's state and history (to compare it
    before and after moving it between backends)."""
    env = {"TRAINFORM_WORKSPACE": workspace}
    runs = json.loads(ok(cli("runs", "list", "--json", **env)).out)
    return {
        "state": json.loads(ok(cli("state", "pull", **env)).out),
        "runs": runs,
        "metrics": [ok(cli("runs", "metrics", r["id"], **env)).out for r in runs],
        "versions": ok(cli("state", "list-versions", **env)).out,
        "outputs": ok(cli("output", "-json", **env)).out,
    }
