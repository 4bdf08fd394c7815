"""Early-termination policies against hand-computed cases: the issue's bandit example, slack
amounts, the minimise mirror, delay and interval gating, median stopping over three trials,
truncation selection over four."""

from __future__ import annotations

from typing import Any

import pytest

from trainform.sweep.policies import (
    BanditPolicy,
    MedianStoppingPolicy,
    NoTerminationPolicy,
    TruncationSelectionPolicy,
    make_policy,
)
from trainform.sweep.space import SweepSpecError


def curve(*values: float, start: int = 1) -> list[tuple[int, float]]:
    return [(start + i, v) for i, v in enumerate(values)]


# --- bandit ---------------------------------------------------------------------------------

# Trial "a" reached 0.8 by interval 5; "b" has 0.52 at best.
BANDIT = {
    "a": curve(0.5, 0.6, 0.7, 0.75, 0.8),
    "b": curve(0.3, 0.4, 0.45, 0.52, 0.5),
    "c": curve(0.4, 0.55, 0.6, 0.65, 0.7),
}


def test_bandit_issue_example_slack_factor() -> None:
    policy = BanditPolicy(slack_factor=0.2)
    stop, reason = policy.should_stop("b", BANDIT, "maximize")
    assert stop
    # best 0.8, s = 0.2: threshold 0.8 / 1.2 = 0.6667; b's best 0.52 is below it.
    assert reason == (
        "best 0.52 < bandit threshold 0.6667 (best of all trials 0.8 / (1 + 0.2)) at interval 5"
    )
    stop, reason = policy.should_stop("c", BANDIT, "maximize")
    assert not stop  # 0.7 >= 0.6667
    assert reason.startswith("best 0.7 >= bandit threshold 0.6667")
    assert not policy.should_stop("a", BANDIT, "maximize")[0]


def test_bandit_slack_amount() -> None:
    policy = BanditPolicy(slack_amount=0.15)
    # threshold 0.8 - 0.15 = 0.65: c (0.7) stays, b (0.52) stops.
    assert not policy.should_stop("c", BANDIT, "maximize")[0]
    stop, reason = policy.should_stop("b", BANDIT, "maximize")
    assert stop and "threshold 0.65 (best of all trials 0.8 - 0.15)" in reason
    assert BanditPolicy(slack_amount=0.05).should_stop("c", BANDIT, "maximize")[0]  # < 0.75


def test_bandit_minimize_mirror() -> None:
    losses = {
        "a": curve(2.0, 1.0, 0.5),
        "b": curve(2.5, 1.5, 0.65),
        "c": curve(2.2, 1.2, 0.55),
    }
    factor = BanditPolicy(slack_factor=0.2)  # threshold 0.5 * 1.2 = 0.6
    stop, reason = factor.should_stop("b", losses, "minimize")
    assert stop
    assert reason == (
        "best 0.65 > bandit threshold 0.6 (best of all trials 0.5 * (1 + 0.2)) at interval 3"
    )
    assert not factor.should_stop("c", losses, "minimize")[0]
    amount = BanditPolicy(slack_amount=0.1)  # threshold 0.5 + 0.1
    assert amount.should_stop("b", losses, "minimize")[0]
    stop, reason = amount.should_stop("c", losses, "minimize")
    assert not stop and "best 0.55 <= bandit threshold 0.6 (best of all trials 0.5 + 0.1)" in reason


def test_bandit_uses_the_trials_best_not_its_latest_value() -> None:
    history = {"a": curve(0.5, 0.8), "b": curve(0.75, 0.4)}
    # b's latest 0.4 is far below 0.667, but its best so far, 0.75, is not.
    assert not BanditPolicy(slack_factor=0.2).should_stop("b", history, "maximize")[0]


