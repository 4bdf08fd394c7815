"""The state store's contract, the same on both backends (a real SQLite file, a real
PostgreSQL database): resources, outputs, run history, metrics, sweeps, state edits, state
versions, pushing a state document, and copying everything from one backend to the other."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trainform.errors import StateError
from trainform.providers.base import ResourceState
from trainform.state.migrate import copy_all
from trainform.state.postgres import PgStateStore
from trainform.state.secrets import seal
from trainform.state.sqlite import SQLiteStateStore
from trainform.state.store import StateStore


def open_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest, name: str) -> StateStore:
    if kind == "sqlite":
        return SQLiteStateStore(tmp_path / f"{name}.db")
    conn: str = request.getfixturevalue("pg_conn_str")
    return PgStateStore(conn, "trainform", name, create=True)


@pytest.fixture(params=["sqlite", "pg"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    s = open_store(request.param, tmp_path, request, "default")
    yield s
    s.close()


def rs(address: str, **kw: Any) -> ResourceState:
    kind, name = address.split(".", 1)
    return ResourceState(
        address=address,
        kind=kind,
        name=name,
        key=None,
        provider=kw.pop("provider", kind),
        attributes=kw.pop("attributes", {"path": f"/x/{name}"}),
        computed=kw.pop("computed", {}),
        dependencies=kw.pop("dependencies", ()),
        **kw,
    )


def fill(s: StateStore) -> None:
    """A little of everything a store holds."""
    s.put_resource(rs("workspace.ws", computed={"id": "w1"}))
    s.put_resource(
        rs(
            "run.train",
            attributes={"script": "t.py", "env": {"TOKEN": seal("hunter2")}},
            computed={"run_id": "r1", "fingerprint": "fp1"},
            dependencies=("workspace.ws",),
        )
    )
    s.put_outputs({"url": {"value": "http://x", "sensitive": False}})
    s.put_run(
        {
            "id": "r1",
            "address": "run.train",
            "workspace": "workspace.ws",
            "experiment": "e",
            "status": "completed",
            "fingerprint": "fp1",
            "created": "2024-01-01T00:00:00+00:00",
            "finished": "2024-01-01T00:01:00+00:00",
            "record": {"args": ["--lr", "0.1"]},
        }
    )
    s.put_metrics(
        "r1",
        [
            {"name": "loss", "step": 1, "value": 0.5, "time": 1.5},
            {"name": "loss", "step": 2, "value": 0.25, "time": 2.5},
            {"name": "acc", "step": None, "value": 1, "time": 3.0, "source": "regex"},
            {"name": "loss", "step": 3, "value": None, "time": 3.5, "nonfinite": "nan"},
        ],
    )
    s.put_sweep(
        {
            "id": "s1",
            "address": "sweep.hp",
            "status": "running",
            "fingerprint": "sfp",
            "created": "2024-01-02T00:00:00+00:00",
            "record": {"trials": [1, 2]},
        }
    )
    apply_id = s.begin_apply("trainform apply")
    s.finish_apply(apply_id, "ok", [{"address": "run.train", "outcome": "ok"}])
    s.record_version("trainform apply", "ab" * 32)


def test_resources_outputs_and_the_serial(store: StateStore) -> None:
    assert store.lineage_serial() == (None, 0)
    assert store.is_empty()
    store.put_resource(rs("workspace.ws", computed={"id": "1"}))
    lineage, serial = store.lineage_serial()
    assert lineage and serial == 1
    assert store.resources()["workspace.ws"].computed == {"id": "1"}
    store.put_outputs({"a": {"value": [1, 2], "sensitive": True}})
    store.put_outputs({"a": {"value": [1, 2], "sensitive": True}})  # unchanged: no bump
    assert store.lineage_serial() == (lineage, 2)
    assert store.outputs() == {"a": {"value": [1, 2], "sensitive": True}}
    store.move_resource("workspace.ws", "workspace.main", "workspace", "main", None)
    assert list(store.resources()) == ["workspace.main"]
    store.remove_resource("workspace.main")
    assert store.resources() == {}
    assert store.lineage_serial() == (lineage, 4)
    assert not store.is_empty()


def test_run_history_metrics_and_sweeps(store: StateStore) -> None:
    fill(store)
    (run,) = store.runs("run.train")
    assert run["status"] == "completed" and run["record"] == {"args": ["--lr", "0.1"]}
    assert store.count_runs("workspace.ws") == 1
    assert [(m["name"], m["step"], m["value"]) for m in store.metrics("r1")] == [
        ("acc", None, 1.0),
        ("loss", 1, 0.5),
        ("loss", 2, 0.25),
        ("loss", 3, None),
    ]
    assert [m.get("nonfinite") for m in store.metrics("r1")] == [None, None, None, "nan"]
    assert store.sweeps()[0]["record"] == {"trials": [1, 2]}
    (h,) = store.history()
    assert h["outcome"] == "ok" and h["serial"] == store.lineage_serial()[1]


def test_edit_resources_moves_forgets_and_renames_fingerprints(store: StateStore) -> None:
    fill(store)
    store.edit_resources(
        moves=[("workspace.ws", "workspace.main")],
        forget=[],
        put=[rs("compute.box", provider="local")],
        fingerprints=[("run.train", "fp1", "fp2")],
    )
    got = store.resources()
    assert sorted(got) == ["compute.box", "run.train", "workspace.main"]
    assert got["run.train"].dependencies == ("workspace.main",)
    assert got["run.train"].computed["fingerprint"] == "fp2"
    assert store.runs()[0]["fingerprint"] == "fp2"
    assert store.runs()[0]["workspace"] == "workspace.main"


def test_versions_record_each_serial_once_with_the_whole_state(store: StateStore) -> None:
    assert store.record_version("apply", None) is None  # nothing recorded yet
    store.put_resource(rs("workspace.ws"))
    serial = store.record_version("trainform apply", "d1" * 32)
    assert serial == 1
    assert store.record_version("trainform apply", None) is None  # serial did not move
    store.put_resource(rs("workspace.other"))
    assert store.record_version("trainform state rm", None) == 2
    listed = store.versions()
    assert [v["serial"] for v in listed] == [2, 1]
    assert listed[1]["plan_digest"] == "d1" * 32 and listed[1]["command"] == "trainform apply"
    assert listed[0]["who"] and listed[0]["host"] and listed[0]["created"]
    first = store.version(1)
    assert first is not None
    assert [r["address"] for r in first["state"]["resources"]] == ["workspace.ws"]
    assert first["state"]["lineage"] == store.lineage_serial()[0]
    assert store.version(7) is None


def test_export_holds_only_sealed_secrets(store: StateStore) -> None:
    fill(store)
    doc = store.export_state()
    assert doc["format_version"] == "1" and doc["serial"] == store.lineage_serial()[1]
    assert "hunter2" not in str(doc)
    run = next(r for r in doc["resources"] if r["address"] == "run.train")
    assert run["dependencies"] == ["workspace.ws"] and run["status"] == "ready"


def test_import_refuses_other_lineage_older_serial_and_divergent_content(
    store: StateStore,
) -> None:
    fill(store)
    doc = store.export_state()
    lineage, serial = store.lineage_serial()
    with pytest.raises(StateError, match="lineage"):
        store.import_state({**doc, "lineage": "another"})
    with pytest.raises(StateError, match="newer than the document"):
        store.import_state({**doc, "serial": serial - 1})
    with pytest.raises(StateError, match="same serial with other content"):
        store.import_state({**doc, "outputs": {}})
    with pytest.raises(StateError, match="not a trainform state document"):
        store.import_state({**doc, "resources": [{"address": "x"}]})
    store.import_state(doc)  # the state that is there: nothing changes
    assert store.lineage_serial() == (lineage, serial)
    store.import_state({**doc, "serial": serial + 5, "outputs": {}})
    assert store.lineage_serial() == (lineage, serial + 5)
    assert store.outputs() == {}
    assert store.versions()[0]["command"] == "state push"
    store.import_state({**doc, "lineage": "another"}, force=True)
    assert store.lineage_serial() == ("another", serial + 6)
    assert sorted(store.resources()) == ["run.train", "workspace.ws"]


@pytest.mark.parametrize("direction", ["sqlite->pg", "pg->sqlite"])
def test_copy_all_moves_everything_and_verifies_it(
    direction: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    src_kind, dst_kind = direction.split("->")
    src = open_store(src_kind, tmp_path, request, "src")
    dst = open_store(dst_kind, tmp_path, request, "dst")
    fill(src)
    src.put_resource(rs("workspace.later"))
    src.record_version("trainform apply", None)
    counts = copy_all(src, dst)
    assert counts == {
        "resources": 3,
        "outputs": 1,
        "runs": 1,
        "run_metrics": 4,
        "sweeps": 1,
        "apply_history": 1,
        "state_versions": 2,
    }
    assert dst.lineage_serial() == src.lineage_serial()
    assert dst.fingerprint_key() == src.fingerprint_key()
    assert dst.resources() == src.resources()
    assert dst.export_state() == src.export_state()
    assert dst.versions() == src.versions()
    assert dst.metrics("r1") == src.metrics("r1")
    assert dst.history() == src.history()
    assert dst.digests() == src.digests()
    # the copy goes on where the source stopped
    new_id = dst.begin_apply("next")
    assert new_id == src.history()[0]["id"] + 1
    dst.put_resource(rs("workspace.after"))
    assert dst.record_version("apply", None) == src.lineage_serial()[1] + 1

    with pytest.raises(StateError, match="already holds state"):
        copy_all(src, dst)
    copy_all(src, dst, force=True)
    assert dst.digests() == src.digests()
    src.close()
    dst.close()


def test_a_copy_that_reads_back_differently_changes_nothing(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    src = open_store("sqlite", tmp_path, request, "src")
    dst = open_store("pg", tmp_path, request, "dst")
    fill(src)
    contents = src.contents()
    # a value PostgreSQL's double precision column cannot keep exactly as given
    contents["run_metrics"][0] = (
        *contents["run_metrics"][0][:3],
        "0.1",
        *contents["run_metrics"][0][4:],
    )
    with pytest.raises(StateError, match="run_metrics read back differently"):
        dst.replace_contents(contents)
    assert dst.is_empty()
