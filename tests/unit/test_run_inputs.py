"""Datasets, named outputs and run inputs (trainform/runs/inputs.py), and the launcher's
placing of inputs read-only and telling afterwards whether a run changed them
(place_inputs / changed_inputs in trainform/runs/launcher.py). Real files in tmp_path; the
http(s) download is exercised through a file:// URL (urllib opens it as it opens http)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from trainform.config.values import UNKNOWN
from trainform.errors import ProviderError
from trainform.runs import inputs as data
from trainform.runs import launcher
from trainform.runs.launcher import LauncherError, changed_inputs, place_inputs

SHA = hashlib.sha256(b"x").hexdigest()


def folder(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "data"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


# -- datasets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("http://h/x", "http"),
        ("HTTPS://h/x", "http"),
        ("ssh://h/p", "ssh"),
        ("data/wine", "local"),
        ("httpdata", "local"),
    ],
)
def test_source_kind(source: str, kind: str) -> None:
    assert data.source_kind(source) == kind


def test_dataset_problems(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    assert data.dataset_problems({"source": "data"}, tmp_path) == []
    assert data.dataset_problems({"source": "http://h/x.csv", "sha256": SHA}, tmp_path) == []
    [missing_sha] = data.dataset_problems({"source": "http://u:pw@h/x.csv"}, tmp_path)
    assert "must carry its sha256" in missing_sha and "pw" not in missing_sha
    assert data.dataset_problems({"source": "http://h/x", "sha256": "abc"}, tmp_path) == [
        "sha256 must be 64 hexadecimal digits"
    ]
    [ssh] = data.dataset_problems({"source": "ssh://h/p"}, tmp_path)
    assert "ssh://" in ssh  # an ssh source needs the ssh compute whose host holds it
    [gone] = data.dataset_problems({"source": "nope"}, tmp_path)
    assert "does not exist" in gone
    assert any(
        "sha256 is for http(s) sources" in p
        for p in data.dataset_problems({"source": "data", "sha256": SHA}, tmp_path)
    )
    assert data.dataset_problems({}, tmp_path)


def test_a_folder_dataset_is_content_addressed(tmp_path: Path) -> None:
    root = folder(tmp_path, {"a.csv": "1\n", "sub/b.csv": "2\n"})
    cache = tmp_path / "cache"
    content = data.dataset_content({"source": "data"}, tmp_path, cache)
    assert content.file is None and content.root == root.resolve()
    assert sorted(e.path for e in content.manifest.entries) == ["a.csv", "sub/b.csv"]
    assert data.content_summary(content.manifest) == {
        "id": content.manifest.id,
        "files": 2,
        "bytes": 4,
    }
    again = data.dataset_content({"source": "data"}, tmp_path, cache)
    assert again.manifest.id == content.manifest.id
    (root / "c.csv").write_text("3\n")
    assert data.dataset_content({"source": "data"}, tmp_path, cache).manifest.id != (
        content.manifest.id
    )


def test_a_one_file_dataset_names_its_file(tmp_path: Path) -> None:
    folder(tmp_path, {"one.csv": "rows\n"})
    content = data.dataset_content({"source": "data/one.csv"}, tmp_path, tmp_path / "cache")
    assert content.file == "one.csv"
    [entry] = content.manifest.entries
    assert entry.sha256 == hashlib.sha256(b"rows\n").hexdigest()


def test_a_missing_dataset_source_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match="dataset source 'nope' does not exist"):
        data.dataset_content({"source": "nope"}, tmp_path, tmp_path / "cache")


def test_download_checks_the_sha256_keeps_nothing_on_mismatch_and_fetches_once(
    tmp_path: Path,
) -> None:
    served = tmp_path / "served.csv"
    served.write_bytes(b"row 1\n")
    url = served.as_uri()
    good = hashlib.sha256(b"row 1\n").hexdigest()
    cache = tmp_path / "cache"

    with pytest.raises(ProviderError, match="does not match its sha256") as caught:
        data.download(url, SHA, cache)
    assert good in str(caught.value) and "nothing was kept" in str(caught.value)
    assert [p for p in (cache / "downloads").rglob("*") if p.is_file()] == []

    path = data.download(url, good, cache)
    assert path == cache / "downloads" / good / "served.csv"
    assert path.read_bytes() == b"row 1\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    served.unlink()  # fetched once: the cached copy is used from now on
    assert data.download(url, good, cache) == path


# -- named outputs ------------------------------------------------------------------------------


def test_output_problems() -> None:
    assert data.output_problems({"features": "outputs/features"}, "outputs") == []
    assert data.output_problems({"m": "./outputs//m.pt"}, "outputs/") == []
    assert data.output_problems(None, "outputs") == []
    assert data.output_problems(UNKNOWN, "outputs") == []
    [escapes] = data.output_problems({"x": "../x"}, "outputs")
    assert "escapes the run's folder" in escapes
    [absolute] = data.output_problems({"x": "/tmp/x"}, "outputs")
    assert "escapes" in absolute
    [outside] = data.output_problems({"x": "elsewhere/x"}, "outputs")
    assert "not inside outputs_dir 'outputs'" in outside and '"outputs/x"' in outside
    [itself] = data.output_problems({"x": "outputs"}, "outputs")
    assert "not inside outputs_dir" in itself
    [prefix] = data.output_problems({"x": "outputsx/y"}, "outputs")
    assert "not inside outputs_dir" in prefix
    [name] = data.output_problems({"bad-name": "outputs/x"}, "outputs")
    assert "not an identifier" in name
    assert data.output_problems(["outputs/x"], "outputs") == [
        "outputs must be a map of name -> path"
    ]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a/b", "a/b"),
        ("./a//b/", "a/b"),
        ("../a", None),
        ("a/../b", None),
        ("/a", None),
        ("", None),
        (".", None),
        (3, None),
    ],
)
def test_relative(path: object, expected: str | None) -> None:
    assert data.relative(path) == expected


def test_collect_outputs_keeps_what_was_declared_and_produced(tmp_path: Path) -> None:
    collected = tmp_path / "run" / "outputs"
    (collected / "features").mkdir(parents=True)
    (collected / "features" / "all.txt").write_text("rows\n")
    (collected / "model.pt").write_text("weights")
    store = tmp_path / "store"
    found = data.collect_outputs(
        {
            "features": "outputs/features",
            "model": "outputs/model.pt",
            "missing": "outputs/none",
            "outside": "../x",
        },
        "outputs",
        collected,
        store,
        {"address": "run.prep", "run_id": "prep-1"},
    )
    assert sorted(found) == ["features", "model"]
    assert found["features"]["file"] is None and found["features"]["files"] == 1
    assert found["model"]["file"] == "model.pt" and found["model"]["bytes"] == 7
    assert found["features"]["from"] == "run.prep" and found["features"]["run_id"] == "prep-1"
    for value in found.values():
        assert (store / "snapshots" / "manifests" / f"{value['id']}.json").is_file()
    blob = hashlib.sha256(b"weights").hexdigest()
    assert (store / "snapshots" / "blobs" / blob[:2] / blob[2:]).read_bytes() == b"weights"


# -- inputs -------------------------------------------------------------------------------------


def test_input_problems() -> None:
    dataset = {"id": "a" * 64, "address": "dataset.raw"}
    assert data.input_problems({"raw": dataset}, "copy") == []
    assert data.input_problems(None, "copy") == []
    [name] = data.input_problems({"bad-name": dataset}, "copy")
    assert "input name 'bad-name' is not an identifier" in name
    [digit] = data.input_problems({"1x": dataset}, "copy")
    assert "not an identifier" in digit
    [same] = data.input_problems({"raw": dataset, "RAW": dataset}, "copy")
    assert "same variable RAW" in same
    [value] = data.input_problems({"raw": "data/wine"}, "copy")
    assert "must be a dataset (dataset.NAME) or a named output" in value
    assert data.input_problems(["x"], "copy")


def test_input_names_are_checked_while_their_values_are_unknown() -> None:
    """At the first plan a dataset's id is not known yet; the names are."""
    assert data.input_problems({"raw": UNKNOWN}, "copy") == []
    [name] = data.input_problems({"bad-name": UNKNOWN}, "copy")
    assert "not an identifier" in name
    assert data.input_problems(UNKNOWN, "copy") == []


