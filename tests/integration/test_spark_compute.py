"""`compute { type = "spark" }` through the real CLI: attaching to the session's real
standalone cluster (tests/spark.py) records Spark's version and the alive workers, cores and
memory, and `compute show` lists the worker; a `local[2]` compute runs a PySpark job whose
result lands in the run's outputs; refresh sees a worker gone (drift) and a master gone
(unreachable: the plan stops, naming the master's UI); plan refuses what cannot work (a
pyspark pin other than the cluster's version, cluster deploy mode on standalone, a command
instead of a script, a spark { } block on another compute, a master or conf key Spark does
not know) with the file and line, and attach names a spark_home without Spark."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import spark
from helpers import CLI, failed, ok, unavailable, wait_until
from spark import SparkCluster

# A word count whose words are split by a function of another module of the snapshot (so
# the Python workers import it from the --py-files zip), with its result in the outputs.
WORDS = """\
import json, os
from pyspark.sql import SparkSession
from helper import split

spark = SparkSession.builder.getOrCreate()
lines = spark.sparkContext.parallelize(["a b", "b c c"], 2)
counts = dict(lines.flatMap(split).map(lambda w: (w, 1)).reduceByKey(lambda a, b: a + b).collect())
os.makedirs("outputs", exist_ok=True)
with open("outputs/counts.json", "w") as f:
    json.dump(counts, f, sort_keys=True)
