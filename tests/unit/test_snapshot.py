"""Snapshots of real folders written to ``tmp_path``: ignore rules, the hash cache (real cache
files), links, the size warning, git facts from a real repository, manifest diffs and the blob
store."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import marshal
import os
import pickle
import subprocess
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from trainform.errors import TrainformError
from trainform.runs import snapshot as snapshot_module
from trainform.runs.snapshot import (
    Changes,
    Entry,
    Manifest,
    SnapshotError,
    SnapshotResult,
    blob_path,
    describe_changes,
    load_manifest,
    save_manifest,
    snapshot,
    store_blobs,
)

OLD = time.time_ns() - 3600 * 10**9  # an hour ago: past the "modified just now" window


def write(root: Path, rel: str, data: str | bytes = "x", *, mtime_ns: int | None = OLD) -> Path:
    """Write a file (creating folders). Its mtime is an hour ago unless told otherwise, as
    for files a user edited earlier; ``mtime_ns=None`` leaves it at now."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def snap(root: Path, **kwargs: int) -> SnapshotResult:
    return snapshot(root, root.parent / "cache" / "hashes.db", **kwargs)


def paths(result: SnapshotResult) -> list[str]:
    return [e.path for e in result.manifest.entries]


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    root.mkdir()
    return root


# --- what is kept ----------------------------------------------------------------------------


def test_entries_are_sorted_relative_posix_paths_with_hash_size_and_mode(src: Path) -> None:
    write(src, "train.py", "print('hi')\n")
    tool = write(src, "bin/run.sh", "#!/bin/sh\n")
    tool.chmod(0o700)
    write(src, "a-b.txt", "")
    result = snap(src)
    assert paths(result) == ["a-b.txt", "bin/run.sh", "train.py"]
    train = result.manifest.entries[2]
    assert train == Entry(
        path="train.py",
        kind="file",
        sha256=hashlib.sha256(b"print('hi')\n").hexdigest(),
        size=12,
        mode=0o644,
    )
    assert result.manifest.entries[1].mode == 0o755
    assert result.manifest.file_count == 3
    assert result.manifest.total_size == 12 + 10
    assert result.ignore_file is None
    assert result.warnings == []


def test_ignore_file_precedence_first_found_wins_and_files_are_not_merged(src: Path) -> None:
    for name in ("a.txt", "b.txt", "c.txt"):
        write(src, name)
    write(src, ".gitignore", "c.txt\n")
    assert snap(src).ignore_file == ".gitignore"
    assert "c.txt" not in paths(snap(src))

    write(src, ".amlignore", "b.txt\n")
    result = snap(src)
    assert result.ignore_file == ".amlignore"
    assert "b.txt" not in paths(result)
    assert "c.txt" in paths(result)  # .gitignore is not read any more

    write(src, ".trainignore", "a.txt\n")
    result = snap(src)
    assert result.ignore_file == ".trainignore"
    assert {"b.txt", "c.txt"} <= set(paths(result))
    assert "a.txt" not in paths(result)


def test_git_trainform_and_pycache_are_always_left_out_at_any_depth(src: Path) -> None:
    write(src, "keep.py")
    for folder in (".git", ".trainform", "__pycache__", "pkg/__pycache__", "sub/.git"):
        write(src, f"{folder}/inside.pyc")
    write(src, "pkg/mod.py")
    assert paths(snap(src)) == ["keep.py", "pkg/mod.py"]


def test_negation_patterns_re_include_files(src: Path) -> None:
    write(src, ".trainignore", "*.log\n!keep.log\n")
    write(src, "a.log")
    write(src, "deep/b.log")
    write(src, "keep.log")
    write(src, "deep/keep.log")
    assert paths(snap(src)) == [".trainignore", "deep/keep.log", "keep.log"]


def test_directory_patterns_prune_the_folder_without_descending(src: Path) -> None:
    write(src, ".trainignore", "data/\n/build\n!data/wanted.csv\n")
    write(src, "data/big.bin")
    write(src, "data/wanted.csv")  # as in git: a file under an ignored folder stays out
    write(src, "nested/data/x.bin")  # "data/" matches at any depth
    write(src, "build/out.o")
    write(src, "nested/build/kept.o")  # "/build" is anchored at the root
    write(src, "data.txt")  # "data/" only matches folders
    # Inside the pruned folder: a link out of the tree and a FIFO, which would be an error and
    # a warning if the walk went in.
    (src / "data" / "escape").symlink_to("/etc/passwd")
    os.mkfifo(src / "data" / "pipe")
    result = snap(src)
    assert paths(result) == [".trainignore", "data.txt", "nested/build/kept.o"]
    assert result.warnings == []


