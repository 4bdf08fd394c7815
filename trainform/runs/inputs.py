"""Data runs read and write: datasets, a run's named outputs, and a run's inputs.

A dataset is a snapshot manifest with a name (content-addressed: its id is the manifest's
hash), and so is a run's named output once collected. A run's inputs are such manifests:
their blobs travel with the run's snapshot blobs (only those a target lacks), and the
launcher places them read-only under ``inputs/NAME`` in the run's folder. A run's
fingerprint holds each input's content id, never the run that made it, so a resubmitted
upstream run whose outputs come out byte-identical does not resubmit its downstream runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainform.config.values import is_unknown
from trainform.errors import ProviderError
from trainform.providers.base import byte_progress
from trainform.runs.snapshot import (
    Entry,
    Manifest,
    SnapshotError,
    load_manifest,
    save_manifest,
    snapshot,
    store_blobs,
)

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_DOWNLOAD = 1 << 40  # an http(s) source larger than this is refused
PROGRESS_FROM = 64 << 20  # inputs at least this large say so while they are stored


# -- datasets --------------------------------------------------------------------------------


def source_kind(source: str) -> str:
    """``http`` (an http(s) URL), ``ssh`` (``ssh://HOST/PATH``) or ``local``."""
    lowered = source.lower()
    if lowered.startswith(("http://", "https://")):
        return "http"
    if lowered.startswith("ssh://"):
        return "ssh"
    return "local"


def dataset_problems(desired: dict[str, Any], config_dir: Path) -> list[str]:
    """What is wrong with a dataset block (its source, its sha256)."""
    source = desired.get("source")
    if not isinstance(source, str) or not source:
        return ["source must be a path, an http(s) URL or ssh://HOST/PATH"]
    sha = desired.get("sha256")
    kind = source_kind(source)
    problems = []
    if kind == "http":
        if not sha:
            problems.append(
                f'an http(s) source must carry its sha256 (sha256 = "..."): {_shown(source)} '
                "is fetched once and checked against it"
            )
        elif not isinstance(sha, str) or not SHA256.fullmatch(sha.lower()):
            problems.append("sha256 must be 64 hexadecimal digits")
    elif kind == "ssh":
        from trainform.runs.host_datasets import source_problems

        problems.extend(source_problems(source, desired.get("compute"), sha))
    else:
        if sha:
            problems.append("sha256 is for http(s) sources; a local source is hashed as it is")
        path = config_dir / source
        if not path.exists():
            problems.append(f"source {source!r} does not exist ({path})")
    return problems


def _shown(url: str) -> str:
    """A URL without credentials, for messages."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass(frozen=True)
class Content:
    """A dataset's content: its manifest, and the folder its files are read from (on
    ``host``, the ssh compute host entry of an ssh:// source, when set; else here)."""

    manifest: Manifest
    root: Path
    file: str | None  # the one file's name, for a dataset that is a file
    host: str | None = None


def dataset_content(
    desired: dict[str, Any], config_dir: Path, cache_dir: Path, ssh: Any = None
) -> Content:
    """Hash a dataset's source (an unchanged folder costs one stat per file, through the
    snapshot hash cache; an http(s) source is fetched once into ``cache_dir/downloads``; an
    ssh:// source is hashed on its host through ``ssh``, the ssh compute provider, with a
    cache there). Raises ProviderError naming the source when it is missing or does not
    match."""
    source = str(desired.get("source"))
    if source_kind(source) == "ssh":
        return _host_content(source, desired.get("compute"), ssh)
    if source_kind(source) == "http":
        path = download(source, str(desired.get("sha256") or "").lower(), cache_dir)
        return _file_content(path, cache_dir)
    path = config_dir / source
    try:
        if path.is_dir():
            snap = snapshot(
                path, cache_dir / "hashes.db", max_bytes=1 << 62, max_files=1 << 62, plain=True
            )
            return Content(snap.manifest, path.resolve(), None)
        if path.is_file():
            return _file_content(path, cache_dir)
    except SnapshotError as exc:
        raise ProviderError(f"dataset source {source!r}: {exc}") from None
    raise ProviderError(f"dataset source {source!r} does not exist ({path})")


def _host_content(source: str, compute: Any, ssh: Any) -> Content:
    from pathlib import PurePosixPath

    from trainform.runs.host_datasets import hash_on_host, split_source

    if not isinstance(compute, dict) or ssh is None:
        raise ProviderError(f"dataset source {source!r}: its ssh compute is not known")
    manifest, is_file = hash_on_host(source, compute, ssh)
    host, path = split_source(source)
    if is_file:
        folder = PurePosixPath(path)
        return Content(manifest, Path(str(folder.parent)), folder.name, host)
    return Content(manifest, Path(path), None, host)


def _file_content(path: Path, cache_dir: Path) -> Content:
    """A one-file dataset, its hash cached by (size, mtime, inode) as the snapshot's are."""
    st = path.stat()
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
    stamp_file = cache_dir / "file-hashes" / key
    stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
    digest = None
    try:
        cached = json.loads(stamp_file.read_text())
        if cached.get("stamp") == stamp:
            digest = cached.get("sha256")
    except (OSError, ValueError, AttributeError):
        pass
    if not isinstance(digest, str) or not SHA256.fullmatch(digest):
        digest = _sha256_of(path)
        stamp_file.parent.mkdir(parents=True, exist_ok=True)
        stamp_file.write_text(json.dumps({"stamp": stamp, "sha256": digest}))
    mode = 0o755 if st.st_mode & 0o111 else 0o644
    entry = Entry(path=path.name, kind="file", sha256=digest, size=st.st_size, mode=mode)
    return Content(Manifest((entry,)), path.resolve().parent, path.name)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, sha256: str, cache_dir: Path) -> Path:
    """The file at ``url``, fetched once into ``cache_dir/downloads/SHA256/NAME`` and checked
    against ``sha256`` (a mismatch is refused and nothing is kept). Streams; never holds the
    file in memory."""
    name = os.path.basename(urllib.parse.urlsplit(url).path) or "data"
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,200}", name) or name in (".", ".."):
        name = "data"
    folder = cache_dir / "downloads" / sha256
    dest = folder / name
    if dest.is_file():
        return dest
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    while chunk := response.read(1 << 20):
                        size += len(chunk)
                        if size > MAX_DOWNLOAD:
                            raise ProviderError(
                                f"{_shown(url)} is larger than {MAX_DOWNLOAD} bytes"
                            )
                        digest.update(chunk)
                        out.write(chunk)
            except (OSError, ValueError) as exc:
                raise ProviderError(f"cannot fetch {_shown(url)}: {exc}") from None
        if digest.hexdigest() != sha256:
            raise ProviderError(
                f"{_shown(url)} does not match its sha256: expected {sha256}, got "
                f"{digest.hexdigest()} ({size} bytes); nothing was kept"
            )
        os.chmod(tmp, 0o444)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def manifests_dir(data_dir: Path) -> Path:
    """Where datasets' manifests are kept on this machine, by id."""
    return data_dir / "cache" / "datasets"


