"""Runs on `compute { type = "spark" }` through the real CLI on the real Spark standalone test
cluster (tests/spark.py): the run's script is the driver (`spark-submit` in client mode under
the launcher), its application shows in `runs show` and on the master, its outputs are
collected; the snapshot's modules, a zip named in `spark { py_files }` and the environment's
interpreter reach the executors; arguments arrive as written; a failing executor's exception
is the run's message; executor_memory is left out of the fingerprint and spark conf is not.

Each Spark application costs seconds on the worker's 2 cores, so one application serves
several tests (the module's `word_count` run), and every test starts on an idle cluster."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import CLI, base_env, ok, wait_until
from spark import SparkCluster, compute_block, environment_block, spark_python

IDLE_TIMEOUT = 600.0  # seconds: another session's applications may hold the worker's cores
RUN_TIMEOUT = 600.0  # seconds for `apply` to see a run through (only reached when failing)

HELPER = """\
def split(line):
    return line.split()
"""

WORD_COUNT = """\
import json, os, sys
import helper
from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("trainform-word-count").getOrCreate()
sc = spark.sparkContext
out = os.environ["TRAINFORM_OUTPUT_DIR"]

with open("data.txt") as f:
    lines = f.read().splitlines()
# helper.split is pickled by reference: each executor imports helper from the snapshot's zip.
counts = sc.parallelize(lines, 2).flatMap(helper.split).map(lambda w: (w, 1))
with open(os.path.join(out, "counts.txt"), "w") as f:
    for word, n in sorted(counts.reduceByKey(lambda a, b: a + b).collect()):
        f.write(f"{word} {n}\\n")

def on_executor(_):
    import helper, extra  # extra: only in libs/extra.zip, named in spark { py_files }
    return {
        "executable": sys.executable,
        "prefix": sys.prefix,
        "virtual_env": os.environ.get("VIRTUAL_ENV"),
        "helper_file": helper.__file__,
        "extra": extra.triple(7),
        "extra_file": extra.__file__,
    }

found = sc.parallelize([0], 1).map(on_executor).collect()[0]
with open(os.path.join(out, "result.json"), "w") as f:
    json.dump({"argv": sys.argv[1:], "executor": found}, f)
spark.stop()
"""

EXTRA = """\
def triple(x):
    return 3 * x
"""

# The third line is what `runs show` shows as the failure (the executor's exception).
FAILING = """\
from pyspark.sql import SparkSession

def check(record):
    if record == 0:
        raise ValueError(f"bad record {record}")
    return record

spark = SparkSession.builder.appName("trainform-failing").getOrCreate()
spark.sparkContext.parallelize([0, 1], 1).map(check).collect()
"""

SHUFFLE = """\
import json, os
from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("trainform-conf").getOrCreate()
with open(os.path.join(os.environ["TRAINFORM_OUTPUT_DIR"], "conf.json"), "w") as f:
    json.dump({"partitions": spark.conf.get("spark.sql.shuffle.partitions"),
               "app": spark.sparkContext.applicationId}, f)
spark.stop()
"""

ARGUMENTS = ["a b", "$HOME", "--flag=1;echo x"]
DATA = "the cat sat\non the mat\n\nthe end\n"


def spark_config(
    folder: Path,
    cluster: SparkCluster,
    script: str,
    run: str = "",
    files: dict[str, str] | None = None,
) -> CLI:
    """A configuration in ``folder`` with the cluster's spark compute, the `.venv-spark`
    environment and a run ``job`` of ``src/main.py`` = ``script`` (``run``: more lines in the
    run block; ``files``: more files under src)."""
    folder.mkdir(parents=True)
    cli = CLI(folder, base_env())
    cli.write("src/main.py", script)
    for name, text in (files or {}).items():
        cli.write(f"src/{name}", text)
    cli.write("main.train.hcl", job_config(cluster, run))
    return cli


def job_config(cluster: SparkCluster, run: str) -> str:
    return (
        compute_block(cluster) + environment_block() + 'run "job" {\n'
        '  experiment  = "spark"\n'
        "  compute     = compute.spark\n"
        "  environment = environment.py\n"
        '  source_dir  = "src"\n'
        '  script      = "main.py"\n'
        f"{run}"
        "}\n"
    )


def shown(cli: CLI) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(cli("runs", "show", "run.job", "--json")).out)
    return data


def app_ids(cluster: SparkCluster, kind: str) -> dict[str, str]:
    """Application id → state, of the master's ``activeapps`` or ``completedapps``."""
    return {a["id"]: a["state"] for a in cluster.status()[kind]}


