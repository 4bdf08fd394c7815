"""The MLflow export below the CLI: what a real `mlflow server` accepts (non-finite values
spelled as MLflow's JSON spells them; params, tags and requests past its limits cut, left out
or split, each with a note) read back with MLflow's own client; and what trainform does with
a server that answers nonsense (a web page, an endless body, a redirect, a hostile error
message, an id that is a path), which a real MLflow server cannot be made to send: those
answers come from a small stdlib HTTP server in this file.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from mlflow_server import TrackingServer

from trainform.runs.mlflow_export import EXPORTED_TAG, export_run, metric_entries
from trainform.runs.mlflow_rest import MlflowServer, MlflowServerError
from trainform.state.sqlite import SQLiteStateStore


def test_nonfinite_values_reach_mlflow_as_its_json_spells_them(
    mlflow_server: TrackingServer,
) -> None:
    notes: list[str] = []
    points = [
        {"name": "m", "step": 1, "value": None, "nonfinite": "nan", "time": 1.0},
        {"name": "m", "step": 2, "value": None, "nonfinite": "inf", "time": 2.0},
        {"name": "m", "step": 3, "value": None, "nonfinite": "-inf", "time": 3.0},
        {"name": "m", "step": 4, "value": float("nan"), "time": 4.0},
        {"name": "m", "step": 5, "value": float("-inf"), "time": 5.0},
        {"name": "m", "step": 6, "value": 1.5, "time": 6.0},
        {"name": "m", "step": 7, "value": None, "time": 7.0},  # no value at all
    ]
    entries = metric_entries(points, 0, notes)
    assert notes == ["metric 'm': 1 point(s) without a value not exported"]
    server = MlflowServer(mlflow_server.uri)
    experiment_id = server.experiment_id("nonfinite")
    run_id, _ = server.create_run(experiment_id, "r", 0, {"trainform.run_id": "nonfinite-1"})
    server.call("runs/log-batch", {"run_id": run_id, "metrics": entries})

    [got] = mlflow_server.read_back("nonfinite")
    history = got["metrics"]["m"]
    assert [(s, t) for s, _, t in history] == [(s, s * 1000) for s in range(1, 7)]
    values = [v for _, v, _ in history]
    top = 1.7976931348623157e308  # MLflow's SQL store keeps infinities as the largest float
    assert math.isnan(values[0]) and math.isnan(values[3])
    assert values[1:3] + values[4:] == [top, -top, -top, 1.5]


def test_entries_past_mlflows_limits_are_cut_split_or_left_out_with_a_note(
    mlflow_server: TrackingServer, tmp_path: Path
) -> None:
    store = SQLiteStateStore(tmp_path / "state.db")
    wide = "é" * 8000  # 48 KB of JSON each: 100 of them need several requests of < 1 MB
    store.put_run(
        {
            "id": "limits-1",
            "address": "run.limits",
            "workspace": "default",
            "experiment": "limits",
            "status": "timed_out",
            "fingerprint": "f" * 64,
            "created": "2026-01-01T00:00:00.000Z",
            "finished": "2026-01-01T00:01:00.000Z",
            "record": {
                "params": {"long": "x" * 7000, "bad?": 1, "ok": 2, "flag": True},
                "logged_tags": {
                    **{f"tag{i}": wide for i in range(100)},
                    EXPORTED_TAG: "bogus",  # trainform.* are trainform's own
                    "trainform.run_id": "someone-else",
                    "note": "n" * 9000,
                },
                "compute_address": "compute.box",
                "snapshot_id": "s" * 64,
            },
        }
    )
    store.put_metrics(
        "limits-1", [{"name": "m", "step": i, "value": i, "time": 1} for i in range(3)]
    )
    [run] = store.runs()
    server = MlflowServer(mlflow_server.uri)
    done = export_run(server, store, run)
    assert done.action == "exported" and done.params == 3 and done.metrics == 3
    assert sorted(done.notes) == sorted(
        [
            "param 'long' cut to MLflow's 6000 characters",
            "param 'bad?' not exported: MLflow takes only letters, digits, _ - . : / and "
            "spaces in names",
            "tag 'note' cut to MLflow's 8000 characters",
            "outputs not exported: no collected outputs folder on this machine (none recorded)",
        ]
    )

    [got] = mlflow_server.read_back("limits")
    assert got["status"] == "FAILED" and got["tags"]["trainform.status"] == "timed_out"
    assert (got["start"], got["end"]) == (1767225600000, 1767225660000)
    assert got["params"] == {"long": "x" * 6000, "ok": "2", "flag": "true"}
    assert all(got["tags"][f"tag{i}"] == wide for i in range(100))
    assert got["tags"]["note"] == "n" * 8000
    assert got["tags"][EXPORTED_TAG] == "complete"
    assert got["tags"]["trainform.run_id"] == "limits-1"
    assert got["tags"]["trainform.compute"] == "compute.box"
    assert [[s, v] for s, v, _ in got["metrics"]["m"]] == [[0, 0.0], [1, 1.0], [2, 2.0]]
    assert export_run(server, store, run).action == "unchanged"


# -- a server that answers nonsense ------------------------------------------------------------


Answer = Callable[[BaseHTTPRequestHandler], None]


class Scripted:
    """A stdlib HTTP server on a free loopback port that answers every request with
    ``answer`` and records each request's path and Authorization header."""

    def __init__(self, answer: Answer) -> None:
        self.seen: list[tuple[str, str | None]] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                scripted.seen.append((self.path, self.headers.get("Authorization")))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                answer(self)

            do_GET = do_POST = do_PUT = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def reply(status: int, body: bytes, **headers: str) -> Answer:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **headers}.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(body)

    return answer


