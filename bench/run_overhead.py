"""Overhead of a local run: `trainform apply` of a run whose script is `pass` (environment
cached, resubmitted with --replace) against `python3 -c pass` run directly. Goal: < 0.5 s.

    python bench/run_overhead.py [--repeat 7]
    python bench/run_overhead.py --baseline /tmp/old/.venv/bin/python   # before -> after

Prints the best and the median of REPEAT for: the python process alone, the whole
`trainform apply` command, and `trainform plan` of the same configuration (start-up, refresh,
snapshot and fingerprint: the part of the overhead before submission). With --baseline, the
same is measured with another trainform's interpreter (the venv of another checkout), the two
interleaved run by run so that both see the same load.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def folder_for(python: str, tmp: Path) -> Path:
    folder = tmp / f"config-{len(list(tmp.iterdir()))}"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "noop.py").write_text("pass\n")
    (folder / "main.train.hcl").write_text(CONFIG)
    subprocess.run(
        [python, "-m", "trainform", "apply", "-auto-approve"],
        cwd=folder,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--baseline", metavar="PYTHON", help="another trainform's interpreter")
    args = parser.parse_args()
    python3 = shutil.which("python3") or sys.executable
    pythons = [("", sys.executable)]
    if args.baseline:
        pythons.insert(0, ("baseline ", args.baseline))
    apply_args = ["apply", "-auto-approve", "--replace", "run.noop"]
    with tempfile.TemporaryDirectory() as tmp:
        folders = {tag: folder_for(python, Path(tmp)) for tag, python in pythons}
        direct = [timed([python3, "-c", "pass"], Path(tmp)) for _ in range(args.repeat)]
        applies: dict[str, list[float]] = {tag: [] for tag, _ in pythons}
        plans: dict[str, list[float]] = {tag: [] for tag, _ in pythons}
        for _ in range(args.repeat):
            for tag, python in pythons:
                cmd = [python, "-m", "trainform"]
                applies[tag].append(timed([*cmd, *apply_args], folders[tag]))
                plans[tag].append(timed([*cmd, "plan"], folders[tag]))
    bare = min(direct)
    print(f"python3 -c pass ({python3}): best {bare:.3f} s\n")
    for tag, _ in pythons:
        best, median = min(applies[tag]), statistics.median(applies[tag])
        plan = min(plans[tag])
        print(f"{tag}trainform apply --replace run.noop: best {best:.3f} s, median {median:.3f} s")
        print(f"{tag}trainform plan (nothing to do): best {plan:.3f} s")
        print(
            f"{tag}overhead of a run over the bare process: best {best - bare:.3f} s, "
            f"median {median - bare:.3f} s (goal: < 0.5 s)\n"
        )


if __name__ == "__main__":
    main()
