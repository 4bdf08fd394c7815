"""Sweeps, job arrays, max_concurrent_runs and `compute show` on a slurm compute, through the
real CLI on the real two-node Slurm test cluster (tests/slurm.py): a grid sweep whose trials
are separate jobs; the same sweep as ONE job array (`slurm_array = true`), and that option
refused at plan time where the sampler needs results; a bandit policy cancelling one trial's
job; `max_concurrent_runs = 1` throttled by Slurm (the second job PENDING on Dependency, the
runs never overlapping); `compute show` listing partitions, that pending job and the nodes.

Every trial writes a record of its Slurm job (ids, start and end, as the script saw them)
into a folder the test reads, named by its learning rate or run name."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import CLI, base_env, failed, ok, wait_until
from slurm import SlurmCluster

TRAIN = """\
import argparse, json, math, os, time
from trainform.tracking import log_metric

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--sleep", type=float, default=0.1)
args, _ = parser.parse_known_args()

record = {k: os.environ.get(k, "") for k in
          ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_NAME")}
record["start"] = time.time()
path = os.path.join(os.environ["TEST_DIR"], f"{args.lr}.json")
with open(path, "w") as f:
    json.dump(record, f)
while os.environ.get("GATE") and not os.path.exists(os.environ["GATE"]):
    time.sleep(0.1)  # held until the test opens the gate
ceiling = 0.9 - 0.15 * abs(math.log10(args.lr) + 2)
for epoch in range(1, args.epochs + 1):
    time.sleep(args.sleep)
    log_metric("accuracy", ceiling * (1 - math.exp(-epoch / 2)), step=epoch)
record["end"] = time.time()
with open(path, "w") as f:
    json.dump(record, f)
"""

LRS = [0.1, 0.01, 0.001, 0.0001]


def config(
    tmp_path: Path,
    cluster: SlurmCluster,
    sweep: str = "",
    runs: str = "",
    compute_extra: str = "",
) -> CLI:
    """A configuration folder with a slurm compute `hpc` (its workdir in `tmp_path`), the
    training script, and the given sweep and run blocks; trials write to `tmp_path/jobs`."""
    folder = tmp_path / "config"
    folder.mkdir()
    (tmp_path / "jobs").mkdir()
    cli = CLI(folder, {**base_env(), "SLURM_CONF": str(cluster.conf)})
    cli.write("src/train.py", TRAIN)
    cli.write(
        "main.train.hcl",
        'compute "hpc" {\n'
        '  type      = "slurm"\n'
        '  partition = "debug"\n'
        f'  workdir   = "{tmp_path / "shared"}"\n'
        f"{compute_extra}"
        "}\n" + sweep + runs,
    )
    return cli


def grid_sweep(
    tmp_path: Path, *, array: bool, epochs: int = 3, sleep: float = 0.1, gate: str = ""
) -> str:
    """A grid sweep over LRS, two trials at a time; with `gate`, every trial waits for that
    file before it trains."""
    env = f'TEST_DIR = "{tmp_path / "jobs"}"' + (f', GATE = "{gate}"' if gate else "")
    return (
        'sweep "grid" {\n'
        '  experiment  = "hpc"\n'
        f"  slurm_array = {'true' if array else 'false'}\n"
        "  trial {\n"
        "    compute    = compute.hpc\n"
        '    source_dir = "src"\n'
        '    script     = "train.py"\n'
        f'    arguments  = ["--lr", param.lr, "--epochs", "{epochs}", "--sleep", "{sleep}"]\n'
        f"    env        = {{ {env} }}\n"
        "  }\n"
        '  sampling {\n    algorithm = "grid"\n  }\n'
        f'  parameter "lr" {{\n    distribution = "choice"\n    values = {json.dumps(LRS)}\n  }}\n'
        '  objective {\n    metric = "accuracy"\n    goal   = "maximize"\n  }\n'
        "  limits {\n    max_total_runs      = 4\n    max_concurrent_runs = 2\n  }\n"
        "}\n"
    )


def jobs(tmp_path: Path) -> dict[float, dict]:
    """What each trial's script recorded of its job, by learning rate."""
    return {float(p.stem): json.loads(p.read_text()) for p in (tmp_path / "jobs").glob("*.json")}


def completed_grid(cli: CLI) -> dict:
    """The grid sweep, checked to have completed its four trials with their metrics."""
    shown = json.loads(ok(cli("sweeps", "show", "grid", "--json")).out)
    assert shown["status"] == "completed", shown
    trials = shown["record"]["trials"]
    assert sorted(t["params"]["lr"] for t in trials) == sorted(LRS), trials
    assert all(t["status"] == "completed" and t["reports"] == 3 for t in trials), trials
    assert shown["record"]["best"]["params"] == {"lr": 0.01}, shown["record"]["best"]
    for t in trials:
        metrics = json.loads(ok(cli("runs", "metrics", t["run_id"], "--json")).out)
        assert [p["step"] for p in metrics["points"]] == [1, 2, 3], metrics
    return shown


def test_a_grid_sweep_runs_each_trial_as_its_own_job(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    cli = config(tmp_path, slurm_cluster, grid_sweep(tmp_path, array=False))
    ok(cli("apply", "-auto-approve", timeout=300))
    completed_grid(cli)
    seen = jobs(tmp_path)
    assert sorted(seen) == sorted(LRS), seen
    assert len({j["SLURM_JOB_ID"] for j in seen.values()}) == 4, seen
    assert all(j["SLURM_ARRAY_JOB_ID"] == "" for j in seen.values()), seen


def test_slurm_array_submits_the_trials_as_one_job_array(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    gate = tmp_path / "jobs" / "go"
    cli = config(tmp_path, slurm_cluster, grid_sweep(tmp_path, array=True, gate=str(gate)))
    ok(cli("apply", "-auto-approve", "--detach"))

    # Two tasks run (held at the gate); Slurm holds the other two back (%2), and
    # `compute show` lists all four with the trial run each one is.
    def queued() -> list[dict] | None:
        info = json.loads(ok(cli("compute", "show", "hpc", "--json")).out)
        held = [j for j in info["jobs"] if j["reason"] == "JobArrayTaskLimit"]
        return info["jobs"] if len(held) == 2 and len(info["jobs"]) == 4 else None

    listed = wait_until("two array tasks held back by the array's limit", queued)
    trials = json.loads(ok(cli("sweeps", "show", "grid", "--json")).out)["record"]["trials"]
    assert {j["run_id"] for j in listed} == {t["run_id"] for t in trials}, (listed, trials)
    assert {j["address"] for j in listed} == {f"sweep.grid[{i}]" for i in range(4)}, listed
    gate.touch()
    wait_until(
        "the sweep to end",
        lambda: (
            json.loads(ok(cli("sweeps", "show", "grid", "--json")).out)["status"]
            not in ("queued", "running")
        ),
        timeout=300,
    )
    shown = completed_grid(cli)
    seen = jobs(tmp_path)
    (array_id,) = {j["SLURM_ARRAY_JOB_ID"] for j in seen.values()}
    assert array_id, seen
    assert sorted(j["SLURM_ARRAY_TASK_ID"] for j in seen.values()) == ["0", "1", "2", "3"], seen
    # Slurm itself knows one array of four tasks, at most two of them running at a time.
    tasks = slurm_cluster.run(
        "squeue", "--noheader", "--array", "--states=all", f"--jobs={array_id}", "--format=%i"
    ).stdout.split()
    assert sorted(tasks) == [f"{array_id}_{i}" for i in range(4)], tasks
    record = slurm_cluster.run("scontrol", "show", "job", array_id).stdout
    assert f"ArrayJobId={array_id}" in record, record
    (script,) = (tmp_path / "shared" / "arrays").glob("*/job.sbatch")
    assert "#SBATCH --array=0-3%2\n" in script.read_text(), script.read_text()
    # Each trial's run is followed as its own array task (JOBID_TASK).
    from trainform.state.sqlite import SQLiteStateStore

    store = SQLiteStateStore(cli.cwd / ".trainform" / "state.db")
    handles = {r["id"]: r["record"]["handle"] for r in store.runs()}
    for t in shown["record"]["trials"]:
        task = seen[t["params"]["lr"]]["SLURM_ARRAY_TASK_ID"]
        assert handles[t["run_id"]]["job_id"] == f"{array_id}_{task}", handles


def test_slurm_array_is_refused_at_plan_time_where_trials_depend_on_results(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    sweep = grid_sweep(tmp_path, array=True).replace(
        '  sampling {\n    algorithm = "grid"\n  }\n',
        '  sampling {\n    algorithm = "random"\n  }\n'
        '  early_termination {\n    policy = "bandit"\n    slack_factor = 0.2\n  }\n',
    )
    cli = config(tmp_path, slurm_cluster, sweep)
    failed(
        cli("plan"),
        "main.train.hcl:",
        "sweep.grid",
        "slurm_array = true with random sampling cannot use early_termination policy 'bandit'",
    )


def test_a_bandit_policy_cancels_the_job_of_a_hopeless_trial(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    # lr 1.0 tops out at 0.6, below 0.9 / 1.2: the bandit stops it while 0.01 goes on.
    sweep = (
        grid_sweep(tmp_path, array=False, epochs=20, sleep=0.5)
        .replace(json.dumps(LRS), "[0.01, 1.0]")
        .replace(
            '  sampling {\n    algorithm = "grid"\n  }\n',
            '  sampling {\n    algorithm = "grid"\n  }\n'
            "  early_termination {\n"
            '    policy           = "bandit"\n'
            "    slack_factor     = 0.2\n"
            "    delay_evaluation = 2\n"
            "  }\n",
        )
        .replace("max_total_runs      = 4", "max_total_runs      = 2")
    )
    cli = config(tmp_path, slurm_cluster, sweep)
    ok(cli("apply", "-auto-approve", timeout=300))
    shown = json.loads(ok(cli("sweeps", "show", "grid", "--json")).out)
    trials = {t["params"]["lr"]: t for t in shown["record"]["trials"]}
    assert trials[1.0]["status"] == "stopped", trials
    assert "bandit threshold" in trials[1.0]["stopped"], trials
    assert trials[0.01]["status"] == "completed" and trials[0.01]["reports"] == 20, trials
    seen = jobs(tmp_path)
    assert "end" not in seen[1.0], seen  # it never reached its last epoch
    # Its job was ended through Slurm (scancel signals the batch shell: CANCELLED, or
    # FAILED when the launcher exits on SIGTERM first), long before its 20 epochs.
    job = slurm_cluster.job(seen[1.0]["SLURM_JOB_ID"])
    assert job is not None and job.state in ("CANCELLED", "FAILED"), job
    run = json.loads(ok(cli("runs", "show", trials[1.0]["run_id"], "--json")).out)
    assert run["status"] == "canceled", run


def test_max_concurrent_runs_is_slurms_to_enforce_and_compute_show_lists_the_queue(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    runs = "".join(
        f'run "{name}" {{\n'
        '  experiment = "hpc"\n'
        "  compute    = compute.hpc\n"
        '  source_dir = "src"\n'
        '  script     = "train.py"\n'
        f'  arguments  = ["--lr", "{lr}", "--epochs", "4", "--sleep", "1"]\n'
        f'  env        = {{ TEST_DIR = "{tmp_path / "jobs"}" }}\n'
        "}\n"
        for name, lr in (("first", 0.1), ("second", 0.2))
    )
    cli = config(tmp_path, slurm_cluster, runs=runs, compute_extra="  max_concurrent_runs = 1\n")
    ok(cli("apply", "-auto-approve", "--detach"))

    def waiting() -> dict | None:
        for name in ("first", "second"):
            run = json.loads(ok(cli("runs", "show", f"run.{name}", "--json")).out)
            if run["status"] == "queued" and "PENDING (Dependency)" in str(run.get("message")):
                return {**run, "address": f"run.{name}"}
        return None

    pending = wait_until("one run's job pending on its slot", waiting)
    info = json.loads(ok(cli("compute", "show", "hpc", "--json")).out)
    assert {p["name"] for p in info["partitions"]} == {"debug", "gpu"}, info
    assert {n["name"] for n in info["nodes"]} == {"n1", "n2"}, info
    (queued,) = [j for j in info["jobs"] if j["run_id"] == pending["id"]]
    assert queued["state"] == "PENDING" and queued["reason"] == "Dependency", info
    assert queued["address"] == pending["address"], info
    text = ok(cli("compute", "show", "hpc")).out
    assert "PARTITION" in text and "debug*" in text and "gpu" in text, text
    assert pending["address"] in text and "Dependency" in text, text
    assert "n1" in text and "n2" in text, text

    for name in ("first", "second"):
        ok(cli("runs", "wait", f"run.{name}", timeout=300))
    seen = jobs(tmp_path)
    first, second = sorted(seen.values(), key=lambda j: j["start"])
    assert first["end"] <= second["start"], seen  # never both at once
    # Slurm held the job back, not the launcher: no slot files in the run folders' specs.
    for spec in (tmp_path / "shared" / "runs").glob("*/spec.json"):
        assert "slots" not in json.loads(spec.read_text()), spec


def test_slurm_array_is_refused_at_plan_time_on_a_compute_without_job_arrays(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "config"
    folder.mkdir()
    (tmp_path / "jobs").mkdir()
    cli = CLI(folder, base_env())
    cli.write("src/train.py", TRAIN)
    cli.write(
        "main.train.hcl",
        'compute "box" {\n  type = "local"\n}\n'
        + grid_sweep(tmp_path, array=True).replace("compute.hpc", "compute.box"),
    )
    failed(cli("plan"), "main.train.hcl:", "slurm_array = true needs a compute of type 'slurm'")
