"""The run history's newest-first order holds for runs submitted within one second (two
quick applies): `runs logs ADDRESS` and `runs show ADDRESS` take the latest, and a history
time to the second used to tie and fall back on the ids' order."""

from __future__ import annotations

import time
from pathlib import Path

from trainform.runs.history import record_run, shown_time, stamp
from trainform.state.sqlite import SQLiteStateStore


def test_runs_submitted_within_one_second_sort_newest_first(tmp_path: Path) -> None:
    store = SQLiteStateStore(tmp_path / "state.db")
    try:
        for run_id in ("zz-older", "aa-newer"):  # the ids' order is the other way round
            record_run(
                store,
                "run.big",
                "default",
                {"run_id": run_id, "status": "completed", "created": stamp()},
            )
            time.sleep(0.005)
        assert [r["id"] for r in store.runs("run.big")] == ["aa-newer", "zz-older"]
    finally:
        store.close()


def test_history_times_are_shown_to_the_second() -> None:
    assert shown_time("2026-12-03T10:00:01.234Z") == "2026-12-03T10:00:01Z"
    assert shown_time("2026-12-03T10:00:01Z") == "2026-12-03T10:00:01Z"  # recorded before
    assert shown_time(None) == ""
