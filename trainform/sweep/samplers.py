"""Samplers: which parameter values the next trial gets.

``make_sampler(algorithm, space, seed, goal)`` builds one of:

- ``random``: independent draws from each distribution. Trial *i*'s values depend only on
  the seed and *i*, so the same seed gives the same sequence, and a restarted controller
  that asks again for trial *i* gets the same values.
- ``grid``: every combination of ``choice`` parameters exactly once, in a fixed order (the
  last parameter varies fastest), then ``None``.
- ``bayesian``: Optuna's TPE sampler through its ask/tell interface. Optuna is imported only
  when a bayesian sampler is made, so importing this module stays cheap.

Samplers are not thread-safe; the sweep controller calls them from one thread.
"""

from __future__ import annotations

import math
import random
from typing import Any, Protocol

from trainform.config.schema import did_you_mean
from trainform.extras import missing, needs
from trainform.sweep.space import Parameter, SearchSpace, SweepSpecError, quantize

ALGORITHMS = ("random", "grid", "bayesian")
GOALS = ("maximize", "minimize")


class Sampler(Protocol):
    """Suggests parameter values for trials and learns from their results."""

    #: The number of distinct suggestions (a grid's size), or ``None`` when unbounded.
    total: int | None

    def suggest(self, trial_index: int) -> dict[str, Any] | None:
        """Values for trial ``trial_index`` (0-based, asked in increasing order), keyed by
        parameter name in declaration order; ``None`` when the sampler is exhausted."""
        ...

    def observe(self, params: dict[str, Any], value: float | None) -> None:
        """Record the final objective of a finished trial given ``params``. For a trial
        stopped early pass its best value so far; pass ``None`` for a trial that failed or
        ended without reporting. Parameters that were never suggested by this sampler (a
        trial recorded before a restart) are learnt from too where the sampler can."""
        ...


def _check_goal(goal: str) -> str:
    normal = goal.strip().lower() if isinstance(goal, str) else goal
    if normal not in GOALS:
        raise SweepSpecError(f"goal must be 'maximize' or 'minimize', not {goal!r}", field="goal")
    return str(normal)


class RandomSampler:
    """Independent draws, reproducible per trial index from the seed."""

    total: int | None = None

    def __init__(self, space: SearchSpace, seed: int | None) -> None:
        self.space = space
        # Without a seed, pick one now so that repeated suggest(i) calls still agree.
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2**63)

    def suggest(self, trial_index: int) -> dict[str, Any] | None:
        # A string seed is hashed with SHA-512 by random.Random: stable across processes.
        rng = random.Random(f"trainform-sweep:{self.seed}:{trial_index}")
        return self.space.sample(rng)

    def observe(self, params: dict[str, Any], value: float | None) -> None:
        """Random sampling does not learn."""


class GridSampler:
    """Every combination of the ``choice`` parameters once; the last parameter varies fastest."""

    def __init__(self, space: SearchSpace) -> None:
        for parameter in space.parameters:
            if parameter.distribution != "choice":
                raise SweepSpecError(
                    f"grid sampling supports only choice parameters; "
                    f"'{parameter.name}' is {parameter.distribution}",
                    field=parameter.name,
                )
        self.space = space
        self._values = [list(p.args["values"]) for p in space.parameters]
        self.total: int | None = math.prod(len(v) for v in self._values)

    def suggest(self, trial_index: int) -> dict[str, Any] | None:
        if trial_index < 0 or self.total is None or trial_index >= self.total:
            return None
        # Decode the index in mixed radix rather than materialising the whole product.
        picks: list[Any] = []
        rest = trial_index
        for values in reversed(self._values):
            rest, digit = divmod(rest, len(values))
            picks.append(values[digit])
        return dict(zip(self.space.names, reversed(picks), strict=True))

    def observe(self, params: dict[str, Any], value: float | None) -> None:
        """Grid sampling does not learn."""


BAYESIAN_DISTRIBUTIONS = ("choice", "uniform", "quniform", "loguniform", "randint")