@pytest.fixture
def scripted() -> Iterator[Callable[[Answer], Scripted]]:
    servers: list[Scripted] = []

    def start(answer: Answer) -> Scripted:
        servers.append(Scripted(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


TOKEN = {"MLFLOW_TRACKING_TOKEN": "tok-Hostile-42"}


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (
            reply(200, b"<html>a login page</html>", **{"Content-Type": "text/html"}),
            "experiments/get-by-name answered something that is not MLflow's JSON: is this "
            "an MLflow tracking server?",
        ),
        (
            reply(200, b'{"pad": "' + b"x" * (9 << 20) + b'"}'),
            "experiments/get-by-name answered more than 8388608 bytes",
        ),
        (
            reply(200, json.dumps({"experiment": {"experiment_id": "../../etc"}}).encode()),
            "answered '../../etc' as an id",
        ),
        (
            reply(200, json.dumps({"experiment": {"experiment_id": 7}}).encode()),
            "answered 7 as an id",
        ),
    ],
)
def test_nonsense_from_the_server_is_refused_naming_it(
    scripted: Callable[[Answer], Scripted], answer: Answer, said: str
) -> None:
    server = scripted(answer)
    with pytest.raises(MlflowServerError) as caught:
        MlflowServer(server.uri, TOKEN).experiment_id("x")
    assert str(caught.value).startswith(f"MLflow server {server.uri}: ")
    assert said in str(caught.value), str(caught.value)


def test_a_redirect_is_not_followed_so_the_credentials_go_nowhere_else(
    scripted: Callable[[Answer], Scripted],
) -> None:
    elsewhere = scripted(reply(200, b"{}"))
    server = scripted(reply(302, b"", Location=f"{elsewhere.uri}/steal"))
    with pytest.raises(MlflowServerError) as caught:
        MlflowServer(server.uri, TOKEN).experiment_id("x")
    assert (
        f"answered a redirect (HTTP 302) to '{elsewhere.uri}/steal', which is not followed"
        in str(caught.value)
    )
    assert server.seen[0][1] == "Bearer tok-Hostile-42"
    assert elsewhere.seen == []


def test_an_error_message_from_the_server_is_shown_inert_and_without_the_credentials(
    scripted: Callable[[Answer], Scripted],
) -> None:
    echo = json.dumps(
        {"error_code": "INTERNAL_ERROR", "message": "\x1b[2Jbad header Bearer tok-Hostile-42\n"}
    )
    server = scripted(reply(500, echo.encode()))
    uri = server.uri.replace("//", "//ann:pw-Hostile-7@")
    with pytest.raises(MlflowServerError) as caught:
        MlflowServer(uri, TOKEN).experiment_id("x")
    message = str(caught.value)
    assert message == (
        f"MLflow server {server.uri}: /api/2.0/mlflow/experiments/get-by-name failed "
        "(HTTP 500): INTERNAL_ERROR:  [2Jbad header Bearer *** "
    )
    assert caught.value.status == 500 and caught.value.uri == server.uri
    assert "pw-Hostile-7" not in message and "ann" not in message
