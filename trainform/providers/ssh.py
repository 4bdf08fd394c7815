"""Machines reachable over SSH as compute targets (``compute "x" { type = "ssh" }``).

Attaching connects, verifies the host key (pinned fingerprint, known_hosts, or
trust-on-first-use recorded in state), and gathers facts. Runs are shipped as
content-addressed blobs (only the missing ones travel, in one stream), then the same
launcher as everywhere starts detached from the SSH session, so a run survives a dropped
connection or trainform exiting. Passwords and passphrases are used in memory only: state
holds their salted hashes (see ``schema``: they are sensitive).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import posixpath
import re
import shlex
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from trainform.config.schema import Attribute, BlockSchema
from trainform.errors import ProviderError
from trainform.extras import missing
from trainform.providers.base import (
    DOCKER,
    MULTI_NODE,
    RUNS,
    Handle,
    Observed,
    PlanValues,
    Provider,
    ProviderContext,
    ResourceState,
    RunRequest,
    byte_progress,
)
from trainform.remote.scripts import MISSING_DELTA_SCRIPT, READ_SCRIPT, STATUS_SCRIPT
from trainform.runs import nodes as multinode
from trainform.runs.results import judge_liveness
from trainform.runs.shipping import redacted_spec

FACTS_SCRIPT = r"""
import json, os, platform, shutil, subprocess
def run(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
pythons = {}
for name in ("python3", "python3.8", "python3.9", "python3.10", "python3.11", "python3.12", "python3.13"):
    path = shutil.which(name)
    if path and os.path.realpath(path) not in pythons.values():
        pythons[name] = os.path.realpath(path)
gpus = []
smi = run(["nvidia-smi", "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"]) if shutil.which("nvidia-smi") else None
if smi is not None and smi.returncode == 0:
    for line in smi.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            gpus.append({"index": int(parts[0]), "name": parts[1], "memory_mib": int(parts[2]) if parts[2].isdigit() else 0})
docker = run(["docker", "info", "--format", "{{.ServerVersion}}"]) if shutil.which("docker") else None
mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
print(json.dumps({
    "hostname": platform.node(), "os": platform.system().lower(), "kernel": platform.release(),
    "architecture": platform.machine(), "cpus": os.cpu_count(), "memory_bytes": mem,
    "python_version": platform.python_version(), "pythons": pythons, "gpus": gpus,
    "docker": bool(docker is not None and docker.returncode == 0), "user": os.environ.get("USER") or "",
    "home": os.path.expanduser("~"),
}))
"""

log = logging.getLogger(__name__)
T = TypeVar("T")

RECONNECT_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)

# Passwords and passphrases given to this process (never written anywhere); see __init__.
_CREDENTIALS: dict[tuple[str, ...], dict[str, Any]] = {}


def _target_keys() -> tuple[str, ...]:
    return (
        "port",
        "username",
        "private_key_file",
        "private_key_passphrase",
        "password",
        "known_hosts",
        "trust_on_first_use",
        "connect_timeout",
    )


class SSHComputeProvider(Provider):
    """One machine (``address``) or a pool (``hosts``) reached over SSH."""

    name = "ssh"
    kind = "compute"
    capabilities = frozenset({RUNS, MULTI_NODE, DOCKER})
    verbs: ClassVar[dict[str, str]] = {"create": "attach", "delete": "detach"}
    schema = BlockSchema(
        attributes={
            "address": Attribute(force_new=True, description="Host name or IP address."),
            "hosts": Attribute(
                "list(string)",
                force_new=True,
                description="A pool of addresses (instead of address), for multi-node runs; an "
                'entry "host:port" overrides port for that host.',
            ),
            "port": Attribute("number", default=22, force_new=True),
            "username": Attribute(required=True, force_new=True),
            "private_key_file": Attribute(
                path="module", description="Private key (preferred over password)."
            ),
            "private_key_passphrase": Attribute(sensitive=True, description="Its passphrase."),
            "password": Attribute(sensitive=True, description="Allowed; keys are safer."),
            "host_key": Attribute(description='A pinned fingerprint, "SHA256:...".'),
            "known_hosts": Attribute(
                path="module", description="known_hosts file (default ~/.ssh/known_hosts)."
            ),
            "trust_on_first_use": Attribute(
                "bool",
                default=False,
                description="Accept an unknown host key once, then pin it in state.",
            ),
            "proxy_jump": Attribute(description="A bastion, user@host:port (same credentials)."),
            "connect_timeout": Attribute("number", default=10),
            "workdir": Attribute(default="~/.trainform", force_new=True),
            "max_concurrent_runs": Attribute("number", default=1),
            "tags": Attribute("map(string)", default={}),
            "cleanup": Attribute("bool", default=False, description="Remove workdir on detach."),
            "facts": Attribute("map", computed=True, description="Facts per host."),
            "host_keys": Attribute("map", computed=True, description="Verified fingerprints."),
            "workdir_path": Attribute(computed=True, description="The workdir, expanded."),
            "addresses": Attribute(
                "list(string)", computed=True, description="The hosts, in node-rank order."
            ),
        },
        description="A machine (or pool of machines) reachable over SSH.",
    )

    def __init__(self, context: ProviderContext) -> None:
        super().__init__(context)
        self._lock = threading.Lock()
        self._conns: dict[tuple[Any, ...], Any] = {}
        # Files of runs being read (logs, metrics), each a stream left open between reads
        # where the last read stopped: a log is read at the connection's speed, not one
        # command per MiB. By (host, user, path); a stream is taken out while it is read.
        self._streams: dict[tuple[str, str, str], Any] = {}
        # Credentials seen in this process, by login (host, user, port, key file): a later
        # status/log read of a run reuses them without them ever being written down. Shared
        # by every instance: the run provider reaches compute through its own registry, so
        # the instance that was told the secrets (remember) is not the one that polls runs.
        self._creds = _CREDENTIALS
        # The blob set last sent to each host's blob folder, so the next query is a difference.
        self._known_sets = context.data_dir / "cache" / "ssh-blob-sets"

    # -- connections
    def _hosts(self, attrs: dict[str, Any]) -> list[str]:
        """The host entries (``host`` or ``host:port``), in rank order.

        A run sees the compute block as a reference, where ``address`` is the block's own
        address (``compute.box``), so the computed ``addresses`` (recorded at attach) wins."""
        recorded = attrs.get("addresses")
        if isinstance(recorded, list) and recorded:
            return [str(h) for h in recorded]
        hosts = attrs.get("hosts") or ([attrs["address"]] if attrs.get("address") else [])
        return [str(h) for h in hosts]

    def _target(self, attrs: dict[str, Any], host: str) -> Any:
        from trainform.remote.ssh import SSHTarget

        creds = {k: attrs.get(k) for k in _target_keys()}
        login = tuple(str(creds.get(k)) for k in ("username", "port", "private_key_file"))
        login = (host, *login)
        for key in ("password", "private_key_passphrase"):
            if _is_secret_marker(creds.get(key)):
                creds[key] = (self._creds.get(login) or {}).get(key)
        if any(creds.get(k) for k in ("password", "private_key_passphrase")):
            self._creds[login] = {k: creds.get(k) for k in ("password", "private_key_passphrase")}
        elif login in self._creds:
            creds.update(self._creds[login])
        key_file = creds.get("private_key_file")
        if key_file:
            path = Path(str(key_file)).expanduser()
            creds["private_key_file"] = str(
                path if path.is_absolute() else self.context.config_dir / path
            )
        common = dict(
            private_key_file=creds.get("private_key_file"),
            private_key_passphrase=creds.get("private_key_passphrase"),
            password=creds.get("password"),
            known_hosts=creds.get("known_hosts"),
            trust_on_first_use=bool(creds.get("trust_on_first_use")),
            connect_timeout=float(creds.get("connect_timeout") or 10),
        )
        jump = None
        if attrs.get("proxy_jump"):
            juser, jhost, jport = parse_jump(str(attrs["proxy_jump"]), str(attrs.get("username")))
            jump = SSHTarget(host=jhost, port=jport, username=juser, **common)  # type: ignore[arg-type]
        name, port = split_host(host, int(creds.get("port") or 22))
        return SSHTarget(
            host=name,
            port=port,
            username=str(creds["username"]),
            host_key=attrs.get("host_key"),
            proxy_jump=jump,
            **common,  # type: ignore[arg-type]
        )

    def _connect(
        self, attrs: dict[str, Any], host: str, host_keys: dict[str, str]
    ) -> tuple[Any, str]:
        """A verified connection to ``host`` and the host key fingerprint seen.

        ``host_keys`` are the fingerprints recorded in state: the host's own (by its entry)
        and its bastion's (by the bastion's ``host:port``)."""
        from trainform.remote.ssh import SSHConnection

        pins = {k: str(v) for k, v in host_keys.items() if k != host}
        conn = SSHConnection(self._target(attrs, host), host_keys.get(host), jump_pins=pins)
        fingerprint = conn.connect()
        return conn, fingerprint

    def _session(self, target: dict[str, Any], host: str) -> Any:
        """A cached connection for run operations; reconnects with backoff when dropped."""
        # Per login, not per host: two compute blocks may reach one host as different users.
        key = (
            *split_host(host, int(target.get("port") or 22)),
            str(target.get("username")),
            str(target.get("proxy_jump")),
        )
        with self._lock:
            conn = self._conns.get(key)
        if conn is not None and conn.is_alive():
            return conn
        from trainform.remote.ssh import HostKeyError, SSHAuthError

        if conn is not None:
            conn.close()
        last: Exception | None = None
        for delay in (0.0, *RECONNECT_DELAYS):
            time.sleep(delay)
            try:
                conn, _ = self._connect(target, host, dict(target.get("host_keys") or {}))
            except (HostKeyError, SSHAuthError):
                raise  # never retry past a host key problem or refused credentials
            except ProviderError as exc:
                last = exc
                continue
            with self._lock:
                self._conns[key] = conn
            return conn
        raise ProviderError(f"{host}: cannot reconnect: {last}", host=host)

    def _with_session(self, target: dict[str, Any], host: str, operation: Callable[[Any], T]) -> T:
        """``operation(connection)``, run again on a new connection (after backoff) if the
        connection dropped while it ran. Only for operations that are safe to repeat."""
        for attempt in range(len(RECONNECT_DELAYS)):
            conn = self._session(target, host)
            try:
                return operation(conn)
            except ProviderError:
                if conn.is_alive() or attempt == len(RECONNECT_DELAYS) - 1:
                    raise  # the command failed, not the connection (or it keeps dropping)
                log.info("connection to %s dropped; reconnecting", host)
                time.sleep(RECONNECT_DELAYS[attempt])
        raise AssertionError("unreachable")

    def remember(self, address: str, desired: dict[str, Any]) -> None:
        for host in self._hosts(desired):
            self._target(desired, host)  # caches this host's secrets in memory

    def plan_values(
        self, address: str, desired: dict[str, Any], prior: ResourceState | None
    ) -> PlanValues:
        if desired.get("password") and not desired.get("private_key_file"):
            return PlanValues(
                warnings=(
                    "password authentication is allowed, but keys are safer: "
                    "set private_key_file (and remove password)",
                )
            )
        return PlanValues()

    def container_problems(self, compute: dict[str, Any], node_count: int) -> list[str]:
        from trainform.providers.ssh_containers import docker_problems

        facts = compute.get("facts")
        return docker_problems(
            facts if isinstance(facts, dict) else {}, str(compute.get("username"))
        )

    def image_present(self, compute: dict[str, Any], image: str) -> bool | None:
        """Whether the first host's engine has ``image``; None before the compute is attached
        (its host keys are not recorded yet, so nothing is connected to at plan time)."""
        from trainform.remote.docker_ssh import engine_over, remote_call
        from trainform.runs.images import image_present

        hosts = self._hosts(compute)
        if not hosts or not isinstance(compute.get("host_keys"), dict):
            return None
        target = self._run_target(compute)
        conn = self._session(target, hosts[0])
        client = engine_over(conn)
        return bool(remote_call(f"looking up image {image}", conn, image_present, client, image))

    def _run_target(self, compute: dict[str, Any]) -> dict[str, Any]:
        """What run operations connect with (held in memory; handles drop the secrets)."""
        return {k: compute.get(k) for k in (*_target_keys(), "host_key", "proxy_jump", "host_keys")}

    # -- validation and lifecycle
    def validate(self, address: str, desired: dict[str, Any]) -> list[str]:
        problems = []
        if missing_extra := missing("paramiko", 'compute type "ssh"'):
            problems.append(missing_extra)
        if bool(desired.get("address")) == bool(desired.get("hosts")):
            problems.append("set exactly one of address or hosts")
        for entry in self._hosts(desired):
            try:
                split_host(entry, 22)
            except ValueError as exc:
                problems.append(str(exc))
        if not (desired.get("private_key_file") or desired.get("password")):
            problems.append("set private_key_file (preferred) or password")
        if desired.get("proxy_jump"):
            try:
                parse_jump(str(desired["proxy_jump"]), "")
            except ValueError as exc:
                problems.append(str(exc))
        key = desired.get("host_key")
        if isinstance(key, str) and not key.startswith("SHA256:"):
            problems.append('host_key must be a fingerprint such as "SHA256:..." (ssh-keygen -lf)')
        return problems

    def _attach(self, attrs: dict[str, Any], pinned: dict[str, str]) -> Observed:
        facts: dict[str, Any] = {}
        keys: dict[str, str] = {}
        workdir = ""
        for host in self._hosts(attrs):
            conn, _ = self._connect(attrs, host, pinned)
            try:
                keys.update(verified_host_keys(host, conn))
                facts[host] = json.loads(conn.python(FACTS_SCRIPT))
                workdir = expand_home(
                    str(attrs.get("workdir") or "~/.trainform"), facts[host]["home"]
                )
                if not workdir.startswith("/"):  # relative to the home folder, as with ssh
                    workdir = posixpath.normpath(f"{facts[host]['home']}/{workdir}")
                conn.run(["mkdir", "-p", workdir])
            finally:
                conn.close()
        return {
            "facts": facts,
            "host_keys": keys,
            "workdir_path": workdir,
            "addresses": self._hosts(attrs),
        }

    def create(self, address: str, desired: dict[str, Any]) -> Observed:
        return self._attach(desired, {})

    def import_existing(self, address: str, desired: dict[str, Any], ident: str) -> Observed:
        """``ident`` is the host as the block writes it, ``user@host:port`` (user and port
        optional; for a pool, any one of its hosts). It must be the configured host; the
        host is then reached with the configured host-key rules and its facts read."""
        user, _, rest = ident.rpartition("@")
        try:
            host, port = split_host(rest, int(desired.get("port") or 22))
        except ValueError:
            host, port = "", 0
        if not host:
            raise ProviderError(
                f"{address}: import id {ident!r} is not user@host:port", address=address
            )
        hosts = [split_host(h, int(desired.get("port") or 22)) for h in self._hosts(desired)]
        wanted = f"{desired.get('username')}@{self._hosts(desired)[0] if hosts else '?'}"
        if (host, port) not in hosts or (user and user != desired.get("username")):
            raise ProviderError(
                f"{address}: import id {ident!r} does not name the host its block configures "
                f"({wanted}, port {desired.get('port') or 22}); correct the id or the block",
                address=address,
            )
        return self._attach(desired, {})

    def read(self, resource: ResourceState) -> Observed | None:
        observed = self._attach(resource.attributes, resource.computed.get("host_keys") or {})
        return {**resource.computed, **observed}

    def update(
        self, address: str, desired: dict[str, Any], prior: ResourceState, changed: list[str]
    ) -> Observed:
        return {**prior.computed, **self._attach(desired, prior.computed.get("host_keys") or {})}

    def delete(self, prior: ResourceState) -> None:
        if not prior.attributes.get("cleanup"):
            return  # detaching removes nothing on the host unless asked
        workdir = str(prior.computed.get("workdir_path") or "").rstrip("/")
        homes = [
            str(f.get("home") or "").rstrip("/")
            for f in (prior.computed.get("facts") or {}).values()
            if isinstance(f, dict)
        ]
        # Never the home folder itself (workdir = "~") or anything that holds it.
        if not workdir.startswith("/") or any(
            h == workdir or h.startswith(workdir + "/") for h in homes
        ):
            log.warning("cleanup: not removing %r (a home folder or above)", workdir or "/")
            return
        for host in self._hosts(prior.attributes):
            conn, _ = self._connect(
                prior.attributes, host, dict(prior.computed.get("host_keys") or {})
            )
            try:
                conn.run(["rm", "-rf", "--", workdir])
            finally:
                conn.close()

    # -- runs
    def submit(self, request: RunRequest) -> Handle:
        from trainform.runs.shipping import full_spec

        compute = request.compute
        hosts = self._hosts(compute)
        if request.node_count > len(hosts):
            raise ProviderError(
                f"{request.address}: node_count = {request.node_count} but "
                f"{compute.get('address')} has {len(hosts)} host(s)"
            )
        hosts = hosts[: request.node_count]
        workdir = str(compute.get("workdir_path") or "~/.trainform")
        target = self._run_target(compute)
        in_container = bool(request.spec["environment"].get("docker"))
        blobs = f"{workdir}/blobs"
        port = multinode.rendezvous_port(request.run_id)
        names = [split_host(h, int(compute.get("port") or 22))[0] for h in hosts]
        nodes = []
        upload = {"files": 0, "bytes": 0}
        for rank, host in enumerate(hosts):
            # One folder per node: pool hosts may share the workdir (an NFS home, or two
            # ports of one machine), and each node's launcher owns its run folder.
            run_dir = f"{workdir}/runs/{request.run_id}"
            if len(hosts) > 1:
                run_dir += f"-node{rank}"
            conn = self._session(target, host)
            lib, sent = stage_remote(
                conn, request, workdir, run_dir, self.known_set(host, target, workdir)
            )
            upload["files"] += sent["files"]
            upload["bytes"] += sent["bytes"]
            spec = full_spec(request, blobs, lib, f"{workdir}/envs")
            if spec.get("slots"):
                # max_concurrent_runs counts per machine, also when pool machines share the
                # workdir (an NFS home): one slot folder per host name.
                facts = (compute.get("facts") or {}).get(host) or {}
                machine = re.sub(r"[^A-Za-z0-9._-]", "_", str(facts.get("hostname") or host))
                spec["slots"] = {**spec["slots"], "dir": f"{workdir}/slots/{machine}"}
            spec["extra_env"] = multinode.node_env(rank, names, port)
            spec = store_remote_secrets(conn, run_dir, spec)
            if in_container:
                from trainform.providers import ssh_containers

                node = ssh_containers.start(
                    conn,
                    request,
                    spec,
                    rank=rank if len(hosts) > 1 else None,
                    run_dir=run_dir,
                    lib=lib,
                    blobs=blobs,
                    workdir=workdir,
                    project=str(self.context.config_dir.resolve()),
                )
                nodes.append({"host": host, "run_dir": run_dir, **node})
                continue
            conn.upload_stream([("spec.json", json.dumps(spec).encode())], run_dir)
            launch = shlex.join(["python3", f"{lib}/launcher.py", run_dir])
            # setsid + nohup: the launcher leaves the SSH session and survives it dropping.
            _, out, _ = conn.run(
                [
                    "sh",
                    "-c",
                    f"setsid nohup {launch} </dev/null >{shlex.quote(run_dir)}/launcher.err 2>&1 & echo $!",
                ]
            )
            nodes.append(
                {"host": host, "run_dir": run_dir, "launcher_pid": int(out.decode().strip())}
            )
        return {
            "nodes": nodes,
            "target": {
                k: v for k, v in target.items() if k not in ("password", "private_key_passphrase")
            },
            "upload": upload,
            # Bytes of each node's log already shown while submitting (an image build's
            # lines): following the log starts after them.
            "log_shown": nodes[0].get("log_shown", 0),
            "log_shown_by_rank": [node.get("log_shown", 0) for node in nodes],
        }

    def expected_handle(self, request: RunRequest) -> Handle | None:
        """Each node's run folder (``WORKDIR/runs/RUN_ID``, ``-nodeR`` per node of a pool)
        and the target without secrets (None for a run in containers)."""
        if request.spec["environment"].get("docker"):
            return None
        hosts = self._hosts(request.compute)[: request.node_count]
        remote = str(request.compute.get("workdir_path") or "~/.trainform")
        folder = f"{remote}/runs/{request.run_id}"
        secret = ("password", "private_key_passphrase")
        return {
            "nodes": [
                {
                    "host": host,
                    "run_dir": folder + (f"-node{rank}" if len(hosts) > 1 else ""),
                    "launcher_pid": None,
                }
                for rank, host in enumerate(hosts)
            ],
            "target": {
                k: v for k, v in self._run_target(request.compute).items() if k not in secret
            },
            "upload": None,
            "log_shown": 0,
            "log_shown_by_rank": [0] * len(hosts),
        }

    def _node_status(self, handle: Handle, node: dict[str, Any]) -> dict[str, Any]:
        if "container" in node:
            from trainform.providers import ssh_containers

            return self._with_session(
                handle["target"], node["host"], lambda conn: ssh_containers.node_status(conn, node)
            )
        out = self._with_session(
            handle["target"],
            node["host"],
            lambda conn: conn.python(STATUS_SCRIPT, [node["run_dir"], str(node["launcher_pid"])]),
        )
        status: dict[str, Any] = json.loads(out)
        alive, group = (
            bool(status.pop("launcher_alive", False)),
            bool(status.pop("group_alive", False)),
        )
        return judge_liveness(status, alive, group, f"on {node['host']}")

    def status(self, handle: Handle) -> dict[str, Any]:
        statuses = [self._node_status(handle, node) for node in handle["nodes"]]
        combined, stop_others = multinode.combine([n["host"] for n in handle["nodes"]], statuses)
        if stop_others:
            self.cancel(handle)  # one node failed: stop the others
        return combined

    def logs(self, handle: Handle, offset: int, node: int = 0) -> tuple[bytes, int]:
        return self._read(handle, "output.log", offset, node)

    def nodes(self, handle: Handle) -> list[str]:
        return [str(node["host"]) for node in handle["nodes"]]

    def metrics(self, handle: Handle, offset: int) -> tuple[bytes, int]:
        return self._read(handle, "metrics.jsonl", offset)

    def _read(self, handle: Handle, name: str, offset: int, rank: int = 0) -> tuple[bytes, int]:
        """Up to 1 MiB of file ``name`` in the run folder of the node of rank ``rank``, from
        ``offset``; b"" only at the end the file has now (see :meth:`follow`)."""
        if not 0 <= rank < len(handle["nodes"]):
            raise ProviderError(f"the run has {len(handle['nodes'])} node(s): no rank {rank}")
        node = handle["nodes"][rank]
        return self.follow(handle["target"], str(node["host"]), f"{node['run_dir']}/{name}", offset)

    def follow(
        self, target: dict[str, Any], host: str, path: str, offset: int, limit: int = 1 << 20
    ) -> tuple[bytes, int]:
        """Up to ``limit`` bytes of the growing file ``path`` on ``host`` (reached with
        ``target``, see :meth:`_session`) from ``offset``, and the offset after them; b"" only
        at the end the file has now (also when it does not exist yet).

        Reads continue a stream (RemoteFile) that the previous read left where this one
        starts; a stream at the end it had when it opened, or whose connection dropped, is
        followed by a new one."""
        key = (host, str(target.get("username")), path)
        with self._lock:
            stream = self._streams.pop(key, None)
        if stream is not None and stream.offset == offset and stream.alive():
            try:
                data: bytes = stream.read(limit)
            except ProviderError:
                data = b""  # the connection dropped: a new stream below
            if data:
                self._keep_stream(key, stream)
                return data, offset + len(data)
        if stream is not None:
            stream.close()

        def start(conn: Any) -> tuple[Any, bytes]:
            stream = conn.open_file(path, offset)
            try:
                return stream, stream.read(limit)
            except BaseException:
                stream.close()
                raise

        stream, data = self._with_session(target, host, start)
        if data:
            self._keep_stream(key, stream)
        else:
            stream.close()
        return data, offset + len(data)

    def known_set(self, host: str, target: dict[str, Any], workdir: str) -> Path:
        """The local file recording the blob set last sent to ``workdir``'s blob folder on
        ``host`` as ``target``'s user (see :func:`upload_blobs`)."""
        name = f"{host}\0{target.get('username')}\0{workdir}/blobs"
        return self._known_sets / (hashlib.sha256(name.encode()).hexdigest()[:24] + ".json")

    def _keep_stream(self, key: tuple[str, str, str], stream: Any) -> None:
        """Keep ``stream`` for the next read of its file (closing any other one)."""
        with self._lock:
            other = self._streams.pop(key, None)
            self._streams[key] = stream
        if other is not None:
            other.close()

    def _close_streams(self, run_dir: str) -> None:
        """Close the streams still open on files of a run folder (its run was collected)."""
        with self._lock:
            keys = [k for k in self._streams if k[2].startswith(f"{run_dir}/")]
            streams = [self._streams.pop(k) for k in keys]
        for stream in streams:
            stream.close()

    def cancel(self, handle: Handle) -> None:
        from trainform.runs.launcher import STOP_SCRIPT

        for node in handle["nodes"]:
            if "container" in node:
                from trainform.providers import ssh_containers

                def stop(conn: Any, node: dict[str, Any] = node) -> None:
                    ssh_containers.cancel(conn, node)

                self._with_session(handle["target"], node["host"], stop)
                continue
            # The launcher on the host cancels (`launcher.py --stop`): SIGTERM to a live
            # launcher, which stops every process of the run; without one, whatever the run
            # left running is killed there (its cgroup, process group and launch marker).
            args = [str(node["run_dir"]), str(node["launcher_pid"])]

            def kill(conn: Any, args: list[str] = args) -> Any:
                return conn.python(STOP_SCRIPT, args)

            self._with_session(handle["target"], node["host"], kill)

    def fetch_outputs(self, handle: Handle, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        for node in handle["nodes"]:
            self._close_streams(str(node["run_dir"]))
        for rank, node in enumerate(handle["nodes"]):
            where = dest if rank == 0 else dest / "nodes" / str(rank)

            def fetch(conn: Any, node: dict[str, Any] = node, where: Path = where) -> None:
                fetch_run_folder(conn, str(node["run_dir"]), where)

            # Safe to repeat: a dropped connection starts this node's copy again.
            self._with_session(handle["target"], node["host"], fetch)
            if "container" in node:  # normally removed by status already
                from trainform.providers import ssh_containers

                def remove(conn: Any, node: dict[str, Any] = node) -> None:
                    ssh_containers.remove_leftover(conn, node)

                self._with_session(handle["target"], node["host"], remove)


def verified_host_keys(host: str, conn: Any) -> dict[str, str]:
    """The fingerprints a connection to ``host`` verified, to pin in state: the host's own
    (by its entry, ``host`` or ``host:port``) and its bastions' (by their ``host:port``)."""
    target = conn.target.endpoint
    keys = {ep: fp for ep, fp in conn.fingerprints.items() if ep != target}
    return {**keys, host: conn.fingerprint}


def stage_remote(
    conn: Any, request: RunRequest, workdir: str, run_dir: str, known: Path
) -> tuple[str, dict[str, int]]:
    """Prepare a run on a host: create ``run_dir`` (under ``workdir/runs``, which only the
    user may read: run specs name secrets) and the workdir's lib and blob folders, install the
    lib once per version (a ``.complete`` marker says it arrived whole), and send the
    snapshot's missing blobs (:func:`upload_blobs`, ``known`` its local set cache). Returns
    the lib folder and what was sent (``{"files", "bytes"}``). Raises ProviderError."""
    from trainform.runs.shipping import lib_digest, lib_files

    files = lib_files()
    lib = f"{workdir}/lib/{lib_digest(files)}"
    blobs = f"{workdir}/blobs"
    conn.run(["mkdir", "-p", lib, run_dir, blobs])
    # A run's spec holds its environment variables (tokens): only the user may look.
    conn.run(["chmod", "700", f"{workdir}/runs"])
    has_lib, _, _ = conn.run(["test", "-f", f"{lib}/.complete"], check=False)
    if has_lib != 0:
        conn.upload_stream([*files.items(), (".complete", b"")], lib)
    # One upload at a time into a host's blob folder (trials of a sweep, runs of one
    # apply, two applies): the second asks what is missing once the first has sent it, so
    # a dataset used by many runs travels once.
    known.parent.mkdir(parents=True, exist_ok=True)
    with open(known.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return lib, upload_blobs(conn, request.blob_hashes(), request.blob_dir, blobs, known)


def store_remote_secrets(conn: Any, run_dir: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Write the secret values of a launcher spec into ``run_dir`` on the host (0600 in a 0700
    folder, deleted by the launcher once read; see ``shipping.store_secrets``) and return the
    spec without them, as it may be written to ``spec.json``."""
    from trainform.runs.shipping import STORE_SECRETS_SCRIPT, split_secrets

    spec, secret = split_secrets(spec)
    if secret is not None:
        conn.run(
            ["python3", "-c", STORE_SECRETS_SCRIPT, run_dir], input=json.dumps(secret).encode()
        )
    return spec


def fetch_run_folder(conn: Any, run_dir: str, where: Path) -> None:
    """Copy a run folder's outputs, log, metrics and status from the host into ``where``,
    with its spec redacted. Everything read is hostile: the outputs arrive by the rules of
    :mod:`trainform.remote.tarsafe` (``download_tree``), an ``outputs_dir`` that leaves the
    run's source folder is not followed, and files are copied a piece at a time. Safe to
    repeat. Raises ProviderError."""
    from trainform.remote.tarsafe import relative_folder_problem

    spec_bytes = conn.python(READ_SCRIPT, [f"{run_dir}/spec.json", "0", str(1 << 24)])
    try:
        spec = json.loads(spec_bytes)
    except ValueError:
        spec = {}
    outputs_dir = (spec.get("outputs_dir") if isinstance(spec, dict) else None) or "outputs"
    where.mkdir(parents=True, exist_ok=True)
    if relative_folder_problem(outputs_dir):
        (where / "outputs").mkdir(exist_ok=True)
        log.warning("collecting %s: skipped outputs_dir %r", run_dir, outputs_dir)
    else:
        outputs = f"{run_dir}/src/{outputs_dir}"
        conn.run(["mkdir", "-p", outputs])
        conn.download_tree(outputs, where / "outputs")
    # Whole, whatever their size, a piece at a time (never held in memory).
    for name in ("output.log", "metrics.jsonl", "status.json"):
        conn.download_file(f"{run_dir}/{name}", where / name)
    (where / "spec.json").write_bytes(redacted_spec(spec_bytes))


def upload_blobs(
    conn: Any,
    wanted: list[str],
    blob_dir: Path,
    remote: str,
    known: Path | None = None,
) -> dict[str, int]:
    """Send the blobs ``wanted`` (sorted hashes, from ``blob_dir``) that the host's blob folder ``remote``
    lacks, in one stream; returns ``{"files", "bytes"}`` sent (bytes: the query and the tar
    stream). Idempotent: blobs arrive whole or not at all, so after an interruption a second
    call sends only the rest.

    ``known`` is a local file naming the last blob set sent to this host; the query then
    carries only the difference from it (a few hashes after a small change) instead of every
    hash of the snapshot."""
    set_id = hashlib.sha256("\n".join(wanted).encode()).hexdigest()[:32]
    sets = posixpath.join(posixpath.dirname(remote.rstrip("/")) or ".", "sets")
    base = _known_set(known)
    query = b""
    out = b"FULL"
    if base is not None:
        old = set(base[1])
        delta = [f"+{h}" for h in wanted if h not in old]
        delta += [f"-{h}" for h in sorted(old.difference(wanted))]
        query = "\n".join(delta).encode()
        out = conn.python(MISSING_DELTA_SCRIPT, [remote, sets, base[0], set_id], input=query)
    if out.strip() == b"FULL":
        full = "\n".join(f"+{h}" for h in wanted).encode()
        query += full
        out = conn.python(MISSING_DELTA_SCRIPT, [remote, sets, "-", set_id], input=full)
    missing = out.decode().split()
    payload = [(f"{h[:2]}/{h[2:]}", blob_dir / h[:2] / h[2:]) for h in missing]
    sent = conn.upload_stream(payload, remote, progress=_progress(payload)) if payload else 0
    if known is not None:
        known.parent.mkdir(parents=True, exist_ok=True)
        tmp = known.with_suffix(f".tmp-{os.getpid()}-{threading.get_ident()}")
        tmp.write_text(json.dumps({"id": set_id, "hashes": wanted}))
        os.replace(tmp, known)
    return {"files": len(payload), "bytes": len(query) + sent}


PROGRESS_FROM = 16 << 20  # uploads at least this large report their progress


def _progress(payload: list[tuple[str, Path]]) -> Callable[[int], None] | None:
    """A byte-count callback that reports a large upload's progress about once a second."""
    total = sum(path.stat().st_size for _, path in payload)
    if total < PROGRESS_FROM:
        return None
    return byte_progress(f"uploading {len(payload)} file(s)", total)


def _known_set(path: Path | None) -> tuple[str, list[str]] | None:
    """The blob set last sent to a host (its id and hashes), if recorded and readable."""
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
        return str(data["id"]), list(data["hashes"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def parse_jump(text: str, default_user: str) -> tuple[str, str, int]:
    """``user@host:port`` (user and port optional) -> (user, host, port)."""
    user, _, rest = text.rpartition("@")
    host, _, port = rest.partition(":")
    if not host or (port and not port.isdigit()):
        raise ValueError(f"proxy_jump {text!r} is not user@host:port")
    return user or default_user, host, int(port or 22)


def split_host(entry: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` -> (host, port). A bare IPv6
    address (several colons) has no port."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif entry.count(":") == 1:
        host, _, port = entry.partition(":")
    else:
        host, port = entry, ""
    if port and not port.isdigit():
        raise ValueError(f"{entry!r} is not host or host:port")
    return host, int(port) if port else default_port


def expand_home(path: str, home: str) -> str:
    return home + path[1:] if path == "~" or path.startswith("~/") else path


def _is_secret_marker(value: Any) -> bool:
    from trainform.state.secrets import is_sealed

    return is_sealed(value)