def test_an_edit_to_an_ignored_file_does_not_change_the_id(src: Path) -> None:
    write(src, ".trainignore", "*.tmp\n")
    write(src, "train.py")
    write(src, "scratch.tmp", "one")
    before = snap(src).manifest.id
    write(src, "scratch.tmp", "two, longer")
    assert snap(src).manifest.id == before


def test_a_link_inside_the_tree_is_kept_as_a_link(src: Path) -> None:
    write(src, "configs/base.yaml", "lr: 0.1\n")
    (src / "config.yaml").symlink_to("configs/base.yaml")
    (src / "configs" / "current").symlink_to(".")
    (src / "dangling").symlink_to("not-there-yet")
    result = snap(src)
    links = {e.path: e for e in result.manifest.entries if e.kind == "link"}
    assert links["config.yaml"] == Entry(
        path="config.yaml", kind="link", target="configs/base.yaml"
    )
    assert links["configs/current"].target == "."
    assert links["dangling"].target == "not-there-yet"
    assert result.manifest.file_count == 1  # links are not files, and are not followed


@pytest.mark.parametrize("target", ["../../outside.txt", "/etc/passwd", "../sub/../../outside.txt"])
def test_a_link_leaving_the_tree_is_an_error_naming_it(src: Path, target: str) -> None:
    write(src.parent, "outside.txt")
    write(src, "sub/ok.py")
    (src / "sub" / "leak").symlink_to(target)
    with pytest.raises(SnapshotError, match=r"sub/leak is a link to .*outside the source"):
        snap(src)


def test_a_link_that_resolves_outside_through_another_link_is_an_error(src: Path) -> None:
    write(src.parent, "outside/secret.txt")
    (src / "up").symlink_to("..")  # itself leaves the tree
    with pytest.raises(SnapshotError, match="up is a link"):
        snap(src)
    assert isinstance(SnapshotError("x"), TrainformError)


def test_special_files_are_skipped_with_a_warning(src: Path) -> None:
    write(src, "train.py")
    os.mkfifo(src / "pipe")
    result = snap(src)
    assert paths(result) == ["train.py"]
    assert result.warnings == ["skipped pipe: a FIFO, not a file or link"]


def test_a_missing_source_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="does not exist"):
        snapshot(tmp_path / "nope", tmp_path / "cache.db")


# --- the hash cache --------------------------------------------------------------------------


def test_an_unchanged_tree_is_answered_from_the_cache(src: Path) -> None:
    for i in range(20):
        write(src, f"pkg/m{i}.py", f"v = {i}\n")
    first = snap(src)
    assert (first.hashed, first.cached) == (20, 0)
    second = snap(src)
    assert (second.hashed, second.cached) == (0, 20)
    assert second.manifest == first.manifest
    assert second.manifest.id == first.manifest.id


def test_touching_a_file_rehashes_only_it_and_editing_changes_the_id(src: Path) -> None:
    for i in range(5):
        write(src, f"m{i}.py", f"v = {i}\n")
    first = snap(src)
    os.utime(src / "m3.py", ns=(OLD + 10**9, OLD + 10**9))
    touched = snap(src)
    assert (touched.hashed, touched.cached) == (1, 4)
    assert touched.manifest.id == first.manifest.id  # same content, same snapshot

    write(src, "m3.py", "v = 33\n", mtime_ns=OLD + 2 * 10**9)
    edited = snap(src)
    assert edited.hashed == 1
    assert edited.manifest.id != first.manifest.id
    assert first.manifest.diff(edited.manifest) == Changes(modified=["m3.py"])


def test_a_file_edited_just_now_is_not_trusted_to_its_timestamp(src: Path) -> None:
    """A second same-size edit within the file system's timestamp granularity leaves (size,
    mtime_ns, inode) unchanged; such fresh files are hashed every time, so it is not missed."""
    path = write(src, "train.py", "lr = 0.1\n", mtime_ns=None)
    mtime = path.stat().st_mtime_ns
    first = snap(src)
    with open(path, "r+b") as f:  # same inode, same size
        f.write(b"lr = 0.2\n")
    os.utime(path, ns=(mtime, mtime))
    second = snap(src)
    assert second.hashed == 1
    assert second.manifest.id != first.manifest.id


