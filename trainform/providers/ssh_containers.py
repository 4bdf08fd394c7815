"""Runs in containers on an SSH host's Docker engine (ssh compute, an environment with a
``docker`` block).

The run folder, lib and blobs are uploaded as for any run on ssh compute. Then, through a
docker client over the compute's own verified SSH connection
(:func:`trainform.remote.docker_ssh.engine_over`), the image is checked (a named one must be
on that engine: nothing is pulled) or built from the local build context (tagged by its
content hash, skipped when the tag exists), and the launcher runs inside a container with
the host's run folder, lib, blobs, slots and an image-keyed environment cache bind-mounted at
the same paths, as the login user's uid:gid, with ``docker-init`` as PID 1 (so a SIGTERM to
the container reaches the launcher, which stops its process group).

Unlike local compute there is no host-side supervisor: the build runs inside ``submit``
(its output goes into the run's ``output.log`` as ``[build]`` lines), and the provider's
``status`` watches the container and removes it once the run is over.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import time
from typing import Any

from trainform.errors import ProviderError
from trainform.providers.base import TERMINAL, RunRequest, report
from trainform.remote.scripts import READ_SCRIPT
from trainform.runs.images import BUILD_PREFIX, TAIL_LINES

_FLUSH_SECONDS = 1.0
# A launcher that recorded its outcome exits at once; if its container is still running
# this long after, it is removed anyway.
_FINISH_SECONDS = 30.0

_APPEND_SCRIPT = "import sys\nopen(sys.argv[1], 'ab').write(sys.stdin.buffer.read())\n"
_IDS_SCRIPT = "import os\nprint('%d:%d' % (os.getuid(), os.getgid()))\n"


def docker_problems(facts: dict[str, Any], username: str) -> list[str]:
    """Why runs in containers cannot go to an ssh compute with these recorded ``facts``
    (per host); facts not gathered yet (not attached) find none."""
    problems = []
    for host, host_facts in facts.items():
        if isinstance(host_facts, dict) and host_facts.get("docker") is False:
            problems.append(
                f"the Docker engine on {host} is not usable by {username} (`docker info` "
                f"failed there): install docker on that host and add {username} to its "
                "docker group; the next plan reads the facts again"
            )
    return problems


def start(
    conn: Any,
    request: RunRequest,
    spec: dict[str, Any],
    *,
    rank: int | None,
    run_dir: str,
    lib: str,
    blobs: str,
    workdir: str,
    project: str,
) -> dict[str, Any]:
    """Ensure the image on ``conn``'s host, upload ``spec`` (its cache and slot folders
    pointed at the host's), create and start the run's container; returns the node's handle
    fields. Blocks through an image build. Raises ProviderError (a missing image, a failed
    build with its last lines, an engine that cannot be used).

    ``rank`` is the node's rank in a multi-node run (None for a one-node run): each node gets
    a container of its own, on the host's network, so that ranks meet at MASTER_ADDR (a
    pool host's address) as they would outside containers."""
    from docker.types import Mount

    from trainform.remote.docker import LABEL
    from trainform.remote.docker_ssh import engine_over, remote_call
    from trainform.runs.container import container_name
    from trainform.runs.images import container_options

    settings = spec["environment"]["docker"]
    client = engine_over(conn)
    image, built = _image(conn, client, settings, run_dir, project)
    image_id = str(image.id).split(":", 1)[-1][:12]
    cache_dir = f"{workdir}/envs/image-{image_id}"
    slots_dir = str((spec.get("slots") or {}).get("dir") or f"{workdir}/slots")
    spec = {**spec, "environment": {**spec["environment"], "cache_dir": cache_dir}}
    if spec.get("slots"):
        spec["slots"] = {**spec["slots"], "dir": slots_dir}
    conn.run(["mkdir", "-p", cache_dir, slots_dir])
    conn.upload_stream([("spec.json", json.dumps(spec).encode())], run_dir)
    user = conn.python(_IDS_SCRIPT).decode().strip()
    name = container_name(request.run_id) + (f"-node{rank}" if rank is not None else "")
    mounts = [
        Mount(path, path, type="bind", read_only=mode == "ro")
        for path, mode in [
            (run_dir, "rw"),
            (lib, "ro"),
            (blobs, "ro"),
            (cache_dir, "rw"),
            (slots_dir, "rw"),
        ]
    ]
    try:
        options = container_options(settings)
    except ValueError as exc:
        raise ProviderError(f"{request.address}: docker settings: {exc}") from None
    if rank is not None:
        options["network_mode"] = "host"
    container = remote_call(
        f"creating container {name} from image {settings['image']}",
        conn,
        client.containers.create,
        image.id,
        command=["python3", f"{lib}/launcher.py", run_dir],
        name=name,
        labels={LABEL: "1", "trainform.project": project, "trainform.run_id": request.run_id},
        user=user,
        working_dir=run_dir,
        environment={"HOME": "/tmp", "TRAINFORM_IMAGE": settings["image"]},
        mounts=mounts,
        init=True,
        detach=True,
        **options,
    )
    try:
        remote_call(
            f"starting the launcher in image {settings['image']} (it needs python3 on its PATH)",
            conn,
            container.start,
        )
    except ProviderError:
        with contextlib.suppress(Exception):
            container.remove(force=True)
        raise
    running = (
        f"[trainform] running in container {name} (image {settings['image']}) on "
        f"{conn.target.endpoint}"
    )
    _append(conn, run_dir, running + "\n")
    node = {"container": name, "image": settings["image"]}
    if built:  # the build's lines were shown live: following the log starts after them
        report(running)
        size = conn.run(["wc", "-c", f"{run_dir}/output.log"])[1].split()[0]
        node["log_shown"] = int(size)
    return node


