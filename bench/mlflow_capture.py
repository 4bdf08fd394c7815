"""MLflow capture: what it costs a run, and how soon a logged metric is seen.

    python bench/mlflow_capture.py [--python PYTHON] [--points 10000] [--repeat 5]

PYTHON is an interpreter with mlflow or mlflow-skinny (default: the tests' .venv-mlflow3-skinny,
made by scripts/install-test-deps).

(a) Overhead. A run whose script calls ``mlflow.log_metric`` POINTS times in a loop, applied
    with the capture (trainform's file store, read while the run runs) and without it (the
    same script with MLFLOW_TRACKING_URI set for the run to another file store, which
    trainform then leaves alone), REPEAT times each, interleaved. Prints the run's wall time
    (the launcher's started → finished in status.json, which includes the capture's last
    read) and the script's own logging loop, medians; goal: < 10% of wall time.
(b) Latency. A run logs a metric whose value is the time it was logged, 30 times, 0.3 s
    apart; the bench sees each point (1) appear in the run's metrics.jsonl (the file the
    sweep controller and ``runs metrics --follow`` read, polled here every 5 ms) and (2) be
    printed by ``trainform runs metrics --follow --json``. Prints median and worst; goal:
    < 1 s locally.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
variable "rep" {{
  default = 0
}}

compute "local" {{
  type = "local"
}}

environment "ml" {{
  python       = "{python}"
  user_managed = true
}}

run "captured" {{
  experiment  = "bench"
  compute     = compute.local
  environment = environment.ml
  source_dir  = "src"
  script      = "log.py"
  arguments   = ["{points}", var.rep]
}}

run "uncaptured" {{
  experiment  = "bench"
  compute     = compute.local
  environment = environment.ml
  source_dir  = "src"
  script      = "log.py"
  arguments   = ["{points}", var.rep]
  env         = {{ MLFLOW_TRACKING_URI = "{elsewhere}", MLFLOW_ALLOW_FILE_STORE = "true" }}
}}

run "latency" {{
  experiment  = "bench"
  compute     = compute.local
  environment = environment.ml
  source_dir  = "src"
  script      = "tick.py"
  arguments   = [var.rep]
}}
"""

LOG = """\
import sys, time
import mlflow

points = int(sys.argv[1])
with mlflow.start_run():
    start = time.perf_counter()
    for i in range(points):
        mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
    print(f"loop {time.perf_counter() - start:.3f}")
"""

TICK = """\
import time
import mlflow

with mlflow.start_run():
    for i in range(30):
        mlflow.log_metric("tick", time.time(), step=i)
        time.sleep(0.3)
"""


def trainform(folder: Path, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainform", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
        **kw,  # type: ignore[call-overload]
    )


def run_record(folder: Path, address: str) -> dict:
    return json.loads(trainform(folder, "runs", "show", address, "--json").stdout)


def run_dir(folder: Path, run_id: str) -> Path:
    """Where a run ran, on local compute."""
    return folder / ".trainform" / "local" / "runs" / run_id


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def overhead(folder: Path, points: int, repeat: int) -> None:
    walls: dict[str, list[float]] = {"captured": [], "uncaptured": []}
    loops: dict[str, list[float]] = {"captured": [], "uncaptured": []}
    rep = 0
    for _ in range(repeat):
        for address in ("captured", "uncaptured"):
            rep += 1
            trainform(
                folder, "apply", "-auto-approve", "--target", f"run.{address}", "-var", f"rep={rep}"
            )
            record = run_record(folder, f"run.{address}")
            assert record["status"] == "completed", record
            # The launcher's own times: from the script's start to the final status, after
            # the capture's last read (collection into the history comes later).
            status = json.loads((run_dir(folder, record["id"]) / "status.json").read_text())
            walls[address].append(seconds(status["finished"]) - seconds(status["started"]))
            log = trainform(folder, "runs", "logs", f"run.{address}").stdout
            loops[address].append(float(log.split("loop ")[1].split()[0]))
            if address == "captured":
                count = record["metrics"]["loss"]["count"]
                assert count == points, f"captured {count} of {points} points"
    print(f"(a) overhead of the capture, a run logging {points} points, median of {repeat}:")
    for address in walls:
        print(
            f"    {address:11} wall {statistics.median(walls[address]):6.2f} s   "
            f"logging loop {statistics.median(loops[address]):6.2f} s   "
            f"(walls {', '.join(f'{w:.2f}' for w in walls[address])})"
        )
    with_, without = (statistics.median(walls[a]) for a in ("captured", "uncaptured"))
    print(
        f"    overhead: {with_ - without:+.2f} s = {100 * (with_ - without) / without:+.1f}% "
        "of wall time (goal < 10%)"
    )
    cpu = replay(run_dir(folder, run_record(folder, "run.captured")["id"]) / "mlruns")
    print(
        f"    the capture's own CPU time, its reader replayed over that run's store: {cpu:.3f} s "
        f"= {100 * cpu / without:.1f}% of the wall time without it"
    )


