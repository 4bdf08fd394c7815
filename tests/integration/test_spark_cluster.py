"""The Spark test cluster itself (tests/spark.py): the master's JSON status lists the alive
worker, a PySpark word count submitted with the bundled spark-submit runs on it, and the
master's kill action ends an application so that no executor is left."""

from __future__ import annotations

import subprocess
from pathlib import Path

from helpers import base_env, wait_until
from spark import SparkCluster

WORDS = """\
import sys, time
from pyspark.sql import SparkSession
spark = SparkSession.builder.appName(sys.argv[1]).getOrCreate()
sc = spark.sparkContext
print("app", sc.applicationId, flush=True)
if sys.argv[1] == "sleeper":
    sc.parallelize(range(2), 2).foreach(lambda _: time.sleep(300))
counts = sc.parallelize(["a b", "b c c"]).flatMap(str.split).map(lambda w: (w, 1))
print(sorted(counts.reduceByKey(lambda a, b: a + b).collect()), flush=True)
spark.stop()
"""


def submit(cluster: SparkCluster, script: Path, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            str(cluster.home / "bin" / "spark-submit"),
            "--master",
            cluster.master,
            "--conf",
            "spark.ui.showConsoleProgress=false",
            str(script),
            name,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**base_env(), **cluster.submit_env},
    )


def test_the_master_lists_its_alive_worker(spark_cluster: SparkCluster) -> None:
    status = spark_cluster.status()
    assert status["aliveworkers"] == 1 and status["cores"] == 2, status
    assert status["workers"][0]["state"] == "ALIVE", status


def test_a_word_count_runs_on_the_cluster(tmp_path: Path, spark_cluster: SparkCluster) -> None:
    script = tmp_path / "words.py"
    script.write_text(WORDS)
    proc = submit(spark_cluster, script, "words")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "[('a', 1), ('b', 2), ('c', 2)]" in out, out
    app = out.split("app ", 1)[1].split()[0]
    done = wait_until(
        "the application completed",
        lambda: [a for a in spark_cluster.status()["completedapps"] if a["id"] == app],
    )
    assert done[0]["state"] == "FINISHED", done


def test_the_masters_kill_action_leaves_no_executor(
    tmp_path: Path, spark_cluster: SparkCluster
) -> None:
    script = tmp_path / "words.py"
    script.write_text(WORDS)
    proc = submit(spark_cluster, script, "sleeper")
    try:
        app = wait_until(
            "the application running",
            lambda: [a["id"] for a in spark_cluster.status()["activeapps"]],
            timeout=180,
        )[0]
        wait_until("its executor holding the cores", lambda: spark_cluster.status()["coresused"])
        spark_cluster.kill(app)
        wait_until("no active application", lambda: not spark_cluster.status()["activeapps"])
        assert spark_cluster.status()["coresused"] == 0
        assert proc.wait(timeout=120) != 0  # the driver learns its application was killed
    finally:
        proc.kill()
        proc.wait()