def content_summary(manifest: Manifest) -> dict[str, Any]:
    return {"id": manifest.id, "files": manifest.file_count, "bytes": manifest.total_size}


# -- a run's named outputs --------------------------------------------------------------------


def output_problems(outputs: Any, outputs_dir: str) -> list[str]:
    """What is wrong with a run's ``outputs`` map (names, paths inside ``outputs_dir``)."""
    if outputs is None or is_unknown(outputs):
        return []
    if not isinstance(outputs, dict):
        return ["outputs must be a map of name -> path"]
    problems = []
    base = outputs_dir.strip("/")
    for name, path in outputs.items():
        if not IDENTIFIER.fullmatch(str(name)):
            problems.append(f"output name {name!r} is not an identifier (letters, digits, _)")
        rel = relative(path)
        if rel is None:
            problems.append(
                f"output {name} = {path!r} escapes the run's folder: give a relative path "
                f'inside outputs_dir ("{base}/...")'
            )
        elif not (rel + "/").startswith(base + "/") or rel == base:
            problems.append(
                f"output {name} = {path!r} is not inside outputs_dir {outputs_dir!r}, the only "
                f'folder collected: use "{base}/{rel.rsplit("/", 1)[-1]}"'
            )
    return problems


def relative(path: Any) -> str | None:
    """``path`` as a normalised relative path inside its folder, or None."""
    if not isinstance(path, str) or not path or path.startswith("/") or "\0" in path:
        return None
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def collect_outputs(
    declared: dict[str, str], outputs_dir: str, collected: Path, store: Path, run: dict[str, Any]
) -> dict[str, Any]:
    """Hash each declared output in a collected run's ``collected`` outputs folder, keep
    its blobs and manifest in the workspace ``store``, and return name -> its content
    (``id``, ``files``, ``bytes``, where it came from). An output that is not there is
    left out (the launcher failed the run for it)."""
    found: dict[str, Any] = {}
    base = outputs_dir.strip("/")
    for name, path in sorted(declared.items()):
        rel = relative(path)
        if rel is None or not (rel + "/").startswith(base + "/"):
            continue
        place = collected / rel[len(base) + 1 :]
        # Each collected run is a new folder: its hashes are not worth caching.
        try:
            with tempfile.TemporaryDirectory(prefix="trainform-outputs-") as cache:
                if place.is_dir() and not place.is_symlink():
                    snap = snapshot(place, Path(cache) / "h", 1 << 62, 1 << 62, plain=True)
                    content = Content(snap.manifest, place, None)
                elif place.is_file() and not place.is_symlink():
                    content = _file_content(place, Path(cache))
                else:
                    continue
        except SnapshotError as exc:
            raise ProviderError(f"output {name} of run {run.get('run_id')}: {exc}") from None
        keep(content, store)
        found[name] = {
            **content_summary(content.manifest),
            "file": content.file,
            "from": run.get("address"),
            "run_id": run.get("run_id"),
            "store": str(store),
        }
    return found


