"""Real OpenSSH servers on 127.0.0.1 as fixtures.

Each server is `/usr/sbin/sshd -D -e` with its own generated ed25519 host key, a free port and
a config in a private folder; it logs (LogLevel DEBUG1, to stderr) into `SSHServer.log_path`.
Clients log in as the unprivileged user `tfuser` (created on first use; tests run as root), with
the session's generated user keys (`user_key`, `user_key_passphrase`) or its password
(`tfuser.password`).

Under CI=true a missing sshd fails the test; locally it skips and names the install command.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from docker_engine import (  # noqa: F401 (fixtures)
    base_image,
    built_images,
    docker_client,
    no_leftovers,
)
from helpers import unavailable

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
USER = "tfuser"
PASSPHRASE = "correct horse"


@dataclass(frozen=True)
class TestUser:
    """The unprivileged account the servers let in (password auth and keys)."""

    __test__ = False  # not a test class, despite the name

    name: str
    password: str
    home: Path
    uid: int
    gid: int


@dataclass(frozen=True)
class UserKey:
    """A generated ed25519 client key pair, authorized on every server the factory starts."""

    private_path: Path
    public_line: str
    passphrase: str | None
    fingerprint: str


def _require_sshd() -> None:
    missing = [p for p in (SSHD, SSH_KEYGEN) if not os.access(p, os.X_OK)]
    if not missing:
        return
    message = (
        f"OpenSSH server not installed ({', '.join(missing)} missing); "
        "run `apt-get install -y openssh-server` (as root)"
    )
    unavailable(message)


def _fingerprint_of_file(path: Path) -> str:
    out = subprocess.run(
        [SSH_KEYGEN, "-l", "-E", "sha256", "-f", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()[1]


def _keygen(path: Path, passphrase: str = "", comment: str = "trainform-test") -> None:
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", passphrase, "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces; ppid follows it.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _descendants(pid: int) -> list[int]:
    tree = _children()
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


class SSHServer:
    """One sshd on 127.0.0.1; `kill()` drops live sessions, `restart()` keeps the port."""

    def __init__(self, root: Path, authorized_keys: list[str], log_level: str = "DEBUG1") -> None:
        self.root = root
        self.address = "127.0.0.1"
        self.port = free_port()
        self.config_path = root / "sshd_config"
        self.host_key_path = root / "ssh_host_ed25519_key"
        self.authorized_keys_path = root / "authorized_keys"
        self.log_path = root / "sshd.log"
        self.pid_path = root / "sshd.pid"
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None
        self._started = False
        # Commands orphaned by kill() (user processes of dropped sessions), reaped at teardown.
        self._orphans: list[tuple[int, str]] = []
        self.authorized_keys_path.write_text("".join(k + "\n" for k in authorized_keys))
        # sshd reads authorized_keys as the user, so it must be readable by tfuser.
        self.authorized_keys_path.chmod(0o644)
        self._new_host_key()
        self._write_config()

    # -- facts -----------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def fingerprint(self) -> str:
        """The host key's "SHA256:..." fingerprint, as `ssh-keygen -lf` prints it."""
        return self._fingerprint

    @property
    def known_hosts_line(self) -> str:
        key_type, blob = self.host_key_path.with_suffix(".pub").read_text().split()[:2]
        return f"[{self.address}]:{self.port} {key_type} {blob}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def log(self, since: int = 0) -> str:
        """The server's log from byte offset `since` (see `log_size`)."""
        with self.log_path.open("rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace").replace("\r\n", "\n")

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def wait_for_log(self, text: str, since: int = 0, timeout: float = 10.0) -> str:
        """Block until `text` appears in the log after `since`; returns that part of the log."""
        deadline = time.monotonic() + timeout
        while True:
            part = self.log(since)
            if text in part:
                return part
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the sshd log within {timeout}s:\n{part}")
            time.sleep(0.05)

    # -- lifecycle -------------------------------------------------------------------------
    def _new_host_key(self) -> None:
        for p in (self.host_key_path, self.host_key_path.with_suffix(".pub")):
            p.unlink(missing_ok=True)
        _keygen(self.host_key_path, comment=f"host-{self.port}")
        self._fingerprint = _fingerprint_of_file(self.host_key_path.with_suffix(".pub"))

    def _write_config(self) -> None:
        self.config_path.write_text(
            f"""\
Port {self.port}
ListenAddress {self.address}
HostKey {self.host_key_path}
PidFile {self.pid_path}
AuthorizedKeysFile {self.authorized_keys_path}
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
AllowUsers {USER}
AllowTcpForwarding yes
X11Forwarding no
PrintMotd no
UseDNS no
LogLevel {self.log_level}
MaxStartups 100:30:200
Subsystem sftp internal-sftp
"""
        )

    def start(self) -> None:
        """Start sshd and wait until it answers. A first start that lost the race for its free
        port moves to another; a restart keeps the port (clients know it) and retries."""
        if self.pid is not None:
            return
        for _attempt in range(5):
            since = self.log_size()
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(
                    [SSHD, "-D", "-e", "-f", str(self.config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
            if self._wait_listening():
                self._started = True
                return
            if "Address already in use" not in self.log(since):
                break
            if self._started:
                time.sleep(0.5)
            else:
                self.port = free_port()
                self._write_config()
        raise RuntimeError(f"sshd on port {self.port} did not start:\n{self.log()}")

    def _wait_listening(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.address, self.port), timeout=1.0) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def _sshd_descendants(self) -> tuple[list[int], list[int]]:
        if self.proc is None:
            return [], []
        pids = _descendants(self.proc.pid)
        sshd = [p for p in pids if _comm(p) == "sshd"]
        return sshd, [p for p in pids if p not in sshd]

    def stop(self) -> None:
        """SIGTERM the listener and its per-connection sshd processes, and wait for them."""
        if self.proc is None:
            return
        sshd, others = self._sshd_descendants()
        self._orphans += [(p, _start_time(p)) for p in others]
        for pid in [self.proc.pid, *sshd]:
            _signal(pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._wait_gone(sshd)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the listener and every per-connection sshd: live sessions drop at once.

        The users' commands of those sessions are not killed here (as after a crash of sshd
        alone); they are reaped when the fixture tears down.
        """
        if self.proc is None:
            return
        sshd, others = self._sshd_descendants()
        self._orphans += [(p, _start_time(p)) for p in others]
        for pid in [self.proc.pid, *sshd]:
            _signal(pid, signal.SIGKILL)
        self.proc.wait()
        self._wait_gone(sshd)
        self.proc = None

    def restart(self, new_host_key: bool = False) -> None:
        """Stop (if running) and start again on the same port, by default with the same key."""
        self.stop()
        if new_host_key:
            self._new_host_key()
        self.start()

    def _wait_gone(self, pids: list[int], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        for pid in pids:
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                # A zombie still has /proc/PID; it is gone for our purposes.
                if _state(pid) == "Z":
                    break
                time.sleep(0.02)

    def teardown(self) -> None:
        self.stop()
        for pid, started in self._orphans:
            if started and _start_time(pid) == started:
                _signal(pid, signal.SIGKILL)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sshd_base() -> Iterator[Path]:
    """A private folder for the session's servers and keys, traversable by tfuser."""
    _require_sshd()
    # sshd's privilege separation directory (normally made by the service unit).
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="trainform-sshd-"))
    # tfuser must reach authorized_keys (sshd opens it as the user) but not list the folder.
    base.chmod(0o711)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def tfuser(sshd_base: Path) -> TestUser:
    """The unprivileged login user, created if missing, with a fresh random password."""
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", USER], check=True)
    password = "pw-" + secrets.token_urlsafe(12)
    subprocess.run(["chpasswd"], input=f"{USER}:{password}\n", text=True, check=True)
    entry = pwd.getpwnam(USER)
    return TestUser(USER, password, Path(entry.pw_dir), entry.pw_uid, entry.pw_gid)


