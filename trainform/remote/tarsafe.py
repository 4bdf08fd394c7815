"""Files that come back from a target: tar streams from SSH hosts and docker-cluster nodes, and
run folders copied on this machine. Everything a run wrote is treated as hostile.

Nothing is written outside the destination folder and nothing outside it (or outside the
folder copied from) is read: every path is opened one part at a time, relative to its folder's
file descriptor, with ``O_NOFOLLOW``, so no link is ever followed while extracting or copying.
The rules, alike on every target:

- a name that is absolute, has a ``..`` part or a NUL, or is longer than 4096 bytes (a part:
  255) is skipped;
- folders and regular files are written (mode ``& 0o755 | 0o600``: never setuid, never owned by
  anyone else); a later member of the same name replaces a file or a link, never a folder;
- nothing is written through a link or a file: a member below one is skipped;
- a hard link is made only to a regular file written earlier by the same stream and still there
  under that name;
- a symbolic link is kept only if, once the whole tree is in place, it resolves (through the
  tree's other links) to a place inside the destination; a link with an absolute target, one
  that leads outside and one that loops are skipped;
- FIFOs, devices, sockets, sparse files and unknown types are skipped.

Each skip is returned as a line ``'name' (why)``, which callers log as a warning.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import tarfile
import time
from pathlib import Path
from typing import IO

NAME_LIMIT = 4096  # bytes of a member name or link target (PATH_MAX)
PART_LIMIT = 255  # bytes of one part of a name (NAME_MAX)
HEADER_LIMIT = 1 << 20  # bytes of one extended header (pax records, GNU long names)
LINK_HOPS = 40  # links followed while resolving one path (the kernel's limit)
_CHUNK = 1 << 20
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Errors that stop an extraction rather than skip one member.
_FATAL = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM, errno.EMFILE)
_EXTENDED = (
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)


class UnsafeArchive(tarfile.TarError):
    """A tar stream trainform stops reading: an extended header too big to hold in memory."""


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


class _BoundedInfo(tarfile.TarInfo):
    """Refuses extended headers over HEADER_LIMIT before tarfile reads them into memory."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED and self.size > HEADER_LIMIT:
            raise UnsafeArchive(
                f"an extended header of {self.size} bytes (trainform reads at most "
                f"{HEADER_LIMIT}): not a tar stream that `tar -c` writes"
            )
        return super()._proc_member(tar)  # type: ignore[misc]


def open_stream(fileobj: IO[bytes]) -> tarfile.TarFile:
    """An uncompressed tar stream from a target, opened for ``extract_safely``."""
    return tarfile.open(fileobj=fileobj, mode="r|", tarinfo=_BoundedInfo)


def extract_stream(fileobj: IO[bytes], dest: Path) -> list[str]:
    """``extract_safely`` of the tar stream ``fileobj``."""
    with open_stream(fileobj) as tar:
        return extract_safely(tar, dest)


def extract_safely(tar: tarfile.TarFile, dest: Path) -> list[str]:
    """Extract ``tar`` into ``dest`` (created if needed) by the rules of this module; returns
    what was skipped and why. Raises ``tarfile.TarError`` if the stream is cut short or
    malformed (a file being written then is removed) and ``OSError`` if ``dest`` cannot be
    written. Never follows a link, in the stream or already in ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    extraction = _Extraction(os.open(dest, _DIR))
    try:
        while (member := tar.next()) is not None:
            extraction.add(tar, member)
            # tarfile keeps every member read; a hostile stream's list would grow without bound.
            tar.members.clear()  # type: ignore[attr-defined]
        extraction.finish()
    finally:
        extraction.close()
    return extraction.skipped


def copy_tree(root: Path, rel: str, dest: Path) -> list[str]:
    """Copy the folder ``rel`` of ``root`` into ``dest`` (created if needed) by the rules of
    this module; returns what was skipped and why. ``rel`` is followed through links only
    while they stay inside ``root``; if it leads outside, nothing is copied. A missing ``rel``
    or ``root`` (a run that failed before its source was materialised) copies nothing."""
    dest.mkdir(parents=True, exist_ok=True)
    skipped: list[str] = []
    try:
        root_fd = os.open(root, _DIR)
    except FileNotFoundError:
        return skipped
    dest_fd = os.open(dest, _DIR)
    try:
        try:
            parts = _resolve(root_fd, rel.split("/"))
            source_fd = _open_dir(root_fd, parts)
        except _Refused as refused:
            return [f"{_shown(rel)} ({refused})"]
        except (FileNotFoundError, NotADirectoryError):
            return []
        with _Closing(source_fd):
            links = _copy_folder(source_fd, dest_fd, skipped)
        skipped += _drop_escaping_links(dest_fd, links)
    finally:
        os.close(root_fd)
        os.close(dest_fd)
    return skipped


def relative_folder_problem(value: object) -> str | None:
    """Why ``value`` is not a relative path to a folder strictly inside another (absolute,
    ``..``, empty, the folder itself), or None if it is one."""
    if not isinstance(value, str) or not value.strip():
        return "it is empty"
    if "\0" in value:
        return "it contains a NUL character"
    if value.startswith("/"):
        return "it is absolute"
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if ".." in parts:
        return "it climbs out with '..'"
    if not parts:
        return "it names the folder itself"
    return None


def read_plain_file(path: Path, limit: int | None = None) -> bytes | None:
    """The content of ``path`` if it is a regular file (not a link, FIFO or device), up to
    ``limit`` bytes; None otherwise. Never blocks on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return f.read() if limit is None else f.read(limit)


