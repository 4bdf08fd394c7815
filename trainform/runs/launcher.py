"""The launcher: runs one training run on whatever machine it was copied to.

Every compute type ships this file to its target and starts it as
``python3 launcher.py RUN_DIR``. It uses the standard library only and runs on Python >= 3.8, so
a target needs nothing but an interpreter. ``RUN_DIR/spec.json`` says what to run::

    {"run_id": "...", "address": "run.train", "experiment": "default",
     "manifest": {"entries": [{"path": "train.py", "kind": "file", "sha256": "...",
                               "size": 120, "mode": 420},
                              {"path": "latest", "kind": "link", "target": "train.py"}]},
     "blob_dir": "/abs/blobs",           # blob of sha256 H is blob_dir/H[:2]/H[2:]
     "script": "train.py", "command": null, "arguments": ["--lr", "0.1"],
     "env": {"K": "V"},
     "environment": {"python": "3.11", "user_managed": false, "requirements": ["numpy==1.26"],
                     "hash": "...", "cache_dir": "/abs/envs", "variables": {"K": "V"}},
     "max_duration": 3600.0, "grace_seconds": 10.0,
     "metrics": {"loss": "loss=([0-9.]+)"}, "outputs_dir": "outputs",
     "lib_dir": "/abs/lib",              # holds trainform/tracking.py; prepended to PYTHONPATH
     "extra_env": {"TRAINFORM_NODE_RANK": "0"},
     "node_addresses": "slurm",          # optional: see slurm_node_addresses
     "scheduler_signal": {"name": "USR1", "within": 150},  # optional: see _Plan.signal
     "env_passthrough": ["CUDA_*", "HF_HOME"],   # optional: see inherited_environ
     "secrets": {"env": ["K"], "variables": ["K"]}}

The values of ``env`` and of ``environment.variables`` may be secrets, so they are not in
``spec.json``: a spec lists only their names under ``secrets``, and the values are in
``RUN_DIR/secret/env.json`` (``{"env": {...}, "variables": {...}}``, mode 0600 in a folder of
mode 0700), which the launcher reads and deletes before anything else (:func:`take_secrets`).
Values given in ``env`` and ``environment.variables`` themselves are still accepted.

The run's command gets the launcher's environment as :func:`inherited_environ` filters it,
then the environment's variables, ``env``, and the ``TRAINFORM_*`` variables below.

What it leaves in RUN_DIR:

- ``src/``: the snapshot, recreated and verified against its sha256 sums; the run's working
  directory. ``src/<outputs_dir>`` is ``TRAINFORM_OUTPUT_DIR``.
- ``status.json``: always a complete JSON object (written atomically) whose ``status`` goes
  ``preparing -> running -> completed | failed | canceled | timed_out``; see :func:`write_status`.
- ``output.log``: the run's stdout and stderr as they arrive, plus ``[trainform]`` lines saying
  why a run stopped and ``[environment]`` lines while a virtualenv is built.
- ``metrics.jsonl``: metric lines from ``trainform.tracking`` and from the ``metrics`` regexes.
- ``launcher.log``: the launcher's own diagnostics.

Cancelling a run means sending SIGTERM (or SIGINT, or SIGHUP) to the launcher's pid, which is in
``status.json``: the launcher sends SIGTERM to every process of the run, waits
``grace_seconds``, then kills them all. A second signal kills them at once. When the run's main
process exits, whatever it left running (a daemon it forked) is killed too. The run's
processes are found as :class:`RunProcesses` says: a cgroup v2 of the run's own where one is
writable, else its process group, the launcher's descendants (it is a child subreaper) and the
processes carrying its ``TRAINFORM_LAUNCH_ID`` marker. ``launcher.py --stop RUN_DIR [PID]``
cancels a run from outside: through its launcher, or, once that is gone, by killing what
``status.json`` says the run left. Exit code: 0 when the run completed, 1 otherwise, 2 for a
bad command line.

Attempts: a Slurm batch job that Slurm requeues (preemption, ``scontrol requeue``, a node that
failed) runs its launcher again in the same folder, with ``SLURM_RESTART_COUNT`` set. That
launcher is attempt ``1 + SLURM_RESTART_COUNT`` (``attempt`` in ``status.json``); it moves what
the previous attempt recorded into ``attempts`` (:func:`ended_attempts`), appends to the same
``output.log`` after an ``attempt N (requeued by Slurm)`` line, and recreates the snapshot over
``src/`` (outputs such as checkpoints stay). A stop signal that arrives while the Slurm job is
within ``scheduler_signal.within`` seconds of its time limit (Slurm's ``--signal`` warning, or
its own SIGTERM at the limit) ends the run as ``timed_out``, not ``canceled``.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import posixpath
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from trainform.capture import Source
from trainform.capture import sources as capture_sources
from trainform.capture.logs import PatternError, compile_patterns

SPEC_FILE = "spec.json"
STATUS_FILE = "status.json"
OUTPUT_LOG = "output.log"
LAUNCHER_LOG = "launcher.log"
METRICS_FILE = "metrics.jsonl"
CAPTURE_CACHE = "trainform-capture.json"  # in a built virtualenv: the logging libraries it has
SRC_DIR = "src"
SECRET_DIR = "secret"  # RUN_DIR/secret/env.json, see take_secrets
SECRET_FILE = "env.json"

STATUSES = ("queued", "preparing", "running", "completed", "failed", "canceled", "timed_out")
FINAL_STATUSES = ("completed", "failed", "canceled", "timed_out")

# After the run's main process exits, how long to keep reading output that a process which
# left the group (and so survived the group kill) may still be writing to the pipe.
_DRAIN_SECONDS = 2.0
_POLL_SECONDS = 0.2
_PIP_TAIL_LINES = 20

_SHA256 = re.compile(r"[0-9a-f]{64}")
_ENV_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_VERSION = re.compile(r"[0-9]+(\.[0-9]+){0,2}")


class LauncherError(Exception):
    """A run cannot be prepared or started; the message is meant for the user. ``detail``
    (the last words of a failed build) completes the run's status message; the log already
    holds it, so the log's closing line leaves it out."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class _Canceled(BaseException):
    """Raised from the signal handler while the run is still being prepared."""


# --------------------------------------------------------------------------------------------
# Snapshot


def materialise(manifest: dict[str, Any], blob_dir: Path, dest: Path, link: bool = False) -> None:
    """Recreate the snapshot described by ``manifest`` under ``dest`` (created if needed).

    Files are copied from ``blob_dir`` and checked against their sha256 while copying; each
    lands under its own name only once verified, with its ``mode`` applied. Links are
    recreated as symbolic links after all files. Entries already present in ``dest`` are
    replaced; other files there are left alone.

    ``link`` (an input's data): files are hard links to their blobs where the file system
    allows (no copy, no read; the blob's size is checked), read-only as the blobs are.

    Raises :class:`LauncherError`, naming the entry, for: a path that is absolute or climbs out
    of ``dest``; a missing blob or one whose content does not match; a link whose target is
    absolute or resolves outside ``dest`` (such a link is not left behind); a path that would
    be written through a symbolic link or over a directory.
    """
    entries = manifest.get("entries") if isinstance(manifest, dict) else None
    if not isinstance(entries, list):
        raise LauncherError("the snapshot manifest has no list of entries")
    dest = Path(dest)
    blob_dir = Path(blob_dir)
    dest.mkdir(parents=True, exist_ok=True)
    checked_dirs: set[str] = {""}
    links: list[tuple[str, str]] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise LauncherError(f"snapshot manifest entry {entry!r} is not an object")
        rel = _relative_path(entry.get("path"), "snapshot path")
        kind = entry.get("kind", "file")
        if kind == "file":
            _place_file(entry, rel, blob_dir, dest, checked_dirs, link)
        elif kind == "dir":
            _make_dirs(dest, rel, rel, checked_dirs)
        elif kind in ("link", "symlink"):
            links.append((rel, _link_target(entry, rel)))
        else:
            raise LauncherError(f"snapshot entry {rel}: unknown kind {kind!r}")
    for rel, target in links:
        _make_dirs(dest, posixpath.dirname(rel), rel, checked_dirs)
        path = dest / rel
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.exists():
            raise LauncherError(f"snapshot link {rel}: a directory is in the way")
        os.symlink(target, str(path))
    # Each target was checked on its own; a chain of links can still lead outside ("a" -> ".",
    # "b" -> "a/.."), so check where every link really ends up.
    root = os.path.realpath(str(dest))
    for rel, target in links:
        real = os.path.realpath(str(dest / rel))
        if real != root and not real.startswith(root + os.sep):
            os.unlink(str(dest / rel))
            raise LauncherError(
                f"snapshot link {rel} -> {target} resolves outside the snapshot; refusing it"
            )


def _relative_path(value: object, what: str) -> str:
    """``value`` as a normalised relative POSIX path that stays inside its root."""
    if not isinstance(value, str) or not value or "\0" in value:
        raise LauncherError(f"{what} {value!r} is not a valid relative path")
    if value.startswith("/"):
        raise LauncherError(f"{what} {value} is absolute; it must be relative")
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LauncherError(f"{what} {value} climbs out of its folder with '..'")
    if not parts:
        raise LauncherError(f"{what} {value!r} names no file")
    return "/".join(parts)


def _link_target(entry: dict[str, Any], rel: str) -> str:
    target = entry.get("target")
    if not isinstance(target, str) or not target or "\0" in target:
        raise LauncherError(f"snapshot link {rel} has no valid target")
    if target.startswith("/"):
        raise LauncherError(f"snapshot link {rel} -> {target} is absolute; refusing it")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
    if resolved == ".." or resolved.startswith("../"):
        raise LauncherError(f"snapshot link {rel} -> {target} points outside the snapshot")
    return target