def keep(content: Content, store: Path, progress: Callable[[int], None] | None = None) -> None:
    """Put a content's blobs and manifest in a workspace's store (idempotent); ``progress``
    as :func:`store_blobs` takes it. Content on a host is copied by
    :func:`~trainform.runs.host_datasets.copy_from_host` instead."""
    store_blobs(content.manifest, content.root, store / "snapshots" / "blobs", progress)
    save_manifest(content.manifest, store / "snapshots" / "manifests")


# -- a run's inputs ---------------------------------------------------------------------------


def input_problems(inputs: Any, mode: Any) -> list[str]:
    """What is wrong with a run's ``inputs`` map: names, and values that are not a dataset
    or another run's named output."""
    # A map with unknown values (a dataset not defined yet) still has known names to check.
    if inputs is None or (is_unknown(inputs) and not isinstance(inputs, dict)):
        return []
    if not isinstance(inputs, dict):
        return ['inputs must be a map of name -> dataset.NAME or run.NAME.outputs["x"]']
    problems = []
    names: dict[str, str] = {}
    for name, value in inputs.items():
        if not IDENTIFIER.fullmatch(str(name)):
            problems.append(
                f"input name {name!r} is not an identifier (letters, digits and _, not "
                "starting with a digit): it becomes TRAINFORM_INPUT_<NAME> and --NAME"
            )
            continue
        upper = str(name).upper()
        if upper in names:
            problems.append(f"inputs {names[upper]!r} and {name!r} are the same variable {upper}")
        names[upper] = str(name)
        if is_unknown(value):
            continue
        if not isinstance(value, dict) or "id" not in value:
            problems.append(
                f"input {name} must be a dataset (dataset.NAME) or a named output of another "
                f'run (run.NAME.outputs["x"]), not {type(value).__name__} {value!r}'[:300]
            )
    return problems