def copy_plain_file(source: Path, dest: Path) -> bool:
    """Copy ``source`` to ``dest`` if it is a regular file (see ``read_plain_file``), replacing
    ``dest``; False if it is not one."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    with _Closing(fd):
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return False
        if os.path.lexists(dest):
            os.unlink(dest)
        out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with _Closing(out):
            _copy_data(fd, out)
            _set_attributes(out, st.st_mode, st.st_mtime)
    return True


# -- extraction --------------------------------------------------------------------------------


class _Refused(Exception):
    """Why a member or a path is not taken."""


class _Closing:
    """Closes a file descriptor at the end of a ``with`` block."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


class _Extraction:
    """One stream being extracted under the folder ``root`` (a file descriptor)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.skipped: list[str] = []
        self.kinds: dict[str, str] = {}  # name -> "dir", "file" or "link", as this stream left it
        self.files: dict[str, tuple[int, int]] = {}  # regular files written: name -> (dev, ino)
        self.links: dict[str, str] = {}  # symbolic links, made at the end: name -> target
        self._folders: dict[tuple[str, ...], int] = {}  # open folders, by their parts

    def close(self) -> None:
        for fd in self._folders.values():
            os.close(fd)
        self._folders.clear()
        os.close(self.root)

    def skip(self, name: str, why: str) -> None:
        self.skipped.append(f"{_shown(name)} ({why})")

    def folder(self, parts: list[str], create: bool = True) -> int:
        """An open folder ``root/parts`` (owned by this object), made if missing; raises
        _Refused if a part is a link or a file."""
        key = tuple(parts)
        if key in self._folders:
            return self._folders[key]
        fd = _open_dir(self.root, parts, create)
        self._folders[key] = fd
        return fd

    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        if len(self._folders) > 64:  # at the start of a member: no folder of it is in use yet
            for fd in self._folders.values():
                os.close(fd)
            self._folders.clear()
        parts = _parts(member.name)
        if isinstance(parts, str):
            return self.skip(member.name, parts)
        if not parts:
            return  # the destination itself
        name = "/".join(parts)
        kind = _kind(member)
        if kind not in ("dir", "file", "link", "hard"):
            return self.skip(name, kind)
        for i in range(1, len(parts)):
            above = "/".join(parts[:i])
            if self.kinds.get(above, "dir") != "dir":
                return self.skip(name, f"below {_shown(above)}, which is not a folder")
        if kind == "link" and (why := _target_problem(member.linkname)):
            return self.skip(name, f"a link to {_shown(member.linkname)}: {why}")
        try:
            parent = self.folder(parts[:-1])
            last = parts[-1]
            try:
                existing: int | None = os.stat(last, dir_fd=parent, follow_symlinks=False).st_mode
            except FileNotFoundError:
                existing = None
            if existing is not None and stat.S_ISDIR(existing):
                if kind != "dir":
                    self.skip(name, "a folder of that name is in the way")
                else:
                    self.kinds[name] = "dir"
                return
            # A later member replaces an earlier file or link of the same name.
            self.kinds.pop(name, None)
            self.files.pop(name, None)
            self.links.pop(name, None)
            if existing is not None:
                os.unlink(last, dir_fd=parent)
            if kind == "dir":
                os.mkdir(last, 0o755, dir_fd=parent)
                self.kinds[name] = "dir"
            elif kind == "link":
                self.links[name] = member.linkname
                self.kinds[name] = "link"
            elif kind == "hard":
                self._hard_link(name, parent, last, member.linkname)
            else:
                self._write(tar, member, name, parent, last)
        except _Refused as refused:
            self.skip(name, str(refused))
        except OSError as e:  # a name this file system cannot hold, or the like
            if e.errno in _FATAL:
                raise
            self.skip(name, e.strerror or str(e))

    def _write(
        self, tar: tarfile.TarFile, member: tarfile.TarInfo, name: str, parent: int, last: str
    ) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(last, flags, 0o600, dir_fd=parent)
        try:
            data = tar.extractfile(member)
            if data is not None:
                while chunk := data.read(_CHUNK):
                    _write_all(fd, chunk)
            _set_attributes(fd, member.mode, member.mtime)
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            os.unlink(last, dir_fd=parent)
            raise
        os.close(fd)
        self.files[name] = (st.st_dev, st.st_ino)
        self.kinds[name] = "file"

    def _hard_link(self, name: str, parent: int, last: str, linkname: str) -> None:
        source = _parts(linkname)
        shown = _shown(linkname)
        if isinstance(source, str):
            raise _Refused(f"a hard link to {shown}: {source}")
        identity = self.files.get("/".join(source))
        if not source or identity is None:
            raise _Refused(
                f"a hard link to {shown}, which is not a regular file written earlier"
                " in this stream"
            )
        source_parent = self.folder(source[:-1], create=False)
        st = os.stat(source[-1], dir_fd=source_parent, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != identity:
            raise _Refused(f"a hard link to {shown}, which was replaced")
        os.link(
            source[-1], last, src_dir_fd=source_parent, dst_dir_fd=parent, follow_symlinks=False
        )
        self.files[name] = identity
        self.kinds[name] = "file"

    def finish(self) -> None:
        """Make the symbolic links, now that nothing else will be written, and keep those that
        resolve inside the destination."""
        made = []
        for name, target in self.links.items():
            parts = name.split("/")
            try:
                os.symlink(target, parts[-1], dir_fd=self.folder(parts[:-1], create=False))
            except (_Refused, OSError) as e:
                self.skip(name, str(e))
                continue
            made.append(name)
        self.skipped += _drop_escaping_links(self.root, made)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _copy_data(source: int, dest: int) -> None:
    while chunk := os.read(source, _CHUNK):
        _write_all(dest, chunk)


def _set_attributes(fd: int, mode: int, mtime: float) -> None:
    """Permissions without setuid, setgid, sticky or write for others; the owner can always
    read and write. Modification time if it is a sane number."""
    os.fchmod(fd, (mode & 0o755) | 0o600)
    with contextlib.suppress(OSError, OverflowError, ValueError, TypeError):
        os.utime(fd, (mtime, mtime))


def _kind(member: tarfile.TarInfo) -> str:
    """The member's kind ("dir", "file", "link" or "hard"); otherwise why the member is skipped."""
    if member.isdir():
        return "dir"
    if member.issym():
        return "link"
    if member.islnk():
        return "hard"
    if member.issparse():
        return "a sparse file (tar -c writes none unless asked to)"
    if member.isreg():
        return "file"
    if member.isfifo():
        return "a FIFO"
    if member.ischr() or member.isblk():
        return "a device file"
    return f"an entry of unknown type {member.type!r}"


