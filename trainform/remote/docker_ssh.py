"""A Docker engine on an SSH host, reached through trainform's own verified SSH connection.

The docker SDK's ``ssh://`` transport opens its own paramiko connection, with its own host
key policy (``~/.ssh/known_hosts`` only) and credentials (``~/.ssh/config``). Here the SDK's
adapter is given the live transport of an :class:`~trainform.remote.ssh.SSHConnection`
instead: every HTTP connection to the engine is a session channel on that transport running
``docker system dial-stdio`` on the host. So the engine is reached with exactly the host key
checks and credentials of the ssh compute, and nothing else: no second connection is opened.

The SDK is imported lazily. SDK, HTTP and SSH errors are translated into ProviderError by
:func:`remote_call`.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from trainform.errors import ProviderError
from trainform.extras import needs

API_VERSION = "1.41"  # the oldest engine API trainform relies on (device requests, init)
_POOL_SIZE = 3  # idle engine channels kept open per SSH connection

# One client per SSHConnection (and per transport: a reconnected one gets a new client).
_clients: weakref.WeakKeyDictionary[Any, tuple[Any, Any]] = weakref.WeakKeyDictionary()
_clients_lock = threading.Lock()


class _Transport:
    """What the SDK's adapter takes for a paramiko ``SSHClient``: it only asks for the
    transport (a live, verified one) and closes it; closing is the connection owner's job."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def get_transport(self) -> Any:
        return self.conn._live_transport()

    def close(self) -> None:
        return None


def _adapter_class() -> type:
    from docker.transport.basehttpadapter import BaseHTTPAdapter
    from docker.transport.sshconn import SSHConnectionPool, SSHHTTPAdapter

    class VerifiedSSHAdapter(SSHHTTPAdapter):
        """SSHHTTPAdapter over an existing SSHConnection (never a connection of its own)."""

        def __init__(self, conn: Any, timeout: float) -> None:
            self._conn = conn
            super().__init__(f"ssh://{conn.target.endpoint}", timeout)

        def _create_paramiko_client(self, base_url: str) -> None:
            self.ssh_client = _Transport(self._conn)
            self.ssh_params: dict[str, Any] = {}

        def _connect(self) -> None:
            self._conn._live_transport()  # connects and verifies if needed, or raises

        def get_connection(self, url: str, proxies: Any = None) -> Any:
            # One pool for every URL (the SDK keeps one per URL, each holding an idle
            # channel): sshd allows 10 sessions per connection (MaxSessions), and the
            # provider's own commands share this connection.
            with self.pools.lock:
                pool = self.pools.get("engine")
                if pool is None:
                    pool = SSHConnectionPool(
                        ssh_client=self.ssh_client, timeout=self.timeout, maxsize=_POOL_SIZE
                    )
                    self.pools["engine"] = pool
            return pool

        def close(self) -> None:
            BaseHTTPAdapter.close(self)  # the pools only: the SSH connection is not ours

    return VerifiedSSHAdapter


def engine_over(conn: Any, timeout: float = 120.0) -> Any:
    """A ``docker.DockerClient`` for the engine of the host ``conn`` (an SSHConnection)
    is logged in to, through ``conn``'s transport. Connects ``conn`` first if needed
    (HostKeyError/SSHAuthError before anything reaches docker). Checks that the engine
    answers: ProviderError naming the host otherwise (docker missing, or not usable by the
    login user). The client is cached for ``conn`` and must not outlive it."""
    try:
        import docker
    except ImportError:
        raise ProviderError(needs("docker", "Docker support"), host=conn.target.endpoint) from None

    transport = conn._live_transport()  # host key verified, login done: then docker traffic
    with _clients_lock:
        cached = _clients.get(conn)
    if cached is not None and cached[1] is transport:
        return cached[0]
    # Built for an address it never uses (version given, so nothing is asked at creation);
    # the engine is reached only through the adapter mounted below.
    client = docker.DockerClient(
        base_url="tcp://127.0.0.1:9", version=API_VERSION, timeout=int(timeout)
    )
    adapter = _adapter_class()(conn, timeout)
    client.api._custom_adapter = adapter
    client.api.mount("http+docker://ssh", adapter)
    client.api.base_url = "http+docker://ssh"
    try:
        remote_call("reaching the Docker engine", conn, client.api.ping)
    except ProviderError as exc:
        # The engine's own words (no docker CLI, no permission on the socket) come on the
        # CLI's stderr, which the HTTP side never sees: ask it once more, plainly.
        code, out, err = conn.run(
            ["docker", "version", "--format", "{{.Server.APIVersion}}"], check=False
        )
        said = (err or out).decode(errors="replace").strip().splitlines()[-1:]
        if code != 0 and said:
            raise ProviderError(
                f"cannot use the Docker engine of {conn.target.endpoint} as "
                f"{conn.target.login}: {said[0]}",
                host=conn.target.endpoint,
            ) from None
        raise exc from None
    with _clients_lock:
        _clients[conn] = (client, transport)
    return client


def remote_call(what: str, conn: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` with SDK, HTTP and SSH errors translated into ProviderError
    naming ``what`` and the host (a permission problem says who lacks access)."""
    import paramiko
    import requests
    from docker.errors import DockerException

    from trainform.remote.docker import short_error

    host = conn.target.endpoint
    try:
        return fn(*args, **kwargs)
    except DockerException as exc:
        raise ProviderError(
            f"{what} on the Docker engine of {host}: {short_error(exc)}", host=host
        ) from None
    except (requests.RequestException, paramiko.SSHException, EOFError, OSError) as exc:
        text = str(exc)
        if "permission denied" in text.lower():
            text = (
                f"permission denied on the engine's socket for {conn.target.login} "
                "(add the user to the docker group on that host)"
            )
        elif not conn.is_alive():
            text = f"the SSH connection was lost ({text or type(exc).__name__})"
        else:
            text = (
                f"{text or type(exc).__name__} (does `docker system dial-stdio` work for "
                f"{conn.target.login} there?)"
            )
        raise ProviderError(f"{what} on the Docker engine of {host}: {text}", host=host) from None
