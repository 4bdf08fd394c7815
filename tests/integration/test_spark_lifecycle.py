"""The lifecycle of runs on a spark compute (issue 16), through the real CLI on the real Spark
standalone test cluster (tests/spark.py): `runs cancel` mid-run, `max_duration`, `runs cancel`
once the launcher was killed with SIGKILL, Ctrl-C to `apply`, and a sweep whose trials are
each one application. After each ending the master lists no active application, this run's
application among its completed ones, no core in use, and no executor JVM of it is left on
this machine (the worker runs here): a run's end is the application's end on the cluster.

The worker has 2 cores, so every test first waits until the master runs no application, and
leaves none running (its cleanup cancels the run and kills what is left on the master)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helpers import CLI, base_env, ok, wait_until
from spark import SparkCluster, compute_block, environment_block
from test_slurm_scenarios import Streamed

# A driver whose two tasks (one per core) hold their executor until the file named by its
# argument exists (at most 300 s), so the test decides when the application ends.
HELD = """\
import os, sys, time
from pyspark.sql import SparkSession

release = sys.argv[1]
spark = SparkSession.builder.getOrCreate()
sc = spark.sparkContext
print("app", sc.applicationId, flush=True)


def held(_):
    deadline = time.time() + 300
    while not os.path.exists(release) and time.time() < deadline:
        time.sleep(0.2)


sc.parallelize(range(2), 2).foreach(held)
print("released", flush=True)
spark.stop()
"""

# A sweep trial: one small job, its result logged as the metric "total".
TRIAL = """\
import argparse
from pyspark.sql import SparkSession
from trainform.tracking import log_metric

parser = argparse.ArgumentParser()
parser.add_argument("--n", type=int, required=True)
args, _ = parser.parse_known_args()
spark = SparkSession.builder.getOrCreate()
sc = spark.sparkContext
print("app", sc.applicationId, flush=True)
log_metric("total", float(sc.parallelize(range(args.n), 2).sum()), step=1)
spark.stop()
"""


def spark_cli(tmp_path: Path, cluster: SparkCluster, blocks: str) -> CLI:
    """A configuration folder with the cluster's spark compute, `.venv-spark`'s interpreter
    as environment `py`, both scripts in `src`, and ``blocks``."""
    folder = tmp_path / "config"
    folder.mkdir()
    cli = CLI(folder, base_env())
    cli.write("src/held.py", HELD)
    cli.write("src/trial.py", TRIAL)
    cli.write("main.train.hcl", compute_block(cluster) + environment_block() + blocks)
    return cli


def held_run(tmp_path: Path, extra: str = "") -> str:
    """A run `held` of HELD, released by ``tmp_path/release`` (``extra``: more lines)."""
    return (
        'run "held" {\n'
        '  experiment  = "spark"\n'
        "  compute     = compute.spark\n"
        "  environment = environment.py\n"
        '  source_dir  = "src"\n'
        '  script      = "held.py"\n'
        f'  arguments   = ["{tmp_path / "release"}"]\n'
        f"{extra}"
        "}\n"
    )


def shown(cli: CLI, run: str = "run.held") -> dict[str, Any]:
    return json.loads(ok(cli("runs", "show", run, "--json")).out)  # type: ignore[no-any-return]


def app_id(cli: CLI, run: str = "run.held") -> str:
    """The run's application id, once its launcher found it in the driver's log."""
    found = wait_until(
        f"{run}'s application id in `runs show --json`",
        lambda: (shown(cli, run).get("spark") or {}).get("app_id"),
        timeout=180,
    )
    assert str(found).startswith("app-"), found
    return str(found)


def processes_naming(text: str) -> list[int]:
    """Processes on this machine whose command line holds ``text``: an application id names
    its executors (`CoarseGrainedExecutorBackend ... --app-id APP`), `trainform-RUN_ID` the
    run's driver (spark-submit's `--name`)."""
    marker = text.encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker in Path(f"/proc/{entry}/cmdline").read_bytes():
                found.append(int(entry))
    return found


def active(cluster: SparkCluster) -> list[str]:
    return [a["id"] for a in cluster.status()["activeapps"]]


def completed(cluster: SparkCluster) -> dict[str, str]:
    """Completed application id → final state (FINISHED, KILLED, FAILED)."""
    return {a["id"]: a["state"] for a in cluster.status()["completedapps"]}


def idle(cluster: SparkCluster) -> None:
    """Wait until the master runs no application, so the worker's 2 cores are free."""
    wait_until("no active application on the master", lambda: not active(cluster), timeout=300)


