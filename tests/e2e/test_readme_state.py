"""The README's commands under "### State backends", "### Workspaces (CLI) and the workspace
block" and "### State versions, pull/push, migration", run verbatim: every line of each sh
block through `sh -c`, with the tests' trainform on PATH, in a configuration folder set up as
the prose before the block says (the section's own HCL, or the first configuration applied
and destroyed), in SQLite and in PostgreSQL; the migration block after the configuration's
backend changed from SQLite to PostgreSQL, ending with state, runs and versions as they were."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from backends import KINDS, Backend, backend_for, history
from helpers import CLI, README, Result, block_after, failed, ok

BACKENDS = "### State backends"
WORKSPACES = "### Workspaces (CLI) and the workspace block"
VERSIONS = "### State versions, pull/push, migration"
MIGRATE = "**Changing backends.**"
RECONFIGURE = "**Or use the new backend's state as it is**"

TRAIN = """\
import sys
from trainform.tracking import log_metric
for step in range(1, 4):
    log_metric("loss", 1.0 / step, step=step)
print("epochs", sys.argv[2])
"""
TOKEN = "readme-token-5c1f"


@pytest.fixture(params=KINDS)
def backend(request: pytest.FixtureRequest, cli: CLI) -> Backend:
    return backend_for(request, cli)


def commands(block: str) -> dict[str, str]:
    """The block's lines, as written, by their command (what comes before the comment)."""
    lines = [line for line in block.splitlines() if line.strip()]
    return {line.split("#", 1)[0].strip(): line for line in lines}


