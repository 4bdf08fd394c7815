"""SSH transport: verified connections, argv-quoted commands, batched uploads, safe downloads.

Built on paramiko, imported lazily (only once a connection is made). The host key is checked
right after the key exchange and before any authentication request, so no credential is ever
sent to a host whose key is unknown or has changed. Remote commands are built from argument
vectors with `shlex.join`; file transfers are tar streams over one exec channel each.

paramiko and socket errors are translated into `ProviderError` (and its subclasses below) here;
no message or log line contains a password or passphrase.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import logging
import os
import re
import shlex
import socket
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from trainform.errors import ProviderError
from trainform.extras import needs
from trainform.remote.tarsafe import add_to_tar, extract_stream

log = logging.getLogger(__name__)
# paramiko logs, with tracebacks, failures that are translated into ProviderError here (and the
# expected ones of probing for a pinned key's type); without a handler Python would print
# them on stderr. They still reach any handler the application configures.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

# Host key algorithms grouped by key type: a pinned fingerprint does not say which type it is.
_KEY_FAMILIES = (
    ("ssh-ed25519",),
    ("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"),
    ("rsa-sha2-512", "rsa-sha2-256"),
)
_WINDOW = 8 << 20  # receive window per channel: keeps downloads from stalling on round trips
# A file read as a stream (a log being followed) may wait between reads: what it holds
# meanwhile is at most its window.
_STREAM_WINDOW = 2 << 20
# The stdout that run() (and python()) keeps in memory: a command that writes more fails with
# an error saying so, it is never cut. Files of any size are read with RemoteFile.
MAX_OUTPUT = 64 << 20
_CHUNK = 1 << 16
_TICK = 0.1  # how often blocked loops look at deadlines and at the connection


@dataclass(frozen=True)
class SSHTarget:
    """Where and how to log in to one host. Secrets are left out of `repr()`."""

    host: str
    port: int = 22
    username: str = ""  # "" = the local user name, as with ssh
    private_key_file: str | None = None
    private_key_passphrase: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    host_key: str | None = None  # pinned "SHA256:..." fingerprint
    known_hosts: str | None = None  # default ~/.ssh/known_hosts
    trust_on_first_use: bool = False
    connect_timeout: float = 10.0
    proxy_jump: SSHTarget | None = None  # a bastion (same credential options)

    @property
    def endpoint(self) -> str:
        """ "host:port" (IPv6 hosts bracketed), as used in messages and in `jump_pins`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def login(self) -> str:
        return self.username or getpass.getuser()


class HostKeyError(ProviderError):
    """The host's key is not known (and trust-on-first-use is off), or it is not the expected one."""

    def __init__(
        self, message: str, *, host: str, fingerprint: str, expected: Sequence[str] = ()
    ) -> None:
        super().__init__(message, host=host)
        self.fingerprint = fingerprint
        self.expected = list(expected)

    @property
    def changed(self) -> bool:
        """True when a different key was expected (possible man-in-the-middle)."""
        return bool(self.expected)


class SSHAuthError(ProviderError):
    """The host refused every configured credential, or none could be loaded."""

    def __init__(self, message: str, *, host: str, username: str, tried: Sequence[str]) -> None:
        super().__init__(message, host=host)
        self.username = username
        self.tried = list(tried)


def fingerprint_of(pkey: Any) -> str:
    """ "SHA256:<base64, no padding>" of a public key (a paramiko key or its wire blob), as
    `ssh-keygen -lf` prints it."""
    blob = pkey if isinstance(pkey, (bytes, bytearray)) else pkey.asbytes()
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode()
    return "SHA256:" + digest.rstrip("=")


def _normal_fingerprint(value: str, what: str) -> str:
    fp = value.strip().rstrip("=")
    if not fp.startswith("SHA256:") or len(fp) != len("SHA256:") + 43:
        raise ProviderError(
            f'{what} must be a SHA256 fingerprint such as "SHA256:..." '
            f"(as printed by ssh-keygen -lf), not {value!r}"
        )
    return fp


# -- known_hosts ----------------------------------------------------------------------------


def _pattern_matches(pattern: str, name: str) -> bool:
    regex = "".join(
        ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower()
    )
    return re.fullmatch(regex, name.lower()) is not None