def running(cluster: SparkCluster, app: str) -> None:
    """Wait until ``app`` is active with both cores and its executor JVM runs here."""
    wait_until(
        f"{app} active on both cores with its executor up",
        lambda: (
            active(cluster) == [app]
            and cluster.status()["coresused"] == 2
            and processes_naming(app)
        ),
        timeout=180,
    )


def gone(cluster: SparkCluster, app: str, states: tuple[str, ...]) -> None:
    """``app`` ended on the cluster: no active application, ``app`` completed in one of
    ``states``, no core in use, no executor of it left on this machine."""
    wait_until("no active application on the master", lambda: not active(cluster), timeout=120)
    assert completed(cluster).get(app) in states, (app, cluster.status()["completedapps"])
    assert cluster.status()["coresused"] == 0, cluster.status()
    wait_until(f"no executor of {app} left", lambda: not processes_naming(app), timeout=60)


@contextlib.contextmanager
def cleaned(cli: CLI, cluster: SparkCluster, tmp_path: Path, *runs: str) -> Iterator[None]:
    """Whatever the test leaves: the release file made, the runs canceled, and any
    application still active on the master killed."""
    try:
        yield
    finally:
        (tmp_path / "release").touch()
        for run in runs:
            cli("runs", "cancel", run)
        for app in active(cluster):
            with contextlib.suppress(OSError):
                cluster.kill(app)


def test_runs_cancel_mid_run_ends_the_application_on_the_cluster(
    tmp_path: Path, spark_cluster: SparkCluster
) -> None:
    idle(spark_cluster)
    cli = spark_cli(tmp_path, spark_cluster, held_run(tmp_path))
    with cleaned(cli, spark_cluster, tmp_path, "run.held"):
        ok(cli("apply", "-auto-approve", "--detach"))
        app = app_id(cli)
        running(spark_cluster, app)
        canceled = ok(cli("runs", "cancel", "run.held"))
        assert "canceled" in canceled.out, canceled.out
        record = shown(cli)
        assert record["status"] == "canceled", record
        assert record["spark"]["app_id"] == app, record
        gone(spark_cluster, app, ("KILLED", "FINISHED"))
        # The driver too: its spark-submit is named after the run.
        assert not processes_naming(f"trainform-{record['id']}"), "the driver is still running"
        assert "released" not in ok(cli("runs", "logs", "run.held")).out


def test_max_duration_times_the_run_out_and_ends_its_application(
    tmp_path: Path, spark_cluster: SparkCluster
) -> None:
    idle(spark_cluster)
    run = held_run(tmp_path, '  max_duration = "20s"\n  grace_period = "5s"\n')
    cli = spark_cli(tmp_path, spark_cluster, run)
    with cleaned(cli, spark_cluster, tmp_path, "run.held"):
        ok(cli("apply", "-auto-approve", "--detach"))
        app = app_id(cli)
        waited = cli("runs", "wait", "run.held", "--quiet", timeout=180)
        assert waited.code == 1, waited.all
        record = shown(cli)
        assert record["status"] == "timed_out", record
        gone(spark_cluster, app, ("KILLED", "FINISHED"))
        assert not processes_naming(f"trainform-{record['id']}"), "the driver is still running"


def test_runs_cancel_after_the_launcher_was_killed_kills_the_application_on_the_master(
    tmp_path: Path, spark_cluster: SparkCluster
) -> None:
    idle(spark_cluster)
    cli = spark_cli(tmp_path, spark_cluster, held_run(tmp_path))
    with cleaned(cli, spark_cluster, tmp_path, "run.held"):
        ok(cli("apply", "-auto-approve", "--detach"))
        app = app_id(cli)
        running(spark_cluster, app)
        run_id = shown(cli)["id"]
        status = cli.cwd / ".trainform" / "spark" / "runs" / run_id / "status.json"
        launcher = int(json.loads(status.read_text())["launcher_pid"])
        os.kill(launcher, signal.SIGKILL)
        wait_until("the launcher gone", lambda: not Path(f"/proc/{launcher}/cmdline").exists())
        # Its driver goes on: the run is not over, and the application still runs.
        record = shown(cli)
        assert record["status"] == "running", record
        assert active(spark_cluster) == [app] and processes_naming(app)
        ok(cli("runs", "cancel", "run.held"))
        assert shown(cli)["status"] in ("canceled", "lost"), shown(cli)
        gone(spark_cluster, app, ("KILLED", "FINISHED"))
        assert not processes_naming(f"trainform-{run_id}"), "the driver is still running"


