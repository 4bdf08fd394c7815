"""Recording runs in the state's run history (which outlives the run resources)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from trainform.state.store import StateStore

# Kept in a run's history record; the handle says where the run lives on its target.
RECORD_KEYS = (
    "handle",
    "compute_provider",
    "compute_address",
    "workspace_path",
    "snapshot_id",
    "snapshot_files",
    "git",
    "exit_code",
    "message",
    "started",
    "outputs_path",
    "params",
    "metrics",
    "environment",
    "environment_hash",
    "node_count",
    "tags",
    "arguments",
    "upload",
    "logged_tags",
    "models",
    "attempts",
    "spark",
    "inputs",
    "outputs",
)

# What collecting a run adds to its record (runs.results.read_results).
RESULT_KEYS = ("outputs_path", "params", "metrics", "logged_tags", "models", "outputs")


def stamp() -> str:
    """The time now (UTC) as run and sweep history rows record it: to the millisecond, so
    that the rows of two applies within one second still sort newest first."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def shown_time(stamp_: str | None) -> str:
    """A history time in a table: to the second."""
    return stamp_[:19] + "Z" if stamp_ else ""


def run_computed(run: dict[str, Any]) -> dict[str, Any]:
    """A history row as the computed attributes of the run resource it describes (the
    inverse of :func:`record_run`)."""
    return {
        **run["record"],
        "run_id": run["id"],
        "status": run["status"],
        "experiment": run["experiment"],
        "fingerprint": run["fingerprint"],
        "created": run["created"],
        "finished": run["finished"],
    }


def record_run(
    store: StateStore,
    address: str,
    workspace: str,
    computed: dict[str, Any],
    results: dict[str, Any] | None = None,
) -> list[str]:
    """Insert or update the history row of the run described by ``computed`` (the run
    resource's computed attributes); with ``results``, also its metric points.

    A run recorded with its results has ended: if ``workspace`` sets
    ``mlflow_tracking_uri`` it is exported there now (blocking). Returns warnings for the
    caller to show: an export that failed, or what it left out; a failed export never
    raises."""
    existing = next((r for r in store.runs(address) if r["id"] == computed["run_id"]), None)
    record = dict(existing["record"]) if existing else {}
    record.update({k: computed[k] for k in RECORD_KEYS if k in computed})
    if results:
        record.update({k: results[k] for k in RESULT_KEYS if k in results})
    store.put_run(
        {
            "id": computed["run_id"],
            "address": address,
            "workspace": workspace,
            "experiment": computed.get("experiment"),
            "status": computed.get("status"),
            "fingerprint": computed.get("fingerprint"),
            "created": computed.get("created") or (existing or {}).get("created"),
            "finished": computed.get("finished"),
            "record": record,
        }
    )
    if results and results.get("points") is not None:
        store.put_metrics(computed["run_id"], results["points"])
    if not results:
        return []
    from trainform.runs.mlflow_export import mirror_run

    return mirror_run(store, workspace, address, computed["run_id"])


def workspace_of(attributes: dict[str, Any]) -> str:
    """The address of the workspace a run records into ("default" when none is set)."""
    ws = attributes.get("workspace")
    if isinstance(ws, dict) and isinstance(ws.get("address"), str):
        return str(ws["address"])
    return "default"
