"""Start-up cost: `trainform plan` of a configuration with one local compute (already
attached, so the plan has nothing to do). Goal: under 0.35 s.

    python bench/plan_startup.py [--repeat 15]
    python bench/plan_startup.py --baseline /tmp/old/.venv/bin/python   # before -> after

Prints the median and best wall time and the median CPU time (user + system of the command
and the processes it waited for; other work on the machine disturbs it less than wall time)
of REPEAT plans, in two settings:

- bytecode cached: the normal case once trainform has run once (compiled modules are kept
  under a temporary PYTHONPYCACHEPREFIX, so nothing is written into the source tree);
- compiled each time: PYTHONDONTWRITEBYTECODE=1 and no cache, as in some sandboxes and CI
  images, where every trainform module is compiled again by each command.

With --baseline, the same plan also runs with another interpreter (the venv of another
checkout, e.g. before a change), interleaved run by run so that both see the same load. For
reference it times the bare interpreter (`python -c pass`) and lists which heavy modules the
plan imported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """
compute "local" {
  type = "local"
}
"""
HEAVY = (
    "rich",
    "networkx",
    "sqlite_utils",
    "lark",
    "hcl2",
    "yaml",
    "optuna",
    "paramiko",
    "docker",
    "importlib.metadata",
)


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system) and exit code of one process."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child: exec so that the rusage is the command's alone
        try:
            os.chdir(cwd)
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, 1)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    return wall, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status)


def heavy_imports(python: str, cwd: Path, env: dict[str, str]) -> list[str]:
    probe = subprocess.run(
        [python, "-X", "importtime", "-m", "trainform", "plan"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    imported = {line.split("|")[-1].strip() for line in probe.splitlines() if "|" in line}
    return [h for h in HEAVY if h in imported]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--baseline", metavar="PYTHON", help="another trainform's interpreter")
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINFORM_", "PYTHON"))}
    base["NO_COLOR"] = "1"
    pythons = [("", sys.executable)]
    if args.baseline:
        pythons.insert(0, ("baseline ", args.baseline))
    with tempfile.TemporaryDirectory(prefix="plan-startup-") as tmp:
        settings = [
            ("bytecode cached", {**base, "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache")}),
            ("compiled each time", {**base, "PYTHONDONTWRITEBYTECODE": "1"}),
        ]
        cases = []  # (label, argv, cwd, env)
        for tag, python in pythons:
            folder = Path(tmp) / f"config-{len(cases)}"
            folder.mkdir()
            (folder / "main.train.hcl").write_text(CONFIG)
            subprocess.run(
                [python, "-m", "trainform", "apply", "-auto-approve"],
                cwd=folder,
                env=settings[0][1],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            for label, env in settings:
                cases.append(
                    (
                        f"{tag}trainform plan, {label}",
                        [python, "-m", "trainform", "plan"],
                        folder,
                        env,
                    )
                )
        for label, env in settings:
            cases.append(
                (f"python -c pass, {label}", [sys.executable, "-c", "pass"], Path(tmp), env)
            )
        results: dict[str, list[tuple[float, float]]] = {c[0]: [] for c in cases}
        for _label, argv, cwd, env in cases:
            timed(argv, cwd, env)  # warm-up (and, with a cache prefix, fills it)
        for _ in range(args.repeat):
            for label, argv, cwd, env in cases:
                wall, cpu, code = timed(argv, cwd, env)
                if code != 0:
                    raise SystemExit(f"{' '.join(argv)} exited {code}")
                results[label].append((wall, cpu))
        heavy = {
            tag: heavy_imports(py, Path(tmp) / "config-0", settings[0][1]) for tag, py in pythons
        }
    print(f"{args.repeat} runs each, interleaved; seconds; load average {os.getloadavg()[0]:.2f}\n")
    print(f"| {'command':<50} | wall median | wall best | CPU median |")
    print(f"|{'-' * 52}|-------------|-----------|------------|")
    for label, runs in results.items():
        walls = [r[0] for r in runs]
        cpu = statistics.median(r[1] for r in runs)
        print(
            f"| {label:<50} | {statistics.median(walls):11.3f} | {min(walls):9.3f} | {cpu:10.3f} |"
        )
    for tag, names in heavy.items():
        print(f"\nheavy modules the {tag}plan imports: {', '.join(names) or 'none'}")


if __name__ == "__main__":
    main()
