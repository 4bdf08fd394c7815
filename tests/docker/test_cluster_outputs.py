"""What a docker-cluster node hands back when a run's folder is copied home, from a real
container on the real engine: the archive a node packs (`.collect.tar`) is whatever the node
says it is. A node that packs the four-member stream of issue 11 and a spec whose
``outputs_dir`` names a folder of this machine gets nothing of this machine copied.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trainform.remote import docker as dk
from trainform.runs.shipping import collect_run_folder

RUN_DIR = "/var/lib/trainform/runs/r1"


@pytest.fixture
def node(docker_client: Any, base_image: str) -> Iterator[Any]:
    container = docker_client.containers.run(
        base_image, ["sleep", "300"], detach=True, labels={"trainform.test": "cluster-outputs"}
    )
    try:
        yield container
    finally:
        container.remove(force=True)


@pytest.fixture
def root_secret() -> Iterator[tuple[Path, bytes]]:
    folder = Path(tempfile.mkdtemp(prefix="tf-root-only-"))
    folder.chmod(0o700)
    content = b"-----ROOT ONLY " + os.urandom(8).hex().encode() + b"-----\n"
    (folder / "host_key").write_bytes(content)
    (folder / "host_key").chmod(0o600)
    yield folder / "host_key", content
    shutil.rmtree(folder, ignore_errors=True)


def tar_of(*members: tuple[str, bytes, bytes, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, data, link in members:
            info = tarfile.TarInfo(name)
            info.type, info.size, info.linkname, info.mode = kind, len(data), link, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_a_hostile_nodes_archive_and_spec_bring_nothing_of_this_machine(
    node: Any, root_secret: tuple[Path, bytes], tmp_path: Path
) -> None:
    secret, content = root_secret
    climb = "a/" * 20 + "../" * 20 + str(secret).lstrip("/")
    spec = json.dumps({"outputs_dir": str(secret.parent)}).encode()
    packed = tar_of(
        ("spec.json", tarfile.REGTYPE, spec, ""),
        ("output.log", tarfile.REGTYPE, b"log\n", ""),
        ("src/outputs/t", tarfile.REGTYPE, b"harmless", ""),
        ("src/outputs/a", tarfile.SYMTYPE, b"", "."),
        ("src/outputs/t", tarfile.SYMTYPE, b"", climb),
        ("src/outputs/h", tarfile.LNKTYPE, b"", "src/outputs/t"),
        ("status.json", tarfile.SYMTYPE, b"", str(secret)),
    )
    node.exec_run(["mkdir", "-p", RUN_DIR])
    assert node.put_archive(RUN_DIR, tar_of((".collect.tar", tarfile.REGTYPE, packed, "")))

    collected = tmp_path / "collected"
    skipped = dk.get_archive_of_tar(node, f"{RUN_DIR}/.collect.tar", collected)
    assert any(s.startswith("'src/outputs/h' (") for s in skipped), skipped
    assert any(s.startswith("'status.json' (") for s in skipped), skipped
    dest = tmp_path / "store" / "runs" / "r1"
    skipped = collect_run_folder(collected, dest)
    assert any(
        s.startswith(f"outputs_dir {str(secret.parent)!r} (it is absolute)") for s in skipped
    )

    assert (dest / "output.log").read_text() == "log\n"
    assert list((dest / "outputs").iterdir()) == []
    for folder in (collected, dest):
        files = [p for p in folder.rglob("*") if not p.is_symlink() and p.is_file()]
        assert not [p for p in files if content in p.read_bytes()], folder
