"""Which logging libraries a run's environment has: asked of its own interpreter, and for a
virtualenv trainform built (whose packages never change) asked once and kept in it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mlflow_envs import interpreter

from trainform.capture import detect


def test_the_interpreter_says_which_libraries_it_has(tmp_path: Path) -> None:
    found = detect(str(interpreter("mlflow3-skinny")), {}, tmp_path)
    assert found["mlflow-skinny"] and found["mlflow-skinny"].startswith("3.")
    assert found["mlflow"] is None and found["azureml-core"] is None
    assert detect(str(tmp_path / "no-python"), {}, tmp_path) == {}


def test_a_built_environments_answer_is_kept_and_reused_while_pythonpath_is_the_same(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "venv" / "trainform-capture.json"
    cache.parent.mkdir()
    env = {"PYTHONPATH": "/lib/a"}
    first = detect(sys.executable, env, tmp_path, cache)
    assert set(first) == {"mlflow", "mlflow-skinny", "azureml-core"}
    assert json.loads(cache.read_text()) == {"pythonpath": "/lib/a", "found": first}
    # No interpreter is started for the same PYTHONPATH: even a missing one answers.
    assert detect(str(tmp_path / "no-python"), env, tmp_path, cache) == first
    # Another PYTHONPATH may bring other libraries: asked again.
    assert detect(str(tmp_path / "no-python"), {"PYTHONPATH": "/lib/b"}, tmp_path, cache) == {}
    cache.write_text("[not what was kept]")
    assert detect(sys.executable, env, tmp_path, cache) == first
    assert sorted(p.name for p in cache.parent.iterdir()) == [cache.name]
