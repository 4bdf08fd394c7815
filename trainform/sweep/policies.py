"""Early-termination policies: whether a trial that just reported its primary metric should
be stopped, and why.

A policy sees the whole sweep's history: every trial's (interval, value) reports in order,
running and finished trials alike. The interval is the report's step (or its 1-based count
when the script gives no steps; the controller normalises). As in Azure ML, a policy is
evaluated only at intervals that are multiples of ``evaluation_interval`` and not before
``delay_evaluation`` (``interval >= delay_evaluation``); at other intervals it never stops.

"Worse" means smaller when the goal is "maximize" and larger when it is "minimize". Policies
are pure: the same history gives the same answer, and nothing is recorded here.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from trainform.config.schema import did_you_mean
from trainform.sweep.space import SweepSpecError

History = dict[str, list[tuple[int, float]]]


class Policy(Protocol):
    """Decides, each time a trial reports the primary metric, whether to stop it."""

    name: ClassVar[str]

    def should_stop(self, trial_id: str, history: History, goal: str) -> tuple[bool, str]:
        """``(stop, reason)`` for ``trial_id``, whose latest report is the last item of
        ``history[trial_id]``. The reason names the values and the threshold compared
        (also when the trial is kept), for the sweep's record."""
        ...


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _maximize(goal: str) -> bool:
    normal = goal.strip().lower() if isinstance(goal, str) else goal
    if normal not in ("maximize", "minimize"):
        raise SweepSpecError(f"goal must be 'maximize' or 'minimize', not {goal!r}", field="goal")
    return normal == "maximize"


def _best(values: list[float], maximize: bool) -> float:
    return max(values) if maximize else min(values)


def _worse(a: float, b: float, maximize: bool) -> bool:
    """Whether ``a`` is strictly worse than ``b``."""
    return a < b if maximize else a > b


def _comparison(stop: bool, maximize: bool) -> str:
    """How the trial's value compares with the threshold, for the reason."""
    if stop:
        return "<" if maximize else ">"
    return ">=" if maximize else "<="


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_gating(policy: str, evaluation_interval: Any, delay_evaluation: Any) -> None:
    if not _is_int(evaluation_interval) or evaluation_interval < 1:
        raise SweepSpecError(
            f"{policy}: evaluation_interval must be an integer >= 1, not {evaluation_interval!r}",
            field="evaluation_interval",
        )
    if not _is_int(delay_evaluation) or delay_evaluation < 0:
        raise SweepSpecError(
            f"{policy}: delay_evaluation must be an integer >= 0, not {delay_evaluation!r}",
            field="delay_evaluation",
        )


def _gate(
    trial_id: str, history: History, goal: str, evaluation_interval: int, delay_evaluation: int
) -> tuple[bool, int, float] | str:
    """What every policy checks first: a reason not to evaluate now, or (maximize, the
    trial's latest interval, its best value so far)."""
    maximize = _maximize(goal)
    reports = history.get(trial_id) or []
    if not reports:
        return "no reports yet"
    interval = reports[-1][0]
    skipped = _not_evaluated(interval, evaluation_interval, delay_evaluation)
    if skipped:
        return skipped
    return maximize, interval, _best([v for i, v in reports if i <= interval], maximize)


def _not_evaluated(interval: int, evaluation_interval: int, delay_evaluation: int) -> str | None:
    """Why the policy is not evaluated at ``interval``, or ``None`` if it is."""
    if interval < delay_evaluation:
        return f"not evaluated at interval {interval} (delay_evaluation {delay_evaluation})"
    if interval % evaluation_interval:
        return (
            f"not evaluated at interval {interval} "
            f"(not a multiple of evaluation_interval {evaluation_interval})"
        )
    return None


def _describe(policy: object, name: str) -> str:
    fields = ", ".join(
        f"{f.name}={getattr(policy, f.name)!r}"
        for f in dataclasses.fields(policy)  # type: ignore[arg-type]
        if getattr(policy, f.name) is not None
    )
    return f"{name}({fields})"


