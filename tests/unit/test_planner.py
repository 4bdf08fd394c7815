"""The planner, data-driven: prior state (``ResourceState`` rows written to a real SQLite state
file) and a configuration in, expected changes and reasons out. Refresh uses the real local,
workspace and environment providers."""

from __future__ import annotations

import itertools
import json
import sqlite3
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from trainform.config.variables import VariableInputs
from trainform.engine.session import Session
from trainform.errors import PlanError
from trainform.planner import planfile
from trainform.planner.diff import PlanOptions
from trainform.planner.jsonplan import plan_to_json
from trainform.planner.types import CREATE, DELETE, NOOP, REPLACE, REPLACE_CBD, UPDATE, Plan
from trainform.providers.base import ResourceState
from trainform.providers.local import gather_local_facts
from trainform.state import secrets

LOCAL_DEFAULTS = {
    "description": None,
    "tags": {},
    "max_concurrent_runs": 1,
    "workdir": None,
    "type": "local",
}


def local(
    name: str, key: int | str | None = None, status: str = "ready", **attrs: Any
) -> dict[str, Any]:
    """A recorded ``compute "name" { type = "local" }`` instance, as the engine writes it."""
    address = f"compute.{name}" + ("" if key is None else f"[{json.dumps(key)}]")
    return {
        "address": address,
        "kind": "compute",
        "name": name,
        "key": key,
        "provider": "local",
        "attributes": {**LOCAL_DEFAULTS, **attrs},
        "computed": {"workdir_path": "/somewhere"},
        "status": status,
    }


def docker(image: str) -> dict[str, Any]:
    """A recorded ``docker { image = ... }`` block with its defaults."""
    return {
        "image": image,
        "dockerfile": None,
        "build_context": None,
        "build_args": {},
        "gpus": None,
        "shm_size": None,
        "cpus": None,
        "memory": None,
    }


def environment(name: str, docker: Any = None) -> dict[str, Any]:
    """A recorded ``environment "name" {}``; ``docker`` as stored (a dict, sealed, or None)."""
    return {
        "address": f"environment.{name}",
        "kind": "environment",
        "name": name,
        "key": None,
        "provider": "environment",
        "attributes": {
            "python": "python3",
            "user_managed": False,
            "pip": [],
            "requirements_file": None,
            "conda_file": None,
            "variables": {},
            "docker": docker,
        },
        "computed": {"hash": "h"},
    }


def workspace(name: str, path: Path | None, **attrs: Any) -> dict[str, Any]:
    """A recorded workspace whose artifact store is ``path`` (a real folder if it exists)."""
    return {
        "address": f"workspace.{name}",
        "kind": "workspace",
        "name": name,
        "key": None,
        "provider": "workspace",
        "attributes": {
            "description": None,
            "artifact_store": None,
            "tags": {},
            "force_destroy": False,
            **attrs,
        },
        "computed": {"path": str(path) if path else "", "id": "abc", "created_dir": True},
    }


@dataclass
class Planned:
    plan: Plan
    session: Session
    directory: Path
    planner: Any = None

    def actions(self) -> list[tuple[str, tuple[str, ...], str]]:
        return [(c.address, c.actions, c.reason) for c in self.plan.changes]

    def change(self, address: str) -> Any:
        return next(c for c in self.plan.changes if c.address == address)


@pytest.fixture
def planner(tmp_path: Path) -> Iterator[Any]:
    """plan(config, prior, options, ...) -> Planned. Each call gets a fresh configuration
    folder (and state in its .trainform/) unless ``directory`` names an earlier one."""
    sessions: list[Session] = []
    folders = itertools.count()

    def plan(
        config: str,
        prior: list[dict[str, Any]] | None = None,
        options: PlanOptions | None = None,
        refresh: bool = True,
        cli: list[tuple[str, str]] | None = None,
        outputs: dict[str, dict[str, Any]] | None = None,
        directory: Path | None = None,
    ) -> Planned:
        if directory is None:
            directory = tmp_path / f"config{next(folders)}"
            directory.mkdir()
        (directory / "main.train.hcl").write_text(textwrap.dedent(config).lstrip("\n"))
        session = Session.open(directory, VariableInputs(cli=list(cli or []), environ={}))
        sessions.append(session)
        for row in prior or []:
            session.store.put_resource(ResourceState(**row))
        if outputs:
            session.store.put_outputs(outputs)
        with session.locked("plan"):
            made, the_planner = session.make_plan(options or PlanOptions(), do_refresh=refresh)
        return Planned(made, session, directory, the_planner)

    yield plan
    for s in sessions:
        s.close()


