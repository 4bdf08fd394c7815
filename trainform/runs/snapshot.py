"""A source folder as a content-addressed manifest: what a run's code is, by sha256 per file.

:func:`snapshot` walks a folder (honouring one ignore file), hashes its regular files with a
persistent hash cache and returns a :class:`Manifest` whose ``id`` changes exactly when a kept
file's path, content, kind, executable bit or link target changes. :func:`store_blobs` copies
the file contents into a content-addressed blob folder (``ab/cdef...``) and
:func:`save_manifest` / :func:`load_manifest` keep manifests beside them; the launcher
materialises a manifest from those two.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import itertools
import json
import marshal
import os
import posixpath
import re
import stat
import subprocess
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import cached_property
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal

from trainform.errors import TrainformError

IGNORE_FILES = (".trainignore", ".amlignore", ".gitignore")
"""Ignore files looked for at the source root, in order of precedence; only the first found is
read."""

ALWAYS_EXCLUDED = frozenset({".git", ".trainform", "__pycache__"})
"""Names left out of every snapshot, at any depth."""
# trainform's own configuration and variable files, at any depth: editing a run's tags must not
# make its source look changed when source_dir is the configuration's folder.
CONFIG_SUFFIXES = (
    ".train.hcl",
    ".train.yaml",
    ".train.yml",
    ".tfvars",
    ".tfvars.json",
    ".tfvars.yaml",
)

_CHUNK = 1 << 20
# Files up to this size are hashed on the calling thread: for them the cost is the Python
# overhead of open/read/close, which threads cannot overlap (it holds the GIL), while larger
# files go to worker threads where reading and hashing release it. Measured on the benchmark
# tree (bench/snapshot_bench.py): sending every file to the pool took ~40% longer; thresholds
# from 256 KiB to 1 MiB were alike.
_INLINE_MAX = 256 * 1024
# A file modified this recently may be modified again within the file system's timestamp
# granularity without its (size, mtime_ns, inode) changing ("racy git"), so its hash is used
# but not cached. Two seconds also covers file systems with coarse timestamps (FAT, SMB).
_RACY_NS = 2_000_000_000
_READ_TRIES = 3
_O_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)

EntryKind = Literal["file", "link"]
_Row = tuple[str, str, str, int, int, str]
"""An entry in its canonical shape: (path, kind, sha256, size, mode, target)."""


class SnapshotError(TrainformError):
    """A source folder cannot be snapshotted or stored; the message names the offending path."""


@dataclass(frozen=True)
class Entry:
    """One kept path: a regular file (content by sha256) or a symbolic link (by target)."""

    path: str
    """Relative to the source root, ``/``-separated."""
    kind: EntryKind
    sha256: str = ""
    size: int = 0
    mode: int = 0o644
    """0o755 when the file has any executable bit, else 0o644 (also for links)."""
    target: str = ""
    """For links: the target exactly as ``os.readlink`` gives it (relative, inside the tree)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "sha256": self.sha256,
            "size": self.size,
            "mode": self.mode,
            "target": self.target,
        }


