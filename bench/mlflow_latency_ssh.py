"""Latency from `mlflow.log_metric` in a run's script on an SSH target to the point being seen
by the reader on this machine.

    python bench/mlflow_latency_ssh.py [--points 40]     # as root: starts its own sshd

The target is this machine through a real OpenSSH server on 127.0.0.1 (bench/ssh_server.py),
logging in as tfuser; the run's environment is a virtualenv of the system python3 with
mlflow-skinny 3, made offline from the tests' wheelhouse (tests/mlflow_targets.py). Each run
is applied with `trainform apply --detach`; its script logs a first metric (so MLflow's run and
experiment exist), waits for the bench, then logs --points points, `log_metric("sent",
time.time(), step=i)`, a random 0.2-0.6 s apart (so that they fall at every phase of the
pollers on the way). Target and reader share one clock. For each point:

- captured: when its line was in the run's `metrics.jsonl` on the host (the bench polls the
  file every 5 ms): the launcher's MLflow capture source reading MLflow's file store;
- seen: when `trainform runs metrics RUN --follow --json` printed it: the reader this machine
  has (the SSH provider's `metrics()` over the compute's connection, every 0.25 s; the sweep
  controller reads the same way, every 0.2 s).

The baseline is the same script logging with `trainform.tracking.log_metric`, which appends to
`metrics.jsonl` itself (no capture source): the reader alone. Goal (issue 14): seen < 2 s.
Prints the median, 90th percentile and maximum of each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ssh_server import BenchServer, bench_server

SCRIPT = """\
import os, random, time
if os.environ["LOGGER"] == "mlflow":
    import mlflow
    log = mlflow.log_metric
else:
    from trainform.tracking import log_metric as log
log("warmup", 0.0, step=0)
deadline = time.time() + 120
while not os.path.exists(os.environ["GATE"]) and time.time() < deadline:
    time.sleep(0.01)
for i in range(int(os.environ["POINTS"])):
    log("sent", time.time(), step=i)
    time.sleep(random.uniform(0.2, 0.6))
"""


def config(
    bench: BenchServer, workdir: str, python: str, logger: str, gate: str, points: int
) -> str:
    target = bench.target
    return f"""
compute "box" {{
  type             = "ssh"
  address          = "{target.host}"
  port             = {target.port}
  username         = "{target.username}"
  private_key_file = "{target.private_key_file}"
  host_key         = "{target.host_key}"
  workdir          = "{workdir}"
}}
environment "mlflow" {{
  python       = "{python}"
  user_managed = true
}}
run "bench" {{
  experiment  = "bench"
  compute     = compute.box
  environment = environment.mlflow
  source_dir  = "src"
  script      = "train.py"
  env         = {{ LOGGER = "{logger}", GATE = "{gate}", POINTS = "{points}" }}
}}
"""


def trainform(folder: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "trainform", *args],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def sent_points(lines: list[tuple[float, str]]) -> dict[int, float]:
    """Step -> latency (arrival - logged time) of the "sent" points among timed JSON lines."""
    found: dict[int, float] = {}
    for arrived, line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("name") == "sent" and rec.get("kind", "metric") == "metric":
            found[int(rec["step"])] = arrived - float(rec["value"])
    return found


def tail(path_of: list[Path], out: list[tuple[float, str]], stop: threading.Event) -> None:
    """Append (arrival time, line) for each line of the file in ``path_of`` (once known)."""
    offset, partial = 0, b""
    while not stop.is_set():
        if path_of:
            try:
                with path_of[0].open("rb") as fh:
                    fh.seek(offset)
                    data = fh.read()
            except FileNotFoundError:
                data = b""
            if data:
                now = time.time()
                offset += len(data)
                *whole, partial = (partial + data).split(b"\n")
                out += [(now, line.decode()) for line in whole]
        time.sleep(0.005)


def measure(bench: BenchServer, python: str, logger: str, points: int) -> tuple[list[float], ...]:
    """(captured, seen) latencies of one run logging through ``logger``."""
    workdir = bench.remote_dir("bench-mlflow-")
    gate = Path(workdir) / "gate"
    with tempfile.TemporaryDirectory(prefix="trainform-bench-") as tmp:
        folder = Path(tmp)
        (folder / "src").mkdir()
        (folder / "src" / "train.py").write_text(SCRIPT)
        (folder / "main.train.hcl").write_text(
            config(bench, workdir, python, logger, str(gate), points)
        )
        applied = trainform(folder, "apply", "-auto-approve", "--detach")
        out, err = applied.communicate()
        if applied.returncode != 0:
            raise SystemExit(f"apply failed:\n{out}\n{err}")
        follow = trainform(folder, "runs", "metrics", "run.bench", "--follow", "--json")
        seen: list[tuple[float, str]] = []

        def read_follow() -> None:
            assert follow.stdout is not None
            for line in follow.stdout:
                seen.append((time.time(), line))

        captured: list[tuple[float, str]] = []
        stop = threading.Event()
        path_of: list[Path] = []
        threads = [
            threading.Thread(target=read_follow, daemon=True),
            threading.Thread(target=tail, args=(path_of, captured, stop), daemon=True),
        ]
        for t in threads:
            t.start()
        # The script has logged its warm-up metric once follow printed it: MLflow is set up,
        # and follow is reading. Then the run's metrics file is known and the points may go.
        while not any('"warmup"' in line for _, line in seen):
            if follow.poll() is not None:
                raise SystemExit(f"runs metrics --follow ended early (exit {follow.returncode})")
            time.sleep(0.01)
        path_of.append(next(Path(workdir).glob("runs/*/metrics.jsonl")))
        gate.touch()
        follow.wait(timeout=points * 0.6 + 60)
        threads[0].join(timeout=10)
        stop.set()
        threads[1].join(timeout=10)
    got_seen, got_captured = sent_points(seen), sent_points(captured)
    if len(got_seen) != points or len(got_captured) != points:
        raise SystemExit(f"{logger}: {len(got_seen)} points seen, {len(got_captured)} captured")
    return [got_captured[i] for i in range(points)], [got_seen[i] for i in range(points)]


def figures(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"{statistics.median(values):.3f} s | {p90:.3f} s | {max(values):.3f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=40)
    args = parser.parse_args()
    # tests/ is on sys.path (ssh_server put it there).
    from mlflow_targets import make_any_user_venv, make_wheelhouse

    wheels = make_wheelhouse()
    with tempfile.TemporaryDirectory(prefix="trainform-bench-venv-") as tmp, bench_server() as b:
        Path(tmp).chmod(0o755)  # tfuser runs the virtualenv's python
        python = make_any_user_venv(Path(tmp) / "venv", wheels)
        results = {
            logger: measure(b, python, logger, args.points) for logger in ("mlflow", "tracking")
        }

    print(f"{args.points} points each; latency from the script's log call")
    print("| logged with | to | median | p90 | max |")
    print("|---|---|---|---|---|")
    for logger, (captured, seen) in results.items():
        name = "`mlflow.log_metric`" if logger == "mlflow" else "`trainform.tracking` (baseline)"
        print(f"| {name} | metrics.jsonl on the host | {figures(captured)} |")
        print(f"| {name} | `runs metrics --follow` here | {figures(seen)} |")
    worst = max(results["mlflow"][1])
    print(f"MLflow over SSH, worst point: {worst:.3f} s (goal < 2 s)")


if __name__ == "__main__":
    main()
