"""The PostgreSQL store's own behaviour against a real server: the advisory lock (held per
workspace, naming its holder, gone with its session, force-unlock ending the session),
workspaces (each its own state; creating one never waits for another's lock), and errors
that name the backend without its password."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from helpers import wait_until
from postgres import PASSWORD, PASSWORD_ROLE, PgServer

from trainform.errors import LockError, StateError
from trainform.providers.base import ResourceState
from trainform.state.postgres import (
    PgStateStore,
    pg_create_workspace,
    pg_delete_workspace,
    pg_list_workspaces,
)


def res(address: str) -> ResourceState:
    kind, name = address.split(".")
    return ResourceState(address, kind, name, None, kind, {"n": name})


def test_second_acquire_fails_naming_the_holder(pg_conn_str: str) -> None:
    a = PgStateStore(pg_conn_str)
    b = PgStateStore(pg_conn_str)
    lock = a.acquire_lock("apply")
    with pytest.raises(LockError) as err:
        b.acquire_lock("plan", timeout=0.3)
    text = str(err.value)
    assert f"lock {lock.id} held by {lock.who}@{lock.host} (pid {lock.pid})" in text
    assert "for 'apply' since" in text
    assert err.value.holder["operation"] == "apply"
    a.release_lock(lock)
    b.release_lock(b.acquire_lock("plan"))


def test_a_waiting_acquire_proceeds_when_the_holder_releases(pg_conn_str: str) -> None:
    a, b = PgStateStore(pg_conn_str), PgStateStore(pg_conn_str)
    lock = a.acquire_lock("apply")
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(b.acquire_lock("apply", timeout=60)))
    waiter.start()
    wait_until("the second store polls", lambda: waiter.is_alive())
    a.release_lock(lock)
    waiter.join()
    assert got and got[0].operation == "apply"  # type: ignore[attr-defined]


def test_the_lock_dies_with_its_process(pg_conn_str: str) -> None:
    """A process that holds the lock and is killed -9 leaves no lock behind."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from trainform.state.postgres import PgStateStore\n"
            f"s = PgStateStore({pg_conn_str!r})\n"
            "s.acquire_lock('apply')\n"
            "print('locked', flush=True)\n"
            "time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    other = PgStateStore(pg_conn_str)
    with pytest.raises(LockError, match="'apply'"):
        other.acquire_lock("apply")
    holder.kill()
    holder.wait()
    lock = other.acquire_lock("apply", timeout=30)  # the server notices the closed socket
    other.release_lock(lock)


def test_force_unlock_ends_the_holders_session(pg_conn_str: str) -> None:
    a, b = PgStateStore(pg_conn_str), PgStateStore(pg_conn_str)
    lock = a.acquire_lock("apply")
    with pytest.raises(LockError, match="does not match"):
        b.force_unlock("not-the-id")
    info = b.force_unlock(lock.id)
    assert "was terminated" in info.describe()
    with pytest.raises(StateError, match="lost the connection"):
        a.put_resource(res("workspace.w"))
    a.release_lock(lock)  # nothing to release: no error
    b.release_lock(b.acquire_lock("apply"))
    with pytest.raises(LockError, match="not locked"):
        b.force_unlock(lock.id)


def test_workspaces_have_their_own_state_and_lock(pg_conn_str: str) -> None:
    assert pg_list_workspaces(pg_conn_str, "trainform") == ["default"]
    pg_create_workspace(pg_conn_str, "trainform", "Staging-1")
    assert pg_list_workspaces(pg_conn_str, "trainform") == ["Staging-1", "default"]
    default = PgStateStore(pg_conn_str)
    staging = PgStateStore(pg_conn_str, workspace="Staging-1")
    default.put_resource(res("workspace.a"))
    assert staging.resources() == {}
    lock = default.acquire_lock("apply")
    staging.release_lock(staging.acquire_lock("apply"))  # another workspace: not blocked
    default.release_lock(lock)
    # another schema_name is another state altogether
    assert PgStateStore(pg_conn_str, "team_b").resources() == {}


