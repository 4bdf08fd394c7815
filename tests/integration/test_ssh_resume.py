"""An upload to an SSH target cut off halfway, then resumed by applying again, through the
real CLI against a real OpenSSH server (fixtures in conftest.py).

The cut is made deterministic without timing: the host's upload process is paused
(SIGSTOP) as soon as it starts and let go in short steps until a few blobs are in the host's
cache, then the server is killed with every session while it is paused, so the connection
drops in the middle of the stream. The second `apply` must send exactly the blobs the host
did not have complete, and the host's cache must hold no truncated blob.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest
from helpers import recorded

if TYPE_CHECKING:  # fixtures' types; pytest provides the objects
    from tests.conftest import CLI
    from tests.integration.conftest import SSHServer, TestUser, UserKey

T = TypeVar("T")
FILES = 30
FILE_SIZE = 1 << 20


def config(server: SSHServer, key: UserKey, workdir: str) -> str:
    return f"""\
compute "box" {{
  type             = "ssh"
  address          = "{server.address}"
  port             = {server.port}
  username         = "tfuser"
  private_key_file = "{key.private_path}"
  host_key         = "{server.fingerprint}"
  workdir          = "{workdir}"
}}

environment "system" {{
  python       = "python3"
  user_managed = true
}}

run "train" {{
  experiment  = "resume"
  compute     = compute.box
  environment = environment.system
  source_dir  = "src"
  script      = "train.py"
}}
"""


def wait_for(what: str, check: Callable[[], T], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s")
        time.sleep(0.005)
    return value


def upload_process(tfuser: TestUser, blobs: str) -> int | None:
    """The pid of tfuser's process receiving blobs into `blobs` (the upload script)."""
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or entry.stat().st_uid != tfuser.uid:
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b".tf-part-" in a for a in argv) and blobs.encode() in argv:
            return int(entry.name)
    return None


def complete_blobs(blobs: Path) -> dict[str, int]:
    """The blobs in the host's cache under their final names (hash -> size)."""
    if not blobs.is_dir():
        return {}
    return {
        f"{folder.name}{blob.name}": blob.stat().st_size
        for folder in blobs.iterdir()
        for blob in folder.iterdir()
        if not blob.name.startswith(".")
    }


def test_an_upload_cut_off_halfway_resumes_with_only_the_missing_blobs(
    cli: CLI, sshd: SSHServer, user_key: UserKey, remote_tmp: str, tfuser: TestUser
) -> None:
    workdir = f"{remote_tmp}/tf"
    blobs = Path(workdir) / "blobs"
    cli.write("main.train.hcl", config(sshd, user_key, workdir))
    cli.write("src/train.py", "print('trained on', len(__import__('os').listdir('data')))\n")
    for i in range(FILES):
        (cli.cwd / "src" / "data").mkdir(parents=True, exist_ok=True)
        (cli.cwd / "src" / "data" / f"part{i:02d}.bin").write_bytes(os.urandom(FILE_SIZE))
    total = FILES + 1  # the data parts and train.py

    apply = subprocess.Popen(
        [sys.executable, "-m", "trainform", "apply", "--auto-approve"],
        cwd=cli.cwd,
        env=cli.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    pid = None
    try:
        pid = wait_for("the upload to start", lambda: upload_process(tfuser, str(blobs)))
        os.kill(pid, signal.SIGSTOP)
        # Let the upload go a little at a time until some blobs (not all) are complete.
        while len(complete_blobs(blobs)) < 3:
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.01)
            os.kill(pid, signal.SIGSTOP)
        sshd.kill()  # the connection drops mid-stream
        output = apply.communicate(timeout=120)[0]
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGCONT)  # it reads to the cut, fails and cleans up
        if apply.poll() is None:
            apply.kill()
            apply.wait()
    assert apply.returncode == 1, output
    assert "Traceback" not in output, output
    assert "connection" in output and "lost" in output, output
    wait_for("the upload process to end", lambda: upload_process(tfuser, str(blobs)) is None)

    # Whole blobs only, under their final names; no partial file left behind.
    done = complete_blobs(blobs)
    assert 3 <= len(done) < total, done
    for name in done:
        content = (blobs / name[:2] / name[2:]).read_bytes()
        assert hashlib.sha256(content).hexdigest() == name, f"truncated blob {name}"
    leftovers = list(blobs.rglob(".tf-part-*"))
    assert not leftovers, leftovers

    sshd.start()  # same port, same host key
    second = cli("apply", "--auto-approve")
    assert second.code == 0, second.all
    assert f"trained on {FILES}" in second.out, second.out
    upload = recorded(cli.cwd)["run.train"].computed["handle"]["upload"]
    assert upload["files"] == total - len(done), (upload, len(done))
    assert upload["bytes"] < (total - len(done) + 1) * FILE_SIZE, upload
    assert len(complete_blobs(blobs)) == total