def test_bandit_compares_with_others_only_up_to_the_current_interval() -> None:
    history = {
        "finished": curve(0.5, 0.6, 0.7, 0.8, 0.9, 0.95),
        "young": curve(0.45, 0.52),
    }
    # At interval 2 the best of all trials is 0.6 (not the 0.95 reached later):
    # threshold 0.5, and 0.52 is above it.
    stop, reason = BanditPolicy(slack_factor=0.2).should_stop("young", history, "maximize")
    assert not stop and "(best of all trials 0.6 / (1 + 0.2)) at interval 2" in reason
    history["young"].append((3, 0.53))  # best at <= 3 is 0.7 -> threshold 0.5833
    assert BanditPolicy(slack_factor=0.2).should_stop("young", history, "maximize")[0]


def test_delay_evaluation_and_evaluation_interval_gating() -> None:
    best = curve(*[0.9] * 12)
    bad = [0.1] * 12
    delayed = BanditPolicy(slack_factor=0.1, delay_evaluation=5)
    for interval in range(1, 13):
        history = {"best": best, "bad": curve(*bad[:interval])}
        stop, reason = delayed.should_stop("bad", history, "maximize")
        assert stop == (interval >= 5), interval
        if interval < 5:
            assert reason == f"not evaluated at interval {interval} (delay_evaluation 5)"

    every_third = BanditPolicy(slack_factor=0.1, evaluation_interval=3, delay_evaluation=5)
    evaluated = [
        i
        for i in range(1, 13)
        if every_third.should_stop("bad", {"best": best, "bad": curve(*bad[:i])}, "maximize")[0]
    ]
    assert evaluated == [6, 9, 12]
    _, reason = every_third.should_stop("bad", {"best": best, "bad": curve(*bad[:7])}, "maximize")
    assert reason == "not evaluated at interval 7 (not a multiple of evaluation_interval 3)"


def test_gating_uses_reported_steps() -> None:
    # Steps 100, 200, ...: interval is the step itself.
    history = {"a": [(100, 0.9), (200, 0.9)], "b": [(100, 0.1), (200, 0.1)]}
    policy = MedianStoppingPolicy(evaluation_interval=200)
    assert policy.should_stop("b", history, "maximize")[0]
    history["b"] = history["b"][:1]
    assert not policy.should_stop("b", history, "maximize")[0]


def test_no_reports_never_stops() -> None:
    for policy in (
        BanditPolicy(slack_factor=0.1),
        MedianStoppingPolicy(),
        TruncationSelectionPolicy(50),
        NoTerminationPolicy(),
    ):
        assert not policy.should_stop("x", {"x": [], "y": curve(1.0)}, "maximize")[0]
        assert not policy.should_stop("x", {"y": curve(1.0)}, "maximize")[0]


# --- median stopping ------------------------------------------------------------------------

MEDIAN = {
    "a": curve(0.5, 0.7, 0.9),  # running average at 3: 0.7
    "b": curve(0.4, 0.5, 0.55),  # 0.4833; best 0.55
    "c": curve(0.2, 0.3, 0.35),  # 0.2833; best 0.35
    # Reported only at interval 1 (stopped earlier): not part of the median at 3.
    # Were it counted, the median would be 0.5917 and b would stop.
    "d": curve(0.95),
}


def test_median_stopping_three_trials() -> None:
    policy = MedianStoppingPolicy()
    stop, reason = policy.should_stop("c", MEDIAN, "maximize")
    assert stop
    assert reason == ("best 0.35 < median 0.4833 of the running averages of 3 trials at interval 3")
    stop, reason = policy.should_stop("b", MEDIAN, "maximize")
    assert not stop and reason.startswith("best 0.55 >= median 0.4833")
    assert not policy.should_stop("a", MEDIAN, "maximize")[0]


