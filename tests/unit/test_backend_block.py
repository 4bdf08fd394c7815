"""The ``trainform { backend ... }`` block: SQLite or PostgreSQL, literal values only, with
errors that name the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainform.config.loader import load_module
from trainform.errors import ConfigError


def load(tmp_path: Path, backend: str) -> object:
    (tmp_path / "main.train.hcl").write_text(f"trainform {{\n{backend}\n}}\n")
    return load_module(tmp_path)


def test_pg_backend_settings(tmp_path: Path) -> None:
    module = load(
        tmp_path,
        '  backend "pg" {\n    conn_str = "postgresql://u:pw@h/db"\n    schema_name = "team_a"\n  }',
    )
    settings = module.settings  # type: ignore[attr-defined]
    assert (settings.backend, settings.conn_str, settings.schema_name) == (
        "pg",
        "postgresql://u:pw@h/db",
        "team_a",
    )
    assert "pw" not in repr(settings)
    default = load(tmp_path, '  backend "pg" {}').settings  # type: ignore[attr-defined]
    assert (default.backend, default.conn_str, default.schema_name) == ("pg", "", "trainform")


def test_sqlite_backend_path(tmp_path: Path) -> None:
    settings = load(tmp_path, '  backend "sqlite" {\n    path = "s.db"\n  }').settings  # type: ignore[attr-defined]
    assert (settings.backend, settings.state_path) == ("sqlite", "s.db")


@pytest.mark.parametrize(
    ("backend", "message", "line"),
    [
        ('  backend "postgres" {}', "unsupported backend 'postgres'", 2),
        (
            '  backend "pg" {\n    path = "x.db"\n  }',
            "unsupported attribute 'path' in backend \"pg\"",
            3,
        ),
        ('  backend "sqlite" {\n    conn_str = "x"\n  }', "unsupported attribute 'conn_str'", 3),
        ('  backend "pg" {\n    schema_name = "Team-A"\n  }', "invalid PostgreSQL schema_name", 3),
        ('  backend "pg" {\n    conn_str = var.conn\n  }', "backend conn_str must be a literal", 3),
    ],
)
def test_bad_backend_blocks_name_the_line(
    tmp_path: Path, backend: str, message: str, line: int
) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, backend)
    (diag,) = err.value.diagnostics
    assert message in diag.message
    assert diag.pos is not None and diag.pos.line == line