def test_a_file_replaced_by_rename_is_rehashed_even_with_same_size_and_mtime(src: Path) -> None:
    """Editors save by writing a new file and renaming it over the old one; only the inode
    tells the cache it is another file."""
    write(src, "train.py", "lr = 0.1\n")
    first = snap(src)
    write(src, "train.py.new", "lr = 0.2\n")  # same size, same (old) mtime
    os.replace(src / "train.py.new", src / "train.py")
    second = snap(src)
    assert second.hashed == 1
    assert first.manifest.diff(second.manifest).modified == ["train.py"]


def cache_files(src: Path) -> list[Path]:
    return sorted((src.parent / "cache").glob("hashes.db.*.cache"))


def cached_hashes(src: Path) -> dict[str, tuple[int, int, int, str]]:
    """What the cache file of ``src`` trusts: relative path -> (size, mtime_ns, inode, sha256)."""
    cache = snapshot_module._HashCache(src.parent / "cache" / "hashes.db", str(src.resolve()))
    state = cache.load()
    assert state is not None
    assert not isinstance(state.rows, list)  # kept in its stored form until needed
    return {
        path: (row[3], *stamp, row[2])
        for path, (row, stamp) in state.known().items()
        if stamp is not None
    }


def test_rows_of_deleted_files_are_dropped_from_the_cache(src: Path) -> None:
    write(src, "a.py")
    write(src, "b.py")
    snap(src)
    assert sorted(cached_hashes(src)) == ["a.py", "b.py"]
    (src / "b.py").unlink()
    snap(src)
    assert list(cached_hashes(src)) == ["a.py"]
    assert cached_hashes(src)["a.py"][3] == hashlib.sha256(b"x").hexdigest()


def test_the_cache_is_one_file_per_source_folder_rewritten_only_on_change(src: Path) -> None:
    write(src, "a.py")
    snap(src)
    [cache] = cache_files(src)
    before = cache.stat()
    again = snap(src)
    assert (again.hashed, again.cached) == (0, 1)
    assert cache.stat().st_mtime_ns == before.st_mtime_ns  # unchanged tree: not written
    assert cache.stat().st_ino == before.st_ino
    write(src, "b.py")
    assert snap(src).hashed == 1
    assert cache_files(src) == [cache]
    assert cache.stat().st_ino != before.st_ino  # replaced whole (written aside, renamed)
    assert not list(cache.parent.glob(".tmp-*"))