@dataclass(frozen=True)
class BanditPolicy:
    """Stop a trial whose best value so far is worse than the best value of all trials (at
    intervals up to the current one) by more than the slack: below best / (1 + slack_factor)
    or best - slack_amount when maximising; above best * (1 + slack_factor) or
    best + slack_amount when minimising. Exactly one of the two slacks is given.

    The factor form assumes a metric of one sign (accuracy, loss), as Azure ML's does."""

    name: ClassVar[str] = "bandit"

    slack_factor: float | None = None
    slack_amount: float | None = None
    evaluation_interval: int = 1
    delay_evaluation: int = 0

    def __post_init__(self) -> None:
        if (self.slack_factor is None) == (self.slack_amount is None):
            raise SweepSpecError(
                "bandit policy needs exactly one of slack_factor and slack_amount",
                field="slack_factor",
            )
        for attr in ("slack_factor", "slack_amount"):
            value = getattr(self, attr)
            if value is not None and (not _is_number(value) or value < 0):
                raise SweepSpecError(
                    f"bandit policy: {attr} must be a number >= 0, not {value!r}", field=attr
                )
        _check_gating("bandit policy", self.evaluation_interval, self.delay_evaluation)

    def describe(self) -> str:
        return _describe(self, self.name)

    def should_stop(self, trial_id: str, history: History, goal: str) -> tuple[bool, str]:
        gated = _gate(trial_id, history, goal, self.evaluation_interval, self.delay_evaluation)
        if isinstance(gated, str):
            return False, gated
        maximize, interval, own_best = gated
        overall = _best(
            [v for trial in history.values() for i, v in trial if i <= interval], maximize
        )
        if self.slack_factor is not None:
            s = self.slack_factor
            if maximize:
                threshold, how = overall / (1 + s), f"{_fmt(overall)} / (1 + {_fmt(s)})"
            else:
                threshold, how = overall * (1 + s), f"{_fmt(overall)} * (1 + {_fmt(s)})"
        else:
            a = float(self.slack_amount or 0.0)
            if maximize:
                threshold, how = overall - a, f"{_fmt(overall)} - {_fmt(a)}"
            else:
                threshold, how = overall + a, f"{_fmt(overall)} + {_fmt(a)}"
        stop = _worse(own_best, threshold, maximize)
        op = _comparison(stop, maximize)
        return stop, (
            f"best {_fmt(own_best)} {op} bandit threshold {_fmt(threshold)} "
            f"(best of all trials {how}) at interval {interval}"
        )


@dataclass(frozen=True)
class MedianStoppingPolicy:
    """Stop a trial whose best value so far is worse than the median of the running averages
    (the mean of each trial's reports up to the interval) of all trials that reported at
    the current interval, itself included."""

    name: ClassVar[str] = "median_stopping"

    evaluation_interval: int = 1
    delay_evaluation: int = 0

    def __post_init__(self) -> None:
        _check_gating("median stopping policy", self.evaluation_interval, self.delay_evaluation)

    def describe(self) -> str:
        return _describe(self, self.name)

    def should_stop(self, trial_id: str, history: History, goal: str) -> tuple[bool, str]:
        gated = _gate(trial_id, history, goal, self.evaluation_interval, self.delay_evaluation)
        if isinstance(gated, str):
            return False, gated
        maximize, interval, own_best = gated
        averages = [
            statistics.fmean([v for i, v in trial if i <= interval])
            for trial in history.values()
            if any(i == interval for i, _ in trial)
        ]
        median = statistics.median(averages)
        stop = _worse(own_best, median, maximize)
        op = _comparison(stop, maximize)
        return stop, (
            f"best {_fmt(own_best)} {op} median {_fmt(median)} of the running averages "
            f"of {len(averages)} trials at interval {interval}"
        )


