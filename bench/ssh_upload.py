"""Snapshot upload to an SSH target against `rsync -a -e ssh`, same server, same tree.

    python bench/ssh_upload.py            # as root: starts its own sshd on 127.0.0.1

The tree is 5,000 files, 200 MiB in all, sizes log-normal (seeded: the same tree every time),
random (incompressible) content. Both tools copy it to one OpenSSH server on 127.0.0.1 as the
user tfuser, with one key.

- first upload, into a fresh destination: trainform does what a run's submit does (snapshot
  with an empty hash cache, blobs into the local store, one connection, the missing-blob
  query, one tar stream of the missing blobs), timed from start to the last blob on the host;
  rsync copies the tree into an empty folder. Goal: trainform within 1.5x rsync.
- one file of ~1 MiB rewritten: the same again into the now populated destinations. Goals:
  no slower than rsync; bytes sent within 1.1x of the changed bytes plus a fixed overhead.
  trainform's bytes are what the run records as `upload.bytes` (the query and the tar
  stream); rsync's are its `--stats` "Total bytes sent". Neither counts SSH's own framing.

Each figure is the best of --repeat runs (and the median is shown).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shlex
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ssh_server import BenchServer, bench_server

from trainform.providers.ssh import upload_blobs
from trainform.remote.ssh import SSHConnection
from trainform.runs.snapshot import snapshot, store_blobs

MIB = 1 << 20


@dataclass(frozen=True)
class Transfer:
    seconds: float
    bytes: int
    files: int
    store_seconds: float = 0.0


def make_tree(root: Path, files: int, total: int, seed: int) -> list[Path]:
    """`files` files of log-normal sizes adding up to `total` bytes, in 50 x 5 folders."""
    rng = random.Random(seed)
    weights = [rng.lognormvariate(0, 1.5) for _ in range(files)]
    sizes = [max(1, int(w * total / sum(weights))) for w in weights]
    sizes[sizes.index(max(sizes))] += total - sum(sizes)
    paths = []
    for i, size in enumerate(sizes):
        path = root / f"d{i % 50:02d}" / f"s{i // 50 % 5}" / f"f{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
        paths.append(path)
    return paths


def rewrite_one(paths: list[Path], seed: int) -> int:
    """Give the file closest to 1 MiB new random content of the same size, and a modification
    time of its own (rsync's quick check compares whole seconds: two rewrites within one
    second would look unchanged to it)."""
    path = min(paths, key=lambda p: abs(p.stat().st_size - MIB))
    size = path.stat().st_size
    path.write_bytes(random.Random(seed).randbytes(size))
    os.utime(path, (time.time(), 1_000_000_000 + seed))
    return size


def trainform_upload(bench: BenchServer, src: Path, local: Path, workdir: str) -> Transfer:
    """What a run's submit sends for `src`: local hash cache and blob store under `local`,
    the host's blob cache under `workdir`. Timed: the snapshot, then connecting, the query
    and the stream. Not timed: copying new blobs into the local workspace store, which a
    run does with any target (`store_seconds`)."""
    start = time.perf_counter()
    manifest = snapshot(src, local / "hashes", max_files=10**9, max_bytes=10**12).manifest
    snapshotted = time.perf_counter()
    store_blobs(manifest, src, local / "blobs")
    stored = time.perf_counter()
    os.sync()  # what the store wrote is not left to compete with the upload
    restart = time.perf_counter()
    with SSHConnection(bench.target) as conn:
        known = local / "known-set.json"  # as a run's submit keeps it per host
        wanted = sorted({e.sha256 for e in manifest.entries if e.kind == "file"})
        sent = upload_blobs(conn, wanted, local / "blobs", f"{workdir}/blobs", known)
    seconds = snapshotted - start + time.perf_counter() - restart
    return Transfer(seconds, sent["bytes"], sent["files"], stored - snapshotted)


def rsync_upload(bench: BenchServer, src: Path, dest: str) -> Transfer:
    argv = ["rsync", "-a", "--stats", "-e", shlex.join(bench.ssh_argv())]
    os.sync()
    start = time.perf_counter()
    out = subprocess.run(
        [*argv, f"{src}/", f"{bench.login}:{dest}/"], check=True, capture_output=True, text=True
    ).stdout
    seconds = time.perf_counter() - start

    def stat(label: str) -> int:
        match = re.search(rf"^{label}: ([\d,]+)", out, re.MULTILINE)
        assert match, out
        return int(match.group(1).replace(",", ""))

    return Transfer(seconds, stat("Total bytes sent"), stat("Number of regular files transferred"))


def best(runs: list[Transfer]) -> Transfer:
    return min(runs, key=lambda t: t.seconds)


def row(name: str, runs: list[Transfer]) -> str:
    b = best(runs)
    median = statistics.median(t.seconds for t in runs)
    return f"| {name} | {b.seconds:.2f} s | {median:.2f} s | {b.files:,} | {b.bytes:,} |"


def repeated(repeat: int, *steps: Callable[[int], Transfer]) -> list[list[Transfer]]:
    """Each step `repeat` times, interleaved (so that load on the machine hits all alike)."""
    results: list[list[Transfer]] = [[] for _ in steps]
    for i in range(repeat):
        for runs, step in zip(results, steps):
            runs.append(step(i))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if shutil.which("rsync") is None:
        raise SystemExit("rsync is needed on this machine (apt-get install -y rsync)")

    with tempfile.TemporaryDirectory(prefix="trainform-bench-") as tmp, bench_server() as bench:
        src = Path(tmp) / "src"
        paths = make_tree(src, args.files, args.mib * MIB, args.seed)
        remote = bench.remote_dir("bench-upload-")
        try:
            # First uploads: a fresh local store and host folder for every round, kept to the
            # end (deleting 5,000 files makes ext4 slow to create the next ones for a while);
            # the last ones are reused for (b).
            def local(i: int) -> Path:
                return Path(tmp) / f"local{i}"

            def tf_first(i: int) -> Transfer:
                return trainform_upload(bench, src, local(i), f"{remote}/tf{i}")

            def rsync_first(i: int) -> Transfer:
                return rsync_upload(bench, src, f"{remote}/rsync{i}")

            tf_a, rsync_a = repeated(args.repeat, tf_first, rsync_first)
            last = args.repeat - 1

            def change(i: int) -> Transfer:  # the edit itself, not timed
                return Transfer(0.0, rewrite_one(paths, args.seed + 1 + i), 1)

            def tf_again(i: int) -> Transfer:
                return trainform_upload(bench, src, local(last), f"{remote}/tf{last}")

            def rsync_again(i: int) -> Transfer:
                return rsync_upload(bench, src, f"{remote}/rsync{last}")

            changes, tf_b, rsync_b = repeated(args.repeat, change, tf_again, rsync_again)
        finally:
            shutil.rmtree(remote, ignore_errors=True)

    size = changes[0].bytes  # the same file every round, so the same size
    print(f"tree: {args.files:,} files, {args.mib} MiB (seed {args.seed}); changed file {size:,} B")
    print("| upload | best | median | files sent | bytes sent |")
    print("|---|---|---|---|---|")
    print(row("(a) first, trainform", tf_a))
    print(row("(a) first, rsync -a", rsync_a))
    print(row("(b) one file changed, trainform", tf_b))
    print(row("(b) one file changed, rsync -a", rsync_b))
    ratio_a = best(tf_a).seconds / best(rsync_a).seconds
    ratio_b = best(tf_b).seconds / best(rsync_b).seconds
    overhead = max(t.bytes for t in tf_b) - size
    store = min(t.store_seconds for t in tf_a)
    print(f"(a) not in the figures above: a run's copy into the local blob store, {store:.2f} s")
    print(f"(a) trainform / rsync: {ratio_a:.2f}x (goal <= 1.5x)")
    print(f"(b) trainform / rsync: {ratio_b:.2f}x (goal <= 1x)")
    print(
        f"(b) trainform overhead over the changed bytes: {overhead:,} B "
        f"(rsync: {max(t.bytes for t in rsync_b) - size:,} B)"
    )


if __name__ == "__main__":
    main()