def _parts(name: str) -> list[str] | str:
    """The parts of a member name, relative to the destination ([] for the destination
    itself); otherwise why the name is refused."""
    if "\0" in name:
        return "a NUL character in its name"
    if len(os.fsencode(name)) > NAME_LIMIT:
        return f"a name longer than {NAME_LIMIT} bytes"
    if name.startswith("/"):
        return "an absolute name"
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        return "'..' in its name"
    if any(len(os.fsencode(p)) > PART_LIMIT for p in parts):
        return f"a part of its name is longer than {PART_LIMIT} bytes"
    return parts


def _target_problem(target: str) -> str | None:
    if not target or "\0" in target:
        return "an empty or invalid target"
    if len(os.fsencode(target)) > NAME_LIMIT:
        return f"a target longer than {NAME_LIMIT} bytes"
    if target.startswith("/"):
        return "an absolute target, outside the destination"
    return None


def _shown(name: str) -> str:
    """A name for a message: quoted with control characters escaped, and cut if long."""
    return repr(name) if len(name) <= 200 else repr(name[:200]) + "..."


# -- paths inside a folder ---------------------------------------------------------------------


def _open_dir(root: int, parts: list[str], create: bool = False) -> int:
    """Open the folder ``root/parts`` (a new descriptor), one part at a time, never through a
    link; makes missing parts if ``create``. Raises _Refused if a part is a link or a file,
    FileNotFoundError if one is missing."""
    fd = os.dup(root)
    try:
        for i, part in enumerate(parts):
            try:
                child = os.open(part, _DIR, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                child = os.open(part, _DIR, dir_fd=fd)
            except NotADirectoryError:
                raise _Refused(f"{_shown('/'.join(parts[: i + 1]))} is not a folder") from None
            except OSError as e:  # ELOOP: a link, never followed
                if e.errno != errno.ELOOP:
                    raise
                above = "/".join(parts[: i + 1])
                raise _Refused(f"{_shown(above)} is a link, which is not followed") from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _resolve(root: int, parts: list[str]) -> list[str]:
    """Where the path ``parts`` (relative to the folder ``root``) leads, following the links
    it meets, as the parts of a link-free path from ``root``. Raises _Refused if it leads
    outside ``root`` (or to an absolute path) or passes too many links. Reads nothing outside
    ``root``. From a missing part on (or a part that is a file), the path is taken as written
    (the system would not follow it further)."""
    todo = list(reversed(parts))
    done: list[str] = []
    hops = 0
    exists = True
    while todo:
        part = todo.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not done:
                raise _Refused("it leads outside the folder")
            done.pop()
            continue
        if not exists:
            done.append(part)
            continue
        try:
            with _Closing(_open_dir(root, done)) as folder:
                st = os.stat(part, dir_fd=folder, follow_symlinks=False)
                target = os.readlink(part, dir_fd=folder) if stat.S_ISLNK(st.st_mode) else None
        except (_Refused, OSError):
            exists = False
            done.append(part)
            continue
        if target is not None:
            hops += 1
            if hops > LINK_HOPS:
                raise _Refused("too many levels of links")
            if target.startswith("/"):
                raise _Refused(f"it leads to the absolute path {_shown(target)}")
            todo.extend(reversed(target.split("/")))
            continue
        done.append(part)
        exists = stat.S_ISDIR(st.st_mode)
    return done


def _drop_escaping_links(root: int, names: list[str]) -> list[str]:
    """Remove the links ``names`` (paths below the folder ``root``) that do not resolve inside
    it, until every remaining one does; returns a line for each removed."""
    skipped = []
    kept = list(names)
    changed = True
    while changed:
        changed = False
        for name in list(kept):
            parts = name.split("/")
            try:
                _resolve(root, parts)
                continue
            except _Refused as refused:
                why = str(refused)
            try:
                with _Closing(_open_dir(root, parts[:-1])) as folder:
                    target = os.readlink(parts[-1], dir_fd=folder)
                    os.unlink(parts[-1], dir_fd=folder)
            except (_Refused, OSError):
                target = "?"
            kept.remove(name)
            changed = True
            skipped.append(f"{_shown(name)} (a link to {_shown(target)}: {why})")
    return skipped


def _copy_folder(source: int, dest: int, skipped: list[str]) -> list[str]:
    """Copy the folder ``source`` into ``dest`` (both descriptors); returns the links made,
    relative to ``dest``. Folders are visited one at a time from a stack of names."""
    links: list[str] = []
    stack: list[list[str]] = [[]]
    while stack:
        parts = stack.pop()
        try:
            here = _open_dir(source, parts)
        except (_Refused, OSError) as e:
            skipped.append(f"{_shown('/'.join(parts))} ({e})")
            continue
        with _Closing(here), _Closing(_open_dir(dest, parts)) as there:
            for name in sorted(os.listdir(here)):
                rel = "/".join([*parts, name])
                try:
                    st = os.stat(name, dir_fd=here, follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        os.mkdir(name, 0o755, dir_fd=there)
                        stack.append([*parts, name])
                    elif stat.S_ISLNK(st.st_mode):
                        target = os.readlink(name, dir_fd=here)
                        if why := _target_problem(target):
                            skipped.append(f"{_shown(rel)} (a link to {_shown(target)}: {why})")
                            continue
                        os.symlink(target, name, dir_fd=there)
                        links.append(rel)
                    elif stat.S_ISREG(st.st_mode):
                        _copy_file(here, there, name, skipped, rel)
                    else:
                        skipped.append(f"{_shown(rel)} ({_special(st.st_mode)})")
                except OSError as e:
                    skipped.append(f"{_shown(rel)} ({e.strerror or e})")
    return links


def _copy_file(here: int, there: int, name: str, skipped: list[str], rel: str) -> None:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    with _Closing(os.open(name, flags, dir_fd=here)) as fd:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped since it was looked at
            skipped.append(f"{_shown(rel)} ({_special(st.st_mode)})")
            return
        out_flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with _Closing(os.open(name, out_flags, 0o600, dir_fd=there)) as out:
            _copy_data(fd, out)
            _set_attributes(out, st.st_mode, st.st_mtime)


def _special(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file, folder or link"