def _names_match(names: str, name: str) -> bool:
    if names.startswith("|1|"):  # hashed: |1|base64(salt)|base64(hmac-sha1(salt, name))
        try:
            _, _, salt, digest = names.split("|")
            mac = hmac.new(base64.b64decode(salt), name.encode(), hashlib.sha1).digest()
            return hmac.compare_digest(mac, base64.b64decode(digest))
        except ValueError:
            return False
    matched = False
    for pattern in names.split(","):
        negated = pattern.startswith("!")
        if _pattern_matches(pattern[1:] if negated else pattern, name):
            if negated:
                return False
            matched = True
    return matched


def known_host_keys(path: Path, host: str, port: int) -> tuple[list[tuple[str, str]], set[str]]:
    """The (key type, fingerprint) pairs an OpenSSH known_hosts file lists for host:port, and
    the fingerprints it marks @revoked. A missing file knows nothing; bad lines are skipped."""
    name = host if port == 22 else f"[{host}]:{port}"
    known: list[tuple[str, str]] = []
    revoked: set[str] = set()
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return known, revoked
    except OSError as e:
        raise ProviderError(f"cannot read known_hosts file {path}: {e.strerror}") from e
    for line in lines:
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = fields.pop(0) if fields[0].startswith("@") else ""
        if len(fields) < 3 or marker == "@cert-authority" or not _names_match(fields[0], name):
            continue
        try:
            fp = fingerprint_of(base64.b64decode(fields[2], validate=True))
        except ValueError:
            continue
        if marker == "@revoked":
            revoked.add(fp)
        else:
            known.append((fields[1], fp))
    return known, revoked


def _algorithms_for(key_type: str) -> tuple[str, ...]:
    return ("rsa-sha2-512", "rsa-sha2-256") if key_type == "ssh-rsa" else (key_type,)


# -- connecting -----------------------------------------------------------------------------


def _dial(target: SSHTarget) -> socket.socket:
    """A TCP connection to the target, tuned so that a dead peer is noticed within ~a minute."""
    try:
        sock = socket.create_connection((target.host, target.port), timeout=target.connect_timeout)
    except ConnectionRefusedError:
        reason = "connection refused"
    except TimeoutError:
        reason = f"timed out after {target.connect_timeout:g} s"
    except socket.gaierror as e:
        reason = f"cannot resolve the host name ({e.strerror})"
    except OSError as e:
        reason = (e.strerror or str(e)).lower()
    else:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (
            ("TCP_KEEPIDLE", 30),
            ("TCP_KEEPINTVL", 10),
            ("TCP_KEEPCNT", 3),
            ("TCP_USER_TIMEOUT", 60_000),  # ms of unacknowledged data before giving up
        ):
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
        return sock
    raise ProviderError(f"cannot connect to {target.endpoint}: {reason}", host=target.endpoint)


def _handshake(
    target: SSHTarget, dial: Callable[[], Any], key_types: Sequence[str], only: bool
) -> Any:
    """Connect and run the key exchange (no authentication); returns a paramiko Transport.

    `key_types` are the host key algorithms to prefer (or, with `only`, to allow)."""
    try:
        import paramiko
    except ImportError:
        raise ProviderError(needs("paramiko", "SSH"), host=target.endpoint) from None

    sock = dial()
    transport = paramiko.Transport(sock, default_window_size=_WINDOW)
    transport.banner_timeout = transport.handshake_timeout = target.connect_timeout
    transport.auth_timeout = target.connect_timeout
    try:
        options = transport.get_security_options()
        available = list(options.key_types)
        chosen = [k for k in dict.fromkeys(key_types) if k in available]
        if not only:
            chosen += [k for k in available if k not in chosen]
        if chosen != available:
            options.key_types = chosen
        # AES-GCM needs no separate MAC pass: about twice paramiko's receive speed over CTR.
        ciphers = list(options.ciphers)
        options.ciphers = sorted(ciphers, key=lambda c: "-gcm@" not in c)
        transport.start_client(timeout=target.connect_timeout)
    except (paramiko.SSHException, EOFError, OSError) as e:
        transport.close()
        sock.close()
        raise ProviderError(
            f"SSH handshake with {target.endpoint} failed: {e or type(e).__name__}",
            host=target.endpoint,
        ) from e
    return transport


