"""Runs in containers on this machine's Docker engine, for compute that has the DOCKER
capability (local compute with an environment's ``docker`` block).

The run folder is prepared as for a local run; a detached host-side supervisor
(:mod:`trainform.runs.container`) builds or checks the image, then runs the launcher inside a
container with the run folder bind-mounted, so status, logs, metrics and outputs are read
from the same files as for a local run. Handles carry ``container`` (its name) and the
supervisor's pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

from trainform.providers.base import TERMINAL, Handle, RunRequest
from trainform.state.locking import process_alive, process_start_time

PROJECT_LABEL = "trainform.project"  # the configuration folder that created the object
RUN_LABEL = "trainform.run_id"


def is_container_run(handle: Handle) -> bool:
    return "container" in handle


def submit(request: RunRequest, workdir: Path, config_dir: Path) -> Handle:
    """Prepare the run folder under ``workdir/runs`` and start the supervisor detached;
    returns at once (the image is built afterwards, its output going to the run's log).
    Raises ProviderError if the folder cannot be written or the supervisor cannot start."""
    from trainform.providers.local import start_detached, start_failed
    from trainform.remote.docker import LABEL, user_spec
    from trainform.runs.container import PLAN_FILE, container_name, container_plan
    from trainform.runs.launcher import INPUTS_DIR
    from trainform.runs.shipping import full_spec, install_lib, split_secrets, store_secrets

    settings = request.spec["environment"]["docker"]
    run_dir = workdir / "runs" / request.run_id
    try:
        run_dir.mkdir(parents=True)
        lib = install_lib(workdir / "lib")
        # The supervisor replaces cache_dir with one keyed by the image id once it knows it.
        spec, secret = split_secrets(full_spec(request, request.blob_dir, lib, workdir / "envs"))
        if secret is not None:
            store_secrets(run_dir, secret)  # the launcher in the container reads it
        mounts = [(str(lib), "ro"), (str(request.blob_dir), "ro")]
        if spec.get("inputs"):
            # Placed here and bind-mounted read-only: root in the container cannot write them.
            spec["inputs"] = place_here(spec["inputs"], request.blob_dir, run_dir)
            if any(i.get("placed") for i in spec["inputs"]):
                mounts.append((str(run_dir / INPUTS_DIR), "ro"))
            mounts += [(str(i["path"]), "ro") for i in spec["inputs"] if "path" in i]
        _write_json(run_dir / "spec.json", spec)
        plan = container_plan(
            run_dir=run_dir,
            image=settings,
            launcher=lib / "launcher.py",
            mounts=mounts,
            envs_root=workdir / "envs",
            slots_dir=workdir / "slots",
            labels={
                LABEL: "1",
                PROJECT_LABEL: str(config_dir),
                RUN_LABEL: request.run_id,
            },
            user=user_spec(),
        )
        _write_json(run_dir / PLAN_FILE, plan)
    except OSError as exc:
        raise start_failed(request, run_dir, exc) from None
    proc = start_detached(request, run_dir, ["-m", "trainform.runs.container"], "supervisor.err")
    return {
        "run_dir": str(run_dir),
        "container": container_name(request.run_id),
        "image": settings["image"],
        "supervisor_pid": proc.pid,
        "supervisor_start": process_start_time(proc.pid),
    }


def place_here(inputs: list[dict[str, Any]], blob_dir: Path, run_dir: Path) -> list[dict[str, Any]]:
    """Place a run's inputs (linked to the blob store: the caller mounts them read-only)
    and return the spec's items for them, marked ``placed``. Raises OSError."""
    from trainform.runs.launcher import LauncherError, place_inputs

    linked = [i for i in inputs if "path" in i]  # used where they sit: the launcher's
    try:
        place_inputs([i for i in inputs if "path" not in i], blob_dir, run_dir, mounted=True)
    except LauncherError as exc:
        raise OSError(str(exc)) from None
    placed = [
        {"name": i["name"], "file": i.get("file"), "placed": True}
        for i in inputs
        if "path" not in i
    ]
    return placed + linked


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def _supervisor_alive(handle: Handle) -> bool:
    return process_alive(int(handle["supervisor_pid"]), str(handle.get("supervisor_start", "")))


def _container(handle: Handle) -> Any:
    """The run's container, or None if it does not exist (or the engine is unreachable:
    then the run cannot be followed either, and saying so is the caller's job)."""
    from trainform.remote.docker import connect, is_not_found

    client = connect(handle.get("engine"))
    try:
        return client.containers.get(handle["container"])
    except Exception as exc:
        if is_not_found(exc):
            return None
        raise


def status(handle: Handle) -> dict[str, Any]:
    """The run's status record. A final status is reported only once the supervisor has
    removed the container (until then the run shows as still going); ``lost`` when the
    supervisor ended without an outcome and no container is left running. No side effects."""
    from trainform.runs.launcher import read_status

    run_dir = Path(handle["run_dir"])
    current = read_status(run_dir)
    alive = _supervisor_alive(handle)
    if current.get("status") in TERMINAL:
        if alive:  # removing the container: a moment more
            return {
                **current,
                "status": "running" if current.get("started") else "preparing",
                "message": "removing the container",
            }
        return current
    if alive:
        return current
    current = read_status(run_dir)  # it may have finished between the two reads
    if current.get("status") in TERMINAL:
        return current
    container = _container(handle)
    if container is not None and container.status in ("created", "running", "restarting"):
        return current  # the supervisor was killed, but the run goes on
    current["status"] = "lost"
    current["message"] = current.get("container_gone") or (
        f"the container supervisor (pid {handle['supervisor_pid']}) ended without recording "
        "an outcome; see supervisor.err and supervisor.log in the run folder"
    )
    return current


def cancel(handle: Handle) -> None:
    """Stop the run: the supervisor forwards SIGTERM to the launcher (which stops its process
    group) and removes the container. Without a supervisor, the container is stopped and
    removed here (blocks up to the grace period). Idempotent."""
    if _supervisor_alive(handle):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(handle["supervisor_pid"]), signal.SIGTERM)
        return
    remove_leftover(handle)


def remove_leftover(handle: Handle) -> None:
    """Remove the run's container if its supervisor is gone and it is still there (a running
    one is stopped first, within the run's grace period: this blocks). Idempotent."""
    from trainform.remote.docker import api_call
    from trainform.runs.launcher import SPEC_FILE

    if _supervisor_alive(handle):
        return
    container = _container(handle)
    if container is None:
        return
    if container.status == "running":
        try:
            spec = json.loads((Path(handle["run_dir"]) / SPEC_FILE).read_text())
            grace = int(float(spec.get("grace_seconds") or 10))
        except (OSError, ValueError):
            grace = 10
        api_call("stopping container", handle.get("engine"), container.stop, timeout=grace)
    with contextlib.suppress(Exception):
        container.remove(force=True)
