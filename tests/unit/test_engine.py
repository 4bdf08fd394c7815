"""The engine through the library entry point (``Session``), with the real workspace, local
compute and environment providers and real SQLite state: ordering by dependencies, failures
that skip only their dependents, interruption, and what is persisted."""

from __future__ import annotations

import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from trainform.config.variables import VariableInputs
from trainform.engine.apply import ApplyResult, Event
from trainform.engine.session import Session
from trainform.planner.diff import PlanOptions
from trainform.planner.types import Plan
from trainform.state import secrets


@dataclass
class Run:
    """One configuration folder: write it, plan it, apply it, look at what happened."""

    directory: Path
    cli: list[tuple[str, str]] = field(default_factory=list)
    events: list[tuple[str, str]] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)

    def write(self, text: str) -> None:
        (self.directory / "main.train.hcl").write_text(textwrap.dedent(text).lstrip("\n"))

    def open(self) -> Session:
        session = Session.open(self.directory, VariableInputs(cli=list(self.cli), environ={}))
        self.sessions.append(session)
        return session

    def plan(self, options: PlanOptions | None = None) -> Plan:
        session = self.open()
        with session.locked("plan"):
            plan, _ = session.make_plan(options or PlanOptions())
        return plan

    def apply(
        self,
        options: PlanOptions | None = None,
        cancel: threading.Event | None = None,
        on_event: Callable[[Event], None] | None = None,
        parallelism: int = 10,
    ) -> ApplyResult:
        session = self.open()
        session.parallelism = parallelism
        self.events.clear()

        def record(event: Event) -> None:
            self.events.append((event.kind, event.change.address))
            if on_event is not None:
                on_event(event)

        with session.locked("apply"):
            plan, planner = session.make_plan(options or PlanOptions())
            return session.apply(plan, planner, "apply", cancel=cancel, on_event=record)

    def state(self) -> Session:
        return self.open()

    def statuses(self) -> dict[str, str]:
        return {a: r.status for a, r in self.state().store.resources().items()}

    def index(self, kind: str, address: str) -> int:
        return self.events.index((kind, address))


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    r = Run(tmp_path)
    yield r
    for s in r.sessions:
        s.close()


def db_bytes(directory: Path) -> bytes:
    state = directory / ".trainform"
    return b"".join(p.read_bytes() for p in sorted(state.glob("state.db*")))


# --------------------------------------------------------------------------- ordering


CHAIN = """
workspace "ws" {}
compute "box" {
  type        = "local"
  description = "store at ${workspace.ws.path}"
}
environment "env" {
  variables = { WORKDIR = compute.box.workdir_path }
}
workspace "solo" {}
compute "late" {
  type       = "local"
  depends_on = [environment.env]
}
output "store" {
  value = workspace.ws.path
}
"""


@pytest.mark.parametrize("parallelism", [1, 10])
def test_apply_honours_dependencies(run: Run, parallelism: int) -> None:
    run.write(CHAIN)
    result = run.apply(parallelism=parallelism)
    assert result.ok
    assert sorted(result.succeeded) == [
        "compute.box",
        "compute.late",
        "environment.env",
        "workspace.solo",
        "workspace.ws",
    ]
    for first, then in [
        ("workspace.ws", "compute.box"),
        ("compute.box", "environment.env"),
        ("environment.env", "compute.late"),
    ]:
        assert run.index("done", first) < run.index("start", then), run.events
    # values known only after apply were filled in before dependents were created
    resources = run.state().store.resources()
    path = resources["workspace.ws"].computed["path"]
    assert Path(path).is_dir()
    assert resources["compute.box"].attributes["description"] == f"store at {path}"
    assert resources["environment.env"].attributes["variables"] == {
        "WORKDIR": resources["compute.box"].computed["workdir_path"]
    }
    assert resources["compute.box"].dependencies == ("workspace.ws",)
    assert set(run.statuses().values()) == {"ready"}
    assert run.state().store.outputs() == {"store": {"value": path, "sensitive": False}}
    [entry] = run.state().store.history()
    assert entry["outcome"] == "ok"


def test_second_apply_changes_nothing(run: Run) -> None:
    run.write(CHAIN)
    assert run.apply().ok
    serial = run.state().store.lineage_serial()
    plan = run.plan()
    assert not plan.has_changes
    result = run.apply()
    assert result.ok and result.succeeded == []
    assert run.state().store.lineage_serial() == serial


def test_destroy_removes_dependents_first(run: Run) -> None:
    run.write(CHAIN)
    assert run.apply().ok
    path = Path(run.state().store.resources()["workspace.ws"].computed["path"])
    result = run.apply(PlanOptions(mode="destroy"))
    assert result.ok
    assert run.index("done", "compute.late") < run.index("start", "environment.env")
    assert run.index("done", "environment.env") < run.index("start", "compute.box")
    assert run.index("done", "compute.box") < run.index("start", "workspace.ws")
    assert run.state().store.resources() == {}
    assert run.state().store.outputs() == {}
    assert not path.exists()


# --------------------------------------------------------------------------- failures


FAILING = """
workspace "bad" {
  artifact_store = "blocker/store"
}
compute "dep" {
  type        = "local"
  description = workspace.bad.path
}
compute "dep2" {
  type       = "local"
  depends_on = [compute.dep]
}
workspace "good" {}
environment "env" {}
output "good" {
  value = workspace.good.path
}
output "bad" {
  value = workspace.bad.path
}
"""