def test_input_ids_pending_and_changes() -> None:
    a = {"id": "a" * 64, "from": "dataset.raw"}
    b = {"id": "b" * 64, "from": "run.prep"}
    assert data.input_ids({"y": b, "x": a, "z": UNKNOWN}) == {
        "x": "a" * 64,
        "y": "b" * 64,
        "z": None,
    }
    assert data.pending_inputs({"x": a, "z": UNKNOWN, "w": {"id": UNKNOWN}}) == ["w", "z"]
    assert data.origin(a) == "dataset.raw" and data.origin("x") == ""
    assert data.input_changes({"x": a}, {"x": {**a, "id": "c" * 64}}) == [
        "input x changed (from dataset.raw)"
    ]
    assert data.input_changes({"x": a}, {"x": a, "y": b}) == ["input y added"]
    assert data.input_changes({"x": a, "y": b}, {"x": a}) == ["input y removed"]
    assert data.input_changes({"x": a}, {"x": UNKNOWN}) == []  # decided once known


def test_stage_inputs_refuses_a_dataset_changed_since_the_plan(tmp_path: Path) -> None:
    root = folder(tmp_path, {"a.csv": "1\n"})
    cache = tmp_path / ".trainform" / "cache"
    planned = data.dataset_content({"source": "data"}, tmp_path, cache)
    value = {
        "source": "data",
        "address": "dataset.raw",
        **data.content_summary(planned.manifest),
    }
    store = tmp_path / "store"
    [staged] = data.stage_inputs({"raw": value}, tmp_path, tmp_path / ".trainform", store)
    assert staged["name"] == "raw" and staged["file"] is None
    assert staged["manifest"] == planned.manifest.to_dict()
    (root / "a.csv").write_text("2\n")
    with pytest.raises(ProviderError, match=r"input raw: dataset\.raw \(data\) changed since"):
        data.stage_inputs({"raw": value}, tmp_path, tmp_path / ".trainform", store)
    with pytest.raises(ProviderError, match="input raw: its content is not known"):
        data.stage_inputs({"raw": {"id": UNKNOWN}}, tmp_path, tmp_path / ".trainform", store)


