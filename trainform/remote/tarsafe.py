"""Tar streams in and out of targets: adding files, and extracting what a target sends back
only inside the destination folder (no absolute names, no `..`, no links leading out, no
device files)."""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path
from typing import Any


def add_to_tar(tar: tarfile.TarFile, name: str, source: bytes | Path) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = int(time.time())
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
        return
    with open(source, "rb") as f:
        st = os.fstat(f.fileno())
        info.size, info.mode, info.mtime = st.st_size, st.st_mode & 0o777, int(st.st_mtime)
        tar.addfile(info, f)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _member_parts(name: str) -> list[str] | None:
    """The parts of a safe relative member name ([] for the root), or None if unsafe."""
    if name.startswith("/"):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return None if ".." in parts else parts


def _ensure_dir(root: str, parts: list[str]) -> str | None:
    """Create root/parts... one level at a time, refusing to pass through anything that
    leads outside root; returns the folder's real path, or None."""
    current = root
    for part in parts:
        current = os.path.join(current, part)
        if os.path.islink(current):
            real = os.path.realpath(current)
            if not _inside(real, root) or not os.path.isdir(real):
                return None
        elif not os.path.isdir(current):
            if os.path.lexists(current):
                return None
            os.mkdir(current, 0o755)
    real = os.path.realpath(current)
    return real if _inside(real, root) else None


def extract_safely(tar: tarfile.TarFile, dest: Path) -> list[str]:
    dest.mkdir(parents=True, exist_ok=True)
    root = os.path.realpath(dest)
    skipped: list[str] = []
    links: list[tuple[str, str]] = []
    files: dict[str, str] = {}  # member name -> where it was written (for hard links)
    for member in tar:
        parts = _member_parts(member.name)
        if parts is None:
            skipped.append(f"{member.name!r} (unsafe name)")
            continue
        if not parts:
            continue
        name = "/".join(parts)
        if member.isdir():
            if _ensure_dir(root, parts) is None:
                skipped.append(f"{name!r} (leads outside the destination)")
            continue
        if not (member.isfile() or member.issym() or member.islnk()):
            skipped.append(f"{name!r} (device, fifo or other special file)")
            continue
        folder = _ensure_dir(root, parts[:-1])
        if folder is None:
            skipped.append(f"{name!r} (leads outside the destination)")
            continue
        path = os.path.join(folder, parts[-1])
        if os.path.isdir(path) and not os.path.islink(path):
            skipped.append(f"{name!r} (a folder is in the way)")
            continue
        if os.path.lexists(path):
            os.unlink(path)
        if member.issym():
            target = member.linkname
            lexical = os.path.normpath(os.path.join(folder, target))
            if os.path.isabs(target) or not _inside(lexical, root):
                skipped.append(f"{name!r} (symlink to {target!r}, outside the destination)")
                continue
            os.symlink(target, path)
            links.append((name, path))
            continue
        if member.islnk():
            source_parts = _member_parts(member.linkname)
            source = files.get("/".join(source_parts)) if source_parts else None
            if source is None:
                skipped.append(f"{name!r} (hard link to {member.linkname!r}, not extracted)")
                continue
            with open(source, "rb") as f:
                _write_file(path, f, member)
        else:
            data = tar.extractfile(member)
            if data is None:
                continue
            _write_file(path, data, member)
        files[name] = path
    # Links were checked one at a time; a later link can redirect an earlier one, so check
    # where each one really leads now that the tree is complete.
    for name, path in links:
        if not _inside(os.path.realpath(path), root):
            os.unlink(path)
            skipped.append(f"{name!r} (symlink resolving outside the destination)")
    return skipped


def _write_file(path: str, data: Any, member: tarfile.TarInfo) -> None:
    mode = (member.mode & 0o777) | 0o600
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := data.read(1 << 20):
            out.write(chunk)
    os.chmod(path, mode)
    os.utime(path, (member.mtime, member.mtime))