def _user_key(base: Path, name: str, passphrase: str | None) -> UserKey:
    path = base / name
    _keygen(path, passphrase or "", comment=name)
    return UserKey(
        private_path=path,
        public_line=path.with_suffix(".pub").read_text().strip(),
        passphrase=passphrase,
        fingerprint=_fingerprint_of_file(path.with_suffix(".pub")),
    )


@pytest.fixture(scope="session")
def user_key(sshd_base: Path) -> UserKey:
    """An ed25519 client key without passphrase."""
    return _user_key(sshd_base, "id_ed25519", None)


@pytest.fixture(scope="session")
def user_key_passphrase(sshd_base: Path) -> UserKey:
    """An ed25519 client key protected by the passphrase "correct horse"."""
    return _user_key(sshd_base, "id_ed25519_pp", PASSPHRASE)


@pytest.fixture
def sshd_factory(
    sshd_base: Path, tfuser: TestUser, user_key: UserKey, user_key_passphrase: UserKey
) -> Iterator[Callable[..., SSHServer]]:
    """Starts servers on demand (`sshd_factory()` -> running `SSHServer`); all stop after."""
    servers: list[SSHServer] = []

    def start(log_level: str = "DEBUG1") -> SSHServer:
        root = Path(tempfile.mkdtemp(prefix="server-", dir=sshd_base))
        root.chmod(0o711)
        server = SSHServer(root, [user_key.public_line, user_key_passphrase.public_line], log_level)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.teardown()
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture
def sshd(sshd_factory: Callable[..., SSHServer]) -> SSHServer:
    """One running server."""
    return sshd_factory()


@pytest.fixture
def remote_tmp(tfuser: TestUser) -> Iterator[str]:
    """An empty folder owned by tfuser (same machine), removed after the test."""
    path = Path(tempfile.mkdtemp(prefix="tf-test-", dir=tfuser.home))
    os.chown(path, tfuser.uid, tfuser.gid)
    yield str(path)
    shutil.rmtree(path, ignore_errors=True)