def on_hosts(inputs: Any) -> bool:
    """Whether any of a run's inputs is an ssh:// dataset."""
    return isinstance(inputs, dict) and any(_on_host(v) for v in inputs.values())


def _on_host(value: Any) -> bool:
    """Whether an input is an ssh:// dataset (data on an ssh compute's host)."""
    return isinstance(value, dict) and source_kind(str(value.get("source") or "")) == "ssh"


def input_ids(inputs: Any) -> dict[str, Any]:
    """name -> content id of each input, as the fingerprint holds them (None while unknown)."""
    if not isinstance(inputs, dict):
        return {}
    return {
        str(k): (v.get("id") if isinstance(v, dict) and not is_unknown(v) else None)
        for k, v in sorted(inputs.items())
    }


def input_summary(inputs: Any) -> dict[str, Any] | None:
    """What a run's history keeps of its inputs: name -> content id and where it came from."""
    if not isinstance(inputs, dict) or not inputs:
        return None
    return {
        str(k): {"id": v.get("id"), "from": origin(v)}
        for k, v in sorted(inputs.items())
        if isinstance(v, dict)
    }


def origin(value: Any) -> str:
    """Where an input comes from, for messages: ``dataset.wine`` or ``run.prep``."""
    if isinstance(value, dict):
        return str(value.get("from") or value.get("address") or "")
    return ""


def pending_inputs(inputs: Any) -> list[str]:
    """The names of inputs whose content is not known yet (their run will run first)."""
    if not isinstance(inputs, dict):
        return []
    return sorted(
        str(k)
        for k, v in inputs.items()
        if is_unknown(v) or (isinstance(v, dict) and is_unknown(v.get("id")))
    )


def assume_unchanged(inputs: Any, before: Any) -> tuple[Any, list[str]]:
    """``inputs`` with those whose content is not known yet (made by runs that run first)
    taken as ``before`` (the inputs the last submission read) had them, and their names:
    the fingerprint this gives tells whether anything else changed."""
    pending = pending_inputs(inputs)
    if not pending or not isinstance(before, dict):
        return inputs, pending
    return {**inputs, **{k: before.get(k) for k in pending}}, pending


def awaiting_reason(pending: list[str], before: Any) -> str:
    """The plan's reason for a change decided once pending inputs are known."""
    old = before if isinstance(before, dict) else {}
    origins = sorted({origin(old.get(k)) for k in pending} - {""})
    return "may be resubmitted, depending on " + (
        " and ".join(f"{o}'s outputs" for o in origins) or "its inputs"
    )


def input_changes(before: Any, after: Any) -> list[str]:
    """Plan reasons: ``input features changed (from run.prep)``, ``input x added``."""
    old = input_ids(before)
    new = input_ids(after)
    reasons = []
    for name in sorted(set(old) | set(new)):
        if name not in old:
            reasons.append(f"input {name} added")
        elif name not in new:
            reasons.append(f"input {name} removed")
        elif old[name] != new[name] and new[name] is not None:
            where = origin((after or {}).get(name))
            reasons.append(f"input {name} changed" + (f" (from {where})" if where else ""))
    return reasons


def link_problems(inputs: Any, here: bool, compute: Any = None) -> list[str]:
    """Why ``input_mode = "link"`` cannot be used for these inputs on a run's ``compute``
    (its address) whose launcher runs on this machine (``here``) or not: a dataset of this
    machine needs ``here``; an ssh:// dataset needs the run on the dataset's own compute."""
    if not isinstance(inputs, dict):
        return [] if here else [NOT_HERE]
    problems = []
    local = False
    for name, value in sorted(inputs.items()):
        if not isinstance(value, dict) or is_unknown(value.get("source")):
            local = True
        elif value.get("run_id"):
            continue  # another run's output: placed from the store, as when copied
        elif _on_host(value):
            owner = value.get("compute")
            where = owner.get("address") if isinstance(owner, dict) else None
            if not where or where != compute:
                problems.append(
                    f"input {name}: {origin(value)} sits on the host of {where} "
                    f"({value.get('source')}), so the run must run on {where}, not on "
                    f"{compute or 'this compute'}"
                )
        else:
            local = True
    if local and not here:
        problems.insert(0, NOT_HERE)
    return problems