def test_one_cache_serves_several_source_folders(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "one-two"  # "one-two" shares a prefix with "one"
    write(one, "a.py")
    write(two, "b.py")
    cache = tmp_path / "hashes.db"
    snapshot(one, cache)
    snapshot(two, cache)
    assert snapshot(one, cache).cached == 1
    assert snapshot(two, cache).cached == 1
    assert len(list(tmp_path.glob("hashes.db.*.cache"))) == 2


def flip_last_byte(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: b"this is not a cache" * 100,
        lambda data: b"",
        lambda data: data[: len(data) // 2],  # truncated
        flip_last_byte,  # the checksum notices
        lambda data: data.replace(b"trainform-snapshot-cache", b"trainform-snapshot-cachf"),
    ],
)
def test_a_corrupt_cache_is_ignored_and_rebuilt(src: Path, damage: Any) -> None:
    write(src, "a.py", "one")
    write(src, "b.py", "two")
    expected = snap(src).manifest
    [cache] = cache_files(src)
    cache.write_bytes(damage(cache.read_bytes()))
    first = snap(src)
    assert (first.hashed, first.warnings) == (2, [])
    assert first.manifest == expected
    assert first.manifest.id == expected.id
    assert snap(src).cached == 2


def test_a_cache_of_the_wrong_shape_is_ignored(src: Path) -> None:
    """A well-formed file whose content is not what this version writes (another folder's,
    another layout) counts as no cache."""
    write(src, "a.py")
    snap(src)
    [cache] = cache_files(src)
    root = str(src.resolve())
    state = snapshot_module._CacheState.from_file(root, cache.read_bytes())
    assert state is not None
    assert state.known().keys() == {"a.py"}
    assert isinstance(state.rows, memoryview) and isinstance(state.stamps, memoryview)
    rows, stamps = bytes(state.rows), bytes(state.stamps)
    one_row = marshal.dumps([("a.py", "file", "0" * 64, 1, 0o644, "")])
    parts: list[tuple[Any, bytes, bytes]] = [
        (state.head("/elsewhere", len(rows), len(stamps)), rows, stamps),
        (state.head(root, len(rows) + 1, len(stamps)), rows, stamps),  # sizes do not add up
        (["a", "list"], rows, stamps),
        (42, rows, stamps),
        ((*state.head(root, 0, 0)[:7], "many", len(stamps)), rows, stamps),
    ]
    # Rows and stamps are only decoded when the walk differs (or the entries are asked for).
    partial = dataclasses.replace(state, complete=False)
    for bad_stamps in (marshal.dumps(None), marshal.dumps([]), b"garbage"):
        head = partial.head(root, len(one_row), len(bad_stamps))
        parts.append((head, one_row, bad_stamps))
    for head, rows_part, stamps_part in parts:
        head_bytes = marshal.dumps(head)
        body = len(head_bytes).to_bytes(4, "big") + head_bytes + rows_part + stamps_part
        cache.write_bytes(snapshot_module._MAGIC + zlib.crc32(body).to_bytes(4, "big") + body)
        assert snap(src).hashed == 1


def test_an_unreadable_cache_is_bypassed_with_a_warning(src: Path) -> None:
    write(src, "a.py")
    snap(src)
    [cache] = cache_files(src)
    cache.unlink()
    cache.mkdir()  # cannot be read or replaced
    result = snap(src)
    assert result.hashed == 1
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith(f"hash cache {cache} not used: ")
    assert result.manifest.file_count == 1


def test_a_cache_folder_that_is_a_file_is_a_warning(src: Path) -> None:
    write(src, "a.py")
    (src.parent / "cache").write_text("a file where the folder should be")
    result = snap(src)
    assert result.hashed == 1
    [warning] = result.warnings
    assert warning.startswith(f"hash cache {src.parent / 'cache'}/hashes.db.")
    assert warning.endswith(" not used: Not a directory")


def test_a_cache_that_cannot_be_written_is_a_warning(
    src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(src, "a.py")

    def refuse(**_: Any) -> tuple[int, str]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(snapshot_module.tempfile, "mkstemp", refuse)
    result = snap(src)
    assert result.hashed == 1
    [warning] = result.warnings
    assert warning.endswith(" not updated: Permission denied")


def test_concurrent_snapshots_share_the_cache_safely(src: Path) -> None:
    for i in range(30):
        write(src, f"m{i}.py", f"v = {i}\n")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: snap(src), range(8)))
    assert len({r.manifest.id for r in results}) == 1
    assert snap(src).cached == 30
    assert not list((src.parent / "cache").glob(".tmp-*"))


# --- reusing the previous manifest -----------------------------------------------------------


def test_an_unchanged_tree_reuses_the_previous_manifest_whole(src: Path) -> None:
    write(src, "b.py", "b")
    write(src, "pkg/a.py", "a")
    (src / "link").symlink_to("b.py")
    first = snap(src)
    second = snap(src)
    assert (second.hashed, second.cached) == (0, 2)
    assert "entries" not in second.manifest.__dict__  # not built until asked for
    assert second.manifest.id == first.manifest.id
    assert (second.manifest.file_count, second.manifest.total_size) == (2, 2)
    assert second.manifest.entries == first.manifest.entries
    assert second.manifest == first.manifest
    assert hash(second.manifest) == hash(first.manifest)
    assert Manifest(second.manifest.entries).id == first.manifest.id
    assert pickle.loads(pickle.dumps(snap(src).manifest)) == first.manifest


def test_a_mode_change_alone_is_seen(src: Path) -> None:
    tool = write(src, "run.sh", "#!/bin/sh\n")
    first = snap(src)
    snap(src)
    tool.chmod(0o755)  # changes neither size, mtime nor inode
    os.utime(tool, ns=(OLD, OLD))
    second = snap(src)
    assert second.hashed == 0  # content still from the cache
    assert second.manifest.entries[0].mode == 0o755
    assert first.manifest.diff(second.manifest).modified == ["run.sh"]


def test_a_retargeted_link_is_seen(src: Path) -> None:
    write(src, "a.py")
    write(src, "b.py")
    (src / "link").symlink_to("a.py")
    first = snap(src)
    snap(src)
    (src / "link").unlink()
    (src / "link").symlink_to("b.py")
    second = snap(src)
    assert first.manifest.diff(second.manifest).modified == ["link"]