# --------------------------------------------------------------------------- the table

A = """
compute "a" {
  type        = "local"
  description = "d"
  workdir     = "/w1"
  %s
}
"""
CBD = "lifecycle {\n    create_before_destroy = true\n  }"
IGNORE = "lifecycle {\n    ignore_changes = [description, workdir]\n  }"
IGNORE_ALL = "lifecycle {\n    ignore_changes = [all]\n  }"

COUNT = """
compute "g" {
  type  = "local"
  count = %d
}
"""

FOR_EACH = """
compute "n" {
  type     = "local"
  for_each = toset(%s)
}
"""

GRAPH = """
workspace "ws" {}
compute "box" {
  type        = "local"
  description = workspace.ws.path
}
compute "after" {
  type       = "local"
  depends_on = [compute.box]
}
environment "env" {}
"""


@dataclass
class Case:
    id: str
    config: str
    prior: list[dict[str, Any]] = field(default_factory=list)
    expected: list[tuple[str, tuple[str, ...], str]] = field(default_factory=list)
    options: PlanOptions = field(default_factory=PlanOptions)


CASES = [
    Case("create", A % "", [], [("compute.a", CREATE, "")]),
    Case("no-op", A % "", [local("a", description="d", workdir="/w1")], [("compute.a", NOOP, "")]),
    Case(
        "update mutable attribute",
        A % "",
        [local("a", description="old", workdir="/w1")],
        [("compute.a", UPDATE, "will be updated in-place")],
    ),
    Case(
        "update a number",
        A % "max_concurrent_runs = 4",
        [local("a", description="d", workdir="/w1")],
        [("compute.a", UPDATE, "will be updated in-place")],
    ),
    Case(
        "replace force_new attribute",
        A % "",
        [local("a", description="d", workdir="/w0")],
        [("compute.a", REPLACE, "must be replaced")],
    ),
    Case(
        "create_before_destroy",
        A % CBD,
        [local("a", description="d", workdir="/w0")],
        [("compute.a", REPLACE_CBD, "must be replaced")],
    ),
    Case(
        "ignore_changes suppresses update and replace",
        A % IGNORE,
        [local("a", description="old", workdir="/w0")],
        [("compute.a", NOOP, "")],
    ),
    Case(
        "ignore_changes leaves other attributes planned",
        A % IGNORE,
        [local("a", description="old", workdir="/w0", tags={"x": "1"})],
        [("compute.a", UPDATE, "will be updated in-place")],
    ),
    Case(
        "ignore_changes all",
        A % IGNORE_ALL,
        [local("a", description="old", workdir="/w0", tags={"x": "1"}, max_concurrent_runs=9)],
        [("compute.a", NOOP, "")],
    ),
    Case(
        "nested block unchanged",
        'environment "e" {\n  docker {\n    image = "img"\n  }\n}\n',
        [environment("e", docker("img"))],
        [("environment.e", NOOP, "")],
    ),
    Case(
        "nested block changed is an update",
        'environment "e" {\n  docker {\n    image = "new"\n  }\n}\n',
        [environment("e", docker("old"))],
        [("environment.e", UPDATE, "will be updated in-place")],
    ),
    Case(
        "nested block removed is an update",
        'environment "e" {}\n',
        [environment("e", docker("old"))],
        [("environment.e", UPDATE, "will be updated in-place")],
    ),
    Case(
        "nested block added is an update",
        'environment "e" {\n  docker {\n    image = "new"\n  }\n}\n',
        [environment("e")],
        [("environment.e", UPDATE, "will be updated in-place")],
    ),
    Case(
        "tainted is replaced",
        A % "",
        [local("a", status="tainted", description="d", workdir="/w1")],
        [("compute.a", REPLACE, "is tainted, so must be replaced")],
    ),
    Case(
        "tainted with create_before_destroy",
        A % CBD,
        [local("a", status="tainted", description="d", workdir="/w1")],
        [("compute.a", REPLACE_CBD, "is tainted, so must be replaced")],
    ),
    Case(
        "pending is replaced",
        A % "",
        [local("a", status="pending", description="d", workdir="/w1")],
        [
            (
                "compute.a",
                REPLACE,
                "was left half-created by an interrupted apply, so must be replaced",
            )
        ],
    ),
    Case(
        "removed block is deleted",
        A % "",
        [local("a", description="d", workdir="/w1"), local("old")],
        [("compute.a", NOOP, ""), ("compute.old", DELETE, "is not in the configuration")],
    ),
    Case(
        "count reduction deletes the highest index",
        COUNT % 2,
        [local("g", 0), local("g", 1), local("g", 2)],
        [
            ("compute.g[0]", NOOP, ""),
            ("compute.g[1]", NOOP, ""),
            ("compute.g[2]", DELETE, "is no longer produced by count/for_each"),
        ],
    ),
    Case(
        "count growth creates the next index",
        COUNT % 3,
        [local("g", 0), local("g", 1)],
        [("compute.g[0]", NOOP, ""), ("compute.g[1]", NOOP, ""), ("compute.g[2]", CREATE, "")],
    ),
    Case(
        "count to zero deletes all",
        COUNT % 0,
        [local("g", 0), local("g", 1)],
        [
            ("compute.g[0]", DELETE, "is no longer produced by count/for_each"),
            ("compute.g[1]", DELETE, "is no longer produced by count/for_each"),
        ],
    ),
    Case(
        "for_each keys added and removed",
        FOR_EACH % '["b", "c"]',
        [local("n", "a"), local("n", "b")],
        [
            ('compute.n["a"]', DELETE, "is no longer produced by count/for_each"),
            ('compute.n["b"]', NOOP, ""),
            ('compute.n["c"]', CREATE, ""),
        ],
    ),
    Case(
        "--replace",
        A % "",
        [local("a", description="d", workdir="/w1")],
        [("compute.a", REPLACE, "will be replaced, as requested")],
        PlanOptions(replace=("compute.a",)),
    ),
    Case(
        "--replace a whole counted block",
        COUNT % 2,
        [local("g", 0), local("g", 1)],
        [
            ("compute.g[0]", REPLACE, "will be replaced, as requested"),
            ("compute.g[1]", REPLACE, "will be replaced, as requested"),
        ],
        PlanOptions(replace=("compute.g",)),
    ),
    Case(
        "--replace one instance",
        COUNT % 2,
        [local("g", 0), local("g", 1)],
        [("compute.g[0]", NOOP, ""), ("compute.g[1]", REPLACE, "will be replaced, as requested")],
        PlanOptions(replace=("compute.g[1]",)),
    ),
    Case(
        "--target includes dependencies, not dependents or strangers",
        GRAPH,
        [],
        [("compute.box", CREATE, ""), ("workspace.ws", CREATE, "")],
        PlanOptions(targets=("compute.box",)),
    ),
    Case(
        "--target one instance",
        COUNT % 3,
        [local("g", 0)],
        [("compute.g[2]", CREATE, "")],
        PlanOptions(targets=("compute.g[2]",)),
    ),
    Case(
        "--target a removed block deletes it alone",
        A % "",
        [local("old"), local("other")],
        [("compute.old", DELETE, "is not in the configuration")],
        PlanOptions(targets=("compute.old",)),
    ),
    Case(
        "destroy mode deletes everything recorded",
        A % "",
        [local("a", description="d", workdir="/w1"), local("old")],
        [("compute.a", DELETE, "will be destroyed"), ("compute.old", DELETE, "will be destroyed")],
        PlanOptions(mode="destroy"),
    ),
    Case("destroy mode with empty state", A % "", [], [], PlanOptions(mode="destroy")),
    Case(
        "refresh-only plans no change",
        A % "",
        [local("a", description="old", workdir="/w0"), local("old")],
        [("compute.a", NOOP, "")],
        PlanOptions(mode="refresh-only"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_plan_table(planner: Any, case: Case) -> None:
    planned = planner(case.config, case.prior, case.options)
    assert planned.actions() == case.expected


def test_update_names_what_changed_and_keeps_computed(planner: Any) -> None:
    planned = planner(A % 'tags = { team = "ml" }', [local("a", description="old", workdir="/w1")])
    change = planned.change("compute.a")
    assert change.changed == ("description", "tags")
    assert change.before["description"] == "old"
    assert change.after["description"] == "d"
    assert change.after["tags"] == {"team": "ml"}
    # an update keeps what the provider computed: known, not "(known after apply)"
    assert change.after["workdir_path"] is not None
    assert change.after_unknown == ()
    assert change.verb == "update"


def test_replace_names_the_forcing_attribute(planner: Any) -> None:
    change = planner(A % "", [local("a", description="old", workdir="/w0")]).change("compute.a")
    assert change.replace_paths == ("workdir",)
    assert change.changed == ("description", "workdir")
    assert "workdir_path" in change.after_unknown


def test_ignored_attribute_shows_the_recorded_value(planner: Any) -> None:
    change = planner(A % IGNORE, [local("a", description="old", workdir="/w0")]).change("compute.a")
    assert change.after["description"] == "old"
    assert change.after["workdir"] == "/w0"


def test_verbs_come_from_the_provider(planner: Any) -> None:
    planned = planner(GRAPH, [local("gone")])
    verbs = {c.address: c.verb for c in planned.plan.changes}
    assert verbs == {
        "compute.after": "attach",
        "compute.box": "attach",
        "compute.gone": "detach",
        "environment.env": "define",
        "workspace.ws": "create",
    }


def test_counts_and_has_changes(planner: Any) -> None:
    planned = planner(
        A % "" + COUNT % 1,
        [local("a", description="old", workdir="/w0"), local("g", 0), local("g", 1), local("x")],
    )
    assert planned.plan.counts() == {"add": 1, "change": 0, "destroy": 3}  # replace counts twice
    assert planned.plan.has_changes
    quiet = planner(A % "", [local("a", description="d", workdir="/w1")])
    assert not quiet.plan.has_changes
    assert quiet.plan.resource_changes == []


# --------------------------------------------------------------------------- refusals

PROTECTED = "lifecycle {\n    prevent_destroy = true\n  }"


@pytest.mark.parametrize(
    ("config", "prior", "options", "message"),
    [
        (
            A % PROTECTED,
            [local("a", description="d", workdir="/w0")],
            PlanOptions(),
            "compute.a has lifecycle.prevent_destroy set, but the plan would destroy it",
        ),
        (
            A % PROTECTED,
            [local("a", description="d", workdir="/w1")],
            PlanOptions(replace=("compute.a",)),
            "compute.a has lifecycle.prevent_destroy set",
        ),
        (
            A % PROTECTED,
            [local("a", status="tainted", description="d", workdir="/w1")],
            PlanOptions(),
            "compute.a has lifecycle.prevent_destroy set",
        ),
        (
            A % PROTECTED,
            [local("a", description="d", workdir="/w1")],
            PlanOptions(mode="destroy"),
            "compute.a has lifecycle.prevent_destroy set",
        ),
        (
            f'compute "g" {{\n  type = "local"\n  count = 1\n  {PROTECTED}\n}}\n',
            [local("g", 0), local("g", 1)],
            PlanOptions(),
            "compute.g[1] has lifecycle.prevent_destroy set",
        ),
        (
            GRAPH,
            [],
            PlanOptions(targets=("compute.bx",)),
            "--target compute.bx: no such resource in the configuration or state; "
            'did you mean "compute.box"?',
        ),
    ],
    ids=["replacement", "--replace", "tainted", "destroy", "count reduction", "unknown target"],
)
def test_plan_refusals(
    planner: Any, config: str, prior: list[dict[str, Any]], options: PlanOptions, message: str
) -> None:
    with pytest.raises(PlanError) as info:
        planner(config, prior, options)
    assert str(info.value).startswith(message)


def test_prevent_destroy_allows_updates(planner: Any) -> None:
    planned = planner(A % PROTECTED, [local("a", description="old", workdir="/w1")])
    assert planned.actions() == [("compute.a", UPDATE, "will be updated in-place")]


def test_workspace_with_run_history_needs_force_destroy(planner: Any, tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = planner('workspace "ws" {}\n', [workspace("ws", store)], refresh=False)
    # a finished run recorded against the workspace (the runs table of schema version 2)
    conn = sqlite3.connect(first.directory / ".trainform" / "state.db")
    with conn:
        conn.execute(
            "INSERT INTO runs (id, address, workspace, status) "
            "VALUES ('r1', 'run.t', 'workspace.ws', 'completed')"
        )
    conn.close()
    destroy = PlanOptions(mode="destroy")
    with pytest.raises(
        PlanError,
        match=r"workspace.ws holds the history of 1 run\(s\); to destroy it with its "
        r"artifact store, set force_destroy = true on it \(workspace \"ws\" in "
        r"main.train.hcl:1\) and apply first; to keep them, stop managing it with "
        r"`trainform state rm workspace.ws` instead",
    ):
        planner('workspace "ws" {}\n', [], destroy, refresh=False, directory=first.directory)
    forced = [workspace("ws", store, force_destroy=True)]
    planned = planner(
        'workspace "ws" {}\n', forced, destroy, refresh=False, directory=first.directory
    )
    assert planned.actions() == [("workspace.ws", DELETE, "will be destroyed")]


# --------------------------------------------------------------------------- destroy and targets


def test_destroy_target_takes_its_dependents(planner: Any, tmp_path: Path) -> None:
    ws = workspace("ws", tmp_path / "store")
    box = {**local("box"), "dependencies": ("workspace.ws",)}
    other = local("other")
    planned = planner(
        GRAPH,
        [ws, box, other],
        PlanOptions(mode="destroy", targets=("workspace.ws",)),
        refresh=False,
    )
    assert planned.actions() == [
        ("compute.box", DELETE, "will be destroyed"),
        ("workspace.ws", DELETE, "will be destroyed"),
    ]


def test_destroy_plan_deletes_outputs(planner: Any) -> None:
    planned = planner(
        'output "o" {\n  value = 1\n}\n',
        [],
        PlanOptions(mode="destroy"),
        outputs={"o": {"value": 1, "sensitive": False}},
    )
    assert [(o.name, o.actions, o.before) for o in planned.plan.outputs] == [("o", DELETE, 1)]


# --------------------------------------------------------------------------- refresh and drift


def test_drift_of_a_fact_shows_in_drift_but_changes_nothing(planner: Any) -> None:
    facts = gather_local_facts()
    recorded = {**local("a", description="d", workdir="/w1")}
    recorded["computed"] = {"facts": {**facts, "cpus": facts["cpus"] + 64}, "workdir_path": "/w1"}
    planned = planner(A % "", [recorded])
    assert planned.actions() == [("compute.a", NOOP, "")]
    [drift] = planned.plan.drift
    assert (drift.address, drift.kind, drift.message) == ("compute.a", "changed", "has changed")
    assert drift.before == {"facts.cpus": facts["cpus"] + 64}
    assert drift.after == {"facts.cpus": facts["cpus"]}
    assert planned.plan.refreshed["compute.a"]["facts"]["cpus"] == facts["cpus"]


def test_no_drift_when_reality_matches(planner: Any) -> None:
    recorded = {**local("a", description="d", workdir="/w1")}
    recorded["computed"] = {"facts": gather_local_facts(), "workdir_path": "/w1"}
    planned = planner(A % "", [recorded])
    assert planned.plan.drift == ()


def test_refresh_only_lists_drift_and_nothing_else(planner: Any) -> None:
    recorded = {**local("a", description="old", workdir="/w0")}
    planned = planner(
        A % "",
        [recorded],
        PlanOptions(mode="refresh-only"),
        outputs={"o": {"value": 1, "sensitive": False}},
    )
    assert [c.actions for c in planned.plan.changes] == [NOOP]
    assert planned.plan.resource_changes == []
    assert planned.plan.outputs == ()
    assert [d.address for d in planned.plan.drift] == ["compute.a"]
    assert planned.plan.has_changes  # drift is what a refresh-only plan would record


def test_resource_gone_outside_is_created_again(planner: Any, tmp_path: Path) -> None:
    prior = [workspace("ws", tmp_path / "never-created")]
    planned = planner('workspace "ws" {}\n', prior)
    assert planned.actions() == [("workspace.ws", CREATE, "has been deleted outside trainform")]
    assert [(d.address, d.kind) for d in planned.plan.drift] == [("workspace.ws", "deleted")]
    assert planned.plan.gone == ("workspace.ws",)


def test_resource_gone_outside_and_removed_from_config_plans_nothing(
    planner: Any, tmp_path: Path
) -> None:
    planned = planner('workspace "kept" {}\n', [workspace("ws", tmp_path / "never-created")])
    assert planned.actions() == [("workspace.kept", CREATE, "")]
    assert planned.plan.gone == ("workspace.ws",)


def test_existing_workspace_is_read_back(planner: Any, tmp_path: Path) -> None:
    from trainform.providers.base import ProviderContext
    from trainform.providers.workspace import WorkspaceProvider

    provider = WorkspaceProvider(ProviderContext(tmp_path, tmp_path / ".trainform"))
    computed = provider.create("workspace.ws", {"artifact_store": "store"})
    recorded = {**workspace("ws", None, artifact_store="store"), "computed": computed}
    planned = planner('workspace "ws" {\n  artifact_store = "store"\n}\n', [recorded])
    assert planned.actions() == [("workspace.ws", NOOP, "")]
    assert planned.plan.drift == ()
    assert planned.change("workspace.ws").after["path"] == str((tmp_path / "store").resolve())


def test_known_computed_values_flow_into_dependents(planner: Any, tmp_path: Path) -> None:
    """A dependency that is not replaced lends its recorded values; one that is replaced
    makes them unknown."""
    from trainform.providers.base import ProviderContext
    from trainform.providers.workspace import WorkspaceProvider

    provider = WorkspaceProvider(ProviderContext(tmp_path, tmp_path / ".trainform"))
    computed = provider.create("workspace.ws", {"artifact_store": "store"})
    recorded = {**workspace("ws", None, artifact_store="store"), "computed": computed}
    config = (
        'workspace "ws" {\n  artifact_store = "%s"\n}\n'
        'compute "box" {\n  type = "local"\n  description = workspace.ws.path\n}\n'
    )
    planned = planner(config % "store", [recorded])
    box = planned.change("compute.box")
    assert box.after["description"] == computed["path"]
    assert "description" not in box.after_unknown
    planned = planner(config % "elsewhere", [recorded, local("box", description=computed["path"])])
    assert planned.change("workspace.ws").actions == REPLACE
    box = planned.change("compute.box")
    assert box.actions == UPDATE
    assert box.after_unknown == ("description",)


# --------------------------------------------------------------------------- sensitive values

SECRET = "s3cr3t-value-7f9d"
SENSITIVE = """
variable "token" {
  sensitive = true
}
compute "box" {
  type        = "local"
  description = var.token
}
environment "env" {
  docker {
    image = "registry/${var.token}"
  }
}
output "token" {
  value     = var.token
  sensitive = true
}
"""


def assert_not_leaked(planned: Planned, tmp_path: Path, secret: str) -> None:
    assert secret not in json.dumps(planned.plan.to_dict())
    assert secret not in json.dumps(plan_to_json(planned.plan))
    saved = tmp_path / "saved.plan"
    planfile.save(saved, planned.session.saved(planned.plan))
    assert secret not in saved.read_text()


@pytest.mark.parametrize(
    ("recorded", "expected"),
    [(SECRET, NOOP), ("an-older-secret", UPDATE)],
    ids=["unchanged", "changed"],
)
def test_sensitive_attribute_compared_by_sealed_hash(
    planner: Any, tmp_path: Path, recorded: str, expected: tuple[str, ...]
) -> None:
    prior = [
        local("box", description=secrets.seal(recorded)),
        environment("env", secrets.seal(docker(f"registry/{recorded}"))),
    ]
    planned = planner(
        SENSITIVE,
        prior,
        cli=[("var", f"token={SECRET}")],
        outputs={"token": {"value": secrets.seal(recorded), "sensitive": True}},
    )
    assert [(c.address, c.actions) for c in planned.plan.changes] == [
        ("compute.box", expected),
        ("environment.env", expected),
    ]
    box = planned.change("compute.box")
    assert box.before["description"] is None
    assert box.after["description"] is None
    assert box.before_sensitive == ("description",)
    assert box.after_sensitive == ("description",)
    env = planned.change("environment.env")
    assert env.after["docker"] is None
    assert env.after_sensitive == ("docker",)
    [out] = planned.plan.outputs
    assert (out.actions, out.before, out.after, out.sensitive) == (expected, None, None, True)
    assert_not_leaked(planned, tmp_path, SECRET)
    assert_not_leaked(planned, tmp_path, recorded)


def test_sensitive_values_on_create_are_masked(planner: Any, tmp_path: Path) -> None:
    planned = planner(SENSITIVE, [], cli=[("var", f"token={SECRET}")])
    assert [c.actions for c in planned.plan.changes] == [CREATE, CREATE]
    assert planned.change("compute.box").after["description"] is None
    assert_not_leaked(planned, tmp_path, SECRET)


def test_sensitivity_flows_through_locals(planner: Any, tmp_path: Path) -> None:
    config = """
    variable "token" {
      sensitive = true
    }
    locals {
      header = "Bearer ${var.token}"
    }
    compute "box" {
      type = "local"
      tags = { auth = local.header }
    }
    """
    planned = planner(config, [], cli=[("var", f"token={SECRET}")])
    box = planned.change("compute.box")
    assert box.after_sensitive == ("tags.auth",)  # the key of the map, not the whole map
    assert box.after["tags"] == {"auth": None}
    assert_not_leaked(planned, tmp_path, SECRET)


PER_KEY = """
variable "token" {
  sensitive = true
}
environment "env" {
  variables = { TOKEN = var.token, MODE = "MODE_VALUE", "quoted" = "q" }
}
compute "local" {
  type = "local"
}
run "train" {
  experiment  = "x"
  compute     = compute.local
  environment = environment.env
  command     = ["true"]
  env         = { A = "1", SECRET = "${var.token}-x" }
}
"""


def test_sensitivity_is_per_key_inside_maps(planner: Any, tmp_path: Path) -> None:
    """Only the keys of a map that derive from a sensitive value are hidden; a reference to
    another resource carries its sensitive keys along; state seals only those keys."""
    from trainform.cli.render import plan_text
    from trainform.engine.recorded import sealed_attributes
    from trainform.planner.jsonplan import plan_to_json

    planned = planner(PER_KEY.replace("MODE_VALUE", "fast"), [], cli=[("var", f"token={SECRET}")])
    env = planned.change("environment.env")
    assert env.after_sensitive == ("variables.TOKEN",)
    assert env.after["variables"] == {"TOKEN": None, "MODE": "fast", "quoted": "q"}
    run = planned.change("run.train")
    assert run.after_sensitive == ("env.SECRET", "environment.variables.TOKEN")
    assert run.after["env"]["A"] == "1" and run.after["env"].get("SECRET") is None
    text = "\n".join(plan_text(planned.plan))
    assert 'MODE = "fast"' in text and "TOKEN = (sensitive value)" in text, text
    flags = plan_to_json(planned.plan)["resource_changes"]
    by = {c["address"]: c["change"] for c in flags}
    # Terraform's mirror: maps keep only what is sensitive, lists element by element
    assert by["environment.env"]["after_sensitive"] == {"pip": [], "variables": {"TOKEN": True}}
    assert by["run.train"]["after_sensitive"]["env"] == {"SECRET": True}
    assert_not_leaked(planned, tmp_path, SECRET)

    assert planned.planner.evaluated is not None
    inst = planned.planner.evaluated.instances["environment.env"]
    stored = sealed_attributes(inst)
    assert stored["variables"]["MODE"] == "fast"
    assert secrets.is_sealed(stored["variables"]["TOKEN"])
    assert secrets.matches(stored["variables"]["TOKEN"], SECRET)


# --------------------------------------------------------------------------- outputs


OUTPUTS = """
output "new" {
  value = "n"
}
output "changed" {
  value = "after"
}
output "same" {
  value = [1, 2]
}
output "unknown" {
  value = workspace.ws.path
}
workspace "ws" {}
"""


def test_output_changes(planner: Any) -> None:
    planned = planner(
        OUTPUTS,
        [],
        outputs={
            "changed": {"value": "before", "sensitive": False},
            "same": {"value": [1, 2], "sensitive": False},
            "removed": {"value": {"k": 1}, "sensitive": False},
        },
    )
    got = {o.name: (o.actions, o.before, o.after, o.after_unknown) for o in planned.plan.outputs}
    assert got == {
        "changed": (UPDATE, "before", "after", False),
        "new": (CREATE, None, "n", False),
        "removed": (DELETE, {"k": 1}, None, False),
        "same": (NOOP, [1, 2], [1, 2], False),
        "unknown": (CREATE, None, None, True),
    }


def test_output_becoming_sensitive_is_an_update(planner: Any) -> None:
    config = 'output "o" {\n  value     = "v"\n  sensitive = true\n}\n'
    planned = planner(config, [], outputs={"o": {"value": "v", "sensitive": False}})
    [out] = planned.plan.outputs
    assert (out.actions, out.before, out.after, out.sensitive) == (UPDATE, "v", None, True)


def test_sensitive_output_requires_sensitive_true(planner: Any) -> None:
    from trainform.errors import ConfigError

    config = """
    variable "token" {
      sensitive = true
    }
    locals {
      derived = upper(var.token)
    }
    output "leak" {
      value = { token = local.derived }
    }
    """
    with pytest.raises(ConfigError) as info:
        planner(config, [], cli=[("var", f"token={SECRET}")])
    [diag] = info.value.diagnostics
    assert diag.message == "output 'leak' refers to sensitive values"
    assert diag.hint == "set sensitive = true in the output block"
    assert diag.pos is not None and diag.pos.line == 8
    assert SECRET not in str(info.value)
    assert SECRET.upper() not in str(info.value)


# --------------------------------------------------------------------------- plan data


def test_plan_round_trips_through_a_plan_file(planner: Any, tmp_path: Path) -> None:
    """A plan with partly unknown values (a map with one unknown entry), replacements,
    drift and outputs survives saving and loading unchanged."""
    config = """
    workspace "ws" {}
    compute "box" {
      type = "local"
      tags = { store = workspace.ws.path, fixed = "x" }
    }
    compute "a" {
      type    = "local"
      workdir = "/w1"
    }
    output "o" {
      value = compute.box.tags
    }
    """
    planned = planner(config, [local("a", workdir="/w0"), local("gone")])
    box = planned.change("compute.box")
    assert "tags" in box.after_unknown
    assert "tags" not in box.after
    path = tmp_path / "plan.json"
    planfile.save(path, planned.session.saved(planned.plan))
    loaded = planfile.load(path)
    assert loaded.plan == planned.plan
    assert Plan.from_dict(planned.plan.to_dict()) == planned.plan


def test_plan_records_lineage_and_serial(planner: Any) -> None:
    planned = planner(A % "", [local("a", description="d", workdir="/w1")])
    lineage, serial = planned.session.store.lineage_serial()
    assert (planned.plan.lineage, planned.plan.serial) == (lineage, serial)
    assert serial == 1


def test_sensitive_for_each_is_refused_before_keys_become_addresses(planner: Any) -> None:
    from trainform.errors import ConfigError

    config = """
    variable "hosts" {
      type      = list(string)
      sensitive = true
    }
    compute "n" {
      type     = "local"
      for_each = toset(var.hosts)
    }
    """
    with pytest.raises(ConfigError) as info:
        planner(config, [], cli=[("var", f'hosts=["{SECRET}"]')])
    [diag] = info.value.diagnostics
    assert diag.message.startswith("for_each cannot use sensitive values")
    assert diag.pos is not None and (diag.pos.line, diag.pos.column) == (7, 14)
    assert SECRET not in str(info.value)


def test_output_of_a_sensitive_nested_block_requires_sensitive_true(planner: Any) -> None:
    from trainform.errors import ConfigError

    config = """
    variable "token" {
      sensitive = true
    }
    environment "env" {
      docker {
        image = "registry/${var.token}"
      }
    }
    output "image" {
      value = environment.env.docker.image
    }
    """
    with pytest.raises(ConfigError) as info:
        planner(config, [], cli=[("var", f"token={SECRET}")])
    [diag] = info.value.diagnostics
    assert diag.message == "output 'image' refers to sensitive values"
    assert diag.pos is not None and diag.pos.line == 10


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("ready", "has been deleted outside trainform"),
        ("tainted", "is tainted: its last apply failed"),
        ("pending", "was left half-created by an interrupted apply"),
    ],
)
def test_reason_for_recreating_what_is_not_there(
    planner: Any, tmp_path: Path, status: str, reason: str
) -> None:
    """A recorded resource that refresh cannot find is created again; the reason says why
    it is missing (a failed or interrupted create is not "deleted outside trainform")."""
    prior = [{**workspace("ws", tmp_path / "never-created"), "status": status}]
    planned = planner('workspace "ws" {}\n', prior)
    assert planned.actions() == [("workspace.ws", CREATE, reason)]
