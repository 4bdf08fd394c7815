"""What a hostile target can send back, extracted the way trainform extracts outputs from SSH
hosts and docker-cluster nodes (a tar stream read in streaming mode), and a run folder copied
the way local collection copies it.

Each archive of the corpus is built here, byte by byte where tarfile would not write it. For
every one: nothing outside the destination is written or changed, nothing outside it is read
(a secret file beside the destination, readable by this process, never shows up inside it),
every link left inside resolves inside, and each refused member is named with a reason.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import tarfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from trainform.remote.tarsafe import UnsafeArchive, copy_tree, extract_stream

SECRET = b"root-only secret 7f3a9c of the trainform machine\n"

Member = tuple[tarfile.TarInfo, bytes]


def member(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    data: bytes = b"",
    link: str = "",
    mode: int = 0o644,
    **pax: str,
) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname, info.mode = kind, len(data), link, mode
    info.mtime = 1_700_000_000
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3  # /dev/null
    if pax:
        info.pax_headers = dict(pax)
    return info, data


def archive(*members: Member) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


class Sandbox:
    """``root/outside/secret`` (mode 0600) next to the destination ``root/a/b/dest``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.outside = root / "outside"
        self.outside.mkdir(parents=True)
        self.secret = self.outside / "secret"
        self.secret.write_bytes(SECRET)
        self.secret.chmod(0o600)
        self.dest = root / "a" / "b" / "dest"
        self.dest.parent.mkdir(parents=True)

    def up_to_secret(self) -> str:
        """A link target that climbs from the destination to the root of the file system and
        down to the secret, spelled to look inside ("a/a/../../x" with "a" -> ".")."""
        depth = len(self.dest.resolve().parts) + 2
        return "a/" * depth + "../" * depth + str(self.secret.resolve()).lstrip("/")

    def outside_state(self) -> dict[str, tuple[int, int, str]]:
        """Every entry of the sandbox outside the destination: type, size and content hash."""
        seen = {}
        for folder, dirs, files in os.walk(self.root):
            if Path(folder) == self.dest.parent:
                dirs[:] = [d for d in dirs if d != self.dest.name]
                files = [f for f in files if f != self.dest.name]
            for name in dirs + files:
                path = Path(folder, name)
                st = path.lstat()
                digest = ""
                if stat.S_ISREG(st.st_mode):
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                seen[str(path)] = (stat.S_IFMT(st.st_mode), st.st_size, digest)
        return seen

    def check_contained(self, before: dict[str, tuple[int, int, str]]) -> None:
        assert self.outside_state() == before, "something outside the destination changed"
        root = os.path.realpath(self.dest)
        for folder, dirs, files in os.walk(self.dest):
            for name in dirs + files:
                path = os.path.join(folder, name)
                real = os.path.realpath(path)
                assert real == root or real.startswith(root + os.sep), f"{path} -> {real}"
                if os.path.isfile(path) and not os.path.islink(path):
                    assert SECRET not in Path(path).read_bytes(), f"{path} holds the secret"


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path / "sandbox")


def extract(sandbox: Sandbox, data: bytes) -> list[str]:
    before = sandbox.outside_state()
    skipped = extract_stream(io.BytesIO(data), sandbox.dest)
    sandbox.check_contained(before)
    return skipped


def named(skipped: list[str], *names: str) -> None:
    """Each name is reported as skipped (quoted, cut after 200 characters), with a reason."""
    for name in names:
        shown = repr(name) + " (" if len(name) <= 200 else repr(name[:200]) + "... ("
        assert any(s.startswith(shown) for s in skipped), (name, skipped)


# -- the corpus ----------------------------------------------------------------------------------


def issue_stream(s: Sandbox) -> bytes:
    """The four members of the report: a file, a link to ".", the file's name replaced by a
    link that climbs out through the first link, and a hard link to that name."""
    return archive(
        member("t", data=b"harmless"),
        member("a", tarfile.SYMTYPE, link="."),
        member("t", tarfile.SYMTYPE, link=s.up_to_secret()),
        member("h", tarfile.LNKTYPE, link="t"),
    )


def test_the_reported_four_member_stream_copies_nothing_from_outside(sandbox: Sandbox) -> None:
    skipped = extract(sandbox, issue_stream(sandbox))
    assert not os.path.lexists(sandbox.dest / "h")
    assert not os.path.lexists(sandbox.dest / "t")
    assert (sandbox.dest / "a").is_symlink()  # "." stays inside
    named(skipped, "t", "h")
    assert "not a regular file written earlier" in next(s for s in skipped if s.startswith("'h'"))