def _append(conn: Any, run_dir: str, text: str) -> None:
    conn.python(_APPEND_SCRIPT, [f"{run_dir}/output.log"], input=text.encode("utf-8", "replace"))


def _image(
    conn: Any, client: Any, settings: dict[str, Any], run_dir: str, project: str
) -> tuple[Any, bool]:
    """The image to run on the host's engine, and whether it was built now: built if it has
    a build and its tag is missing there; a named image must be present (never pulled)."""
    from trainform.remote.docker_ssh import remote_call
    from trainform.runs.images import image_present

    name = settings["image"]
    build = settings.get("build")
    host = conn.target.endpoint
    built = False
    if not remote_call(f"looking up image {name}", conn, image_present, client, name):
        if build is None:
            raise ProviderError(
                f"image {name!r} is not on the Docker engine of {host}, and trainform does "
                "not pull from registries. Load or build it there first (docker load / docker "
                "build), or give the environment a dockerfile instead of an image.",
                host=host,
            )
        _build(conn, client, name, build, run_dir, project)
        built = True
    return remote_call(f"looking up image {name}", conn, client.images.get, name), built


def _build(
    conn: Any,
    client: Any,
    name: str,
    build: dict[str, Any],
    run_dir: str,
    project: str,
) -> None:
    """Build ``name`` on the host's engine from the local build context (sent through the
    SDK, as it was hashed), its output appended to the run's log as ``[build]`` lines.
    Raises ProviderError with the last lines when the build fails."""
    from trainform.remote.docker import LABEL
    from trainform.runs.images import BuildLog, stream_build

    host = conn.target.endpoint
    first = f"{BUILD_PREFIX} building image {name} from {build['dockerfile']} on {host}"
    report(first)
    pending: list[str] = [first + "\n"]
    flushed = time.monotonic()

    def flush() -> None:
        nonlocal flushed
        if pending:
            _append(conn, run_dir, "".join(pending))
            pending.clear()
        flushed = time.monotonic()

    def write(line: str) -> None:
        report(line.rstrip("\n"))  # live on the terminal; the run's log gets them in batches
        pending.append(line)
        if time.monotonic() - flushed > _FLUSH_SECONDS:
            flush()

    log = BuildLog(write)
    labels = {LABEL: "1", "trainform.project": project}
    try:
        error = stream_build(client.api, name, build, labels, log)
    except Exception as exc:  # the SSH channel or the HTTP stream broke
        lost = not conn.is_alive()
        error = f"the SSH connection was lost ({exc})" if lost else f"{type(exc).__name__}: {exc}"
    message = log.failure(error, f" on {host}") if error else ""
    if not error:
        log.feed("\n")
        pending.append(f"{BUILD_PREFIX} built image {name}\n")
    with contextlib.suppress(ProviderError):
        flush()
    if error:
        raise ProviderError(message, host=host)


