"""What `runs compare` compares (trainform/cli/compare.py): which rows differ, a sweep
trial's hyperparameters as params, and whether a metric's best is its min or its max."""

from __future__ import annotations

import pytest

from trainform.cli.compare import comparison, goal_from_name, parse_goals
from trainform.errors import TrainformError


def run(run_id: str, params: dict | None = None) -> dict:
    return {
        "id": run_id,
        "address": "run.train",
        "status": "completed",
        "experiment": "tests",
        "record": {"params": params} if params is not None else {},
    }


def points(name: str, *values: float) -> list[dict]:
    return [{"name": name, "step": i, "value": v} for i, v in enumerate(values)]


@pytest.mark.parametrize(
    ("name", "goal"),
    [
        ("loss", "min"),
        ("val_loss", "min"),
        ("train/error_rate", "min"),
        ("perplexity", "min"),
        ("accuracy", "max"),
        ("Accuracy", "max"),
        ("val_acc", "max"),
        ("valAccuracy", "max"),
        ("eval/f1", "max"),
        ("top5", "max"),
        ("mean reward", "max"),
        ("accumulated_time", "min"),  # a word that starts like acc is not acc
    ],
)
def test_the_goal_follows_the_name(name: str, goal: str) -> None:
    assert goal_from_name(name) == goal


def test_goal_options() -> None:
    assert parse_goals(("loss=max", "acc=MIN", "a=b=maximize")) == {
        "loss": "max",
        "acc": "min",
        "a=b": "max",
    }
    for bad in ("loss", "loss=up", "=max"):
        with pytest.raises(TrainformError, match="NAME=min or NAME=max"):
            parse_goals((bad,))


def test_rows_that_differ_and_rows_that_do_not() -> None:
    runs = [run("a", {"lr": 0.1, "epochs": 10, "tag": "x"}), run("b", {"lr": 0.5, "epochs": 10})]
    data = comparison(
        runs,
        {"a": points("loss", 1.0, 0.4, 0.5), "b": points("loss", 1.0, 0.4, 0.5) + points("acc", 1)},
        {},
        {},
    )
    assert data["params"]["lr"] == {"values": [0.1, 0.5], "differs": True}
    assert data["params"]["epochs"] == {"values": [10, 10], "differs": False}
    assert data["params"]["tag"] == {"values": ["x", None], "differs": True}  # one lacks it
    loss = data["metrics"]["loss"]
    assert loss["goal"] == "min" and loss["goal_from"] == "name"
    assert loss["last"] == {"values": [0.5, 0.5], "differs": False}
    assert loss["best"] == {"values": [0.4, 0.4], "differs": False}
    assert loss["points"] == [3, 3]
    assert data["metrics"]["acc"]["best"] == {"values": [None, 1], "differs": True}
    assert [r["id"] for r in data["runs"]] == ["a", "b"]


def test_a_sweep_trial_shows_its_hyperparameters_and_its_objective_decides_the_goal() -> None:
    trials = {
        "t0": {
            "sweep": "tune-1",
            "index": 0,
            "params": {"lr": 0.01},
            "objective": {"metric": "loss", "goal": "maximize"},
        }
    }
    runs = [run("t0", {"lr": "logged", "seed": 1}), run("b", {"lr": 0.5, "seed": 1})]
    pts = {"t0": points("loss", 1.0, 3.0, 2.0), "b": points("loss", 2.0)}
    data = comparison(runs, pts, trials, {})
    assert data["params"]["lr"]["values"] == [0.01, 0.5]
    assert data["runs"][0]["sweep"] == {"id": "tune-1", "trial": 0}
    assert data["runs"][1]["sweep"] is None
    assert data["metrics"]["loss"]["goal"] == "max"
    assert data["metrics"]["loss"]["goal_from"] == "sweep"
    assert data["metrics"]["loss"]["best"]["values"] == [3.0, 2.0]
    # --goal wins over the sweep's objective
    data = comparison(runs, pts, trials, {"loss": "min"})
    assert data["metrics"]["loss"]["goal_from"] == "option"
    assert data["metrics"]["loss"]["best"]["values"] == [1.0, 2.0]


def test_non_finite_values_and_unknown_goals() -> None:
    runs = [run("a", {"x": float("nan")}), run("b", {"x": float("inf")})]
    pts = {"a": points("loss", float("nan"), 1.0), "b": points("loss", float("inf"))}
    data = comparison(runs, pts, {}, {})
    assert data["params"]["x"] == {"values": ["nan", "inf"], "differs": True}
    assert data["metrics"]["loss"]["last"]["values"] == [1.0, None]  # b has no finite value
    with pytest.raises(TrainformError, match="--goal acc: none of the runs has a metric 'acc'"):
        comparison(runs, pts, {}, {"acc": "max"})