def test_creating_a_workspace_waits_for_no_other_workspace(pg_conn_str: str) -> None:
    """hashicorp/terraform#33217: a workspace being created must not block the others.
    Here a transaction in the middle of creating "dev" holds its creation lock; "prod" is
    created meanwhile."""
    import psycopg

    from trainform.state.postgres import _key

    PgStateStore(pg_conn_str, create=True).close()  # the registry exists
    with psycopg.connect(pg_conn_str) as slow:
        slow.execute("SELECT pg_advisory_xact_lock(%s)", [_key("create", "trainform", "dev")])
        # a lock wait fails after 10 s (rather than hanging) if creating "prod" waited
        pg_create_workspace(pg_conn_str + "?options=-c%20lock_timeout%3D10000", "trainform", "prod")
        slow.rollback()
    assert "prod" in pg_list_workspaces(pg_conn_str, "trainform")


def test_delete_workspace_refuses_while_it_is_locked(pg_conn_str: str) -> None:
    pg_create_workspace(pg_conn_str, "trainform", "dev")
    dev = PgStateStore(pg_conn_str, workspace="dev")
    dev.put_resource(res("workspace.a"))
    lock = dev.acquire_lock("apply")
    with pytest.raises(LockError, match=r"in use.*'apply'"):
        pg_delete_workspace(pg_conn_str, "trainform", "dev")
    dev.release_lock(lock)
    dev.close()
    pg_delete_workspace(pg_conn_str, "trainform", "dev")
    assert pg_list_workspaces(pg_conn_str, "trainform") == ["default"]
    assert PgStateStore(pg_conn_str, workspace="dev").resources() == {}
    with pytest.raises(StateError, match="cannot be deleted"):
        pg_delete_workspace(pg_conn_str, "trainform", "default")


def test_delete_of_an_empty_workspace_checks_again_in_the_dropping_transaction(
    pg_conn_str: str,
) -> None:
    """`workspace delete` (without -force) found "dev" empty; a command recorded a resource
    in it before the drop: the drop checks again under the lock and refuses, keeping it."""
    pg_create_workspace(pg_conn_str, "trainform", "dev")
    dev = PgStateStore(pg_conn_str, workspace="dev")
    dev.put_resource(res("workspace.a"))
    dev.close()
    with pytest.raises(StateError, match="not empty: a command recorded 1 resource"):
        pg_delete_workspace(pg_conn_str, "trainform", "dev", only_if_empty=True)
    assert "dev" in pg_list_workspaces(pg_conn_str, "trainform")
    assert set(PgStateStore(pg_conn_str, workspace="dev").resources()) == {"workspace.a"}


def test_cannot_connect_names_the_backend_without_its_password(pg_server: PgServer) -> None:
    conn = f"postgresql://{PASSWORD_ROLE}:{PASSWORD}@127.0.0.1:1/nowhere?sslmode=disable"
    with pytest.raises(StateError) as err:
        PgStateStore(conn)
    text = str(err.value)
    assert text.startswith(
        f"cannot connect to the PostgreSQL state backend {PASSWORD_ROLE}@127.0.0.1:1/nowhere"
    )
    assert PASSWORD not in text
    wrong = pg_server.conn_str("postgres", PASSWORD_ROLE, "Wr0ng-pw")
    with pytest.raises(StateError, match="password authentication failed") as err:
        PgStateStore(wrong)
    assert "Wr0ng-pw" not in str(err.value)


def test_permission_denied_says_what_to_grant(pg_server: PgServer) -> None:
    db = pg_server.create_database()  # owned by postgres: the role may not create schemas
    store = PgStateStore(pg_server.conn_str(db, PASSWORD_ROLE, PASSWORD))
    with pytest.raises(StateError) as err:
        store.put_resource(res("workspace.a"))
    text = str(err.value)
    assert text.startswith(f"permission denied on the PostgreSQL state backend {PASSWORD_ROLE}@")
    assert "CREATE on the database" in text and PASSWORD not in text


def test_a_server_restart_fails_the_next_write_clearly(pg_server: PgServer) -> None:
    conn = pg_server.conn_str(pg_server.create_database())
    store = PgStateStore(conn)
    store.put_resource(res("workspace.a"))
    lock = store.acquire_lock("apply")
    pg_server.restart()
    with pytest.raises(StateError) as err:
        store.put_resource(res("workspace.b"))
    text = str(err.value)
    assert "lost the connection to the PostgreSQL state backend postgres@127.0.0.1" in text
    assert "every completed change was committed, the one in progress was not" in text
    store.release_lock(lock)
    again = PgStateStore(conn)
    assert list(again.resources()) == ["workspace.a"]
    again.release_lock(again.acquire_lock("apply"))
