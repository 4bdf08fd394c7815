"""The state backends side by side: SQLite (a file beside the configuration) and PostgreSQL
(a server this script starts on loopback in a temporary folder, as the tests do).

    python bench/state_backends.py                  # 1,000 resources, median of 3
    python bench/state_backends.py 200 --repeat 5   # another size, more repeats
    python bench/state_backends.py --profile        # and where the pg apply and plan spend time

The configuration is bench/plan_scale.py's: a workspace and N local computes (one for_each).
Each goes through the provider (facts, workdir) and is written to state one by one, as apply
persists each completed change before the next. For each backend it measures, as the median of
REPEAT runs interleaved between the backends:

- `apply` of the N resources into an empty state (wall time), and inside it the time of each
  resource's state write (`StateStore.put_resource`: its statements and transaction) with the
  number of statements each costs;
- `plan` with nothing to do once they are applied (wall time, and the time spent in the
  store's statements).

Goals: the pg no-op plan under 1.5x SQLite's, the pg apply under 2x. With --profile, the pg
apply and plan run once more under cProfile and the functions where they spend most time are
printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from plan_scale import CONFIG

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from postgres import start_server  # noqa: E402  (tests/postgres.py: the tests' server)

SCHEMA = "bench"
BACKENDS = ("sqlite", "pg")

# Runs trainform's CLI in this process with the store's writes and statements timed; the
# figures go to the JSON file named by BENCH_STATS when the command ends.
INSTRUMENTED = """
import atexit, json, os, sys, time
from trainform.state.sqlite import SQLiteStateStore
from trainform.state.store import StateStore

stats = {"put_resource": [], "statements": 0, "statement_s": 0.0, "statements_in_puts": 0}
classes = [StateStore, SQLiteStateStore]
try:
    from trainform.state.postgres import PgStateStore
    classes.append(PgStateStore)
except ImportError:
    pass

def timed_statement(fn):
    def wrapper(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(self, *args, **kwargs)
        finally:
            stats["statements"] += 1
            stats["statement_s"] += time.perf_counter() - start
    return wrapper

def timed_put(fn):
    def wrapper(self, *args, **kwargs):
        before = stats["statements"]
        start = time.perf_counter()
        try:
            return fn(self, *args, **kwargs)
        finally:
            stats["put_resource"].append(time.perf_counter() - start)
            stats["statements_in_puts"] += stats["statements"] - before
    return wrapper

for cls in classes:
    for name in ("execute", "_executemany"):
        if name in vars(cls):
            setattr(cls, name, timed_statement(vars(cls)[name]))
    if "put_resource" in vars(cls):
        setattr(cls, "put_resource", timed_put(vars(cls)["put_resource"]))

atexit.register(lambda: open(os.environ["BENCH_STATS"], "w").write(json.dumps(stats)))
sys.argv = ["trainform", *sys.argv[1:]]
if os.environ.get("BENCH_PROFILE"):
    import cProfile, pstats
    from trainform.cli.main import main
    profile = cProfile.Profile()
    try:
        profile.runcall(main)
    except SystemExit:
        pass
    finally:
        out = os.environ["BENCH_PROFILE"]
        profile.dump_stats(out)
else:
    from trainform.cli.main import main
    main()
"""


def write_config(folder: Path, backend: str, n: int) -> None:
    outer = max(1, n // 100) if n >= 100 else 1
    text = CONFIG.format(outer=outer, inner=n // outer)
    if backend.startswith("pg"):
        text = f'trainform {{\n  backend "pg" {{\n    schema_name = "{SCHEMA}"\n  }}\n}}\n' + text
    folder.mkdir()
    (folder / "main.train.hcl").write_text(text)


def reset(folder: Path, backend: str, conn_strs: dict[str, str]) -> None:
    """Empty the backend's state (and the computes' workdirs) for a fresh apply."""
    if backend.startswith("pg"):
        import psycopg

        from trainform.state.postgres import workspace_schema

        with psycopg.connect(conn_strs[backend], autocommit=True) as conn:
            for schema in (SCHEMA, workspace_schema(SCHEMA, "default")):
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    shutil.rmtree(folder / ".trainform", ignore_errors=True)


def trainform(
    args: list[str], folder: Path, env: dict[str, str], profile: Path | None = None
) -> tuple[float, dict[str, float], int]:
    """Wall seconds, the store's figures and the exit code of one instrumented command."""
    with tempfile.NamedTemporaryFile(suffix=".json") as stats_file:
        run_env = {**env, "BENCH_STATS": stats_file.name}
        if profile:
            run_env["BENCH_PROFILE"] = str(profile)
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", INSTRUMENTED, *args],
            cwd=folder,
            env=run_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wall = time.perf_counter() - start
        stats = json.loads(Path(stats_file.name).read_text() or "{}")
    if proc.returncode not in (0, 2):
        raise SystemExit(f"trainform {' '.join(args)} in {folder} failed:\n{proc.stderr}")
    puts = stats.get("put_resource", [])
    return (
        wall,
        {
            "puts": len(puts),
            "put_ms": statistics.mean(puts) * 1000 if puts else 0.0,
            "put_total_s": sum(puts),
            "statements_per_put": stats["statements_in_puts"] / len(puts) if puts else 0.0,
            "statements": stats.get("statements", 0),
            "statement_s": stats.get("statement_s", 0.0),
        },
        proc.returncode,
    )


