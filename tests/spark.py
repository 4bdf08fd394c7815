"""A real Spark standalone cluster for the tests (importable as `spark`, like `helpers` and
`slurm`): the master and one worker of the Spark distribution bundled in the `pyspark` wheel
from PyPI (installed by scripts/install-test-deps into `.venv-spark`), on free loopback ports,
with Debian's Java 17 (`default-jre-headless`), once per test session.

- `spark-class org.apache.spark.deploy.master.Master` and `...worker.Worker` run in the
  foreground as children of the test process (no `sbin/start-*.sh`: the wheel lacks them),
  with `SPARK_LOCAL_IP=127.0.0.1`, logs and the worker's folder in a temporary folder.
- The master's JSON status is `http://127.0.0.1:<ui>/json/` (alive workers, cores, memory,
  active and completed applications); an application is killed with a form POST to
  `/app/kill/` (id, terminate=true and, since Spark 4, the csrfToken its kill form carries).
- `SparkCluster.submit_env` is what a client needs: `SPARK_HOME` (the wheel's `pyspark`
  folder), `PATH` with its `bin`, `PYSPARK_PYTHON` (the `.venv-spark` interpreter, which has
  pyspark, on driver and executors alike).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import free_ports

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-spark"
START_TIMEOUT = 90.0  # seconds for the master to answer, then for the worker to register


def spark_python() -> Path:
    """The interpreter of `.venv-spark` (pyspark from PyPI)."""
    return VENV / "bin" / "python"


def spark_home() -> Path | None:
    """The Spark distribution inside the `pyspark` wheel, or None when it is not installed."""
    found = sorted(VENV.glob("lib/python3*/site-packages/pyspark/bin/spark-class"))
    return found[0].parent.parent if found else None


def missing() -> str:
    """Why the cluster cannot start here ("" when it can)."""
    if shutil.which("java") is None:
        return "java is not installed (Debian: default-jre-headless): run scripts/install-test-deps"
    if spark_home() is None:
        return "pyspark is not installed in .venv-spark: run scripts/install-test-deps"
    return ""


@dataclass
class SparkCluster:
    folder: Path
    home: Path
    port: int
    ui_port: int
    worker_ui_port: int
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def master(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    @property
    def ui(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    @property
    def submit_env(self) -> dict[str, str]:
        python = str(spark_python())
        return {
            "SPARK_HOME": str(self.home),
            "PATH": f"{self.home / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYSPARK_PYTHON": python,
            "PYSPARK_DRIVER_PYTHON": python,
            "SPARK_LOCAL_IP": "127.0.0.1",
        }

    def status(self) -> dict[str, Any]:
        """The master's JSON status (workers, apps): raises if it does not answer."""
        with urllib.request.urlopen(f"{self.ui}/json/", timeout=5) as answer:
            data: dict[str, Any] = json.load(answer)
        return data

    def kill(self, app_id: str) -> None:
        """Ask the master to kill an application, as its web UI's kill button does: Spark 4
        answers 403 without the page's CSRF token, so the token is read from the master's
        page first (each application's kill form carries one)."""
        with urllib.request.urlopen(f"{self.ui}/", timeout=10) as answer:
            page = answer.read(4 << 20).decode(errors="replace")
        found = re.search(r'name="csrfToken" value="([0-9A-Za-z]+)"', page)
        form = {"id": app_id, "terminate": "true"}
        if found:
            form["csrfToken"] = found.group(1)
        request = urllib.request.Request(
            f"{self.ui}/app/kill/", data=urllib.parse.urlencode(form).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10):
            pass

    def _spawn(self, name: str, argv: list[str]) -> None:
        env = {
            **os.environ,
            "SPARK_HOME": str(self.home),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOG_DIR": str(self.folder / "logs"),
            "SPARK_WORKER_DIR": str(self.folder / "work"),
            "SPARK_NO_DAEMONIZE": "1",
        }
        log = (self.folder / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            [str(self.home / "bin" / "spark-class"), *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # stop() ends the JVM and whatever it started
        )

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                if ready():
                    return
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"spark {name} exited with {proc.returncode}: "
                        + (self.folder / f"{name}.log").read_text(errors="replace")[-2000:]
                    )
            time.sleep(0.5)
        raise RuntimeError(f"spark: {what} within {START_TIMEOUT:.0f} s")

    def start(self) -> None:
        (self.folder / "work").mkdir(parents=True, exist_ok=True)
        self._spawn(
            "master",
            [
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--webui-port",
                str(self.ui_port),
            ],
        )
        self._wait(lambda: "workers" in self.status(), "the master did not answer")
        self._spawn(
            "worker",
            [
                "org.apache.spark.deploy.worker.Worker",
                "--host",
                "127.0.0.1",
                "--cores",
                "2",
                "--memory",
                "2g",
                "--webui-port",
                str(self.worker_ui_port),
                "--work-dir",
                str(self.folder / "work"),
                self.master,
            ],
        )
        self._wait(lambda: self.status().get("aliveworkers") == 1, "the worker did not register")

    def stop(self) -> None:
        for proc in reversed(list(self.processes.values())):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def start_cluster(folder: Path | None = None) -> SparkCluster:
    """Start a master and a worker on free loopback ports; the caller stops it."""
    home = spark_home()
    if home is None:
        raise RuntimeError(missing())
    port, ui_port, worker_ui_port = free_ports(3)
    cluster = SparkCluster(
        folder=folder or Path(tempfile.mkdtemp(prefix="trainform-spark-")),
        home=home,
        port=port,
        ui_port=ui_port,
        worker_ui_port=worker_ui_port,
    )
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def compute_block(cluster: SparkCluster | None, name: str = "spark", extra: str = "") -> str:
    """HCL of a spark compute for ``cluster`` (``None``: a ``local[2]`` master) with the
    wheel's Spark, drivers bound to loopback and no console progress bars; ``extra`` adds
    lines inside the block."""
    master = cluster.master if cluster is not None else "local[2]"
    ui = f'\n  master_ui  = "{cluster.ui}"' if cluster is not None else ""
    return f"""
compute "{name}" {{
  type       = "spark"
  master     = "{master}"{ui}
  spark_home = "{spark_home()}"
  env        = {{ SPARK_LOCAL_IP = "127.0.0.1" }}
  conf       = {{ "spark.ui.showConsoleProgress" = "false" }}
{extra}}}
"""


def environment_block(name: str = "py") -> str:
    """HCL of a user-managed environment: `.venv-spark`'s interpreter, which has pyspark
    (the driver's and, through PYSPARK_PYTHON, the executors')."""
    return f"""
environment "{name}" {{
  python       = "{spark_python()}"
  user_managed = true
}}
"""
