"""The local machine as a compute target (``compute "x" { type = "local" }``)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, ClassVar

from trainform.config.schema import Attribute, BlockSchema
from trainform.errors import ProviderError
from trainform.providers.base import (
    DOCKER,
    RUNS,
    TERMINAL,
    Handle,
    Observed,
    Provider,
    ProviderContext,
    ResourceState,
    RunRequest,
)
from trainform.remote.scripts import STATUS_SCRIPT
from trainform.runs.results import judge_liveness
from trainform.state.locking import process_alive, process_start_time


def gather_local_facts() -> dict[str, Any]:
    """Facts about this machine: hostname, OS, CPUs, memory, Python, GPUs (via nvidia-smi)."""
    uname = platform.uname()
    memory = 0
    with contextlib.suppress(ValueError, OSError, AttributeError):
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "hostname": socket.gethostname(),
        "os": uname.system.lower(),
        "os_release": platform.freedesktop_os_release().get("PRETTY_NAME", "")
        if hasattr(platform, "freedesktop_os_release") and _has_os_release()
        else "",
        "kernel": uname.release,
        "architecture": uname.machine,
        "cpus": os.cpu_count() or 1,
        "memory_bytes": memory,
        **_python(),
        "gpus": _gpus(),
    }


def _python() -> dict[str, str]:
    """The python3 a run would get from PATH (not trainform's own interpreter)."""
    exe = shutil.which("python3")
    if exe is None:
        return {"python": "", "python_version": ""}
    try:
        out = subprocess.run(
            [exe, "-I", "-S", "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return {"python": os.path.realpath(exe), "python_version": out}


def read_from(path: Path, offset: int, limit: int = 1 << 20) -> tuple[bytes, int]:
    """Up to ``limit`` bytes of a growing file from ``offset`` on, and the next offset."""
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read(limit)
    except FileNotFoundError:
        return b"", offset
    return data, offset + len(data)


def _has_os_release() -> bool:
    return os.path.exists("/etc/os-release") or os.path.exists("/usr/lib/os-release")


def _gpus() -> list[dict[str, Any]]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[0].isdigit():
            mem = int(parts[2]) if parts[2].isdigit() else 0
            gpus.append({"index": int(parts[0]), "name": parts[1], "memory_mib": mem})
    return gpus


def start_detached(
    request: RunRequest, run_dir: Path, argv: list[str], err_name: str
) -> subprocess.Popen[bytes]:
    """Mark the run queued and start ``python argv... RUN_DIR`` in its own session (it
    outlives trainform), its stderr into ``run_dir/err_name``, its environment
    :func:`launcher_environ`."""
    from trainform.runs.launcher import write_status
    from trainform.runs.shipping import discard_secrets

    try:
        write_status(run_dir, status="queued", host=socket.gethostname())
        with (run_dir / err_name).open("ab") as err:
            return subprocess.Popen(
                [sys.executable, *argv, str(run_dir)],
                cwd=run_dir,
                env=launcher_environ(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
                close_fds=True,
            )
    except OSError as exc:
        discard_secrets(run_dir)
        raise start_failed(request, run_dir, exc) from None


def launcher_environ() -> dict[str, str]:
    """This process's environment without the variable values given to trainform
    (``TRAINFORM_VAR_*``, ``TF_VAR_*``), for the launcher or container supervisor it starts.
    The launcher scrubs the run's own environment further, but a run could still read its
    launcher's in ``/proc/PID/environ``. trainform's settings (``TRAINFORM_LAUNCHER_CGROUP``)
    stay: they are meant for the launcher."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("TRAINFORM_VAR_", "TF_VAR_"))}


def start_failed(request: RunRequest, run_dir: Path, exc: OSError) -> ProviderError:
    return ProviderError(
        f"{request.address}: cannot start the run in {run_dir}: {exc}",
        address=request.address,
        host=socket.gethostname(),
    )


class LocalComputeProvider(Provider):
    """Runs work on the machine trainform runs on, directly or (for an environment with a
    ``docker`` block) in a container on its Docker engine. Attaching gathers facts; nothing
    is created, so detaching removes nothing."""

    name = "local"
    kind = "compute"
    capabilities = frozenset({RUNS, DOCKER})
    parallel_reads = False
    verbs: ClassVar[dict[str, str]] = {"create": "attach", "delete": "detach"}
    schema = BlockSchema(
        attributes={
            "description": Attribute(description="Free text."),
            "tags": Attribute("map(string)", default={}, description="Labels."),
            "max_concurrent_runs": Attribute(
                "number", default=1, description="Runs allowed at once on this machine."
            ),
            "workdir": Attribute(
                force_new=True,
                path="root",
                description="Where runs execute (default `.trainform/local` beside the configuration).",
            ),
            "facts": Attribute(
                "map", computed=True, description="Facts gathered at attach/refresh."
            ),
            "workdir_path": Attribute(computed=True, description="Absolute path of the workdir."),
        },
        description="The local machine.",
    )

    def __init__(self, context: ProviderContext) -> None:
        super().__init__(context)
        self._facts: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def facts(self) -> dict[str, Any]:
        # Facts are the same for every local compute block; gather them once per command.
        with self._lock:
            if self._facts is None:
                self._facts = gather_local_facts()
            return self._facts

    def validate(self, address: str, desired: dict[str, Any]) -> list[str]:
        n = desired.get("max_concurrent_runs")
        if isinstance(n, (int, float)) and n < 1:
            return ["max_concurrent_runs must be at least 1"]
        return []

    def launcher_here(self, compute: dict[str, Any]) -> bool:
        return True

    def _observed(self, desired: dict[str, Any]) -> Observed:
        workdir = desired.get("workdir") or str(self.context.data_dir / "local")
        return {"facts": self.facts(), "workdir_path": os.path.abspath(workdir)}

    def read(self, resource: ResourceState) -> Observed | None:
        return self._observed(resource.attributes)

    def create(self, address: str, desired: dict[str, Any]) -> Observed:
        return self._observed(desired)

    def update(
        self, address: str, desired: dict[str, Any], prior: ResourceState, changed: list[str]
    ) -> Observed:
        return self._observed(desired)

    def delete(self, prior: ResourceState) -> None:
        return None

    # -- running work
    def submit(self, request: RunRequest) -> Handle:
        from trainform.runs.shipping import install_lib, write_spec

        workdir = Path(str(request.compute.get("workdir_path") or self.context.data_dir / "local"))
        if request.spec["environment"].get("docker"):
            from trainform.providers import containers

            return containers.submit(request, workdir, self.context.config_dir.resolve())
        run_dir = workdir / "runs" / request.run_id
        try:
            run_dir.mkdir(parents=True)
            lib = install_lib(workdir / "lib")
            write_spec(
                run_dir, request, blob_dir=request.blob_dir, lib_dir=lib, cache_dir=workdir / "envs"
            )
        except OSError as exc:
            raise start_failed(request, run_dir, exc) from None
        proc = start_detached(request, run_dir, [str(lib / "launcher.py")], "launcher.err")
        return {
            "run_dir": str(run_dir),
            "launcher_pid": proc.pid,
            "launcher_start": process_start_time(proc.pid),
        }

    def expected_handle(self, request: RunRequest) -> Handle | None:
        """``WORKDIR/runs/RUN_ID``, where the launcher writes its ``status.json`` (None for a
        run in a container)."""
        if request.spec["environment"].get("docker"):
            return None
        workdir = Path(str(request.compute.get("workdir_path") or self.context.data_dir / "local"))
        return {"run_dir": str(workdir / "runs" / request.run_id), "launcher_pid": None}

    def status(self, handle: Handle) -> dict[str, Any]:
        from trainform.runs.launcher import read_status

        if "container" in handle:
            from trainform.providers import containers

            return containers.status(handle)
        run_dir = Path(handle["run_dir"])
        status = read_status(run_dir)
        if status.get("status") in TERMINAL:
            return status
        if not process_alive(int(handle["launcher_pid"]), str(handle.get("launcher_start", ""))):
            # it may have finished since the first read; the script also says whether the
            # command it started still runs
            out = subprocess.run(
                [sys.executable, "-c", STATUS_SCRIPT, str(run_dir), str(handle["launcher_pid"])],
                capture_output=True,
                check=False,
            ).stdout
            status = json.loads(out) if out.strip() else read_status(run_dir)
            group = bool(status.pop("group_alive", False))
            status.pop("launcher_alive", None)
            status = judge_liveness(status, False, group, f"pid {handle['launcher_pid']}")
        return status

    def logs(self, handle: Handle, offset: int, node: int = 0) -> tuple[bytes, int]:
        if node != 0:
            raise ProviderError(f"a local run has one node: no rank {node}")
        return read_from(Path(handle["run_dir"]) / "output.log", offset)

    def metrics(self, handle: Handle, offset: int) -> tuple[bytes, int]:
        return read_from(Path(handle["run_dir"]) / "metrics.jsonl", offset)

    def cancel(self, handle: Handle) -> None:
        """SIGTERM to the launcher, which stops every process of the run (grace period, then
        SIGKILL); returns at once. With the launcher gone (killed with SIGKILL), whatever the
        run left running is killed here, found as the launcher would find it (its cgroup,
        process group and launch marker): this blocks for a moment. Idempotent."""
        from trainform.runs.launcher import stop_leftovers

        if "container" in handle:
            from trainform.providers import containers

            return containers.cancel(handle)
        pid = int(handle["launcher_pid"])
        if process_alive(pid, str(handle.get("launcher_start", ""))):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            return
        stop_leftovers(Path(handle["run_dir"]))

    def fetch_outputs(self, handle: Handle, dest: Path) -> None:
        from trainform.runs.shipping import collect_run_folder

        collect_run_folder(Path(handle["run_dir"]), dest)
        if "container" in handle:  # its supervisor was killed: the container is ours to remove
            from trainform.providers import containers

            containers.remove_leftover(handle)
