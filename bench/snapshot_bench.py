"""How fast a source folder becomes a snapshot manifest, against the tools a user would compare
it with.

    python bench/snapshot_bench.py          # builds /tmp/trainform-snapbench once, then measures
    python bench/snapshot_bench.py --rebuild --repeat 10

The tree: 10,000 files, 500 MB (9,900 small files of varied sizes in 100 folders, 100 larger
files under data/), committed to a git repository. It is built once and reused while the recipe
file beside it matches.

Measured, best of REPEAT (the goals are on these; medians beside them), page cache warm for
every contender:

1. first snapshot: `snapshot()` with no hash cache (in-process, after imports; the cache files
   are deleted before each try) against the whole `find . -type f -print0 | xargs -0 sha256sum`
   pipeline over the same files. Goal: within 1.3x.
2. unchanged re-snapshot: `snapshot()` with a warm hash cache against a `git status` process.
   Goal: within 2x.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPEAT = 3
BASE = Path("/tmp/trainform-snapbench")
TREE = BASE / "tree"
RECIPE_FILE = BASE / "recipe.json"
CACHE = BASE / "hashes.db"
RECIPE = {
    "version": 1,
    "seed": 20240601,
    "small_files": 9_900,
    "large_files": 100,
    "total_bytes": 500 * 1000 * 1000,
    "top_dirs": 10,
    "sub_dirs": 10,
}
GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    "GIT_AUTHOR_DATE": "2024-06-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2024-06-01T00:00:00Z",
}


def build_tree() -> None:
    """Write the tree described by RECIPE and commit it (takes a while; done once)."""
    if BASE.exists():
        shutil.rmtree(BASE)
    TREE.mkdir(parents=True)
    rng = random.Random(RECIPE["seed"])
    pool = rng.randbytes(16 * 1024 * 1024)

    def content(tag: str, size: int) -> bytes:
        head = f"{tag}\n".encode()[:size]
        rest = size - len(head)
        start = rng.randrange(0, len(pool) - rest) if rest < len(pool) else 0
        chunks = [head]
        while rest > 0:
            piece = pool[start : start + rest]
            chunks.append(piece)
            rest -= len(piece)
            start = 0
        return b"".join(chunks)

    # Small files: log-uniform between 100 B and 64 KiB (most are a few KiB, like source).
    small_sizes = [int(10 ** rng.uniform(2, 4.8)) for _ in range(RECIPE["small_files"])]
    large_total = RECIPE["total_bytes"] - sum(small_sizes)
    weights = [rng.uniform(0.2, 1.8) for _ in range(RECIPE["large_files"])]
    large_sizes = [int(large_total * w / sum(weights)) for w in weights]
    large_sizes[-1] += large_total - sum(large_sizes)

    dirs = [
        TREE / f"pkg{t:02d}" / f"mod{s:02d}"
        for t in range(RECIPE["top_dirs"])
        for s in range(RECIPE["sub_dirs"])
    ]
    for d in dirs:
        d.mkdir(parents=True)
    for i, size in enumerate(small_sizes):
        folder = dirs[i % len(dirs)]
        (folder / f"file{i:05d}.py").write_bytes(content(f"small {i}", size))
    (TREE / "data").mkdir()
    for i, size in enumerate(large_sizes):
        (TREE / "data" / f"shard{i:03d}.bin").write_bytes(content(f"large {i}", size))

    env = {**os.environ, **GIT_ENV}
    for args in (
        ["init", "-q", "-b", "main"],
        ["config", "core.compression", "0"],
        ["config", "core.looseCompression", "0"],
        ["add", "-A"],
        ["commit", "-q", "-m", "benchmark tree"],
    ):
        subprocess.run(["git", "-C", str(TREE), *args], check=True, env=env)
    RECIPE_FILE.write_text(json.dumps(RECIPE, sort_keys=True))


def ensure_tree(rebuild: bool) -> None:
    current = RECIPE_FILE.read_text() if RECIPE_FILE.exists() else ""
    if rebuild or current != json.dumps(RECIPE, sort_keys=True):
        print(f"building {TREE} (once) ...", flush=True)
        start = time.perf_counter()
        build_tree()
        print(f"built in {time.perf_counter() - start:.1f} s", flush=True)


def run_process(cmd: str | list[str]) -> float:
    """Wall time of one command run in TREE (a string goes through the shell), output
    discarded."""
    start = time.perf_counter()
    subprocess.run(cmd, shell=isinstance(cmd, str), cwd=TREE, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    args = sys.argv[1:]
    repeat = int(args[args.index("--repeat") + 1]) if "--repeat" in args else REPEAT
    ensure_tree("--rebuild" in args)
    from trainform.runs.snapshot import snapshot

    def timed_snapshot(cold: bool) -> tuple[float, int, int, str]:
        if cold:  # the cache files are CACHE.<digest of the folder>.cache (and, before, CACHE)
            for path in BASE.glob(f"{CACHE.name}*"):
                path.unlink()
        start = time.perf_counter()
        result = snapshot(TREE, CACHE)
        manifest_id = result.manifest.id  # part of the work a caller needs
        elapsed = time.perf_counter() - start
        return elapsed, result.hashed, result.cached, manifest_id

    # Warm the page cache for everyone.
    run_process("find . -path ./.git -prune -o -type f -print0 | xargs -0 cat > /dev/null")

    # Each contender's tries alternate with the other's, so that a busy moment on the
    # machine does not favour one side.
    sha_cmd = "find . -path ./.git -prune -o -type f -print0 | xargs -0 sha256sum > /dev/null"
    paths: list[str] = []
    for folder, dirs, names in os.walk(TREE):
        dirs[:] = [d for d in dirs if d != ".git"]
        paths.extend(os.path.join(folder, name) for name in names)

    def lstat_all() -> float:
        start = time.perf_counter()
        for path in paths:
            os.lstat(path)
        return time.perf_counter() - start

    shas, colds, gits, warms, floors = [], [], [], [], []
    for _ in range(repeat):
        shas.append(run_process(sha_cmd))
        colds.append(timed_snapshot(cold=True))
    for _ in range(repeat):
        gits.append(run_process(["git", "status"]))
        warms.append(timed_snapshot(cold=False))
        floors.append(lstat_all())
    sha = min(shas)
    cold = min(c[0] for c in colds)
    git_status = min(gits)
    warm = min(w[0] for w in warms)
    medians = {
        "sha": statistics.median(shas),
        "cold": statistics.median(c[0] for c in colds),
        "git": statistics.median(gits),
        "warm": statistics.median(w[0] for w in warms),
        "floor": statistics.median(floors),
    }

    print(f"\ntree: {TREE}, {len(paths):,} files, cpus: {os.cpu_count()}, best of {repeat}")
    print(f"{'measurement':<48}{'seconds':>9}{'ratio':>8}{'goal':>7}{'median':>9}{'ratio':>8}")
    rows = [
        ("find | xargs sha256sum (process)", "sha", sha, None, None),
        (f"snapshot(), cold cache (hashed {colds[0][1]:,})", "cold", cold, "sha", 1.3),
        ("git status (process)", "git", git_status, None, None),
        (f"snapshot(), warm cache (cached {warms[0][2]:,})", "warm", warm, "git", 2.0),
        ("reference: os.lstat of each file, 1 thread", "floor", min(floors), None, None),
    ]
    best = {"sha": sha, "git": git_status}
    for name, key, seconds, versus, goal in rows:
        ratio_text = f"{seconds / best[versus]:.2f}x" if versus else ""
        goal_text = f"{goal}x" if goal is not None else ""
        median_ratio = f"{medians[key] / medians[versus]:.2f}x" if versus else ""
        print(
            f"{name:<48}{seconds:>9.3f}{ratio_text:>8}{goal_text:>7}"
            f"{medians[key]:>9.3f}{median_ratio:>8}"
        )
    ids = {c[3] for c in colds} | {w[3] for w in warms}
    print(f"manifest id: {', '.join(sorted(ids))}")
    print(f"load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