CORPUS: dict[str, Callable[[Sandbox], tuple[bytes, list[str]]]] = {
    "hard link to a name replaced by an absolute link": lambda s: (
        archive(
            member("t", data=b"x"),
            member("t", tarfile.SYMTYPE, link=str(s.secret)),
            member("h", tarfile.LNKTYPE, link="t"),
        ),
        ["t"],  # refused before it replaced anything: "h" links to the first "t"
    ),
    "hard link to a name replaced by a folder": lambda s: (
        archive(
            member("t", data=b"x"),
            member("t", tarfile.DIRTYPE),
            member("h", tarfile.LNKTYPE, link="t"),
        ),
        ["h"],
    ),
    "hard link to a name replaced by a climbing link": lambda s: (
        archive(
            member("d", tarfile.DIRTYPE),
            member("d/t", data=b"x"),
            member("d/t", tarfile.SYMTYPE, link="../" * 12 + str(s.secret).lstrip("/")),
            member("d/h", tarfile.LNKTYPE, link="d/t"),
        ),
        ["d/t", "d/h"],
    ),
    "hard links out of the destination": lambda s: (
        archive(
            member("h1", tarfile.LNKTYPE, link=str(s.secret)),
            member("h2", tarfile.LNKTYPE, link="../../../outside/secret"),
            member("h3", tarfile.LNKTYPE, link="x/../../../../outside/secret"),
        ),
        ["h1", "h2", "h3"],
    ),
    "hard link through a link": lambda s: (
        archive(
            member("up", tarfile.SYMTYPE, link="../../.."),
            member("h", tarfile.LNKTYPE, link="up/outside/secret"),
        ),
        ["up", "h"],
    ),
    "hard link to a link": lambda s: (
        archive(
            member("s", tarfile.SYMTYPE, link=str(s.secret)),
            member("h", tarfile.LNKTYPE, link="s"),
        ),
        ["s", "h"],
    ),
    "link chain that leads out": lambda s: (
        archive(
            member("l1", tarfile.SYMTYPE, link="l2"),
            member("l2", tarfile.SYMTYPE, link="l3/x/.."),
            member("l3", tarfile.SYMTYPE, link=".."),
            member("l1/evil", data=b"evil"),
        ),
        ["l1", "l2", "l3", "l1/evil"],
    ),
    "link redirected by a later link": lambda s: (
        archive(
            member("c", tarfile.DIRTYPE),
            member("c/l", tarfile.SYMTYPE, link="../p/../outside/secret"),
            member("p", tarfile.SYMTYPE, link="."),
        ),
        ["c/l"],
    ),
    "link loop": lambda s: (
        archive(
            member("x", tarfile.SYMTYPE, link="y"),
            member("y", tarfile.SYMTYPE, link="x"),
        ),
        ["x"],  # then "y" -> "x" leads nowhere
    ),
    "writing through links": lambda s: (
        archive(
            member("out", tarfile.SYMTYPE, link="../../../outside"),
            member("out/evil", data=b"evil"),
            member("in", tarfile.SYMTYPE, link="."),
            member("in/evil", data=b"evil"),
            member("abs", tarfile.SYMTYPE, link=str(s.outside)),
            member("abs/evil", data=b"evil"),  # written in a folder "abs" (the link was refused)
        ),
        ["out", "out/evil", "in/evil", "abs"],
    ),
    "absolute names and '..'": lambda s: (
        archive(
            member(str(s.outside / "evil-absolute"), data=b"evil"),
            member("../../../outside/evil-parent", data=b"evil"),
            member("x/../../../../outside/evil-sneaky", data=b"evil"),
            member("./../evil-dot", data=b"evil"),
            member("../../../outside", tarfile.DIRTYPE),
        ),
        [
            str(s.outside / "evil-absolute"),
            "../../../outside/evil-parent",
            "x/../../../../outside/evil-sneaky",
            "./../evil-dot",
            "../../../outside",
        ],
    ),
    "devices, FIFOs and unknown types": lambda s: (
        archive(
            member("null", tarfile.CHRTYPE),
            member("disk", tarfile.BLKTYPE),
            member("fifo", tarfile.FIFOTYPE),
            member("odd", b"Z", data=b"?"),
        ),
        ["null", "disk", "fifo", "odd"],
    ),
    "one name, many types": lambda s: (
        archive(
            member("x", data=b"file"),
            member("x", tarfile.DIRTYPE),
            member("x/in", data=b"inside"),
            member("x", tarfile.SYMTYPE, link=str(s.outside)),
            member("x", data=b"a file again"),
            member("x", tarfile.FIFOTYPE),
            member("y", tarfile.SYMTYPE, link="../../../outside/secret"),
            member("y", data=b"y at last"),
            member("z", tarfile.SYMTYPE, link="x/in"),
        ),
        ["x"],
    ),
    "very long names": lambda s: (
        archive(
            member("n" * 5000, data=b"long"),
            member("d/" + "p" * 300, data=b"long part"),
            member("l", tarfile.SYMTYPE, link="../" * 3000 + "etc/passwd"),
            member("bad\0name", data=b"nul"),
        ),
        ["n" * 5000, "d/" + "p" * 300, "l"],
    ),
}