def test_ctrl_c_to_apply_leaves_the_application_running_and_the_next_apply_submits_once(
    tmp_path: Path, spark_cluster: SparkCluster
) -> None:
    idle(spark_cluster)
    before = set(completed(spark_cluster))
    cli = spark_cli(tmp_path, spark_cluster, held_run(tmp_path))
    with cleaned(cli, spark_cluster, tmp_path, "run.held"):
        apply = Streamed(cli.popen("apply", "-auto-approve"))
        apply.wait_for(r"app app-\d+-\d+", "the driver's application id in apply's output")
        app = app_id(cli)
        apply.proc.send_signal(signal.SIGINT)
        assert apply.finish() == 130, apply.text
        assert "run.held keeps running in the background" in apply.text, apply.text
        running(spark_cluster, app)
        run_id = shown(cli)["id"]
        # Applied again while the application runs: nothing to change, nothing submitted.
        again = ok(cli("apply", "-auto-approve"))
        assert "No changes" in again.out, again.out
        assert active(spark_cluster) == [app]
        (tmp_path / "release").touch()
        waited = ok(cli("runs", "wait", "run.held", "--quiet", timeout=180))
        assert "completed" in waited.out, waited.out
        ok(cli("apply", "-auto-approve"))
        ok(cli("plan", "-detailed-exitcode"))
        record = shown(cli)
        assert record["status"] == "completed" and record["id"] == run_id, record
        assert "released" in ok(cli("runs", "logs", "run.held")).out
        gone(spark_cluster, app, ("FINISHED",))
        new = {a: s for a, s in completed(spark_cluster).items() if a not in before}
        assert new == {app: "FINISHED"}, new
        runs = cli.cwd / ".trainform" / "spark" / "runs"
        assert [p.name for p in runs.iterdir()] == [run_id]


def test_a_sweeps_trials_are_one_application_each(
    tmp_path: Path, spark_cluster: SparkCluster
) -> None:
    idle(spark_cluster)
    before = set(completed(spark_cluster))
    sweep = (
        'sweep "grid" {\n'
        '  experiment = "spark"\n'
        "  trial {\n"
        "    compute     = compute.spark\n"
        "    environment = environment.py\n"
        '    source_dir  = "src"\n'
        '    script      = "trial.py"\n'
        '    arguments   = ["--n", param.n]\n'
        "  }\n"
        '  sampling {\n    algorithm = "grid"\n  }\n'
        '  parameter "n" {\n    distribution = "choice"\n    values = [10, 100]\n  }\n'
        '  objective {\n    metric = "total"\n    goal   = "maximize"\n  }\n'
        "  limits {\n    max_total_runs      = 2\n    max_concurrent_runs = 1\n  }\n"
        "}\n"
    )
    cli = spark_cli(tmp_path, spark_cluster, sweep)
    with cleaned(cli, spark_cluster, tmp_path):
        ok(cli("apply", "-auto-approve", timeout=600))
        swept = json.loads(ok(cli("sweeps", "show", "grid", "--json")).out)
        assert swept["status"] == "completed", swept
        trials = swept["record"]["trials"]
        assert sorted(t["params"]["n"] for t in trials) == [10, 100], trials
        assert all(t["status"] == "completed" for t in trials), trials
        apps = {}
        for t in trials:
            record = shown(cli, t["run_id"])
            assert record["status"] == "completed", record
            apps[record["spark"]["app_id"]] = t
            metrics = json.loads(ok(cli("runs", "metrics", t["run_id"], "--json")).out)
            expected = float(sum(range(int(t["params"]["n"]))))
            assert [(p["name"], p["value"], p["step"]) for p in metrics["points"]] == [
                ("total", expected, 1)
            ], metrics
        assert swept["record"]["best"]["params"] == {"n": 100}, swept["record"]["best"]
        # Exactly two new applications on the master, one per trial, both finished.
        idle(spark_cluster)
        new = {a: s for a, s in completed(spark_cluster).items() if a not in before}
        assert new == dict.fromkeys(apps, "FINISHED"), (new, apps)
        assert spark_cluster.status()["coresused"] == 0
