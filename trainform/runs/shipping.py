"""What travels with a run to its target: the launcher and the tracking client (the "lib"),
the spec the launcher reads, and bringing the run's folder back."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import secrets
import shutil
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import trainform
from trainform.providers.base import RunRequest

# As trainform.runs.launcher names them (not imported here: it is big, and the ssh provider
# imports this module when it loads). A unit test checks that they agree.
SECRET_DIR = "secret"
SECRET_FILE = "env.json"

PACKAGE = Path(trainform.__file__).parent
# Copied to targets: stdlib-only files. `trainform/__init__.py` comes along so that scripts
# can `from trainform.tracking import log_metric` without trainform installed, and the
# launcher can import its capture sources (trainform.capture).
LIB_FILES = {
    "launcher.py": PACKAGE / "runs" / "launcher.py",
    "trainform/__init__.py": PACKAGE / "__init__.py",
    "trainform/tracking.py": PACKAGE / "tracking.py",
    **{
        f"trainform/capture/{name}": PACKAGE / "capture" / name
        for name in ("__init__.py", "logs.py", "mlflow.py", "spark.py")
    },
}


def lib_files() -> dict[str, bytes]:
    """The files of the lib, by relative path."""
    return {rel: src.read_bytes() for rel, src in LIB_FILES.items()}


def lib_digest(files: dict[str, bytes]) -> str:
    """A content hash naming a lib version, so an upgrade never changes a running run's files."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode() + b"\0" + files[rel] + b"\0")
    return h.hexdigest()[:16]


def install_lib(lib_root: Path) -> Path:
    """Make ``lib_root/<digest>/`` hold the lib (once; atomic) and return it."""
    files = lib_files()
    dest = lib_root / lib_digest(files)
    if (dest / ".complete").is_file():
        return dest
    # Unique per call: runs submitted from parallel threads of one process install at once.
    tmp = lib_root / f".{dest.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, data in files.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(data)
    (tmp / ".complete").write_text("")
    try:
        tmp.rename(dest)
    except OSError:  # another process installed it first
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def full_spec(
    request: RunRequest, blob_dir: Path | str, lib_dir: Path | str, cache_dir: Path | str
) -> dict[str, Any]:
    """The launcher spec with the target's paths filled in. Runs on one target share its
    ``max_concurrent_runs`` slots, lock files beside the environments."""
    spec = dict(request.spec)
    limit = request.compute.get("max_concurrent_runs")
    if isinstance(limit, (int, float)) and not isinstance(limit, bool) and limit >= 1:
        spec["slots"] = {"dir": f"{cache_dir}/../slots", "count": int(limit)}
    spec["manifest"] = request.manifest
    spec["blob_dir"] = str(blob_dir)
    spec["lib_dir"] = str(lib_dir)
    spec["environment"] = {**request.spec["environment"], "cache_dir": str(cache_dir)}
    return spec


def write_spec(
    run_dir: Path, request: RunRequest, blob_dir: Path, lib_dir: Path, cache_dir: Path
) -> None:
    """Write a local run's ``spec.json``, and its secret values as :func:`store_secrets`
    does."""
    spec, secret = split_secrets(full_spec(request, blob_dir, lib_dir, cache_dir))
    if secret is not None:
        store_secrets(run_dir, secret)
    tmp = run_dir / "spec.json.tmp"
    tmp.write_text(json.dumps(spec, indent=1))
    tmp.replace(run_dir / "spec.json")


