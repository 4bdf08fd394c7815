"""``trainform init``'s module installation: walk the module calls from the root
configuration, clone git sources into ``.trainform/modules/KEY`` and record every call's
resolved folder in ``.trainform/modules/modules.json`` (see :mod:`trainform.config.modsource`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainform.config.loader import _literal, local_module_dir, read_blocks, require_config_files
from trainform.config.modsource import (
    MODULES_DIR,
    GitSource,
    SourceError,
    call_key,
    install_git,
    manifest_path,
    parse_source,
    read_manifest,
    shown_dir,
    write_manifest,
)
from trainform.config.source import RawBlock
from trainform.errors import ConfigError, Diagnostic


@dataclass
class Installed:
    """What ``init`` did: one line per module call (and per install it pruned), for the
    CLI; and the blocks of the root and of every module it reached (for the provider
    check)."""

    lines: list[str] = field(default_factory=list)
    blocks: list[RawBlock] = field(default_factory=list)


def install_modules(root: Path, upgrade: bool = False) -> Installed:
    """Install what the configuration's module calls need, and delete the installs under
    ``.trainform/modules`` that no call uses any more (as ``terraform init`` does).
    Idempotent: an installed git source whose source text is unchanged is kept, unless
    ``upgrade`` (then its ref is resolved again). A root configuration that cannot be read
    changes nothing (its problems are for validate and plan to report). Raises ConfigError
    (a source that cannot be used, a repository or ref that does not exist)."""
    root = root.resolve()
    previous = read_manifest(root)
    entries: list[dict[str, Any]] = []
    done = Installed()
    lines = done.lines

    def walk(parent: tuple[str, ...], folder: Path, chain: tuple[Path, ...]) -> None:
        _files, blocks = read_blocks(folder, root)
        done.blocks.extend(blocks)
        for blk in blocks:
            if blk.type != "module" or len(blk.labels) != 1 or "source" not in blk.attrs:
                continue
            path = (*parent, blk.labels[0])
            name = ".".join(f"module.{p}" for p in path)
            expr = blk.attrs["source"].expr
            source = _literal(expr, "a module source")
            if not isinstance(source, str):
                raise ConfigError(Diagnostic("a module source must be a string", expr.pos))
            try:
                parsed = parse_source(source)
            except SourceError as exc:
                raise ConfigError(Diagnostic(str(exc), expr.pos)) from None
            entry: dict[str, Any] = {"key": call_key(path), "source": source}
            if isinstance(parsed, GitSource):
                try:
                    directory, commit, fresh = _git_module(
                        root, path, source, parsed, previous, upgrade
                    )
                except SourceError as exc:
                    raise ConfigError(Diagnostic(f"{name}: {exc}", expr.pos)) from None
                if not directory.is_dir():
                    raise ConfigError(
                        Diagnostic(
                            f"{name}: {parsed.url} at {parsed.ref or 'HEAD'} has no folder "
                            f"{parsed.subdir!r}",
                            expr.pos,
                        )
                    )
                entry["commit"] = commit
                state = "installed" if fresh else "already installed"
                lines.append(f"- {name}: {source} ({state}, commit {commit[:12]})")
            else:
                directory = local_module_dir(path, source, parsed, folder, expr.pos)
                lines.append(f"- {name}: {source} (local folder, used in place)")
            require_config_files(path, directory, expr.pos)
            entry["dir"] = shown_dir(root, directory)
            entries.append(entry)
            if directory not in chain and len(path) < 16:  # a cycle is reported on load
                walk(path, directory, (*chain, directory))

    try:
        read_blocks(root, root)
    except ConfigError:
        return done
    walk((), root, (root,))
    if entries or manifest_path(root).exists():
        write_manifest(root, entries)
    lines.extend(_prune(root, {str(e["key"]) for e in entries if "commit" in e}))
    return done


def _prune(root: Path, keep: set[str]) -> list[str]:
    """Delete the git installs under ``.trainform/modules`` whose key is not in ``keep``
    (their module call was removed, or now names a local folder); a line for each."""
    base = root / MODULES_DIR
    if not base.is_dir():
        return []
    lines = []
    for child in sorted(base.iterdir()):
        if child.name in keep or not child.is_dir() or child.is_symlink():
            continue
        shutil.rmtree(child, ignore_errors=True)
        name = ".".join(f"module.{p}" for p in child.name.split("."))
        lines.append(f"- {name}: removed {shown_dir(root, child)} (no module call uses it)")
    return lines


def _git_module(
    root: Path,
    path: tuple[str, ...],
    source: str,
    parsed: GitSource,
    previous: dict[str, dict[str, Any]],
    upgrade: bool,
) -> tuple[Path, str, bool]:
    """(folder, commit, whether it was cloned now) of a git module call. Raises
    SourceError."""
    dest = root / MODULES_DIR / call_key(path)
    prior = previous.get(call_key(path))
    if (
        not upgrade
        and prior is not None
        and prior.get("source") == source
        and isinstance(prior.get("commit"), str)
        and (root / str(prior.get("dir"))).is_dir()
    ):
        return root / str(prior["dir"]), prior["commit"], False
    commit = install_git(parsed, dest)
    directory = dest / parsed.subdir if parsed.subdir else dest
    return directory, commit, True