# -- the launcher: inputs placed read-only, changes told ------------------------------------------


def staged_input(tmp_path: Path, files: dict[str, str], name: str = "raw") -> tuple[dict, Path]:
    """A spec input for ``files`` and the blob folder holding their blobs."""
    root = tmp_path / f"src-{name}"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    content = data.dataset_content({"source": root.name}, tmp_path, tmp_path / "cache")
    store = tmp_path / "store"
    data.keep(content, store)
    spec = {"name": name, "manifest": content.manifest.to_dict(), "file": content.file}
    return spec, store / "snapshots" / "blobs"


def test_place_inputs_materialises_read_only_inputs(tmp_path: Path, no_mounts: None) -> None:
    spec, blobs = staged_input(tmp_path, {"f1.csv": "row 1\n", "sub/f2.csv": "row 2\n"})
    run_dir = tmp_path / "run"
    [placed] = place_inputs([spec], blobs, run_dir)
    assert placed.name == "raw" and placed.path == run_dir / "inputs" / "raw"
    assert (placed.path / "f1.csv").read_text() == "row 1\n"
    assert (placed.path / "sub" / "f2.csv").read_text() == "row 2\n"
    assert stat.S_IMODE(os.stat(placed.path).st_mode) == 0o555
    assert stat.S_IMODE(os.stat(placed.path / "sub").st_mode) == 0o555
    assert stat.S_IMODE(os.stat(placed.path / "f1.csv").st_mode) == 0o444
    assert changed_inputs([placed], blobs) == []


def test_place_inputs_gives_a_one_file_input_its_file(tmp_path: Path, no_mounts: None) -> None:
    (tmp_path / "one.csv").write_text("rows\n")
    content = data.dataset_content({"source": "one.csv"}, tmp_path, tmp_path / "cache")
    data.keep(content, tmp_path / "store")
    spec = {"name": "table", "manifest": content.manifest.to_dict(), "file": "one.csv"}
    [placed] = place_inputs([spec], tmp_path / "store" / "snapshots" / "blobs", tmp_path / "r")
    assert placed.path == tmp_path / "r" / "inputs" / "table" / "one.csv"
    assert placed.path.read_text() == "rows\n"


