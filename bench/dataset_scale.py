"""A 10,000-file, 5 GiB dataset sent to an SSH compute by one `trainform apply`, once.

    python bench/dataset_scale.py            # as root: starts its own sshd on 127.0.0.1
    python bench/dataset_scale.py --gib 2    # less disk (the bench needs ~3x the size free)

The dataset (random, incompressible bytes; log-normal sizes, so a few files are hundreds of
MiB) is generated under /tmp and deleted afterwards, with the local store and the host's
folders. The configuration is bench/dataset_transfer.py's: `dataset "big" { source = "data" }`
read by one run on an `ssh` compute (OpenSSH on 127.0.0.1, the user tfuser) that counts the
files in TRAINFORM_INPUT_BIG. Printed, for `trainform plan` before the first apply (every file
hashed), the first `trainform apply -auto-approve` and a `trainform plan` afterwards: wall time
and peak resident memory (`/usr/bin/time -v`, else VmHWM polled from /proc); for the apply,
every progress line ("input big: storing", "uploading") with the second it was printed at.
Nothing may be read into memory whole: the peaks must stay far below the dataset's size.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from dataset_transfer import SCRIPT, config, environment, upload
from ssh_server import bench_server

MIB = 1 << 20
CHUNK = 8 * MIB
TIME = "/usr/bin/time"


def make_dataset(root: Path, files: int, total: int, seed: int) -> None:
    """``files`` files of log-normal sizes adding up to ``total`` bytes, in 100 folders,
    written from os.urandom a chunk at a time."""
    rng = random.Random(seed)
    weights = [rng.lognormvariate(0, 1.5) for _ in range(files)]
    sizes = [max(1, int(w * total / sum(weights))) for w in weights]
    sizes[sizes.index(max(sizes))] += total - sum(sizes)
    for i, size in enumerate(sizes):
        path = root / f"d{i % 100:02d}" / f"f{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            left = size
            while left:
                n = min(left, CHUNK)
                out.write(os.urandom(n))
                left -= n


@dataclass
class Timed:
    seconds: float
    peak_kib: int
    how: str  # where the peak came from
    lines: list[tuple[float, str]]  # (second since start, line) of stdout and stderr
    code: int


def timed(folder: Path, *args: str) -> Timed:
    """`python -m trainform ARGS` in ``folder``: wall time, peak RSS, its output lines with
    the second each was printed at."""
    argv = [sys.executable, "-m", "trainform", *args]
    report = folder.parent / "time.txt"
    if os.access(TIME, os.X_OK):
        argv = [TIME, "-v", "-o", str(report), *argv]
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        cwd=folder,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peak = [0]

    def poll() -> None:  # without /usr/bin/time: the python process's VmHWM
        while proc.poll() is None:
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
                found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
                if found:
                    peak[0] = max(peak[0], int(found.group(1)))
            except OSError:
                pass
            time.sleep(0.2)

    poller = None
    if argv[0] != TIME:
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append((time.perf_counter() - start, line.rstrip("\n")))
    code = proc.wait()
    seconds = time.perf_counter() - start
    if poller is not None:
        poller.join()
        return Timed(seconds, peak[0], "VmHWM polled every 0.2 s", lines, code)
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", report.read_text())
    assert found, report.read_text()
    return Timed(seconds, int(found.group(1)), "/usr/bin/time -v", lines, code)


def check(result: Timed, what: str, needle: str) -> None:
    text = "\n".join(line for _, line in result.lines)
    if result.code != 0 or needle not in text:
        raise SystemExit(f"{what} failed (exit {result.code}, wanted {needle!r}):\n{text[-4000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--gib", type=float, default=5.0)
    args = parser.parse_args()
    total = int(args.gib * (1 << 30))

    free = shutil.disk_usage("/tmp").free
    if free < 3 * total:
        raise SystemExit(f"{free / (1 << 30):.1f} GiB free under /tmp: use a smaller --gib")
    scratch = Path(tempfile.mkdtemp(prefix="trainform-bench-scale-", dir="/tmp"))
    scratch.chmod(0o755)
    folder = scratch / "config"
    remotes: list[str] = []
    try:
        with bench_server() as bench:
            (folder / "src").mkdir(parents=True)
            (folder / "src" / "count.py").write_text(SCRIPT)
            t0 = time.perf_counter()
            make_dataset(folder / "data", args.files, total, seed=0)
            made = time.perf_counter() - t0
            remote = bench.remote_dir("bench-scale-")
            remotes.append(remote)
            (folder / "main.train.hcl").write_text(config(bench, remote, True))

            os.sync()
            cold = timed(folder, "plan")
            check(cold, "plan before the first apply", "to add")
            os.sync()
            first = timed(folder, "apply", "-auto-approve")
            check(first, "apply", f"files: {args.files}")
            warm = timed(folder, "plan")
            check(warm, "plan after the apply", "No changes")
            files, sent_bytes = upload(folder)
            sent = {"files": files, "bytes": sent_bytes}
    finally:
        for path in remotes:
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)

    load = os.getloadavg()
    print(
        f"dataset: {args.files:,} files, {total:,} B ({args.gib:g} GiB), generated in "
        f"{made:.1f} s; load average {load[0]:.2f}; peaks by {first.how}"
    )
    print(f"upload recorded: {int(sent.get('files', 0)):,} files, {int(sent.get('bytes', 0)):,} B")
    print("| command | wall time | peak RSS | peak / dataset |")
    print("|---|---|---|---|")
    for name, result in (
        ("`plan` before the first apply (every file hashed)", cold),
        ("first `apply -auto-approve` (hash, store, upload, run)", first),
        ("`plan` afterwards (no changes)", warm),
    ):
        print(
            f"| {name} | {result.seconds:.1f} s | {result.peak_kib / 1024:.0f} MiB "
            f"| {result.peak_kib * 1024 / total:.4f} |"
        )
    progress = [(s, line) for s, line in first.lines if "storing" in line or "uploading" in line]
    print(f"apply's progress lines ({len(progress)}), second since start: line")
    for s, line in progress:
        print(f"  {s:7.1f}: {line}")
    others = [(s, line) for s, line in first.lines if (s, line) not in progress]
    print("apply's other output (second since start: line):")
    for s, line in others:
        print(f"  {s:7.1f}: {line}")


if __name__ == "__main__":
    main()
