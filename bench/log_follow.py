"""Following and collecting a big log: `trainform apply` of a run that writes 1 GiB to stdout,
locally and over SSH, against `cat` and `scp` of the same file.

    python bench/log_follow.py               # as root: starts its own sshd on 127.0.0.1
    python bench/log_follow.py --mib 256 --only local

The run's script writes --mib MiB of 100-byte lines (10,486 lines a MiB) as fast as it can,
then a last line. For each target it measures, with its peak resident memory:

- `apply`: submit, follow the log to the end (every line shown under `run.big | `, into a
  file), collect the run (the log copied whole into the workspace). Timed from start to exit.
  The run's own time (its script writing the log) is shown beside it, as the run records it.
- `runs logs`: the collected log printed again (into a file).
- `cat`: the collected log copied into a file; over SSH, `scp` of the run's log on the host
  (what collection has to move) and `ssh cat` of it (what following has to move).

Apply's output is checked: every line there, in order, the last one included. Goals: peak
memory under 100 MB whatever the log's size; time within a small factor of the copies.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MIB = 1 << 20
LINES_PER_MIB = 10486  # 10,485 lines of 100 bytes and one of 76

SCRIPT = """\
import os, sys
chunk = (b"x" * 99 + b"\\n") * 10485 + b"y" * 75 + b"\\n"
out = sys.stdout.buffer
for _ in range(int(os.environ["MIB"])):
    out.write(chunk)
out.write(b"the last line\\n")
"""

CONFIG = """
workspace "bench" {{}}

{compute}

environment "system" {{
  python       = "python3"
  user_managed = true
}}

run "big" {{
  experiment  = "bench"
  workspace   = workspace.bench
  compute     = compute.box
  environment = environment.system
  source_dir  = "src"
  script      = "big.py"
  env         = {{ MIB = "{mib}" }}
}}
"""

LOCAL = """compute "box" {
  type = "local"
}"""

# Runs trainform's CLI in this process and writes its peak RSS (KiB) to the file $RSS_FILE:
# VmHWM, which counts this process since its exec (getrusage's maxrss would also count the
# bench's own memory, which it was forked from).
MEASURED = """\
import os, re, sys
sys.argv[0] = "trainform"
try:
    from trainform.cli.main import main
    main()
finally:
    with open("/proc/self/status") as status, open(os.environ["RSS_FILE"], "w") as out:
        out.write(re.search(r"VmHWM:\\s*(\\d+) kB", status.read()).group(1))
"""


@dataclass(frozen=True)
class Figure:
    what: str
    seconds: float
    rss_mb: float

    def __str__(self) -> str:
        return f"  {self.what:<46} {self.seconds:8.2f} s   peak RSS {self.rss_mb:7.1f} MB"


def trainform(args: Sequence[str], cwd: Path, out: Path, what: str) -> Figure:
    """Run `trainform ARGS` with stdout into `out`; its time and its own peak RSS."""
    rss = cwd / ".rss"
    env = {**os.environ, "RSS_FILE": str(rss), "NO_COLOR": "1", "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    with out.open("wb") as fh:
        subprocess.run(
            [sys.executable, "-c", MEASURED, *args], cwd=cwd, env=env, stdout=fh, check=True
        )
    seconds = time.perf_counter() - start
    return Figure(what, seconds, int(rss.read_text()) / 1024)


def command(argv: Sequence[str], out: Path, what: str) -> Figure:
    """Run a command with stdout into `out`; its time and peak RSS (from GNU time, whose
    small process it is forked from)."""
    rss = out.with_suffix(".rss")
    start = time.perf_counter()
    with out.open("wb") as fh:
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss), *argv], stdout=fh, check=True)
    seconds = time.perf_counter() - start
    kib = int(rss.read_text().split()[-1])
    rss.unlink()
    return Figure(what, seconds, kib / 1024)


def check_followed(out: Path, mib: int) -> None:
    """Every line of the log in apply's output, in order, the last one included."""
    want = mib * LINES_PER_MIB + 1
    seen = 0
    last = b""
    with out.open("rb") as fh:
        for line in fh:
            if line.startswith(b"run.big "):  # padded to the plan's longest address
                seen += 1
                last = line.split(b"| ", 1)[1]
    if seen != want or last != b"the last line\n":
        raise SystemExit(f"apply showed {seen} of {want} lines, the last being {last!r}")