@pytest.fixture
def no_mounts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The launcher as it runs where it may not mount (no CAP_SYS_ADMIN, most containers):
    a root run gets copies, and changes are told afterwards. (Also keeps this test process
    out of a mount namespace of its own.)"""
    monkeypatch.setattr(launcher, "_private_mounts", lambda: False)


@pytest.mark.skipif(os.geteuid() != 0, reason="as root file modes do not stop the write")
def test_changed_inputs_tells_what_a_root_run_wrote_and_the_blobs_stay_intact(
    tmp_path: Path, no_mounts: None
) -> None:
    spec, blobs = staged_input(tmp_path, {"f1.csv": "row 1\n", "f2.csv": "row 2\n"})
    blob_bytes = {p: p.read_bytes() for p in blobs.rglob("*") if p.is_file()}
    [placed] = place_inputs([spec], blobs, tmp_path / "run")
    with open(placed.path / "f1.csv", "a") as f:  # root: modes do not stop it
        f.write("tampered\n")
    (placed.path / "f2.csv").unlink()
    (placed.path / "new.csv").write_text("x")
    assert changed_inputs([placed], blobs) == ["raw/f1.csv", "raw/f2.csv", "raw/new.csv"]
    assert {p: p.read_bytes() for p in blobs.rglob("*") if p.is_file()} == blob_bytes
    assert (tmp_path / "src-raw" / "f1.csv").read_text() == "row 1\n"


def test_place_inputs_again_replaces_a_changed_input(tmp_path: Path, no_mounts: None) -> None:
    """A requeued attempt gets its inputs placed afresh from the blobs."""
    spec, blobs = staged_input(tmp_path, {"f1.csv": "row 1\n"})
    run_dir = tmp_path / "run"
    [placed] = place_inputs([spec], blobs, run_dir)
    os.chmod(placed.path, 0o755)
    (placed.path / "junk").write_text("x")
    [again] = place_inputs([spec], blobs, run_dir)
    assert sorted(os.listdir(again.path)) == ["f1.csv"]
    assert changed_inputs([again], blobs) == []


def test_place_inputs_refuses_bad_specs(tmp_path: Path) -> None:
    assert place_inputs(None, tmp_path, tmp_path / "run") == []
    with pytest.raises(LauncherError, match="'inputs' must be a list"):
        place_inputs({"raw": {}}, tmp_path, tmp_path / "run")
    with pytest.raises(LauncherError, match="has no name"):
        place_inputs([{"manifest": {}}], tmp_path, tmp_path / "run")
    with pytest.raises(LauncherError, match="input name 'bad-name' is not an identifier"):
        place_inputs([{"name": "bad-name", "manifest": {"entries": []}}], tmp_path, tmp_path)
    with pytest.raises(LauncherError):
        place_inputs(
            [{"name": "raw", "manifest": {"entries": []}, "file": "../x"}], tmp_path, tmp_path
        )


PLACE_AND_WRITE = """\
import json, os, sys
from pathlib import Path
from trainform.runs.launcher import changed_inputs, place_inputs
spec, blobs, run_dir = json.loads(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
[placed] = place_inputs([spec], blobs, run_dir)
try:
    with open(placed.path / "f1.csv", "a") as f:
        f.write("tampered")
    refused = None
except OSError as exc:
    refused = exc.errno
print(json.dumps({"refused": refused, "changed": changed_inputs([placed], blobs)}))
"""


def test_a_run_cannot_change_its_placed_input_unnoticed(tmp_path: Path) -> None:
    """The launcher as it is (in a process of its own, since as root it may take a mount
    namespace): a write into an input is refused (file modes, or a read-only mount for
    root) or, where neither holds, told by changed_inputs; the blobs stay intact."""
    spec, blobs = staged_input(tmp_path, {"f1.csv": "row 1\n"})
    blob_bytes = {p: p.read_bytes() for p in blobs.rglob("*") if p.is_file()}
    proc = subprocess.run(
        [sys.executable, "-c", PLACE_AND_WRITE, json.dumps(spec), str(blobs), str(tmp_path / "r")],
        capture_output=True,
        text=True,
        check=True,
    )
    got = json.loads(proc.stdout)
    if got["refused"] is None:
        assert got["changed"] == ["raw/f1.csv"], got
    else:
        assert got["refused"] in (13, 30) and got["changed"] == [], got
    assert {p: p.read_bytes() for p in blobs.rglob("*") if p.is_file()} == blob_bytes