@dataclass(frozen=True)
class Changes:
    """What changed between two manifests; each list is sorted by path."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.modified)


@dataclass(frozen=True)
class Manifest:
    """A snapshot's content: entries sorted by path, identified by :attr:`id`."""

    entries: tuple[Entry, ...]

    def __post_init__(self) -> None:
        paths = [e.path for e in self.entries]
        if any(a >= b for a, b in itertools.pairwise(paths)):
            ordered = tuple(sorted(self.entries, key=lambda e: e.path))
            for a, b in itertools.pairwise(ordered):
                if a.path == b.path:
                    raise SnapshotError(f"{a.path} appears twice in the manifest")
            object.__setattr__(self, "entries", ordered)

    @cached_property
    def id(self) -> str:
        """sha256 (hex) of the canonical JSON of the entries: a JSON array, in path order, of
        one ``[path, kind, sha256, size, mode, target]`` array per entry, with no whitespace
        and non-ASCII characters as UTF-8 (``json.dumps(rows, separators=(",", ":"),
        ensure_ascii=False)``).

        Raises SnapshotError when a path or link target is not valid UTF-8."""
        return _manifest_id([_row(e) for e in self.entries])

    @cached_property
    def file_count(self) -> int:
        """Number of regular files (links not counted)."""
        return sum(1 for e in self.entries if e.kind == "file")

    @cached_property
    def total_size(self) -> int:
        """Bytes of all regular files."""
        return sum(e.size for e in self.entries)

    @classmethod
    def _lazy(
        cls, rows: list[_Row] | _Blob, manifest_id: str, file_count: int, total_size: int
    ) -> Manifest:
        """A manifest whose entries are built from ``rows`` (sorted, unique paths; or their
        ``marshal`` form) on first use: a caller that only needs the id, as planning does, never
        pays for 10,000 Entry objects. The id and counts must be those of the rows."""
        manifest = object.__new__(cls)  # skips __post_init__: rows are sorted and unique
        fields = manifest.__dict__  # where cached_property stores its values
        fields["_rows"] = rows
        fields["id"], fields["file_count"], fields["total_size"] = (
            manifest_id,
            file_count,
            total_size,
        )
        return manifest

    def __reduce__(self) -> tuple[Any, ...]:
        # A lazy manifest's rows may be a view into its cache file's bytes: pickle (and copy)
        # the entries instead.
        return (type(self), (self.entries,))

    def to_dict(self) -> dict[str, Any]:
        """``{"entries": [{"path", "kind", "sha256", "size", "mode", "target"}, ...]}`` — the
        form the launcher reads."""
        return {"entries": [e.to_dict() for e in self.entries]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """The inverse of :meth:`to_dict`. Raises SnapshotError on a malformed document (wrong
        types, unknown kind, absolute or ``..`` paths, duplicates)."""
        raw = data.get("entries") if isinstance(data, Mapping) else None
        if not isinstance(raw, list):
            raise SnapshotError("manifest has no 'entries' list")
        entries = []
        for item in raw:
            entries.append(_entry_from_dict(item))
        return cls(tuple(entries))

    def diff(self, other: Manifest) -> Changes:
        """What ``other`` changed relative to ``self`` (``old.diff(new)``, like ``git diff old
        new``): paths only in ``other`` are added, paths only in ``self`` removed, and paths in
        both whose kind, content, mode or target differ are modified."""
        mine = {e.path: e for e in self.entries}
        theirs = {e.path: e for e in other.entries}
        added = sorted(theirs.keys() - mine.keys())
        removed = sorted(mine.keys() - theirs.keys())
        modified = sorted(p for p in mine.keys() & theirs.keys() if mine[p] != theirs[p])
        return Changes(added=added, removed=removed, modified=modified)


class _LazyEntries:
    """``Manifest.entries`` for manifests made by :meth:`Manifest._lazy`. A non-data descriptor
    (like ``cached_property``): a manifest that has its entries in its ``__dict__`` (every one
    built by ``__init__``) never reaches it; the others build them here, once."""

    def __get__(self, manifest: Manifest | None, owner: type | None = None) -> Any:
        if manifest is None:
            return self
        fields = manifest.__dict__
        try:
            rows = fields["_rows"]
        except KeyError:
            raise AttributeError("entries") from None
        entries = _entries_from_rows(_decoded(rows))
        fields["entries"] = entries
        fields.pop("_rows", None)
        return entries


setattr(Manifest, "entries", _LazyEntries())  # noqa: B010 - after @dataclass has seen the field


def _row(e: Entry) -> _Row:
    return (e.path, e.kind, e.sha256, e.size, e.mode, e.target)


def _entries_from_rows(rows: list[_Row]) -> tuple[Entry, ...]:
    """Entries equal to ``Entry(*row)``. Each is built by filling its new instance's
    ``__dict__``: three times faster than the frozen dataclass ``__init__`` (which goes through
    ``object.__setattr__`` per field), and this runs once per file."""
    new = object.__new__
    entries: list[Entry] = []
    append = entries.append
    for path, kind, sha256, size, mode, target in rows:
        entry = new(Entry)
        fields = entry.__dict__
        fields["path"] = path
        fields["kind"] = kind
        fields["sha256"] = sha256
        fields["size"] = size
        fields["mode"] = mode
        fields["target"] = target
        append(entry)
    return tuple(entries)


def _manifest_id(rows: list[_Row]) -> str:
    return _sha256_of_json(json.dumps(rows, separators=(",", ":"), ensure_ascii=False), rows)


_json_string = json.encoder.encode_basestring  # the quoting json.dumps(ensure_ascii=False) uses


def _walk_manifest_id(rows: list[_Row]) -> str:
    """:func:`_manifest_id` of rows made by the walk, whose kind, sha256 (hex or empty) and
    numbers need no JSON quoting: the same text, written directly (measured: 40% less time
    than ``json.dumps`` for 10,000 rows)."""
    q = _json_string
    text = ",".join(
        [
            f'[{q(p)},"{k}","{s}",{n},{m},""]' if not t else f'[{q(p)},"{k}","{s}",{n},{m},{q(t)}]'
            for p, k, s, n, m, t in rows
        ]
    )
    return _sha256_of_json(f"[{text}]", rows)


def _sha256_of_json(text: str, rows: list[_Row]) -> str:
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        bad = next(r for r in rows if not (_is_utf8(r[0]) and _is_utf8(r[5])))
        raise SnapshotError(
            f"{bad[0]!r}: its name or link target is not valid UTF-8; rename it or leave it "
            "out with the ignore file"
        ) from None
    return hashlib.sha256(data).hexdigest()


def describe_changes(changes: Changes, limit: int = 5) -> str:
    """One line for a plan's "why": ``"src/train.py changed; data/new.csv added; 3 more"``.

    Modified paths come first, then added, then removed; at most ``limit`` are named."""
    items = (
        [f"{p} changed" for p in changes.modified]
        + [f"{p} added" for p in changes.added]
        + [f"{p} removed" for p in changes.removed]
    )
    if not items:
        return "no changes"
    shown = items[: max(limit, 0)]
    if len(items) > len(shown):
        shown.append(f"{len(items) - len(shown)} more")
    return "; ".join(shown)


@dataclass
class SnapshotResult:
    """What :func:`snapshot` found.

    ``git`` is ``{"repository", "branch", "commit", "dirty"}`` when the source is inside a git
    work tree (``repository`` is the origin URL without credentials, else the top-level path;
    ``branch`` is None when HEAD is detached, ``commit`` None before the first commit;
    ``dirty`` says whether tracked files under the source folder differ from HEAD), or None.
    ``hashed`` counts files read and hashed, ``cached`` files whose hash came from the cache.
    """

    manifest: Manifest
    ignore_file: str | None
    warnings: list[str]
    git: dict[str, Any] | None
    hashed: int
    cached: int


def snapshot(
    source_dir: Path,
    cache_path: Path,
    max_bytes: int = 300 * 1024**2,
    max_files: int = 2000,
    plain: bool = False,
) -> SnapshotResult:
    """Snapshot ``source_dir`` into a manifest, using (and updating) the hash cache at
    ``cache_path``. Blocks until done; reads the tree, writes only the cache. ``plain`` (a
    dataset): no ignore file is read and no git facts are gathered.

    What is kept: every regular file and symbolic link not matched by the ignore rules. The
    rules come from the first of ``.trainignore``, ``.amlignore``, ``.gitignore`` found at the
    source root (gitignore syntax; the files are not merged, and ``.gitignore`` files in
    subfolders are not read). ``.git``, ``.trainform`` and ``__pycache__`` are always left
    out, at any depth, and so are trainform's configuration and variable files
    (``*.train.hcl``, ``*.train.yaml``, ``*.train.yml``, ``*.tfvars[.json|.yaml]``). An
    ignored folder is not descended into, so, as in git, a negation
    pattern cannot re-include a file below an ignored folder. Links are kept as links (not
    followed); sockets, FIFOs and devices are skipped with a warning; a file that disappears
    during the walk is left out.

    The cache is one file per source folder, ``<cache_path>.<digest of the folder>.cache``
    (``cache_path`` is a name prefix; several folders share it). A file whose (size, mtime_ns,
    inode) match the cache costs one ``lstat`` and no read; when nothing kept changed at all
    (paths, sizes, times, inodes, modes, link targets) the previous manifest is reused whole.
    A file modified in the last two seconds is hashed but not cached (its timestamp could hide
    a second edit). A corrupt cache file is ignored and rewritten; an unreadable one is
    bypassed with a warning.

    Passing ``max_bytes`` or ``max_files`` adds a warning naming the largest files and
    folders; it is never an error.

    Raises SnapshotError (naming the path) when the folder cannot be read, a link is absolute
    or leads outside the folder, a file changes or vanishes while it is read, or a name is not
    valid UTF-8.
    """
    started_ns = time.time_ns()
    try:
        root = os.path.realpath(os.fspath(source_dir), strict=True)
    except OSError as exc:
        raise SnapshotError(f"source folder {source_dir} does not exist") from exc
    if not os.path.isdir(root):
        raise SnapshotError(f"source folder {source_dir} is not a folder")

    git_probe = None if plain else _GitProbe(root)  # git runs while we walk
    try:
        ignore_file, match = (None, None) if plain else _load_ignore(root)
        cache = _HashCache(Path(cache_path), root)
        previous = cache.load()
        skipped: list[str] = []
        walk = _walk(root, match, skipped)
        signature = walk.signature()
        if previous is not None and previous.complete and previous.signature == signature:
            # Nothing kept changed since a snapshot that cached every file: its manifest holds.
            state = previous
            hashed = 0
        else:
            state, hashed = _update(walk, signature, previous, started_ns - _RACY_NS)
            cache.store(state)
        manifest = Manifest._lazy(state.rows, state.id, state.file_count, state.total_size)
        git = None if git_probe is None else git_probe.result()
    finally:
        if git_probe is not None:
            git_probe.close()

    warnings = [*skipped, *cache.warnings]
    if state.file_count > max_files or state.total_size > max_bytes:
        warnings.append(_size_warning(source_dir, state, max_bytes, max_files))
    return SnapshotResult(
        manifest=manifest,
        ignore_file=ignore_file,
        warnings=warnings,
        git=git,
        hashed=hashed,
        cached=state.file_count - hashed,
    )


# --- the walk --------------------------------------------------------------------------------


@dataclass
class _Walk:
    """What the walk found, in the order it found it: the cheapest shape to compare with the
    previous walk. ``names`` holds, for each folder, its relative prefix (``""`` for the root,
    else ending in ``/``) then the names of its kept files; ``stats`` holds size, mtime_ns,
    inode and st_mode for each of those files, one after the other (four ints per file, and no
    tuple: the walk creates no object the garbage collector tracks); ``links`` the rows of the
    kept links."""

    root_prefix: str
    names: list[str]
    stats: list[int]
    links: list[_Row]

    def signature(self) -> bytes:
        """sha256 of the walk, equal for two walks exactly when they found the same files with
        the same stat data and the same links. Names never hold NUL, so joining them with it is
        unambiguous; the numbers and links go in as ``marshal`` version 2, whose bytes depend
        only on the values (no references or interning flags). Measured: a third of the cost
        of one ``marshal`` of everything."""
        digest = hashlib.sha256("\0".join(self.names).encode("utf-8", "surrogatepass"))
        digest.update(marshal.dumps((self.stats, self.links), 2))
        return digest.digest()

    def files(self) -> Iterator[tuple[str, tuple[int, int, int, int]]]:
        """(relative path, (size, mtime_ns, inode, st_mode)) of each kept file."""
        numbers = iter(self.stats)
        stats = zip(numbers, numbers, numbers, numbers)
        prefix = ""
        for name in self.names:
            if not name or name[-1] == "/":
                prefix = name
            else:
                yield prefix + name, next(stats)


@dataclass
class _Pending:
    index: int  # of its row
    rel: str
    path: str
    size: int
    mtime_ns: int
    inode: int
    mode: int
    sha256: str = ""


_SCAN_BY_FD = os.scandir in os.supports_fd
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)