def sh(cli: CLI, line: str) -> Result:
    """``line`` run by sh in the configuration folder, with this venv's trainform first on
    PATH."""
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "trainform").is_file(), f"no trainform script in {bin_dir}"
    env = {**cli.env, "PATH": os.pathsep.join([str(bin_dir), cli.env.get("PATH", "")])}
    proc = subprocess.run(
        ["sh", "-c", line], cwd=cli.cwd, env=env, capture_output=True, text=True, timeout=300
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def run_block(cli: CLI, block: str, expected: list[str]) -> dict[str, Result]:
    """Run every line of ``block`` in order, each exiting 0; its commands must be
    ``expected`` (so that a changed README block is checked anew, not skipped)."""
    lines = commands(block)
    assert list(lines) == expected, f"the README block changed:\n{block}"
    return {command: ok(sh(cli, line)) for command, line in lines.items()}


def workspace_config(cli: CLI) -> str:
    """The workspace section's configuration, with the train.py its run names."""
    cli.write("train.py", TRAIN)
    return block_after(WORKSPACES, "hcl")


def test_the_backend_block_is_a_valid_configuration(cli: CLI) -> None:
    cli.write("main.train.hcl", block_after(BACKENDS, "hcl") + '\nworkspace "ml" {}\n')
    assert "Success!" in ok(cli("validate")).out


def test_the_workspace_commands_verbatim(backend: Backend) -> None:
    cli = backend.cli
    backend.write(workspace_config(cli))
    out = run_block(
        cli,
        block_after(WORKSPACES, "sh"),
        [
            "trainform workspace new dev",
            "trainform workspace select -or-create prod",
            "trainform workspace list",
            "trainform workspace show",
            "trainform workspace delete dev",
        ],
    )
    assert 'Created and switched to workspace "dev"!' in out["trainform workspace new dev"].out
    assert (
        'Created and switched to workspace "prod"!'
        in out["trainform workspace select -or-create prod"].out
    )
    assert out["trainform workspace list"].out.splitlines() == ["  default", "  dev", "* prod"]
    assert out["trainform workspace show"].out == "prod\n"
    assert 'Deleted workspace "dev"!' in out["trainform workspace delete dev"].out
    assert ok(cli("workspace", "list")).out.splitlines() == ["  default", "* prod"]

    # the section's HCL reads the CLI workspace's name
    plan = ok(cli("plan")).out
    assert 'Workspace: "prod"' in plan and "mnist-prod" in plan and "50" in plan, plan
    assert "mnist-default" in ok(cli("plan", TRAINFORM_WORKSPACE="default")).out
    failed(cli("workspace", "select", "dev"), 'Workspace "dev" doesn\'t exist', "default, prod")


def versions(cli: CLI) -> list[list[str]]:
    lines = ok(cli("state", "list-versions")).out.splitlines()
    assert lines[0].split() == ["SERIAL", "CREATED", "WHO", "COMMAND", "PLAN"], lines
    return [line.split() for line in lines[1:]]


def test_the_state_version_commands_verbatim(backend: Backend) -> None:
    """After the first configuration's apply and destroy, as the prose says."""
    cli = backend.cli
    cli.env["TRAINFORM_VAR_api_token"] = TOKEN
    backend.write(block_after("## A first configuration", "hcl"))
    ok(cli("init"))
    ok(cli("apply", "-auto-approve"))
    ok(cli("destroy", "-auto-approve"))
    said = re.search(
        r"`list-versions`\s+shows\s+(\d+)\s+\(the\s+destroy\)\s+and\s+(\d+)\s+\(the\s+apply\)",
        README.read_text(),
    )
    assert said, "the prose before the versions block names the two serials"
    destroyed, applied = said.groups()
    rows = versions(cli)
    assert [(r[0], r[4]) for r in rows] == [(destroyed, "destroy"), (applied, "apply")], rows

    block = block_after(VERSIONS, "sh")
    out = run_block(
        cli,
        block,
        [
            "trainform state list-versions",
            f"trainform state show -version {applied}",
            f"trainform state show -version {applied} workspace.ml",
            "trainform state pull > state.json",
            "trainform state push state.json",
        ],
    )
    listed = out["trainform state list-versions"].out.splitlines()
    assert [line.split()[0] for line in listed] == ["SERIAL", destroyed, applied], listed
    then = out[f"trainform state show -version {applied}"].out
    assert f"# state version {applied} (lineage " in then, then
    for line in ("compute.gpu[0] (ready)", "compute.gpu[1] (ready)", "workspace.ml (ready)"):
        assert line in then.splitlines(), then
    assert "Outputs:" in then and re.search(r"^  cpus = \d+$", then, re.M), then
    one = out[f"trainform state show -version {applied} workspace.ml"].out
    assert one.startswith("# workspace.ml (ready)") and '"team workspace"' in one, one

    assert out["trainform state pull > state.json"].out == ""
    doc = json.loads((cli.cwd / "state.json").read_text())
    assert doc["serial"] == int(destroyed) and doc["resources"] == [] and doc["lineage"]
    pushed = out["trainform state push state.json"].out
    assert "Pushed the state to" in pushed and f"(serial {destroyed})" in pushed, pushed
    assert versions(cli) == rows  # the state that was there: nothing changed
    assert all(TOKEN not in r.all for r in out.values())


def test_the_migration_commands_verbatim(cli: CLI, pg_conn_str: str) -> None:
    config = workspace_config(cli)
    cli.write("main.train.hcl", config)
    ok(cli("init"))
    ok(cli("apply", "-auto-approve"))
    ok(cli("workspace", "new", "dev"))
    ok(cli("apply", "-auto-approve"))
    before = {ws: history(cli, ws) for ws in ("default", "dev")}
    assert [len(before[ws]["runs"]) for ws in before] == [1, 1]

    # "change the backend block": from SQLite to PostgreSQL
    Backend("pg", cli, pg_conn_str).write(config)
    failed(cli("plan"), "the backend changed", "init -migrate-state", "init -reconfigure")
    out = run_block(
        cli,
        block_after(MIGRATE, "sh"),
        ["trainform init -migrate-state", "trainform plan -detailed-exitcode"],
    )
    copied = out["trainform init -migrate-state"].out
    for needle in ('workspace "default": ', 'workspace "dev": ', "1 runs", "Copied and verified."):
        assert needle in copied, copied
    assert "No changes" in out["trainform plan -detailed-exitcode"].out
    assert json.loads((cli.cwd / ".trainform" / "backend.json").read_text())["kind"] == "pg"
    assert ok(cli("workspace", "list")).out.splitlines() == ["  default", "* dev"]
    for ws in ("default", "dev"):
        assert history(cli, ws) == before[ws], ws
    ok(cli("plan", "-detailed-exitcode", TRAINFORM_WORKSPACE="default"), 0)


def test_the_reconfigure_command_verbatim(cli: CLI, pg_conn_str: str) -> None:
    config = workspace_config(cli)
    cli.write("main.train.hcl", config)
    ok(cli("init"))
    ok(cli("apply", "-auto-approve"))

    Backend("pg", cli, pg_conn_str).write(config)
    block = block_after(RECONFIGURE, "sh")
    out = run_block(cli, block, ["trainform init -reconfigure"])["trainform init -reconfigure"]
    assert "Now using PostgreSQL" in out.out and "was left as it is" in out.out, out.out
    assert "Plan: 2 to add" in ok(cli("plan")).out  # this database had no state
    assert json.loads(ok(cli("runs", "list", "--json")).out) == []

    # changing the block back and running it again returns to the old state
    cli.write("main.train.hcl", config)
    run_block(cli, block, ["trainform init -reconfigure"])
    assert len(json.loads(ok(cli("runs", "list", "--json")).out)) == 1
    ok(cli("plan", "-detailed-exitcode"), 0)
