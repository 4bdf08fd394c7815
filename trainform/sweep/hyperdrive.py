"""The HyperDrive configuration file of the Azure ML CLI v1 (``az ml run submit-hyperdrive``),
read as it is.

The format::

    sampling:
        type: random                   # Random | Grid | Bayesian (any case)
        seed: 7                        # optional; a trainform extension
        parameter_space:
        - name: --penalty              # passed to the script as "--penalty VALUE"
          expression: choice
          values: [0.5, 1, 1.5]
        - name: --lr
          expression: loguniform
          values: [-9, -2]             # the expression's arguments in order, as the CLI does
    policy:
        type: BanditPolicy             # or MedianStoppingPolicy, TruncationSelectionPolicy,
        evaluation_interval: 1         #    NoTerminationPolicy (the default)
        slack_factor: 0.2              # slack_amount, delay_evaluation, truncation_percentage
    primary_metric_name: Accuracy
    primary_metric_goal: Maximize      # Maximize | Minimize (any case)
    max_total_runs: 8
    max_concurrent_runs: 2
    max_duration_minutes: 100

As in the CLI, ``values`` holds the expression's arguments in Azure ML's order: choice's
options (one nested list is taken as the list of options), ``randint: [upper]``,
``uniform``/``loguniform: [min, max]``, ``quniform``/``qloguniform: [min, max, q]``,
``normal``/``lognormal: [mu, sigma]``, ``qnormal``/``qlognormal: [mu, sigma, q]``. The same
arguments may instead be given by name (``min: 0.01``, ``max: 0.1``, ``upper: 10``, ...).

Every parameter reaches the script as an argument, as Azure ML passes them: a name with
dashes as written (``--penalty VALUE``), a name without as ``--NAME VALUE`` (``learning_rate``
-> ``--learning_rate VALUE``, what Azure ML's samples parse). See
:func:`trainform.sweep.controller.parameter_flags`.

Unlike the CLI, unknown fields are errors (a misspelt limit would otherwise be ignored).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from trainform.config.schema import did_you_mean
from trainform.sweep.policies import Policy, make_policy
from trainform.sweep.samplers import Sampler, check_sampling, make_sampler
from trainform.sweep.space import (
    ARGUMENT_NAMES,
    DISTRIBUTIONS,
    Parameter,
    SearchSpace,
    SweepSpecError,
)

_TOP_FIELDS = (
    "sampling",
    "policy",
    "primary_metric_name",
    "primary_metric_goal",
    "max_total_runs",
    "max_concurrent_runs",
    "max_duration_minutes",
)
_SAMPLING_FIELDS = ("type", "parameter_space", "seed")
_PARAMETER_FIELDS = ("name", "expression", *ARGUMENT_NAMES)
_POLICY_FIELDS = (
    "type",
    "evaluation_interval",
    "delay_evaluation",
    "slack_factor",
    "slack_amount",
    "truncation_percentage",
)


@dataclass(frozen=True)
class HyperDriveConfig:
    """A HyperDrive file's content. ``sampling`` is the algorithm: "random", "grid" or
    "bayesian"; ``policy`` is the policy's name: "bandit", "median_stopping",
    "truncation_selection" or "none", with ``policy_args`` the arguments the file gives;
    ``primary_metric_goal`` is "maximize" or "minimize". Limits are ``None`` where the file
    does not give them. ``build_policy()`` and ``build_sampler()`` make the objects."""

    space: SearchSpace
    sampling: str
    primary_metric_name: str
    primary_metric_goal: str
    seed: int | None = None
    policy: str = "none"
    policy_args: dict[str, Any] = field(default_factory=dict, hash=False)
    max_total_runs: int | None = None
    max_concurrent_runs: int | None = None
    max_duration_minutes: int | None = None

    @property
    def sampling_algorithm(self) -> str:
        """The same as ``sampling``."""
        return self.sampling

    @property
    def policy_name(self) -> str:
        """The same as ``policy``."""
        return self.policy

    def build_policy(self) -> Policy:
        """The early-termination policy the file describes."""
        return make_policy(self.policy, **self.policy_args)

    def build_sampler(self) -> Sampler:
        """A sampler for the file's algorithm, space, seed and goal."""
        return make_sampler(self.sampling, self.space, self.seed, self.primary_metric_goal)


def _fail(path: str, message: str) -> SweepSpecError:
    return SweepSpecError(f"{path}: {message}", field=path)


def _check_fields(path: str, mapping: dict[str, Any], known: tuple[str, ...]) -> None:
    for key in mapping:
        if key not in known:
            hint = did_you_mean(str(key), list(known))
            where = f"{path}.{key}" if path else str(key)
            raise _fail(
                where,
                "unknown field" + (f" ({hint})" if hint else f" (expected {', '.join(known)})"),
            )


def _mapping(path: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, f"must be a mapping, not {type(value).__name__}")
    return value


