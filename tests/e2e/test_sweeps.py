"""Hyperparameter sweeps through the real CLI, on local compute: a bandit sweep that stops the
hopeless trials early and finds the best one; grid sampling; the Azure ML HyperDrive example
run unchanged; parameters reaching the script as arguments and environment variables; sweeps
planned declaratively; the controller detached, cancelled, killed, and ended by its time limit
with no trial process left behind; median-stopping and truncation-selection sweeps end to end.

The training script's metric is a known function of its learning rate,
``accuracy(epoch) = ceiling(lr) * (1 - exp(-epoch / 2))`` with
``ceiling(lr) = 0.9 - 0.15 * |log10(lr) + 2|`` (best at lr = 0.01), so every expectation below
is computed from the parameters a trial ran with. Each trial writes its pid into a folder the
test watches (so the test can tell whether any trial process is left) and dumps the arguments
and ``TRAINFORM_PARAM_*`` variables it received into its outputs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
from helpers import CLI, ok, wait_until

from trainform.state.locking import process_running as alive

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

EPOCHS = 8
SLEEP = 0.15

TRAIN = """\
import argparse
import json
import math
import os
import sys
import time

from trainform.tracking import log_metric

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--epochs", type=int, default=8)
parser.add_argument("--sleep", type=float, default=0.15)
args, _ = parser.parse_known_args()

pid_dir = os.environ.get("PID_DIR")
if pid_dir:
    open(os.path.join(pid_dir, str(os.getpid())), "w").close()
with open(os.path.join(os.environ["TRAINFORM_OUTPUT_DIR"], "params.json"), "w") as f:
    env = {k: v for k, v in os.environ.items() if k.startswith("TRAINFORM_PARAM_")}
    json.dump({"argv": sys.argv[1:], "env": env}, f)

ceiling = 0.9 - 0.15 * abs(math.log10(args.lr) + 2)
for epoch in range(1, args.epochs + 1):
    time.sleep(args.sleep)
    log_metric("accuracy", ceiling * (1 - math.exp(-epoch / 2)), step=epoch)
"""

# The HyperDrive configuration exactly as issue 5 gives it.
ISSUE_HDCONFIG = """\
sampling:
    type: random # Supported options: Random, Grid, Bayesian
    parameter_space:
    - name: --penalty
      expression: choice
      values: [0.5, 1, 1.5]
policy:
    type: BanditPolicy # BanditPolicy, MedianStoppingPolicy, \
TruncationSelectionPolicy, NoTerminationPolicy
    evaluation_interval: 1
    slack_factor: 0.2
primary_metric_name: Accuracy
primary_metric_goal: Maximize
max_total_runs: 8
max_concurrent_runs: 2
max_duration_minutes: 100
"""

# Learning rates the bandit sweep samples from: 0.01 is best (ceiling 0.9), 0.003 and 0.03 are
# close (0.822), 1.0 (0.6) and 1e-5 (0.45) are hopeless: below 0.9 / (1 + 0.2) = 0.75.
LRS = "[0.01, 0.003, 0.03, 1.0, 0.00001]"
BAD_LRS = (1.0, 0.00001)

OBJECTIVE = """\
  objective {
    metric = "accuracy"
    goal   = "maximize"
  }
"""


def ceiling(lr: float) -> float:
    return 0.9 - 0.15 * abs(math.log10(lr) + 2)


def accuracy(lr: float, epoch: int) -> float:
    return ceiling(lr) * (1 - math.exp(-epoch / 2))


# -- helpers


def gone(pids: list[int], timeout: float = 30.0) -> None:
    still = lambda: [p for p in pids if alive(p)]  # noqa: E731
    wait_until(f"processes {pids} to end (alive: {still()})", lambda: not still(), timeout)


class Sweeps:
    """The CLI in a configuration folder holding the training script, and a folder where
    every trial writes its pid."""

    def __init__(self, cli: CLI, pid_dir: Path) -> None:
        self.cli = cli
        self.pid_dir = pid_dir
        cli.write("src/train.py", TRAIN)

    def config(
        self, name: str, blocks: str, *, epochs: int = EPOCHS, sleep: float = SLEEP, extra: str = ""
    ) -> None:
        self.cli.write(
            "main.train.hcl",
            'compute "local" {\n  type = "local"\n  max_concurrent_runs = 4\n}\n\n'
            f'sweep "{name}" {{\n'
            '  experiment = "tests"\n'
            "  trial {\n"
            "    compute    = compute.local\n"
            '    source_dir = "src"\n'
            '    script     = "train.py"\n'
            f'    arguments  = ["--lr", param.lr, "--epochs", "{epochs}", "--sleep", "{sleep}"]\n'
            f'    env        = {{ PID_DIR = "{self.pid_dir}" }}\n'
            "  }\n"
            f"{blocks}"
            "}\n"
            f"{extra}",
        )

    def trial_pids(self) -> list[int]:
        return sorted(int(p.name) for p in self.pid_dir.iterdir())

    def show(self, name: str) -> dict:
        return json.loads(ok(self.cli("sweeps", "show", name, "--json")).out)

    def controller_pid(self, name: str) -> int:
        """The background controller's pid, as its status file records it."""
        sweep_id = self.show(name)["id"]
        status = self.cli.cwd / ".trainform" / "sweeps" / sweep_id / "status.json"
        return int(json.loads(status.read_text())["controller_pid"])

    def runs(self) -> list[dict]:
        return json.loads(ok(self.cli("runs", "list", "--json")).out)

    def trial_params(self, run_id: str, dest: Path) -> dict:
        """What the trial's script received: its arguments and TRAINFORM_PARAM_* variables."""
        ok(self.cli("runs", "outputs", run_id, "--to", str(dest)))
        return json.loads((dest / "params.json").read_text())