def test_failure_skips_dependents_and_lets_independent_branches_finish(run: Run) -> None:
    (run.directory / "blocker").write_text("a file where a folder is needed")
    run.write(FAILING)
    result = run.apply()
    assert not result.ok
    assert list(result.failed) == ["workspace.bad"]
    assert "cannot create artifact store" in result.failed["workspace.bad"]
    assert "Not a directory" in result.failed["workspace.bad"]
    assert sorted(result.skipped) == ["compute.dep", "compute.dep2"]
    assert sorted(result.succeeded) == ["environment.env", "workspace.good"]
    assert ("start", "compute.dep") not in run.events
    assert ("start", "compute.dep2") not in run.events
    # state says exactly what was done: the failed create is tainted, the skipped are absent
    assert run.statuses() == {
        "environment.env": "ready",
        "workspace.bad": "tainted",
        "workspace.good": "ready",
    }
    outputs = run.state().store.outputs()
    assert list(outputs) == ["good"]  # the unknown one is not recorded
    [entry] = run.state().store.history()
    assert entry["outcome"] == "failed"
    # once the cause is gone, the next apply finishes the job
    (run.directory / "blocker").unlink()
    plan = run.plan()
    actions = {c.address: c.actions for c in plan.resource_changes}
    assert actions["compute.dep"] == ("create",)
    assert actions["compute.dep2"] == ("create",)
    assert "create" in actions["workspace.bad"]
    assert "environment.env" not in actions
    assert run.apply().ok
    assert set(run.statuses().values()) == {"ready"}
    assert sorted(run.state().store.outputs()) == ["bad", "good"]


# --------------------------------------------------------------------------- interruption


def test_interrupt_before_start_changes_nothing(run: Run) -> None:
    run.write(CHAIN)
    cancel = threading.Event()
    cancel.set()
    result = run.apply(cancel=cancel)
    assert result.interrupted
    assert not result.ok
    assert result.succeeded == []
    assert sorted(result.not_started) == [
        "compute.box",
        "compute.late",
        "environment.env",
        "workspace.solo",
        "workspace.ws",
    ]
    store = run.state().store
    assert store.resources() == {}
    assert store.outputs() == {}
    assert store.lineage_serial() == (None, 0)
    [entry] = store.history()
    assert entry["outcome"] == "interrupted"
    assert not (run.directory / ".trainform" / "workspaces").exists()
    assert [c.actions for c in run.plan().resource_changes] == [("create",)] * 5


def test_interrupt_midway_leaves_consistent_state(run: Run) -> None:
    run.write(CHAIN)
    cancel = threading.Event()

    def stop_after_workspace(event: Event) -> None:
        if (event.kind, event.change.address) == ("done", "workspace.ws"):
            cancel.set()

    result = run.apply(cancel=cancel, on_event=stop_after_workspace, parallelism=1)
    assert result.interrupted
    assert "workspace.ws" in result.succeeded
    assert {"compute.box", "environment.env", "compute.late"} <= set(result.not_started)
    assert not set(result.succeeded) & set(result.not_started)
    statuses = run.statuses()
    assert statuses["workspace.ws"] == "ready"
    assert set(statuses) == set(result.succeeded)  # no pending or half-written records
    assert run.state().store.outputs() == {}  # outputs wait for a complete apply
    [entry] = run.state().store.history()
    assert entry["outcome"] == "interrupted"
    # the next plan picks up exactly where it stopped
    plan = run.plan()
    pending = {c.address for c in plan.resource_changes}
    assert pending == set(result.not_started)
    assert run.apply().ok
    assert len(run.state().store.resources()) == 5


# --------------------------------------------------------------------------- secrets


SECRET = "t0ken-5f1b2e9a"
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
output "visible" {
  value = "shown-value-33ab"
}
"""


def test_outputs_persisted_and_sealed_when_sensitive(run: Run) -> None:
    run.cli = [("var", f"token={SECRET}")]
    run.write(SENSITIVE)
    result = run.apply()
    assert result.ok
    store = run.state().store
    outputs = store.outputs()
    assert outputs["visible"] == {"value": "shown-value-33ab", "sensitive": False}
    assert outputs["token"]["sensitive"] is True
    assert secrets.matches(outputs["token"]["value"], SECRET)
    resources = store.resources()
    assert secrets.matches(resources["compute.box"].attributes["description"], SECRET)
    assert secrets.is_sealed(resources["environment.env"].attributes["docker"])
    data = db_bytes(run.directory)
    assert b"shown-value-33ab" in data  # the search does see what is stored in clear
    assert SECRET.encode() not in data
    assert result.outputs["token"]["value"] != SECRET

    # the same secret again: nothing to do, and the serial does not move
    serial = store.lineage_serial()
    assert not run.plan().has_changes
    assert run.apply().ok
    assert run.state().store.lineage_serial() == serial

    # a new secret: an update, still never in clear
    run.cli = [("var", "token=another-secret-77")]
    plan = run.plan()
    assert {c.address: c.actions for c in plan.resource_changes} == {
        "compute.box": ("update",),
        "environment.env": ("update",),
    }
    assert run.apply().ok
    store = run.state().store
    assert secrets.matches(store.outputs()["token"]["value"], "another-secret-77")
    assert secrets.matches(
        store.resources()["compute.box"].attributes["description"], "another-secret-77"
    )
    assert b"another-secret-77" not in db_bytes(run.directory)