def test_median_stopping_minimize_cases() -> None:
    losses = {
        "a": curve(1.0, 0.6, 0.2),  # average 0.6
        "b": curve(1.2, 1.0, 0.95),  # average 1.05, best 0.95
        "c": curve(1.3, 1.2, 1.1),  # average 1.2, best 1.1
    }
    policy = MedianStoppingPolicy()  # median of 0.6, 1.05, 1.2 = 1.05
    stop, reason = policy.should_stop("c", losses, "minimize")
    assert stop and reason.startswith("best 1.1 > median 1.05")
    assert not policy.should_stop("b", losses, "minimize")[0]  # 0.95 <= 1.05
    assert not MedianStoppingPolicy(delay_evaluation=4).should_stop("c", losses, "minimize")[0]


def test_median_stopping_alone_never_stops_itself() -> None:
    assert not MedianStoppingPolicy().should_stop("a", {"a": curve(0.9, 0.1)}, "maximize")[0]


# --- truncation selection -------------------------------------------------------------------

FOUR = {
    "a": curve(0.5, 0.6, 0.8, 0.9),
    "b": curve(0.5, 0.6, 0.7, 0.8),
    "c": curve(0.5, 0.6, 0.6, 0.6),
    "d": curve(0.95, 0.5, 0.45, 0.4),  # best early, lowest at interval 4
}


def test_truncation_fifty_percent_of_four() -> None:
    policy = TruncationSelectionPolicy(50)
    decisions = {t: policy.should_stop(t, FOUR, "maximize") for t in FOUR}
    assert {t: d[0] for t, d in decisions.items()} == {
        "a": False,
        "b": False,
        "c": True,
        "d": True,
    }
    assert decisions["d"][1] == (
        "value 0.4 at interval 4 ranks 4 of 4; the lowest 50% is 2 trials (stopped)"
    )
    assert decisions["b"][1].endswith("ranks 2 of 4; the lowest 50% is 2 trials (kept)")


def test_truncation_counts_and_rounding_down() -> None:
    assert [
        t for t in FOUR if TruncationSelectionPolicy(25).should_stop(t, FOUR, "maximize")[0]
    ] == ["d"]
    three = {k: FOUR[k] for k in "abd"}
    # int(3 * 20 / 100) = 0 trials: none stopped, even the worst.
    stop, reason = TruncationSelectionPolicy(20).should_stop("d", three, "maximize")
    assert not stop and "the lowest 20% is 0 trials" in reason
    assert TruncationSelectionPolicy(34).should_stop("d", three, "maximize")[0]  # int(1.02) = 1


def test_truncation_minimize_and_ties_at_the_cut_are_kept() -> None:
    losses = {"a": curve(0.1), "b": curve(0.5), "c": curve(0.5), "d": curve(0.9)}
    policy = TruncationSelectionPolicy(50)
    assert [t for t in losses if policy.should_stop(t, losses, "minimize")[0]] == ["d"]
    assert [t for t in losses if policy.should_stop(t, losses, "maximize")[0]] == ["a"]


def test_truncation_compares_only_trials_at_the_same_interval() -> None:
    history = {
        "early": curve(0.1),  # reported only at interval 1
        "x": curve(0.3, 0.5),
        "y": curve(0.2, 0.6),
    }
    # At interval 2 only x and y compete: 50% of 2 = 1 -> x (0.5) is truncated.
    assert TruncationSelectionPolicy(50).should_stop("x", history, "maximize")[0]
    assert not TruncationSelectionPolicy(50).should_stop("y", history, "maximize")[0]


def test_no_termination_never_stops() -> None:
    stop, reason = NoTerminationPolicy().should_stop("d", FOUR, "maximize")
    assert not stop and reason == "no early termination policy"