NOT_HERE = (
    'input_mode = "link" uses a dataset where it sits, so the run must run on this machine '
    "(local compute, or spark compute without a gateway), or on the ssh compute whose host "
    'holds an ssh:// dataset; elsewhere use input_mode = "copy"'
)


def stage_inputs(
    inputs: dict[str, Any],
    config_dir: Path,
    data_dir: Path,
    store: Path,
    link: bool = False,
    ssh: Any = None,
) -> list[dict[str, Any]]:
    """Make sure every input's blobs are in the run's workspace ``store`` and return the
    launcher's ``inputs`` (``[{"name", "manifest", "file"}]``). A dataset is hashed again
    (one stat per unchanged file) and must still be what the plan saw. Raises ProviderError
    naming the input otherwise. With ``link``, a dataset is not stored: its item names the
    folder (``path``) the launcher uses where it is, read-only (an ssh:// dataset: the folder
    on its host, hashed again there through ``ssh``, the ssh compute provider)."""
    staged: list[dict[str, Any]] = []
    for name, value in sorted(inputs.items()):
        if not isinstance(value, dict) or not isinstance(value.get("id"), str):
            raise ProviderError(f"input {name}: its content is not known")
        if value.get("run_id"):  # another run's output, kept in its workspace's store
            manifest = _stored_manifest(name, value, store)
            file = value.get("file")
        else:
            content = dataset_content(value, config_dir, data_dir / "cache", ssh)
            if content.manifest.id != value["id"]:
                raise ProviderError(
                    f"input {name}: {value.get('address')} ({value.get('source')}) changed "
                    "since it was planned; run `trainform plan` again"
                )
            if link:
                staged.append({"name": name, "path": str(content.root), "file": content.file})
                continue
            if content.host is not None:  # an ssh:// dataset for a run elsewhere: a copy
                from trainform.runs.host_datasets import copy_from_host

                if content.file is not None:
                    raise ProviderError(
                        f"input {name}: {value.get('address')} is one file on its host; "
                        'copying one is not supported: use its folder, or input_mode = "link" '
                        "on its compute"
                    )
                copy_from_host(
                    str(value["source"]), value.get("compute") or {}, ssh, content.manifest, store
                )
                staged.append({"name": name, "manifest": content.manifest.to_dict(), "file": None})
                continue
            progress = None
            if content.manifest.total_size >= PROGRESS_FROM:
                progress = byte_progress(
                    f"input {name}: storing what the workspace's store lacks of "
                    f"{content.manifest.file_count} file(s)",
                    content.manifest.total_size,
                )
            keep(content, store, progress)
            manifest, file = content.manifest, content.file
        staged.append({"name": name, "manifest": manifest.to_dict(), "file": file})
    return staged


def _stored_manifest(name: str, value: dict[str, Any], store: Path) -> Manifest:
    """A run output's manifest, with its blobs copied into ``store`` from the workspace
    store that collected it when that is another one."""
    source = Path(str(value.get("store") or store))
    try:
        manifest = load_manifest(source / "snapshots" / "manifests" / f"{value['id']}.json")
    except SnapshotError as exc:
        raise ProviderError(
            f"input {name} ({value.get('from')}'s output of run {value.get('run_id')}): {exc}"
        ) from None
    if source.resolve() != store.resolve():
        from trainform.runs.shipping import copy_blobs

        hashes = sorted({e.sha256 for e in manifest.entries if e.kind == "file"})
        copy_blobs(hashes, source / "snapshots" / "blobs", store / "snapshots" / "blobs")
        save_manifest(manifest, store / "snapshots" / "manifests")
    return manifest
