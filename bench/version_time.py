"""How long `trainform --version` takes (goal: under 0.3 s), and proof that it imports no
heavy SDK (paramiko, docker, pyspark, networkx, rich, lark).

    python bench/version_time.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

HEAVY = ("paramiko", "docker", "pyspark", "networkx", "rich", "lark", "sqlite_utils")
RUNS = 15


def main() -> None:
    cmd = [sys.executable, "-m", "trainform", "--version"]
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    probe = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "trainform", "--version"],
        check=True,
        capture_output=True,
        text=True,
    ).stderr
    imported = {line.split("|")[-1].strip() for line in probe.splitlines() if "|" in line}
    loaded = sorted(h for h in HEAVY if h in imported)
    print(
        f"trainform --version: median {statistics.median(times):.3f} s, "
        f"best {min(times):.3f} s over {RUNS} runs"
    )
    print(f"heavy modules imported: {', '.join(loaded) or 'none'}")


if __name__ == "__main__":
    main()