def _walk(root: str, match: Callable[[str], bool] | None, warnings: list[str]) -> _Walk:
    """The kept files (with their stat data) and links under ``root``. Per file this is the hot
    loop, and on an unchanged tree nearly all the work of a snapshot: one lstat (through the
    folder's descriptor where supported, which skips resolving the whole path), an append and
    an extend."""
    names: list[str] = []
    stats: list[int] = []
    links: list[_Row] = []
    excluded = ALWAYS_EXCLUDED
    config_files = CONFIG_SUFFIXES
    add_name = names.append
    add_stat = stats.extend
    sep = os.sep
    root_prefix = root.rstrip(sep) + sep
    stack = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        folder_prefix = folder + sep
        add_name(prefix)
        with _scan_folder(folder, prefix) as scan:
            for item in scan:
                name = item.name
                if name in excluded:
                    continue
                try:
                    if item.is_file(follow_symlinks=False):
                        if name.endswith(config_files) or (
                            match is not None and match(prefix + name)
                        ):
                            continue
                        st = item.stat()  # not a link (above): no keyword argument to parse
                        add_name(name)
                        add_stat((st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode))
                    elif item.is_dir(follow_symlinks=False):
                        rel = prefix + name + "/"
                        if match is None or not match(rel):
                            stack.append((folder_prefix + name, rel))
                    elif item.is_symlink():
                        rel = prefix + name
                        if match is None or not match(rel):
                            links.append(_link_row(folder_prefix + name, rel, root, root_prefix))
                    elif match is None or not match(prefix + name):
                        kind = _special_kind(item.stat(follow_symlinks=False).st_mode)
                        warnings.append(f"skipped {prefix + name}: a {kind}, not a file or link")
                except FileNotFoundError:
                    continue  # removed while we walked: not part of the snapshot
                except OSError as exc:
                    raise SnapshotError(f"cannot read {prefix + name}: {exc.strerror}") from exc
    return _Walk(root_prefix, names, stats, links)