@dataclass(frozen=True)
class TruncationSelectionPolicy:
    """At each evaluated interval, rank the trials that reported at that interval by their
    value there, and stop the trial if it is among the lowest ``truncation_percentage``
    percent: the worst ``int(n * percentage / 100)`` of n trials (none when that is 0).
    Trials tied at the cut are kept."""

    name: ClassVar[str] = "truncation_selection"

    truncation_percentage: int
    evaluation_interval: int = 1
    delay_evaluation: int = 0

    def __post_init__(self) -> None:
        p = self.truncation_percentage
        if not _is_int(p) or not 1 <= p <= 99:
            raise SweepSpecError(
                f"truncation selection policy: truncation_percentage must be an integer "
                f"from 1 to 99, not {p!r}",
                field="truncation_percentage",
            )
        _check_gating(
            "truncation selection policy", self.evaluation_interval, self.delay_evaluation
        )

    def describe(self) -> str:
        return _describe(self, self.name)

    def should_stop(self, trial_id: str, history: History, goal: str) -> tuple[bool, str]:
        maximize = _maximize(goal)
        reports = history.get(trial_id) or []
        if not reports:
            return False, "no reports yet"
        interval = reports[-1][0]
        skipped = _not_evaluated(interval, self.evaluation_interval, self.delay_evaluation)
        if skipped:
            return False, skipped
        at_interval: dict[str, float] = {}
        for tid, trial in history.items():
            values = [v for i, v in trial if i == interval]
            if values:
                at_interval[tid] = values[-1]
        n = len(at_interval)
        cut = n * self.truncation_percentage // 100
        mine = at_interval[trial_id]
        better = sum(
            1 for tid, v in at_interval.items() if tid != trial_id and _worse(mine, v, maximize)
        )
        stop = cut > 0 and better >= n - cut
        where = (
            f"value {_fmt(mine)} at interval {interval} ranks {better + 1} of {n}; "
            f"the lowest {self.truncation_percentage}% is {cut} trial{'s' * (cut != 1)}"
        )
        return stop, where + (" (stopped)" if stop else " (kept)")


@dataclass(frozen=True)
class NoTerminationPolicy:
    """Every trial runs to the end."""

    name: ClassVar[str] = "none"

    def describe(self) -> str:
        return self.name

    def should_stop(self, trial_id: str, history: History, goal: str) -> tuple[bool, str]:
        _maximize(goal)
        return False, "no early termination policy"


_POLICIES: dict[str, type[Any]] = {
    "bandit": BanditPolicy,
    "banditpolicy": BanditPolicy,
    "median_stopping": MedianStoppingPolicy,
    "medianstoppingpolicy": MedianStoppingPolicy,
    "truncation_selection": TruncationSelectionPolicy,
    "truncationselectionpolicy": TruncationSelectionPolicy,
    "none": NoTerminationPolicy,
    "noterminationpolicy": NoTerminationPolicy,
}

POLICY_NAMES = ("bandit", "median_stopping", "truncation_selection", "none")


def make_policy(name: str | None, **args: Any) -> Policy:
    """The policy called ``name``: "bandit" / "BanditPolicy", "median_stopping" /
    "MedianStoppingPolicy", "truncation_selection" / "TruncationSelectionPolicy", or
    "none" / "NoTerminationPolicy" / ``None`` (case-insensitive). Arguments whose value is
    ``None`` count as absent. Raises :class:`SweepSpecError` for an unknown name, an
    argument the policy does not take, or a bad value."""
    if name is None:
        key = "none"
    elif isinstance(name, str):
        key = name.strip().lower().replace("-", "_")
    else:
        raise SweepSpecError(f"policy must be a name, not {name!r}", field="policy")
    cls = _POLICIES.get(key)
    if cls is None:
        hint = did_you_mean(key, list(POLICY_NAMES))
        raise SweepSpecError(
            f"unknown early-termination policy {name!r}"
            + (f" ({hint})" if hint else f" (expected one of {', '.join(POLICY_NAMES)})"),
            field="policy",
        )
    given = {k: v for k, v in args.items() if v is not None}
    accepted = [f.name for f in dataclasses.fields(cls)]
    for key_name in given:
        if key_name not in accepted:
            takes = f"it takes {', '.join(accepted)}" if accepted else "it takes no arguments"
            hint = did_you_mean(key_name, accepted)
            raise SweepSpecError(
                f"policy '{cls.name}' does not take '{key_name}' ({hint or takes})",
                field=key_name,
            )
    if cls is TruncationSelectionPolicy and "truncation_percentage" not in given:
        raise SweepSpecError(
            "truncation selection policy needs truncation_percentage (1 to 99)",
            field="truncation_percentage",
        )
    policy: Policy = cls(**given)
    return policy