class BayesianSampler:
    """Optuna's TPE sampler (seeded) over the supported distributions, through ask/tell.

    Mapping: ``choice`` → a categorical over the value indices; ``uniform`` → a float range;
    ``quniform`` → a stepped range over the multiples of ``q`` that
    ``round(uniform(min, max) / q) * q`` can produce (integers when min, max and q are);
    ``randint`` → integers 0..upper-1; ``loguniform`` → the exponent as a float range in
    [min, max], then ``exp``. Trials that are suggested but not yet observed are running
    trials to Optuna (TPE ignores them).
    """

    total: int | None = None

    def __init__(self, space: SearchSpace, seed: int | None, goal: str) -> None:
        try:
            import optuna
        except ImportError:
            raise SweepSpecError(needs("optuna", "bayesian sampling"), field="algorithm") from None

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        self.space = space
        self.goal = goal
        self._distributions = {p.name: self._distribution(p) for p in space.parameters}
        self.study = optuna.create_study(
            direction=(
                optuna.study.StudyDirection.MAXIMIZE
                if goal == "maximize"
                else optuna.study.StudyDirection.MINIMIZE
            ),
            sampler=optuna.samplers.TPESampler(seed=seed),
        )
        self._pending: list[tuple[dict[str, Any], Any]] = []

    def _distribution(self, parameter: Parameter) -> Any:
        optuna = self._optuna
        a = parameter.args
        dist = parameter.distribution
        if dist == "choice":
            return optuna.distributions.CategoricalDistribution(tuple(range(len(a["values"]))))
        if dist == "randint":
            return optuna.distributions.IntDistribution(0, a["upper"] - 1)
        if dist in ("uniform", "loguniform"):
            return optuna.distributions.FloatDistribution(float(a["min"]), float(a["max"]))
        if dist == "quniform":
            # The multiples of q that round(uniform(min, max) / q) * q can produce.
            q = a["q"]
            low, high = quantize(a["min"], q), quantize(a["max"], q)
            if all(isinstance(a[k], int) for k in ("min", "max", "q")):
                return optuna.distributions.IntDistribution(int(low), int(high), step=q)
            if low == high:
                return optuna.distributions.FloatDistribution(float(low), float(low))
            return optuna.distributions.FloatDistribution(float(low), float(high), step=float(q))
        raise SweepSpecError(
            "bayesian sampling supports choice, uniform, quniform, loguniform and randint; "
            f"'{parameter.name}' is {dist}",
            field=parameter.name,
        )

    def _to_user(self, internal: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for p in self.space.parameters:
            value = internal[p.name]
            if p.distribution == "choice":
                value = p.args["values"][value]
            elif p.distribution == "loguniform":
                value = math.exp(value)
            elif p.distribution == "quniform":
                value = quantize(value, p.args["q"])
            params[p.name] = value
        return params

    def _to_internal(self, params: dict[str, Any]) -> dict[str, Any] | None:
        internal: dict[str, Any] = {}
        for p in self.space.parameters:
            if p.name not in params:
                return None
            value = params[p.name]
            try:
                if p.distribution == "choice":
                    value = list(p.args["values"]).index(value)
                elif p.distribution == "loguniform":
                    value = math.log(value)
            except (ValueError, TypeError):
                return None
            internal[p.name] = value
        return internal

    def suggest(self, trial_index: int) -> dict[str, Any] | None:
        trial = self.study.ask(self._distributions)
        params = self._to_user(trial.params)
        self._pending.append((params, trial))
        return dict(params)

    def observe(self, params: dict[str, Any], value: float | None) -> None:
        for i, (pending_params, trial) in enumerate(self._pending):
            if pending_params == params:
                del self._pending[i]
                if value is None or not math.isfinite(value):
                    self.study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
                else:
                    self.study.tell(trial, float(value))
                return
        # Not suggested by this sampler (for example recorded before a restart): add it as
        # a finished trial if it lies in the space, so TPE still learns from it.
        internal = self._to_internal(params)
        if internal is None:
            return
        objective = None if value is None or not math.isfinite(value) else float(value)
        trial_state = self._optuna.trial.TrialState
        try:
            frozen = self._optuna.trial.create_trial(
                params=internal,
                distributions=self._distributions,
                value=objective,
                state=trial_state.FAIL if objective is None else trial_state.COMPLETE,
            )
        except ValueError:  # outside the space (the space changed): nothing to learn
            return
        self.study.add_trial(frozen)


def check_sampling(algorithm: str, space: SearchSpace) -> str:
    """The canonical name ("random", "grid" or "bayesian") of ``algorithm`` after checking
    that it can sample ``space``, without building a sampler (nor importing Optuna): for
    plan-time validation. Raises :class:`SweepSpecError` for an unknown algorithm, an
    invalid space, a non-choice parameter under grid, or a distribution bayesian sampling
    does not support."""
    name = algorithm.strip().lower() if isinstance(algorithm, str) else algorithm
    if name not in ALGORITHMS:
        hint = did_you_mean(str(name), list(ALGORITHMS))
        raise SweepSpecError(
            f"unknown sampling algorithm {algorithm!r}"
            + (f" ({hint})" if hint else f" (expected one of {', '.join(ALGORITHMS)})"),
            field="algorithm",
        )
    if name == "bayesian" and (problem := missing("optuna", "bayesian sampling")):
        raise SweepSpecError(problem, field="algorithm")
    space.validate()
    for parameter in space.parameters:
        if name == "grid" and parameter.distribution != "choice":
            raise SweepSpecError(
                f"grid sampling supports only choice parameters; "
                f"'{parameter.name}' is {parameter.distribution}",
                field=parameter.name,
            )
        if name == "bayesian" and parameter.distribution not in BAYESIAN_DISTRIBUTIONS:
            raise SweepSpecError(
                "bayesian sampling supports choice, uniform, quniform, loguniform and randint; "
                f"'{parameter.name}' is {parameter.distribution}",
                field=parameter.name,
            )
    return str(name)


def make_sampler(algorithm: str, space: SearchSpace, seed: int | None, goal: str) -> Sampler:
    """A sampler for ``algorithm`` ("random", "grid" or "bayesian", case-insensitive) over
    ``space``, checked as :func:`check_sampling` does. ``goal`` is "maximize" or "minimize"
    (case-insensitive); ``seed`` an integer or ``None``. Raises :class:`SweepSpecError`."""
    name = check_sampling(algorithm, space)
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise SweepSpecError(f"seed must be an integer, not {seed!r}", field="seed")
    goal = _check_goal(goal)
    if name == "random":
        return RandomSampler(space, seed)
    if name == "grid":
        return GridSampler(space)
    return BayesianSampler(space, seed, goal)