@contextlib.contextmanager
def _scan_folder(folder: str, prefix: str) -> Iterator[Iterator[os.DirEntry[str]]]:
    """``os.scandir`` of a folder, through a descriptor where the platform allows: the entries'
    ``stat`` then resolves only their name (measured 20-30% faster per file on Linux). A folder
    that vanished yields nothing."""
    fd = -1
    try:
        if _SCAN_BY_FD:
            fd = os.open(folder, _DIR_FLAGS)
            scan = os.scandir(fd)  # its entries stat through fd: keep it open until done
        else:
            scan = os.scandir(folder)
    except FileNotFoundError:
        if fd >= 0:
            os.close(fd)
        yield iter(())
        return
    except OSError as exc:
        if fd >= 0:
            os.close(fd)
        raise SnapshotError(f"cannot read folder {prefix or './'}: {exc.strerror}") from exc
    try:
        with scan:
            yield scan
    finally:
        if fd >= 0:
            os.close(fd)


def _link_row(path: str, rel: str, root: str, root_prefix: str) -> _Row:
    target = os.readlink(path)
    lexical = os.path.normpath(os.path.join(os.path.dirname(rel), target))
    resolved = os.path.realpath(path)
    if (
        os.path.isabs(target)
        or lexical == os.pardir
        or lexical.startswith(os.pardir + os.sep)
        or (resolved != root and not resolved.startswith(root_prefix))
    ):
        raise SnapshotError(
            f"{rel} is a link to {target}, which is outside the source folder; "
            "replace it with the file or leave it out with the ignore file"
        )
    return (rel, "link", "", 0, 0o644, target.replace(os.sep, "/"))


def _special_kind(mode: int) -> str:
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def _load_ignore(root: str) -> tuple[str | None, Callable[[str], bool] | None]:
    """The first ignore file at the root and a matcher for relative paths (``dir/`` for
    folders), or no matcher at all when it has no patterns, so that the walk pays nothing."""
    for name in IGNORE_FILES:
        path = os.path.join(root, name)
        if os.path.isfile(path):
            import pathspec  # only paid for when there are rules to match

            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    spec = pathspec.GitIgnoreSpec.from_lines(f.read().splitlines())
            except (OSError, ValueError) as exc:
                raise SnapshotError(f"cannot read ignore file {name}: {exc}") from exc
            return name, (spec.match_file if spec.patterns else None)
    return None, None


# --- hashing ---------------------------------------------------------------------------------


