"""Early termination on synthetic training curves: trial-epochs used with no policy, bandit
and median stopping (and truncation selection, for comparison), and whether the best trial
survives. Goal: bandit and median stopping each save >= 30% of trial-epochs and keep the best.

    python bench/sweep_policies.py [--seeds N]

The sweep: 50 trials, each with a learning rate drawn log-uniformly from [1e-4, 1e-1]
(seeded). A trial's accuracy after epoch e (1..20) is

    a * (1 - exp(-e / tau)) + noise,   noise ~ normal(0, 0.01) per epoch (seeded)
    a   = 0.92 - 0.15 * (log10(lr) + 2.5) ** 2      (peak accuracy, best at lr = 10^-2.5)
    tau = 3 * (10^-2.5 / lr) ** 0.4                 (small rates learn slowly: tau up to 12)

so slow, small-rate trials look worse early than they end, which is what makes stopping
risky. Trials are started in order, at most 4 at a time; every running trial reports one
epoch per time step, and the policy is asked after every report (as the controller does).
"Best trial" is the one with the highest final (epoch 20) accuracy on its full curve; it is
kept if the policy never stopped it; "best found" is the best final accuracy among the trials
that ran to the end. Seed 0 is the benchmark; seeds 1..N-1 show how far its settings carry
(noise of 0.01 on the last epoch makes "the best trial" partly a matter of luck, so the
shortfall column says how much a lost best trial costs).
"""

from __future__ import annotations

import argparse
import math
import random
from dataclasses import dataclass

from trainform.sweep.policies import (
    BanditPolicy,
    MedianStoppingPolicy,
    NoTerminationPolicy,
    Policy,
    TruncationSelectionPolicy,
)

TRIALS = 50
EPOCHS = 20
CONCURRENT = 4
GOAL = "maximize"


def make_curves(seed: int) -> list[list[float]]:
    rng = random.Random(seed)
    curves = []
    for _ in range(TRIALS):
        log_lr = rng.uniform(-4, -1)
        a = 0.92 - 0.15 * (log_lr + 2.5) ** 2
        tau = 3 * (10 ** (-2.5 - log_lr)) ** 0.4
        curves.append(
            [a * (1 - math.exp(-e / tau)) + rng.gauss(0, 0.01) for e in range(1, EPOCHS + 1)]
        )
    return curves


@dataclass
class Outcome:
    epochs: int
    stopped: dict[int, int]  # trial -> interval at which it was stopped
    best_found: float  # best final value among trials that ran to the end


def simulate(curves: list[list[float]], policy: Policy) -> Outcome:
    history: dict[str, list[tuple[int, float]]] = {}
    queue = list(range(len(curves)))
    running: dict[int, int] = {}  # trial -> next epoch
    stopped: dict[int, int] = {}
    epochs = 0
    while queue or running:
        while queue and len(running) < CONCURRENT:
            trial = queue.pop(0)
            running[trial] = 1
            history[str(trial)] = []
        for trial in list(running):
            epoch = running[trial]
            history[str(trial)].append((epoch, curves[trial][epoch - 1]))
            epochs += 1
            stop, _ = policy.should_stop(str(trial), history, GOAL)
            if stop:
                stopped[trial] = epoch
                del running[trial]
            elif epoch == EPOCHS:
                del running[trial]
            else:
                running[trial] = epoch + 1
    best_found = max(c[-1] for t, c in enumerate(curves) if t not in stopped)
    return Outcome(epochs, stopped, best_found)


POLICIES: list[tuple[str, Policy]] = [
    ("none", NoTerminationPolicy()),
    ("bandit slack_factor=0.1 delay=5", BanditPolicy(slack_factor=0.1, delay_evaluation=5)),
    ("bandit slack_factor=0.15 delay=5", BanditPolicy(slack_factor=0.15, delay_evaluation=5)),
    ("bandit slack_factor=0.2 delay=5", BanditPolicy(slack_factor=0.2, delay_evaluation=5)),
    ("bandit slack_factor=0.2 delay=7", BanditPolicy(slack_factor=0.2, delay_evaluation=7)),
    ("bandit slack_factor=0.15 delay=8", BanditPolicy(slack_factor=0.15, delay_evaluation=8)),
    ("bandit slack_amount=0.1 delay=5", BanditPolicy(slack_amount=0.1, delay_evaluation=5)),
    ("median_stopping delay=3", MedianStoppingPolicy(delay_evaluation=3)),
    ("median_stopping delay=4", MedianStoppingPolicy(delay_evaluation=4)),
    ("median_stopping delay=5", MedianStoppingPolicy(delay_evaluation=5)),
    ("truncation 25% delay=5", TruncationSelectionPolicy(25, delay_evaluation=5)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="benchmark seeds (default 10)")
    args = parser.parse_args()

    curves = make_curves(0)
    finals = [c[-1] for c in curves]
    best = max(range(TRIALS), key=finals.__getitem__)
    print(
        f"{TRIALS} trials x {EPOCHS} epochs, {CONCURRENT} concurrent; seed 0: best trial "
        f"#{best} final {finals[best]:.4f} (median final {sorted(finals)[TRIALS // 2]:.4f})"
    )
    print()
    header = (
        f"{'policy':34} {'trial-epochs':>12} {'saved':>7} {'stopped':>8} {'best kept':>10} "
        f"{'best found':>10}"
    )
    print("seed 0")
    print(header)
    baseline = TRIALS * EPOCHS
    for name, policy in POLICIES:
        outcome = simulate(curves, policy)
        saved = 1 - outcome.epochs / baseline
        kept = "yes" if best not in outcome.stopped else f"NO (@{outcome.stopped[best]})"
        print(
            f"{name:34} {outcome.epochs:>12} {saved:>7.1%} {len(outcome.stopped):>8} {kept:>10} "
            f"{outcome.best_found:>10.4f}"
        )

    print()
    print(
        f"seeds 0..{args.seeds - 1}: mean and worst saving; in how many seeds the best trial "
        "was kept; the largest shortfall of the best final accuracy found"
    )
    print(f"{'policy':34} {'mean saved':>10} {'worst':>7} {'best kept':>10} {'max shortfall':>14}")
    for name, policy in POLICIES[1:]:
        savings, kept_count, shortfall = [], 0, 0.0
        for seed in range(args.seeds):
            curves = make_curves(seed)
            finals = [c[-1] for c in curves]
            best = max(range(TRIALS), key=finals.__getitem__)
            outcome = simulate(curves, policy)
            savings.append(1 - outcome.epochs / baseline)
            kept_count += best not in outcome.stopped
            shortfall = max(shortfall, finals[best] - outcome.best_found)
        print(
            f"{name:34} {sum(savings) / len(savings):>10.1%} {min(savings):>7.1%} "
            f"{kept_count:>6}/{args.seeds} {shortfall:>14.4f}"
        )


if __name__ == "__main__":
    main()
