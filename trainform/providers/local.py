"""The local machine as a compute target (``compute "x" { type = "local" }``)."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import threading
from typing import Any, ClassVar

from trainform.config.schema import Attribute, BlockSchema
from trainform.providers.base import RUNS, Observed, Provider, ProviderContext, ResourceState


def gather_local_facts() -> dict[str, Any]:
    """Facts about this machine: hostname, OS, CPUs, memory, Python, GPUs (via nvidia-smi)."""
    uname = platform.uname()
    memory = 0
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
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
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return {"python": os.path.realpath(exe), "python_version": out}


def _has_os_release() -> bool:
    return os.path.exists("/etc/os-release") or os.path.exists("/usr/lib/os-release")


def _gpus() -> list[dict[str, Any]]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
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


class LocalComputeProvider(Provider):
    """Runs work on the machine trainform runs on. Attaching gathers facts; nothing is
    created, so detaching removes nothing."""

    name = "local"
    kind = "compute"
    capabilities = frozenset({RUNS})
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
                description="Where runs execute (default `.trainform/local` beside the configuration).",
            ),
            "facts": Attribute("map", computed=True, description="Facts gathered at attach/refresh."),
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