print("counts", json.dumps(counts, sort_keys=True), flush=True)
spark.stop()
"""


def run_block(extra: str = "", compute: str = "compute.spark", environment: str = "") -> str:
    return (
        'run "train" {\n'
        '  experiment = "spark"\n'
        f"  compute    = {compute}\n"
        + (f"  environment = {environment}\n" if environment else "")
        + '  source_dir = "src"\n'
        + extra
        + "}\n"
    )


def line_of(text: str, needle: str) -> int:
    """The 1-based line of ``needle`` in ``text``."""
    return text[: text.index(needle)].count("\n") + 1


def facts(cli: CLI, address: str = "compute.spark") -> dict[str, Any]:
    """The compute's recorded facts (`show -json`, Terraform's state representation)."""
    data = json.loads(ok(cli("show", "-json")).out)
    found = [r for r in data["values"]["root_module"]["resources"] if r["address"] == address]
    assert found, data
    return dict(found[0]["values"]["facts"])


def test_attach_records_the_clusters_version_workers_cores_and_memory(
    cli: CLI, spark_cluster: SparkCluster
) -> None:
    cli.write("main.train.hcl", spark.compute_block(spark_cluster))
    ok(cli("apply", "-auto-approve"))
    got = facts(cli)
    assert got["spark_version"] == "4.3.0", got
    assert got["master_kind"] == "standalone", got
    assert got["master_status"] == "ALIVE", got
    assert (got["workers"], got["alive_workers"], got["cores"], got["memory_mb"]) == (
        1,
        1,
        2,
        2048,
    ), got
    assert got["spark_home"] == str(spark_cluster.home), got
    assert got["spark_submit"] == str(spark_cluster.home / "bin" / "spark-submit"), got
    shown = ok(cli("state", "show", "compute.spark")).out
    assert 'spark_version = "4.3.0"' in shown and "alive_workers = 1" in shown, shown
    # Nothing changed: a refresh (which reads the version from Spark's files) agrees.
    ok(cli("plan", "-detailed-exitcode"), 0)

    # compute show: the master's live status, its worker and applications.
    described = json.loads(ok(cli("compute", "show", "spark", "--json")).out)
    worker = spark_cluster.status()["workers"][0]
    assert [(w["id"], w["host"], w["state"]) for w in described["workers"]] == [
        (worker["id"], "127.0.0.1", "ALIVE")
    ], described
    assert described["workers"][0]["cores"].endswith("/2"), described
    assert described["workers"][0]["memory_mb"].endswith("/2048"), described
    assert isinstance(described["applications"], list), described
    text = ok(cli("compute", "show", "compute.spark")).out
    assert f"spark 4.3.0, master {spark_cluster.master} (ALIVE)" in text, text
    assert any(worker["id"] in line and "ALIVE" in line for line in text.splitlines()), text
    assert "applications:" in text, text


def test_a_local_compute_attaches_and_runs_a_pyspark_job(cli: CLI) -> None:
    """The issue's "a local[2] compute": no cluster, the driver's own executors."""
    why = spark.missing()
    if why:
        unavailable(why)
    cli.write("src/words.py", WORDS)
    cli.write("src/helper.py", "def split(line):\n    return line.split()\n")
    cli.write(
        "main.train.hcl",
        spark.compute_block(None)
        + spark.environment_block()
        + run_block('  script     = "words.py"\n', environment="environment.py"),
    )
    ok(cli("apply", "-auto-approve", timeout=600))
    got = facts(cli)
    assert (got["master_kind"], got["cores"], got["spark_version"]) == ("local", 2, "4.3.0"), got
    assert "alive_workers" not in got, got  # no master to ask
    run = json.loads(ok(cli("runs", "show", "run.train", "--json")).out)
    assert run["status"] == "completed", run
    counts = Path(run["outputs_path"]) / "counts.json"
    assert json.loads(counts.read_text()) == {"a": 1, "b": 2, "c": 2}
    assert run["spark"]["ui"].startswith("http://"), run
    logs = ok(cli("runs", "logs", "run.train")).out
    assert 'counts {"a": 1, "b": 2, "c": 2}' in logs, logs[-3000:]
    # The run's folder holds the zip the executors imported helper.py from.
    run_dir = cli.cwd / ".trainform" / "spark" / "runs" / run["id"]
    assert (run_dir / "snapshot-py.zip").is_file(), sorted(p.name for p in run_dir.iterdir())


def test_a_worker_gone_is_drift_and_a_master_gone_stops_the_plan(cli: CLI, tmp_path: Path) -> None:
    why = spark.missing()
    if why:
        unavailable(why)
    cluster = spark.start_cluster(tmp_path / "own-cluster")  # never the session's cluster
    try:
        cli.write("main.train.hcl", spark.compute_block(cluster))
        ok(cli("apply", "-auto-approve"))
        assert facts(cli)["alive_workers"] == 1
        ok(cli("plan", "-detailed-exitcode"), 0)

        os.killpg(cluster.processes["worker"].pid, signal.SIGTERM)
        cluster.processes["worker"].wait(timeout=60)
        wait_until("the master sees its worker gone", lambda: cluster.status()["aliveworkers"] == 0)
        plan = ok(cli("plan"))
        assert "compute.spark has changed" in plan.out, plan.out
        assert "facts.alive_workers = 1 -> 0" in plan.out, plan.out
        assert "facts.cores = 2 -> 0" in plan.out, plan.out
        assert "facts.memory_mb = 2048 -> 0" in plan.out, plan.out
        # A refresh-only apply records what is there now.
        ok(cli("apply", "-refresh-only", "-auto-approve"))
        assert facts(cli)["alive_workers"] == 0

        os.killpg(cluster.processes["master"].pid, signal.SIGTERM)
        cluster.processes["master"].wait(timeout=60)
        with pytest.raises(OSError):
            cluster.status()
        # As for an unreachable ssh host: the plan stops, naming the resource, the master's
        # UI it asked, and how to plan without reading it; it never plans a re-attach.
        plan = failed(
            cli("plan", "-detailed-exitcode"),
            "cannot read compute.spark",
            f"the Spark master {cluster.master} did not answer",
            f"{cluster.ui}/json/",
            "-refresh=false",
        )
        assert "will be attached" not in plan.all, plan.all
        ok(cli("plan", "-refresh=false", "-detailed-exitcode"), 0)
        # Detaching a compute whose master is gone still works (it touches nothing).
        ok(cli("destroy", "-auto-approve"))
    finally:
        cluster.stop()


# -- plan-time refusals ----------------------------------------------------------------------


def test_a_pyspark_pin_other_than_the_clusters_version_is_refused(
    cli: CLI, spark_cluster: SparkCluster
) -> None:
    cli.write("src/train.py", "print(1)\n")
    compute = spark.compute_block(spark_cluster)
    cli.write("main.train.hcl", compute)
    ok(cli("apply", "-auto-approve"))  # the cluster's version is known once attached

    def with_pin(pin: str) -> str:
        return (
            compute
            + f'environment "py" {{\n  pip = ["{pin}"]\n}}\n'
            + run_block('  script     = "train.py"\n', environment="environment.py")
        )

    text = with_pin("pyspark==3.5.1")
    cli.write("main.train.hcl", text)
    failed(
        cli("plan"),
        f"main.train.hcl:{line_of(text, 'run ')}",
        "run.train",
        "pins pyspark 3.5.1",
        "runs 4.3.0",
    )
    # The cluster's own version is fine (the plan then builds the environment and runs).
    cli.write("main.train.hcl", with_pin("pyspark==4.3.0"))
    plan = ok(cli("plan"))
    assert "run.train will be" in plan.out, plan.out


REFUSED = {
    "cluster deploy mode on standalone": (
        "spark://127.0.0.1:7077",
        "",
        '  script = "train.py"\n  spark {\n    deploy_mode = "cluster"\n  }\n',
        'run "train"',
        [
            'deploy_mode = "cluster" needs a yarn master',
            "with a standalone master Spark cannot run a Python driver",
        ],
    ),
    "cluster deploy mode on local": (
        "local[2]",
        "",
        '  script = "train.py"\n  spark {\n    deploy_mode = "cluster"\n  }\n',
        'run "train"',
        ["with a local master Spark cannot run a Python driver"],
    ),
    "a command instead of a script": (
        "local[2]",
        "",
        '  command = ["python", "train.py"]\n',
        'run "train"',
        ["a run on spark compute sets script (the driver), not command"],
    ),
    "a bad executor memory": (
        "local[2]",
        "",
        '  script = "train.py"\n  spark {\n    executor_memory = "lots"\n  }\n',
        'run "train"',
        ["executor_memory 'lots' must be a size"],
    ),
    "a master Spark does not know": (
        "mesos://x",
        "",
        '  script = "train.py"\n',
        'compute "spark"',
        ["master 'mesos://x' is not spark://HOST:PORT"],
    ),
    "a conf key outside spark.*": (
        "local[2]",
        '  conf = { "foo.bar" = "1" }\n',
        '  script = "train.py"\n',
        'compute "spark"',
        ["conf key 'foo.bar' is not a Spark setting (spark.*)"],
    ),
    "an env name that is no variable": (
        "local[2]",
        '  env = { "A-B" = "1" }\n',
        '  script = "train.py"\n',
        'compute "spark"',
        ["env name 'A-B' is not a variable name"],
    ),
    "gateway options without a gateway": (
        "local[2]",
        "  port = 2222\n",
        '  script = "train.py"\n',
        'compute "spark"',
        ["port set without gateway"],
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_plan_refuses_with_file_and_line(cli: CLI, case: str) -> None:
    master, compute_extra, run_extra, where, messages = REFUSED[case]
    cli.write("src/train.py", "print(1)\n")
    text = (
        'compute "spark" {\n'
        '  type   = "spark"\n'
        f'  master = "{master}"\n'
        f"{compute_extra}"
        "}\n" + run_block(run_extra)
    )
    cli.write("main.train.hcl", text)
    failed(cli("plan"), f"main.train.hcl:{line_of(text, where)}", *messages)


def test_a_spark_block_on_a_run_of_local_compute_is_refused(cli: CLI) -> None:
    cli.write("src/train.py", "print(1)\n")
    text = 'compute "here" {\n  type = "local"\n}\n' + run_block(
        '  script     = "train.py"\n  spark {\n    num_executors = 2\n  }\n',
        compute="compute.here",
    )
    cli.write("main.train.hcl", text)
    failed(
        cli("plan"),
        f"main.train.hcl:{line_of(text, 'run ')}",
        "a spark { } block",
        "compute.here is of type 'local'",
    )


def test_a_spark_home_without_spark_fails_attach_naming_the_folder(
    cli: CLI, tmp_path: Path
) -> None:
    empty = tmp_path / "not-spark"
    empty.mkdir()
    cli.write(
        "main.train.hcl",
        f'compute "spark" {{\n  type       = "spark"\n  master     = "local[2]"\n'
        f'  spark_home = "{empty}"\n}}\n',
    )
    result = failed(
        cli("apply", "-auto-approve"), f"no spark-submit on this machine in {empty}/bin"
    )
    assert "set spark_home to Spark's folder" in result.all, result.all
    assert "compute.spark" in result.all, result.all


def test_a_sensitive_value_in_the_computes_env_is_refused_without_showing_it(cli: CLI) -> None:
    """A spark compute's env and conf go into state, run handles and spark-submit's command
    line: a sensitive value there is refused at plan time (file:line), and not shown."""
    cli.write("src/train.py", "print(1)\n")
    text = (
        'variable "tok" {\n  type = string\n  sensitive = true\n  default = "s3cr3t-value"\n}\n'
        'compute "spark" {\n'
        '  type   = "spark"\n'
        '  master = "local[2]"\n'
        "  env    = { TOKEN = var.tok }\n"
        "}\n" + run_block('  script = "train.py"\n')
    )
    cli.write("main.train.hcl", text)
    result = failed(
        cli("plan"),
        f"main.train.hcl:{line_of(text, 'compute ')}",
        "env.TOKEN is sensitive",
        "give secrets to the run's env",
    )
    assert "s3cr3t-value" not in result.all