def replay(store: Path) -> float:
    """CPU seconds the MLflow source spends reading ``store`` (a copy, so nothing moves)."""
    import shutil

    sys.path.insert(0, str(ROOT))
    from trainform.capture import Stream
    from trainform.capture.mlflow import MlflowStore

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "mlruns"
        shutil.copytree(store, copy, symlinks=True)
        (Path(tmp) / "outputs").mkdir()
        source = MlflowStore(copy, Path(tmp) / "outputs", Stream(Path(tmp) / "m.jsonl"), print)
        start = time.process_time()
        source.poll(0.0)
        source.finish()
        return time.process_time() - start


def latency(folder: Path) -> None:
    trainform(
        folder, "apply", "-auto-approve", "--target", "run.latency", "-var", "rep=1000", "--detach"
    )
    run_id = run_record(folder, "run.latency")["id"]
    stream = run_dir(folder, run_id) / "metrics.jsonl"
    in_file: list[float] = []
    followed: list[float] = []

    def follow() -> None:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trainform",
                "runs",
                "metrics",
                "run.latency",
                "--follow",
                "--json",
            ],
            cwd=folder,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.time()
            rec = json.loads(line)
            if rec.get("name") == "tick":
                followed.append(now - rec["value"])
        proc.wait()

    follower = threading.Thread(target=follow)
    follower.start()
    offset = 0
    deadline = time.monotonic() + 120
    while len(in_file) < 30 and time.monotonic() < deadline:
        try:
            with stream.open("rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            data = b""
        end = data.rfind(b"\n") + 1
        now = time.time()
        for line in data[:end].splitlines():
            rec = json.loads(line)
            if rec.get("name") == "tick":
                in_file.append(now - rec["value"])
        offset += end
        time.sleep(0.005)
    follower.join(timeout=120)
    print("(b) latency from mlflow.log_metric to the point being seen, 30 points:")
    for what, seen in (("in metrics.jsonl", in_file), ("runs metrics --follow", followed)):
        if seen:
            print(
                f"    {what:22} median {statistics.median(seen):.3f} s   worst {max(seen):.3f} s"
                f"   ({len(seen)} points; goal < 1 s)"
            )
        else:
            print(f"    {what:22} nothing seen")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=str(ROOT / ".venv-mlflow3-skinny" / "bin" / "python"))
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not Path(args.python).is_file():
        sys.exit(f"{args.python} is missing: run scripts/install-test-deps or give --python")
    with tempfile.TemporaryDirectory(prefix="mlflow-bench-") as tmp:
        folder = Path(tmp) / "config"
        (folder / "src").mkdir(parents=True)
        (folder / "src" / "log.py").write_text(LOG)
        (folder / "src" / "tick.py").write_text(TICK)
        elsewhere = (Path(tmp) / "elsewhere").as_uri()
        (folder / "main.train.hcl").write_text(
            CONFIG.format(python=args.python, points=args.points, elsewhere=elsewhere)
        )
        load = os.getloadavg()[0]
        print(f"load average {load:.1f}, {os.cpu_count()} cores, {args.python}")
        overhead(folder, args.points, args.repeat)
        latency(folder)


if __name__ == "__main__":
    main()