def _positive_int(path: str, value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _fail(path, f"must be a whole number >= 1, not {value!r}")
    return value


def _parameter(path: str, entry: Any) -> Parameter:
    entry = _mapping(path, entry)
    _check_fields(path, entry, _PARAMETER_FIELDS)
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise _fail(f"{path}.name", f"a parameter needs a name, got {name!r}")
    expression = entry.get("expression")
    if not isinstance(expression, str) or not expression:
        raise _fail(
            f"{path}.expression",
            f"parameter '{name}' needs an expression (one of {', '.join(DISTRIBUTIONS)})",
        )
    dist = expression.strip().lower()
    if dist not in DISTRIBUTIONS:
        hint = did_you_mean(dist, list(DISTRIBUTIONS))
        raise _fail(
            f"{path}.expression",
            f"parameter '{name}': unknown expression '{expression}'"
            + (f" ({hint})" if hint else f" (expected one of {', '.join(DISTRIBUTIONS)})"),
        )
    expected = DISTRIBUTIONS[dist]
    named = {k: v for k, v in entry.items() if k in ARGUMENT_NAMES and k != "values"}
    values = entry.get("values")
    args: dict[str, Any]
    if dist == "choice" or values is None:
        args = dict(named)
        if values is not None:
            if not isinstance(values, list):
                raise _fail(f"{path}.values", f"parameter '{name}': values must be a list")
            if len(values) == 1 and isinstance(values[0], list):
                values = values[0]  # choice([a, b]) is choice(a, b), as in the SDK
            args["values"] = values
    else:
        if named:
            raise _fail(
                path,
                f"parameter '{name}': give {dist}'s arguments either as values "
                f"[{', '.join(expected)}] or by name, not both",
            )
        if not isinstance(values, list) or len(values) != len(expected):
            got = f"{len(values)} values" if isinstance(values, list) else repr(values)
            raise _fail(
                f"{path}.values",
                f"parameter '{name}': {dist} takes values [{', '.join(expected)}], got {got}",
            )
        args = dict(zip(expected, values, strict=True))
    parameter = Parameter(name, dist, args)
    try:
        parameter.validate()
    except SweepSpecError as exc:
        raise _fail(path, str(exc)) from None
    return parameter


def load_hyperdrive(text: str) -> HyperDriveConfig:
    """Parse a HyperDrive YAML file's text. Raises :class:`SweepSpecError` whose message
    starts with the field at fault (``sampling.parameter_space[1].values: ...``) and whose
    ``field`` attribute is that path."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SweepSpecError(f"not valid YAML{where}: {problem}") from None
    if document is None:
        raise SweepSpecError("the HyperDrive configuration is empty")
    if not isinstance(document, dict):
        raise SweepSpecError(
            f"a HyperDrive configuration must be a mapping, not {type(document).__name__}"
        )
    _check_fields("", document, _TOP_FIELDS)

    if "sampling" not in document:
        raise _fail("sampling", "required (with type and parameter_space)")
    sampling = _mapping("sampling", document["sampling"])
    _check_fields("sampling", sampling, _SAMPLING_FIELDS)
    algorithm = sampling.get("type")
    if not isinstance(algorithm, str) or not algorithm:
        raise _fail("sampling.type", "required: Random, Grid or Bayesian")
    seed = sampling.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise _fail("sampling.seed", f"must be an integer, not {seed!r}")
    entries = sampling.get("parameter_space")
    if not isinstance(entries, list) or not entries:
        raise _fail("sampling.parameter_space", "required: a list of parameters")
    space = SearchSpace(
        tuple(_parameter(f"sampling.parameter_space[{i}]", e) for i, e in enumerate(entries))
    )
    try:
        algorithm = check_sampling(algorithm, space)
    except SweepSpecError as exc:
        path = "sampling.type"
        if exc.field in space.names:
            path = f"sampling.parameter_space[{space.names.index(exc.field)}]"
        raise _fail(path, str(exc)) from None

    policy_doc = document.get("policy")
    policy_doc = {} if policy_doc is None else _mapping("policy", policy_doc)
    _check_fields("policy", policy_doc, _POLICY_FIELDS)
    policy_type = policy_doc.get("type", "NoTerminationPolicy")
    policy_args = {k: v for k, v in policy_doc.items() if k != "type" and v is not None}
    try:
        policy = make_policy(policy_type, **policy_args)
    except SweepSpecError as exc:
        sub = "type" if exc.field == "policy" else exc.field
        raise _fail(f"policy.{sub}" if sub else "policy", str(exc)) from None

    metric = document.get("primary_metric_name")
    if not isinstance(metric, str) or not metric:
        raise _fail("primary_metric_name", f"required: the metric to optimise, got {metric!r}")
    goal = document.get("primary_metric_goal")
    if not isinstance(goal, str) or goal.strip().lower() not in ("maximize", "minimize"):
        raise _fail("primary_metric_goal", f"must be Maximize or Minimize, not {goal!r}")

    max_total_runs = _positive_int("max_total_runs", document.get("max_total_runs"))
    max_duration = _positive_int("max_duration_minutes", document.get("max_duration_minutes"))
    if max_total_runs is None and max_duration is None:
        raise _fail("max_total_runs", "give max_total_runs, max_duration_minutes or both")

    return HyperDriveConfig(
        space=space,
        sampling=algorithm,
        seed=seed,
        policy=policy.name,
        policy_args=policy_args,
        primary_metric_name=metric,
        primary_metric_goal=goal.strip().lower(),
        max_total_runs=max_total_runs,
        max_concurrent_runs=_positive_int(
            "max_concurrent_runs", document.get("max_concurrent_runs")
        ),
        max_duration_minutes=max_duration,
    )