@pytest.mark.parametrize("case", list(CORPUS))
def test_a_malicious_archive_leaves_nothing_outside(sandbox: Sandbox, case: str) -> None:
    data, refused = CORPUS[case](sandbox)
    skipped = extract(sandbox, data)
    named(skipped, *refused)
    assert all(p.is_relative_to(sandbox.dest) for p in sandbox.root.rglob("evil*"))


def test_what_the_corpus_keeps(sandbox: Sandbox) -> None:
    """The later member of a name wins over a file or a link; a folder is never replaced."""
    data, _ = CORPUS["one name, many types"](sandbox)
    extract(sandbox, data)
    assert (sandbox.dest / "x/in").read_bytes() == b"inside"
    assert (sandbox.dest / "y").read_bytes() == b"y at last"
    assert os.readlink(sandbox.dest / "z") == "x/in"


def test_a_link_already_in_the_destination_is_not_followed(sandbox: Sandbox) -> None:
    sandbox.dest.mkdir(parents=True)
    (sandbox.dest / "pre").symlink_to(sandbox.outside)
    before = sandbox.outside_state()
    skipped = extract_stream(io.BytesIO(archive(member("pre/evil", data=b"evil"))), sandbox.dest)
    named(skipped, "pre/evil")
    assert sandbox.outside_state() == before


def test_special_bits_are_dropped(sandbox: Sandbox) -> None:
    extract(sandbox, archive(member("tool", data=b"#!/bin/sh\n", mode=0o7777)))
    assert stat.S_IMODE((sandbox.dest / "tool").stat().st_mode) == 0o755


def test_a_declared_size_larger_than_the_stream_is_an_error(sandbox: Sandbox) -> None:
    data = archive(member("ok", data=b"fine"), member("big", data=b"x" * 4096))
    header = data.index(b"big\0") - (data.index(b"big\0") % 512)
    info = tarfile.TarInfo.frombuf(data[header : header + 512], "utf-8", "surrogateescape")
    info.size = 1 << 40  # a terabyte, with 4 KiB behind it
    cut = data[:header] + info.tobuf(tarfile.GNU_FORMAT) + data[header + 512 : header + 512 + 4096]
    before = sandbox.outside_state()
    with pytest.raises(tarfile.TarError):
        extract_stream(io.BytesIO(cut), sandbox.dest)
    sandbox.check_contained(before)
    assert (sandbox.dest / "ok").read_bytes() == b"fine"
    assert not os.path.lexists(sandbox.dest / "big")  # the partial file is removed


class Zeros(io.RawIOBase):
    """``head`` followed by ``size`` zero bytes, made as they are read."""

    def __init__(self, head: bytes, size: int) -> None:
        self.head, self.left = head, size

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        if self.head:
            n = min(len(b), len(self.head))
            b[:n], self.head = self.head[:n], self.head[n:]
            return n
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME])
def test_a_huge_extended_header_is_refused_without_reading_it(
    sandbox: Sandbox, kind: bytes
) -> None:
    info = tarfile.TarInfo("././@LongLink" if kind == tarfile.GNUTYPE_LONGNAME else "pax")
    info.type, info.size = kind, 256 << 20
    header = info.tobuf(
        tarfile.GNU_FORMAT if kind == tarfile.GNUTYPE_LONGNAME else tarfile.USTAR_FORMAT
    )
    stream = io.BufferedReader(Zeros(header, 256 << 20))
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(UnsafeArchive, match="extended header"):
            extract_stream(stream, sandbox.dest)  # type: ignore[arg-type]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"{peak} bytes held"
    assert time.monotonic() - started < 10


