"""Docker-cluster latencies against plain `docker exec` / `docker run` of the same image.

    python bench/cluster_latency.py [--repeat 5]

Needs a Docker engine and the base image (`scripts/build-base-image`, run if missing).

(a) Start latency on a warm node: a cluster with min_nodes = 1 (its node is idle and waiting)
    gets a run whose command is `python3 -c "print(time.time())"`; the printed timestamp is
    the moment the user's command started (containers share the host's clock). Measured from
    - `provider.submit` being called (inside `trainform apply`; a hook records the time), and
    - the start of the `trainform apply --replace run.warm` process (so including start-up,
      config, snapshot and planning),
    against `docker exec NODE python3 -c ...` (the docker CLI, from its start) on the same
    node. Goal: submit -> command start under 0.5 s more than docker exec.
(b) Cold cluster: time from starting `trainform apply` to the first log line of a 2-node run
    as apply prints it, with min_nodes = 0 (no node exists; the image is present), against two
    plain `docker run`s of the same image started in parallel, until both have printed.

Prints the median (and the range) of --repeat runs of each. Everything it creates (its
configuration folder, the clusters, the `docker run` containers) is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAMP = "import time; print(repr(time.time()), flush=True)"
HOOK = """\
import os, sys, time
from trainform.providers import docker_cluster as dc
_submit = dc.DockerClusterProvider.submit
def submit(self, request):
    with open(os.environ["BENCH_SUBMIT_FILE"], "a") as fh:
        fh.write(repr(time.time()) + "\\n")
    return _submit(self, request)
dc.DockerClusterProvider.submit = submit
from trainform.cli.main import main
sys.argv[0] = "trainform"
main()
"""


def config(image: str, cold_run: bool) -> str:
    text = f"""
compute "warm" {{
  type       = "docker-cluster"
  node_image = "{image}"
  min_nodes  = 1
  max_nodes  = 1
}}

compute "cold" {{
  type         = "docker-cluster"
  node_image   = "{image}"
  min_nodes    = 0
  max_nodes    = 2
  idle_timeout = "1s"
}}

run "warm" {{
  compute    = compute.warm
  experiment = "bench"
  source_dir = "src"
  command    = ["python3", "-c", "{STAMP}"]
}}
"""
    if cold_run:
        text += """
run "pair" {
  compute    = compute.cold
  experiment = "bench"
  source_dir = "src"
  node_count = 2
  command    = ["python3", "-c", "print('first line', flush=True)"]
}
"""
    return text


class Bench:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORM_")}
        self.env["NO_COLOR"] = "1"
        self.submit_file = folder.parent / "submit-times"
        self.env["BENCH_SUBMIT_FILE"] = str(self.submit_file)
        self.hook = folder.parent / "hook.py"
        self.hook.write_text(HOOK)

    def trainform(self, *args: str) -> str:
        proc = subprocess.run(
            [sys.executable, str(self.hook), *args],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise SystemExit(f"trainform {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
        return proc.stdout

    def node_of(self, compute: str) -> str:
        import json

        info = json.loads(self.trainform("compute", "show", compute, "--json"))
        return str(info["nodes"][0]["name"])

    # (a)
    def warm_run(self) -> tuple[float, float, float]:
        """(submit -> command start, apply start -> command start, apply wall time)."""
        self.submit_file.unlink(missing_ok=True)
        start = time.time()
        self.trainform("apply", "-auto-approve", "-target", "run.warm", "--replace", "run.warm")
        wall = time.time() - start
        submitted = float(self.submit_file.read_text().split()[0])
        log = self.trainform("runs", "logs", "run.warm")
        began = float(log.split()[0])
        return began - submitted, began - start, wall

    def docker_exec(self, node: str) -> tuple[float, float]:
        """(docker exec start -> command start, docker exec wall time)."""
        start = time.time()
        out = subprocess.run(
            ["docker", "exec", node, "python3", "-c", STAMP],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        wall = time.time() - start
        return float(out.split()[0]) - start, wall

    # (b)
    def cold_apply(self) -> float:
        """Seconds from starting `trainform apply` to the pair's first log line it prints."""
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, str(self.hook), "apply", "-auto-approve", "--replace", "run.pair"],
            cwd=self.folder,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        first = None
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if first is None and re.match(r"^run\.pair\s*\| first line", line):
                first = time.perf_counter() - start
        if proc.wait() != 0 or first is None:
            raise SystemExit("cold apply failed or printed no log line:\n" + "".join(lines))
        return first

    def make_cold(self) -> None:
        """Wait for the cold cluster's nodes to pass idle_timeout and remove them."""
        time.sleep(1.1)
        self.trainform("compute", "reconcile", "cold")
        import json

        info = json.loads(self.trainform("compute", "show", "cold", "--json"))
        if info["nodes"]:
            raise SystemExit(f"the cold cluster still has nodes: {info['nodes']}")