def _update(
    walk: _Walk, signature: bytes, previous: _CacheState | None, racy_from: int
) -> tuple[_CacheState, int]:
    """The snapshot of a walk that differs from the previous one: files whose (size, mtime_ns,
    inode) match the previous snapshot's keep their hash, the others are read. Returns the new
    state and how many files were read; its stamps are those of the files modified before
    ``racy_from`` (the others must be read again next time)."""
    known = previous.known() if previous is not None else {}
    rows: list[_Row] = []
    stamps: list[tuple[int, int] | None] = []
    pending: list[_Pending] = []
    add = rows.append
    stamp = stamps.append
    root_prefix = walk.root_prefix
    for rel, (size, mtime_ns, inode, st_mode) in walk.files():
        mode = 0o755 if st_mode & 0o111 else 0o644
        hit = known.get(rel)
        if hit is not None and hit[1] == (mtime_ns, inode) and hit[0][3] == size:
            add((rel, "file", hit[0][2], size, mode, ""))
            stamp(hit[1])
        else:
            pending.append(_Pending(len(rows), rel, root_prefix + rel, size, mtime_ns, inode, mode))
            add((rel, "file", "", size, mode, ""))
            stamp(None)
    _hash_pending(pending)
    for p in pending:
        rows[p.index] = (p.rel, "file", p.sha256, p.size, p.mode, "")
        if p.mtime_ns < racy_from:
            stamps[p.index] = (p.mtime_ns, p.inode)
    file_count = len(rows)
    total_size = sum(map(itemgetter(3), rows))
    complete = None not in stamps
    rows.extend(walk.links)
    stamps.extend(None for _ in walk.links)
    # Sort both by path (unique: one walk, one name per folder entry). Sorting the indexes by
    # a list of str keys takes the sort's fast path for strings: 5x faster than sorting the
    # (row, stamp) pairs, which compares tuples.
    order = sorted(range(len(rows)), key=list(map(itemgetter(0), rows)).__getitem__)
    rows = [rows[i] for i in order]
    stamps = [stamps[i] for i in order]
    state = _CacheState(
        signature=signature,
        complete=complete,
        id=_walk_manifest_id(rows),
        file_count=file_count,
        total_size=total_size,
        largest=_largest(rows),
        rows=rows,
        stamps=stamps,
    )
    return state, len(pending)


def _hash_pending(pending: list[_Pending]) -> None:
    """Fill in the hash of each pending file."""
    small = [p for p in pending if p.size <= _INLINE_MAX]
    large = sorted((p for p in pending if p.size > _INLINE_MAX), key=lambda p: -p.size)
    if large:  # largest first, so that the workers finish together
        workers = min(os.cpu_count() or 1, len(large))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="snapshot") as pool:
            futures = [pool.submit(_hash_one, p) for p in large]
            for p in small:  # meanwhile, on this thread
                _hash_one(p)
            for future in futures:
                future.result()
    else:
        for p in small:
            _hash_one(p)


def _hash_one(p: _Pending) -> None:
    """Fill in ``p.sha256``. If the file changed since the walk, its (size, mtime_ns, inode,
    mode) are updated to what was read; a file that keeps changing raises."""
    for _attempt in range(_READ_TRIES):
        try:
            digest, st = _hash_file(p.path, p.size)
        except FileNotFoundError as exc:
            raise SnapshotError(f"{p.rel} disappeared while it was being snapshotted") from exc
        except OSError as exc:
            raise SnapshotError(f"cannot read {p.rel}: {exc.strerror}") from exc
        if st.st_size == p.size and st.st_mtime_ns == p.mtime_ns and st.st_ino == p.inode:
            p.sha256 = digest
            return
        p.size, p.mtime_ns, p.inode = st.st_size, st.st_mtime_ns, st.st_ino
        p.mode = 0o755 if st.st_mode & 0o111 else 0o644
    raise SnapshotError(f"{p.rel} changed while it was being snapshotted")


def _hash_file(path: str, size: int) -> tuple[str, os.stat_result]:
    """sha256 of a file and its fstat once read (to notice a change during the read)."""
    fd = os.open(path, _O_FLAGS)
    try:
        if size < _CHUNK:
            # One read of size + 1: a file that grew meanwhile shows as a size mismatch.
            digest = hashlib.sha256(os.read(fd, size + 1))
        else:
            digest = hashlib.sha256()
            buf = bytearray(_CHUNK)
            view = memoryview(buf)
            with open(fd, "rb", buffering=0, closefd=False) as f:
                while n := f.readinto(buf):
                    digest.update(view[:n])
        return digest.hexdigest(), os.fstat(fd)
    finally:
        os.close(fd)


# --- the hash cache --------------------------------------------------------------------------

_MAGIC = b"trainform-snapshot-cache 1\n"
"""Starts every cache file. Then: the CRC-32 of the rest (4 bytes, big-endian), the length of
the head (4 bytes), the head (``marshal`` of :meth:`_CacheState.head`), then the rows and the
stamps (each the ``marshal`` of a list). Bump the number when that shape changes."""

_Blob = bytes | memoryview
"""A list in its ``marshal`` form, decoded only when needed."""