def test_a_new_ignore_rule_is_seen_even_when_no_file_changed(src: Path) -> None:
    write(src, ".trainignore", ".trainignore\n")  # it ignores itself: no kept file changes
    write(src, "a.log")
    write(src, "b.py")
    assert paths(snap(src)) == ["a.log", "b.py"]
    write(src, ".trainignore", "/.trainignore\n*.log\n")
    assert paths(snap(src)) == ["b.py"]


def test_the_size_warning_is_the_same_when_the_manifest_is_reused(src: Path) -> None:
    write(src, "data/big.bin", b"\0" * 700_000)
    write(src, "train.py")
    first = snap(src, max_bytes=500_000)
    second = snap(src, max_bytes=500_000)
    assert second.hashed == 0
    assert second.warnings == first.warnings
    assert len(second.warnings) == 1
    assert snap(src).warnings == []

    # A cache file without the warning's lists (none is written so, but it is a valid file).
    [cache] = cache_files(src)
    state = snapshot_module._CacheState.from_file(str(src.resolve()), cache.read_bytes())
    assert state is not None
    cache.write_bytes(dataclasses.replace(state, largest=None).to_file(str(src.resolve())))
    third = snap(src, max_bytes=500_000)
    assert third.hashed == 0
    assert third.warnings == first.warnings


# --- the size warning ------------------------------------------------------------------------


def test_past_the_thresholds_a_warning_names_the_largest_files_and_folders(src: Path) -> None:
    write(src, "data/big.bin", b"\0" * 700_000)
    write(src, "data/small.bin", b"\0" * 1000)
    write(src, "models/ckpt.pt", b"\0" * 300_000)
    write(src, "train.py")
    result = snap(src, max_bytes=500_000)
    assert result.manifest.file_count == 4
    [warning] = result.warnings
    assert warning.startswith(
        "source folder " + str(src) + " holds 4 files, 977.5 KB (thresholds: 2,000 files, "
    )
    assert "; largest: data/big.bin 683.6 KB, models/ckpt.pt 293.0 KB, " in warning
    assert "; largest folders: data/ 684.6 KB, models/ 293.0 KB;" in warning
    assert warning.endswith("add a .trainignore to leave them out")
    assert snap(src, max_files=3).warnings[0].count("holds 4 files") == 1
    assert snap(src).warnings == []


# --- git -------------------------------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def git_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "test@example.invalid")


def test_git_facts_of_a_repository_clean_then_dirty(tmp_path: Path, git_env: None) -> None:
    repo = tmp_path / "repo"
    write(repo, "src/train.py", "print(1)\n")
    write(repo, "README.md")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    commit = git(repo, "rev-parse", "HEAD")

    facts = snapshot(repo / "src", tmp_path / "cache.db").git
    assert facts == {
        "repository": str(repo.resolve()),
        "branch": "main",
        "commit": commit,
        "dirty": False,
    }
    write(repo, "src/untracked.py")  # untracked files do not make it dirty
    assert snapshot(repo / "src", tmp_path / "cache.db").git == facts

    write(repo, "src/train.py", "print(2)\n", mtime_ns=None)
    dirty = snapshot(repo / "src", tmp_path / "cache.db").git
    assert dirty is not None
    assert dirty["dirty"] is True

    git(repo, "remote", "add", "origin", "https://user:s3cret@example.com/team/repo.git")
    remote = snapshot(repo / "src", tmp_path / "cache.db").git
    assert remote is not None
    assert remote["repository"] == "https://example.com/team/repo.git"  # no credentials


def test_git_is_none_outside_a_repository(src: Path, git_env: None) -> None:
    write(src, "a.py")
    assert snap(src).git is None


