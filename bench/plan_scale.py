"""How long `trainform plan` takes with nothing to do, and its peak memory, as the number of
resources (from one for_each) grows.

    python bench/plan_scale.py            # 1000, 2000, 5000, 10000 resources
    python bench/plan_scale.py 1000 3000  # chosen sizes

For each size it writes a configuration to a temporary folder, applies it once, then runs
`trainform plan --detailed-exitcode` REPEAT times and prints the best wall time and the peak
RSS of the plan process. Goals: 1,000 under 1 s; 10,000 under 5 s and under 300 MB.
"""

from __future__ import annotations

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


def run(args: list[str], cwd: Path) -> tuple[float, int, int]:
    """Wall seconds, peak RSS in MiB, exit code of one trainform invocation."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child: exec trainform so that its rusage is ours alone
        os.chdir(cwd)
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        os.execv(sys.executable, [sys.executable, "-m", "trainform", *args])
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    return wall, usage.ru_maxrss // 1024, os.waitstatus_to_exitcode(status)


def bench(n: int) -> tuple[float, int]:
    outer = max(1, n // 100) if n >= 100 else 1
    inner = n // outer
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "main.train.hcl").write_text(CONFIG.format(outer=outer, inner=inner))
        env_args: list[str] = []
        subprocess.run(
            [
                sys.executable,
                "-m",
                "trainform",
                "apply",
                "--auto-approve",
                "--parallelism",
                "32",
                *env_args,
            ],
            cwd=folder,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        best_wall, peak = float("inf"), 0
        for _ in range(REPEAT):
            wall, rss, code = run(["plan", "--detailed-exitcode", *env_args], folder)
            if code != 0:
                raise SystemExit(f"plan for {n} resources exited {code}: expected no changes")
            best_wall, peak = min(best_wall, wall), max(peak, rss)
        return best_wall, peak


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [1000, 2000, 5000, 10000]
    print(f"{'resources':>10} {'plan (s)':>10} {'peak RSS (MiB)':>15} {'s per 1k':>9}")
    for n in sizes:
        wall, rss = bench(n)
        print(f"{n:>10} {wall:>10.2f} {rss:>15} {wall / n * 1000:>9.3f}", flush=True)


if __name__ == "__main__":
    main()