def _verified_transport(
    target: SSHTarget, pinned: str | None, dial: Callable[[], Any]
) -> tuple[Any, str]:
    """Key exchange plus host key check; returns (transport, fingerprint). Raises HostKeyError."""
    ep = target.endpoint
    # An explicit host_key wins over a recorded pin: it is how the user accepts a new key.
    expected = target.host_key or pinned
    if expected:
        expected = _normal_fingerprint(expected, "host_key")
        known: list[tuple[str, str]] = []
        revoked: set[str] = set()
    else:
        path = Path(target.known_hosts or "~/.ssh/known_hosts").expanduser()
        known, revoked = known_host_keys(path, target.host, target.port)
    preferred = [a for key_type, _ in known for a in _algorithms_for(key_type)]
    transport = _handshake(target, dial, preferred, only=False)
    key = transport.get_remote_server_key()
    fp = fingerprint_of(key)
    if fp in revoked:
        transport.close()
        raise HostKeyError(
            f"host key of {ep} ({fp}) is marked @revoked in known_hosts", host=ep, fingerprint=fp
        )
    if expected:
        if fp == expected:
            return transport, fp
        transport.close()
        # The pin may be for another of the host's keys (say its RSA key): ask for each type.
        for family in _KEY_FAMILIES:
            if _algorithms_for(key.get_name())[0] in family:
                continue  # the type already seen
            try:
                other = _handshake(target, dial, family, only=True)
            except ProviderError:
                continue  # the host has no key of this type
            if fingerprint_of(other.get_remote_server_key()) == expected:
                return other, expected
            other.close()
        raise _changed(ep, fp, [expected])
    if known:
        if fp in {f for _, f in known}:
            return transport, fp
        transport.close()
        raise _changed(ep, fp, list(dict.fromkeys(f for _, f in known)))
    if target.trust_on_first_use:
        log.warning("trusting the host key of %s on first use: %s", ep, fp)
        return transport, fp
    transport.close()
    raise HostKeyError(
        f'host key of {ep} is not known ({fp}); pin it with host_key = "{fp}" or add it to '
        "known_hosts, or set trust_on_first_use = true",
        host=ep,
        fingerprint=fp,
    )


def _changed(ep: str, fp: str, expected: list[str]) -> HostKeyError:
    return HostKeyError(
        f"WARNING: the host key of {ep} changed (now {fp}, expected {' or '.join(expected)}). "
        "Someone may be intercepting the connection (man-in-the-middle); no credentials were "
        "sent. If the change is expected, update host_key / known_hosts.",
        host=ep,
        fingerprint=fp,
        expected=expected,
    )


def _load_key(path: Path, passphrase: str | None) -> tuple[Any, str]:
    """(paramiko key, "") or (None, why it cannot be used)."""
    import paramiko

    secret = passphrase.encode() if passphrase else None  # the loaders want bytes
    try:
        try:
            return paramiko.PKey.from_path(path, secret), ""
        except TypeError:
            # cryptography says "encrypted but no password" or "password but not encrypted"
            if secret is None:
                return None, "encrypted: set private_key_passphrase"
            return paramiko.PKey.from_path(path, None), ""
    except FileNotFoundError:
        return None, "file not found"
    except PermissionError:
        return None, "not readable"
    except paramiko.PasswordRequiredException:
        return None, "encrypted: set private_key_passphrase"
    except paramiko.UnknownKeyType:
        return None, "unsupported key type"
    except (ValueError, TypeError, paramiko.SSHException):
        if secret is not None:
            return None, "cannot decrypt it: wrong private_key_passphrase?"
        return None, "not a private key paramiko can read"


