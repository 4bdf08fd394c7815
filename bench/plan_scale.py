"""How long `trainform plan` takes with nothing to do, and its peak memory, as the number of
resources (from one for_each) grows.

    python bench/plan_scale.py            # 1000, 2000, 5000, 10000 resources
    python bench/plan_scale.py 1000 3000  # chosen sizes
    python bench/plan_scale.py --baseline /tmp/old/.venv/bin/python 1000   # before -> after

For each size it writes a configuration to a temporary folder, applies it once, then runs
`trainform plan --detailed-exitcode` REPEAT times and prints the best wall time and the peak
RSS of the plan process. Goals: 1,000 under 0.8 s; 10,000 under 5 s and under 300 MB. With
--baseline, another trainform's interpreter (the venv of another checkout) plans the same
configuration, the two interleaved run by run so that both see the same load.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPEAT = 3
CONFIG = """
locals {{
  names = toset(flatten([for i in range({outer}) : [for j in range({inner}) : "n${{i}}-${{j}}"]]))
}}

workspace "bench" {{
  description = "scale benchmark"
}}

compute "node" {{
  type                = "local"
  for_each            = local.names
  max_concurrent_runs = 2
  tags                = {{ name = each.key, workspace = workspace.bench.description }}
}}
"""


def run(args: list[str], cwd: Path, python: str = sys.executable) -> tuple[float, int, int]:
    """Wall seconds, peak RSS in MiB, exit code of one trainform invocation."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child: exec trainform so that its rusage is ours alone
        os.chdir(cwd)
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        os.execv(python, [python, "-m", "trainform", *args])
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    return wall, usage.ru_maxrss // 1024, os.waitstatus_to_exitcode(status)


def bench(n: int, pythons: list[str]) -> list[tuple[float, int]]:
    """(best wall seconds, peak RSS in MiB) of the plan with each interpreter."""
    outer = max(1, n // 100) if n >= 100 else 1
    inner = n // outer
    with tempfile.TemporaryDirectory() as tmp:
        folders = []
        for i, python in enumerate(pythons):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            (folder / "main.train.hcl").write_text(CONFIG.format(outer=outer, inner=inner))
            subprocess.run(
                [python, "-m", "trainform", "apply", "--auto-approve", "--parallelism", "32"],
                cwd=folder,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            folders.append(folder)
        results = [(float("inf"), 0) for _ in pythons]
        for _ in range(REPEAT):
            for i, python in enumerate(pythons):
                wall, rss, code = run(["plan", "--detailed-exitcode"], folders[i], python)
                if code != 0:
                    raise SystemExit(f"plan for {n} resources exited {code}: expected no changes")
                results[i] = (min(results[i][0], wall), max(results[i][1], rss))
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 2000, 5000, 10000])
    parser.add_argument("--baseline", metavar="PYTHON", help="another trainform's interpreter")
    args = parser.parse_args()
    pythons = [args.baseline, sys.executable] if args.baseline else [sys.executable]
    labels = ["baseline", "this"] if args.baseline else [""]
    print(f"{'':>9}{'resources':>10} {'plan (s)':>10} {'peak RSS (MiB)':>15} {'s per 1k':>9}")
    for n in args.sizes:
        for label, (wall, rss) in zip(labels, bench(n, pythons)):
            print(f"{label:>9}{n:>10} {wall:>10.2f} {rss:>15} {wall / n * 1000:>9.3f}", flush=True)


if __name__ == "__main__":
    main()