def _make_dirs(dest: Path, rel_dir: str, for_entry: str, checked: set[str]) -> None:
    """Create ``dest/rel_dir`` one component at a time, refusing to go through a link."""
    prefix = ""
    for part in [p for p in rel_dir.split("/") if p]:
        prefix = f"{prefix}/{part}" if prefix else part
        if prefix in checked:
            continue
        path = dest / prefix
        if path.is_symlink():
            raise LauncherError(f"snapshot path {for_entry}: {prefix} is a symbolic link")
        if not path.exists():
            path.mkdir()
        elif not path.is_dir():
            raise LauncherError(f"snapshot path {for_entry}: {prefix} is a file, not a folder")
        checked.add(prefix)


def _place_file(
    entry: dict[str, Any], rel: str, blob_dir: Path, dest: Path, checked: set[str], link: bool
) -> None:
    digest = entry.get("sha256")
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest.lower()):
        raise LauncherError(f"snapshot file {rel} has no valid sha256")
    digest = digest.lower()
    mode = entry.get("mode", 0o644)
    if isinstance(mode, bool) or not isinstance(mode, int):
        raise LauncherError(f"snapshot file {rel} has an invalid mode {mode!r}")
    size = entry.get("size")
    _make_dirs(dest, posixpath.dirname(rel), rel, checked)
    path = dest / rel
    if path.is_dir() and not path.is_symlink():
        raise LauncherError(f"snapshot file {rel}: a directory is in the way")
    blob = blob_dir / digest[:2] / digest[2:]
    tmp = path.parent / f".{path.name}.trainform-{os.getpid()}"
    if link and _linked(blob, rel, size, tmp, path):
        return
    hasher = hashlib.sha256()
    copied = 0
    try:
        try:
            source = open(blob, "rb")  # noqa: SIM115 - closed below, before the rename
        except FileNotFoundError:
            raise LauncherError(f"snapshot file {rel}: its blob {blob} is missing") from None
        with source:
            if tmp.is_symlink() or tmp.exists():
                tmp.unlink()
            fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                for chunk in iter(lambda: source.read(1 << 20), b""):
                    hasher.update(chunk)
                    copied += len(chunk)
                    out.write(chunk)
        if hasher.hexdigest() != digest:
            raise LauncherError(
                f"snapshot file {rel}: its blob does not match its sha256 "
                f"(expected {digest}, got {hasher.hexdigest()})"
            )
        if isinstance(size, int) and not isinstance(size, bool) and size != copied:
            raise LauncherError(f"snapshot file {rel}: expected {size} bytes, blob has {copied}")
        os.chmod(str(tmp), mode & 0o777)
        os.replace(str(tmp), str(path))
    except OSError as exc:
        raise LauncherError(f"snapshot file {rel}: {exc.strerror or exc}") from None
    finally:
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()


def _linked(blob: Path, rel: str, size: object, tmp: Path, path: Path) -> bool:
    """Place ``path`` as a hard link to ``blob``; False where the file system does not allow
    it (another device, a mount, a file system without links): then it is copied."""
    try:
        found = os.stat(str(blob)).st_size
    except FileNotFoundError:
        raise LauncherError(f"input file {rel}: its blob {blob} is missing") from None
    if isinstance(size, int) and not isinstance(size, bool) and size != found:
        raise LauncherError(f"input file {rel}: expected {size} bytes, its blob has {found}")
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.link(str(blob), str(tmp))
    except OSError:
        return False
    os.replace(str(tmp), str(path))
    return True


# --------------------------------------------------------------------------------------------
# Inputs: data a run reads (datasets, other runs' outputs), read-only

INPUTS_DIR = "inputs"
_INPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Input(NamedTuple):
    name: str
    path: Path  # what TRAINFORM_INPUT_<NAME> names: the folder, or a one-file input's file
    root: Path  # the folder that holds it
    stamps: dict[str, tuple[int, int, int]]  # relative path -> (size, mtime_ns, inode)
    linked: bool = False  # the user's own folder (input_mode = "link"): never chmod-ed


def place_inputs(
    spec_inputs: object, blob_dir: Path, run_dir: Path, mounted: bool = False
) -> list[Input]:
    """Materialise spec ``inputs`` (``[{"name", "manifest", "file"}]``) under
    ``run_dir/inputs/NAME``, read-only. Files are hard links to the blob store (no copy)
    where the run cannot write them: the launcher is not root (file modes hold), or it is
    and ``inputs`` is mounted read-only for it and the run (a mount namespace of their
    own), or the caller mounts it read-only where the run runs (``mounted``: a container's
    bind mount). Otherwise they are copies, so a root run writing into an input cannot
    reach the store. An item ``placed`` was placed so before the launcher started. Returns
    what is needed to tell afterwards whether the run changed them
    (:func:`changed_inputs`)."""
    if spec_inputs is None:
        return []
    if not isinstance(spec_inputs, list):
        raise LauncherError("spec.json: 'inputs' must be a list")
    items = []
    for item in spec_inputs:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise LauncherError(f"spec.json: input {item!r} has no name")
        if not _INPUT_NAME.fullmatch(item["name"]):
            raise LauncherError(f"spec.json: input name {item['name']!r} is not an identifier")
        items.append(item)
    if not items:
        return []
    ready = [_placed_input(item, run_dir) for item in items if item.get("placed")]
    items = [item for item in items if not item.get("placed")]
    if not items:
        return ready
    root_user = os.geteuid() == 0
    private = root_user and not mounted and _private_mounts()
    stored = [item for item in items if "path" not in item]
    link = not root_user or private or mounted
    placed = ready + [_place_input(item, blob_dir, run_dir, link) for item in stored]
    if stored and private and not _mount_readonly(run_dir / INPUTS_DIR):
        placed = [_place_input(item, blob_dir, run_dir, False) for item in stored]
    return placed + [_linked_input(item, run_dir, private) for item in items if "path" in item]


def _placed_input(item: dict[str, Any], run_dir: Path) -> Input:
    root = run_dir / INPUTS_DIR / item["name"]
    if not root.is_dir():
        raise LauncherError(f"input {item['name']}: {root} was not placed")
    one = item.get("file")
    path = root / _relative_path(one, "input file") if one is not None else root
    return Input(item["name"], path, root, _stamps(root))


def _linked_input(item: dict[str, Any], run_dir: Path, private: bool) -> Input:
    """An input used where it sits (``input_mode = "link"``: spec ``path``, a folder of
    this machine): mounted read-only at ``inputs/NAME`` where the launcher may (root), else
    named as it is, its files' stamps kept to tell whether the run wrote into it."""
    source = item.get("path")
    if not isinstance(source, str) or not os.path.isabs(source) or not os.path.isdir(source):
        raise LauncherError(f"input {item['name']}: {source!r} is not a folder on this machine")
    one = item.get("file")
    if private:
        mount_at = run_dir / INPUTS_DIR / item["name"]
        mount_at.mkdir(parents=True, exist_ok=True)
        if _mount_readonly(mount_at, Path(source)):
            path = mount_at / _relative_path(one, "input file") if one is not None else mount_at
            return Input(item["name"], path, mount_at, _stamps(mount_at))
    root = Path(source)
    path = root / _relative_path(one, "input file") if one is not None else root
    stamps = _stamps(root) if one is None else {one: _stamps(root).get(one, (0, 0, 0))}
    return Input(item["name"], path, root, stamps, linked=True)


def _place_input(item: dict[str, Any], blob_dir: Path, run_dir: Path, link: bool) -> Input:
    root = run_dir / INPUTS_DIR / item["name"]
    if root.exists():  # a requeued attempt, or copies instead of links: placed again
        _make_writable(root)
        shutil.rmtree(str(root))
    materialise(item.get("manifest") or {}, blob_dir, root, link=link)
    one = item.get("file")
    path = root / _relative_path(one, "input file") if one is not None else root
    for folder, _dirs, files in os.walk(str(root)):
        os.chmod(folder, 0o555)
        if not link:
            for name in files:
                os.chmod(os.path.join(folder, name), 0o444)
    return Input(item["name"], path, root, _stamps(root))


_CLONE_NEWNS = 0x00020000
_MS_RDONLY, _MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18


