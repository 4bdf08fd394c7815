"""A real MLflow tracking server for the tests (importable as `mlflow_server`, like `helpers`):
`mlflow server` from the .venv-mlflow3 environment (tests/mlflow_envs.py), on a free loopback
port, with a SQLite backend store and its artifact proxy (`--artifacts-destination`, served by
default since MLflow 2), once per test session (the `mlflow_server` fixture in conftest.py).

What trainform exported is read back with MLflow's own Python client, run by that
environment's python in a subprocess (:meth:`TrackingServer.read_back`). :class:`AuthProxy`
puts the server behind HTTP authentication, as a reverse proxy (nginx's ``auth_basic``, an
OAuth gateway) does in front of most shared MLflow servers: MLflow's own basic-auth app needs
Flask-WTF, which the test environment does not install.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mlflow_envs import interpreter

STARTUP_SECONDS = 180  # MLflow 3 imports a lot; on two shared cores that can take a while

# Everything about the runs of one experiment, as MLflow's client sees it (printed as JSON).
READ_BACK = r"""
import hashlib, json, sys, tempfile
from pathlib import Path
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

uri, name = sys.argv[1], sys.argv[2]
client = MlflowClient(uri)
experiment = client.get_experiment_by_name(name)
out = []
runs = client.search_runs(
    [experiment.experiment_id], run_view_type=ViewType.ALL, max_results=1000
) if experiment else []
for run in runs:
    rid = run.info.run_id
    active = run.info.lifecycle_stage == "active"

    def files(path=None):
        for f in client.list_artifacts(rid, path):
            yield from (files(f.path) if f.is_dir else [f.path])

    artifacts = {}
    if active and run.info.artifact_uri.startswith("mlflow-artifacts:"):
        with tempfile.TemporaryDirectory() as dst:
            for path in files():
                local = client.download_artifacts(rid, path, dst)
                artifacts[path] = hashlib.sha256(Path(local).read_bytes()).hexdigest()
    out.append({
        "id": rid,
        "experiment_id": experiment.experiment_id,
        "lifecycle": run.info.lifecycle_stage,
        "status": run.info.status,
        "start": run.info.start_time,
        "end": run.info.end_time,
        "artifact_uri": run.info.artifact_uri,
        "params": run.data.params,
        "tags": run.data.tags,
        "metrics": {
            key: [[m.step, m.value, m.timestamp] for m in client.get_metric_history(rid, key)]
            for key in run.data.metrics
        },
        "artifacts": artifacts,
    })
print(json.dumps(out))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env() -> dict[str, str]:
    """This environment without MLflow's or trainform's variables (a developer's
    MLFLOW_TRACKING_URI must not redirect a test)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TRAINFORM_"))}


@dataclass
class TrackingServer:
    uri: str
    root: Path
    python: Path
    process: subprocess.Popen[bytes]

    def read_back(self, experiment: str) -> list[dict[str, Any]]:
        """Every run (deleted ones too) of ``experiment``, read with MLflow's client."""
        proc = subprocess.run(
            [str(self.python), "-c", READ_BACK, self.uri, experiment],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return list(json.loads(proc.stdout.strip().splitlines()[-1]))

    def active(self, experiment: str) -> list[dict[str, Any]]:
        return [r for r in self.read_back(experiment) if r["lifecycle"] == "active"]

    def rest(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST one call of MLflow's REST API (to set up what a test needs)."""
        request = urllib.request.Request(
            f"{self.uri}/api/2.0/mlflow/{endpoint}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return dict(json.loads(response.read() or b"{}"))

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_server(root: Path) -> TrackingServer:
    """`mlflow server` on a free loopback port, data under ``root``; returns once /health
    answers. Skips (fails under CI=true) without the .venv-mlflow3 environment."""
    python = interpreter("mlflow3")
    port = free_port()
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(
        [
            str(python.parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=root,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its workers go with it when the group is stopped
    )
    server = TrackingServer(f"http://127.0.0.1:{port}", root, python, process)
    deadline = time.monotonic() + STARTUP_SECONDS
    while not _healthy(server.uri):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            tail = (root / "server.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"mlflow server did not start on port {port}:\n{tail}")
        time.sleep(0.5)
    return server


class AuthProxy:
    """A reverse proxy on a free loopback port that lets through to ``upstream`` only the
    requests carrying ``Authorization: <authorization>`` (401 otherwise), and records the
    Authorization header of every request it received."""

    def __init__(self, upstream: str, authorization: str) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.authorization = authorization
        self.seen: list[str | None] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                got = self.headers.get("Authorization")
                proxy.seen.append(got)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if got != proxy.authorization:
                    self._answer(401, b'{"error_code": "UNAUTHENTICATED"}', "application/json")
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("authorization", "host", "connection")
                }
                conn.request(self.command, self.path, body, headers)
                response = conn.getresponse()
                data = response.read()
                self._answer(
                    response.status, data, response.getheader("Content-Type", "text/plain")
                )
                conn.close()

            def _answer(self, status: int, data: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
