"""Pure parts of the MLflow export: how entries are split into runs/log-batch requests (MLflow
documents at most 1000 metrics, 100 params or tags, and 1 MB per request, and trainform's
batches stay within the byte limit though today's server does not enforce it), how metric
points become MLflow's Metrics, and which URIs are taken and how they are shown."""

from __future__ import annotations

import json

import pytest

from trainform.runs.mlflow_export import MAX_REQUEST_BYTES, _batches, metric_entries
from trainform.runs.mlflow_rest import shown_uri, uri_problems


def test_batches_respect_the_count() -> None:
    items = [{"key": f"m{i}", "value": 1.0} for i in range(2500)]
    batches = list(_batches(items, 1000))
    assert [len(b) for b in batches] == [1000, 1000, 500]
    assert [i for b in batches for i in b] == items


def test_batches_respect_the_request_size() -> None:
    items = [{"key": f"t{i}", "value": "é" * 8000} for i in range(100)]  # 48 KB of JSON each
    batches = list(_batches(items, 100))
    assert len(batches) > 1
    assert all(len(json.dumps(b).encode()) < MAX_REQUEST_BYTES for b in batches)
    assert [i for b in batches for i in b] == items


def test_metric_points_become_mlflow_metrics_with_notes_for_what_cannot() -> None:
    notes: list[str] = []
    points = [
        {"name": "loss", "step": None, "value": 0.5, "time": 12.5},
        {"name": "loss", "step": 3, "value": 2, "time": None},
        {"name": "a//b", "step": 1, "value": 1.0, "time": 1.0},
        {"name": "a//b", "step": 2, "value": 1.0, "time": 1.0},
        {"name": "flag", "step": 1, "value": True, "time": 1.0},
        {"name": "x" * 251, "step": 1, "value": 1.0, "time": 1.0},
    ]
    assert metric_entries(points, 99_000, notes) == [
        {"key": "loss", "value": 0.5, "timestamp": 12_500, "step": 0},
        {"key": "loss", "value": 2.0, "timestamp": 99_000, "step": 3},
    ]
    assert notes == [
        "metric 'a//b' not exported: MLflow takes no name that reads as another path "
        "(//, /./, .., a leading /)",
        f"metric {'x' * 80!r} not exported: MLflow takes names of 1 to 250 characters",
        "metric 'flag': 1 point(s) without a value not exported",
    ]


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("http://bob:pw@mlflow.internal:5000/", "http://mlflow.internal:5000"),
        ("https://mlflow.example.com/prefix/?x=1#y", "https://mlflow.example.com/prefix"),
        ("http://[::1]:5000", "http://[::1]:5000"),
    ],
)
def test_a_uri_is_shown_without_credentials(uri: str, shown: str) -> None:
    assert shown_uri(uri) == shown
    assert uri_problems(uri) == []


def test_uris_that_are_not_a_tracking_servers_are_refused() -> None:
    assert uri_problems("sqlite:///mlflow.db") == [
        "'sqlite:///mlflow.db' is not an MLflow tracking server's URI: give "
        "http(s)://HOST[:PORT] (file and database stores are not servers)"
    ]
    assert uri_problems("http://host:port") == [
        "'http://host:port' is not a URI (Port could not be cast to integer value as 'port')"
    ]
    assert uri_problems("http://bob:pw@host", credentials=False) == [
        "'http://host': put no credentials in the URI (they would be written to state); set "
        "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN"
    ]