def _libc() -> Any:
    import ctypes
    import ctypes.util

    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _private_mounts() -> bool:
    """Give this process (and the run it starts) a mount namespace of its own whose mounts
    never reach the machine's; False where that is not allowed (no CAP_SYS_ADMIN, as in
    most containers)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = _libc()
        if libc.unshare(_CLONE_NEWNS) != 0:
            return False
        return bool(libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None) == 0)
    except (OSError, AttributeError):
        return False


def _mount_readonly(folder: Path, source: Path | None = None) -> bool:
    """Bind-mount ``source`` (default: ``folder`` itself) read-only at ``folder`` (in the
    private namespace): even root gets "Read-only file system" writing into it."""
    path = os.fsencode(str(folder))
    origin = os.fsencode(str(source)) if source is not None else path
    try:
        libc = _libc()
        if libc.mount(origin, path, None, _MS_BIND | _MS_REC, None) != 0:
            return False
        if libc.mount(None, path, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY, None) == 0:
            return True
        libc.umount2(path, 0)
    except (OSError, AttributeError):
        pass
    return False


def _stamps(root: Path) -> dict[str, tuple[int, int, int]]:
    found = {}
    for folder, _dirs, files in os.walk(str(root)):
        for name in files:
            full = os.path.join(folder, name)
            st = os.lstat(full)
            found[os.path.relpath(full, str(root))] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return found


def _make_writable(root: Path) -> None:
    for folder, _dirs, _files in os.walk(str(root)):
        with contextlib.suppress(OSError):
            os.chmod(folder, 0o755)


def changed_inputs(inputs: list[Input], blob_dir: Path) -> list[str]:
    """The input files (``NAME/PATH``) the run added, removed or wrote; a changed file that
    was a link to a blob is taken out of the blob store, which then gets it again."""
    changed = []
    for item in inputs:
        now = _stamps(item.root) if item.root.is_dir() else {}
        for rel in sorted(set(now) | set(item.stamps)):
            if now.get(rel) != item.stamps.get(rel):
                changed.append(f"{item.name}/{rel}")
                old = item.stamps.get(rel)
                if old is not None and now.get(rel) is not None and not item.linked:
                    _drop_blob_of(blob_dir, old[2])
    return changed


def _drop_blob_of(blob_dir: Path, inode: int) -> None:
    """Remove from the blob store the blob that is inode ``inode`` (a linked input file the
    run wrote into as root), so no other run reads the changed bytes."""
    for folder, _dirs, files in os.walk(str(blob_dir)):
        for name in files:
            full = os.path.join(folder, name)
            with contextlib.suppress(OSError):
                if os.lstat(full).st_ino == inode:
                    os.unlink(full)
                    return


# --------------------------------------------------------------------------------------------
# Interpreter and environment


def resolve_python(spec: str) -> str:
    """The interpreter that ``spec`` names on this machine, as a path.

    ``spec`` is a command name looked up on ``PATH`` (``"python3"``), an absolute path that
    must be an executable file, or a version: ``"3.11"`` is ``python3.11`` on ``PATH``,
    ``"3"`` is ``python3``, ``"3.11.4"`` is ``python3.11`` reporting exactly 3.11.4. The
    launcher's own interpreter is preferred when its version matches; an interpreter found on
    ``PATH`` for a version must run and report that version.
    Raises :class:`LauncherError` when nothing fits.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise LauncherError(f"python {spec!r} is not a command, path or version")
    spec = spec.strip()
    if spec.startswith("/"):
        if not os.path.isfile(spec):
            raise LauncherError(f"python {spec} does not exist on this machine")
        if not os.access(spec, os.X_OK):
            raise LauncherError(f"python {spec} is not executable")
        return spec
    if _VERSION.fullmatch(spec):
        wanted = tuple(int(p) for p in spec.split("."))
        # The launcher's own interpreter is known to work; a PATH entry may be a stub (a
        # pyenv shim for a version that is not active, say), so it has to prove its version.
        if tuple(sys.version_info[: len(wanted)]) == wanted and sys.executable:
            return sys.executable
        name = "python" + ".".join(str(p) for p in wanted[:2])
        found = shutil.which(name)
        if found:
            version = _interpreter_version(found)
            if version is not None and version[: len(wanted)] == wanted:
                return found
            raise LauncherError(
                f"python {spec} not found on this machine's PATH ({found} "
                + ("did not run" if version is None else f"is {'.'.join(map(str, version))}")
                + ")"
            )
        raise LauncherError(f"python {spec} not found on this machine's PATH (looked for {name})")
    if "/" in spec:
        raise LauncherError(
            f"python {spec} must be a command name, an absolute path or a version such as 3.11"
        )
    found = shutil.which(spec)
    if not found:
        raise LauncherError(f"python {spec} not found on this machine's PATH")
    return found


