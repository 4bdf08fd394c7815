"""A real OpenSSH server on 127.0.0.1 for the SSH benchmarks (`ssh_upload.py`, `ssh_start.py`).

It is the test suite's `SSHServer` (tests/integration/conftest.py) with a generated user key,
logging in as the unprivileged user `tfuser` (created if missing; run as root, as the tests
do). `BenchServer` gives the same login to trainform (`target`) and to the OpenSSH client
(`ssh_argv`), so both sides of every comparison talk to one server with one key.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The repository (for `tests.integration.conftest`) and tests/ (for the modules that conftest
# imports by plain name, as pytest makes them importable).
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from tests.integration.conftest import USER, SSHServer, _keygen  # noqa: E402
from trainform.remote.ssh import SSHTarget  # noqa: E402


@dataclass(frozen=True)
class BenchServer:
    server: SSHServer
    key: Path
    known_hosts: Path
    home: Path

    @property
    def target(self) -> SSHTarget:
        return SSHTarget(
            host=self.server.address,
            port=self.server.port,
            username=USER,
            private_key_file=str(self.key),
            host_key=self.server.fingerprint,
        )

    @property
    def login(self) -> str:
        return f"{USER}@{self.server.address}"

    def ssh_argv(self) -> list[str]:
        """`ssh` with this login's port, key and pinned host key (no agent, no prompts)."""
        return [
            "ssh",
            "-p",
            str(self.server.port),
            "-i",
            str(self.key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
        ]

    def remote_dir(self, prefix: str) -> str:
        """A new empty folder in tfuser's home, owned by tfuser."""
        path = tempfile.mkdtemp(prefix=prefix, dir=self.home)
        entry = pwd.getpwnam(USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)
        return path


@contextmanager
def bench_server() -> Iterator[BenchServer]:
    """Start sshd (LogLevel INFO: debug logging would cost time) and stop it afterwards."""
    if os.geteuid() != 0:
        sys.exit("run as root: the server logs in as the unprivileged user tfuser")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", USER], check=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="trainform-bench-sshd-"))
    base.chmod(0o711)  # sshd reads authorized_keys as tfuser
    server = None
    try:
        key = base / "id_ed25519"
        _keygen(key)
        root = base / "server"
        root.mkdir(mode=0o711)
        server = SSHServer(root, [key.with_suffix(".pub").read_text().strip()], "INFO")
        server.start()
        known_hosts = base / "known_hosts"
        known_hosts.write_text(server.known_hosts_line + "\n")
        yield BenchServer(server, key, known_hosts, Path(pwd.getpwnam(USER).pw_dir))
    finally:
        if server is not None:
            server.teardown()
        shutil.rmtree(base, ignore_errors=True)
