"""The Python environments the MLflow and Azure ML tests run scripts in (importable as
`mlflow_envs`). scripts/install-test-deps makes them beside the repository, once:

- ``.venv-mlflow2``: mlflow-skinny 2.x, scikit-learn and pandas (MLflow 2 inside runs);
- ``.venv-mlflow3``: mlflow 3.x in full (``mlflow server`` for the export tests, MLflow's own
  client reading back, scikit-learn for autolog);
- ``.venv-mlflow3-skinny``: mlflow-skinny 3.x alone (its default store needs sqlalchemy, which
  it lacks: the case trainform must handle without the user setting anything);
- ``.venv-azureml``: azureml-core 1.x (``Run.get_context()`` offline), with numpy < 1.24 and
  scikit-learn for Azure ML's own samples (tests/azureml_samples).

Runs use them as user-managed interpreters (``environment { python = ... user_managed = true }``).
A missing one skips the test locally and fails it under CI=true.
"""

from __future__ import annotations

from pathlib import Path

from helpers import unavailable

REPO = Path(__file__).resolve().parent.parent
ENVS = {
    "mlflow2": "mlflow-skinny 2.x",
    "mlflow3": "mlflow 3.x",
    "mlflow3-skinny": "mlflow-skinny 3.x",
    "azureml": "azureml-core",
}


def interpreter(name: str) -> Path:
    """The python of test environment ``name`` (a key of ENVS); skips (fails under CI=true)
    when scripts/install-test-deps has not made it."""
    python = REPO / f".venv-{name}" / "bin" / "python"
    if not (python.parent.parent / ".complete").is_file():
        unavailable(f"{python} is missing ({ENVS[name]}): run scripts/install-test-deps")
    return python