def _interpreter_version(python: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('.'.join(map(str, sys.version_info[:3])))"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            timeout=60,
            check=True,
        ).stdout
        return tuple(int(p) for p in out.decode().strip().split("."))
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def prepare_environment(env_spec: dict[str, Any], log: Callable[[str], None]) -> tuple[str, str]:
    """Make the run's Python environment ready; return ``(python, how)``.

    A user-managed environment, or one without requirements, is the interpreter that
    ``env_spec["python"]`` names, as it is: ``how`` is ``"as-is"``. Otherwise it is a
    virtualenv at ``cache_dir/<hash>/``, shared by every run with the same hash: built once
    (``how`` is ``"built"``) and reused afterwards (``"reused"``). Concurrent launchers wait for
    each other on an exclusive lock on ``cache_dir/<hash>.lock``. A build happens in
    ``cache_dir/<hash>.tmp-<pid>`` (``python -m venv`` then ``pip install -r``) and is renamed
    into place only when it succeeded, so a half-built environment is never used; a failed or
    interrupted build is removed. ``log`` receives progress and the build's output line by line.

    Blocks for as long as the build (or another launcher's build) takes. Raises
    :class:`LauncherError` for an invalid spec, an interpreter that cannot be found, or a
    failed build (the message ends with the last lines of the failing command's output).
    """
    if env_spec is None:
        env_spec = {}
    if not isinstance(env_spec, dict):
        raise LauncherError("spec.json: 'environment' must be an object")
    python = resolve_python(str(env_spec.get("python") or "python3"))
    requirements = env_spec.get("requirements") or []
    if not isinstance(requirements, list) or not all(
        isinstance(r, str) and "\n" not in r and "\r" not in r for r in requirements
    ):
        raise LauncherError("environment requirements must be a list of single-line strings")
    if env_spec.get("user_managed") or not requirements:
        return python, "as-is"

    key = env_spec.get("hash")
    if not isinstance(key, str) or not _ENV_KEY.fullmatch(key):
        raise LauncherError(f"environment hash {key!r} is not a valid folder name")
    cache_value = env_spec.get("cache_dir")
    if not isinstance(cache_value, str) or not cache_value:
        raise LauncherError("environment cache_dir is missing")
    cache_dir = Path(os.path.expanduser(cache_value))
    variables = _str_dict(env_spec.get("variables"), "environment variables")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(str(cache_dir / f"{key}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise LauncherError(f"cannot use environment cache {cache_dir}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another run that is building environment {key}")
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
        final = cache_dir / key
        venv_python = str(final / "bin" / "python")
        if (final / ".complete").is_file():
            log(f"reusing environment {final}")
            return venv_python, "reused"
        # We hold the lock: anything else under this hash is left from an interrupted build.
        for stale in cache_dir.glob(f"{key}.tmp-*"):
            shutil.rmtree(str(stale), ignore_errors=True)
        if final.is_symlink() or final.is_file():
            final.unlink()
        elif final.exists():
            shutil.rmtree(str(final))
        tmp = cache_dir / f"{key}.tmp-{os.getpid()}"
        try:
            _build_virtualenv(python, requirements, tmp, final, variables, log)
            os.rename(str(tmp), str(final))
        except BaseException:
            shutil.rmtree(str(tmp), ignore_errors=True)
            raise
        _fsync_dir(cache_dir)
        log(f"built environment {final}")
        return venv_python, "built"
    finally:
        os.close(lock_fd)


def _build_virtualenv(
    python: str,
    requirements: list[str],
    tmp: Path,
    final: Path,
    variables: dict[str, str],
    log: Callable[[str], None],
) -> None:
    env = inherited_environ(dict(os.environ))
    env.update(variables)
    env["PYTHONUNBUFFERED"] = "1"
    log(f"building environment {final.name} with {python}: {', '.join(requirements)}")
    tail: collections.deque[str] = collections.deque(maxlen=_PIP_TAIL_LINES)
    code = _run_logged([python, "-m", "venv", str(tmp)], env, log, tail)
    if code != 0:
        raise LauncherError(
            f"environment build failed: {python} -m venv exited with code {code}",
            _last_words(tail),
        )
    req_file = tmp / "requirements.txt"
    req_file.write_text("".join(r + "\n" for r in requirements))
    tail.clear()
    pip = [str(tmp / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    code = _run_logged([*pip, "-r", str(req_file)], env, log, tail)
    if code != 0:
        raise LauncherError(
            f"environment build failed: pip install exited with code {code}", _last_words(tail)
        )
    # Scripts pip wrote (bin/pip, console entry points) name the build folder in their
    # first line; point them at the folder the environment is about to be renamed to.
    _replace_in_scripts(tmp / "bin", str(tmp), str(final))
    info = {"python": python, "requirements": requirements, "built": _now()}
    with open(str(tmp / ".complete"), "w") as f:
        f.write(json.dumps(info) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _last_words(tail: collections.deque[str]) -> str:
    """The last non-empty line of a failed build's output, for its one-line message (every
    line is in the run's log already)."""
    for line in reversed(tail):
        if line.strip():
            return ": " + line.strip()[:300]
    return ""


def _run_logged(
    argv: list[str], env: dict[str, str], log: Callable[[str], None], tail: collections.deque[str]
) -> int:
    """Run ``argv``, passing each output line to ``log`` and keeping the last ones in ``tail``.
    The process (and its group) is killed if this is interrupted."""
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        tail.append(f"cannot start {argv[0]}: {exc.strerror}")
        return 127
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            tail.append(line)
            log(line)
        return proc.wait()
    finally:
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _replace_in_scripts(bin_dir: Path, old: str, new: str) -> None:
    if not bin_dir.is_dir():
        return
    old_b, new_b = old.encode(), new.encode()
    for path in bin_dir.iterdir():
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 1 << 20:
            continue
        data = path.read_bytes()
        if old_b in data:
            path.write_bytes(data.replace(old_b, new_b))


# --------------------------------------------------------------------------------------------
# Status


def zip_python_files(src: Path, dest: Path, skip: str) -> int:
    """Zip the ``.py`` files under ``src`` (not under its ``skip`` folder, the outputs; no
    symbolic link followed) into ``dest``, by their paths relative to ``src``. Returns how
    many went in."""
    import zipfile

    count = 0
    partial = dest.with_name(f".{dest.name}.partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for folder, dirs, files in os.walk(src):
            rel_dir = os.path.relpath(folder, src)
            dirs[:] = sorted(
                d
                for d in dirs
                if os.path.normpath(os.path.join(rel_dir, d)) != os.path.normpath(skip)
                and not os.path.islink(os.path.join(folder, d))
            )
            for name in sorted(files):
                path = os.path.join(folder, name)
                if name.endswith(".py") and not os.path.islink(path):
                    archive.write(path, os.path.normpath(os.path.join(rel_dir, name)))
                    count += 1
    os.replace(partial, dest)
    return count


def write_status(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into ``run_dir/status.json`` and return the merged status.

    The file is replaced atomically (written to a temporary file, flushed, fsynced, renamed,
    then the folder fsynced), so a reader sees the old or the new status, never a partial one.
    Fields in use: ``status`` (one of :data:`STATUSES`), ``exit_code``, ``signal``,
    ``launcher_pid``, ``child_pid``, ``pgid``, ``host``, ``created``, ``started``,
    ``finished`` (ISO-8601 UTC), ``message``, ``environment`` (``"built"``, ``"reused"`` or
    ``"as-is"``), ``python``, and what finds the run's processes again
    (:meth:`RunProcesses.fields`, ``launcher``: this file's path). Only one process should
    write a run's status at a time.
    """
    run_dir = Path(run_dir)
    status = read_status(run_dir)
    if "status" in fields and fields["status"] not in STATUSES:
        raise ValueError(f"unknown run status {fields['status']!r}")
    status.update(fields)
    path = run_dir / STATUS_FILE
    tmp = run_dir / f".{STATUS_FILE}.tmp-{os.getpid()}"
    with open(str(tmp), "w", encoding="utf-8") as f:
        f.write(json.dumps(status, indent=2, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(str(tmp), str(path))
    _fsync_dir(run_dir)
    return status


def read_status(run_dir: Path) -> dict[str, Any]:
    """The contents of ``run_dir/status.json``; an empty dict when there is none yet."""
    try:
        with open(str(Path(run_dir) / STATUS_FILE), encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    return data if isinstance(data, dict) else {}


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a folder; the rename is still atomic
    finally:
        os.close(fd)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


# --------------------------------------------------------------------------------------------
# Attempts (a Slurm job that Slurm requeued runs again in the same folder)

ATTEMPT_FIELDS = ("host", "started", "finished", "status", "message")
_MAX_ATTEMPTS_KEPT = 100


def attempt_number(environ: dict[str, str]) -> int:
    """This launch's attempt at its run: 1, or ``1 + SLURM_RESTART_COUNT`` in a batch job
    that Slurm requeued and started again."""
    count = environ.get("SLURM_RESTART_COUNT", "")
    return 1 + int(count) if count.isdigit() and len(count) < 7 else 1


def _attempt_of(status: dict[str, Any]) -> int:
    value = status.get("attempt")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def ended_attempts(status: dict[str, Any], attempt: int) -> list[dict[str, Any]]:
    """The attempts before ``attempt``, given ``status`` as the previous attempt left it: those
    it lists under ``attempts``, then that attempt itself (``ended: "requeued"``; a status that
    is not final means its launcher was killed or its node failed). Idempotent: an attempt
    already listed is not added again."""
    earlier = [a for a in status.get("attempts") or [] if isinstance(a, dict)]
    earlier = earlier[-_MAX_ATTEMPTS_KEPT:]
    previous = _attempt_of(status)
    if previous < attempt and not any(a.get("attempt") == previous for a in earlier):
        entry: dict[str, Any] = {"attempt": previous, **{k: status.get(k) for k in ATTEMPT_FIELDS}}
        if entry["status"] not in FINAL_STATUSES:
            entry["status"] = "interrupted"
            entry["message"] = "no outcome recorded (its launcher was killed, or its node failed)"
        entry["ended"] = "requeued"
        earlier.append(entry)
    return earlier


def all_attempts(status: dict[str, Any]) -> list[dict[str, Any]]:
    """Every attempt of a run whose status is ``status``: the ended ones, then the current one;
    empty for a run that had only one."""
    earlier = [a for a in status.get("attempts") or [] if isinstance(a, dict)]
    if not earlier:
        return []
    return [
        *earlier,
        {"attempt": _attempt_of(status), **{k: status.get(k) for k in ATTEMPT_FIELDS}},
    ]


def slurm_time_left(environ: dict[str, str]) -> int | None:
    """Seconds until the Slurm job this launcher runs in reaches its time limit (``squeue``'s
    ``%L``); ``None`` outside a Slurm job, without a limit, or when squeue does not answer
    within 5 s."""
    job = environ.get("SLURM_JOB_ID", "")
    if not job.isdigit():
        return None
    try:
        done = subprocess.run(
            ["squeue", "--noheader", f"--jobs={job}", "--format=%L"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    # D-HH:MM:SS, H:MM:SS or M:SS (this stdlib-only file cannot use slurm_cli.parse_duration)
    m = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)", done.stdout.strip()[:40])
    if done.returncode != 0 or not m:
        return None
    days, hours, minutes, seconds = (int(g or 0) for g in m.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


# --------------------------------------------------------------------------------------------
# Running


class _Plan(NamedTuple):
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    sources: list[Source]
    max_duration: float | None
    grace: float
    watch_pid: int | None  # cancel the run if this process (a sweep controller) goes away
    # spec "scheduler_signal": a stop signal within `within` seconds of the Slurm job's time
    # limit times the run out; `name`, if not a stop signal (USR1), is passed on to the run.
    signal: dict[str, Any]
    inputs: list[Input] = []
    blob_dir: Path = Path()
    declared: dict[str, str] = {}  # the run's named outputs: name -> path in its folder


class _Logs:
    """``output.log`` (the run's output, unbuffered) and ``launcher.log`` (diagnostics)."""

    def __init__(self, run_dir: Path) -> None:
        self.output = open(str(run_dir / OUTPUT_LOG), "ab", buffering=0)  # noqa: SIM115
        self.launcher = open(str(run_dir / LAUNCHER_LOG), "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        self.at_line_start = True

    def diag(self, message: str) -> None:
        for line in message.splitlines() or [""]:
            self.launcher.write(f"{_now()} {line}\n")

    def child_output(self, data: bytes) -> None:
        self.output.write(data)
        self.at_line_start = data.endswith(b"\n")

    def note(self, message: str, prefix: str = "[trainform]") -> None:
        """A line of trainform's own in ``output.log`` (and ``launcher.log``)."""
        text = "".join(f"{prefix} {line}\n" for line in message.splitlines() or [""])
        self.output.write((b"" if self.at_line_start else b"\n") + text.encode("utf-8"))
        self.at_line_start = True
        self.diag(message)

    def environment(self, line: str) -> None:
        self.note(line, "[environment]")

    def close(self) -> None:
        self.output.close()
        self.launcher.close()


def _signal_group(pgid: int, sig: int) -> None:
    # The group may be gone already (macOS reports a group of zombies as EPERM).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def process_running(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return True


def _exited(pid: int) -> bool:
    """Whether ``pid`` (our child) has exited, without reaping it: while it is an unreaped
    zombie its process group id cannot be reused, so the group can still be killed safely."""
    waitid = getattr(os, "waitid", None)
    if waitid is None:  # pragma: no cover - every Linux and macOS Python has it
        return False
    try:
        return waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


# --------------------------------------------------------------------------------------------
# Every process of a run

# In the environment of the run's command: a random token per launch by which every process
# the run started is found again in /proc/PID/environ, also one that left the process group
# and the process tree (fork, setsid, fork), and also after the launcher is gone.
LAUNCH_MARKER = "TRAINFORM_LAUNCH_ID"
# In the launcher's own environment: "off" keeps it from using a cgroup (the fallback alone).
CGROUP_SETTING = "TRAINFORM_LAUNCHER_CGROUP"
CGROUP_PREFIX = "trainform-"
# How long stopping may take before the launcher gives up on a process it cannot kill.
_STOP_SECONDS = 5.0
_PR_SET_CHILD_SUBREAPER = 36

# `python3 -c STOP_SCRIPT RUN_DIR LAUNCHER_PID` on a target: cancel a run with the launcher
# that started it (`launcher.py --stop`, see :func:`stop_run`), or, for a launcher too old to
# record its path, with SIGTERM to the launcher as before.
STOP_SCRIPT = r"""
import json, os, signal, sys
run_dir, pid = sys.argv[1], sys.argv[2]
try:
    with open(os.path.join(run_dir, "status.json")) as f:
        status = json.load(f)
except (OSError, ValueError):
    status = {}
launcher = status.get("launcher") if isinstance(status, dict) else None
if isinstance(launcher, str) and os.path.isfile(launcher):
    os.execv(sys.executable, [sys.executable, launcher, "--stop", run_dir, pid])
try:
    os.kill(int(pid), signal.SIGTERM)
except (OSError, ValueError):
    pass
"""


class _Proc(NamedTuple):
    state: str
    ppid: int
    pgid: int
    start: str  # start time in clock ticks since boot: tells a reused pid apart


def _process_table() -> dict[int, _Proc]:
    """Every process in /proc (empty where there is no /proc)."""
    table: dict[int, _Proc] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return table
    for entry in entries:
        if entry.isdigit():
            proc = _process_entry(int(entry))
            if proc is not None:
                table[int(entry)] = proc
    return table


def _process_entry(pid: int) -> _Proc | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # the command name is in parentheses and may hold anything, ")" included
            fields = f.read().rsplit(b")", 1)[1].split()
        return _Proc(fields[0].decode(), int(fields[1]), int(fields[2]), fields[19].decode())
    except (OSError, IndexError, ValueError):
        return None


def _command_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return "?"


def _cgroup2_own_dir() -> tuple[str | None, str]:
    """The folder of this process's own cgroup in the cgroup v2 hierarchy (mounted at
    /sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host), or None and why not."""
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return None, "no /proc/self/cgroup"
    own = next((line[3:] for line in lines if line.startswith("0::")), None)
    if not own or not own.startswith("/"):
        return None, "no cgroup v2 hierarchy (cgroup v1 only)"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            mounts = f.read().splitlines()
    except OSError:
        return None, "no /proc/self/mountinfo"
    for line in mounts:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if not right.startswith("cgroup2 ") or len(fields) < 5:
            continue
        root, point = (_unescape_mount(fields[3]), _unescape_mount(fields[4]))
        if root == "/":
            rel = own
        elif own == root or own.startswith(root + "/"):
            rel = own[len(root) :] or "/"
        else:
            continue  # this mount shows another part of the hierarchy
        path = point if rel == "/" else point.rstrip("/") + rel
        if os.path.isfile(os.path.join(path, "cgroup.procs")):
            return path, ""
    return None, "no cgroup2 file system mounted here shows this process's cgroup"


def _unescape_mount(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _write_file(path: str, text: str) -> bool:
    try:
        with open(path, "w") as f:
            f.write(text)
        return True
    except OSError:
        return False


def make_run_cgroup(run_id: str) -> tuple[str | None, str]:
    """Create a cgroup v2 for a run's processes, a child of the launcher's own cgroup; return
    its path, or None and why there is none (not Linux, cgroup v1 only, not writable by this
    user: an unprivileged user's login session cgroup usually is not, nor is a container's
    read-only /sys/fs/cgroup). Never raises. Empty cgroups that launchers no longer running
    left behind (killed with SIGKILL) are removed on the way."""
    if os.environ.get(CGROUP_SETTING, "").lower() in ("0", "off", "no", "false"):
        return None, f"{CGROUP_SETTING} is off"
    parent, why = _cgroup2_own_dir()
    if parent is None:
        return None, why
    _remove_stale_cgroups(parent)
    name = CGROUP_PREFIX + re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)[:80] + f"-{os.getpid()}"
    path = os.path.join(parent, name)
    try:
        os.mkdir(path)
    except FileExistsError:
        pass  # left by an earlier launcher with this pid; still ours to use
    except OSError as exc:
        return None, f"cannot create a cgroup in {parent}: {exc.strerror}"
    if not os.access(os.path.join(path, "cgroup.procs"), os.W_OK):
        with contextlib.suppress(OSError):
            os.rmdir(path)
        return None, f"cannot move processes into a cgroup in {parent}"
    return path, ""


def _remove_stale_cgroups(parent: str) -> None:
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        match = re.fullmatch(re.escape(CGROUP_PREFIX) + r".*-([0-9]+)", name)
        if not match or process_running(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(parent, name))  # fails while it still holds processes


def _become_subreaper() -> bool:
    """Make orphans among this process's descendants its children instead of init's (Linux
    3.4+), so that a daemon a run double-forks is still found by its parent links."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (ImportError, OSError, AttributeError):
        return False


def _reap_children(keep: int | None) -> None:
    """Reap exited children other than ``keep`` (orphans re-parented to a subreaper)."""
    waitid = getattr(os, "waitid", None)
    if waitid is None:  # pragma: no cover - every Linux and macOS Python has it
        return
    for _ in range(10000):
        try:
            info = waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid == keep:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(info.si_pid, os.WNOHANG)


class RunProcesses:
    """Every process a run started, found and signalled as one.

    Where a cgroup v2 is writable (``cgroup``, see :func:`make_run_cgroup`) the run's command
    starts in a cgroup of its own, and everything it starts stays there whatever it does
    (double fork, ``setsid``, a cleared environment); stopping kills the cgroup
    (``cgroup.kill``, or each pid of ``cgroup.procs`` while it is frozen). Always, and alone
    where no cgroup is writable, the run's processes are also found in /proc: its process group
    ``pgid``; the descendants of ``launcher`` by their parent links (the launcher is a child
    subreaper, so an orphaned daemon is re-parented to it, not to init); and every process
    whose environment holds ``LAUNCH_MARKER=launch_id`` (readable for processes of the same
    user). ``launcher`` is None once the launcher is gone (:func:`stop_leftovers`).
    """

    def __init__(
        self,
        launch_id: str | None,
        cgroup: str | None = None,
        pgid: int | None = None,
        leader_start: str | None = None,
        launcher: int | None = None,
    ) -> None:
        self.launch_id = launch_id
        self.cgroup = cgroup
        self.pgid = pgid
        self.leader_start = leader_start  # start time of the process whose pid is pgid
        self.launcher = launcher
        self.refused: set[int] = set()  # pids that may not be signalled (another user's)
        self.survivors: list[int] = []  # what the last stop() could not kill
        self.names: dict[int, str] = {}  # command names of the processes stop() saw

    def start(self, argv: list[str], cwd: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start the run's command in its own session and process group (and cgroup, when
        there is one), stdout and stderr on one pipe, with the launch marker in its
        environment. Raises OSError when the command cannot be started."""
        env = dict(env)
        if self.launch_id:
            env[LAUNCH_MARKER] = self.launch_id
        proc = None
        if self.cgroup:
            try:
                procs_fd = os.open(os.path.join(self.cgroup, "cgroup.procs"), os.O_WRONLY)
            except OSError:
                self.remove()
            else:

                def enter_cgroup() -> None:  # in the child, before exec
                    os.write(procs_fd, str(os.getpid()).encode())

                try:
                    proc = self._popen(argv, cwd, env, enter_cgroup)
                except subprocess.SubprocessError:
                    # the move was refused (delegation rules): the command never ran
                    self.remove()
                finally:
                    os.close(procs_fd)
        if proc is None:
            proc = self._popen(argv, cwd, env, None)
        self.pgid = proc.pid
        entry = _process_entry(proc.pid)
        self.leader_start = entry.start if entry else None
        return proc

    @staticmethod
    def _popen(
        argv: list[str], cwd: str, env: dict[str, str], preexec: Callable[[], None] | None
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec,  # safe: the launcher runs no threads
        )

    def fields(self) -> dict[str, Any]:
        """What status.json records so that :func:`stop_leftovers` can find them later."""
        return {
            "launch_id": self.launch_id,
            "cgroup": self.cgroup,
            "pgid": self.pgid,
            "child_start": self.leader_start,
        }

    def members(self) -> list[int]:
        """The run's live processes (zombies are not counted), the launcher never."""
        skip = {os.getpid(), 1, self.launcher}
        found: list[int] = []
        if self.cgroup:
            for pid in self._cgroup_pids():
                if pid not in skip and process_running(pid):
                    found.append(pid)
        table = _process_table()
        live = {pid: p for pid, p in table.items() if p.state not in ("Z", "X")}
        if self._group_is_ours(table):
            found += [pid for pid, p in live.items() if p.pgid == self.pgid]
        if self.launcher is not None:
            children: dict[int, list[int]] = {}
            for pid, p in table.items():
                children.setdefault(p.ppid, []).append(pid)
            todo = list(children.get(self.launcher, []))
            while todo:
                pid = todo.pop()
                if pid in live:
                    found.append(pid)
                todo += children.get(pid, [])
        if self.launch_id:
            entry = f"\0{LAUNCH_MARKER}={self.launch_id}\0".encode()
            seen = set(found)
            for pid in live:
                if pid not in seen and pid not in skip and _environ_holds(pid, entry):
                    found.append(pid)
        unique: list[int] = []
        for pid in found:
            if pid not in skip and pid not in self.refused:
                unique.append(pid)
                skip.add(pid)
        return unique

    def _group_is_ours(self, table: dict[int, _Proc]) -> bool:
        """Whether ``pgid`` still names the run's process group. A group id is not reused
        while the group has members; once they are gone, a new process with that pid may
        lead a group of its own: it is told apart by its start time."""
        if not self.pgid or self.pgid <= 1:
            return False
        leader = table.get(self.pgid)
        if leader is None or self.leader_start is None:
            return True
        return leader.start == self.leader_start

    def _cgroup_pids(self) -> list[int]:
        assert self.cgroup is not None
        try:
            with open(os.path.join(self.cgroup, "cgroup.procs")) as f:
                return [int(p) for p in f.read().split()]
        except (OSError, ValueError):
            return []

    def signal(self, sig: int) -> list[int]:
        """Send ``sig`` to every live process of the run; return their pids."""
        pids = self.members()
        self._send(pids, sig)
        return pids

    def _send(self, pids: list[int], sig: int) -> None:
        if self.pgid and self.launcher is not None and not os.path.isdir("/proc"):
            _signal_group(self.pgid, sig)  # without /proc the group is all that can be found
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
            except PermissionError:
                self.refused.add(pid)

    def stop(self, keep: int | None = None, timeout: float = _STOP_SECONDS) -> list[int]:
        """SIGKILL every process of the run, round after round, until none is left (processes
        started meanwhile are caught by the next round) or ``timeout`` seconds have passed.
        Exited children of the launcher are reaped, except ``keep`` (the run's main process,
        left for its Popen). Returns the pids that were alive; any still alive, or that may
        not be signalled, are in :attr:`survivors` afterwards. Blocks until then."""
        seen: list[int] = []
        deadline = time.monotonic() + timeout
        self.survivors = []
        while True:
            pids = self.members()
            for pid in pids:
                if pid not in seen:
                    seen.append(pid)
                    self.names.setdefault(pid, _command_name(pid))
            if self.cgroup and not _write_file(os.path.join(self.cgroup, "cgroup.kill"), "1"):
                self._kill_cgroup_by_pids()
            self._send(pids, signal.SIGKILL)
            if self.launcher == os.getpid():
                _reap_children(keep)
            if not pids:
                self.survivors = sorted(self.refused)
                return seen
            if time.monotonic() > deadline:
                self.survivors = sorted(set(pids) | self.refused)
                return seen
            time.sleep(0.02)

    def describe(self, pids: list[int]) -> str:
        """``"123 (sleep), 456 (python3)"`` for a log line."""
        return ", ".join(f"{pid} ({self.names.get(pid) or _command_name(pid)})" for pid in pids)

    def _kill_cgroup_by_pids(self) -> None:
        """For kernels before 5.14 (no cgroup.kill): freeze, kill each member, thaw."""
        assert self.cgroup is not None
        freeze = os.path.join(self.cgroup, "cgroup.freeze")
        frozen = _write_file(freeze, "1")
        for pid in self._cgroup_pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if frozen:
            _write_file(freeze, "0")

    def remove(self) -> None:
        """Remove the run's cgroup (once its processes are gone); idempotent, never raises."""
        if not self.cgroup:
            return
        for _ in range(50):
            try:
                os.rmdir(self.cgroup)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)  # busy until the last killed process has exited
        self.cgroup = None


def _environ_holds(pid: int, entry: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return entry in b"\0" + f.read() + b"\0"
    except OSError:
        return False


def stop_leftovers(run_dir: Path) -> list[int]:
    """SIGKILL whatever the run in ``run_dir`` left running once its launcher is gone (killed
    with SIGKILL, or crashed), found from what ``status.json`` recorded: its cgroup, process
    group and launch marker; then remove its cgroup. Returns the pids killed. Idempotent;
    never raises for a missing or unreadable status."""
    try:
        status = read_status(run_dir)
    except (OSError, ValueError):
        return []
    launch_id = status.get("launch_id")
    cgroup = status.get("cgroup")
    pgid = status.get("pgid")
    start = status.get("child_start")
    # status.json is the target's word: only ever act on a cgroup that trainform made.
    if not (
        isinstance(cgroup, str)
        and os.path.basename(cgroup).startswith(CGROUP_PREFIX)
        and os.path.isfile(os.path.join(cgroup, "cgroup.procs"))
    ):
        cgroup = None
    processes = RunProcesses(
        launch_id if isinstance(launch_id, str) and launch_id else None,
        cgroup,
        pgid if isinstance(pgid, int) and not isinstance(pgid, bool) else None,
        start if isinstance(start, str) else None,
    )
    killed = processes.stop()
    processes.remove()
    return killed


def stop_run(run_dir: Path, launcher_pid: int | None) -> int:
    """``launcher.py --stop RUN_DIR [PID]``: cancel a run. A live launcher gets SIGTERM and
    stops the run itself (grace period, then everything it started); without one, whatever
    the run left is killed here (:func:`stop_leftovers`). Idempotent; returns 0."""
    run_dir = Path(run_dir).resolve()
    try:
        recorded = read_status(run_dir).get("launcher_pid")
    except (OSError, ValueError):
        recorded = None
    for pid in {p for p in (launcher_pid, recorded) if isinstance(p, int) and p > 1}:
        if _is_launcher_of(pid, run_dir):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
            return 0
    stop_leftovers(run_dir)
    return 0


def _is_launcher_of(pid: int, run_dir: Path) -> bool:
    if not process_running(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return True  # no /proc to tell: trust the pid, as `kill` would
    wanted = os.path.realpath(str(run_dir))
    names_run_dir = any(a and os.path.realpath(os.fsdecode(a)) == wanted for a in args[1:])
    return names_run_dir and any(a.endswith(b"launcher.py") for a in args)


def _seconds(value: float) -> str:
    return f"{value:g}s"


# Never inherited by a run: variable values given to trainform (which may be another
# compute's password) and trainform's own settings. The launcher sets its own TRAINFORM_*
# variables afterwards.
SCRUBBED = ("TRAINFORM_", "TF_VAR_")
# Inherited even with env_passthrough: what a command needs to start and find its files, and
# TRAINFORM_IMAGE, which the container a run is in was given for it.
ALWAYS_INHERITED = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_*", "TZ", "TMPDIR")
TARGET_PROVIDED = ("TRAINFORM_IMAGE",)


def passes(name: str, patterns: list[str] | tuple[str, ...]) -> bool:
    """Whether ``name`` matches one of ``patterns``: a name, or a prefix followed by ``*``."""
    return any(name.startswith(p[:-1]) if p.endswith("*") else name == p for p in patterns)


def inherited_environ(
    environ: dict[str, str], passthrough: list[str] | None = None
) -> dict[str, str]:
    """What a run inherits of the launcher's environment ``environ``: everything but
    ``TRAINFORM_*`` and ``TF_VAR_*`` (except :data:`TARGET_PROVIDED`); with ``passthrough``
    (the run's ``env_passthrough``), only the names it matches and :data:`ALWAYS_INHERITED`.
    """
    out = {}
    for name, value in environ.items():
        if name.startswith(SCRUBBED) and name not in TARGET_PROVIDED:
            continue
        if passthrough is not None and not passes(
            name, [*ALWAYS_INHERITED, *TARGET_PROVIDED, *passthrough]
        ):
            continue
        out[name] = value
    return out


def take_secrets(run_dir: Path, keep: bool = False) -> dict[str, dict[str, str]]:
    """The run's secret values (``{"env": {...}, "variables": {...}}``) from
    ``RUN_DIR/secret/env.json``, deleting the file and its folder: on disk they live only
    until the launcher starts. With ``keep`` (a job the scheduler may start again in the
    same folder, spec ``keep_secrets``) the file stays, for the next attempt, until the run
    is collected. Empty if there is none. Raises LauncherError for a file that is not such
    an object."""
    folder = run_dir / SECRET_DIR
    path = folder / SECRET_FILE
    try:
        with open(str(path), encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise LauncherError(f"cannot read {path}: {exc.strerror}") from None
    finally:
        if not keep:
            with contextlib.suppress(OSError):
                os.unlink(str(path))
            with contextlib.suppress(OSError):
                os.rmdir(str(folder))
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise LauncherError(f"{path} must hold a JSON object")
    return {
        "env": _str_dict(data.get("env"), f"{path}: 'env'"),
        "variables": _str_dict(data.get("variables"), f"{path}: 'variables'"),
    }


_NODE_ADDR = re.compile(r"(?:^|\s)NodeName=(\S+)(?:\s.*)?\sNodeAddr=(\S+)")


def parse_node_addresses(names_text: str, nodes_text: str) -> list[str]:
    """The address of each node that ``scontrol show hostnames`` printed (``names_text``, in
    node-rank order), from ``scontrol show node --oneliner``'s ``NodeAddr`` (``nodes_text``).
    Raises LauncherError for a node without one."""
    names = [line.strip() for line in names_text.splitlines() if line.strip()]
    found: dict[str, str] = {}
    for line in nodes_text.splitlines():
        m = _NODE_ADDR.search(line[:20000])
        if m:
            found[m.group(1)] = m.group(2)
    missing = [n for n in names if n not in found]
    if not names or missing:
        raise LauncherError(
            f"scontrol gave no NodeAddr for node(s) {', '.join(missing[:5]) or '(none listed)'}"
        )
    return [found[n] for n in names]


def slurm_node_addresses(environ: dict[str, str]) -> list[str]:
    """The addresses of a Slurm job's nodes in node-rank (``SLURM_NODEID``) order: the nodes of
    ``SLURM_JOB_NODELIST`` and each one's ``NodeAddr``, which is how slurmctld and the other
    slurmds reach that node (node names need not resolve: a cluster may set NodeAddr to an IP,
    and it defaults to the name where names do resolve). Runs scontrol (on every Slurm compute
    node, also configless ones). Raises LauncherError when it cannot tell."""
    nodelist = environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST") or ""
    if not nodelist:
        raise LauncherError("SLURM_JOB_NODELIST is not set: not started by Slurm")
    outputs = []
    for argv in (
        ["scontrol", "show", "hostnames", nodelist],
        ["scontrol", "show", "node", "--oneliner", nodelist],
    ):
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LauncherError(f"cannot run {' '.join(argv[:3])}: {exc}") from None
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()[-300:]
            raise LauncherError(f"{' '.join(argv[:3])} exited with {proc.returncode}: {err}")
        outputs.append(proc.stdout[:8_000_000].decode(errors="replace"))
    return parse_node_addresses(outputs[0], outputs[1])


def _str_dict(value: object, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and k and "=" not in k and isinstance(v, str) for k, v in value.items()
    ):
        raise LauncherError(f"{what} must be an object of string names to string values")
    return dict(value)


def _number(spec: dict[str, Any], key: str, default: float | None) -> float | None:
    value = spec.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise LauncherError(f"spec.json: {key!r} must be a number of seconds >= 0")
    return float(value)


class _Launch:
    """One launcher run over ``run_dir``: the lifecycle of :func:`main`."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        # preparing: a signal cancels at once (raises _Canceled); starting/running: a signal
        # is counted and the supervision loop acts on it; finishing: counted only.
        self.phase = "preparing"
        self.signals = 0
        self.signal_name = ""
        self.slot_fd: int | None = None
        self.secrets: dict[str, dict[str, str]] = {}  # see take_secrets
        self.passed: list[int] = []  # signals to pass on to the run (spec scheduler_signal)
        self.previous: dict[int, Any] = {}  # handlers to restore when run() returns

    def _on_pass(self, signum: int, frame: object) -> None:
        self.passed.append(signum)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.signals += 1
        self.signal_name = signal.Signals(signum).name
        if self.phase == "preparing":
            self.phase = "finishing"
            raise _Canceled()

    def _take_slot(self) -> None:
        """Wait for one of the target's ``max_concurrent_runs`` slots (spec ``slots``: a
        folder of lock files and their count), holding it until the launcher exits. While
        waiting the run is ``queued`` and says why; a signal cancels it."""
        try:
            slots = json.loads((self.run_dir / SPEC_FILE).read_text()).get("slots") or {}
        except (OSError, ValueError):
            return
        folder, count = slots.get("dir"), slots.get("count")
        if not folder or not isinstance(count, int) or count < 1:
            return
        os.makedirs(folder, exist_ok=True)
        waiting = False
        while True:
            for i in range(count):
                fd = os.open(os.path.join(folder, f"slot-{i}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    continue
                self.slot_fd = fd  # released when the launcher exits
                return
            if not waiting:
                write_status(
                    self.run_dir,
                    status="queued",
                    launcher_pid=os.getpid(),
                    message=f"waiting for a free slot (max_concurrent_runs = {count})",
                )
                waiting = True
            time.sleep(0.25)

    def run(self) -> int:
        logs = _Logs(self.run_dir)
        previous = self.previous
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            handler = signal.getsignal(sig)
            if sig == signal.SIGHUP and handler == signal.SIG_IGN:
                continue  # started under nohup: keep running when the terminal goes
            previous[sig] = handler
            signal.signal(sig, self._on_signal)
        try:
            self.secrets = take_secrets(self.run_dir, self._keeps_secrets())  # before any slot
            return self._run(logs)
        except _Canceled:
            return self._finish(logs, "canceled", f"canceled ({self.signal_name})")
        except Exception as exc:
            self.phase = "finishing"
            logs.diag(traceback.format_exc())
            message = f"launcher error: {type(exc).__name__}: {exc} (details in {LAUNCHER_LOG})"
            return self._finish(logs, "failed", message)
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
            logs.close()

    def _run(self, logs: _Logs) -> int:
        self._take_slot()
        prior = read_status(self.run_dir)
        attempt = attempt_number(dict(os.environ))
        earlier = ended_attempts(prior, attempt) if attempt > 1 else []
        if earlier:
            last = earlier[-1]
            logs.note(
                f"attempt {attempt} (requeued by Slurm); attempt {last.get('attempt')} ended "
                f"{last.get('status')}: {last.get('message') or '-'}"
            )
        write_status(
            self.run_dir,
            status="preparing",
            attempt=attempt,
            attempts=earlier or None,
            launcher_pid=os.getpid(),
            host=socket.gethostname(),
            created=prior.get("created") or _now(),
            started=None,
            finished=None,
            exit_code=None,
            signal=None,
            message=None,
            child_pid=None,
            pgid=None,
            child_start=None,
            cgroup=None,
            launch_id=None,
            # `launcher.py --stop` cancels the run, see STOP_SCRIPT
            launcher=os.path.abspath(__file__),
        )
        logs.diag(f"launcher pid {os.getpid()} on {socket.gethostname()}, python {sys.version}")
        try:
            spec = self._load_spec()
            plan = self._prepare(spec, logs)
            passed = getattr(signal, f"SIG{plan.signal.get('name')}", None)
            if passed is not None and passed not in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                self.previous.setdefault(passed, signal.getsignal(passed))
                signal.signal(passed, self._on_pass)
        except LauncherError as exc:
            self.phase = "finishing"
            return self._finish(logs, "failed", str(exc), exc.detail)

        self.phase = "starting"
        processes = self._processes(plan, logs)
        cgroup = processes.cgroup
        logs.diag(f"starting {plan.argv!r} in {plan.cwd}")
        try:
            proc = processes.start(plan.argv, str(plan.cwd), plan.env)
        except OSError as exc:
            processes.remove()
            self.phase = "finishing"
            return self._finish(logs, "failed", f"cannot start {plan.argv[0]}: {exc.strerror}")
        if processes.cgroup:
            logs.diag(f"the run's processes are in cgroup {processes.cgroup}")
        elif cgroup:
            logs.diag(
                f"the run could not be moved into cgroup {cgroup}: "
                "tracking its processes through /proc"
            )
        self.phase = "running"
        try:
            write_status(
                self.run_dir,
                status="running",
                child_pid=proc.pid,
                started=_now(),
                **processes.fields(),
            )
            status, message = self._supervise(proc, plan, logs, processes)
            status, message = self._check_data(plan, status, message)
        finally:
            if proc.returncode is None:  # the launcher itself failed: take the run down with it
                processes.stop(keep=proc.pid)
                proc.wait()
            _reap_children(None)
            processes.remove()
            if proc.stdout is not None:
                proc.stdout.close()
        self.phase = "finishing"
        code = proc.returncode
        logs.diag(f"run process exited with {code}")
        return self._finish(
            logs,
            status,
            message,
            exit_code=code,
            signal=signal.Signals(-code).name if code < 0 else None,
        )

    def _check_data(self, plan: _Plan, status: str, message: str) -> tuple[str, str]:
        """A run that wrote into its inputs fails (whatever its exit code), and so does a
        completed run that did not produce one of its declared outputs."""
        changed = changed_inputs(plan.inputs, plan.blob_dir)
        for item in plan.inputs:
            if not item.linked:
                _make_writable(item.root)  # read-only while the run runs; removable after
        if changed:
            more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
            where = (
                "the linked dataset's own files changed"
                if any(item.linked for item in plan.inputs)
                else "the dataset itself is untouched"
            )
            return "failed", (
                f"the run changed its input data, which is read-only: {', '.join(changed[:3])}"
                f"{more} ({where})"
            )
        if status != "completed":
            return status, message
        missing = [
            f"{name} ({rel})"
            for name, rel in plan.declared.items()
            if not os.path.lexists(str(plan.cwd / rel))
        ]
        if missing:
            return "failed", f"declared output {', '.join(missing)} was not produced"
        return status, message

    def _processes(self, plan: _Plan, logs: _Logs) -> RunProcesses:
        """Where the run's processes will be tracked: a cgroup of its own if one can be made,
        and the /proc sweep (see :class:`RunProcesses`)."""
        cgroup, why = make_run_cgroup(plan.env.get("TRAINFORM_RUN_ID") or self.run_dir.name)
        if cgroup is None:
            logs.diag(f"no cgroup for the run ({why}): tracking its processes through /proc")
        if not _become_subreaper():
            logs.diag("cannot become a child subreaper: orphaned processes go to init")
        return RunProcesses(
            hashlib.sha256(os.urandom(32)).hexdigest()[:24], cgroup, launcher=os.getpid()
        )

    def _finish(
        self, logs: _Logs, status: str, message: str, detail: str = "", **fields: Any
    ) -> int:
        self.phase = "finishing"
        if status != "completed":
            word = status.replace("_", " ")
            logs.note(f"run {message}" if message.startswith(word) else f"run {word}: {message}")
        else:
            logs.diag(f"run completed: {message}")
        write_status(
            self.run_dir, status=status, message=message + detail, finished=_now(), **fields
        )
        return 0 if status == "completed" else 1

    @staticmethod
    def _stop(processes: RunProcesses, main: int, logs: _Logs) -> list[int]:
        """SIGKILL every process of the run; return the pids that were alive but ``main``."""
        stopped = processes.stop(keep=main)
        if processes.survivors:
            logs.note(f"could not stop: {processes.describe(processes.survivors)}")
        return [pid for pid in stopped if pid != main]

    def _keeps_secrets(self) -> bool:
        """Whether the spec asks to keep the secrets file (``keep_secrets``: the scheduler
        may run this folder again); a spec that cannot be read fails later, with its
        error."""
        try:
            return bool(self._load_spec().get("keep_secrets"))
        except LauncherError:
            return False

    def _load_spec(self) -> dict[str, Any]:
        path = self.run_dir / SPEC_FILE
        try:
            with open(str(path), encoding="utf-8") as f:
                spec = json.load(f)
        except OSError as exc:
            raise LauncherError(f"cannot read {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise LauncherError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(spec, dict):
            raise LauncherError(f"{path} must hold a JSON object")
        return spec

    def _prepare(self, spec: dict[str, Any], logs: _Logs) -> _Plan:
        """Everything before the run starts: check the spec, recreate the snapshot, make the
        environment ready, and work out the command line and environment variables."""
        run_id = spec.get("run_id")
        if not isinstance(run_id, str) or not run_id:
            raise LauncherError("spec.json: 'run_id' is missing")
        arguments = spec.get("arguments") or []
        if not isinstance(arguments, list) or not all(isinstance(a, str) for a in arguments):
            raise LauncherError("spec.json: 'arguments' must be a list of strings")
        patterns = spec.get("metrics") or {}
        if not isinstance(patterns, dict):
            raise LauncherError("spec.json: 'metrics' must be an object")
        try:
            compile_patterns(patterns)
        except PatternError as exc:
            raise LauncherError(str(exc)) from None
        max_duration = _number(spec, "max_duration", None)
        grace = _number(spec, "grace_seconds", 10.0)
        assert grace is not None
        outputs_rel = _relative_path(spec.get("outputs_dir") or "outputs", "outputs_dir")
        user_env = _str_dict(spec.get("env"), "spec.json: 'env'")
        extra_env = _str_dict(spec.get("extra_env"), "spec.json: 'extra_env'")
        if spec.get("node_addresses") == "slurm":  # known only once Slurm placed the job
            addresses = slurm_node_addresses(dict(os.environ))
            extra_env.update(MASTER_ADDR=addresses[0], TRAINFORM_NODE_IPS=",".join(addresses))
        elif spec.get("node_addresses") is not None:
            raise LauncherError("spec.json: 'node_addresses' must be \"slurm\" when set")
        environment = spec.get("environment") or {}
        if not isinstance(environment, dict):
            raise LauncherError("spec.json: 'environment' must be an object")
        variables = _str_dict(environment.get("variables"), "environment variables")
        user_env.update(self.secrets.get("env") or {})
        variables.update(self.secrets.get("variables") or {})
        expected = spec.get("secrets") or {}
        if not isinstance(expected, dict):
            raise LauncherError("spec.json: 'secrets' must be an object")
        for key, found in (("env", user_env), ("variables", variables)):
            missing = sorted(set(expected.get(key) or ()) - set(found))
            if missing:
                raise LauncherError(
                    f"the values of {', '.join(missing)} are gone: {SECRET_DIR}/{SECRET_FILE} is "
                    "deleted once a launcher has read it (was this run started twice?)"
                )
        environment = {**environment, "variables": variables}
        passthrough = spec.get("env_passthrough")
        if passthrough is not None and (
            not isinstance(passthrough, list) or not all(isinstance(p, str) for p in passthrough)
        ):
            raise LauncherError("spec.json: 'env_passthrough' must be a list of strings")
        blob_dir = spec.get("blob_dir")
        if not isinstance(blob_dir, str) or not blob_dir:
            raise LauncherError("spec.json: 'blob_dir' is missing")

        src = self.run_dir / SRC_DIR
        materialise(spec.get("manifest") or {}, Path(blob_dir), src)
        logs.diag(f"snapshot recreated in {src}")
        inputs = place_inputs(spec.get("inputs"), Path(blob_dir), self.run_dir)
        for item in inputs:
            logs.diag(f"input {item.name} placed in {item.path} (read-only)")
        declared = {
            str(name): _relative_path(path, f"output {name}")
            for name, path in _str_dict(spec.get("declared_outputs"), "outputs").items()
        }

        python, how = prepare_environment(environment, logs.environment)
        write_status(self.run_dir, environment=how, python=python)

        script, command = spec.get("script"), spec.get("command")
        if (script is None) == (command is None):
            raise LauncherError("spec.json: exactly one of 'script' and 'command' must be set")
        if script is not None:
            script_rel = _relative_path(script, "script")
            if not (src / script_rel).is_file():
                raise LauncherError(f"script {script_rel} is not in the snapshot")
            argv = [python, script_rel, *arguments]
        else:
            if (
                not isinstance(command, list)
                or not command
                or not all(isinstance(c, str) for c in command)
                or not command[0]
            ):
                raise LauncherError("spec.json: 'command' must be a non-empty list of strings")
            head = python if command[0] in ("python", "python3") else command[0]
            argv = [head, *command[1:], *arguments]
        if spec.get("input_args"):
            for item in inputs:
                argv += [f"--{item.name}", str(item.path)]

        outputs = src / outputs_rel
        outputs.mkdir(parents=True, exist_ok=True)
        env = inherited_environ(dict(os.environ), passthrough)
        env.update(variables)
        env.update(user_env)
        env.update(
            {
                "TRAINFORM_RUN_ID": run_id,
                "TRAINFORM_EXPERIMENT": str(spec.get("experiment") or "default"),
                "TRAINFORM_OUTPUT_DIR": str(outputs),
                "TRAINFORM_METRICS_FILE": str(self.run_dir / METRICS_FILE),
                "PYTHONUNBUFFERED": "1",
                **{f"TRAINFORM_INPUT_{item.name.upper()}": str(item.path) for item in inputs},
            }
        )
        lib_dir = spec.get("lib_dir")
        if lib_dir:
            rest = env.get("PYTHONPATH")
            env["PYTHONPATH"] = str(lib_dir) + (os.pathsep + rest if rest else "")
        if how in ("built", "reused"):
            venv = os.path.dirname(os.path.dirname(python))
            env["VIRTUAL_ENV"] = venv
            env["PATH"] = os.path.join(venv, "bin") + os.pathsep + env.get("PATH", os.defpath)
            env.pop("PYTHONHOME", None)
        env.update(extra_env)
        sources = capture_sources(
            run_dir=self.run_dir,
            python=python,
            env=env,
            # a virtualenv built here never changes: what it holds is asked once
            detect_cache=Path(python).parent.parent / CAPTURE_CACHE
            if how in ("built", "reused")
            else None,
            cwd=src,
            outputs=outputs,
            experiment=env["TRAINFORM_EXPERIMENT"],
            patterns=patterns,
            stream_path=self.run_dir / METRICS_FILE,
            note=logs.note,
        )
        spark = spec.get("spark")
        if spark is not None:
            sources.append(self._spark_driver(spark, src, outputs_rel, python, env, logs))
        watch = spec.get("watch_pid")
        scheduler_signal = spec.get("scheduler_signal") or {}
        if not isinstance(scheduler_signal, dict):
            raise LauncherError("spec.json: 'scheduler_signal' must be an object")
        return _Plan(
            argv,
            env,
            src,
            sources,
            max_duration,
            grace,
            int(watch) if isinstance(watch, int) else None,
            scheduler_signal,
            inputs,
            Path(blob_dir),
            declared,
        )

    def _spark_driver(
        self,
        spark: object,
        src: Path,
        outputs_rel: str,
        python: str,
        env: dict[str, str],
        logs: _Logs,
    ) -> Source:
        """A spark compute's run (spec ``spark``: ``{"zip": NAME}``): the command is
        ``spark-submit``, whose ``--py-files`` names ``../NAME``, a zip of the snapshot's
        Python files made here so that the executors import the run's modules too. The
        driver and the executors run the environment's interpreter (``PYSPARK_PYTHON``,
        ``PYSPARK_DRIVER_PYTHON``) unless the run's variables name others: on a cluster it
        must exist on every worker at the same path. Returns the source that finds the
        application's id and UI in the driver's log."""
        from trainform.capture.spark import SparkApp

        if not isinstance(spark, dict) or not isinstance(spark.get("zip"), str):
            raise LauncherError("spec.json: 'spark' must be an object with a 'zip' name")
        name = _relative_path(spark["zip"], "spark zip")
        if "/" in name:
            raise LauncherError("spec.json: the spark zip must be a file name")
        zip_python_files(src, self.run_dir / name, skip=outputs_rel)
        env.setdefault("PYSPARK_PYTHON", python)
        env.setdefault("PYSPARK_DRIVER_PYTHON", python)
        logs.diag(f"the snapshot's Python files zipped into {name} for --py-files")
        return SparkApp(lambda found: write_status(self.run_dir, spark=found))

    def _supervise(
        self,
        proc: subprocess.Popen[bytes],
        plan: _Plan,
        logs: _Logs,
        processes: RunProcesses,
    ) -> tuple[str, str]:
        """Copy the run's output to the log and scrape metrics until it exits; enforce the
        time limit and cancellation. Cancelling sends SIGTERM to every process of the run,
        and SIGKILL after the grace period; once the main process has exited, whatever it
        left running is killed. Returns the final status and its message."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        started = time.monotonic()
        deadline = None if plan.max_duration is None else started + plan.max_duration
        reason: str | None = None
        message = ""
        signals_seen = 0
        kill_at: float | None = None
        killed = False
        exited_at: float | None = None
        eof = False
        while True:
            now = time.monotonic()
            if exited_at is None:
                for source in plan.sources:
                    source.poll(now)
                if self.passed:
                    names = sorted({signal.Signals(sig).name for sig in self.passed})
                    self.passed.clear()
                    logs.note(f"{', '.join(names)} from Slurm: passing it on to the run")
                    for name in names:
                        processes.signal(signal.Signals[name])
                if reason is None and self.signals:
                    reason, signals_seen = "canceled", self.signals
                    message = f"canceled ({self.signal_name})"
                    near = plan.signal.get("within")
                    time_left = slurm_time_left(dict(os.environ)) if near else None
                    if time_left is not None and isinstance(near, int) and time_left <= near:
                        reason = "timed_out"
                        message = (
                            f"timed out: {self.signal_name} from Slurm "
                            f"{_seconds(time_left)} before the job's time limit"
                        )
                elif reason is None and plan.watch_pid and not process_running(plan.watch_pid):
                    reason = "canceled"
                    message = f"canceled: the sweep controller (pid {plan.watch_pid}) is gone"
                elif reason is None and deadline is not None and now >= deadline:
                    reason = "timed_out"
                    assert plan.max_duration is not None
                    message = f"timed out after {_seconds(plan.max_duration)}"
                if reason is not None and kill_at is None:
                    logs.note(
                        f"{message}: sending SIGTERM to the run's processes, "
                        f"SIGKILL in {_seconds(plan.grace)}"
                    )
                    processes.signal(signal.SIGTERM)
                    kill_at = now + plan.grace
                if not killed and kill_at is not None:
                    if self.signals > signals_seen:
                        logs.note("signalled again: sending SIGKILL")
                        kill_at = now
                    if now >= kill_at:
                        self._stop(processes, proc.pid, logs)
                        killed = True
                if _exited(proc.pid):
                    exited_at = now
                    # Whatever the run left behind; the main process stays unreaped meanwhile,
                    # so its process group id cannot be reused.
                    left = self._stop(processes, proc.pid, logs)
                    if left and reason is None:
                        logs.note(
                            f"the run's main process exited; stopped {len(left)} "
                            f"process(es) it left running: {processes.describe(left)}"
                        )
                    proc.wait()
                else:
                    _reap_children(proc.pid)
            if exited_at is not None and (eof or now - exited_at >= _DRAIN_SECONDS):
                break
            wait = _POLL_SECONDS
            if deadline is not None and reason is None:
                wait = min(wait, max(0.0, deadline - now))
            if kill_at is not None and not killed:
                wait = min(wait, max(0.0, kill_at - now))
            if eof:
                time.sleep(wait)
                continue
            ready, _, _ = select.select([fd], [], [], wait)
            if ready:
                data = os.read(fd, 1 << 16)
                if data:
                    logs.child_output(data)
                    for source in plan.sources:
                        source.feed(data)
                else:
                    eof = True
        for source in plan.sources:
            source.finish()
        code = proc.returncode
        if reason is not None:
            return reason, message
        if code == 0:
            return "completed", "exit code 0"
        if code > 0:
            why = next((source.failure for source in plan.sources if source.failure), "")
            return "failed", f"exit code {code}" + (f": {why}" if why else "")
        return "failed", f"killed by signal {signal.Signals(-code).name}"


def main(argv: list[str]) -> int:
    """Run the run in ``argv[0]`` (its folder) from start to end; see the module docstring.

    Blocks until the run has finished and its status is final. Returns 0 when it completed,
    1 when it failed, was canceled or timed out, 2 for a bad command line.
    ``--stop RUN_DIR [LAUNCHER_PID]`` cancels a run instead (:func:`stop_run`).
    """
    if argv[:1] == ["--stop"] and (len(argv) == 2 or (len(argv) == 3 and argv[2].isdigit())):
        return stop_run(Path(argv[1]), int(argv[2]) if len(argv) == 3 else None)
    if len(argv) != 1 or argv[0] in ("-h", "--help", "--stop"):
        sys.stderr.write("usage: launcher.py RUN_DIR | launcher.py --stop RUN_DIR [PID]\n")
        return 2
    run_dir = Path(argv[0]).resolve()
    if not run_dir.is_dir():
        sys.stderr.write(f"launcher.py: run folder {run_dir} does not exist\n")
        return 2
    return _Launch(run_dir).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