def test_a_sparse_member_is_skipped(sandbox: Sandbox) -> None:
    """A GNU 1.0 sparse file declares its real size apart from its data: 64 MiB of holes."""
    sparse_map = b"1\n%d\n1\n" % ((64 << 20) - 1)
    body = sparse_map + bytes(512 - len(sparse_map)) + b"!"
    data = archive(
        member(
            "GNUSparseFile.0/holes",
            data=body,
            **{
                "GNU.sparse.major": "1",
                "GNU.sparse.minor": "0",
                "GNU.sparse.name": "holes",
                "GNU.sparse.realsize": str(64 << 20),
            },
        ),
        member("after", data=b"after"),
    )
    skipped = extract(sandbox, data)
    named(skipped, "holes")
    assert not os.path.lexists(sandbox.dest / "holes")
    assert (sandbox.dest / "after").read_bytes() == b"after"


def test_a_tree_from_real_tar_comes_back_whole(sandbox: Sandbox, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "a.txt").write_text("alpha")
    (tree / "sub" / "deeper" / "b.bin").write_bytes(bytes(range(256)) * 100)
    (tree / "sub" / "to_a").symlink_to("../a.txt")
    (tree / "to_sub").symlink_to("sub")
    (tree / "dangling").symlink_to("not-there")
    os.link(tree / "a.txt", tree / "hard.txt")
    data = subprocess.run(
        ["tar", "-c", "-f", "-", "-C", str(tree), "."], check=True, capture_output=True
    ).stdout
    assert extract(sandbox, data) == []
    dest = sandbox.dest
    assert (dest / "a.txt").read_text() == (dest / "hard.txt").read_text() == "alpha"
    assert (dest / "a.txt").stat().st_ino == (dest / "hard.txt").stat().st_ino
    assert (dest / "sub/deeper/b.bin").read_bytes() == bytes(range(256)) * 100
    assert os.readlink(dest / "sub/to_a") == "../a.txt"
    assert (dest / "to_sub/deeper/b.bin").is_file()
    assert os.readlink(dest / "dangling") == "not-there"


# -- a run folder copied on this machine ----------------------------------------------------------


def test_copying_a_run_folder_follows_no_link_out_and_skips_fifos(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    src = tmp_path / "run" / "src"
    outputs = src / "outputs"
    (outputs / "sub").mkdir(parents=True)
    (outputs / "model.bin").write_bytes(b"weights")
    (outputs / "sub" / "to_model").symlink_to("../model.bin")
    (outputs / "abs").symlink_to(sandbox.secret)
    (outputs / "up").symlink_to("../../../../sandbox/outside/secret")
    (outputs / "to_src").symlink_to("..")  # the run folder, outside the outputs folder
    (outputs / "etc").symlink_to("/etc")
    os.mkfifo(outputs / "pipe")
    skipped = copy_tree(src, "outputs", sandbox.dest)
    named(skipped, "abs", "up", "to_src", "etc", "pipe")
    assert (sandbox.dest / "model.bin").read_bytes() == b"weights"
    assert os.readlink(sandbox.dest / "sub/to_model") == "../model.bin"
    for name in ("abs", "up", "to_src", "etc", "pipe"):
        assert not os.path.lexists(sandbox.dest / name), name
    sandbox.check_contained(sandbox.outside_state())


def test_an_outputs_folder_that_is_a_link_is_followed_only_inside(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    src = tmp_path / "run" / "src"
    (src / "real").mkdir(parents=True)
    (src / "real" / "f").write_text("inside")
    (src / "outputs").symlink_to("real")
    (src / "leak").symlink_to(sandbox.outside)
    assert copy_tree(src, "outputs", sandbox.dest) == []
    assert (sandbox.dest / "f").read_text() == "inside"
    other = tmp_path / "other"
    skipped = copy_tree(src, "leak", other)
    assert skipped and skipped[0].startswith("'leak' (")
    assert list(other.iterdir()) == []


def test_copy_tree_of_a_missing_root_copies_nothing(tmp_path: Path) -> None:
    """A run that failed before its source folder existed (a failed image build) is
    collected with empty outputs, not a crash."""
    dest = tmp_path / "dest"
    assert copy_tree(tmp_path / "never-made", "outputs", dest) == []
    assert dest.is_dir() and not any(dest.iterdir())
