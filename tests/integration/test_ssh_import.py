"""Importing an SSH host through the real CLI against a real OpenSSH server (fixtures in
tests/integration/conftest.py): `trainform import` and an import block read its facts with
the block's host-key rules; a wrong id is an error naming it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from helpers import ok
from test_ssh_compute import compute_block

if TYPE_CHECKING:
    from tests.conftest import CLI
    from tests.integration.conftest import SSHServer, UserKey


def test_import_an_ssh_host_by_user_at_host_port(
    cli: CLI, sshd: SSHServer, user_key: UserKey, remote_tmp: str
) -> None:
    cli.write("main.train.hcl", compute_block(sshd, f"{remote_tmp}/tf", key=user_key))
    wrong = ok(cli("import", "compute.box", f"someone@{sshd.address}:{sshd.port}"), 1)
    assert f"import id 'someone@{sshd.address}:{sshd.port}' does not name the host" in wrong.err
    ident = f"tfuser@{sshd.address}:{sshd.port}"
    ok(cli("import", "compute.box", ident))
    state = json.loads(ok(cli("show", "-json")).out)
    (box,) = state["values"]["root_module"]["resources"]
    assert box["values"]["host_keys"] == {sshd.address: sshd.fingerprint}
    assert box["values"]["facts"][sshd.address]["user"] == "tfuser"
    assert "No changes." in ok(cli("plan")).out
    again = ok(cli("import", "compute.box", ident), 1)
    assert "compute.box is already managed by trainform" in again.err


def test_an_import_block_attaches_nothing_new_and_says_imported(
    cli: CLI, sshd: SSHServer, user_key: UserKey, remote_tmp: str
) -> None:
    block = compute_block(sshd, f"{remote_tmp}/tf", key=user_key)
    ident = f"tfuser@{sshd.address}:{sshd.port}"
    cli.write("main.train.hcl", block + f'import {{\n  to = compute.box\n  id = "{ident}"\n}}\n')
    plan = ok(cli("plan")).out
    assert "# compute.box will be imported" in plan
    assert "Plan: 1 to import, 0 to add, 0 to change, 0 to destroy." in plan
    applied = ok(cli("apply", "-auto-approve")).out
    assert "Apply complete! Resources: 1 imported, 0 added, 0 changed, 0 destroyed." in applied
    assert "No changes." in ok(cli("plan")).out
