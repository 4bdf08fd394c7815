"""Time from `trainform apply` to the first line a Spark driver prints, side by side with a raw
`spark-submit` of the same script. Goal (issue 16): trainform under 1.2x raw.

    .venv/bin/python bench/spark_first_log.py [--repeat 5]

Starts its own Spark standalone cluster (tests/spark.py: a master and one worker of the
Spark in `.venv-spark`'s pyspark wheel, Java 17, on free loopback ports; run
scripts/install-test-deps first), attaches a spark compute to it once, then interleaves
REPEAT rounds of:

- raw: `spark-submit --master spark://... first.py` with the cluster's client environment
  (`SPARK_HOME`, `PYSPARK_PYTHON`: `.venv-spark`'s interpreter), timed from its start to
  each line on its stdout;
- trainform: `trainform apply -auto-approve --replace run.first` of a run whose script is the
  same file, timed from its start to each line in apply's output (`run.first | first line`).

The script prints `first line` before anything else (the JVM of spark-submit has started
and started Python), then `session line` once its SparkSession is connected to the master
(an application is registered), then stops. Each round waits for its process to exit.
Prints the medians and best of both lines for both, the ratios, and how long trainform takes
before spark-submit starts (the launcher's `started` in the run's status.json).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from spark import SparkCluster, compute_block, environment_block, start_cluster

TIMEOUT = 300.0
LINES = ("first line", "session line")
SCRIPT = """\
print("first line", flush=True)
from pyspark.sql import SparkSession
spark = SparkSession.builder.appName("bench").getOrCreate()
print("session line", spark.sparkContext.applicationId, flush=True)
spark.stop()
"""


def config(cluster: SparkCluster) -> str:
    return (
        compute_block(cluster) + environment_block() + 'run "first" {\n'
        '  experiment  = "bench"\n'
        "  compute     = compute.spark\n"
        "  environment = environment.py\n"
        '  source_dir  = "src"\n'
        '  script      = "first.py"\n'
        "}\n"
    )


def timed_lines(argv: list[str], cwd: Path, env: dict[str, str]) -> list[float]:
    """Seconds from starting ``argv`` to the first output line containing each of LINES;
    waits for the process to exit (and raises if it failed)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    seen: dict[str, float] = {}
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = [*tail[-40:], line]
        for wanted in LINES:
            if wanted not in seen and wanted in line:
                seen[wanted] = time.perf_counter() - start
    code = proc.wait(timeout=TIMEOUT)
    if code != 0 or len(seen) != len(LINES):
        raise RuntimeError(f"{argv[:4]} exited with {code}, saw {seen}:\n{''.join(tail)}")
    return [seen[w] for w in LINES]


def submitted_after(folder: Path, wall: float) -> float:
    """Seconds from ``wall`` (a time.time()) to the newest run's spark-submit starting (the
    launcher's ``started`` in its status.json)."""
    runs = sorted((folder / ".trainform" / "spark" / "runs").iterdir(), key=os.path.getmtime)
    status = json.loads((runs[-1] / "status.json").read_text())
    return datetime.datetime.fromisoformat(status["started"]).timestamp() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "src").mkdir()
        script = folder / "src" / "first.py"
        script.write_text(SCRIPT)
        cluster = start_cluster()
        try:
            (folder / "main.train.hcl").write_text(config(cluster))
            # As installed: pip compiles an installed trainform's bytecode, so no run pays
            # for compiling its modules (this sandbox sets PYTHONDONTWRITEBYTECODE, which
            # would add about 0.3 s to every trainform command, and to nothing raw runs).
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith("TRAINFORM_") and k != "PYTHONDONTWRITEBYTECODE"
            }
            env["NO_COLOR"] = "1"
            first = subprocess.run(
                [sys.executable, "-m", "trainform", "apply", "-auto-approve"],
                cwd=folder,
                env=env,
                capture_output=True,
                text=True,
            )
            if first.returncode != 0:
                raise RuntimeError(f"the first apply failed:\n{first.stdout}{first.stderr}")
            raw_env = {**env, **cluster.submit_env}
            raw_argv = [
                str(cluster.home / "bin" / "spark-submit"),
                "--master",
                cluster.master,
                "--conf",
                "spark.ui.showConsoleProgress=false",
                str(script),
            ]
            ours_argv = [
                sys.executable,
                "-m",
                "trainform",
                "apply",
                "-auto-approve",
                "--replace",
                "run.first",
            ]
            raw, ours, before_submit = [], [], []
            for _ in range(args.repeat):
                raw.append(timed_lines(raw_argv, folder, raw_env))
                wall = time.time()
                ours.append(timed_lines(ours_argv, folder, env))
                before_submit.append(submitted_after(folder, wall))
        finally:
            cluster.stop()
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for i, name in enumerate(LINES):
        r = [x[i] for x in raw]
        t = [x[i] for x in ours]
        mr, mt = statistics.median(r), statistics.median(t)
        print(f"{name!r}: raw spark-submit median {mr:.3f} s (best {min(r):.3f} s), ", end="")
        print(f"trainform apply median {mt:.3f} s (best {min(t):.3f} s): {mt / mr:.2f}x raw")
    print(
        "  trainform apply's start to spark-submit's (start-up, plan, snapshot, staging, "
        f"launcher): median {statistics.median(before_submit):.3f} s"
    )
    print("goal: trainform under 1.2x raw (the first line)")


if __name__ == "__main__":
    main()
