"""Datasets that sit on an ssh compute's host (``source = "ssh://HOST/PATH"``): hashed there,
and used in place by runs on that compute (``input_mode = "link"``); a run elsewhere gets a
copy, fetched once into the workspace's store (:func:`copy_from_host`).

The host hashes its own files with a stdlib Python script (:data:`HASH_SCRIPT`) that keeps a
cache beside the user's other caches (``~/.cache/trainform/dataset-hashes``), so an unchanged
folder costs one stat per file. What the host prints is read as hostile: bounded in size,
every entry checked before a :class:`~trainform.runs.snapshot.Manifest` is built from it.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from trainform.errors import ProviderError
from trainform.runs.snapshot import Manifest, SnapshotError, describe_changes

MAX_OUTPUT = 64 << 20  # bytes of the script's answer read at most
CACHE_DIR = "~/.cache/trainform/dataset-hashes"

# python3 -c HASH_SCRIPT PATH CACHE_FILE: prints {"is_file", "entries": [...]} (files only; links and
# other special files are left out, and never followed); exit 3 when PATH is neither a
# folder nor a file.
HASH_SCRIPT = r"""
import hashlib, json, os, stat, sys
root, cache_path = sys.argv[1], os.path.expanduser(sys.argv[2])
try:
    with open(cache_path) as f:
        cache = json.load(f)
    if not isinstance(cache, dict):
        cache = {}
except (OSError, ValueError):
    cache = {}
fresh, entries = {}, []
def one(full, rel, st):
    stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
    old = cache.get(rel)
    if isinstance(old, list) and len(old) == 4 and old[:3] == stamp:
        digest = old[3]
    else:
        h = hashlib.sha256()
        fd = os.open(full, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest = h.hexdigest()
    fresh[rel] = stamp + [digest]
    mode = 0o755 if st.st_mode & 0o111 else 0o644
    entries.append({"path": rel, "kind": "file", "sha256": digest, "size": st.st_size, "mode": mode})
try:
    top = os.lstat(root)
except OSError as exc:
    sys.stderr.write("%s\n" % exc)
    sys.exit(3)
if stat.S_ISREG(top.st_mode):
    one(root, os.path.basename(root), top)
elif stat.S_ISDIR(top.st_mode):
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(folder, name)
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode):
                one(full, os.path.relpath(full, root).replace(os.sep, "/"), st)
else:
    sys.stderr.write("%s is neither a folder nor a file\n" % root)
    sys.exit(3)
try:
    os.makedirs(os.path.dirname(cache_path), mode=0o700, exist_ok=True)
    tmp = "%s.%d.tmp" % (cache_path, os.getpid())
    with open(tmp, "w") as f:
        json.dump(fresh, f)
    os.replace(tmp, cache_path)
except OSError:
    pass
sys.stdout.write(json.dumps({"is_file": stat.S_ISREG(top.st_mode), "entries": entries}))
"""


def split_source(source: str) -> tuple[str, str]:
    """``ssh://HOST[:PORT]/ABSOLUTE/PATH`` -> (``HOST[:PORT]``, ``/ABSOLUTE/PATH``)."""
    parts = urllib.parse.urlsplit(source)
    return parts.netloc, posixpath.normpath(parts.path) if parts.path else ""


def source_problems(source: str, compute: Any, sha256: Any) -> list[str]:
    """What is wrong with an ssh:// dataset block: its ``compute`` (an ssh compute whose
    hosts include HOST), its PATH (absolute), a sha256 (not for ssh:// sources)."""
    from trainform.config.values import is_unknown

    host, path = split_source(source)
    problems = []
    if sha256:
        problems.append("sha256 is for http(s) sources; an ssh:// source is hashed on its host")
    if not host or not path.startswith("/") or "@" in host:
        problems.append(
            f"source {source!r} must be ssh://HOST/ABSOLUTE/PATH (HOST one of the compute's "
            "hosts, without a user: the compute's username is used)"
        )
    if compute is None:
        problems.append(
            "an ssh:// source needs compute = compute.NAME, the ssh compute whose host holds "
            "the data"
        )
        return problems
    if is_unknown(compute) and not isinstance(compute, dict):
        return problems
    if not isinstance(compute, dict) or compute.get("type") != "ssh":
        kind = compute.get("type") if isinstance(compute, dict) else type(compute).__name__
        problems.append(
            f'compute must be an ssh compute (compute.NAME of type "ssh"), not {kind!r}'
        )
        return problems
    hosts = compute_hosts(compute)
    if host and hosts is not None and find_host(host, hosts, compute) is None:
        problems.append(
            f"host {host!r} of {source!r} is not a host of {compute.get('address')}: use one "
            f"of {', '.join(hosts) or '(none)'}"
        )
    return problems


def compute_hosts(compute: dict[str, Any]) -> list[str] | None:
    """An ssh compute's host entries (``host`` or ``host:port``), None while unknown."""
    from trainform.config.values import is_unknown

    for key in ("addresses", "hosts"):
        value = compute.get(key)
        if isinstance(value, list) and value and not is_unknown(value):
            return [str(h) for h in value]
    # A reference's ``address`` is the block's (compute.NAME), not the host's: a compute of one
    # address is known once attached (its computed ``addresses``).
    return None


