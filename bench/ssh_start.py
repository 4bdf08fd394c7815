"""Start latency of a run on an SSH target against plain `ssh host python3 -c pass`.

    python bench/ssh_start.py            # as root: starts its own sshd on 127.0.0.1

The run is `command = ["python3", "-c", "pass"]` with a user-managed environment (the
host's python3, as in the SSH tests) on compute type ssh, its source already in the host's
blob cache and the lib installed (an earlier run did both): what every run after the first
one costs. Measured: from calling the SSH provider's `submit` with a fresh provider (so a
new connection, as a new `trainform apply` process makes) to the moment the launcher on the
host started the command (`started` in the run's status.json, in milliseconds). Not
measured: what `apply` does before submit (start-up, plan, snapshot), see run_overhead.py.

The baseline is the OpenSSH client running `python3 -c pass` on the same server with the
same key, timed from start to exit. Goal: trainform's latency < baseline + 0.5 s.
Each figure is the best of --repeat (the median is shown too).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from ssh_server import BenchServer, bench_server

from trainform.providers.base import ProviderContext, RunRequest
from trainform.providers.ssh import SSHComputeProvider
from trainform.runs.snapshot import snapshot, store_blobs
from trainform.runs.spec import launcher_spec

RUN = {
    "experiment": "bench",
    "command": ["python3", "-c", "pass"],
    "environment": {"python": "python3", "user_managed": True},
}


def compute_block(bench: BenchServer, workdir: str) -> dict[str, Any]:
    target = bench.target
    return {
        "type": "ssh",
        "address": target.host,
        "port": target.port,
        "username": target.username,
        "private_key_file": target.private_key_file,
        "host_key": target.host_key,
        "workdir": workdir,
        "max_concurrent_runs": 1,
    }


def started_at(run_dir: str, timeout: float = 30.0) -> float:
    """When the launcher started the command (epoch seconds), waiting for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = json.loads((Path(run_dir) / "status.json").read_text())
        except (OSError, ValueError):
            status = {}
        if status.get("started"):
            return datetime.datetime.fromisoformat(status["started"]).timestamp()
        if status.get("status") in ("failed", "lost"):
            raise SystemExit(f"the run failed: {status}")
        time.sleep(0.002)
    raise SystemExit(f"the run in {run_dir} did not start within {timeout:g} s")


def submit_latency(context: ProviderContext, compute: dict[str, Any], request: RunRequest) -> float:
    provider = SSHComputeProvider(context)
    start = time.time()
    handle = provider.submit(request)
    latency = started_at(handle["nodes"][0]["run_dir"]) - start
    for conn in provider._conns.values():
        conn.close()
    return latency


def ssh_latency(bench: BenchServer) -> float:
    start = time.perf_counter()
    subprocess.run([*bench.ssh_argv(), bench.login, "python3", "-c", "pass"], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="trainform-bench-") as tmp, bench_server() as bench:
        config = Path(tmp)
        (config / "src").mkdir()
        (config / "src" / "README").write_text("the run's source\n")
        context = ProviderContext(config_dir=config, data_dir=config / ".trainform")
        workdir = bench.remote_dir("bench-start-")
        desired = compute_block(bench, workdir)
        compute = {**desired, **SSHComputeProvider(context).create("compute.box", desired)}
        manifest = snapshot(config / "src", config / "hashes").manifest
        store_blobs(manifest, config / "src", config / "blobs")

        def request(i: int) -> RunRequest:
            run_id = f"start-{i}"
            return RunRequest(
                run_id=run_id,
                address="run.start",
                compute=compute,
                spec=launcher_spec(run_id, "run.start", RUN, config),
                manifest=manifest.to_dict(),
                blob_dir=config / "blobs",
            )

        submit_latency(context, compute, request(0))  # the first run: lib and blobs travel
        trainform, ssh = [], []
        for i in range(1, args.repeat + 1):
            trainform.append(submit_latency(context, compute, request(i)))
            ssh.append(ssh_latency(bench))

    def show(name: str, values: list[float]) -> None:
        print(f"| {name} | {min(values):.3f} s | {statistics.median(values):.3f} s |")

    print("| start | best | median |")
    print("|---|---|---|")
    show("`ssh host python3 -c pass` (OpenSSH)", ssh)
    show("trainform submit -> command started (new connection)", trainform)
    print(f"overhead over plain ssh: {min(trainform) - min(ssh):.3f} s (goal < 0.5 s)")


if __name__ == "__main__":
    main()
