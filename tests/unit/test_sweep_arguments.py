"""How a sweep's parameters reach a trial: which become flags (HyperDrive names with and
without dashes, parameter blocks, parameters the template places itself), how values are
written (as a run's arguments are), and the trial's attributes converted to their types."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainform.config.values import ParamMarkers
from trainform.errors import TrainformError
from trainform.runs import spec as runspec
from trainform.sweep.controller import (
    legacy_flags,
    parameter_flags,
    parameters_args,
    placed_parameters,
    trial_values,
)

param = ParamMarkers()


def test_hyperdrive_names_without_dashes_become_double_dash_flags() -> None:
    flags = parameter_flags(
        ["learning_rate", "--momentum", "-b"], {"script": "train.py"}, hyperdrive=True
    )
    assert flags == {"learning_rate": "--learning_rate", "--momentum": "--momentum", "-b": "-b"}


def test_block_names_without_dashes_are_placed_by_the_template_only() -> None:
    template = {"arguments": ["--lr", param["lr"]]}
    flags = parameter_flags(["lr", "batch", "--warmup"], template, hyperdrive=False)
    assert flags == {"lr": None, "batch": None, "--warmup": "--warmup"}
    # The rule of sweeps submitted before flags were recorded, for the same names.
    assert flags == legacy_flags(["lr", "batch", "--warmup"])


def test_a_parameter_the_template_places_is_not_added_again() -> None:
    template = {
        "command": ["python", "t.py", f"--lr={param['learning_rate']}"],
        "env": {"M": param["--momentum"]},
    }
    assert placed_parameters(template) == {"learning_rate", "--momentum"}
    flags = parameter_flags(["learning_rate", "--momentum", "wd"], template, hyperdrive=True)
    assert flags == {"learning_rate": None, "--momentum": None, "wd": "--wd"}


def test_values_are_written_as_run_arguments_are() -> None:
    params = {"learning_rate": 0.001, "--epochs": 10, "-s": 3.0, "fast": True, "opt": "adam"}
    flags = parameter_flags(list(params), {}, hyperdrive=True)
    assert parameters_args(params, flags) == [
        *("--learning_rate", "0.001", "--epochs", "10", "-s", "3"),
        *("--fast", "true", "--opt", "adam"),
    ]
    assert runspec.argument_strings([0.1, 10, 10.0, True, False, "x"]) == [
        *("0.1", "10", "10", "true", "false", "x")
    ]


def test_trial_values_convert_to_the_attribute_types() -> None:
    template = {
        "script": None,
        "command": ["python", "t.py", "--C", param["C"], "--fast", param["fast"], 3],
        "arguments": ["--n", param["n"]],
        "env": {"FAST": param["fast"], "NAME": f"run-{param['fast']}-{param['C']}"},
        "node_count": param["n"],
        "compute": {"address": "compute.local", "type": "local"},
    }
    params = {"C": 0.1, "fast": True, "n": 2.0}
    desired = trial_values(template, params)
    assert desired["command"] == ["python", "t.py", "--C", "0.1", "--fast", "true", "3"]
    assert desired["arguments"] == ["--n", 2.0]  # written when the launcher spec is made
    assert desired["env"] == {"FAST": "true", "NAME": "run-true-0.1"}
    assert desired["node_count"] == 2.0
    assert desired["compute"] == template["compute"]
    spec = runspec.launcher_spec("id", "sweep.s[0]", desired, Path("."))
    assert spec["command"] == desired["command"]
    assert spec["arguments"] == ["--n", "2"]


def test_trial_value_of_the_wrong_type_is_an_error() -> None:
    with pytest.raises(TrainformError, match="trial node_count: expected a number"):
        trial_values({"node_count": param["n"]}, {"n": "many"})


def test_command_numbers_and_strings_fingerprint_alike() -> None:
    base = {"compute": {"address": "compute.local", "type": "local"}}
    as_numbers = {**base, "command": ["python", "t.py", 10, 0.5, True]}
    as_strings = {**base, "command": ["python", "t.py", "10", "0.5", "true"]}
    assert runspec.fingerprint(as_numbers, "snap", Path(".")) == runspec.fingerprint(
        as_strings, "snap", Path(".")
    )
    spec = runspec.launcher_spec("id", "run.r", as_numbers, Path("."))
    assert spec["command"] == ["python", "t.py", "10", "0.5", "true"]
