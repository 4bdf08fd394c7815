"""ssh:// datasets (trainform/runs/host_datasets.py): the host's answer is parsed as hostile
(bad JSON, unsafe paths, forged fields, output past the limit), and the hash script itself,
run here by this machine's Python as a host runs it, walks a folder without following links
out of it and keeps its cache."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from trainform.errors import ProviderError
from trainform.runs import host_datasets as hd

SOURCE = "ssh://host/data"
SHA = "a" * 64


def answer(*entries: dict[str, Any], is_file: bool = False) -> bytes:
    return json.dumps({"is_file": is_file, "entries": list(entries)}).encode()


def entry(path: str = "f.csv", **fields: Any) -> dict[str, Any]:
    return {"path": path, "kind": "file", "sha256": SHA, "size": 3, "mode": 0o644, **fields}


def test_a_well_formed_answer_is_a_manifest() -> None:
    manifest, is_file = hd.parse_hashes(answer(entry("b/x"), entry("a")), SOURCE)
    assert [e.path for e in manifest.entries] == ["a", "b/x"]
    assert (manifest.file_count, manifest.total_size, is_file) == (2, 6, False)


@pytest.mark.parametrize(
    ("out", "why"),
    [
        (b"not json {", "is not JSON"),
        (b"\xff\xfe", "is not JSON"),
        (b"[]", "has no entries list"),
        (json.dumps({"entries": {}}).encode(), "has no entries list"),
        (answer(entry("../etc/passwd")), "not a valid manifest"),
        (answer(entry("a/../../x")), "not a valid manifest"),
        (answer(entry("/etc/passwd")), "not a valid manifest"),
        (answer(entry(kind="link", target="x")), "not a file"),
        (answer(entry(sha256="A" * 64)), "not 64 hexadecimal digits"),
        (answer(entry(sha256=None)), "not 64 hexadecimal digits"),
        (answer(entry(size=-1)), "not a whole number"),
        (answer(entry(size=True)), "not a whole number"),
        (answer(entry(size="3")), "not a whole number"),
        (answer(entry(mode=0o4755)), "a mode other than"),
        (answer(entry(), entry()), "repeats or lacks a path"),
        (answer(entry(path=7)), "repeats or lacks a path"),
        (answer(entry(), entry("g"), is_file=True), "one file"),
        (json.dumps({"entries": []}).encode(), "one file"),
    ],
)
def test_a_hostile_answer_is_refused_naming_the_source(out: bytes, why: str) -> None:
    with pytest.raises(ProviderError) as caught:
        hd.parse_hashes(out, SOURCE)
    assert SOURCE in str(caught.value) and why in str(caught.value), caught.value


def test_an_answer_past_the_limit_is_refused_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hd, "MAX_OUTPUT", 1000)
    big = answer(*(entry(f"f{i}") for i in range(20)))
    assert len(big) > 1000
    with pytest.raises(ProviderError, match="larger than 1000 bytes"):
        hd.parse_hashes(big, SOURCE)


def run_script(path: Path, cache: Path) -> tuple[Any, bool]:
    proc = subprocess.run(
        [sys.executable, "-c", hd.HASH_SCRIPT, str(path), str(cache)],
        capture_output=True,
        check=True,
    )
    return hd.parse_hashes(proc.stdout, SOURCE)


def test_the_script_hashes_a_folder_without_following_links_and_keeps_a_cache(
    tmp_path: Path,
) -> None:
    data, outside = tmp_path / "data", tmp_path / "secret"
    (data / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "key").write_text("private")
    (data / "a.csv").write_text("1,2\n")
    (data / "sub" / "b.csv").write_text("3,4\n")
    (data / "sub" / "run.sh").write_text("#!/bin/sh\n")
    (data / "sub" / "run.sh").chmod(0o755)
    (data / "out").symlink_to(outside)
    (data / "key").symlink_to(outside / "key")
    cache = tmp_path / "cache" / "c.json"

    manifest, is_file = run_script(data, cache)
    found = {e.path: (e.sha256, e.mode) for e in manifest.entries}
    assert found == {
        "a.csv": (hashlib.sha256(b"1,2\n").hexdigest(), 0o644),
        "sub/b.csv": (hashlib.sha256(b"3,4\n").hexdigest(), 0o644),
        "sub/run.sh": (hashlib.sha256(b"#!/bin/sh\n").hexdigest(), 0o755),
    }
    assert not is_file

    # An unchanged file is taken from the cache (a forged digest there is believed), a
    # changed one is hashed again.
    kept = json.loads(cache.read_text())
    kept["a.csv"][3] = "0" * 64
    kept["sub/b.csv"][3] = "0" * 64
    cache.write_text(json.dumps(kept))
    (data / "sub" / "b.csv").write_text("5,6,7\n")
    manifest, _ = run_script(data, cache)
    found = {e.path: (e.sha256, e.mode) for e in manifest.entries}
    assert found["a.csv"][0] == "0" * 64
    assert found["sub/b.csv"][0] == hashlib.sha256(b"5,6,7\n").hexdigest()


def test_the_script_hashes_one_file_and_refuses_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "one.bin").write_bytes(b"xyz")
    manifest, is_file = run_script(tmp_path / "one.bin", tmp_path / "c.json")
    assert is_file and [e.path for e in manifest.entries] == ["one.bin"]
    proc = subprocess.run(
        [sys.executable, "-c", hd.HASH_SCRIPT, str(tmp_path / "none"), str(tmp_path / "c")],
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 3 and b"No such file" in proc.stderr


@pytest.mark.parametrize(
    ("source", "compute", "sha", "wanted"),
    [
        ("ssh://h/d", None, None, "needs compute = compute.NAME"),
        ("ssh://h/d", {"type": "local", "address": "compute.l"}, None, "must be an ssh compute"),
        ("ssh://h/d", {"type": "ssh", "hosts": ["g"]}, None, "'h' of 'ssh://h/d' is not a host"),
        ("ssh://h:2/d", {"type": "ssh", "addresses": ["h:3"]}, None, "is not a host"),
        ("ssh://h", {"type": "ssh", "addresses": ["h"]}, None, "ABSOLUTE/PATH"),
        ("ssh://u@h/d", {"type": "ssh", "addresses": ["h"]}, None, "without a user"),
        ("ssh://h/d", {"type": "ssh", "addresses": ["h"]}, SHA, "sha256 is for http(s)"),
    ],
)
def test_source_problems(source: str, compute: Any, sha: Any, wanted: str) -> None:
    assert any(wanted in p for p in hd.source_problems(source, compute, sha))


def test_a_source_on_one_of_the_compute_hosts_is_accepted() -> None:
    pool = {"type": "ssh", "addresses": ["a", "b:2200"], "port": 22}
    assert hd.source_problems("ssh://b:2200/srv/data", pool, None) == []
    assert hd.source_problems("ssh://a:22/srv/data", pool, None) == []
    # Not attached yet: the host is checked once its addresses are known.
    assert hd.source_problems("ssh://z/srv", {"type": "ssh", "address": "compute.x"}, None) == []
