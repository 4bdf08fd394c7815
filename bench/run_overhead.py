"""Overhead of a local run: `trainform apply` of a run whose script is `pass` (environment
cached, resubmitted with --replace) against `python3 -c pass` run directly. Goal: < 0.5 s.

    python bench/run_overhead.py

Prints the best of REPEAT for: the python process alone, the whole `trainform apply`
command, and the run itself as trainform recorded it (submission to the end of collection
is in the apply's own timing line).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPEAT = 5
CONFIG = """
workspace "bench" {}

compute "local" {
  type = "local"
}

environment "system" {
  python       = "python3"
  user_managed = true
}

run "noop" {
  experiment  = "bench"
  workspace   = workspace.bench
  compute     = compute.local
  environment = environment.system
  source_dir  = "src"
  script      = "noop.py"
}
"""


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    python3 = shutil.which("python3") or sys.executable
    trainform = [sys.executable, "-m", "trainform"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "src").mkdir()
        (folder / "src" / "noop.py").write_text("pass\n")
        (folder / "main.train.hcl").write_text(CONFIG)
        subprocess.run(
            [*trainform, "apply", "-auto-approve"],
            cwd=folder,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        direct = min(timed([python3, "-c", "pass"], folder) for _ in range(REPEAT))
        applies = [
            timed([*trainform, "apply", "-auto-approve", "--replace", "run.noop"], folder)
            for _ in range(REPEAT)
        ]
        plan = min(timed([*trainform, "plan"], folder) for _ in range(REPEAT))
    best = min(applies)
    print(f"python3 -c pass ({python3}): {direct:.3f} s")
    print(
        f"trainform apply --replace run.noop: best {best:.3f} s, "
        f"median {sorted(applies)[len(applies) // 2]:.3f} s"
    )
    print(f"trainform plan (nothing to do): {plan:.3f} s")
    print(
        f"overhead of a run over the bare process: {best - direct:.3f} s "
        f"(of which planning, as measured by plan alone: {plan:.3f} s)"
    )


if __name__ == "__main__":
    main()
