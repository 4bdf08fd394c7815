"""Without psycopg, a configuration on the "pg" backend fails naming the extra to install
(no PostgreSQL server is needed: nothing gets as far as connecting). "Not installed" is
simulated as in tests/e2e/test_extras.py."""

from __future__ import annotations

from pathlib import Path

from helpers import CLI, failed


def test_pg_backend_without_psycopg_names_the_extra(cli: CLI, tmp_path: Path) -> None:
    site = tmp_path / "site-without"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\nsys.modules['psycopg'] = None\n")
    bare = CLI(cli.cwd, {**cli.env, "PYTHONPATH": str(site)})
    cli.write(
        "main.train.hcl",
        'trainform {\n  backend "pg" {}\n}\n\ncompute "box" {\n  type = "local"\n}\n',
    )
    result = failed(
        bare("plan", TRAINFORM_PG_CONN_STR="postgresql://u:Sekr1t@127.0.0.1:1/db"),
        """the "pg" state backend needs psycopg: pip install 'trainform[pg]'""",
    )
    assert "Sekr1t" not in result.all
