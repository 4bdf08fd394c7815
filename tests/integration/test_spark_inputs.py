"""A dataset as a run's input on `compute { type = "spark" }` through the real CLI on the real
Spark standalone test cluster (tests/spark.py): the PySpark driver reads its input folder
with `spark.read.text(TRAINFORM_INPUT_RAW)` (the executors run on this machine, so the path
is theirs too), counts the lines, and writes a named output that a local run downstream
reads (`run.count.outputs["counts"]`); `input_args = true` hands the driver `--raw PATH`
after its own arguments."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import CLI, base_env, ok, wait_until
from spark import SparkCluster, compute_block, environment_block

RUN_TIMEOUT = 600.0  # seconds for `apply` to see a run through (only reached when failing)
IDLE_TIMEOUT = 600.0  # another test's applications may hold the worker's cores

DATA = {f"f{i}.txt": "".join(f"line {i} {j}\n" for j in range(10 * i)) for i in (1, 2, 3)}
LINES = sum(text.count("\n") for text in DATA.values())  # 60

DRIVER = """\
import json, os, sys
from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("trainform-inputs").getOrCreate()
raw = os.environ["TRAINFORM_INPUT_RAW"]
count = spark.read.text(raw).count()
print("spark counted", count, "lines", flush=True)
print("argv", json.dumps(sys.argv[1:]), flush=True)
os.makedirs("outputs/counts", exist_ok=True)
with open("outputs/counts/count.json", "w") as f:
    json.dump({"count": count, "raw": raw, "argv": sys.argv[1:]}, f)
spark.stop()
"""

CHECK = """\
import json, os
p = os.environ["TRAINFORM_INPUT_COUNTS"]
print("check got", json.load(open(os.path.join(p, "count.json")))["count"], "from", os.listdir(p))
"""


def config(folder: Path, cluster: SparkCluster) -> CLI:
    folder.mkdir(parents=True)
    cli = CLI(folder, base_env())
    for name, text in DATA.items():
        cli.write(f"data/{name}", text)
    cli.write("src/main.py", DRIVER)
    cli.write("check/check.py", CHECK)
    cli.write(
        "main.train.hcl",
        compute_block(cluster)
        + environment_block()
        + 'dataset "raw" {\n  source = "data"\n}\n'
        + 'run "count" {\n'
        '  experiment  = "spark"\n'
        "  compute     = compute.spark\n"
        "  environment = environment.py\n"
        '  source_dir  = "src"\n'
        '  script      = "main.py"\n'
        '  arguments   = ["--mine", "1"]\n'
        "  inputs      = { raw = dataset.raw }\n"
        "  input_args  = true\n"
        '  outputs     = { counts = "outputs/counts" }\n'
        "}\n"
        'compute "local" {\n  type = "local"\n}\n'
        'run "check" {\n'
        '  experiment = "spark"\n'
        "  compute    = compute.local\n"
        '  source_dir = "check"\n'
        '  script     = "check.py"\n'
        '  inputs     = { counts = run.count.outputs["counts"] }\n'
        "}\n",
    )
    return cli


def test_a_spark_driver_reads_its_input_folder_and_writes_a_named_output(
    tmp_path: Path, spark_cluster: SparkCluster
) -> None:
    wait_until(
        "no active application on the master",
        lambda: not spark_cluster.status()["activeapps"],
        timeout=IDLE_TIMEOUT,
    )
    cli = config(tmp_path / "config", spark_cluster)
    applied = ok(cli("apply", "-auto-approve", timeout=RUN_TIMEOUT))
    assert "run.count: Completed" in applied.out, applied.all
    shown = json.loads(ok(cli("runs", "show", "run.count", "--json")).out)
    assert shown["status"] == "completed", shown

    log = ok(cli("runs", "logs", "run.count")).out
    assert f"spark counted {LINES} lines\n" in log, log
    argv_line = next(line for line in log.splitlines() if line.startswith("argv "))
    argv = json.loads(argv_line[len("argv ") :])
    assert argv[:3] == ["--mine", "1", "--raw"] and len(argv) == 4, argv
    # The path handed over is the input folder the environment variable names.
    result = json.loads((Path(shown["outputs_path"]) / "counts" / "count.json").read_text())
    assert result["count"] == LINES, result
    assert argv[3] == result["raw"], (argv, result)
    assert Path(result["raw"]).name == "raw", result

    # The named output is recorded as such: a local run downstream reads it as its input.
    assert "run.check: Completed" in applied.out, applied.all
    check_log = ok(cli("runs", "logs", "run.check")).out
    assert f"check got {LINES} from ['count.json']\n" in check_log, check_log
    ok(cli("plan", "-detailed-exitcode"), 0)
