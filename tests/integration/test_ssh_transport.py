"""The SSH transport against real OpenSSH servers on 127.0.0.1 (see conftest.py), logging in
as the unprivileged user tfuser: host key checks, credentials, quoting, transfers, failures."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from trainform.errors import ProviderError
from trainform.remote.ssh import (
    HostKeyError,
    SSHAuthError,
    SSHConnection,
    SSHTarget,
    fingerprint_of,
)
from trainform.remote.tarsafe import extract_safely

if TYPE_CHECKING:  # fixtures' types; pytest provides the objects
    from tests.integration.conftest import SSHServer, TestUser, UserKey

ARGV_PROBE = "import sys, json; print(json.dumps(sys.argv[1:]))"
SHA256_TREE = """\
import hashlib, json, os, sys
root = sys.argv[1]
out = {}
for d, _, files in os.walk(root):
    for f in files:
        p = os.path.join(d, f)
        out[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
print(json.dumps(out))
"""


def target(server: SSHServer, key: UserKey | None = None, **options: Any) -> SSHTarget:
    """A target for `server` as tfuser, pinned to its host key unless options say otherwise."""
    settings: dict[str, Any] = {
        "host": server.address,
        "port": server.port,
        "username": "tfuser",
        "host_key": server.fingerprint,
        "connect_timeout": 5.0,
    }
    if key is not None:
        settings["private_key_file"] = str(key.private_path)
        settings["private_key_passphrase"] = key.passphrase
    settings.update(options)
    return SSHTarget(**settings)


def auth_log_after(server: SSHServer, since: int) -> str:
    """The server's log for a connection that ended without logging in (waits for its end)."""
    return server.wait_for_log("do_cleanup", since=since)


def assert_no_auth_attempt(log: str) -> None:
    # sshd logs every authentication request at DEBUG1 ("userauth-request ... method ...").
    for sign in ("userauth-request", "Accepted", "Failed password", "Failed publickey"):
        assert sign not in log, f"{sign!r} in the server log:\n{log}"


# -- host keys and credentials ---------------------------------------------------------------


def test_key_auth_with_pinned_fingerprint(sshd: SSHServer, user_key: UserKey) -> None:
    since = sshd.log_size()
    with SSHConnection(target(sshd, user_key)) as conn:
        assert conn.fingerprint == sshd.fingerprint  # same as `ssh-keygen -lf` prints
        assert conn.run(["id", "-un"])[1] == b"tfuser\n"
    assert "Accepted publickey for tfuser" in sshd.log(since)


def test_fingerprint_of_matches_ssh_keygen(user_key: UserKey) -> None:
    import paramiko

    key = paramiko.PKey.from_path(user_key.private_path)
    assert fingerprint_of(key) == user_key.fingerprint


@pytest.mark.parametrize("hashed", [False, True], ids=["plain", "hashed"])
def test_known_hosts_file(sshd: SSHServer, user_key: UserKey, tmp_path: Path, hashed: bool) -> None:
    known = tmp_path / "known_hosts"
    other = "[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ6scIIUVKiz1miIejZGonDw3nSBfm1QTDVuHdF0vkWz"
    known.write_text(f"# a comment\n{other}\n{sshd.known_hosts_line}\n")
    if hashed:
        subprocess.run(["ssh-keygen", "-H", "-f", str(known)], check=True, capture_output=True)
        assert "127.0.0.1" not in known.read_text()
    t = target(sshd, user_key, host_key=None, known_hosts=str(known))
    with SSHConnection(t) as conn:
        assert conn.connect() == sshd.fingerprint
        assert conn.run(["id", "-un"])[1] == b"tfuser\n"


def test_unknown_host_key_is_refused_before_authentication(
    sshd: SSHServer, user_key: UserKey, tfuser: TestUser, tmp_path: Path
) -> None:
    t = target(
        sshd,
        user_key,
        host_key=None,
        known_hosts=str(tmp_path / "empty_known_hosts"),
        password=tfuser.password,
    )
    since = sshd.log_size()
    with pytest.raises(HostKeyError) as caught:
        SSHConnection(t).connect()
    message = str(caught.value)
    assert sshd.fingerprint in message
    assert f'host_key = "{sshd.fingerprint}"' in message
    assert f"host key of 127.0.0.1:{sshd.port} is not known" in message
    assert caught.value.fingerprint == sshd.fingerprint
    assert caught.value.host == sshd.endpoint
    assert not caught.value.changed
    assert_no_auth_attempt(auth_log_after(sshd, since))


def test_trust_on_first_use_then_changed_key_is_refused(
    sshd: SSHServer, user_key: UserKey, tfuser: TestUser, tmp_path: Path
) -> None:
    t = target(
        sshd,
        user_key,
        host_key=None,
        known_hosts=str(tmp_path / "empty_known_hosts"),
        trust_on_first_use=True,
        password=tfuser.password,
    )
    with SSHConnection(t) as conn:
        first = conn.connect()
    assert first == sshd.fingerprint
    with SSHConnection(t, pinned=first) as conn:  # the recorded key still matches
        assert conn.run(["true"])[0] == 0

    old_known_line = sshd.known_hosts_line
    sshd.restart(new_host_key=True)
    assert sshd.fingerprint != first
    since = sshd.log_size()
    with pytest.raises(HostKeyError) as caught:
        SSHConnection(t, pinned=first).connect()
    message = str(caught.value)
    assert "man-in-the-middle" in message
    assert "no credentials were sent" in message
    assert f"now {sshd.fingerprint}, expected {first}" in message
    assert caught.value.changed and caught.value.expected == [first]
    assert_no_auth_attempt(auth_log_after(sshd, since))

    # The same through a known_hosts file that holds the old key.
    known = tmp_path / "known_hosts"
    known.write_text(old_known_line + "\n")
    since = sshd.log_size()
    with pytest.raises(HostKeyError, match="man-in-the-middle"):
        SSHConnection(target(sshd, user_key, host_key=None, known_hosts=str(known))).connect()
    assert_no_auth_attempt(auth_log_after(sshd, since))

    # Updating host_key is how the user accepts the new key; it wins over the recorded pin.
    with SSHConnection(target(sshd, user_key), pinned=first) as conn:
        assert conn.run(["id", "-un"])[1] == b"tfuser\n"


def test_password_auth(sshd: SSHServer, tfuser: TestUser) -> None:
    since = sshd.log_size()
    with SSHConnection(target(sshd, password=tfuser.password)) as conn:
        assert conn.run(["id", "-un"])[1] == b"tfuser\n"
    assert "Accepted password for tfuser" in sshd.log(since)


def test_passphrase_protected_key(sshd: SSHServer, user_key_passphrase: UserKey) -> None:
    assert user_key_passphrase.passphrase == "correct horse"
    with SSHConnection(target(sshd, user_key_passphrase)) as conn:
        assert conn.run(["id", "-un"])[1] == b"tfuser\n"

    wrong = "battery staple"
    t = target(sshd, user_key_passphrase, private_key_passphrase=wrong)
    with pytest.raises(SSHAuthError) as caught:
        SSHConnection(t).connect()
    assert str(user_key_passphrase.private_path) in str(caught.value)
    assert "wrong private_key_passphrase" in str(caught.value)
    assert wrong not in str(caught.value) and wrong not in repr(t)

    with pytest.raises(SSHAuthError, match="set private_key_passphrase"):
        SSHConnection(target(sshd, user_key_passphrase, private_key_passphrase=None)).connect()


def test_wrong_credentials(
    sshd: SSHServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # paramiko's debug log too
    wrong = "not-the-password-$ecret"
    since = sshd.log_size()
    t = target(sshd, password=wrong)
    with pytest.raises(SSHAuthError) as caught:
        SSHConnection(t).connect()
    assert (
        str(caught.value)
        == f"authentication as tfuser@127.0.0.1:{sshd.port} failed (tried: password)"
    )
    assert caught.value.host == sshd.endpoint
    assert "Failed password for tfuser" in sshd.wait_for_log("Failed password", since)

    stranger = tmp_path / "id_stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    t2 = target(sshd, password=wrong, private_key_file=str(stranger))
    with pytest.raises(SSHAuthError) as caught2:
        SSHConnection(t2).connect()
    assert f"(tried: key {stranger}, password)" in str(caught2.value)

    for text in (str(caught.value), str(caught2.value), repr(t), repr(t2), caplog.text):
        assert wrong not in text


def test_unreachable_host(sshd: SSHServer, user_key: UserKey) -> None:
    sshd.stop()
    with pytest.raises(ProviderError) as caught:
        SSHConnection(target(sshd, user_key)).connect()
    assert str(caught.value) == f"cannot connect to 127.0.0.1:{sshd.port}: connection refused"
    assert caught.value.host == sshd.endpoint


# -- commands ----------------------------------------------------------------------------------


def test_run_keeps_arguments_intact(sshd: SSHServer, user_key: UserKey) -> None:
    tricky = [
        "two words",
        "it's",
        'say "hi"',
        "$HOME and ${PATH}",
        "a; rm -rf /tmp/nothing-here",
        "line one\nline two",
        "`id`",
        "$(id)",
        "*",
        "",
        "back\\slash",
        "ünïcödé ✓",
        "-n",
    ]
    with SSHConnection(target(sshd, user_key)) as conn:
        code, out, _ = conn.run(["python3", "-c", ARGV_PROBE, *tricky])
        assert code == 0
        assert json.loads(out) == tricky
        assert json.loads(conn.python(ARGV_PROBE, tricky)) == tricky
        assert conn.run(["id", "-un"])[1] == b"tfuser\n"


def test_run_input_output_and_failures(sshd: SSHServer, user_key: UserKey) -> None:
    data = os.urandom(3 << 20)  # larger than the SSH windows: needs writing while reading
    with SSHConnection(target(sshd, user_key)) as conn:
        assert conn.run(["cat"], input=data)[1] == data

        with pytest.raises(ProviderError) as caught:
            conn.run(["sh", "-c", "echo one >&2; echo oops >&2; exit 3"])
        assert caught.value.exit_code == 3
        assert caught.value.host == sshd.endpoint
        assert "oops" in caught.value.stderr_tail and "oops" in str(caught.value)
        assert "exit code 3" in str(caught.value)

        assert conn.run(["sh", "-c", "exit 5"], check=False)[0] == 5

        started = time.monotonic()
        with pytest.raises(ProviderError, match=r"did not finish within 0\.5 s"):
            conn.run(["sleep", "5"], timeout=0.5)
        assert time.monotonic() - started < 3
        assert conn.run(["echo", "still usable"])[1] == b"still usable\n"


def test_read_from(sshd: SSHServer, user_key: UserKey, remote_tmp: str) -> None:
    path = f"{remote_tmp}/log.txt"
    with SSHConnection(target(sshd, user_key)) as conn:
        assert conn.read_from(path, 0) == (b"", 0)  # not written yet
        conn.run(["sh", "-c", 'printf "hello world" > "$1"', "sh", path])
        assert conn.read_from(path, 0, limit=5) == (b"hello", 5)
        assert conn.read_from(path, 5) == (b" world", 11)
        assert conn.read_from(path, 11) == (b"", 11)


def test_server_killed_mid_command_raises(
    sshd: SSHServer, user_key: UserKey, remote_tmp: str
) -> None:
    marker = f"{remote_tmp}/started"
    result: dict[str, Any] = {}
    conn = SSHConnection(target(sshd, user_key))
    conn.connect()

    def run() -> None:
        try:
            result["value"] = conn.run(["sh", "-c", 'touch "$1"; sleep 30', "sh", marker])
        except BaseException as e:
            result["error"] = e

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    deadline = time.monotonic() + 10
    while not os.path.exists(marker):
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.05)
    started = time.monotonic()
    sshd.kill()
    worker.join(timeout=15)
    assert not worker.is_alive(), "run() hung after the server died"
    assert time.monotonic() - started < 10
    error = result.get("error")
    assert isinstance(error, ProviderError), result
    assert "lost" in str(error) and error.host == sshd.endpoint
    with pytest.raises(ProviderError, match="lost"):
        conn.run(["true"])

    sshd.restart()  # same port, same host key: a new connection works again
    assert conn.connect() == sshd.fingerprint
    assert conn.run(["id", "-un"])[1] == b"tfuser\n"
    conn.close()


# -- files -------------------------------------------------------------------------------------


def test_upload_stream_many_files(
    sshd: SSHServer, user_key: UserKey, remote_tmp: str, tfuser: TestUser, tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(5 << 20))
    big.chmod(0o755)
    files: list[tuple[str, bytes | Path]] = [
        (f"d{i % 7}/sub/file {i}.txt", f"content {i}\n".encode() * (i + 1)) for i in range(200)
    ]
    files.append(("data/big.bin", big))
    expected = {
        name: hashlib.sha256(src.read_bytes() if isinstance(src, Path) else src).hexdigest()
        for name, src in files
    }
    seen: list[int] = []
    dest = f"{remote_tmp}/not/yet/there"
    with SSHConnection(target(sshd, user_key)) as conn:
        since = sshd.log_size()
        sent = conn.upload_stream(files, dest, progress=seen.append)
        assert sshd.log(since).count("Starting session") == 1  # one channel for everything
        remote = json.loads(conn.python(SHA256_TREE, [dest]))
        assert remote == expected
        assert conn.run(["test", "-x", f"{dest}/data/big.bin"], check=False)[0] == 0
    total = sum(len(v) if isinstance(v, bytes) else v.stat().st_size for _, v in files)
    assert total < sent < total + 200 * 2048 + 65536
    assert seen and seen[-1] == sent
    assert (Path(dest) / "data/big.bin").stat().st_uid == tfuser.uid
    assert not [p for p in Path(dest).iterdir() if p.name.startswith(".tf-upload")]


def test_upload_interrupted_leaves_no_truncated_file(
    sshd: SSHServer, user_key: UserKey, remote_tmp: str, tmp_path: Path
) -> None:
    blob = os.urandom(4 << 20)
    files: list[tuple[str, bytes | Path]] = [(f"small{i}", b"x" * 1000) for i in range(20)]
    files += [("huge1", blob), ("huge2", blob)]
    killed = threading.Event()

    def progress(count: int) -> None:
        if count > (6 << 20) and not killed.is_set():  # halfway through huge2
            killed.set()
            sshd.kill()

    with pytest.raises(ProviderError):
        SSHConnection(target(sshd, user_key)).upload_stream(files, remote_tmp, progress=progress)
    assert killed.is_set()
    deadline = time.monotonic() + 10
    # the host's writer notices the dropped connection by itself, then removes its temporary
    # folder and the part file it was writing
    while [p for p in Path(remote_tmp).iterdir() if p.name.startswith((".tf-upload", ".tf-part"))]:
        assert time.monotonic() < deadline, "the temporary files were not cleaned up"
        time.sleep(0.1)
    names = sorted(p.name for p in Path(remote_tmp).iterdir())
    assert "huge2" not in names
    for name in names:
        want = dict(files)[name]
        assert Path(remote_tmp, name).read_bytes() == want, f"{name} is truncated"


def test_download_tree_stays_inside_dest(
    sshd: SSHServer, user_key: UserKey, remote_tmp: str, tmp_path: Path
) -> None:
    make_tree = """\
import os, sys
root = sys.argv[1]
os.makedirs(os.path.join(root, "sub/deeper"))
open(os.path.join(root, "a.txt"), "w").write("alpha")
open(os.path.join(root, "sub/deeper/b.bin"), "wb").write(bytes(range(256)) * 100)
os.symlink("/etc/passwd", os.path.join(root, "passwd"))
os.symlink("/etc", os.path.join(root, "etc"))
os.symlink("../../../../../../etc/passwd", os.path.join(root, "sub/up"))
os.symlink("../a.txt", os.path.join(root, "sub/to_a"))
os.link(os.path.join(root, "a.txt"), os.path.join(root, "hard.txt"))
"""
    dest = tmp_path / "run" / "outputs"
    with SSHConnection(target(sshd, user_key)) as conn:
        conn.python(make_tree, [remote_tmp])
        skipped = conn.download_tree(remote_tmp, dest)
    assert (dest / "a.txt").read_text() == "alpha"
    assert (dest / "hard.txt").read_text() == "alpha"
    assert (dest / "sub/deeper/b.bin").read_bytes() == bytes(range(256)) * 100
    assert (dest / "sub/to_a").is_symlink() and (dest / "sub/to_a").read_text() == "alpha"
    for name in ("passwd", "etc", "sub/up"):
        assert not os.path.lexists(dest / name), name
        assert any(repr(name) in s for s in skipped), skipped
    root = os.path.realpath(dest)
    for folder, dirs, names in os.walk(dest):
        for name in dirs + names:
            real = os.path.realpath(os.path.join(folder, name))
            assert real == root or real.startswith(root + os.sep), real


def test_download_tree_missing_folder(sshd: SSHServer, user_key: UserKey, tmp_path: Path) -> None:
    with SSHConnection(target(sshd, user_key)) as conn, pytest.raises(ProviderError) as caught:
        conn.download_tree("/nonexistent/outputs", tmp_path / "dest")
    assert caught.value.exit_code == 2
    assert "nonexistent" in str(caught.value)


def _evil_tar() -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add(
            name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = ""
        ) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.size, info.linkname = kind, len(data), link
            tar.addfile(info, io.BytesIO(data) if data else None)

        add("ok.txt", data=b"fine")
        add("/tmp/absolute-evil.txt", data=b"evil")
        add("../evil-parent.txt", data=b"evil")
        add("sub/../../evil-sneaky.txt", data=b"evil")
        add("null", tarfile.CHRTYPE)
        add("fifo", tarfile.FIFOTYPE)
        add("sub", tarfile.DIRTYPE)
        add("sub/d", tarfile.SYMTYPE, link="..")  # inside on its own...
        add("sub/e", tarfile.SYMTYPE, link="d/..")  # ...but this one then leads out
        add("sub/e/evil-through-link.txt", data=b"evil")
        add("out", tarfile.SYMTYPE, link="/tmp")
        add("out/evil-through-out.txt", data=b"evil")
        add("hard", tarfile.LNKTYPE, link="/etc/passwd")
        add("ok.txt", tarfile.SYMTYPE, link="/etc/passwd")  # replaces the file, not followed
    buf.seek(0)
    return buf


def test_extraction_refuses_hostile_archives(tmp_path: Path) -> None:
    """What a compromised host could send instead of `tar -c`: nothing lands outside dest."""
    dest = tmp_path / "box" / "dest"
    with tarfile.open(fileobj=_evil_tar(), mode="r|") as tar:
        skipped = extract_safely(tar, dest)
    assert (dest / "sub/d").is_symlink()  # a link that stays inside is kept
    assert (dest / "out/evil-through-out.txt").exists()  # "out" was refused as a link
    for name in (
        "/tmp/absolute-evil.txt",
        "../evil-parent.txt",
        "sub/../../evil-sneaky.txt",
        "null",
        "fifo",
        "sub/e/evil-through-link.txt",
        "out",
        "hard",
        "ok.txt",
    ):
        assert any(s.startswith(repr(name)) for s in skipped), (name, skipped)
    assert not os.path.lexists(dest / "sub/e")  # removed by the final check
    assert not Path("/tmp/absolute-evil.txt").exists()
    assert not Path("/tmp/evil-through-out.txt").exists()
    assert all(p.is_relative_to(dest) for p in tmp_path.glob("**/evil*"))
    root = os.path.realpath(dest)
    for folder, dirs, names in os.walk(dest):
        for name in dirs + names:
            real = os.path.realpath(os.path.join(folder, name))
            assert real == root or real.startswith(root + os.sep), (name, real)


# -- proxy jump ----------------------------------------------------------------------------------


def test_proxy_jump_through_a_bastion(
    sshd_factory: Callable[..., SSHServer], user_key: UserKey, tmp_path: Path
) -> None:
    bastion, inner = sshd_factory(), sshd_factory()
    jump = target(bastion, user_key)
    since_bastion, since_inner = bastion.log_size(), inner.log_size()
    with SSHConnection(target(inner, user_key, proxy_jump=jump)) as conn:
        assert conn.fingerprint == inner.fingerprint
        assert conn.fingerprints == {
            bastion.endpoint: bastion.fingerprint,
            inner.endpoint: inner.fingerprint,
        }
        assert conn.run(["id", "-un"])[1] == b"tfuser\n"
    bastion_log = bastion.log(since_bastion)
    assert "ctype direct-tcpip" in bastion_log
    assert f"target 127.0.0.1 port {inner.port}" in bastion_log
    assert "Accepted publickey for tfuser" in inner.log(since_inner)

    # The bastion's key is checked like any other.
    unknown = target(bastion, user_key, host_key=None, known_hosts=str(tmp_path / "none"))
    since_inner = inner.log_size()
    with pytest.raises(HostKeyError) as caught:
        SSHConnection(target(inner, user_key, proxy_jump=unknown)).connect()
    assert caught.value.host == bastion.endpoint
    assert "Connection from" not in inner.log(since_inner)

    # So is the target's, seen through the bastion.
    with pytest.raises(HostKeyError, match="man-in-the-middle"):
        SSHConnection(
            target(inner, user_key, proxy_jump=jump, host_key=bastion.fingerprint)
        ).connect()


def test_proxy_jump_to_a_closed_port(
    sshd_factory: Callable[..., SSHServer], user_key: UserKey
) -> None:
    bastion, inner = sshd_factory(), sshd_factory()
    inner.stop()
    with pytest.raises(ProviderError) as caught:
        SSHConnection(target(inner, user_key, proxy_jump=target(bastion, user_key))).connect()
    assert f"cannot connect to 127.0.0.1:{inner.port} through {bastion.endpoint}" in str(
        caught.value
    )


# -- packaging -----------------------------------------------------------------------------------


def test_paramiko_is_imported_lazily() -> None:
    code = (
        "import sys, runpy\n"
        "import trainform.remote.ssh\n"
        "sys.argv = ['trainform', '--version']\n"
        "try:\n"
        "    runpy.run_module('trainform', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('paramiko' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("False"), out


def test_refusals_print_no_library_tracebacks(sshd: SSHServer, user_key: UserKey) -> None:
    """A refused connection is one ProviderError, not paramiko tracebacks on the terminal."""
    code = (
        "from trainform.remote.ssh import SSHConnection, SSHTarget\n"
        "from trainform.errors import ProviderError\n"
        f"t = SSHTarget('127.0.0.1', {sshd.port}, 'tfuser', {str(user_key.private_path)!r},\n"
        "              host_key='SHA256:' + 'A' * 43)\n"
        "try:\n"
        "    SSHConnection(t).connect()\n"
        "except ProviderError as e:\n"
        "    print(type(e).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "HostKeyError\n"
    assert out.stderr == ""