def _authenticate(transport: Any, target: SSHTarget) -> None:
    """Try the key, then the password; raises SSHAuthError naming what was tried."""
    import paramiko

    user, ep = target.login, target.endpoint
    tried: list[str] = []
    attempts: list[tuple[str, Callable[[], Any]]] = []
    if target.private_key_file:
        path = Path(target.private_key_file).expanduser()
        key, problem = _load_key(path, target.private_key_passphrase)
        if key is None:
            tried.append(f"key {path} ({problem})")
        else:
            attempts.append((f"key {path}", lambda: transport.auth_publickey(user, key)))
    if target.password is not None:
        password = target.password
        attempts.append(("password", lambda: transport.auth_password(user, password)))
    for label, attempt in attempts:
        try:
            attempt()
        except paramiko.BadAuthenticationType as e:
            tried.append(f"{label} (server allows only {', '.join(e.allowed_types)})")
            continue
        except paramiko.AuthenticationException:
            tried.append(label)
            continue
        except (paramiko.SSHException, EOFError, OSError) as e:
            raise ProviderError(
                f"connection to {ep} lost during authentication: {e or type(e).__name__}",
                host=ep,
            ) from e
        if transport.is_authenticated():
            return
        tried.append(f"{label} (accepted, but the server wants a further method)")
    if not tried:
        tried.append("nothing: set private_key_file or password")
    raise SSHAuthError(
        f"authentication as {user}@{ep} failed (tried: {', '.join(tried)})",
        host=ep,
        username=user,
        tried=tried,
    )


def _shown(argv: Sequence[str]) -> str:
    """The command for messages: long or multi-line arguments (scripts) shortened."""
    return shlex.join(
        a if len(a) <= 80 and "\n" not in a else a.split("\n", 1)[0][:40] + "..." for a in argv
    )


def _tail(data: bytes, lines: int = 10) -> str:
    return "\n".join(data.decode(errors="replace").rstrip().splitlines()[-lines:])


# -- channel plumbing -----------------------------------------------------------------------


class _Channel:
    """One exec channel: stdout read as a stream, stderr kept drained (its last 64 KiB kept,
    so a chatty stderr never stalls the window), deadlines and connection loss checked."""

    def __init__(
        self,
        conn: SSHConnection,
        argv: Sequence[str],
        timeout: float | None,
        label: str = "",
        window: int = _WINDOW,
    ) -> None:
        import paramiko

        self.conn, self.argv, self.ep = conn, list(argv), conn.target.endpoint
        self.shown = label or f"`{_shown(argv)}`"
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.timeout = timeout
        self.err = bytearray()
        transport = conn._live_transport()
        try:
            self.chan = transport.open_session(
                window_size=window, timeout=conn.target.connect_timeout
            )
            self.chan.settimeout(_TICK)
            self.chan.exec_command(shlex.join(self.argv))
        except (paramiko.SSHException, EOFError, OSError) as e:
            raise self.lost(e) from e

    def lost(self, cause: object = None) -> ProviderError:
        why = f" ({cause})" if cause else ""
        return ProviderError(
            f"connection to {self.ep} was lost during {self.shown}{why}",
            host=self.ep,
            command=_shown(self.argv),
        )

    def _tick(self, drain: bool = True) -> None:
        if drain and self.chan.recv_stderr_ready():
            self.err += self.chan.recv_stderr(_CHUNK)
            del self.err[: -(64 << 10)]
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise ProviderError(
                f"{self.shown} on {self.ep} did not finish within {self.timeout:g} s",
                host=self.ep,
                command=_shown(self.argv),
            )

    def read(self, n: int = _CHUNK) -> bytes:
        """Up to n bytes of stdout; b"" at its end (or when the connection dropped)."""
        while True:
            self._tick()
            try:
                return bytes(self.chan.recv(n))
            except TimeoutError:
                continue

    def send(self, data: bytes | memoryview, drain: bool = True) -> None:
        """All of data to stdin; raises (lost) if the channel closes first."""
        view = memoryview(data)
        while view:
            self._tick(drain)
            if self.chan.closed:
                raise self.lost()
            try:
                sent = self.chan.send(view[:_CHUNK])
            except TimeoutError:
                continue
            except (OSError, EOFError) as e:
                # paramiko raises EOFError when the connection drops while it writes
                raise self.lost(e or type(e).__name__) from e
            view = view[sent:]

    def feed(self, data: bytes) -> threading.Thread:
        """Send data then EOF from a thread (so reading stdout meanwhile cannot deadlock)."""

        def run() -> None:
            try:
                self.send(data, drain=False)  # the reading thread drains stderr
                self.chan.shutdown_write()
            except (ProviderError, OSError, EOFError):
                pass  # the command exited without reading all of it, as with a closed pipe

        thread = threading.Thread(target=run, name=f"ssh-stdin {self.ep}", daemon=True)
        thread.start()
        return thread

    def finish(self) -> int:
        """Read stderr to its end, wait for the exit status; -1 if killed by a signal."""
        while True:
            self._tick(drain=False)
            try:
                chunk = self.chan.recv_stderr(_CHUNK)
            except TimeoutError:
                continue
            if not chunk:
                break
            self.err += chunk
            del self.err[: -(64 << 10)]
        while not self.chan.status_event.wait(_TICK):
            self._tick(drain=False)
        status = self.chan.exit_status
        if status == -1 and not self.conn.is_alive():
            raise self.lost()
        return int(status)

    def check(self, code: int) -> None:
        if code == 0:
            return
        what = "was killed by a signal" if code == -1 else f"failed with exit code {code}"
        tail = _tail(bytes(self.err))
        raise ProviderError(
            f"{self.shown} on {self.ep} {what}" + (f":\n{tail}" if tail else ""),
            host=self.ep,
            command=_shown(self.argv),
            exit_code=code,
            stderr_tail=tail,
        )

    def close(self) -> None:
        self.chan.close()


