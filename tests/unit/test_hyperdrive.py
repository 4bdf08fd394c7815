"""The Azure ML CLI v1 HyperDrive file: the issue's example loads unchanged, the other
expressions and policies map as the CLI maps them, and bad fields are named in the error."""

from __future__ import annotations

import math

import pytest

from trainform.sweep.hyperdrive import HyperDriveConfig, load_hyperdrive
from trainform.sweep.policies import (
    BanditPolicy,
    MedianStoppingPolicy,
    NoTerminationPolicy,
    TruncationSelectionPolicy,
)
from trainform.sweep.space import Parameter, SearchSpace, SweepSpecError

EXAMPLE = (
    "sampling:\n"
    "    type: random # Supported options: Random, Grid, Bayesian\n"
    "    parameter_space:\n"
    "    - name: --penalty\n"
    "      expression: choice\n"
    "      values: [0.5, 1, 1.5]\n"
    "policy:\n"
    "    type: BanditPolicy # BanditPolicy, MedianStoppingPolicy, "
    "TruncationSelectionPolicy, NoTerminationPolicy\n"
    "    evaluation_interval: 1\n"
    "    slack_factor: 0.2\n"
    "primary_metric_name: Accuracy\n"
    "primary_metric_goal: Maximize\n"
    "max_total_runs: 8\n"
    "max_concurrent_runs: 2\n"
    "max_duration_minutes: 100\n"
)


def test_issue_example_loads_unchanged() -> None:
    config = load_hyperdrive(EXAMPLE)
    assert config == HyperDriveConfig(
        space=SearchSpace((Parameter("--penalty", "choice", {"values": [0.5, 1, 1.5]}),)),
        sampling="random",
        seed=None,
        policy="bandit",
        policy_args={"evaluation_interval": 1, "slack_factor": 0.2},
        primary_metric_name="Accuracy",
        primary_metric_goal="maximize",
        max_total_runs=8,
        max_concurrent_runs=2,
        max_duration_minutes=100,
    )
    assert config.build_policy() == BanditPolicy(slack_factor=0.2, evaluation_interval=1)
    sampler = config.build_sampler()
    values = [sampler.suggest(i) for i in range(30)]
    assert {v["--penalty"] for v in values if v} == {0.5, 1, 1.5}


def test_positional_values_for_every_expression() -> None:
    text = """
sampling:
  type: Bayesian
  seed: 42
  parameter_space:
  - {name: --lr, expression: loguniform, values: [-9, -2]}
  - {name: --momentum, expression: uniform, values: [0.5, 0.99]}
  - {name: --units, expression: quniform, values: [16, 256, 16]}
  - {name: --layers, expression: randint, values: [4]}
  - {name: --opt, expression: Choice, values: [[adam, sgd]]}
primary_metric_name: loss
primary_metric_goal: minimize
max_duration_minutes: 30
"""
    config = load_hyperdrive(text)
    assert config.sampling == "bayesian" and config.seed == 42
    assert config.primary_metric_goal == "minimize"
    assert config.max_total_runs is None and config.max_duration_minutes == 30
    assert config.policy == "none" and config.policy_name == "none"
    assert (
        config.sampling_algorithm == "bayesian" and config.build_policy() == NoTerminationPolicy()
    )
    assert [(p.name, p.distribution, p.args) for p in config.space.parameters] == [
        ("--lr", "loguniform", {"min": -9, "max": -2}),
        ("--momentum", "uniform", {"min": 0.5, "max": 0.99}),
        ("--units", "quniform", {"min": 16, "max": 256, "q": 16}),
        ("--layers", "randint", {"upper": 4}),
        ("--opt", "choice", {"values": ["adam", "sgd"]}),  # choice([a, b]) is choice(a, b)
    ]
    params = config.build_sampler().suggest(0)
    assert params is not None and math.exp(-9) <= params["--lr"] <= math.exp(-2)


def test_normal_family_and_named_arguments() -> None:
    text = """
sampling:
  type: random
  parameter_space:
  - {name: a, expression: normal, values: [0, 1]}
  - {name: b, expression: qnormal, values: [10, 2, 0.5]}
  - {name: c, expression: lognormal, values: [0, 0.5]}
  - {name: d, expression: qlognormal, values: [1, 0.5, 1]}
  - {name: e, expression: qloguniform, values: [0, 4, 2]}
  - {name: f, expression: uniform, min: 0.01, max: 0.1}
  - {name: g, expression: randint, upper: 10}
primary_metric_name: m
primary_metric_goal: Maximize
max_total_runs: 4
"""
    config = load_hyperdrive(text)
    args = {p.name: p.args for p in config.space.parameters}
    assert args == {
        "a": {"mu": 0, "sigma": 1},
        "b": {"mu": 10, "sigma": 2, "q": 0.5},
        "c": {"mu": 0, "sigma": 0.5},
        "d": {"mu": 1, "sigma": 0.5, "q": 1},
        "e": {"min": 0, "max": 4, "q": 2},
        "f": {"min": 0.01, "max": 0.1},
        "g": {"upper": 10},
    }


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (
            "type: MedianStoppingPolicy\n    evaluation_interval: 1\n    delay_evaluation: 5",
            MedianStoppingPolicy(1, 5),
        ),
        (
            "type: TruncationSelectionPolicy\n    truncation_percentage: 20\n"
            "    delay_evaluation: 5",
            TruncationSelectionPolicy(20, 1, 5),
        ),
        ("type: NoTerminationPolicy", NoTerminationPolicy()),
        ("type: banditpolicy\n    slack_amount: 0.05", BanditPolicy(slack_amount=0.05)),
    ],
)
def test_policies(policy: str, expected: object) -> None:
    text = EXAMPLE.replace(
        "type: BanditPolicy # BanditPolicy, MedianStoppingPolicy, TruncationSelectionPolicy, "
        "NoTerminationPolicy\n    evaluation_interval: 1\n    slack_factor: 0.2",
        policy,
    )
    assert load_hyperdrive(text).build_policy() == expected