APPLY = ["apply", "-auto-approve", "-parallelism=10"]
PLAN = ["plan", "-detailed-exitcode"]


@contextmanager
def postgres() -> Iterator[dict[str, str]]:
    """The pg backend's connection string: a database on a server of its own (default
    settings; the store itself commits asynchronously while it holds the lock)."""
    server = start_server()
    try:
        yield {"pg": server.conn_str(server.create_database())}
    finally:
        server.stop()


def backend_env(backend: str, conn_strs: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORM_")}
    if backend in conn_strs:
        env["TRAINFORM_PG_CONN_STR"] = conn_strs[backend]
    return env


Runs = list[tuple[float, dict[str, float]]]


def bench(n: int, repeat: int, conn_strs: dict[str, str]) -> dict[str, dict[str, Runs]]:
    results: dict[str, dict[str, Runs]] = {b: {"apply": [], "plan": []} for b in BACKENDS}
    envs = {b: backend_env(b, conn_strs) for b in BACKENDS}
    with tempfile.TemporaryDirectory() as tmp:
        folders = {b: Path(tmp) / b for b in BACKENDS}
        for backend, folder in folders.items():
            write_config(folder, backend, n)
            trainform(["init"], folder, envs[backend])
        for _ in range(repeat):
            for backend, folder in folders.items():
                reset(folder, backend, conn_strs)
                wall, stats, _ = trainform(APPLY, folder, envs[backend])
                if stats["puts"] < n:
                    raise SystemExit(f"the {backend} apply wrote {stats['puts']} resources")
                results[backend]["apply"].append((wall, stats))
        for _ in range(repeat):
            for backend, folder in folders.items():
                wall, stats, code = trainform(PLAN, folder, envs[backend])
                if code != 0:
                    raise SystemExit(f"the {backend} plan after apply found changes (exit {code})")
                results[backend]["plan"].append((wall, stats))
    return results


def profile_pg(n: int, conn_strs: dict[str, str], top: int) -> None:
    import pstats

    env = backend_env("pg", conn_strs)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pg"
        write_config(folder, "pg", n)
        trainform(["init"], folder, env)
        reset(folder, "pg", conn_strs)
        for label, args in (("apply", APPLY), ("no-op plan", PLAN)):
            out = Path(tmp) / f"{label}.prof"
            trainform(args, folder, env, profile=out)
            print(f"\n--- pg {label}, {n} resources: top {top} by own time (tottime) ---")
            pstats.Stats(str(out)).sort_stats("tottime").print_stats(top)
            print(f"--- pg {label}: top {top} by cumulative time ---")
            pstats.Stats(str(out)).sort_stats("cumulative").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("resources", nargs="?", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="also profile the pg commands")
    parser.add_argument("--top", type=int, default=25, help="functions to show per profile")
    args = parser.parse_args()
    n = args.resources
    with postgres() as conn_strs:
        results = bench(n, args.repeat, conn_strs)
        print(
            f"{n} local computes + 1 workspace, median of {args.repeat}, load {os.getloadavg()[0]:.1f}"
        )
        print(
            f"{'':<12}{'backend':<10}{'wall s':>8}{'ratio':>7}   "
            f"{'per-resource write ms':>21}{'statements/write':>17}{'store statements':>17}{'in them s':>10}"
        )
        goals = {"apply": 2.0, "plan": 1.5}
        for step, label in (("plan", "no-op plan"), ("apply", "apply")):
            base = statistics.median(w for w, _ in results["sqlite"][step])
            for backend in BACKENDS:
                runs = results[backend][step]
                wall = statistics.median(w for w, _ in runs)
                put = statistics.median(s["put_ms"] for _, s in runs)
                per = statistics.median(s["statements_per_put"] for _, s in runs)
                count = statistics.median(s["statements"] for _, s in runs)
                in_statements = statistics.median(s["statement_s"] for _, s in runs)
                ratio = wall / base
                verdict = ""
                if backend == "pg":
                    verdict = (
                        f"  (goal < {goals[step]}x: {'met' if ratio < goals[step] else 'MISSED'})"
                    )
                print(
                    f"{label:<12}{backend:<10}{wall:>8.2f}{ratio:>6.2f}x   "
                    f"{put:>21.3f}{per:>17.1f}{count:>17.0f}{in_statements:>10.2f}{verdict}",
                    flush=True,
                )
        if args.profile:
            profile_pg(n, conn_strs, args.top)


if __name__ == "__main__":
    main()