def wait_idle(cluster: SparkCluster) -> None:
    """Until no application holds the worker's cores (another test's, or another helper's)."""
    wait_until(
        "no active application on the master",
        lambda: not cluster.status()["activeapps"],
        timeout=IDLE_TIMEOUT,
    )


@pytest.fixture
def idle(spark_cluster: SparkCluster) -> SparkCluster:
    """The cluster, once no application is active on it."""
    wait_idle(spark_cluster)
    return spark_cluster


@dataclass
class WordCount:
    cli: CLI
    apply_out: str
    show_text: str
    shown: dict[str, Any]
    outputs: Path


def extra_zip() -> bytes:
    """A zip holding the package ``extra`` (``extra.triple``)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("extra/__init__.py", EXTRA)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def word_count(
    tmp_path_factory: pytest.TempPathFactory, spark_cluster: SparkCluster
) -> Iterator[WordCount]:
    """One application for several tests: WORD_COUNT over src/data.txt with helper.py, the
    zip libs/extra.zip named in spark { py_files }, and ARGUMENTS; applied on an idle
    cluster."""
    wait_idle(spark_cluster)
    folder = tmp_path_factory.mktemp("spark-words") / "config"
    args = ", ".join(json.dumps(a) for a in ARGUMENTS)
    cli = spark_config(
        folder,
        spark_cluster,
        WORD_COUNT,
        f'  arguments   = [{args}]\n  spark {{\n    py_files = ["libs/extra.zip"]\n  }}\n',
        {"helper.py": HELPER, "data.txt": DATA},
    )
    (folder / "src" / "libs").mkdir()
    (folder / "src" / "libs" / "extra.zip").write_bytes(extra_zip())
    applied = ok(cli("apply", "-auto-approve", timeout=RUN_TIMEOUT))
    data = shown(cli)
    assert data["status"] == "completed", (data, applied.all)
    yield WordCount(
        cli,
        applied.all,
        ok(cli("runs", "show", "run.job")).out,
        data,
        Path(data["outputs_path"]),
    )


def test_a_word_count_over_a_snapshot_file_is_collected_and_its_app_is_on_the_master(
    word_count: WordCount, spark_cluster: SparkCluster
) -> None:
    counts = (word_count.outputs / "counts.txt").read_text()
    assert counts == "cat 1\nend 1\nmat 1\non 1\nsat 1\nthe 3\n", counts
    app_id = word_count.shown["spark"]["app_id"]
    assert re.fullmatch(r"app-\d+-\d+", app_id), word_count.shown
    assert re.search(rf"spark app\s+{app_id}\b", word_count.show_text), word_count.show_text
    # A finished run shows no UI (the driver served it and is gone).
    assert "UI http" not in word_count.show_text, word_count.show_text
    done = wait_until(
        "the application among the master's completed ones",
        lambda: app_ids(spark_cluster, "completedapps").get(app_id),
    )
    assert done == "FINISHED", done
    assert app_id not in app_ids(spark_cluster, "activeapps")


def test_compute_show_names_the_run_whose_driver_each_application_was(
    word_count: WordCount,
) -> None:
    """As the README shows it: `trainform compute show spark` (the block's name)."""
    app_id = word_count.shown["spark"]["app_id"]
    text = ok(word_count.cli("compute", "show", "spark")).out
    line = next((line for line in text.splitlines() if app_id in line), "")
    assert re.search(r"FINISHED\s+\d+\s+run\.job \(", line), text


def test_executors_import_the_snapshots_modules_from_its_zip(word_count: WordCount) -> None:
    executor = json.loads((word_count.outputs / "result.json").read_text())["executor"]
    # Imported by the executor from the zip of the snapshot's Python files, not the folder.
    assert ".zip" in executor["helper_file"] and "helper.py" in executor["helper_file"], executor


def test_a_zip_named_in_py_files_is_importable_on_executors(word_count: WordCount) -> None:
    executor = json.loads((word_count.outputs / "result.json").read_text())["executor"]
    assert executor["extra"] == 21, executor
    assert re.search(r"extra\.zip/extra/__init__\.py$", executor["extra_file"]), executor


def test_executors_run_the_environments_interpreter(word_count: WordCount) -> None:
    executor = json.loads((word_count.outputs / "result.json").read_text())["executor"]
    venv = spark_python().parent.parent
    assert executor["executable"] == str(spark_python()), executor
    assert Path(executor["prefix"]) == venv, executor
    assert executor["virtual_env"] in (None, str(venv)), executor


def test_arguments_reach_the_driver_as_written_without_a_shell(word_count: WordCount) -> None:
    argv = json.loads((word_count.outputs / "result.json").read_text())["argv"]
    assert argv == ARGUMENTS, argv


def test_a_failing_executor_function_fails_the_run_naming_its_exception(
    tmp_path: Path, idle: SparkCluster
) -> None:
    cli = spark_config(tmp_path / "config", idle, FAILING)
    result = cli("apply", "-auto-approve", timeout=RUN_TIMEOUT)
    assert result.code != 0, result.all
    # The run's log streams through apply ("run.job | ..." lines, the driver's traceback
    # among them); trainform's own lines have no traceback, and the failure summary names
    # the executor's exception.
    own = [line for line in result.all.splitlines() if not re.match(r"run\.job\s+\|", line)]
    assert not [line for line in own if "Traceback" in line], result.all
    assert re.search(
        r"failed\s+run\.job: run \S+ failed: exit code 1: ValueError: bad record 0$",
        result.all,
        re.M,
    ), result.all
    data = shown(cli)
    assert data["status"] == "failed", data
    assert data["exit_code"] == 1, data
    assert data["message"] == "exit code 1: ValueError: bad record 0", data
    text = ok(cli("runs", "show", "run.job")).out
    assert "exit code 1: ValueError: bad record 0" in text, text
    app_id = data["spark"]["app_id"]
    assert re.fullmatch(r"app-\d+-\d+", app_id), data
    # The driver's failure ended its application: nothing is left holding the cores.
    wait_until(
        "the failed run's application among the completed ones",
        lambda: app_id in app_ids(idle, "completedapps"),
    )
    assert app_id not in app_ids(idle, "activeapps")


def test_executor_memory_does_not_resubmit_but_spark_conf_does(
    tmp_path: Path, idle: SparkCluster
) -> None:
    def spark_block(memory: str, partitions: str) -> str:
        return (
            "  spark {\n"
            f'    executor_memory = "{memory}"\n'
            f'    conf = {{ "spark.sql.shuffle.partitions" = "{partitions}" }}\n'
            "  }\n"
        )

    cli = spark_config(tmp_path / "config", idle, SHUFFLE, spark_block("512m", "3"))
    ok(cli("apply", "-auto-approve", timeout=RUN_TIMEOUT))
    first = shown(cli)
    assert first["status"] == "completed", first
    conf = json.loads((Path(first["outputs_path"]) / "conf.json").read_text())
    assert conf["partitions"] == "3", conf

    # executor_memory is a limit, not part of what decides the result.
    cli.write("main.train.hcl", job_config(idle, spark_block("768m", "3")))
    plan = ok(cli("plan", "-detailed-exitcode"))
    assert "run.job" not in plan.all, plan.all
    ok(cli("apply", "-auto-approve", timeout=RUN_TIMEOUT))
    same = shown(cli)
    assert same["id"] == first["id"], (first, same)
    assert app_ids(idle, "activeapps") == {}

    # A spark conf value changes the result: the run is submitted again.
    wait_idle(idle)
    cli.write("main.train.hcl", job_config(idle, spark_block("768m", "5")))
    plan = cli("plan", "-detailed-exitcode")
    assert plan.code == 2 and "run.job" in plan.all, plan.all
    ok(cli("apply", "-auto-approve", timeout=RUN_TIMEOUT))
    second = shown(cli)
    assert second["status"] == "completed", second
    assert second["id"] != first["id"], (first, second)
    assert second["spark"]["app_id"] != first["spark"]["app_id"], (first, second)
    conf = json.loads((Path(second["outputs_path"]) / "conf.json").read_text())
    assert conf == {"partitions": "5", "app": second["spark"]["app_id"]}, conf