def test_grid_over_choices() -> None:
    text = EXAMPLE.replace("type: random", "type: Grid")
    sampler = load_hyperdrive(text).build_sampler()
    assert [sampler.suggest(i) for i in range(4)] == [
        {"--penalty": 0.5},
        {"--penalty": 1},
        {"--penalty": 1.5},
        None,
    ]


def replaced(old: str, new: str) -> str:
    assert old in EXAMPLE
    return EXAMPLE.replace(old, new)


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        (
            replaced("max_total_runs: 8", "max_total_run: 8"),
            "max_total_run",
            'max_total_run: unknown field (did you mean "max_total_runs"?)',
        ),
        (
            replaced("expression: choice", "expression: chioce"),
            "sampling.parameter_space[0].expression",
            "parameter '--penalty': unknown expression 'chioce' (did you mean \"choice\"?)",
        ),
        (
            replaced("values: [0.5, 1, 1.5]", "values: []"),
            "sampling.parameter_space[0]",
            "choice needs at least one value",
        ),
        (
            replaced("expression: choice", "expression: uniform"),
            "sampling.parameter_space[0].values",
            "parameter '--penalty': uniform takes values [min, max], got 3 values",
        ),
        (
            replaced("values: [0.5, 1, 1.5]", "values: [2, 1]").replace("choice", "uniform"),
            "sampling.parameter_space[0]",
            "parameter '--penalty': uniform needs min < max (min 2, max 1)",
        ),
        (
            replaced("values: [0.5, 1, 1.5]", "values: [0, 1]\n      min: 0").replace(
                "choice", "uniform"
            ),
            "sampling.parameter_space[0]",
            "give uniform's arguments either as values [min, max] or by name, not both",
        ),
        (
            replaced("- name: --penalty\n", "- nmae: --penalty\n"),
            "sampling.parameter_space[0].nmae",
            'unknown field (did you mean "name"?)',
        ),
        (
            replaced("type: random", "type: grdi"),
            "sampling.type",
            "unknown sampling algorithm 'grdi' (did you mean \"grid\"?)",
        ),
        (
            replaced("type: random", "type: grid")
            .replace("expression: choice", "expression: uniform")
            .replace("values: [0.5, 1, 1.5]", "values: [0, 1]"),
            "sampling.parameter_space[0]",
            "grid sampling supports only choice parameters; '--penalty' is uniform",
        ),
        (
            replaced("type: random", "type: bayesian")
            .replace("expression: choice", "expression: normal")
            .replace("values: [0.5, 1, 1.5]", "values: [0, 1]"),
            "sampling.parameter_space[0]",
            "bayesian sampling supports choice, uniform, quniform, loguniform and randint",
        ),
        (
            replaced("    type: random # Supported options: Random, Grid, Bayesian\n", ""),
            "sampling.type",
            "required: Random, Grid or Bayesian",
        ),
        (
            replaced("slack_factor: 0.2", "slack_factr: 0.2"),
            "policy.slack_factr",
            'unknown field (did you mean "slack_factor"?)',
        ),
        (
            replaced("slack_factor: 0.2", "delay_evaluation: 5"),
            "policy.slack_factor",
            "bandit policy needs exactly one of slack_factor and slack_amount",
        ),
        (
            replaced("type: BanditPolicy", "type: HyperbandPolicy"),
            "policy.type",
            "unknown early-termination policy 'HyperbandPolicy'",
        ),
        (
            replaced("evaluation_interval: 1", "evaluation_interval: 0"),
            "policy.evaluation_interval",
            "evaluation_interval must be an integer >= 1, not 0",
        ),
        (
            replaced("primary_metric_goal: Maximize", "primary_metric_goal: Max"),
            "primary_metric_goal",
            "must be Maximize or Minimize, not 'Max'",
        ),
        (
            replaced("primary_metric_name: Accuracy\n", ""),
            "primary_metric_name",
            "required: the metric to optimise",
        ),
        (
            replaced("max_concurrent_runs: 2", "max_concurrent_runs: two"),
            "max_concurrent_runs",
            "must be a whole number >= 1, not 'two'",
        ),
        (
            replaced("max_total_runs: 8\n", "").replace("max_duration_minutes: 100\n", ""),
            "max_total_runs",
            "give max_total_runs, max_duration_minutes or both",
        ),
        ("sampling: [random]\n", "sampling", "must be a mapping, not list"),
        ("primary_metric_name: a\n", "sampling", "required (with type and parameter_space)"),
    ],
)
def test_bad_fields_are_named(text: str, field: str, message: str) -> None:
    with pytest.raises(SweepSpecError) as info:
        load_hyperdrive(text)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sampling: [\n", "not valid YAML at line 2"),
        ("", "the HyperDrive configuration is empty"),
        ("- a\n- b\n", "must be a mapping, not list"),
    ],
)
def test_not_a_hyperdrive_document(text: str, message: str) -> None:
    with pytest.raises(SweepSpecError) as info:
        load_hyperdrive(text)
    assert message in str(info.value)
