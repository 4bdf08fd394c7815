"""`trainform plan` with a Slurm compute holding 100 finished runs, and how many Slurm commands
it runs. Goal (issue 15): under 1.5 s, and no `sacct` (nor anything Slurm) per finished run.

    sudo .venv/bin/python bench/slurm_plan.py [--runs 100] [--repeat 5]

Starts its own test cluster with accounting (tests/slurm.py `accounting=True`: munged,
slurmdbd on its own MariaDB, slurmctld, two slurmd, in a temporary folder; needs root and
Debian's slurm-wlm, slurmdbd, munge and mariadb-server). The configuration has a slurm compute
with `account = "proj42"` (so plan asks sacctmgr) and RUNS runs (`count`), each printing a
line; one `apply` runs them all. Then REPEAT `trainform plan` runs, each with the Slurm
commands (sinfo, squeue, sacct, sacctmgr, scontrol, sbatch, scancel, srun) on PATH through
shims that log each call and exec the real program. Prints the median and best wall time of
plan, and the Slurm commands one plan ran, by name.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from slurm import start_cluster

COMMANDS = ("sinfo", "squeue", "sacct", "sacctmgr", "scontrol", "sbatch", "scancel", "srun")


def config(workdir: Path, runs: int) -> str:
    return (
        'compute "hpc" {\n'
        '  type      = "slurm"\n'
        '  partition = "debug"\n'
        '  account   = "proj42"\n'
        f'  workdir   = "{workdir}"\n'
        "}\n"
        'run "trial" {\n'
        f"  count      = {runs}\n"
        '  experiment = "bench"\n'
        "  compute    = compute.hpc\n"
        '  source_dir = "src"\n'
        '  script     = "trial.py"\n'
        '  arguments  = ["--index", "${count.index}"]\n'
        "}\n"
    )


def shims(folder: Path, log: Path) -> str:
    """A folder of scripts named after COMMANDS that append their name to ``log`` and exec the
    real program; returns a PATH with it first."""
    folder.mkdir()
    path = os.environ.get("PATH", "")
    for name in COMMANDS:
        real = shutil.which(name, path=path)
        if real is None:
            continue
        shim = folder / name
        shim.write_text(f'#!/bin/sh\necho {name} >> "{log}"\nexec "{real}" "$@"\n')
        shim.chmod(0o755)
    return f"{folder}{os.pathsep}{path}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the test cluster runs its daemons as root: run this as root")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        folder.chmod(0o755)
        src = folder / "config" / "src"
        src.mkdir(parents=True)
        (src / "trial.py").write_text("import sys\nprint('trial', sys.argv[-1], flush=True)\n")
        (folder / "config" / "main.train.hcl").write_text(config(folder / "shared", args.runs))
        log = folder / "calls.log"
        cluster = start_cluster(accounting=True)
        try:
            env = {**cluster.env, "NO_COLOR": "1"}
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "trainform", "apply", "-auto-approve"],
                cwd=folder / "config",
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            applied = time.perf_counter() - start
            env["PATH"] = shims(folder / "shims", log)
            seconds, calls = [], []
            for _ in range(args.repeat):
                log.write_text("")
                start = time.perf_counter()
                proc = subprocess.run(
                    [sys.executable, "-m", "trainform", "plan", "-detailed-exitcode"],
                    cwd=folder / "config",
                    env=env,
                    capture_output=True,
                    text=True,
                )
                seconds.append(time.perf_counter() - start)
                if proc.returncode != 0:  # 0: no changes (2 would mean the runs would rerun)
                    raise RuntimeError(
                        f"plan exited with {proc.returncode}:\n{proc.stdout[-2000:]}"
                        f"{proc.stderr[-2000:]}"
                    )
                calls.append(collections.Counter(log.read_text().split()))
        finally:
            cluster.stop()
    print(f"apply of {args.runs} runs: {applied:.1f} s")
    print(
        f"plan with {args.runs} finished runs: median {statistics.median(seconds):.3f} s, "
        f"best {min(seconds):.3f} s (goal: < 1.5 s)"
    )
    counts = calls[-1]
    shown = ", ".join(f"{n} {c}" for n, c in sorted(counts.items())) or "none"
    print(f"Slurm commands per plan: {sum(counts.values())} ({shown})")
    if any(c != counts for c in calls):
        print(f"  (they differed between plans: {[dict(c) for c in calls]})")


if __name__ == "__main__":
    main()