@dataclass
class _CacheState:
    """What a snapshot leaves for the next one of the same folder.

    ``signature`` is its walk's :meth:`_Walk.signature`. ``rows`` are the
    manifest's entries (sorted), ``stamps`` for each row (mtime_ns, inode) when its hash may be
    trusted while the file's (size, mtime_ns, inode) stay the same, else None (links; files
    modified within the racy window). ``complete`` says no file lacks a stamp: then an equal
    signature means an equal manifest, and ``id``, counts and rows are reused as they are.
    ``largest`` holds the size warning's lists (:func:`_largest`). Rows and stamps read from a
    file stay in their ``marshal`` form until needed."""

    signature: bytes
    complete: bool
    id: str
    file_count: int
    total_size: int
    largest: tuple[list[tuple[str, int]], list[tuple[str, int]]] | None
    rows: list[_Row] | _Blob
    stamps: list[tuple[int, int] | None] | _Blob

    def known(self) -> dict[str, tuple[_Row, tuple[int, int] | None]]:
        """path -> (row, stamp) for each row (built without a Python-level loop)."""
        try:
            rows = _decoded(self.rows)
            stamps = _decoded(self.stamps)
            return dict(zip(map(itemgetter(0), rows), zip(rows, stamps, strict=True)))
        except (ValueError, EOFError, TypeError, IndexError):
            return {}  # not what this version writes: no cache

    def head(self, root: str, rows_size: int, stamps_size: int) -> tuple[Any, ...]:
        return (
            root,
            self.signature,
            self.complete,
            self.id,
            self.file_count,
            self.total_size,
            self.largest,
            rows_size,
            stamps_size,
        )

    @classmethod
    def from_file(cls, root: str, data: bytes) -> _CacheState | None:
        """The state in a cache file's content, or None if it is not a state for ``root``."""
        start = len(_MAGIC)
        if data[:start] != _MAGIC:
            return None
        body = memoryview(data)[start + 4 :]
        if zlib.crc32(body) != int.from_bytes(data[start : start + 4], "big"):
            return None
        head_size = int.from_bytes(body[:4], "big")
        try:
            head = marshal.loads(body[4 : 4 + head_size])
        except (ValueError, EOFError, TypeError):
            return None
        if not (isinstance(head, tuple) and len(head) == 9 and head[0] == root):
            return None
        _, signature, complete, id_, file_count, total_size, largest, rows_size, stamps_size = head
        if not (isinstance(rows_size, int) and isinstance(stamps_size, int)):
            return None
        rows_start = 4 + head_size
        stamps_start = rows_start + rows_size
        if not (
            isinstance(signature, bytes)
            and isinstance(complete, bool)
            and isinstance(id_, str)
            and isinstance(file_count, int)
            and isinstance(total_size, int)
            and (largest is None or (isinstance(largest, tuple) and len(largest) == 2))
            and stamps_start + stamps_size == len(body)
        ):
            return None
        rows = body[rows_start:stamps_start]
        stamps = body[stamps_start:]
        return cls(signature, complete, id_, file_count, total_size, largest, rows, stamps)

    def to_file(self, root: str) -> bytes:
        rows = self.rows if isinstance(self.rows, _Blob) else marshal.dumps(self.rows)
        stamps = self.stamps if isinstance(self.stamps, _Blob) else marshal.dumps(self.stamps)
        head = marshal.dumps(self.head(root, len(rows), len(stamps)))
        body = b"".join((len(head).to_bytes(4, "big"), head, rows, stamps))
        return b"".join((_MAGIC, zlib.crc32(body).to_bytes(4, "big"), body))


def _decoded(value: list[Any] | _Blob) -> list[Any]:
    if isinstance(value, list):
        return value
    decoded = marshal.loads(value)
    if not isinstance(decoded, list):
        raise TypeError("not a list")
    return decoded