def run_seconds(cwd: Path) -> float:
    """How long the run took, as recorded (start to end, in whole seconds)."""
    from datetime import datetime

    out = subprocess.run(
        [sys.executable, "-m", "trainform", "runs", "show", "run.big", "--json"],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        check=True,
    ).stdout
    run = json.loads(out)
    t0 = datetime.fromisoformat(run["started"].replace("Z", "+00:00"))
    t1 = datetime.fromisoformat(run["finished"].replace("Z", "+00:00"))
    return (t1 - t0).total_seconds()


def collected_log(cwd: Path) -> Path:
    """The log collected into the workspace (under the configuration folder)."""
    return next(cwd.glob("**/runs/*/output.log"))


def bench(folder: Path, compute: str, mib: int, scratch: Path) -> tuple[list[Figure], Path]:
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "big.py").write_text(SCRIPT)
    (folder / "main.train.hcl").write_text(CONFIG.format(compute=compute, mib=mib))
    figures = [trainform(["apply", "-auto-approve"], folder, scratch / "apply.out", "apply")]
    check_followed(scratch / "apply.out", mib)
    seconds = run_seconds(folder)
    figures.append(Figure("  of which the run itself (as recorded)", seconds, float("nan")))
    (scratch / "apply.out").unlink()
    figures.append(
        trainform(["runs", "logs", "run.big"], folder, scratch / "logs.out", "runs logs")
    )
    (scratch / "logs.out").unlink()
    log = collected_log(folder)
    if log.stat().st_size != mib * MIB + len(b"the last line\n"):
        raise SystemExit(f"the collected log has {log.stat().st_size} bytes")
    figures.append(command(["cat", str(log)], scratch / "cat.out", "cat of the collected log"))
    (scratch / "cat.out").unlink()
    return figures, log


def local(mib: int, scratch: Path) -> list[Figure]:
    folder = Path(tempfile.mkdtemp(prefix="local-", dir=scratch))
    figures, _ = bench(folder, LOCAL, mib, scratch)
    shutil.rmtree(folder)
    return figures


def over_ssh(mib: int, scratch: Path) -> list[Figure]:
    sys.path[:0] = [str(REPO / "bench")]
    from ssh_server import bench_server

    with bench_server() as server:
        workdir = server.remote_dir("log-follow-")
        compute = "\n".join(
            [
                'compute "box" {',
                '  type             = "ssh"',
                f'  address          = "{server.server.address}"',
                f"  port             = {server.server.port}",
                '  username         = "tfuser"',
                f'  private_key_file = "{server.key}"',
                f'  host_key         = "{server.server.fingerprint}"',
                f'  workdir          = "{workdir}"',
                "}",
            ]
        )
        folder = Path(tempfile.mkdtemp(prefix="ssh-", dir=scratch))
        figures, log = bench(folder, compute, mib, scratch)
        remote = next(Path(workdir).glob("runs/*/output.log"))
        if remote.stat().st_size != log.stat().st_size:
            raise SystemExit("the collected log differs in size from the host's")
        ssh = server.ssh_argv()
        scp = ["scp", "-q", *ssh[1:]]
        scp[scp.index("-p")] = "-P"
        figures.append(
            command(
                [*scp, f"{server.login}:{remote}", str(scratch / "scp.out")],
                scratch / "scp.stdout",
                "scp of the run's log on the host",
            )
        )
        figures.append(
            command(
                [*ssh, server.login, "cat", str(remote)],
                scratch / "sshcat.out",
                "ssh cat of the run's log on the host",
            )
        )
        for name in ("scp.out", "scp.stdout", "sshcat.out"):
            (scratch / name).unlink(missing_ok=True)
        shutil.rmtree(folder)
        shutil.rmtree(workdir, ignore_errors=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=1024, help="size of the log (MiB)")
    parser.add_argument("--only", choices=("local", "ssh"))
    args = parser.parse_args()
    if not Path("/usr/bin/time").exists():
        sys.exit("needs GNU time for the baselines' memory: apt-get install time")
    scratch = Path(tempfile.mkdtemp(prefix="trainform-log-follow-"))
    try:
        if args.only in (None, "local"):
            print(f"local compute, a {args.mib} MiB log ({args.mib * LINES_PER_MIB:,} lines):")
            for figure in local(args.mib, scratch):
                print(figure)
        if args.only in (None, "ssh"):
            if os.geteuid() != 0:
                sys.exit("run as root for SSH: the server logs in as the user tfuser")
            scratch.chmod(0o755)
            print(f"SSH compute (OpenSSH on 127.0.0.1), a {args.mib} MiB log:")
            for figure in over_ssh(args.mib, scratch):
                print(figure)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"(Python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
