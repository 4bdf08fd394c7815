"""A PostgreSQL connection string in messages: who and where, never the password."""

from __future__ import annotations

import pytest

from trainform.state.postgres import redact, scrub, workspace_schema


@pytest.mark.parametrize(
    ("conn", "shown"),
    [
        ("postgres://alice:s3cret@db.example.com:5433/state", "alice@db.example.com:5433/state"),
        (
            "postgresql://alice:s3cret@db.example.com/state?sslmode=require&password=other",
            "alice@db.example.com:5432/state",
        ),
        ("postgresql://db.example.com/state", "db.example.com:5432/state"),
        ("postgresql://bob@h1:5432,h2:5433/x", "bob@h1:5432,h2:5433/x"),
        ("postgresql://al%40ce:p%40ss@[::1]:5432/db", "al@ce@::1:5432/db"),
        ("postgresql:///state?host=/run/postgresql&user=ci", "ci@/run/postgresql:5432/state"),
        (
            "host=db.example.com port=6432 dbname=state user=ci password='x y\\' z'",
            "ci@db.example.com:6432/state",
        ),
        ("dbname = state password=plain", "localhost:5432/state"),
        ("user=ci", "ci@localhost:5432/ci"),
        ("host='unterminated password=x", "(connection string not shown: it cannot be read)"),
    ],
)
def test_redact_shows_user_host_port_and_database_only(conn: str, shown: str) -> None:
    assert redact(conn) == shown


@pytest.mark.parametrize(
    ("conn", "secret"),
    [
        ("postgresql://u:Sekr1t-pw@h/db", "Sekr1t-pw"),
        ("postgresql://u:Sekr%2Ft@h/db", "Sekr/t"),
        ("postgresql://u@h/db?password=Sekr1t-pw&sslmode=disable", "Sekr1t-pw"),
        ("host=h password='Sekr1t pw' user=u", "Sekr1t pw"),
        ("host=h password=Sekr1t-pw", "Sekr1t-pw"),
    ],
)
def test_scrub_removes_the_password_from_driver_messages(conn: str, secret: str) -> None:
    message = (
        f'invalid connection option in "{conn}": password "{secret}" rejected; '
        "also password=another and postgres://x:y@z/"
    )
    cleaned = scrub(message, conn)
    assert secret not in cleaned
    assert "another" not in cleaned and "x:y@" not in cleaned
    assert redact(conn) in cleaned


def test_workspace_schemas_are_distinct_identifiers() -> None:
    names = ["default", "dev", "Dev", "a-b", "a_b", "x" * 63, "x" * 62 + "y"]
    schemas = {workspace_schema("trainform", n) for n in names}
    assert len(schemas) == len(names)
    assert workspace_schema("trainform", "dev") == "trainform_ws_dev"
    assert all(len(s) <= 63 and s.replace("_", "").isalnum() for s in schemas)


def test_a_driver_message_reads_as_one_clause_without_the_password() -> None:
    """libpq's two-line message ("...Connection refused\n\tIs the server running...?") ends
    up on one line, without the password and without punctuation doubled by the sentence
    trainform appends ("?. Check that ...")."""
    from trainform.state.postgres import _message

    conn = "postgresql://bob:S3cretPW@127.0.0.1:1/db"
    exc = RuntimeError(
        'connection to server at "127.0.0.1", port 1 failed: Connection refused\n'
        "\tIs the server running on that host and accepting TCP/IP connections?\n"
    )
    assert _message(exc, conn) == (
        'connection to server at "127.0.0.1", port 1 failed: Connection refused; '
        "Is the server running on that host and accepting TCP/IP connections"
    )
    assert _message(RuntimeError("role bob, password S3cretPW: rejected."), conn) == (
        "role bob, password ***: rejected"
    )