class _HashCache:
    """The cache file of one source folder: ``<path>.<16 hex digits of sha256(root)>.cache``.

    Best effort: a corrupt file is ignored (and replaced by the next write), an unreadable or
    unwritable one is bypassed with a warning; neither is an error. Written whole, through a
    temporary file renamed into place, so that concurrent snapshots each read a complete file
    (the last writer wins, and either file is right)."""

    def __init__(self, path: Path, root: str) -> None:
        digest = hashlib.sha256(root.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        self.path = Path(f"{path}.{digest}.cache")
        self.root = root
        self.warnings: list[str] = []
        self.usable = True

    def load(self) -> _CacheState | None:
        try:
            with open(self.path, "rb", buffering=0) as f:
                data = f.readall()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.usable = False
            self.warnings.append(f"hash cache {self.path} not used: {exc.strerror}")
            return None
        return _CacheState.from_file(self.root, data)

    def store(self, state: _CacheState) -> None:
        if not self.usable:
            return
        data = state.to_file(self.root)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-")
            try:
                with open(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            # The snapshot is right either way; only the next one is slower.
            self.warnings.append(f"hash cache {self.path} not updated: {exc.strerror}")


# --- git -------------------------------------------------------------------------------------


class _GitProbe:
    """git facts about the folder, gathered by git processes started at once (so they overlap
    the walk) and read by :meth:`result`.

    The processes are started from a thread: starting one blocks the starting thread until the
    child has run ``exec``, which on a busy machine takes milliseconds each; the walk goes on
    meanwhile (measured: 3 to 10 ms off an unchanged snapshot on a 2-core machine)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.failed = False
        self._starter: threading.Thread | None = threading.Thread(
            target=self._start, name="snapshot-git", daemon=True
        )
        self._starter.start()

    def _start(self) -> None:
        env = {
            **os.environ,
            "GIT_OPTIONAL_LOCKS": "0",  # status must not rewrite the index under the user
            "GIT_TERMINAL_PROMPT": "0",
            "LC_ALL": "C",
        }
        commands = {
            # The slowest (it lstats every tracked file, as the walk does) goes first. Its
            # preload threads (up to 20, whatever the core count) would take the CPU from the
            # walk, which is the longer of the two: on one thread git still finishes first.
            "status": [
                "-c",
                "core.preloadIndex=false",
                "status",
                "--porcelain=v2",
                "--branch",
                "--no-ahead-behind",  # we read the commit and branch, not the upstream counts
                "--untracked-files=no",
                "--",
                ".",
            ],
            "toplevel": ["rev-parse", "--show-toplevel"],
            "remote": ["config", "--get", "remote.origin.url"],
        }
        try:
            for key, args in commands.items():
                self.procs[key] = subprocess.Popen(
                    ["git", "-C", self.root, *args],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    env=env,
                )
        except (OSError, ValueError, subprocess.SubprocessError):
            self.failed = True  # git is not installed: no facts (close ends what started)

    def _started(self) -> None:
        if self._starter is not None:
            self._starter.join()
            self._starter = None

    def _output(self, key: str, timeout: float) -> str | None:
        proc = self.procs.get(key)
        if proc is None:
            return None
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return None
        return out.decode("utf-8", "replace") if proc.returncode == 0 else None

    def result(self) -> dict[str, Any] | None:
        self._started()
        if self.failed:
            return None
        toplevel = self._output("toplevel", 10)
        status = self._output("status", 30)
        remote = self._output("remote", 10)
        if toplevel is None or status is None:
            return None
        commit: str | None = None
        branch: str | None = None
        dirty = False
        for line in status.splitlines():
            if line.startswith("# branch.oid "):
                oid = line.split(" ", 2)[2]
                commit = None if oid == "(initial)" else oid
            elif line.startswith("# branch.head "):
                head = line.split(" ", 2)[2]
                branch = None if head == "(detached)" else head
            elif line and not line.startswith("#"):
                dirty = True
        remote = (remote or "").strip()
        return {
            "repository": _without_credentials(remote) if remote else toplevel.strip(),
            "branch": branch,
            "commit": commit,
            "dirty": dirty,
        }

    def close(self) -> None:
        self._started()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        self.procs = {}


def _without_credentials(url: str) -> str:
    """An origin URL without a user:password@ part (tokens must not reach run records)."""
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@", r"\1", url)


# --- size warning ----------------------------------------------------------------------------


def _largest(rows: list[_Row]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The 5 largest files and the 5 largest top-level folders (by the bytes of their files),
    as (path, bytes), largest first; ties in path order. ``rows`` are sorted by path, so the
    files of a folder ``top`` are the contiguous run from ``top/`` to ``top0`` ("0" follows
    "/"): summed without a Python loop over them."""
    files = [r for r in rows if r[1] == "file"]
    paths = [r[0] for r in files]
    sizes = [r[3] for r in files]
    by_size = sorted(range(len(files)), key=sizes.__getitem__, reverse=True)  # stable
    largest = [(paths[i], sizes[i]) for i in by_size[:5]]
    folders: list[tuple[str, int]] = []
    i = 0
    while i < len(paths):
        top, sep, _ = paths[i].partition("/")
        if not sep:
            i += 1
            continue
        end = bisect.bisect_left(paths, top + "0", i)
        folders.append((top, sum(sizes[i:end])))
        i = end
    return largest, sorted(folders, key=itemgetter(1), reverse=True)[:5]


def _size_warning(source_dir: Path, state: _CacheState, max_bytes: int, max_files: int) -> str:
    if state.largest is None:  # a cache file from before they were kept
        state.largest = _largest(_decoded(state.rows))
    largest, big_folders = state.largest
    shown = os.fspath(source_dir)
    if not os.path.isabs(shown) and not shown.startswith("."):
        shown = f"./{shown}"
    parts = [
        f"source folder {shown} holds {state.file_count:,} files, {_human(state.total_size)} "
        f"(thresholds: {max_files:,} files, {_human(max_bytes)})",
        "largest: " + ", ".join(f"{path} {_human(n)}" for path, n in largest),
    ]
    if big_folders:
        parts.append(
            "largest folders: " + ", ".join(f"{name}/ {_human(n)}" for name, n in big_folders)
        )
    parts.append("add a .trainignore to leave them out")
    return "; ".join(parts)


def _human(n: int) -> str:
    """Bytes in binary units, one decimal except for round thresholds: 700.0 MB, 300 MB."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1024
        if value < 1024 or unit == "TB":
            break
    if value.is_integer() and value >= 10:
        return f"{int(value)} {unit}"
    return f"{value:.1f} {unit}"


# --- blobs and manifest files ----------------------------------------------------------------


def blob_path(blob_dir: Path, sha256: str) -> Path:
    """Where a content blob lives: ``blob_dir/ab/cdef...`` for sha256 ``abcdef...``."""
    return blob_dir / sha256[:2] / sha256[2:]


def store_blobs(
    manifest: Manifest,
    source_dir: Path,
    blob_dir: Path,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Copy into ``blob_dir`` the content of every file of ``manifest`` whose blob is missing
    (or has the wrong size, as a crash can leave); returns how many blobs were written.

    Each copy is hashed as it is written and renamed into place only if it matches, so a blob
    is never partial and concurrent writers are safe. Idempotent. Blobs are not fsynced.
    ``progress`` is called with the bytes of what was missing copied so far, after each
    blob. Raises SnapshotError when a file changed (or vanished) since the snapshot."""
    wanted: dict[str, Entry] = {}
    for e in manifest.entries:
        if e.kind == "file" and e.sha256 not in wanted:
            wanted[e.sha256] = e
    missing = []
    for sha, e in wanted.items():
        try:
            if os.stat(blob_path(blob_dir, sha)).st_size == e.size:
                continue
        except FileNotFoundError:
            pass
        missing.append(e)
    if not missing:
        return 0
    root = Path(source_dir)
    workers = min(os.cpu_count() or 1, len(missing))
    done = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="blobs") as pool:
        futures = {pool.submit(_copy_blob, e, root, blob_dir): e.size for e in missing}
        for future in as_completed(futures):
            future.result()
            done += futures[future]
            if progress is not None:
                progress(done)
    return len(missing)


def _copy_blob(entry: Entry, root: Path, blob_dir: Path) -> None:
    dest = blob_path(blob_dir, entry.sha256)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
    try:
        digest = hashlib.sha256()
        try:
            src = open(root / entry.path, "rb", buffering=0)  # noqa: SIM115
        except FileNotFoundError as exc:
            raise SnapshotError(f"{entry.path} disappeared while it was being snapshotted") from exc
        except OSError as exc:
            raise SnapshotError(f"cannot read {entry.path}: {exc.strerror}") from exc
        with src, open(fd, "wb", buffering=0) as out:
            buf = bytearray(_CHUNK)
            view = memoryview(buf)
            while n := src.readinto(buf):
                digest.update(view[:n])
                out.write(view[:n])
        if digest.hexdigest() != entry.sha256:
            raise SnapshotError(f"{entry.path} changed while it was being snapshotted")
        os.chmod(tmp, 0o444)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_manifest(manifest: Manifest, manifest_dir: Path) -> Path:
    """Write ``manifest_dir/<id>.json`` (the :meth:`Manifest.to_dict` form) atomically and
    return its path. Idempotent: a manifest already there (named by its content, written
    whole) is not written again, so planning a large unchanged dataset writes nothing."""
    manifest_dir = Path(manifest_dir)
    dest = manifest_dir / f"{manifest.id}.json"
    if dest.is_file():
        return dest
    manifest_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(dest, json.dumps(manifest.to_dict(), separators=(",", ":")).encode())
    return dest


def load_manifest(path: Path) -> Manifest:
    """Read a manifest written by :func:`save_manifest`. Raises SnapshotError when the file
    is missing, is not a manifest, or (for a ``<id>.json`` name) does not match its id."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"cannot read manifest {path}: {exc}") from exc
    try:
        manifest = Manifest.from_dict(data)
    except SnapshotError as exc:
        raise SnapshotError(f"{path}: {exc}") from exc
    if re.fullmatch(r"[0-9a-f]{64}", path.stem) and path.stem != manifest.id:
        raise SnapshotError(f"manifest {path} does not match its id (corrupt file)")
    return manifest


def _write_atomic(dest: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
    try:
        with open(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _entry_from_dict(item: Any) -> Entry:
    if not isinstance(item, Mapping):
        raise SnapshotError(f"manifest entry {item!r} is not an object")
    path = item.get("path")
    kind = item.get("kind")
    sha = item.get("sha256", "")
    size = item.get("size", 0)
    mode = item.get("mode", 0o644)
    target = item.get("target", "")
    if not isinstance(path, str) or not _is_safe_relative(path):
        raise SnapshotError(f"manifest entry has an unsafe or missing path: {path!r}")
    if kind not in ("file", "link"):
        raise SnapshotError(f"{path}: unknown entry kind {kind!r}")
    if not (isinstance(sha, str) and isinstance(target, str)):
        raise SnapshotError(f"{path}: sha256 and target must be strings")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (size, mode)):
        raise SnapshotError(f"{path}: size and mode must be integers")
    if kind == "file" and not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise SnapshotError(f"{path}: sha256 {sha!r} is not a sha256 hex digest")
    if kind == "link":
        inside = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
        if not target or target.startswith("/") or inside == ".." or inside.startswith("../"):
            raise SnapshotError(f"{path}: link target {target!r} is not inside the snapshot")
    return Entry(path=path, kind=kind, sha256=sha, size=size, mode=mode, target=target)


def _is_safe_relative(path: str) -> bool:
    parts = path.split("/")
    return bool(path) and not path.startswith("/") and all(p not in ("", ".", "..") for p in parts)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


__all__ = (
    "ALWAYS_EXCLUDED",
    "IGNORE_FILES",
    "Changes",
    "Entry",
    "Manifest",
    "SnapshotError",
    "SnapshotResult",
    "blob_path",
    "describe_changes",
    "load_manifest",
    "save_manifest",
    "snapshot",
    "store_blobs",
)