def _ours(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"train.py" in cmdline or b"trainform.sweep.controller" in cmdline


@pytest.fixture
def sweeps(cli: CLI, tmp_path: Path):
    """The sweep helper; afterwards, any trial or controller this test started that is still
    alive is killed, so a failing test leaves no process behind."""
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    helper = Sweeps(cli, pid_dir)
    yield helper
    pids = [int(p.name) for p in pid_dir.iterdir()]
    for status in (cli.cwd / ".trainform" / "sweeps").glob("*/status.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            pids.append(int(json.loads(status.read_text())["controller_pid"]))
    for pid in pids:
        if alive(pid) and _ours(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def bandit_blocks(seed: int) -> str:
    return (
        f'  sampling {{\n    algorithm = "random"\n    seed      = {seed}\n  }}\n'
        f'  parameter "lr" {{\n    distribution = "choice"\n    values       = {LRS}\n  }}\n'
        f"{OBJECTIVE}"
        "  early_termination {\n"
        '    policy              = "bandit"\n'
        "    slack_factor        = 0.2\n"
        "    evaluation_interval = 1\n"
        "    delay_evaluation    = 3\n"
        "  }\n"
        "  limits {\n"
        "    max_total_runs      = 8\n"
        "    max_concurrent_runs = 2\n"
        "  }\n"
    )


def long_blocks(extra_limits: str = "") -> str:
    """Two good learning rates, run two at a time, for sweeps the test ends itself."""
    return (
        '  sampling {\n    algorithm = "grid"\n  }\n'
        '  parameter "lr" {\n    distribution = "choice"\n    values       = [0.01, 0.03]\n  }\n'
        f"{OBJECTIVE}"
        "  limits {\n"
        "    max_total_runs      = 2\n"
        "    max_concurrent_runs = 2\n"
        f"{extra_limits}"
        "  }\n"
    )


# -- early termination and the best trial


def test_bandit_sweep_stops_hopeless_trials_early_and_finds_the_best(sweeps: Sweeps) -> None:
    sweeps.config(
        "tune",
        bandit_blocks(seed=8),
        extra='\noutput "best" {\n  value = sweep.tune.best_params\n}\n',
    )
    result = ok(sweeps.cli("apply", "-auto-approve", timeout=180))

    s = sweeps.show("tune")
    assert s["status"] == "completed", s
    trials = s["record"]["trials"]
    assert len(trials) == 8, trials
    lrs = [t["params"]["lr"] for t in trials]
    assert any(lr in BAD_LRS for lr in lrs), f"seed 8 should sample a hopeless lr: {lrs}"

    stopped = [t for t in trials if t["stopped"]]
    assert stopped, f"the bandit policy stopped no trial:\n{json.dumps(trials, indent=1)}"
    best_ceiling = max(ceiling(lr) for lr in lrs)
    for t in stopped:
        lr = t["params"]["lr"]
        # Bandit can only stop a trial whose curve is below the best one's by the slack.
        assert ceiling(lr) < best_ceiling / 1.2, f"a good trial was stopped: {t}"
        assert t["status"] == "stopped", t
        assert 1 <= t["reports"] < EPOCHS, f"a stopped trial ran to the end: {t}"
        reason = t["stopped"]
        m = re.search(
            r"best ([\d.]+) < bandit threshold ([\d.]+) "
            r"\(best of all trials ([\d.]+) / \(1 \+ 0\.2\)\) at interval (\d+)",
            reason,
        )
        assert m, f"stop reason does not give the bandit threshold: {reason!r}"
        own, threshold, overall, interval = (float(g) for g in m.groups())
        assert interval >= 3, f"stopped before delay_evaluation: {reason!r}"
        assert threshold == pytest.approx(overall / 1.2, rel=1e-3), reason
        assert own < threshold, reason
        assert own == pytest.approx(accuracy(lr, int(interval)), rel=1e-3), reason
        assert overall <= best_ceiling * (1 - math.exp(-interval / 2)) * 1.001, reason
    for t in trials:
        if ceiling(t["params"]["lr"]) == best_ceiling:
            assert t["status"] == "completed" and t["reports"] == EPOCHS, t
            assert t["best"] == pytest.approx(accuracy(t["params"]["lr"], EPOCHS)), t

    best = s["record"]["best"]
    assert ceiling(best["params"]["lr"]) == best_ceiling, best
    assert best["best"] == pytest.approx(accuracy(best["params"]["lr"], EPOCHS)), best

    # apply streamed every trial and every stop decision with its reason.
    for t in stopped:
        assert re.search(
            rf"trial {t['index']} \({re.escape(t['run_id'])}\): stop: accuracy: best .* "
            r"< bandit threshold",
            result.out,
        ), result.out
    assert "sweep completed" in result.out, result.out
    decisions = s["record"]["decisions"]
    assert {d["trial"] for d in decisions if d["action"] == "stop"} == {
        t["index"] for t in stopped
    }, decisions

    # The best parameters are an output.
    out = json.loads(ok(sweeps.cli("output", "--json", "best")).out)
    assert out == best["params"], out
    # Stopped trials are canceled runs in the history; the others completed.
    runs = {r["id"]: r for r in sweeps.runs()}
    for t in trials:
        assert runs[t["run_id"]]["status"] == ("canceled" if t["stopped"] else "completed"), t
    gone(sweeps.trial_pids(), timeout=10)


# -- grid sampling


def test_grid_over_three_choices_runs_each_value_exactly_once(sweeps: Sweeps) -> None:
    sweeps.config(
        "grid",
        '  sampling {\n    algorithm = "grid"\n  }\n'
        '  parameter "lr" {\n    distribution = "choice"\n'
        "    values       = [0.1, 0.01, 0.001]\n  }\n"
        f"{OBJECTIVE}"
        "  limits {\n    max_total_runs      = 10\n    max_concurrent_runs = 3\n  }\n",
        epochs=3,
    )
    ok(sweeps.cli("apply", "-auto-approve", timeout=120))

    s = sweeps.show("grid")
    assert s["status"] == "completed", s
    trials = s["record"]["trials"]
    assert sorted(t["params"]["lr"] for t in trials) == [0.001, 0.01, 0.1], trials
    assert all(t["status"] == "completed" for t in trials), trials
    assert s["record"]["best"]["params"] == {"lr": 0.01}, s["record"]["best"]

    runs = sweeps.runs()
    assert sorted(r["address"] for r in runs) == ["sweep.grid[0]", "sweep.grid[1]", "sweep.grid[2]"]
    assert {r["id"] for r in runs} == {t["run_id"] for t in trials}
    assert all(r["status"] == "completed" for r in runs), runs
    assert len(sweeps.trial_pids()) == 3


def test_grid_with_a_non_choice_parameter_is_refused_at_plan_time(sweeps: Sweeps) -> None:
    sweeps.config(
        "grid",
        '  sampling {\n    algorithm = "grid"\n  }\n'
        '  parameter "lr" {\n    distribution = "uniform"\n    min          = 0.001\n'
        "    max          = 0.1\n  }\n"
        f"{OBJECTIVE}",
    )
    for command in (("plan",), ("apply", "-auto-approve")):
        result = sweeps.cli(*command)
        assert result.code == 1, result.all
        assert "Traceback" not in result.all, result.all
        assert "grid sampling supports only choice parameters" in result.all, result.all
        assert "'lr' is uniform" in result.all, result.all
        assert "main.train.hcl" in result.all, result.all
    assert sweeps.trial_pids() == []
    # No sweep was recorded (a refused plan may leave no state at all behind).
    listed = sweeps.cli("sweeps", "list", "--json")
    assert "Traceback" not in listed.all, listed.all
    assert (listed.code == 0 and json.loads(listed.out) == []) or (
        listed.code == 1 and "no state yet" in listed.all
    ), listed.all


# -- parameters reaching the script


def test_parameters_reach_the_script_as_arguments_and_environment(
    sweeps: Sweeps, tmp_path: Path
) -> None:
    sweeps.config(
        "params",
        '  sampling {\n    algorithm = "grid"\n  }\n'
        '  parameter "lr" {\n    distribution = "choice"\n    values       = [0.01, 0.003]\n  }\n'
        '  parameter "batch_size" {\n    distribution = "choice"\n    values       = [32]\n  }\n'
        '  parameter "--warmup" {\n    distribution = "choice"\n    values       = [5]\n  }\n'
        f"{OBJECTIVE}"
        "  limits {\n    max_total_runs      = 4\n    max_concurrent_runs = 2\n  }\n",
        epochs=2,
    )
    ok(sweeps.cli("apply", "-auto-approve", timeout=120))
    trials = sweeps.show("params")["record"]["trials"]
    assert sorted(t["params"]["lr"] for t in trials) == [0.003, 0.01], trials
    for t in trials:
        got = sweeps.trial_params(t["run_id"], tmp_path / t["run_id"])
        lr = t["params"]["lr"]
        # As written in the template, then HyperDrive style for a parameter named "--warmup".
        assert got["argv"][:2] == ["--lr", str(lr)], got
        assert got["argv"][-2:] == ["--warmup", "5"], got
        assert got["env"] == {
            "TRAINFORM_PARAM_LR": str(lr),
            "TRAINFORM_PARAM_BATCH_SIZE": "32",
            "TRAINFORM_PARAM_WARMUP": "5",
        }, got
        assert t["best"] == pytest.approx(accuracy(lr, 2)), t


# -- the HyperDrive configuration


def test_hyperdrive_example_runs_unchanged(cli: CLI) -> None:
    shutil.copytree(EXAMPLES / "hyperdrive", cli.cwd, dirs_exist_ok=True)
    assert (cli.cwd / "hdconfig.yml").read_text() == ISSUE_HDCONFIG

    result = ok(cli("apply", "-auto-approve", timeout=180))
    s = json.loads(ok(cli("sweeps", "show", "penalty", "--json")).out)
    assert s["status"] == "completed", s
    rec = s["record"]
    assert rec["objective"] == {"metric": "Accuracy", "goal": "maximize"}, rec["objective"]
    assert rec["policy"]["name"] == "bandit", rec["policy"]
    trials = rec["trials"]
    assert len(trials) == 8, trials
    for t in trials:
        penalty = t["params"]["--penalty"]
        assert penalty in (0.5, 1, 1.5), t
        # The script requires --penalty and reports (0.9 - 0.1 |penalty - 1|) * epoch / 5: its
        # final Accuracy shows the value it received. Bandit with slack 0.2 stops none of these.
        assert t["status"] == "completed", t
        assert t["best"] == pytest.approx(0.9 - 0.1 * abs(penalty - 1.0)), t
    best = rec["best"]
    assert best["best"] == pytest.approx(max(t["best"] for t in trials)), best
    assert f"Accuracy = {best['best']:.6g}" in result.out, result.out
    assert f"Accuracy = {best['best']:.6g}" in rec["message"], rec["message"]
    runs = json.loads(ok(cli("runs", "list", "--json", "--experiment", "hyperdrive-example")).out)
    assert len(runs) == 8 and all(r["status"] == "completed" for r in runs), runs


# -- sweeps are declarative


def test_completed_sweep_is_up_to_date_and_changes_plan_a_resubmit(sweeps: Sweeps) -> None:
    def blocks(seed: int, values: str) -> str:
        return (
            f'  sampling {{\n    algorithm = "random"\n    seed      = {seed}\n  }}\n'
            f'  parameter "lr" {{\n    distribution = "choice"\n    values       = {values}\n  }}\n'
            f"{OBJECTIVE}"
            "  limits {\n    max_total_runs      = 2\n    max_concurrent_runs = 2\n  }\n"
        )

    sweeps.config("decl", blocks(8, "[0.01, 0.03]"), epochs=2)
    ok(sweeps.cli("apply", "-auto-approve", timeout=120))
    assert sweeps.show("decl")["status"] == "completed"
    ok(sweeps.cli("plan", "--detailed-exitcode"), 0)

    changed = "the search space, policy, objective or limits changed"
    sweeps.config("decl", blocks(9, "[0.01, 0.03]"), epochs=2)
    result = ok(sweeps.cli("plan", "--detailed-exitcode"), 2)
    assert f"sweep.decl will be resubmitted: {changed}" in result.out, result.out

    sweeps.config("decl", blocks(8, "[0.01, 0.003]"), epochs=2)
    result = ok(sweeps.cli("plan", "--detailed-exitcode"), 2)
    assert f"sweep.decl will be resubmitted: {changed}" in result.out, result.out

    sweeps.config("decl", blocks(8, "[0.01, 0.03]"), epochs=2)
    ok(sweeps.cli("plan", "--detailed-exitcode"), 0)

    sweeps.cli.write("src/train.py", TRAIN + "# changed\n")
    result = ok(sweeps.cli("plan", "--detailed-exitcode"), 2)
    assert "sweep.decl will be resubmitted: the trial template or its source changed" in result.out


# -- the background controller


def test_detached_sweep_runs_in_background_and_cancel_stops_every_trial(sweeps: Sweeps) -> None:
    sweeps.config("bg", long_blocks(), epochs=300, sleep=0.2)
    result = ok(sweeps.cli("apply", "-auto-approve", "--detach", timeout=60))
    assert "sweeps show sweep.bg" in result.out, result.out

    listed = json.loads(ok(sweeps.cli("sweeps", "list", "--json")).out)
    assert [(s["address"], s["status"]) for s in listed] == [("sweep.bg", "running")], listed
    controller = sweeps.controller_pid("bg")
    assert alive(controller)
    pids = wait_until(
        "both trials to start", lambda: len(sweeps.trial_pids()) == 2 and sweeps.trial_pids()
    )
    assert all(alive(p) for p in pids)

    result = ok(sweeps.cli("sweeps", "cancel", "bg", timeout=90))
    assert "canceled" in result.out, result.out
    gone([controller, *pids])
    s = sweeps.show("bg")
    assert s["status"] == "canceled", s
    assert s["record"]["message"] == "canceled by the user", s["record"]
    assert [t["status"] for t in s["record"]["trials"]] == ["canceled", "canceled"], s
    assert all(r["status"] == "canceled" for r in sweeps.runs())


def test_killed_controller_leaves_no_trial_and_plans_a_resubmit(sweeps: Sweeps) -> None:
    sweeps.config("bg", long_blocks(), epochs=300, sleep=0.2)
    ok(sweeps.cli("apply", "-auto-approve", "--detach", timeout=60))
    pids = wait_until(
        "both trials to start", lambda: len(sweeps.trial_pids()) == 2 and sweeps.trial_pids()
    )
    controller = sweeps.controller_pid("bg")
    assert controller != os.getpid() and alive(controller)
    sweep_id = sweeps.show("bg")["id"]

    os.kill(controller, signal.SIGKILL)
    gone([controller, *pids])  # the trials watch the controller's pid and cancel themselves

    result = ok(sweeps.cli("plan", "--detailed-exitcode"), 2)
    assert f"sweep.bg will be resubmitted: the last sweep {sweep_id} was lost: " in result.out
    assert f"(pid {controller}) ended before the sweep did" in result.out, result.out

    runs = sweeps.runs()
    assert len(runs) == 2 and all(r["status"] == "canceled" for r in runs), runs
    listed = json.loads(ok(sweeps.cli("sweeps", "list", "--json")).out)
    assert [(s["id"], s["status"]) for s in listed] == [(sweep_id, "lost")], listed


def test_sweep_time_limit_ends_it_with_no_trial_left(sweeps: Sweeps) -> None:
    sweeps.config("timed", long_blocks('    max_duration        = "3s"\n'), epochs=300, sleep=0.2)
    started = time.monotonic()
    result = ok(sweeps.cli("apply", "-auto-approve", timeout=120))
    assert time.monotonic() - started < 60, "the 3 s limit did not end the sweep"
    assert "max_duration (3.0s) reached" in result.out, result.out

    s = sweeps.show("timed")
    assert "max_duration (3.0s) reached" in s["record"]["message"], s["record"]
    assert s["status"] == "completed", s
    trials = s["record"]["trials"]
    assert len(trials) == 2 and all(t["status"] == "canceled" for t in trials), trials
    assert all(t["reports"] < 300 for t in trials), trials
    # The controller waited for its trials to end before apply returned.
    assert not [p for p in sweeps.trial_pids() if alive(p)], sweeps.trial_pids()


# -- the other policies


@pytest.mark.parametrize(
    ("policy", "args", "reason"),
    [
        ("median_stopping", "", r"< median [\d.]+ of the running averages"),
        (
            "truncation_selection",
            "    truncation_percentage = 50\n",
            r"the lowest 50% is \d+ trial",
        ),
    ],
)
def test_other_policies_run_to_completion(
    sweeps: Sweeps, policy: str, args: str, reason: str
) -> None:
    sweeps.config(
        "pol",
        '  sampling {\n    algorithm = "random"\n    seed      = 8\n  }\n'
        f'  parameter "lr" {{\n    distribution = "choice"\n    values       = {LRS}\n  }}\n'
        f"{OBJECTIVE}"
        "  early_termination {\n"
        f'    policy              = "{policy}"\n'
        "    evaluation_interval = 1\n"
        "    delay_evaluation    = 2\n"
        f"{args}"
        "  }\n"
        "  limits {\n    max_total_runs      = 6\n    max_concurrent_runs = 3\n  }\n",
    )
    result = ok(sweeps.cli("apply", "-auto-approve", timeout=180))
    assert "sweep completed" in result.out, result.out
    s = sweeps.show("pol")
    assert s["status"] == "completed", s
    assert s["record"]["policy"]["name"] == policy, s["record"]["policy"]
    trials = s["record"]["trials"]
    assert len(trials) == 6, trials
    best_ceiling = max(ceiling(t["params"]["lr"]) for t in trials)
    for t in trials:
        if t["stopped"]:
            assert t["status"] == "stopped" and t["reports"] < EPOCHS, t
            assert re.search(reason, t["stopped"]), t["stopped"]
        if ceiling(t["params"]["lr"]) == best_ceiling:
            # Neither policy can stop the trial whose curve is above every other.
            assert t["status"] == "completed", t
    assert ceiling(s["record"]["best"]["params"]["lr"]) == best_ceiling, s["record"]["best"]
    gone(sweeps.trial_pids(), timeout=10)


# -- sweeps that produce nothing fail


def _grid_sweep(cli: CLI, name: str, trial: str, parameters: str, metric: str = "accuracy") -> None:
    """A grid sweep over ``parameters`` (HCL parameter blocks) with ``trial`` as its template."""
    cli.write(
        "main.train.hcl",
        'compute "local" {\n  type = "local"\n  max_concurrent_runs = 4\n}\n\n'
        f'sweep "{name}" {{\n'
        '  experiment = "tests"\n'
        f"  trial {{\n{trial}  }}\n"
        '  sampling {\n    algorithm = "grid"\n  }\n'
        f"{parameters}"
        f'  objective {{\n    metric = "{metric}"\n    goal   = "maximize"\n  }}\n'
        "  limits {\n    max_total_runs      = 8\n    max_concurrent_runs = 4\n  }\n"
        "}\n",
    )


FAILING = """\
import sys

from trainform.tracking import log_metric

log_metric("accuracy", 0.5, step=1)
print("loading the data set", flush=True)
raise SystemExit("cannot open data/train.csv: no such file")
"""


def test_sweep_whose_every_trial_fails_exits_1_and_is_resubmitted(cli: CLI) -> None:
    cli.write("src/train.py", FAILING)
    _grid_sweep(
        cli,
        "broken",
        '    compute    = compute.local\n    source_dir = "src"\n    script     = "train.py"\n',
        '  parameter "lr" {\n    distribution = "choice"\n'
        "    values       = [0.1, 0.01, 0.001, 0.0001]\n  }\n",
    )
    result = cli("apply", "-auto-approve", timeout=120)
    assert result.code == 1, result.all
    assert "Traceback" not in result.all, result.all
    reason = (
        r"all 4 trials failed; the last one: run (\S+) failed \(exit code 1\): "
        r"cannot open data/train\.csv: no such file"
    )
    m = re.search(reason, result.all)
    assert m, result.all
    assert "Apply complete" not in result.all, result.all

    s = json.loads(ok(cli("sweeps", "show", "broken", "--json")).out)
    assert s["status"] == "failed", s
    assert re.fullmatch(reason, s["record"]["message"]), s["record"]["message"]
    assert {t["status"] for t in s["record"]["trials"]} == {"failed"}, s["record"]["trials"]
    assert m.group(1) in {t["run_id"] for t in s["record"]["trials"]}
    for t in s["record"]["trials"]:
        assert t["failure"] == (
            f"run {t['run_id']} failed (exit code 1): cannot open data/train.csv: no such file"
        ), t
    shown = ok(cli("sweeps", "show", "broken")).out.splitlines()
    assert shown[0].endswith("failed") and re.fullmatch("  " + reason, shown[3]), shown

    # Tainted: the next plan resubmits it and says why.
    result = ok(cli("plan", "--detailed-exitcode"), 2)
    assert re.search(
        rf"sweep\.broken will be resubmitted: the last sweep {re.escape(s['id'])} failed: "
        + reason,
        result.out,
    ), result.out

    # Once the script is fixed, the sweep completes and exits 0.
    cli.write("src/train.py", FAILING.replace("raise SystemExit", "print"))
    ok(cli("apply", "-auto-approve", timeout=120))
    assert json.loads(ok(cli("sweeps", "show", "broken", "--json")).out)["status"] == "completed"
    ok(cli("plan", "--detailed-exitcode"), 0)


def test_sweep_where_no_trial_reports_the_primary_metric_exits_1(cli: CLI) -> None:
    cli.write(
        "src/train.py",
        "from trainform.tracking import log_metric\n\n"
        "for step in range(1, 3):\n"
        '    log_metric("loss", 1.0 / step, step=step)\n'
        '    log_metric("Accuracy", 0.4 * step, step=step)\n',
    )
    _grid_sweep(
        cli,
        "quiet",
        '    compute    = compute.local\n    source_dir = "src"\n    script     = "train.py"\n',
        '  parameter "lr" {\n    distribution = "choice"\n    values       = [0.1, 0.01]\n  }\n',
    )
    result = cli("apply", "-auto-approve", timeout=120)
    assert result.code == 1, result.all
    assert "Traceback" not in result.all, result.all
    reason = "no trial reported the primary metric 'accuracy' (trials reported: Accuracy, loss)"
    assert reason in result.all, result.all

    s = json.loads(ok(cli("sweeps", "show", "quiet", "--json")).out)
    assert s["status"] == "failed", s
    assert s["record"]["message"].startswith(reason), s["record"]["message"]
    assert {t["status"] for t in s["record"]["trials"]} == {"completed"}, s["record"]["trials"]
    assert reason in ok(cli("sweeps", "show", "quiet")).out

    result = ok(cli("plan", "--detailed-exitcode"), 2)
    assert (
        f"sweep.quiet will be resubmitted: the last sweep {s['id']} failed: {reason}" in result.out
    ), result.out


# -- numbers in a trial's command


ECHO_ARGV = """\
import json
import os
import sys

from trainform.tracking import log_metric

with open(os.path.join(os.environ["TRAINFORM_OUTPUT_DIR"], "argv.json"), "w") as f:
    json.dump(sys.argv[1:], f)
with open(os.path.join(os.environ["TRAINFORM_OUTPUT_DIR"], "env.json"), "w") as f:
    json.dump({k: v for k, v in os.environ.items() if k.endswith("FAST")}, f)
log_metric("accuracy", float(sys.argv[2]), step=1)
"""


def test_numeric_and_bool_parameters_in_a_trial_command_are_arguments(
    cli: CLI, tmp_path: Path
) -> None:
    cli.write("src/train.py", ECHO_ARGV)
    _grid_sweep(
        cli,
        "cmd",
        "    compute    = compute.local\n"
        '    source_dir = "src"\n'
        '    command    = ["python", "train.py", "--C", param.C, "--epochs", param.epochs,\n'
        '                  "--fast", param.fast, "--n", 3, "--x", "v${param.epochs}",\n'
        '                  "--fast=${param.fast}"]\n'
        "    env        = { FAST = param.fast }\n",
        '  parameter "C" {\n    distribution = "choice"\n    values       = [0.1, 2.5]\n  }\n'
        '  parameter "epochs" {\n    distribution = "choice"\n    values       = [10]\n  }\n'
        '  parameter "fast" {\n    distribution = "choice"\n    values       = [true]\n  }\n',
    )
    ok(cli("validate"))
    ok(cli("plan"))
    ok(cli("apply", "-auto-approve", timeout=120))
    s = json.loads(ok(cli("sweeps", "show", "cmd", "--json")).out)
    assert s["status"] == "completed", s
    trials = s["record"]["trials"]
    assert sorted(t["params"]["C"] for t in trials) == [0.1, 2.5], trials
    for t in trials:
        assert t["status"] == "completed", t
        dest = tmp_path / t["run_id"]
        ok(cli("runs", "outputs", t["run_id"], "--to", str(dest)))
        argv = json.loads((dest / "argv.json").read_text())
        C = "0.1" if t["params"]["C"] == 0.1 else "2.5"
        # Written as HCL writes them, as a plain run's arguments are.
        assert argv == [
            *("--C", C, "--epochs", "10", "--fast", "true", "--n", "3"),
            *("--x", "v10", "--fast=true"),
        ], argv
        env = json.loads((dest / "env.json").read_text())
        assert env == {"FAST": "true", "TRAINFORM_PARAM_FAST": "true"}, env
        assert t["best"] == t["params"]["C"], t


def test_numbers_in_a_plain_run_command_are_arguments(cli: CLI, tmp_path: Path) -> None:
    cli.write("train.py", ECHO_ARGV)
    cli.write(
        "main.train.hcl",
        'compute "local" {\n  type = "local"\n}\n\n'
        'run "train" {\n'
        '  experiment = "tests"\n'
        "  compute    = compute.local\n"
        '  command    = ["python", "train.py", 0.5, 10, true]\n'
        "}\n",
    )
    ok(cli("apply", "-auto-approve", timeout=120))
    run = json.loads(ok(cli("runs", "list", "--json")).out)[0]
    assert run["status"] == "completed", run
    ok(cli("runs", "outputs", run["id"], "--to", str(tmp_path / "out")))
    argv = json.loads((tmp_path / "out" / "argv.json").read_text())
    assert argv == ["0.5", "10", "true"], argv


# -- HyperDrive parameter names without dashes


# Parses its arguments as Azure ML's PyTorch sample (pytorch_train.py) does, but fails loudly
# when --learning_rate is not given instead of training on a default.
PYTORCH_STYLE = """\
import argparse
import json
import os
import sys

from trainform.tracking import log_metric

parser = argparse.ArgumentParser()
parser.add_argument("--learning_rate", type=float, required=True)
parser.add_argument("--momentum", type=float, required=True)
parser.add_argument("-b", type=int, required=True)
args = parser.parse_args()
with open(os.path.join(os.environ["TRAINFORM_OUTPUT_DIR"], "argv.json"), "w") as f:
    json.dump(sys.argv[1:], f)
log_metric("best_val_acc", 1 - abs(args.learning_rate - 0.001) - args.momentum / 100, step=1)
"""

PYTORCH_HDCONFIG = """\
sampling:
    type: grid
    parameter_space:
    - name: learning_rate
      expression: choice
      values: [0.001, 0.005]
    - name: --momentum
      expression: choice
      values: [0.9]
    - name: -b
      expression: choice
      values: [4]
primary_metric_name: best_val_acc
primary_metric_goal: Maximize
max_total_runs: 4
max_concurrent_runs: 2
"""


def test_hyperdrive_names_without_dashes_reach_the_script_as_flags(
    cli: CLI, tmp_path: Path
) -> None:
    cli.write("src/pytorch_train.py", PYTORCH_STYLE)
    cli.write("hdconfig.yml", PYTORCH_HDCONFIG)
    cli.write(
        "main.train.hcl",
        'compute "local" {\n  type = "local"\n  max_concurrent_runs = 2\n}\n\n'
        'sweep "pytorch" {\n'
        '  experiment        = "tests"\n'
        '  hyperdrive_config = "hdconfig.yml"\n'
        "  trial {\n"
        "    compute    = compute.local\n"
        '    source_dir = "src"\n'
        '    script     = "pytorch_train.py"\n'
        "  }\n"
        "}\n",
    )
    ok(cli("apply", "-auto-approve", timeout=120))
    s = json.loads(ok(cli("sweeps", "show", "pytorch", "--json")).out)
    assert s["status"] == "completed", s
    trials = s["record"]["trials"]
    assert sorted(t["params"]["learning_rate"] for t in trials) == [0.001, 0.005], trials
    for t in trials:
        assert t["status"] == "completed", t
        dest = tmp_path / t["run_id"]
        ok(cli("runs", "outputs", t["run_id"], "--to", str(dest)))
        argv = json.loads((dest / "argv.json").read_text())
        lr = str(t["params"]["learning_rate"])
        # Bare names as --NAME, names with dashes as written, in the file's order.
        assert argv == ["--learning_rate", lr, "--momentum", "0.9", "-b", "4"], argv
    assert s["record"]["best"]["params"]["learning_rate"] == 0.001, s["record"]["best"]


HOSTILE_REPORTS = """\
import os
with open(os.environ["TRAINFORM_METRICS_FILE"], "a") as f:
    f.write('[1]\\n7\\n"text"\\n{"kind": "metric", "name": "accuracy", "value": "0.99"}\\n')
    f.write('{"kind": "metric", "name": "accuracy", "value": true, "step": 1}\\n')
    f.write('{"kind": "metric", "name": "accuracy", "value": [0.99]}\\n')
"""


def test_a_trial_writing_what_is_not_a_report_into_its_metrics_file_is_judged_by_its_reports(
    sweeps: Sweeps,
) -> None:
    """Lines that are JSON but not a metric record (a list, a number, a value that is text or
    a bool) are not reports; the controller neither crashes on them nor counts them."""
    sweeps.config(
        "grid",
        '  sampling {\n    algorithm = "grid"\n  }\n'
        '  parameter "lr" {\n    distribution = "choice"\n'
        "    values       = [0.1, 0.01]\n  }\n"
        f"{OBJECTIVE}"
        "  limits {\n    max_total_runs      = 10\n    max_concurrent_runs = 2\n  }\n",
        epochs=3,
    )
    sweeps.cli.write("src/train.py", HOSTILE_REPORTS + TRAIN)
    ok(sweeps.cli("apply", "-auto-approve", timeout=120))
    s = sweeps.show("grid")
    assert s["status"] == "completed", s
    assert s["record"]["best"]["params"] == {"lr": 0.01}, s["record"]["best"]
    assert s["record"]["best"]["best"] < 0.9, s["record"]["best"]