def docker_run_pair(image: str, label: str) -> float:
    """Two `docker run`s of the image in parallel; seconds until both printed their line."""
    start = time.perf_counter()
    done: list[float] = []

    def one() -> None:
        proc = subprocess.Popen(
            ["docker", "run", "--rm", "--label", label, image, "python3", "-c", "print('hi')"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        proc.stdout.readline()
        done.append(time.perf_counter() - start)
        proc.wait()

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return max(done)


def row(name: str, values: list[float]) -> str:
    med = statistics.median(values)
    return f"| {name:<64} | {med:7.3f} | {min(values):.3f}-{max(values):.3f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    image = subprocess.run(
        [str(ROOT / "scripts" / "build-base-image")], capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    label = f"trainform.bench={uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
        folder = Path(tmp) / "config"
        (folder / "src").mkdir(parents=True)
        (folder / "src" / "README").write_text("bench\n")
        (folder / "main.train.hcl").write_text(config(image, cold_run=False))
        bench = Bench(folder)
        try:
            bench.trainform("apply", "-auto-approve")  # clusters up, one warm-node run
            node = bench.node_of("warm")
            bench.docker_exec(node)  # warm-up of both paths
            bench.warm_run()
            warm = [bench.warm_run() for _ in range(args.repeat)]
            execs = [bench.docker_exec(node) for _ in range(args.repeat)]

            (folder / "main.train.hcl").write_text(config(image, cold_run=True))
            bench.trainform("apply", "-auto-approve")  # first pair run (also warms caches)
            cold = []
            for _ in range(args.repeat):
                bench.make_cold()
                cold.append(bench.cold_apply())
            docker_run_pair(image, label)  # warm-up
            plain = [docker_run_pair(image, label) for _ in range(args.repeat)]
        finally:
            with contextlib.suppress(SystemExit):
                bench.trainform("destroy", "-auto-approve")
            subprocess.run(
                f"docker ps -aq --filter label={label} | xargs -r docker rm -f",
                shell=True,
                capture_output=True,
            )

    submit_lat = [w[0] for w in warm]
    exec_lat = [e[0] for e in execs]
    print(f"median of {args.repeat} (range), seconds; image {image}\n")
    print(f"| {'(a) warm node: to the command starting':<64} |  median | range |")
    print(f"|{'-' * 66}|---------|-------|")
    print(row("trainform: provider.submit called -> command starts", submit_lat))
    print(row("trainform: `apply` process starts -> command starts", [w[1] for w in warm]))
    print(
        row("trainform: `apply --replace run.warm` wall time (to collected)", [w[2] for w in warm])
    )
    print(row("`docker exec NODE python3 -c ...` starts -> command starts", exec_lat))
    print(row("`docker exec` wall time", [e[1] for e in execs]))
    extra = statistics.median(submit_lat) - statistics.median(exec_lat)
    whole = statistics.median([w[1] for w in warm]) - statistics.median(exec_lat)
    print(f"\nsubmit -> start, over docker exec: {extra:+.3f} s (goal: < 0.5 s)")
    print(f"apply -> start, over docker exec: {whole:+.3f} s (start-up and planning included)\n")
    print(f"| {'(b) cold cluster, 2 nodes: to the first log line':<64} |  median | range |")
    print(f"|{'-' * 66}|---------|-------|")
    print(row("`trainform apply` starts -> first log line of a 2-node run", cold))
    print(row("two parallel `docker run` -> both printed", plain))


if __name__ == "__main__":
    main()