# -- the connection -------------------------------------------------------------------------


class SSHConnection:
    """An authenticated SSH connection to one target, through its bastion if it has one.

    `pinned` is a fingerprint recorded earlier (say by trust-on-first-use); it must match like
    `host_key` (an explicit `host_key` takes precedence). `jump_pins` does the same for bastions,
    keyed by their `endpoint`. Methods connect on first use; after the connection drops they
    raise ProviderError until `connect()` is called again. Channels are independent, so
    several threads may run commands at once.
    """

    def __init__(
        self,
        target: SSHTarget,
        pinned: str | None = None,
        *,
        jump_pins: Mapping[str, str] | None = None,
    ) -> None:
        self.target = target
        self.pinned = pinned
        self.jump_pins = dict(jump_pins or {})
        self.fingerprint: str | None = None
        self.fingerprints: dict[str, str] = {}  # endpoint -> verified key, every hop
        self._transport: Any = None
        self._bastion: SSHConnection | None = None

    def __enter__(self) -> SSHConnection:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SSHConnection({self.target.login}@{self.target.endpoint})"

    def connect(self) -> str:
        """Connect, verify the host key, authenticate; returns the verified fingerprint.

        Idempotent while connected. Raises HostKeyError (before any credential is sent),
        SSHAuthError, or ProviderError (unreachable, handshake failure)."""
        if self.is_alive() and self.fingerprint:
            return self.fingerprint
        self.close()
        target = self.target
        try:
            if target.proxy_jump is not None:
                jump = target.proxy_jump
                bastion = SSHConnection(
                    jump, self.jump_pins.get(jump.endpoint), jump_pins=self.jump_pins
                )
                self._bastion = bastion
                bastion.connect()
                self.fingerprints.update(bastion.fingerprints)
                transport, fp = _verified_transport(
                    target, self.pinned, lambda: bastion._tunnel(target)
                )
            else:
                transport, fp = _verified_transport(target, self.pinned, lambda: _dial(target))
            try:
                _authenticate(transport, target)
            except BaseException:
                transport.close()
                raise
        except BaseException:
            self.close()
            raise
        transport.set_keepalive(15)
        self._transport = transport
        self.fingerprint = fp
        self.fingerprints[target.endpoint] = fp
        log.debug("connected to %s@%s (%s)", target.login, target.endpoint, fp)
        return fp

    def close(self) -> None:
        """Close the connection (and the bastion's). Idempotent."""
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
        bastion, self._bastion = self._bastion, None
        if bastion is not None:
            bastion.close()

    def is_alive(self) -> bool:
        """Whether the connection is up (a dropped one needs a new SSHConnection)."""
        return self._transport is not None and bool(self._transport.is_active())

    def _live_transport(self) -> Any:
        if self._transport is None:
            self.connect()
        elif not self._transport.is_active():
            raise ProviderError(
                f"connection to {self.target.endpoint} was lost", host=self.target.endpoint
            )
        return self._transport

    def _tunnel(self, target: SSHTarget) -> Any:
        """A direct-tcpip channel from this host to target (the bastion side of proxy_jump)."""
        import paramiko

        try:
            return self._live_transport().open_channel(
                "direct-tcpip",
                (target.host, target.port),
                ("127.0.0.1", 0),
                timeout=target.connect_timeout,
            )
        except paramiko.ChannelException as e:
            reason = str(e.text or e).lower()
        except (paramiko.SSHException, EOFError, OSError) as e:
            reason = str(e or type(e).__name__)
        raise ProviderError(
            f"cannot connect to {target.endpoint} through {self.target.endpoint}: {reason}",
            host=target.endpoint,
        )

    # -- commands ----------------------------------------------------------------------------
    def run(
        self,
        argv: Sequence[str],
        input: bytes | None = None,
        timeout: float | None = None,
        check: bool = True,
        limit: int = MAX_OUTPUT,
    ) -> tuple[int, bytes, bytes]:
        """Run argv (quoted with shlex.join, in the login shell) and wait: (code, out, err).

        Blocks until the command ends, `timeout` seconds pass (ProviderError; the remote
        process is not killed), or the connection drops (ProviderError). With `check`, a
        non-zero exit raises ProviderError with the exit code and the last lines of stderr.
        An exit code of -1 means the command was killed by a signal. A command that writes
        more than `limit` bytes to stdout is stopped and raises ProviderError (stderr keeps
        its last 64 KiB)."""
        if not argv:
            raise ValueError("run() needs a command")
        channel = _Channel(self, [str(a) for a in argv], timeout)
        try:
            if input:
                channel.feed(input)
            else:
                channel.chan.shutdown_write()
            out = bytearray()
            while chunk := channel.read():
                out += chunk
                if len(out) > limit:
                    raise ProviderError(
                        f"{channel.shown} on {self.target.endpoint} wrote more than "
                        f"{limit} bytes to stdout, more than trainform keeps from a command",
                        host=self.target.endpoint,
                        command=_shown(channel.argv),
                    )
            code = channel.finish()
        finally:
            channel.close()
        if check:
            channel.check(code)
        return code, bytes(out), bytes(channel.err)

    def python(
        self,
        script: str,
        args: Sequence[str] = (),
        input: bytes | None = None,
        timeout: float | None = None,
        limit: int = MAX_OUTPUT,
    ) -> bytes:
        """stdout of `python3 -c script args...` on the host (at most `limit` bytes, see
        `run`); raises ProviderError on failure."""
        argv = ["python3", "-c", script, *args]
        return self.run(argv, input=input, timeout=timeout, limit=limit)[1]

    def open_file(self, path: str, offset: int = 0) -> RemoteFile:
        """A remote file read as one stream from `offset` (see RemoteFile)."""
        return RemoteFile(self, path, offset)

    def download_file(self, path: str, dest: Path) -> int:
        """Copy a remote file, as it is when the copy starts, to `dest`; returns its size.

        Streamed in pieces of 1 MiB (memory stays bounded whatever the size) into a
        temporary file beside `dest` that is renamed into place, so an interrupted copy
        leaves no partial file and a link at `dest` is replaced, not followed. A remote
        file that does not exist is copied as an empty file. Raises ProviderError if the
        file cannot be read or the connection drops."""
        part = dest.with_name(f".{dest.name}.part")
        stream = RemoteFile(self, path, 0, window=_WINDOW)
        try:
            with part.open("wb") as out:
                while data := stream.read(1 << 20):
                    out.write(data)
            os.replace(part, dest)
        finally:
            stream.close()
            part.unlink(missing_ok=True)
        return stream.offset

    def read_from(self, path: str, offset: int, limit: int = 1 << 20) -> tuple[bytes, int]:
        """Up to `limit` bytes of a remote file from `offset`, and the offset after them.

        A file that does not exist (yet) reads as empty, for following logs."""
        data = self.python(_READ_SCRIPT, [path, str(offset), str(limit)])
        return data, offset + len(data)

    # -- files -------------------------------------------------------------------------------
    def upload_stream(
        self,
        files: Iterable[tuple[str, bytes | Path]],
        remote_dir: str,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Send files (relative POSIX names -> content or a local path) into remote_dir, as one
        tar stream over one channel; returns the bytes sent.

        Each file is written to a temporary file beside its destination and renamed into place
        once complete, so an interrupted upload leaves whole files only (the finished ones) under
        their final names. `progress` is called with the running byte count."""
        entries = [(_relative_name(name), source) for name, source in files]
        channel = _Channel(
            self, ["python3", "-c", _UPLOAD_SCRIPT, remote_dir], None, f"upload into {remote_dir}"
        )
        sink: Any = _CountingSink(channel, progress)
        try:
            try:
                with tarfile.open(fileobj=sink, mode="w|", bufsize=_CHUNK) as tar:
                    for name, source in entries:
                        add_to_tar(tar, name, source)
                channel.chan.shutdown_write()
            except ProviderError as sending_failed:
                # The remote side stopped reading: its stderr says why, if it had time.
                code = _finish_quietly(channel)
                if code not in (0, None):
                    channel.check(code)
                raise sending_failed
            while channel.read():
                pass
            channel.check(channel.finish())
        finally:
            channel.close()
        return sink.count

    def download_tree(self, remote_dir: str, dest: Path) -> list[str]:
        """Copy the tree under remote_dir into dest (created if needed).

        The stream is hostile (a host's `tar` may be anything): it is extracted by the rules
        of :mod:`trainform.remote.tarsafe`. Nothing is written outside dest and nothing outside
        it is read; no link is followed; absolute names, `..`, devices and FIFOs are skipped,
        and so are links that resolve outside dest. Returns the skipped names with the reason,
        which are also logged as warnings. Raises ProviderError if the folder cannot be read,
        the stream is malformed or the connection drops."""
        argv = ["tar", "-c", "-f", "-", "-C", _shell_path(remote_dir), "."]
        channel = _Channel(self, argv, None, f"download of {remote_dir}")
        try:
            channel.chan.shutdown_write()
            try:
                reader: Any = _ChannelReader(channel)
                skipped = extract_stream(reader, Path(dest))
            except tarfile.TarError as e:
                code = _finish_quietly(channel)
                if code not in (0, 1, None):
                    channel.check(code)
                if not self.is_alive() or code is None:
                    raise channel.lost(e) from e
                raise ProviderError(
                    f"bad tar stream from {self.target.endpoint}: {e}", host=self.target.endpoint
                ) from e
            while channel.read():
                pass
            code = channel.finish()
            if code != 1:  # GNU tar: 1 = some file changed while being read; the rest is there
                channel.check(code)
        finally:
            channel.close()
        for item in skipped:
            log.warning("download from %s: skipped %s", self.target.endpoint, item)
        return skipped


class RemoteFile:
    """A remote file read as one stream over one channel, from an offset up to the size the
    file had when the stream opened (a file that does not exist reads as empty): a file of
    any size is read at the connection's speed, a piece at a time. While it is not read,
    the stream holds at most its channel's window. Not thread-safe; close() when done
    (it closes itself at its end)."""

    def __init__(
        self, conn: SSHConnection, path: str, offset: int, window: int = _STREAM_WINDOW
    ) -> None:
        self.path = path
        self.offset = offset  # of the next byte read
        self.ended = False
        argv = ["python3", "-c", _STREAM_SCRIPT, path, str(offset)]
        self.channel = _Channel(conn, argv, None, f"reading {path}", window=window)
        try:
            self.channel.chan.shutdown_write()
        except BaseException:
            self.channel.close()
            raise

    def alive(self) -> bool:
        """Whether more can be read (not at its end, the connection up)."""
        return not self.ended and self.channel.conn.is_alive()

    def read(self, limit: int) -> bytes:
        """Up to `limit` bytes from where the last read stopped; b"" at the end (the size
        the file had when the stream opened). Raises ProviderError if the file cannot be
        read or the connection drops (then nothing of this read is kept)."""
        buf = bytearray()
        while len(buf) < limit and not self.ended:
            chunk = self.channel.read(min(limit - len(buf), 1 << 20))
            if chunk:
                buf += chunk
                continue
            self.ended = True
            try:
                self.channel.check(self.channel.finish())
            finally:
                self.channel.close()
        self.offset += len(buf)
        return bytes(buf)

    def close(self) -> None:
        """Stop reading (the remote side ends on its next write). Idempotent."""
        self.ended = True
        self.channel.close()


def _finish_quietly(channel: _Channel) -> int | None:
    try:
        return channel.finish()
    except ProviderError:
        return None


def _shell_path(path: str) -> str:
    """A remote path for argv use: commands start in the home folder, so ~/x is x."""
    if path == "~":
        return "."
    return path[2:] or "." if path.startswith("~/") else path


def _relative_name(name: str) -> str:
    parts = PurePosixPath(name).parts
    if not parts or name.startswith("/") or any(p in ("..", ".", "") for p in name.split("/")):
        raise ValueError(f"upload name must be a plain relative path, not {name!r}")
    return "/".join(parts)


class _CountingSink:
    """The write end of a tar stream: bytes go to the channel's stdin, counted."""

    def __init__(self, channel: _Channel, progress: Callable[[int], None] | None) -> None:
        self.channel, self.progress, self.count = channel, progress, 0

    def write(self, data: bytes) -> int:
        self.channel.send(data)
        self.count += len(data)
        if self.progress is not None:
            self.progress(self.count)
        return len(data)


class _ChannelReader:
    """The read end of a tar stream coming from the channel's stdout."""

    def __init__(self, channel: _Channel) -> None:
        self.channel = channel

    def read(self, n: int = -1) -> bytes:
        want = _CHUNK if n is None or n < 0 else n
        buf = bytearray()
        while len(buf) < want:
            chunk = self.channel.read(want - len(buf))
            if not chunk:
                break
            buf += chunk
        return bytes(buf)


# -- scripts run on the host (python3, standard library only) ------------------------------

_READ_SCRIPT = """\
import os, sys
path, offset, limit = os.path.expanduser(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
try:
    f = open(path, "rb")
except FileNotFoundError:
    sys.exit(0)
with f:
    f.seek(offset)
    while limit > 0:
        data = f.read(min(limit, 1 << 20))
        if not data:
            break
        sys.stdout.buffer.write(data)
        limit -= len(data)
"""

# A file from an offset to the size it has now, to stdout (a missing file: nothing).
_STREAM_SCRIPT = """\
import os, sys
path, offset = os.path.expanduser(sys.argv[1]), int(sys.argv[2])
try:
    fd = os.open(path, os.O_RDONLY)
except FileNotFoundError:
    sys.exit(0)
left = os.fstat(fd).st_size - offset
os.lseek(fd, offset, os.SEEK_SET)
while left > 0:
    data = os.read(fd, min(left, 1 << 20))
    if not data:
        break
    left -= len(data)
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]
"""

# Each member is written to a temporary file beside its destination, then renamed into place:
# an interrupted upload never leaves a truncated file under a final name. Beside, not in one
# shared folder: ext4 places a new file's inode near its folder's, and thousands of files
# created in one folder (with others recently deleted there) make every create scan.
_UPLOAD_SCRIPT = """\
import os, shutil, sys, tarfile
root = os.path.expanduser(sys.argv[1])
os.makedirs(root, exist_ok=True)
count = 0
folders = set()
part = None
try:
    import fcntl
    fcntl.fcntl(0, 1031, 1 << 20)  # F_SETPIPE_SZ: fewer wake-ups between sshd and us
except (ImportError, OSError):
    pass
try:
    with tarfile.open(fileobj=sys.stdin.buffer, mode="r|", bufsize=1 << 16) as tar:
        for m in tar:
            parts = m.name.split("/")
            if not m.isfile() or m.name.startswith("/") or set(parts) & {"", ".", ".."}:
                sys.exit("refusing tar member %r" % m.name)
            final = os.path.join(root, *parts)
            folder = os.path.dirname(final)
            if folder not in folders:
                os.makedirs(folder, exist_ok=True)
                folders.add(folder)
            part = os.path.join(folder, ".tf-part-%d" % os.getpid())
            with open(part, "wb") as out:
                shutil.copyfileobj(tar.extractfile(m), out, min(m.size, 1 << 20) or 1)
            os.chmod(part, m.mode & 0o777)
            os.utime(part, (m.mtime, m.mtime))
            os.replace(part, final)
            part = None
            count += 1
    while sys.stdin.buffer.read(1 << 16):
        pass
finally:
    if part is not None and os.path.lexists(part):
        os.unlink(part)
print(count)
"""