def find_host(host: str, hosts: list[str], compute: dict[str, Any]) -> str | None:
    """The entry of ``hosts`` that ``host`` (``name`` or ``name:port``) names, or None."""
    from trainform.providers.ssh import split_host

    port = compute.get("port")
    default = port if isinstance(port, int) else 22
    try:
        wanted = split_host(host, default)
    except ValueError:
        return None
    for entry in hosts:
        try:
            if split_host(entry, default) == wanted:
                return entry
        except ValueError:
            continue
    return None


def hash_on_host(source: str, compute: dict[str, Any], ssh: Any) -> tuple[Manifest, bool]:
    """The manifest of an ssh:// source and whether the source is one file, hashed on its host over ``ssh`` (the ssh compute
    provider's sessions, with ``compute``'s options and pinned host keys). Blocks; safe to
    repeat (only the host's hash cache is written). Raises ProviderError."""
    host, path = split_source(source)
    entry = find_host(host, compute_hosts(compute) or [], compute)
    if entry is None:
        raise ProviderError(f"dataset source {source!r}: {host!r} is not a host of its compute")
    cache = f"{CACHE_DIR}/{hashlib.sha256(path.encode()).hexdigest()}.json"
    target = ssh._run_target(compute)

    def run(conn: Any) -> bytes:
        return bytes(conn.python(HASH_SCRIPT, [path, cache], limit=MAX_OUTPUT))

    try:
        out = ssh._with_session(target, entry, run)
    except ProviderError as exc:
        raise ProviderError(f"dataset source {source!r}: {exc}") from None
    return parse_hashes(out, source)


def copy_from_host(
    source: str, compute: dict[str, Any], ssh: Any, manifest: Manifest, store: Path
) -> None:
    """Put an ssh:// folder's blobs (``manifest``, as hashed on its host) in a workspace's
    ``store``: nothing to do when it holds them all already; else the folder is fetched
    through the ssh compute's session (a hostile tar stream, extracted by the rules of
    :mod:`trainform.remote.tarsafe`) into a temporary folder, hashed here, and kept only if
    it is exactly what the host said. Raises ProviderError."""
    from trainform.providers.base import report
    from trainform.runs.snapshot import blob_path, save_manifest, snapshot, store_blobs

    blobs = store / "snapshots" / "blobs"
    if all(blob_path(blobs, e.sha256).is_file() for e in manifest.entries if e.kind == "file"):
        return
    host, path = split_source(source)
    report(f"fetching {source} ({manifest.file_count} file(s)) into the workspace's store")
    entry = find_host(host, compute_hosts(compute) or [], compute)
    if entry is None:
        raise ProviderError(f"dataset source {source!r}: {host!r} is not a host of its compute")
    store.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=store) as tmp:
        folder = Path(tmp) / "data"
        try:
            ssh._with_session(
                ssh._run_target(compute), entry, lambda conn: conn.download_tree(path, folder)
            )
            got = snapshot(folder, Path(tmp) / "hashes", 1 << 62, 1 << 62, plain=True).manifest
        except (ProviderError, SnapshotError) as exc:
            raise ProviderError(f"copying dataset source {source!r}: {exc}") from None
        if got.id != manifest.id:
            raise ProviderError(
                f"copying dataset source {source!r}: what arrived is not what its host hashed "
                f"({describe_changes(manifest.diff(got))}); nothing was kept"
            )
        store_blobs(got, folder, blobs)
        save_manifest(got, store / "snapshots" / "manifests")


def parse_hashes(out: bytes, source: str) -> tuple[Manifest, bool]:
    """The host's answer (hostile) as a manifest and whether the source is a file: at most MAX_OUTPUT bytes of JSON, files only,
    each path relative without ``..``, each sha256 hex, sizes non-negative integers, no path
    twice. Raises ProviderError naming ``source``."""

    def refuse(why: str) -> ProviderError:
        return ProviderError(f"dataset source {source!r}: the host's answer {why}")

    if len(out) > MAX_OUTPUT:
        raise refuse(f"is larger than {MAX_OUTPUT} bytes")
    try:
        doc = json.loads(out)
    except (ValueError, UnicodeDecodeError):
        raise refuse("is not JSON") from None
    raw = doc.get("entries") if isinstance(doc, dict) else None
    if not isinstance(raw, list):
        raise refuse("has no entries list")
    is_file = doc.get("is_file")
    if not isinstance(is_file, bool) or (is_file and len(raw) != 1):
        raise refuse("does not say whether the source is one file")
    seen: set[str] = set()
    entries = []
    for item in raw:
        if not isinstance(item, dict) or item.get("kind") != "file":
            raise refuse(f"has an entry that is not a file: {str(item)[:200]!r}")
        path, size, sha = item.get("path"), item.get("size"), item.get("sha256")
        if not isinstance(path, str) or path in seen:
            raise refuse(f"repeats or lacks a path: {str(path)[:200]!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise refuse(f"gives {path[:200]!r} a size that is not a whole number")
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise refuse(f"gives {path[:200]!r} a sha256 that is not 64 hexadecimal digits")
        if item.get("mode") not in (0o644, 0o755):
            raise refuse(f"gives {path[:200]!r} a mode other than 0644 or 0755")
        seen.add(path)
        entries.append(item)
    try:
        manifest = Manifest.from_dict({"entries": sorted(entries, key=lambda e: e["path"])})
    except SnapshotError as exc:
        raise refuse(f"is not a valid manifest: {exc}") from None
    return manifest, is_file
