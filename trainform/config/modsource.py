"""Module sources: where a ``module "name" { source = ... }`` block's files come from.

Two kinds, as Terraform writes them:

- a local path (``./modules/gpu-box``, ``../shared``, or absolute), used in place;
- a git repository (``git::file:///abs/repo.git?ref=v1``, ``git::/abs/repo?ref=main``,
  ``git::file:///abs/repo.git//subdir?ref=v1``), cloned by ``trainform init`` into
  ``.trainform/modules/KEY`` at the ref.

``trainform init`` records what it resolved in ``.trainform/modules/modules.json``: one entry
per module call (``key`` as Terraform writes it, ``team`` or ``team.inner``), with its
``source``, the folder it resolved to (``dir``, relative to the configuration when inside it)
and, for git, the ``commit``. Loading reads that record for git sources and refuses a source
that is missing from it or changed since.

Git runs as a subprocess with an argument vector, never through a shell.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

MODULES_DIR = Path(".trainform") / "modules"
MANIFEST = "modules.json"
GIT_TIMEOUT = 300.0


class SourceError(ValueError):
    """A module source that cannot be used; the message says why and what would work."""


@dataclass(frozen=True)
class GitSource:
    """``git::URL[//SUBDIR][?ref=REF]``."""

    url: str
    ref: str | None
    subdir: str


def parse_source(text: str) -> Path | GitSource:
    """A local path (relative paths still relative to the calling module) or a git source.
    Raises :class:`SourceError`."""
    if text.startswith("git::"):
        rest = text[len("git::") :]
        rest, _, query = rest.partition("?")
        ref = None
        if query:
            params = parse_qs(query, keep_blank_values=True)
            unknown = sorted(set(params) - {"ref"})
            if unknown:
                raise SourceError(f"unsupported git source parameter {unknown[0]!r} (only ref=)")
            ref = params["ref"][-1] if params.get("ref") else None
            if ref == "" or (ref or "").startswith("-"):
                raise SourceError(f"bad ref {ref!r}")
        scheme_end = rest.find("://")
        start = scheme_end + 3 if scheme_end >= 0 else 0
        if rest.startswith("file://"):
            start = len("file://") + 1  # file:///abs: the path's own slash is not a separator
        cut = rest.find("//", start)
        subdir = ""
        if cut >= 0:
            rest, subdir = rest[:cut], rest[cut + 2 :].strip("/")
            if any(p in ("..", "") for p in subdir.split("/")):
                raise SourceError(f"bad subdirectory {subdir!r} in a git source")
        if not rest:
            raise SourceError("a git source needs a repository: git::file:///path/repo.git")
        if not (rest.startswith(("file://", "/", "https://", "ssh://", "git@"))):
            raise SourceError(
                f"git repository {rest!r}: use an absolute path or a URL (git::file:///path/repo.git)"
            )
        return GitSource(rest, ref, subdir)
    if text.startswith(("./", "../")) or text in (".", "..") or os.path.isabs(text):
        return Path(text)
    raise SourceError(
        f"unsupported module source {text!r}: use a local path that starts with ./ or ../ "
        '("./modules/gpu-box") or a git source ("git::file:///path/repo.git?ref=v1")'
    )


def manifest_path(root: Path) -> Path:
    return root / MODULES_DIR / MANIFEST


def read_manifest(root: Path) -> dict[str, dict[str, Any]]:
    """key -> entry of what ``trainform init`` installed; empty if nothing (or unreadable)."""
    try:
        data = json.loads(manifest_path(root).read_text())
    except (OSError, ValueError):
        return {}
    modules = data.get("modules") if isinstance(data, dict) else None
    if not isinstance(modules, list):
        return {}
    return {
        str(m["key"]): m for m in modules if isinstance(m, dict) and isinstance(m.get("key"), str)
    }


def write_manifest(root: Path, entries: list[dict[str, Any]]) -> None:
    path = manifest_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"modules": entries}, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def call_key(path: tuple[str, ...]) -> str:
    """Terraform's module key: ``team``, ``team.inner``."""
    return ".".join(path)


def shown_dir(root: Path, directory: Path) -> str:
    """A folder as recorded: relative to the configuration when inside it."""
    try:
        return str(directory.relative_to(root))
    except ValueError:
        return str(directory)


def installed_dir(root: Path, path: tuple[str, ...], source: str) -> Path:
    """The folder init installed a git module into. Raises :class:`SourceError` saying to
    run ``trainform init`` when it is not installed or its source changed since."""
    entry = read_manifest(root).get(call_key(path))
    name = ".".join(f"module.{p}" for p in path)
    if entry is None or entry.get("source") != source or "dir" not in entry:
        changed = entry is not None and entry.get("source") != source
        why = " (its source changed since init)" if changed else ""
        raise SourceError(f"{name}: not installed{why}; run `trainform init`")
    directory = root / str(entry["dir"])
    if not directory.is_dir():
        raise SourceError(f"{name}: not installed (its folder is gone); run `trainform init`")
    return directory


def _git(args: list[str], cwd: Path | None = None) -> str:
    """Run git; return stdout. Raises SourceError with git's own complaint."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
            check=False,
        )
    except FileNotFoundError:
        raise SourceError("git is not installed (needed for git module sources)") from None
    except subprocess.TimeoutExpired:
        raise SourceError(f"git {args[0]} took longer than {GIT_TIMEOUT:.0f} s") from None
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
        raise SourceError(lines[-1] if lines else f"git {args[0]} failed")
    return done.stdout


def install_git(source: GitSource, dest: Path) -> str:
    """Clone ``source`` into ``dest`` (replacing what is there) and check out its ref;
    return the commit. Raises SourceError (a repository or ref that does not exist)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    url = source.url
    if url.startswith("/") and not Path(url).exists():
        raise SourceError(f"git repository {url} does not exist")
    if url.startswith("file://") and not Path(url[len("file://") :]).exists():
        raise SourceError(f"git repository {url} does not exist")
    try:
        _git(["clone", "--quiet", "--no-checkout", "--", url, str(dest)])
    except SourceError as exc:
        raise SourceError(f"cannot clone {url}: {exc}") from None
    if source.ref is not None:
        try:
            _git(["rev-parse", "--verify", "--quiet", f"{source.ref}^{{commit}}"], cwd=dest)
        except SourceError:
            try:
                _git(["rev-parse", "--verify", "--quiet", f"origin/{source.ref}^{{commit}}"], dest)
            except SourceError:
                shutil.rmtree(dest, ignore_errors=True)
                raise SourceError(
                    f"{url} has no ref {source.ref!r} (no such tag, branch or commit)"
                ) from None
            target = f"origin/{source.ref}"
        else:
            target = source.ref
        _git(["checkout", "--quiet", "--detach", target, "--"], cwd=dest)
    else:
        _git(["checkout", "--quiet", "--detach", "HEAD", "--"], cwd=dest)
    return _git(["rev-parse", "HEAD"], cwd=dest).strip()
