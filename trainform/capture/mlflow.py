"""MLflow inside runs: the launcher points MLflow at a tracking store in the run's folder and
reads it while the run runs. Standard library only, Python >= 3.8 (runs on targets).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from trainform.capture import Source, Stream


class MlflowStore(Source):
    """The run's MLflow file store, read as it grows."""

    def __init__(
        self, root: Path, outputs: Path, stream: Stream, note: Callable[[str], None]
    ) -> None:
        self.root = root
        self.outputs = outputs
        self.stream = stream
        self.note = note


def setup(
    env: dict[str, str],
    run_dir: Path,
    outputs: Path,
    experiment: str,
    version: str,
    stream: Stream,
    note: Callable[[str], None],
) -> MlflowStore | None:
    """Point MLflow (``version``) at a store inside ``run_dir`` through ``env``; None (and one
    note) when the user set MLFLOW_TRACKING_URI, which is then left alone."""
    return None