def _container(conn: Any, name: str) -> Any:
    """The run's container on the host's engine, or None if it is gone."""
    from docker.errors import NotFound

    from trainform.remote.docker_ssh import engine_over, remote_call

    client = engine_over(conn)

    def get() -> Any:
        try:
            return client.containers.get(name)
        except NotFound:
            return None

    return remote_call(f"looking up container {name}", conn, get)


def _remove(conn: Any, container: Any) -> None:
    from docker.errors import NotFound

    from trainform.remote.docker_ssh import remote_call

    def remove() -> None:
        with contextlib.suppress(NotFound):
            container.remove(force=True)

    remote_call(f"removing container {container.name}", conn, remove)


def node_status(conn: Any, node: dict[str, Any]) -> dict[str, Any]:
    """The status of a run in a container: ``status.json`` from the host, with liveness from
    the container. Once the run is over its container is removed (the status is reported as
    final only then); a container that ended (or vanished) without an outcome makes the run
    ``lost``. Idempotent."""
    status = read_remote_status(conn, node["run_dir"])
    container = _container(conn, node["container"])
    state = (container.attrs.get("State") or {}) if container is not None else {}
    running = state.get("Status") in ("created", "running", "restarting", "paused")
    if status.get("status") in TERMINAL:
        if container is not None and running and not _finished_long_ago(status):
            return {**status, "status": "running", "message": "removing the container"}
        if container is not None:
            _remove(conn, container)
        return status
    if running:
        return status
    status = read_remote_status(conn, node["run_dir"])  # it may have finished meanwhile
    if status.get("status") in TERMINAL:
        if container is not None:
            _remove(conn, container)
        return status
    if container is None:
        why = f"the container {node['container']} was removed while the run was going"
    else:
        if state.get("OOMKilled"):
            why = f"the container {node['container']} ran out of memory"
        else:
            why = (
                f"the container {node['container']} exited with code "
                f"{state.get('ExitCode')} before the launcher recorded an outcome"
            )
        lines = _container_tail(container)
        if lines:
            why += f"; its last lines:\n{lines}"
        _remove(conn, container)
    return {**status, "status": "lost", "message": why}


def read_remote_status(conn: Any, run_dir: str) -> dict[str, Any]:
    """A run folder's ``status.json`` on the host (``{}`` when absent or not a JSON object;
    read with a size limit, since the host's bytes are not trusted)."""
    data = conn.python(READ_SCRIPT, [f"{run_dir}/status.json", "0", str(1 << 24)])
    try:
        status = json.loads(data) if data.strip() else {}
    except ValueError:
        status = {}
    return status if isinstance(status, dict) else {}


def _finished_long_ago(status: dict[str, Any]) -> bool:
    try:
        finished = datetime.datetime.fromisoformat(str(status.get("finished")))
    except ValueError:
        return True
    now = datetime.datetime.now(datetime.timezone.utc)
    if finished.tzinfo is None:
        finished = finished.replace(tzinfo=datetime.timezone.utc)
    return (now - finished).total_seconds() > _FINISH_SECONDS


def _container_tail(container: Any) -> str:
    with contextlib.suppress(Exception):
        data = container.logs(tail=TAIL_LINES)
        return str(data.decode("utf-8", "replace").strip())
    return ""


def cancel(conn: Any, node: dict[str, Any]) -> None:
    """SIGTERM to the container (docker-init forwards it to the launcher, which stops its
    process group and records ``canceled``); a container that is no longer running is
    removed. Returns at once; idempotent."""
    from trainform.remote.docker import is_not_found

    container = _container(conn, node["container"])
    if container is None:
        return
    if (container.attrs.get("State") or {}).get("Status") == "running":
        try:
            container.kill(signal="SIGTERM")
        except Exception as exc:
            if not is_not_found(exc) and "is not running" not in str(exc):
                raise
        return
    _remove(conn, container)


def remove_leftover(conn: Any, node: dict[str, Any]) -> None:
    """Remove the run's container if it is still there (idempotent)."""
    container = _container(conn, node["container"])
    if container is not None:
        _remove(conn, container)
