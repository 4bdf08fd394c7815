"""Docker-backed clusters (``compute "x" { type = "docker-cluster" }``): trainform's managed
cluster, whose nodes are containers on one or more Docker engines.

A cluster is a private bridge network per engine and between ``min_nodes`` and ``max_nodes``
node containers (``sleep infinity`` under docker-init, from ``node_image``, which must have
python3). A run takes ``node_count`` idle nodes, or new ones while the cluster is below
``max_nodes``; what does not fit waits in a first-come queue. Each node runs the same
stdlib-only launcher as every other target, started with ``docker exec``; files travel as tar
streams through the engine's API, so remote engines (``tcp://``, ``ssh://``) work like the
local one.

Which node serves which run, since when idle nodes have been idle, and the queue live in a
registry file under ``.trainform/clusters/``, changed only under an exclusive file lock, so
every trainform process on this machine (an apply, ``runs show`` in another terminal, a
detached sweep) sees and keeps one truth. The cluster's housekeeping happens whenever a
trainform process touches it (refresh, a run's status, ``compute show``/``reconcile``):
finished runs release their nodes (after their folders are copied back), queued runs start,
and nodes idle past ``idle_timeout`` above ``min_nodes`` are removed. While the cluster has
work or spare nodes, a watcher process (this module run as a program) does the same on its
own, so nothing waits for the next command.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from trainform.config.schema import Attribute, BlockSchema, NestedBlock
from trainform.errors import ProviderError
from trainform.extras import missing
from trainform.providers.base import (
    MULTI_NODE,
    RUNS,
    SCALING,
    TERMINAL,
    Handle,
    Observed,
    PlanValues,
    Provider,
    ResourceState,
    RunRequest,
)
from trainform.providers.local import read_from
from trainform.remote import docker as dk
from trainform.remote.scripts import MISSING_SCRIPT, READ_SCRIPT, STATUS_SCRIPT
from trainform.runs import nodes as multinode
from trainform.runs.results import judge_liveness
from trainform.units import parse_duration

WORKDIR = "/var/lib/trainform"  # inside node containers
CLUSTER_LABEL = "trainform.cluster"
PROJECT_LABEL = "trainform.project"
NODE_COMMAND = ["sleep", "infinity"]
AGENT_POLL = 2.0  # seconds between the watcher's looks at a cluster with work
KEEP_FINISHED = 7 * 24 * 3600.0  # seconds a finished run's record stays in the registry
_MEMORY = re.compile(r"^\d+(\.\d+)?\s*([kmgt]i?b?|b)?$", re.IGNORECASE)

NODE_SIZE = BlockSchema(
    attributes={
        "cpus": Attribute("number", description="CPUs per node (a limit; fractions allowed)."),
        "memory": Attribute(description='Memory per node, e.g. "2g" (a limit).'),
        "gpus": Attribute("any", description='GPUs per node: "all" or a count.'),
    },
    description="Resources of each node container.",
)


class DockerClusterProvider(Provider):
    """Creates and scales clusters of node containers and runs work on them."""

    name = "docker-cluster"
    kind = "compute"
    capabilities = frozenset({RUNS, MULTI_NODE, SCALING})
    schema = BlockSchema(
        attributes={
            "description": Attribute(description="Free text."),
            "tags": Attribute("map(string)", default={}, description="Labels."),
            "docker_hosts": Attribute(
                "list(string)",
                default=[],
                force_new=True,
                description="Docker engines for the nodes (unix://, tcp://, ssh:// URLs); "
                "empty means this machine's engine.",
            ),
            "node_image": Attribute(
                required=True,
                force_new=True,
                description="Image of the node containers (must have python3; it is not "
                "pulled: build or load it on each engine first).",
            ),
            "min_nodes": Attribute("number", default=0, description="Nodes kept at all times."),
            "max_nodes": Attribute("number", required=True, description="Most nodes at once."),
            "idle_timeout": Attribute(
                default="120s", description="How long a node above min_nodes may sit idle."
            ),
            "cluster_id": Attribute(computed=True, description="Names the network and nodes."),
            "registry": Attribute(computed=True, description="The cluster's bookkeeping file."),
            "engines": Attribute("list(string)", computed=True, description="Engines used."),
        },
        blocks={"node_size": NestedBlock(NODE_SIZE, force_new=True, description="Node size.")},
        description="A cluster of Docker containers that scales with the runs it serves.",
    )

    # -- configuration
    def validate(self, address: str, desired: dict[str, Any]) -> list[str]:
        problems = []
        low: Any = desired.get("min_nodes")
        high: Any = desired.get("max_nodes")
        if not _whole(high) or high < 1:
            problems.append("max_nodes must be a whole number >= 1")
        if not _whole(low) or low < 0:
            problems.append("min_nodes must be a whole number >= 0")
        elif _whole(high) and low > high:
            problems.append(f"min_nodes ({low}) is more than max_nodes ({high})")
        try:
            parse_duration(desired.get("idle_timeout") or "120s")
        except ValueError as exc:
            problems.append(f"idle_timeout: {exc}")
        size = desired.get("node_size") or {}
        cpus, memory, gpus = size.get("cpus"), size.get("memory"), size.get("gpus")
        if cpus is not None and not (isinstance(cpus, (int, float)) and cpus > 0):
            problems.append("node_size.cpus must be a number > 0")
        if memory is not None and not (isinstance(memory, str) and _MEMORY.match(memory)):
            problems.append(f'node_size.memory {memory!r} is not a size like "512m" or "2g"')
        if gpus is not None and gpus != "all" and not (_whole(gpus) and gpus >= 0):
            problems.append('node_size.gpus must be "all" or a whole number')
        if missing_extra := missing("docker", 'compute type "docker-cluster"'):
            problems.append(missing_extra)
        hosts = desired.get("docker_hosts")
        ssh_hosts = isinstance(hosts, list) and any(str(h).startswith("ssh://") for h in hosts)
        if ssh_hosts and (missing_extra := missing("paramiko", "docker_hosts with ssh:// engines")):
            problems.append(missing_extra)
        return problems

    def run_problems(
        self, compute: dict[str, Any], node_count: int, options: dict[str, Any] | None = None
    ) -> list[str]:
        high: Any = compute.get("max_nodes")
        if _whole(high) and node_count > high:
            return [
                f"node_count = {node_count}, but {compute.get('address') or 'the cluster'} has "
                f"max_nodes = {high}: the run could never start"
            ]
        return []

    # -- lifecycle
    def create(self, address: str, desired: dict[str, Any]) -> Observed:
        label = re.sub(r"[^a-z0-9-]+", "-", address.split(".", 1)[-1].lower()).strip("-")
        cluster_id = f"tf-{label[:30] or 'cluster'}-{secrets.token_hex(3)}"
        engines = list(desired.get("docker_hosts") or [dk.LOCAL])
        registry = Registry(self.context.data_dir / "clusters" / f"{cluster_id}.json")
        config = self._config(address, desired, cluster_id, engines)
        for url in engines:
            client = dk.connect(url)
            self._check_image(client, url, config["node_image"], address)
            dk.api_call(
                f"{address}: creating network {cluster_id}",
                url,
                client.networks.create,
                cluster_id,
                driver="bridge",
                labels=config["labels"],
            )
        with registry.locked(address) as cluster:
            cluster.reg["config"] = config
            cluster.heal()
        return {"cluster_id": cluster_id, "registry": str(registry.path), "engines": engines}

    def import_existing(self, address: str, desired: dict[str, Any], ident: str) -> Observed:
        """``ident`` is the cluster's id (its ``trainform.cluster`` label, the name of its
        network and the prefix of its nodes' names). The cluster's network must be on the
        configured engines and its registry in this configuration's folder; its running
        node containers are then read as a refresh reads them."""
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", ident):
            raise ProviderError(
                f"{address}: import id {ident!r} is not a cluster id such as tf-gpu-1a2b3c "
                f"(the {CLUSTER_LABEL} label of its network and nodes)",
                address=address,
            )
        engines = list(desired.get("docker_hosts") or [dk.LOCAL])
        found = []
        for url in engines:
            client = dk.connect(url)
            found += dk.api_call(
                f"{address}: looking up cluster {ident}",
                url,
                client.networks.list,
                filters={"label": f"{CLUSTER_LABEL}={ident}"},
            )
        if not found:
            raise ProviderError(
                f"{address}: import id {ident!r}: no Docker cluster labelled "
                f"{CLUSTER_LABEL}={ident} on {', '.join(map(dk.engine_name, engines))}",
                address=address,
            )
        registry = Registry(self.context.data_dir / "clusters" / f"{ident}.json")
        if not registry.path.exists():
            raise ProviderError(
                f"{address}: import id {ident!r}: the cluster's registry {registry.path} is not "
                "here; a cluster is imported into the configuration folder that created it",
                address=address,
            )
        computed = {"cluster_id": ident, "registry": str(registry.path), "engines": engines}
        want = self._config(address, desired, ident, engines)
        with registry.locked(address) as cluster:
            # What replaces the nodes must match: state records the block's values, and a
            # plan could not tell that the nodes run another image. min_nodes, max_nodes and
            # idle_timeout may differ: plan_values shows them and update sets them.
            differ = [
                f"{key} is {cluster.config.get(key)!r} in the cluster, {want[key]!r} in the "
                "configuration"
                for key in ("node_image", "node_size", "engines")
                if cluster.config.get(key) != want[key]
            ]
            if differ:
                raise ProviderError(
                    f"{address}: import id {ident!r}: the cluster does not match the block: "
                    + "; ".join(differ)
                    + " (these replace the nodes: import under a block that matches, then "
                    "change it)",
                    address=address,
                )
            cluster.housekeeping()  # the running node containers, as refresh reads them
        return computed

    def read(self, resource: ResourceState) -> Observed | None:
        registry = _registry_of(resource.computed)
        if registry is None or not registry.path.exists():
            return None
        engines = resource.computed.get("engines") or [dk.LOCAL]
        for url in engines:
            client = dk.connect(url)
            try:
                client.networks.get(resource.computed["cluster_id"])
            except Exception as exc:
                if dk.is_not_found(exc):
                    return None
                raise ProviderError(
                    f"{resource.address}: {dk.short_error(exc)}", host=url
                ) from None
        with registry.locked(resource.address) as cluster:
            cluster.housekeeping()
        return dict(resource.computed)

    def plan_values(
        self, address: str, desired: dict[str, Any], prior: ResourceState | None
    ) -> PlanValues:
        """Reasons to heal: nodes lost outside trainform since the last apply, the cluster
        below min_nodes, as the refresh just before (``read``) recorded them, and settings
        the cluster runs with that state does not record (an imported cluster whose block
        asks for another max_nodes); this reads the registry only."""
        registry = _registry_of(prior.computed) if prior else None
        if registry is None or not registry.path.exists():
            return PlanValues()
        with registry.locked(address) as cluster:
            lost = list(cluster.reg["lost"])
            live = len(cluster.reg["nodes"])
            settings = _unrecorded_settings(cluster.config, prior.attributes if prior else {})
        low = int(desired.get("min_nodes") or 0)
        if not lost and live >= low and not settings:
            return PlanValues()
        reasons = settings + [f"node {name} {why}" for name, why in lost]
        if live < low:
            reasons.append(f"{live} of min_nodes = {low} nodes running: start {low - live}")
        return PlanValues(reasons=tuple(reasons))

    def update(
        self, address: str, desired: dict[str, Any], prior: ResourceState, changed: list[str]
    ) -> Observed:
        registry = _registry_of(prior.computed)
        if registry is None:
            raise ProviderError(f"{address}: no registry recorded; replace the cluster")
        engines = prior.computed.get("engines") or [dk.LOCAL]
        with registry.locked(address) as cluster:
            cluster.reg["config"] = self._config(
                address, desired, prior.computed["cluster_id"], engines
            )
            cluster.heal()
        return dict(prior.computed)

    def delete(self, prior: ResourceState) -> None:
        cluster_id = prior.computed.get("cluster_id")
        if not cluster_id:
            return
        for url in prior.computed.get("engines") or [dk.LOCAL]:
            client = dk.connect(url)
            what = f"{prior.address}: removing cluster {cluster_id}"
            found = dk.api_call(
                what,
                url,
                client.containers.list,
                all=True,
                filters={"label": f"{CLUSTER_LABEL}={cluster_id}"},
            )
            _parallel(lambda c, url=url: _remove_container(c, url), found)
            for network in dk.api_call(
                what, url, client.networks.list, filters={"label": f"{CLUSTER_LABEL}={cluster_id}"}
            ):
                dk.api_call(what, url, network.remove)
        registry = _registry_of(prior.computed)
        if registry is not None:
            with contextlib.suppress(FileNotFoundError):
                registry.path.unlink()
            _remove_tree(registry.runs_dir)

    # -- inspection (trainform compute show / reconcile)
    def describe(self, resource: ResourceState) -> dict[str, Any]:
        """The cluster now: its nodes (state, the run each serves, idle time) and the queue."""
        registry = _registry_of(resource.computed)
        if registry is None or not registry.path.exists():
            raise ProviderError(f"{resource.address}: the cluster has not been created")
        with registry.locked(resource.address) as cluster:
            actions = cluster.housekeeping()
            return {**cluster.summary(), "actions": actions}

    # -- runs
    def submit(self, request: RunRequest) -> Handle:
        registry = _registry_of(request.compute)
        if registry is None:
            raise ProviderError(f"{request.address}: the cluster has not been created")
        from trainform.runs.shipping import split_secrets, store_secrets

        path = registry.runs_dir / request.run_id / "request.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        # A queued run may start in a later command: its secret values wait beside the
        # request, 0600 in a 0700 folder, until it starts (_launch).
        spec, secret = split_secrets(request.spec)
        if secret is not None:
            store_secrets(path.parent, secret)
        path.write_text(json.dumps(_request_to_json(replace(request, spec=spec))))
        with registry.locked(str(request.compute.get("address") or "")) as cluster:
            cluster.reg["runs"][request.run_id] = {
                "state": "queued",
                "node_count": request.node_count,
                "queued_at": time.time(),
                "address": request.address,
            }
            cluster.reg["queue"].append(request.run_id)
            cluster.housekeeping()
            upload = cluster.reg["runs"][request.run_id].get("upload")
        return {
            "registry": str(registry.path),
            "run_id": request.run_id,
            "upload": upload,
            "node_count": request.node_count,
        }

    def status(self, handle: Handle) -> dict[str, Any]:
        registry = Registry(Path(handle["registry"]))
        with registry.locked() as cluster:
            status = cluster.run_status(handle["run_id"])  # may free nodes for the queue
            cluster.housekeeping(full=False)
            return status

    def logs(self, handle: Handle, offset: int, node: int = 0) -> tuple[bytes, int]:
        return self._read(handle, "output.log", offset, node)

    def nodes(self, handle: Handle) -> list[str]:
        """The node containers of the run, in rank order ("" for each while it is queued)."""
        registry = Registry(Path(handle["registry"]))
        count = int(handle.get("node_count") or 1)
        if not registry.path.is_file():  # the cluster is gone (a run's own, destroyed)
            return [""] * count
        with registry.locked() as cluster:
            run = cluster.reg["runs"].get(handle["run_id"]) or {}
        placed = [str(node.get("name") or "") for node in run.get("nodes") or []]
        return placed or [""] * int(run.get("node_count") or count)

    def metrics(self, handle: Handle, offset: int) -> tuple[bytes, int]:
        return self._read(handle, "metrics.jsonl", offset)

    def _read(self, handle: Handle, name: str, offset: int, rank: int = 0) -> tuple[bytes, int]:
        """Up to 1 MiB of file ``name`` of the node of rank ``rank``: from its container
        while the run has its nodes, else from the folder copied back when it ended."""
        registry = Registry(Path(handle["registry"]))
        with registry.locked() as cluster:
            run = cluster.reg["runs"].get(handle["run_id"]) or {}
            placed = run.get("nodes") or []
            count = int(run.get("node_count") or handle.get("node_count") or 1)
            if not 0 <= rank < count:
                raise ProviderError(f"the run has {count} node(s): no rank {rank}")
            if run.get("state") != "placed" or rank >= len(placed):
                local = registry.runs_dir / handle["run_id"] / "collected"
                return read_from((local / "nodes" / str(rank) if rank else local) / name, offset)
            node = placed[rank]
        container = _container(node)
        if container is None:
            return b"", offset
        data = dk.python_in(
            container,
            READ_SCRIPT,
            [f"{node['run_dir']}/{name}", str(offset), str(1 << 20)],
            f"reading {name}",
        )[: 1 << 20]  # what a node sends is not trusted to keep the limit
        return data, offset + len(data)

    def cancel(self, handle: Handle) -> None:
        registry = Registry(Path(handle["registry"]))
        with registry.locked() as cluster:
            cluster.cancel(handle["run_id"])

    def fetch_outputs(self, handle: Handle, dest: Path) -> None:
        from trainform.runs.shipping import collect_run_folder

        registry = Registry(Path(handle["registry"]))
        with registry.locked() as cluster:
            cluster.run_status(handle["run_id"])  # a finished run's folders are copied back
        base = registry.runs_dir / handle["run_id"] / "collected"
        if not (base / "spec.json").is_file():
            dest.mkdir(parents=True, exist_ok=True)
            return  # it never started (canceled while queued)
        collect_run_folder(base, dest)
        for extra in sorted((base / "nodes").glob("*")) if (base / "nodes").is_dir() else []:
            if (extra / "spec.json").is_file():
                collect_run_folder(extra, dest / "nodes" / extra.name)

    # -- helpers
    def _config(
        self, address: str, desired: dict[str, Any], cluster_id: str, engines: list[str]
    ) -> dict[str, Any]:
        return {
            "address": address,
            "cluster_id": cluster_id,
            "engines": engines,
            "node_image": str(desired["node_image"]),
            "node_size": {
                k: v
                for k, v in (desired.get("node_size") or {}).items()
                if k in NODE_SIZE.attributes
            },
            "min_nodes": int(desired.get("min_nodes") or 0),
            "max_nodes": int(desired["max_nodes"]),
            "idle_timeout": parse_duration(desired.get("idle_timeout") or "120s"),
            "labels": {
                dk.LABEL: "1",
                CLUSTER_LABEL: cluster_id,
                PROJECT_LABEL: str(self.context.config_dir.resolve()),
                "trainform.address": address,
            },
        }

    def _check_image(self, client: Any, url: str, image: str, address: str) -> None:
        try:
            client.images.get(image)
        except Exception as exc:
            if dk.is_not_found(exc):
                raise ProviderError(
                    f"node_image {image!r} is not on {dk.engine_name(url)}; "
                    "trainform does not pull images. Build or load it there first (for a "
                    "Debian image with python3 and no registry: scripts/build-base-image)",
                    host=url,
                ) from None
            raise ProviderError(f"{address}: {dk.short_error(exc)}", host=url) from None


class Registry:
    """The cluster's bookkeeping file, read and written only under an exclusive lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.runs_dir = path.with_suffix("")  # per-run files: queued requests, collected folders

    @contextlib.contextmanager
    def locked(self, address: str = "") -> Iterator[Cluster]:
        """The cluster, its bookkeeping read under the lock and written back (atomically, if
        it changed) when the block ends. ``address`` names it in messages (default: the
        address recorded at create)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                data = json.loads(self.path.read_text())
            except FileNotFoundError:
                data = {}
            data.setdefault("nodes", {})
            data.setdefault("runs", {})
            data.setdefault("queue", [])
            data.setdefault("lost", [])  # [name, why] of nodes lost since the last apply
            data.setdefault("next_node", 1)
            before = json.dumps(data, sort_keys=True)
            try:
                yield Cluster(self, data, address)
            finally:
                after = json.dumps(data, sort_keys=True)
                if after != before:
                    tmp = self.path.with_suffix(f".tmp-{os.getpid()}-{threading.get_ident()}")
                    tmp.write_text(after)
                    os.replace(tmp, self.path)


class Cluster:
    """Operations on a cluster's registry (held under its lock) and its containers."""

    def __init__(self, registry: Registry, reg: dict[str, Any], address: str) -> None:
        self.registry = registry
        self.reg = reg
        self._address = address
        self._containers: dict[str, Any] | None = None

    @property
    def config(self) -> dict[str, Any]:
        """The cluster's settings, as the last create or update recorded them."""
        return self.reg.get("config") or {}

    @property
    def address(self) -> str:
        return self._address or str(self.config.get("address", ""))

    # -- containers
    def containers(self) -> dict[str, Any]:
        """The cluster's node containers by name, on every engine (one listing each)."""
        if self._containers is None:
            found: dict[str, Any] = {}
            for url in self.config.get("engines") or [dk.LOCAL]:
                client = dk.connect(url)
                listed = dk.api_call(
                    f"{self.address}: listing nodes",
                    url,
                    client.containers.list,
                    all=True,
                    filters={"label": f"{CLUSTER_LABEL}={self.config['cluster_id']}"},
                )
                found.update({c.name: c for c in listed})
            self._containers = found
        return self._containers

    def lost_nodes(self) -> list[tuple[str, str]]:
        """Nodes in the registry whose container is gone or no longer running, and why."""
        lost = []
        containers = self.containers()
        for name in sorted(self.reg["nodes"]):
            container = containers.get(name)
            if container is None:
                lost.append((name, "was removed outside trainform"))
            elif container.status != "running":
                lost.append((name, _stopped_reason(container)))
        return lost

    def _new_node(self, engine: str | None = None) -> str:
        """Record a new node (on ``engine``, else the engine with the fewest nodes)."""
        config = self.config
        engines = config.get("engines") or [dk.LOCAL]
        counts = {url: 0 for url in engines}
        for node in self.reg["nodes"].values():
            counts[node["engine"]] = counts.get(node["engine"], 0) + 1
        url = engine or min(engines, key=lambda u: counts[u])
        name = f"{config['cluster_id']}-{self.reg['next_node']}"
        self.reg["next_node"] += 1
        self.reg["nodes"][name] = {"engine": url, "run": None, "idle_since": time.time()}
        return name

    def _start_nodes(self, names: list[str]) -> None:
        config = self.config
        size = config.get("node_size") or {}
        options: dict[str, Any] = {}
        if size.get("cpus"):
            options["nano_cpus"] = int(float(size["cpus"]) * 1e9)
        if size.get("memory"):
            options["mem_limit"] = str(size["memory"]).replace(" ", "")
        if size.get("gpus") not in (None, 0):
            from docker.types import DeviceRequest

            count = -1 if size["gpus"] == "all" else int(size["gpus"])
            options["device_requests"] = [DeviceRequest(count=count, capabilities=[["gpu"]])]

        def start(name: str) -> Any:
            url = self.reg["nodes"][name]["engine"]
            client = dk.connect(url)
            container = dk.api_call(
                f"{self.address}: starting node {name}",
                url,
                client.containers.run,
                config["node_image"],
                NODE_COMMAND,
                name=name,
                hostname=name,
                detach=True,
                init=True,
                labels={**config["labels"], "trainform.node": name},
                network=config["cluster_id"],
                **options,
            )
            dk.api_call(f"{self.address}: inspecting node {name}", url, container.reload)
            return container

        try:
            started = _parallel(start, names)
        except ProviderError:
            for name in names:  # a node that did not start is not part of the cluster
                self._forget_node(name)
            raise
        if self._containers is not None:
            self._containers.update({c.name: c for c in started})

    def _forget_node(self, name: str) -> None:
        node = self.reg["nodes"].pop(name, None)
        container = (self._containers or {}).pop(name, None)
        if container is None and node is not None:
            container = _container({"name": name, "engine": node["engine"]})
        if container is not None:
            _remove_container(container, node["engine"] if node else dk.LOCAL)

    # -- housekeeping
    def heal(self) -> list[str]:
        """Drop lost nodes (failing the runs they served) and start nodes up to min_nodes."""
        actions = self._drop_lost()
        self.reg["lost"] = []  # reported by the plan that led here
        missing = self.config.get("min_nodes", 0) - len(self.reg["nodes"])
        if missing > 0:
            names = [self._new_node() for _ in range(missing)]
            self._start_nodes(names)
            actions.append(f"started {', '.join(names)} (min_nodes = {self.config['min_nodes']})")
        return actions

    def housekeeping(self, full: bool = True) -> list[str]:
        """Release nodes of finished runs, start queued runs that fit, and remove nodes idle
        past idle_timeout above min_nodes. ``full`` also asks every busy node how its run is
        doing (a run nobody watches releases its nodes only that way). Refresh and the watcher
        process do that; a run's own status poll does not, so polls of several runs do not
        each ask about all of them."""
        actions = self._drop_lost()
        if full:
            for run_id, run in list(self.reg["runs"].items()):
                if run.get("state") == "placed":
                    self.run_status(run_id)
        actions += self._dispatch()
        actions += self._scale_down()
        self._forget_old_runs()
        self._keep_watch()
        return actions

    def busy(self) -> bool:
        """Whether the cluster has work, or nodes above min_nodes waiting to be retired."""
        return bool(
            self.reg["queue"]
            or any(r.get("state") == "placed" for r in self.reg["runs"].values())
            or len(self.reg["nodes"]) > self.config.get("min_nodes", 0)
        )

    def next_check(self) -> float:
        """Seconds until the cluster's housekeeping has something to do again."""
        if self.reg["queue"] or any(r.get("state") == "placed" for r in self.reg["runs"].values()):
            return AGENT_POLL
        deadlines = [
            node["idle_since"] + self.config["idle_timeout"] - time.time()
            for node in self.reg["nodes"].values()
            if not node.get("run")
        ]
        return min(max(min(deadlines, default=AGENT_POLL), AGENT_POLL), 60.0)

    def _keep_watch(self) -> None:
        """Make sure a watcher process looks after the cluster while it is busy, so queued
        runs start and idle nodes go even when no trainform command is running."""
        from trainform.state.locking import process_alive, process_start_time

        agent = self.reg.get("agent") or {}
        if not self.busy() or (
            agent and process_alive(int(agent["pid"]), str(agent.get("start", "")))
        ):
            return
        self.registry.runs_dir.mkdir(parents=True, exist_ok=True)
        with (self.registry.runs_dir / "watcher.log").open("ab") as log:
            # At low priority: it must not slow down the runs it looks after, which the
            # command that starts it is usually launching at that very moment.
            proc = subprocess.Popen(
                [
                    "nice",
                    "-n",
                    "10",
                    sys.executable,
                    "-m",
                    "trainform.providers.docker_cluster",
                    str(self.registry.path),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
            )
        self.reg["agent"] = {"pid": proc.pid, "start": process_start_time(proc.pid)}

    def _forget_old_runs(self) -> None:
        """Drop the records and copied-back folders of runs finished over a week ago (their
        outputs were collected into the artifact store by then, or never will be)."""
        cutoff = time.time() - KEEP_FINISHED
        for run_id, run in list(self.reg["runs"].items()):
            if run.get("state") == "done" and run.get("done_at", cutoff) < cutoff:
                del self.reg["runs"][run_id]
                _remove_tree(self.registry.runs_dir / run_id)

    def _drop_lost(self) -> list[str]:
        actions = []
        for name, why in self.lost_nodes():
            node = self.reg["nodes"][name]
            run_id = node.get("run")
            if run_id and self.reg["runs"].get(run_id, {}).get("state") == "placed":
                self._finish_run(run_id, lost=(name, why))
            self._forget_node(name)
            self.reg["lost"].append([name, why])
            actions.append(f"dropped node {name}, which {why}")
        return actions

    def _dispatch(self) -> list[str]:
        """Start queued runs, first come first served, while they fit."""
        actions = []
        while self.reg["queue"]:
            run_id = self.reg["queue"][0]
            run = self.reg["runs"].get(run_id)
            if run is None or run.get("state") != "queued":
                self.reg["queue"].pop(0)
                continue
            nodes = self._allocate(int(run["node_count"]))
            if nodes is None:
                break
            self.reg["queue"].pop(0)
            self._launch(run_id, run, nodes)
            actions.append(f"started run {run_id} on {', '.join(nodes)}")
        return actions

    def _allocate(self, count: int) -> list[str] | None:
        """``count`` nodes for a run (idle ones first, new ones up to max_nodes), or None.
        The nodes of a multi-node run share one engine: bridge networks do not span
        engines, and ranks must reach MASTER_ADDR."""
        room = max(self.config["max_nodes"] - len(self.reg["nodes"]), 0)
        idle = [n for n, node in sorted(self.reg["nodes"].items()) if not node.get("run")]
        if count == 1 or len(self.config.get("engines") or [dk.LOCAL]) == 1:
            choices = [(None, idle)]
        else:  # prefer the engine with the most idle nodes
            by_engine = {
                url: [n for n in idle if self.reg["nodes"][n]["engine"] == url]
                for url in self.config["engines"]
            }
            choices = sorted(by_engine.items(), key=lambda kv: -len(kv[1]))
        fit = next(((e, f) for e, f in choices if len(f) + room >= count), None)
        if fit is None:
            return None
        engine, free = fit
        chosen = free[:count]
        new = [self._new_node(engine) for _ in range(count - len(chosen))]
        if new:
            self._start_nodes(new)
        return chosen + new

    def _scale_down(self) -> list[str]:
        now = time.time()
        spare = len(self.reg["nodes"]) - self.config.get("min_nodes", 0)
        idle = sorted(
            (node["idle_since"], name)
            for name, node in self.reg["nodes"].items()
            if not node.get("run") and now - node["idle_since"] >= self.config["idle_timeout"]
        )
        actions = []
        for _, name in idle[: max(spare, 0)]:
            self._forget_node(name)
            actions.append(f"removed node {name} (idle past {self.config['idle_timeout']:.0f}s)")
        return actions

    # -- runs
    def _launch(self, run_id: str, run: dict[str, Any], names: list[str]) -> None:
        from trainform.runs.launcher import take_secrets
        from trainform.runs.shipping import with_secrets

        request = _request_from_json(
            json.loads((self.registry.runs_dir / run_id / "request.json").read_text())
        )
        secret = take_secrets(self.registry.runs_dir / run_id)  # read once, deleted
        request = replace(request, spec=with_secrets(request.spec, secret))
        containers = self.containers()
        ips = [_address_on(containers[n], self.config["cluster_id"]) for n in names]
        port = multinode.rendezvous_port(run_id)
        for name in names:
            self.reg["nodes"][name]["run"] = run_id

        def start(rank: int) -> Any:  # the nodes in parallel: each is a few round trips
            extra = multinode.node_env(rank, ips, port) if len(names) > 1 else {}
            try:
                return _start_on_node(containers[names[rank]], request, extra)
            except ProviderError as exc:
                return exc

        placed: list[dict[str, Any]] = []
        upload = {"files": 0, "bytes": 0}
        failures = []
        for name, result in zip(names, _parallel(start, list(range(len(names))))):
            engine = self.reg["nodes"][name]["engine"]
            if isinstance(result, ProviderError):
                placed.append({"name": name, "engine": engine})
                failures.append(f"could not start on node {name}: {result}")
                continue
            node, sent = result
            placed.append({**node, "name": name, "engine": engine})
            upload["files"] += sent[0]
            upload["bytes"] += sent[1]
        if failures:  # stop the ranks that did start
            run.update(state="placed", nodes=placed)
            self._finish_run(run_id, failed=failures[0])
            return
        run.update(state="placed", nodes=placed, upload=upload, started_at=time.time())

    def run_status(self, run_id: str) -> dict[str, Any]:
        run = self.reg["runs"].get(run_id)
        if run is None:
            return {"status": "lost", "message": f"run {run_id} is unknown to the cluster"}
        if run["state"] == "queued":
            return {"status": "queued", "message": self._queue_reason(run_id, run)}
        if run["state"] == "done":
            return dict(run["final"])
        containers = self.containers()
        names = [node["name"] for node in run["nodes"]]
        for name in names:
            container = containers.get(name)
            if container is None or container.status != "running":
                why = "was removed" if container is None else _stopped_reason(container)
                return self._finish_run(run_id, lost=(name, why))
        outs = _parallel(  # one round trip per node, at the same time
            lambda node: dk.python_in(
                containers[node["name"]],
                STATUS_SCRIPT,
                [node["run_dir"], str(node["pid"])],
                "reading status",
            ),
            run["nodes"],
        )
        statuses = []
        for node, out in zip(run["nodes"], outs):
            status = json.loads(out)
            alive = bool(status.pop("launcher_alive", False))
            group = bool(status.pop("group_alive", False))
            statuses.append(judge_liveness(status, alive, group, f"on node {node['name']}"))
        combined, stop_others = multinode.combine(names, statuses)
        if stop_others:
            self._signal(run)
        if combined.get("status") in TERMINAL:
            return self._finish_run(run_id, final=combined)
        return combined

    def _queue_reason(self, run_id: str, run: dict[str, Any]) -> str:
        ahead = self.reg["queue"].index(run_id) if run_id in self.reg["queue"] else 0
        busy = sorted({n["run"] for n in self.reg["nodes"].values() if n.get("run")})
        reason = (
            f"waiting for {run['node_count']} node(s): {len(self.reg['nodes'])} of max_nodes = "
            f"{self.config['max_nodes']} exist"
        )
        if busy:
            reason += f", busy with {', '.join(busy)}"
        if ahead:
            reason += f"; {ahead} run(s) ahead in the queue"
        return reason

    def _finish_run(
        self,
        run_id: str,
        final: dict[str, Any] | None = None,
        lost: tuple[str, str] | None = None,
        failed: str = "",
    ) -> dict[str, Any]:
        """Record a run's outcome, copy its folders back, stop what is left of it, and free
        its nodes."""
        run = self.reg["runs"][run_id]
        if lost is not None:
            name, why = lost
            final = {"status": "failed", "message": f"node {name} {why}", "exit_code": None}
        elif failed:
            final = {"status": "failed", "message": failed, "exit_code": None}
        assert final is not None
        if lost is not None or failed:
            self._signal(run)
        dest = self.registry.runs_dir / run_id / "collected"
        # Emptied once, before the copies: rank 0's folder holds the other ranks' (nodes/N),
        # so a copy that emptied its own would race with theirs.
        _remove_tree(dest)
        containers = self.containers()
        copies = [
            (
                containers[node["name"]],
                node["run_dir"],
                dest / "nodes" / str(rank) if rank else dest,
            )
            for rank, node in enumerate(run.get("nodes") or [])
            if node["name"] in containers and "run_dir" in node
        ]

        def copy(job: tuple[Any, str, Path]) -> None:
            with contextlib.suppress(ProviderError, Exception):
                _copy_back(*job)

        _parallel(copy, copies)  # the nodes at the same time: each is a few round trips
        for node in run.get("nodes") or []:
            entry = self.reg["nodes"].get(node["name"])
            if entry is not None and entry.get("run") == run_id:
                entry.update(run=None, idle_since=time.time())
        run.update(state="done", final=final, done_at=time.time())
        return dict(final)

    def _signal(self, run: dict[str, Any]) -> None:
        """Ask every node's launcher of a run to stop (SIGTERM; it stops its process group)."""
        containers = self.containers()
        for node in run.get("nodes") or []:
            container = containers.get(node["name"])
            if container is not None and container.status == "running" and node.get("pid"):
                with contextlib.suppress(Exception):
                    dk.exec_in(container, ["kill", "-TERM", str(node["pid"])])

    def cancel(self, run_id: str) -> None:
        run = self.reg["runs"].get(run_id)
        if run is None or run["state"] == "done":
            return
        if run["state"] == "queued":
            from trainform.runs.shipping import discard_secrets

            discard_secrets(self.registry.runs_dir / run_id)
            with contextlib.suppress(ValueError):
                self.reg["queue"].remove(run_id)
            run.update(
                state="done",
                final={"status": "canceled", "message": "canceled while queued", "exit_code": None},
            )
            return
        self._signal(run)

    def summary(self) -> dict[str, Any]:
        containers = self.containers()
        now = time.time()
        nodes = []
        for name, node in sorted(self.reg["nodes"].items()):
            container = containers.get(name)
            nodes.append(
                {
                    "name": name,
                    "engine": node["engine"],
                    "state": "busy"
                    if node.get("run")
                    else ("idle" if container is not None else "missing"),
                    "container": container.status if container is not None else "missing",
                    "run": node.get("run"),
                    "idle_seconds": None if node.get("run") else round(now - node["idle_since"]),
                    "address": _address_on(container, self.config["cluster_id"])
                    if container is not None
                    else "",
                }
            )
        return {
            "cluster_id": self.config.get("cluster_id"),
            "min_nodes": self.config.get("min_nodes"),
            "max_nodes": self.config.get("max_nodes"),
            "idle_timeout": self.config.get("idle_timeout"),
            "nodes": nodes,
            "queue": [
                {"run_id": r, "node_count": self.reg["runs"][r]["node_count"]}
                for r in self.reg["queue"]
                if r in self.reg["runs"]
            ],
        }


# -- running on one node --------------------------------------------------------------------

_LAUNCH = 'setsid nohup python3 "$0" "$1" </dev/null >"$1/launcher.err" 2>&1 & echo $!'
# Lists the blobs a run still lacks on the node and, when none is missing, starts the
# launcher at once (a node that has the snapshot costs one round trip): prints `pid N`, or
# `missing` and the hashes. sh -c SCRIPT MISSING_SCRIPT BLOBS LAUNCHER RUN_DIR
_MISSING_OR_LAUNCH = (
    'missing=$(python3 -c "$0" "$1" < "$3/wanted") || exit 1\n'
    'if [ -n "$missing" ]; then echo missing; echo "$missing"; exit 0; fi\n'
    'setsid nohup python3 "$2" "$3" </dev/null >"$3/launcher.err" 2>&1 & echo "pid $!"'
)


def _start_on_node(
    container: Any, request: RunRequest, extra_env: dict[str, str]
) -> tuple[dict[str, Any], tuple[int, int]]:
    """Ship the lib, the spec and missing blobs to a node and start the launcher there:
    one tar stream and one command when the node has every blob, else two of each."""
    from trainform.runs.shipping import (
        full_spec,
        lib_digest,
        lib_files,
        secrets_archive,
        split_secrets,
    )

    files = lib_files()
    lib = f"{WORKDIR}/lib/{lib_digest(files)}"
    blobs = f"{WORKDIR}/blobs"
    run_dir = f"{WORKDIR}/runs/{request.run_id}"
    launcher = f"{lib}/launcher.py"
    wanted = request.blob_hashes()
    spec = full_spec(request, blobs, lib, f"{WORKDIR}/envs")
    spec.pop("slots", None)  # a node serves one run at a time
    if extra_env:
        spec["extra_env"] = extra_env
    spec, secret = split_secrets(spec)
    top = WORKDIR.lstrip("/")  # sent to "/": the tar makes the folders, no mkdir first
    if secret is not None:  # 0600 in a 0700 folder, deleted by the launcher once read
        container.put_archive("/", secrets_archive(f"{top}/runs/{request.run_id}", secret))
    sent = dk.put_files(
        container,
        "/",
        [
            *((f"{top}/lib/{lib_digest(files)}/{rel}", data) for rel, data in files.items()),
            (f"{top}/runs/{request.run_id}/wanted", "\n".join(wanted).encode()),
            (f"{top}/runs/{request.run_id}/spec.json", json.dumps(spec).encode()),
        ],
    )
    code, out, err = dk.exec_in(
        container, ["sh", "-c", _MISSING_OR_LAUNCH, MISSING_SCRIPT, blobs, launcher, run_dir]
    )
    if code != 0:
        raise ProviderError(f"listing blobs on {container.name}: {err.decode(errors='replace')}")
    words = out.decode().split()
    missing: list[str] = []
    if words[:1] == ["missing"]:
        missing = words[1:]
        sent += dk.put_files(
            container,
            "/",
            [(f"{top}/blobs/{h[:2]}/{h[2:]}", request.blob_dir / h[:2] / h[2:]) for h in missing],
        )
        code, out, err = dk.exec_in(container, ["sh", "-c", _LAUNCH, launcher, run_dir])
        words = ["pid", *out.decode().split()] if code == 0 else []
    if len(words) != 2 or words[0] != "pid" or not words[1].isdigit():
        raise ProviderError(
            f"starting the launcher on {container.name}: {err.decode(errors='replace').strip()}",
            command=shlex.join(["python3", launcher, run_dir]),
        )
    return {"run_dir": run_dir, "pid": int(words[1])}, (len(missing), sent)


# Packs what comes back from a node's run folder into RUN_DIR/.collect.tar (one exec; the
# archive then travels in one get_archive): python3 -c SCRIPT RUN_DIR
_PACK_SCRIPT = r"""
import json, os, sys, tarfile
run_dir = sys.argv[1]
try:
    with open(os.path.join(run_dir, "spec.json")) as f:
        outputs = json.load(f).get("outputs_dir") or "outputs"
except (OSError, ValueError, AttributeError):
    outputs = "outputs"
with tarfile.open(os.path.join(run_dir, ".collect.tar"), "w") as tar:
    for name in ("output.log", "metrics.jsonl", "status.json", "spec.json", "src/" + outputs):
        if os.path.lexists(os.path.join(run_dir, name)):
            tar.add(os.path.join(run_dir, name), arcname=name)
"""


def _copy_back(container: Any, run_dir: str, dest: Path) -> None:
    """A node's run folder (log, metrics, status, spec, outputs) into ``dest`` (which the
    caller emptied); only what stays inside ``dest`` is written."""
    dest.mkdir(parents=True, exist_ok=True)
    dk.python_in(container, _PACK_SCRIPT, [run_dir], "packing the run folder")
    dk.get_archive_of_tar(container, f"{run_dir}/.collect.tar", dest)


# -- small helpers ---------------------------------------------------------------------------


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _registry_of(computed: dict[str, Any]) -> Registry | None:
    path = computed.get("registry")
    return Registry(Path(str(path))) if path else None


def _unrecorded_settings(config: dict[str, Any], recorded: dict[str, Any]) -> list[str]:
    """The scaling settings a cluster's registry holds that differ from those state records
    for it (after an import, state records the block's), as plan reasons."""
    found = []
    for key in ("min_nodes", "max_nodes"):
        have, want = config.get(key), recorded.get(key)
        if _whole(have) and _whole(want) and have != want:
            found.append(f"the cluster has {key} = {have}: set it to {want}")
    have = config.get("idle_timeout")
    try:
        want = parse_duration(recorded.get("idle_timeout") or "120s")
    except (ValueError, TypeError):
        return found  # reported by validation
    if isinstance(have, (int, float)) and have != want:
        found.append(f"the cluster has idle_timeout = {have:g}s: set it to {want:g}s")
    return found


def _container(node: dict[str, Any]) -> Any:
    """A node's container, or None if it is gone."""
    client = dk.connect(node.get("engine") or dk.LOCAL)
    try:
        return client.containers.get(node["name"])
    except Exception:
        return None


def _remove_container(container: Any, url: str) -> None:
    try:
        container.remove(force=True)
    except Exception as exc:
        if not dk.is_not_found(exc):
            raise ProviderError(
                f"removing container {container.name}: {dk.short_error(exc)}", host=url
            ) from None


def _stopped_reason(container: Any) -> str:
    state = container.attrs.get("State") or {}
    code = state.get("ExitCode")
    reason = f"stopped (container {container.status}, exit code {code}"
    if state.get("OOMKilled"):
        reason += ", killed for lack of memory"
    return reason + ")"


def _address_on(container: Any, network: str) -> str:
    networks = (container.attrs.get("NetworkSettings") or {}).get("Networks") or {}
    return str((networks.get(network) or {}).get("IPAddress") or container.name)


def _parallel(fn: Any, items: list[Any]) -> list[Any]:
    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
        return list(pool.map(fn, items))


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _request_to_json(request: RunRequest) -> dict[str, Any]:
    return {
        "run_id": request.run_id,
        "address": request.address,
        "compute": request.compute,
        "spec": request.spec,
        "manifest": request.manifest,
        "blob_dir": str(request.blob_dir),
        "node_count": request.node_count,
    }


def _request_from_json(data: dict[str, Any]) -> RunRequest:
    return RunRequest(**{**data, "blob_dir": Path(data["blob_dir"])})


def watch(path: Path) -> int:
    """The cluster's watcher (``python -m trainform.providers.docker_cluster REGISTRY``): its
    housekeeping, every few seconds while runs are queued or running and at the next idle
    deadline otherwise, until the cluster has nothing left to do or is destroyed."""
    registry = Registry(path)
    time.sleep(AGENT_POLL)  # whoever started it has just done the housekeeping
    while registry.path.exists():
        with registry.locked() as cluster:
            if not cluster.config:
                return 0
            try:
                cluster.housekeeping()
            except ProviderError as exc:  # the engine is unreachable: try again later
                print(f"{time.strftime('%H:%M:%S')} {exc}", flush=True)
            if not cluster.busy():
                cluster.reg.pop("agent", None)
                return 0
            wake = time.monotonic() + cluster.next_check()
        while time.monotonic() < wake and registry.path.exists():  # destroy ends the watch
            time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(watch(Path(sys.argv[1])))