# --- make_policy ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("bandit", {"slack_factor": 0.2}, BanditPolicy(slack_factor=0.2)),
        (
            "BanditPolicy",
            {"slack_amount": 0.1, "evaluation_interval": 2, "delay_evaluation": 5},
            BanditPolicy(slack_amount=0.1, evaluation_interval=2, delay_evaluation=5),
        ),
        ("median_stopping", {"delay_evaluation": 5}, MedianStoppingPolicy(delay_evaluation=5)),
        ("MedianStoppingPolicy", {}, MedianStoppingPolicy()),
        (
            "truncation_selection",
            {"truncation_percentage": 20},
            TruncationSelectionPolicy(20),
        ),
        (
            "TruncationSelectionPolicy",
            {"truncation_percentage": 10, "evaluation_interval": 1, "delay_evaluation": 3},
            TruncationSelectionPolicy(10, 1, 3),
        ),
        ("none", {}, NoTerminationPolicy()),
        ("NoTerminationPolicy", {}, NoTerminationPolicy()),
        (None, {}, NoTerminationPolicy()),
        ("Bandit", {"slack_factor": 0.1, "slack_amount": None}, BanditPolicy(slack_factor=0.1)),
    ],
)
def test_make_policy(name: str | None, args: dict[str, Any], expected: object) -> None:
    assert make_policy(name, **args) == expected


def test_policy_names_and_descriptions() -> None:
    assert make_policy("bandit", slack_factor=0.2).name == "bandit"
    assert make_policy("MedianStoppingPolicy").name == "median_stopping"
    assert make_policy("TruncationSelectionPolicy", truncation_percentage=5).name == (
        "truncation_selection"
    )
    assert make_policy(None).name == "none"
    assert BanditPolicy(slack_factor=0.2, delay_evaluation=5).describe() == (
        "bandit(slack_factor=0.2, evaluation_interval=1, delay_evaluation=5)"
    )


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("bandit", {}, "bandit policy needs exactly one of slack_factor and slack_amount"),
        ("bandit", {"slack_factor": 0.1, "slack_amount": 0.1}, "exactly one of"),
        ("bandit", {"slack_factor": -0.1}, "slack_factor must be a number >= 0"),
        ("bandit", {"slack_factor": "0.1"}, "slack_factor must be a number >= 0, not '0.1'"),
        (
            "bandit",
            {"slack_factr": 0.1},
            "does not take 'slack_factr' (did you mean \"slack_factor\"?)",
        ),
        (
            "bandit",
            {"slack_factor": 0.1, "evaluation_interval": 0},
            "evaluation_interval must be an integer >= 1",
        ),
        (
            "bandit",
            {"slack_factor": 0.1, "delay_evaluation": -1},
            "delay_evaluation must be an integer >= 0",
        ),
        (
            "median_stopping",
            {"evaluation_interval": 1.5},
            "evaluation_interval must be an integer >= 1, not 1.5",
        ),
        (
            "median_stopping",
            {"slack_factor": 0.2},
            "policy 'median_stopping' does not take 'slack_factor'",
        ),
        ("truncation_selection", {}, "needs truncation_percentage (1 to 99)"),
        ("truncation_selection", {"truncation_percentage": 0}, "from 1 to 99, not 0"),
        ("truncation_selection", {"truncation_percentage": 100}, "from 1 to 99, not 100"),
        ("truncation_selection", {"truncation_percentage": 12.5}, "from 1 to 99, not 12.5"),
        (
            "none",
            {"evaluation_interval": 1},
            "policy 'none' does not take 'evaluation_interval' (it takes no arguments)",
        ),
        ("bandits", {}, "unknown early-termination policy 'bandits' (did you mean \"bandit\"?)"),
        ("hyperband", {}, "expected one of bandit, median_stopping, truncation_selection, none"),
    ],
)
def test_make_policy_errors(name: str, args: dict[str, Any], message: str) -> None:
    with pytest.raises(SweepSpecError) as info:
        make_policy(name, **args)
    assert message in str(info.value)


def test_bad_goal_is_an_error() -> None:
    with pytest.raises(SweepSpecError, match="goal must be 'maximize' or 'minimize'"):
        BanditPolicy(slack_factor=0.1).should_stop("b", BANDIT, "max")
    assert BanditPolicy(slack_factor=0.2).should_stop("b", BANDIT, "Maximize")[0]