def split_secrets(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A launcher spec without the values of ``env`` and ``environment.variables`` (their
    names are listed under ``secrets``), and those values (``{"env": ..., "variables":
    ...}``), or None when there are none. Any of them may come from a sensitive variable:
    they travel apart, see :func:`store_secrets`."""
    env = dict(spec.get("env") or {})
    environment = dict(spec.get("environment") or {})
    variables = dict(environment.get("variables") or {})
    if not env and not variables:
        return spec, None
    public = {
        **spec,
        "env": {},
        "environment": {**environment, "variables": {}},
        "secrets": {"env": sorted(env), "variables": sorted(variables)},
    }
    return public, {"env": env, "variables": variables}


def with_secrets(spec: dict[str, Any], secret: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`split_secrets`: ``spec`` with the values ``secret`` holds put
    back (as it was before the split, if ``secret`` has them all)."""
    if not secret:
        return spec
    environment = dict(spec.get("environment") or {})
    variables = {**(environment.get("variables") or {}), **(secret.get("variables") or {})}
    out = {
        **spec,
        "env": {**(spec.get("env") or {}), **(secret.get("env") or {})},
        "environment": {**environment, "variables": variables},
    }
    out.pop("secrets", None)
    return out


def store_secrets(run_dir: Path, secret: dict[str, Any]) -> None:
    """Write ``RUN_DIR/secret/env.json`` for the launcher, which reads and deletes it when it
    starts: mode 0600 from its creation, in a folder of mode 0700. Raises OSError (also if
    it exists)."""
    folder = run_dir / SECRET_DIR
    folder.mkdir(mode=0o700)
    os.chmod(folder, 0o700)  # whatever the umask
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    with os.fdopen(os.open(folder / SECRET_FILE, flags, 0o600), "wb") as f:
        f.write(json.dumps(secret).encode())


# The same over SSH: python3 -c STORE_SECRETS_SCRIPT RUN_DIR < the JSON object.
STORE_SECRETS_SCRIPT = f"""\
import os, sys
folder = os.path.join(os.path.expanduser(sys.argv[1]), {SECRET_DIR!r})
os.mkdir(folder, 0o700)
os.chmod(folder, 0o700)
flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
with os.fdopen(os.open(os.path.join(folder, {SECRET_FILE!r}), flags, 0o600), "wb") as f:
    f.write(sys.stdin.buffer.read())
"""


def secrets_archive(run_dir: str, secret: dict[str, Any]) -> bytes:
    """A tar holding ``run_dir/secret/env.json`` (a path relative to where it is unpacked)
    with the modes :func:`store_secrets` gives, for an engine's put_archive."""
    data = json.dumps(secret).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        folder = tarfile.TarInfo(f"{run_dir}/{SECRET_DIR}")
        folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o700, int(time.time())
        tar.addfile(folder)
        info = tarfile.TarInfo(f"{run_dir}/{SECRET_DIR}/{SECRET_FILE}")
        info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def discard_secrets(run_dir: Path) -> None:
    """Delete what :func:`store_secrets` wrote if no launcher read it (the run never
    started). Idempotent."""
    with contextlib.suppress(FileNotFoundError):
        (run_dir / SECRET_DIR / SECRET_FILE).unlink()
    with contextlib.suppress(OSError):
        (run_dir / SECRET_DIR).rmdir()


COLLECTED = ("output.log", "metrics.jsonl", "status.json")


def collect_run_folder(run_dir: Path, dest: Path) -> list[str]:
    """Copy a local run folder's outputs, log, metrics and status into ``dest`` (replacing
    an earlier collection), by the rules of :mod:`trainform.remote.tarsafe`: no link is
    followed; links out of the outputs folder, FIFOs and devices are skipped, each named in
    the returned list and in a logged warning. Secret values no launcher read (a run that
    never started) are deleted."""
    discard_secrets(run_dir)
    import logging

    from trainform.remote.tarsafe import (
        copy_plain_file,
        copy_tree,
        read_plain_file,
        relative_folder_problem,
    )

    # A docker-cluster node's folder came from the node: its spec is not trusted either.
    raw = read_plain_file(run_dir / "spec.json") or b""
    try:
        spec = json.loads(raw)
    except ValueError:
        spec = {}
    dest.mkdir(parents=True, exist_ok=True)
    skipped: list[str] = []
    for name in COLLECTED:
        if not copy_plain_file(run_dir / name, dest / name) and os.path.lexists(run_dir / name):
            skipped.append(f"{name!r} (not a regular file)")
    (dest / "spec.json").write_bytes(redacted_spec(raw))
    outputs = (spec.get("outputs_dir") if isinstance(spec, dict) else None) or "outputs"
    target = dest / "outputs"
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.exists():
        shutil.rmtree(target)
    if problem := relative_folder_problem(outputs):
        skipped.append(f"outputs_dir {outputs!r} ({problem})")
        target.mkdir()
    else:
        skipped += copy_tree(run_dir / "src", outputs, target)
    for item in skipped:
        logging.getLogger(__name__).warning("collecting %s: skipped %s", run_dir, item)
    return skipped


def redacted_spec(data: bytes) -> bytes:
    """A launcher spec for the artifact store: environment variable values left out (they may
    come from sensitive variables, which must not reach a local file). Specs hold none since
    they travel apart (:func:`split_secrets`); this is for runs submitted before."""
    try:
        spec = json.loads(data)
    except ValueError:
        return b""
    if not isinstance(spec, dict):
        return b""
    environment = spec.get("environment")
    variables = environment.get("variables") if isinstance(environment, dict) else None
    for values in (spec.get("env"), variables):
        if isinstance(values, dict):
            for key in values:
                values[key] = "(redacted)"
    return json.dumps(spec, indent=1).encode()


def copy_blobs(hashes: list[str], source: Path, dest: Path) -> int:
    """Copy the blobs ``hashes`` that blob folder ``dest`` lacks from ``source`` (both laid
    out ``ab/cdef...``); each arrives whole (copied aside, then renamed) and read-only.
    Returns how many were copied."""
    copied = 0
    for digest in hashes:
        target = dest / digest[:2] / digest[2:]
        if target.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        # Unique per thread too: parallel submissions of one apply copy the same blobs.
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        try:
            shutil.copyfile(source / digest[:2] / digest[2:], tmp)
            os.chmod(tmp, 0o444)
            os.replace(tmp, target)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
        copied += 1
    return copied