def test_git_is_none_without_git(src: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(src, "a.py")
    monkeypatch.setenv("PATH", str(src / "no-such-folder"))
    result = snap(src)
    assert result.git is None
    assert result.manifest.file_count == 1


# --- manifests -------------------------------------------------------------------------------


def file_entry(path: str, content: str = "x", mode: int = 0o644) -> Entry:
    data = content.encode()
    return Entry(path, "file", hashlib.sha256(data).hexdigest(), len(data), mode)


def test_the_id_is_the_sha256_of_the_canonical_json_of_the_entries(src: Path) -> None:
    write(src, "b.py", "b")
    write(src, "a/é.py", "a")
    (src / "l").symlink_to("b.py")
    manifest = snap(src).manifest
    rows = [
        ["a/é.py", "file", hashlib.sha256(b"a").hexdigest(), 1, 0o644, ""],
        ["b.py", "file", hashlib.sha256(b"b").hexdigest(), 1, 0o644, ""],
        ["l", "link", "", 0, 0o644, "b.py"],
    ]
    canonical = json.dumps(rows, separators=(",", ":"), ensure_ascii=False).encode()
    assert manifest.id == hashlib.sha256(canonical).hexdigest()
    assert Manifest(tuple(reversed(manifest.entries))).id == manifest.id  # sorted on creation


def test_the_walk_writes_the_same_canonical_json_as_json_dumps() -> None:
    sha = hashlib.sha256(b"x").hexdigest()
    rows: list[tuple[str, str, str, int, int, str]] = [
        ('a "quoted" name', "file", sha, 1, 0o644, ""),
        ("back\\slash\ttab\nnewline\x01\x7f", "file", sha, 2**40, 0o755, ""),
        ("é/中文/emoji-\U0001f600", "file", sha, 0, 0o644, ""),
        ("l", "link", "", 0, 0o644, 'tar"get\\é'),
    ]
    assert snapshot_module._walk_manifest_id(rows) == snapshot_module._manifest_id(rows)
    assert snapshot_module._walk_manifest_id([]) == snapshot_module._manifest_id([])


def test_a_name_that_is_not_utf8_is_an_error(src: Path) -> None:
    write(src, "ok.py")
    (src / os.fsdecode(b"bad\xff.py")).write_bytes(b"x")  # Linux takes any bytes but / and NUL
    with pytest.raises(SnapshotError, match="is not valid UTF-8"):
        snap(src)


def test_the_largest_files_and_folders_are_those_of_a_plain_count() -> None:
    import heapq
    import random

    rng = random.Random(7)
    tops = ["a", "a-b", "a.b", "a0", "b", "é"]
    rows = {}
    for i in range(300):
        top = rng.choice([*tops, ""])
        path = f"{top}/{rng.choice(['x', 'y/z'])}{i}" if top else f"{rng.choice(tops)}{i}"
        rows[path] = (
            path,
            "file",
            "0" * 64,
            rng.choice([0, 5, 5, 10, rng.randrange(100)]),
            0o644,
            "",
        )
    rows["a/link"] = ("a/link", "link", "", 0, 0o644, "x")
    ordered = sorted(rows.values())
    files = [r for r in ordered if r[1] == "file"]
    folders: dict[str, int] = {}
    for r in files:
        top, sep, _ = r[0].partition("/")
        if sep:
            folders[top] = folders.get(top, 0) + r[3]
    expected = (
        [(r[0], r[3]) for r in heapq.nlargest(5, files, key=lambda r: r[3])],
        heapq.nlargest(5, folders.items(), key=lambda item: item[1]),
    )
    assert snapshot_module._largest(ordered) == expected


def test_dict_form_round_trips_and_is_what_the_launcher_reads(src: Path) -> None:
    write(src, "a.py", "a")
    (src / "l").symlink_to("a.py")
    manifest = snap(src).manifest
    data = manifest.to_dict()
    assert data == {
        "entries": [
            {
                "path": "a.py",
                "kind": "file",
                "sha256": hashlib.sha256(b"a").hexdigest(),
                "size": 1,
                "mode": 0o644,
                "target": "",
            },
            {"path": "l", "kind": "link", "sha256": "", "size": 0, "mode": 0o644, "target": "a.py"},
        ]
    }
    again = Manifest.from_dict(json.loads(json.dumps(data)))
    assert again == manifest
    assert again.id == manifest.id


@pytest.mark.parametrize(
    "entry",
    [
        {"path": "../x", "kind": "file", "sha256": "0" * 64},
        {"path": "/etc/x", "kind": "file", "sha256": "0" * 64},
        {"path": "x", "kind": "dir"},
        {"path": "x", "kind": "file", "sha256": "nope"},
        {"path": "x", "kind": "file", "sha256": "0" * 64, "size": "1"},
        {"path": "a/l", "kind": "link", "target": "../../etc"},
        {"path": "l", "kind": "link", "target": ""},
    ],
)
def test_from_dict_rejects_malformed_entries(entry: dict[str, object]) -> None:
    with pytest.raises(SnapshotError):
        Manifest.from_dict({"entries": [entry]})


def test_diff_and_describe_changes() -> None:
    old = Manifest((file_entry("src/train.py", "1"), file_entry("gone.txt"), file_entry("run.sh")))
    new = Manifest(
        (
            file_entry("src/train.py", "2"),
            file_entry("data/new.csv"),
            file_entry("run.sh", mode=0o755),
        )
    )
    changes = old.diff(new)
    assert changes == Changes(
        added=["data/new.csv"], removed=["gone.txt"], modified=["run.sh", "src/train.py"]
    )
    assert describe_changes(changes) == (
        "run.sh changed; src/train.py changed; data/new.csv added; gone.txt removed"
    )
    assert describe_changes(changes, limit=2) == "run.sh changed; src/train.py changed; 2 more"
    assert not old.diff(old)
    assert describe_changes(old.diff(old)) == "no changes"

    as_link = Manifest((Entry("run.sh", "link", target="src/train.py"),))
    assert Manifest((file_entry("run.sh"),)).diff(as_link).modified == ["run.sh"]


def test_save_and_load_manifest(src: Path, tmp_path: Path) -> None:
    write(src, "a.py")
    manifest = snap(src).manifest
    path = save_manifest(manifest, tmp_path / "manifests")
    assert path == tmp_path / "manifests" / f"{manifest.id}.json"
    assert load_manifest(path) == manifest
    inode = path.stat().st_ino
    assert save_manifest(manifest, tmp_path / "manifests") == path  # idempotent
    assert path.stat().st_ino == inode  # and not written again (a large dataset's, each plan)

    tampered = json.loads(path.read_text())
    tampered["entries"][0]["size"] = 2
    path.write_text(json.dumps(tampered))
    with pytest.raises(SnapshotError, match="does not match its id"):
        load_manifest(path)
    with pytest.raises(SnapshotError, match="cannot read manifest"):
        load_manifest(tmp_path / "missing.json")


# --- blobs -----------------------------------------------------------------------------------


def test_store_blobs_copies_only_missing_blobs(src: Path, tmp_path: Path) -> None:
    write(src, "a.py", "same")
    write(src, "copy.py", "same")  # one blob for both
    write(src, "b.py", "other")
    (src / "l").symlink_to("a.py")
    manifest = snap(src).manifest
    blobs = tmp_path / "blobs"
    assert store_blobs(manifest, src, blobs) == 2
    sha = hashlib.sha256(b"same").hexdigest()
    assert blob_path(blobs, sha) == blobs / sha[:2] / sha[2:]
    assert (blobs / sha[:2] / sha[2:]).read_bytes() == b"same"
    assert store_blobs(manifest, src, blobs) == 0
    assert sorted(p.name for p in blobs.rglob("*") if p.is_file()) == sorted(
        [sha[2:], hashlib.sha256(b"other").hexdigest()[2:]]
    )

    (blobs / sha[:2] / sha[2:]).chmod(0o644)
    (blobs / sha[:2] / sha[2:]).write_bytes(b"")  # a blob truncated by a crash is rewritten
    assert store_blobs(manifest, src, blobs) == 1


def test_concurrent_store_blobs_into_one_folder_are_safe(src: Path, tmp_path: Path) -> None:
    for i in range(50):
        write(src, f"f{i}.bin", os.urandom(3000) * (i + 1))
    manifest = snap(src).manifest
    blobs = tmp_path / "blobs"
    with ThreadPoolExecutor(4) as pool:
        copied = list(pool.map(lambda _: store_blobs(manifest, src, blobs), range(4)))
    assert 50 <= sum(copied) <= 200
    for entry in manifest.entries:
        data = blob_path(blobs, entry.sha256).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry.sha256
    assert not [p for p in blobs.rglob(".tmp-*")]


def test_store_blobs_notices_a_file_changed_since_the_snapshot(src: Path, tmp_path: Path) -> None:
    write(src, "train.py", "lr = 0.1\n")
    manifest = snap(src).manifest
    write(src, "train.py", "lr = 0.2\n")
    with pytest.raises(SnapshotError, match=r"train\.py changed while it was being snapshotted"):
        store_blobs(manifest, src, tmp_path / "blobs")
    assert [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == []  # nothing partial
