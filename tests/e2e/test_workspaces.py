"""CLI workspaces (Terraform's `terraform workspace`) through the real CLI, on SQLite and on
PostgreSQL: list/new/select/show/delete with Terraform's refusals; each workspace has its
own state, run history and lock; `trainform.workspace` (and its alias
`terraform.workspace`) is the current workspace's name; TRAINFORM_WORKSPACE overrides the
selection; a plan file made in one workspace is refused in another; a detached sweep's
background controller records into the workspace it was started in.

The PostgreSQL cases use the `pg_conn_str` fixture (tests/conftest.py: a real server started
on a free port), each test in a schema of its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from backends import KINDS, Backend, backend_for
from helpers import CLI, failed, ok, wait_until

from trainform.state.backend import open_state

CONFIG = """\
workspace "ml" {
  description = "team store in ${trainform.workspace}"
}

output "env" {
  value = terraform.workspace
}
"""

LOCAL_RUN = """\
compute "local" {
  type                = "local"
  max_concurrent_runs = 2
}

run "train" {
  experiment = "tests"
  compute    = compute.local
  source_dir = "src"
  script     = "train.py"
  arguments  = ["--env", trainform.workspace]
}
"""

TRAIN = """\
import sys
from trainform.tracking import log_metric
print("training in", sys.argv[2])
log_metric("loss", 0.5, step=1)
"""


@pytest.fixture(params=KINDS)
def backend(request: pytest.FixtureRequest, cli: CLI) -> Backend:
    return backend_for(request, cli)


def listed(cli: CLI, **env: str) -> list[str]:
    return ok(cli("workspace", "list", **env)).out.splitlines()


def test_new_select_show_list_and_delete_follow_terraform(backend: Backend) -> None:
    cli = backend.cli
    backend.write(CONFIG)
    assert listed(cli) == ["* default"]
    assert ok(cli("workspace", "show")).out == "default\n"

    out = ok(cli("workspace", "new", "dev", "-lock-timeout=5s")).out
    assert 'Created and switched to workspace "dev"!' in out
    failed(cli("workspace", "new", "dev"), 'workspace "dev" already exists')
    failed(cli("workspace", "new", "no/slash"), "invalid workspace name 'no/slash'")
    assert ok(cli("workspace", "show")).out == "dev\n"
    assert listed(cli) == ["  default", "* dev"]

    failed(
        cli("workspace", "select", "prod"),
        'Workspace "prod" doesn\'t exist (the workspaces: default, dev)',
        "trainform workspace new prod",
        "-or-create",
    )
    assert ok(cli("workspace", "show")).out == "dev\n"  # unchanged
    out = ok(cli("workspace", "select", "-or-create", "prod")).out
    assert 'Created and switched to workspace "prod"!' in out
    assert listed(cli) == ["  default", "  dev", "* prod"]
    assert 'Switched to workspace "default".' in ok(cli("workspace", "select", "default")).out

    failed(cli("workspace", "delete", "default"), 'the "default" workspace cannot be deleted')
    ok(cli("workspace", "select", "dev"))
    failed(cli("workspace", "delete", "dev"), 'Workspace "dev" is your active workspace')
    assert 'Deleted workspace "prod"!' in ok(cli("workspace", "delete", "prod")).out
    failed(cli("workspace", "delete", "prod"), 'workspace "prod" does not exist')
    assert listed(cli) == ["  default", "* dev"]


def test_each_workspace_has_its_own_state_and_its_name_in_expressions(backend: Backend) -> None:
    cli = backend.cli
    backend.write(CONFIG)
    ok(cli("apply", "-auto-approve"))
    assert ok(cli("output", "env")).out.strip() == '"default"'

    ok(cli("workspace", "new", "dev"))
    plan = ok(cli("plan")).out
    assert 'Workspace: "dev"' in plan  # the plan names which state it is against
    assert "workspace.ml will be created" in plan, plan  # dev's state is empty
    assert '"team store in dev"' in plan
    ok(cli("apply", "-auto-approve"))
    assert ok(cli("output", "env")).out.strip() == '"dev"'
    shown = ok(cli("state", "show", "workspace.ml")).out
    assert '"team store in dev"' in shown
    dev_store = json.loads(ok(cli("state", "pull")).out)["resources"][0]["computed"]["path"]

    ok(cli("workspace", "select", "default"))
    assert 'Workspace: "' not in ok(cli("plan")).out  # "default" is not named
    assert ok(cli("output", "env")).out.strip() == '"default"'
    assert '"team store in default"' in ok(cli("state", "show", "workspace.ml")).out
    default_store = json.loads(ok(cli("state", "pull")).out)["resources"][0]["computed"]["path"]
    # the workspace block's artifact store is per CLI workspace: destroying one leaves the other
    assert dev_store != default_store
    ok(cli("destroy", "-auto-approve"))
    assert Path(dev_store).is_dir() and not Path(default_store).exists()

    # dev's state still manages workspace.ml: deleting it needs -force
    failed(
        cli("workspace", "delete", "dev"),
        'workspace "dev" is not empty: its state manages 1 resource (workspace.ml)',
        "-force",
    )
    out = ok(cli("workspace", "delete", "-force", "dev")).out
    assert 'Deleted workspace "dev"!' in out and "no longer tracks" in out
    assert listed(cli) == ["* default"]
    ok(cli("workspace", "new", "dev"))  # a new "dev" starts empty again
    assert "workspace.ml will be created" in ok(cli("plan")).out


def test_runs_are_recorded_per_workspace(backend: Backend) -> None:
    cli = backend.cli
    backend.write(LOCAL_RUN)
    cli.write("src/train.py", TRAIN)
    ok(cli("workspace", "new", "staging"))
    result = ok(cli("apply", "-auto-approve", timeout=120))
    assert "training in staging" in result.out, result.out

    runs = json.loads(ok(cli("runs", "list", "--json")).out)
    assert [(r["address"], r["status"]) for r in runs] == [("run.train", "completed")]
    metrics = ok(cli("runs", "metrics", runs[0]["id"])).out
    assert "loss" in metrics and "0.5" in metrics

    ok(cli("workspace", "select", "default"))
    assert json.loads(ok(cli("runs", "list", "--json")).out) == []
    failed(cli("runs", "show", runs[0]["id"]), "no state yet")  # not in default's history
    # the same run in default is its own: submitted again, with default's argument
    assert "training in default" in ok(cli("apply", "-auto-approve", timeout=120)).out


def test_trainform_workspace_env_overrides_the_selection(backend: Backend) -> None:
    cli = backend.cli
    backend.write(CONFIG)
    ok(cli("workspace", "new", "ci"))
    ok(cli("workspace", "select", "default"))
    assert ok(cli("workspace", "show", TRAINFORM_WORKSPACE="ci")).out == "ci\n"
    lines = listed(cli, TRAINFORM_WORKSPACE="ci")
    assert lines[:2] == ["  ci", "  default"] or lines[:2] == ["* ci", "  default"]
    assert "* ci" in lines and "overridden using the TRAINFORM_WORKSPACE" in "\n".join(lines)
    ok(cli("apply", "-auto-approve", TRAINFORM_WORKSPACE="ci"))
    assert ok(cli("output", "env", TRAINFORM_WORKSPACE="ci")).out.strip() == '"ci"'
    failed(cli("output", "env"), "no state yet")  # default has none: the apply went to ci

    failed(
        cli("workspace", "select", "default", TRAINFORM_WORKSPACE="ci"),
        "overridden using the TRAINFORM_WORKSPACE environment variable",
    )
    failed(
        cli("plan", TRAINFORM_WORKSPACE="nope"),
        'workspace "nope" does not exist',
        "TRAINFORM_WORKSPACE=nope",
        "trainform workspace new nope",
    )
    failed(cli("runs", "list", TRAINFORM_WORKSPACE="nope"), 'workspace "nope" does not exist')
    failed(cli("plan", TRAINFORM_WORKSPACE="../x"), "invalid workspace name '../x'")


def test_a_plan_made_in_another_workspace_is_refused(backend: Backend) -> None:
    cli = backend.cli
    backend.write(CONFIG)
    ok(cli("workspace", "new", "dev"))
    ok(cli("plan", "-out=dev.plan"))
    # The pull-request summary says which environment the plan is for.
    assert ok(cli("show", "-markdown", "dev.plan")).out.startswith(
        "### trainform plan in workspace `dev`\n"
    )
    ok(cli("workspace", "select", "default"))
    failed(
        cli("apply", "dev.plan"),
        'the saved plan was made in workspace "dev", but the current workspace is "default"',
        "trainform workspace select dev",
    )
    failed(cli("output", "env"), "no state yet")  # nothing was applied in default
    assert ok(cli("apply", "dev.plan", TRAINFORM_WORKSPACE="dev")).code == 0
    assert ok(cli("output", "env", TRAINFORM_WORKSPACE="dev")).out.strip() == '"dev"'


def test_delete_is_refused_while_the_workspace_is_locked(backend: Backend) -> None:
    cli = backend.cli
    backend.write(CONFIG)
    ok(cli("workspace", "new", "dev"))
    ok(cli("workspace", "select", "default"))
    store = open_state(backend.spec(), "dev", create=True)
    lock = store.acquire_lock("a test holding it")
    try:
        failed(cli("workspace", "delete", "dev"), "state is locked", "a test holding it")
        assert "  dev" in listed(cli)
    finally:
        store.release_lock(lock)
        store.close()
    ok(cli("workspace", "delete", "dev"))


def test_a_detached_sweep_records_into_its_workspace(backend: Backend) -> None:
    cli = backend.cli
    backend.write(
        'compute "local" {\n  type = "local"\n  max_concurrent_runs = 2\n}\n\n'
        'sweep "grid" {\n  experiment = "tests"\n'
        '  trial {\n    compute    = compute.local\n    source_dir = "src"\n'
        '    script     = "train.py"\n    arguments  = ["--env", param.env]\n  }\n'
        '  sampling {\n    algorithm = "grid"\n  }\n'
        '  parameter "env" {\n    distribution = "choice"\n    values = ["a", "b"]\n  }\n'
        '  objective {\n    metric = "loss"\n    goal   = "minimize"\n  }\n'
        "  limits {\n    max_total_runs      = 2\n    max_concurrent_runs = 2\n  }\n}\n"
    )
    cli.write("src/train.py", TRAIN)
    ok(cli("workspace", "new", "tune"))
    ok(cli("apply", "-auto-approve", "--detach", timeout=60))

    def completed() -> dict | None:
        s = json.loads(ok(cli("sweeps", "show", "grid", "--json")).out)
        return s if s["status"] == "completed" else None

    s = wait_until("the background sweep to complete", completed, timeout=120)
    assert len(s["record"]["trials"]) == 2
    runs = json.loads(ok(cli("runs", "list", "--json")).out)
    assert sorted(r["address"] for r in runs) == ["sweep.grid[0]", "sweep.grid[1]"]
    # the controller's spec names the workspace and holds no connection string
    (spec_file,) = (cli.cwd / ".trainform" / "sweeps").glob("*/spec.json")
    spec = json.loads(spec_file.read_text())
    assert spec["state"]["kind"] == backend.kind and spec["state"]["workspace"] == "tune"
    if backend.conn_str:
        assert backend.conn_str not in spec_file.read_text()
        assert "postgres" not in spec_file.read_text()

    ok(cli("workspace", "select", "default"))
    assert json.loads(ok(cli("sweeps", "list", "--json")).out) == []
    assert json.loads(ok(cli("runs", "list", "--json")).out) == []


def test_references_name_which_workspace_they_mean(cli: CLI) -> None:
    cli.write("main.train.hcl", 'output "a" {\n  value = workspace.dev.path\n}\n')
    failed(
        cli("validate"),
        "reference to undeclared workspace 'workspace.dev'",
        "workspace block (an artifact store)",
        "trainform.workspace",
    )
    cli.write("main.train.hcl", 'output "a" {\n  value = trainform.workspaces\n}\n')
    failed(cli("validate"), "unknown reference 'trainform.workspaces'", "trainform.workspace")
    cli.write("main.train.hcl", 'output "a" {\n  value = trainform.workspace\n}\n')
    ok(cli("validate"))
    help_text = ok(cli("workspace", "-h")).out
    assert "not the" in help_text.lower() and "artifact store" in help_text
