"""`trainform plan` of a configuration with a Spark compute attached (a standalone master of its
own, and a finished run on it) against the same configuration without it (a local compute
and its finished run only). Goal (issue 16): under 0.5 s over the plan without it.

    .venv/bin/python bench/spark_plan.py [--repeat 7]

Starts its own Spark standalone cluster (tests/spark.py: a master and one worker of the
Spark in `.venv-spark`'s pyspark wheel, Java 17, on free loopback ports; run
scripts/install-test-deps first). Two configuration folders, each applied once:

- without: a local compute `box` and a run on it;
- with: the same, plus a spark compute on the cluster and a run on it (a word count).

Then REPEAT interleaved `trainform plan -detailed-exitcode` of each (exit 0: nothing to do).
A spark compute's refresh runs the probe script (a Python process: Spark's home, version
from its files, the workdir) and reads the master's JSON status (another Python process):
no JVM, no spark-submit. A finished run is not asked about again. Prints the medians and
best of both, and the difference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from spark import compute_block, environment_block, start_cluster

LOCAL = """
compute "box" {
  type = "local"
}

run "local" {
  experiment  = "bench"
  compute     = compute.box
  environment = environment.py
  source_dir  = "src"
  script      = "local.py"
}
"""

SPARK_RUN = """
run "words" {
  experiment  = "bench"
  compute     = compute.spark
  environment = environment.py
  source_dir  = "src"
  script      = "words.py"
  spark {
    executor_memory = "512m"
  }
}
"""

WORDS = """\
from pyspark.sql import SparkSession
spark = SparkSession.builder.appName("words").getOrCreate()
rdd = spark.sparkContext.parallelize(["a b", "b c c"]).flatMap(str.split)
print(sorted(rdd.map(lambda w: (w, 1)).reduceByKey(lambda a, b: a + b).collect()))
spark.stop()
"""


def trainform(folder: Path, env: dict[str, str], *args: str) -> tuple[float, int, str]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "trainform", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - start, proc.returncode, proc.stdout[-3000:] + proc.stderr[-3000:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    # As installed: pip compiles an installed trainform's bytecode, so no run pays for
    # compiling its modules (this sandbox sets PYTHONDONTWRITEBYTECODE, which would add
    # about 0.3 s to every trainform command and to nothing the raw side runs).
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TRAINFORM_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["NO_COLOR"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        cluster = start_cluster()
        try:
            folders = {}
            for name, extra in (
                ("without", ""),
                ("with", compute_block(cluster) + SPARK_RUN),
            ):
                folder = Path(tmp) / name
                (folder / "src").mkdir(parents=True)
                (folder / "src" / "local.py").write_text("print('local run')\n")
                (folder / "src" / "words.py").write_text(WORDS)
                (folder / "main.train.hcl").write_text(environment_block() + LOCAL + extra)
                seconds, code, out = trainform(folder, env, "apply", "-auto-approve")
                if code != 0:
                    raise RuntimeError(f"apply ({name}) exited with {code}:\n{out}")
                print(f"apply ({name}): {seconds:.1f} s")
                folders[name] = folder
            times: dict[str, list[float]] = {name: [] for name in folders}
            for _ in range(args.repeat):
                for name, folder in folders.items():
                    seconds, code, out = trainform(folder, env, "plan", "-detailed-exitcode")
                    if code != 0:  # 2 would mean changes: drift, or a run to rerun
                        raise RuntimeError(f"plan ({name}) exited with {code}:\n{out}")
                    times[name].append(seconds)
        finally:
            cluster.stop()
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for name, values in times.items():
        print(
            f"plan {name} the spark compute: median {statistics.median(values):.3f} s, "
            f"best {min(values):.3f} s"
        )
    extra = statistics.median(times["with"]) - statistics.median(times["without"])
    print(f"the spark compute's cost: median {extra:+.3f} s (goal: < 0.5 s)")


if __name__ == "__main__":
    main()
