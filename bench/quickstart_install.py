"""How long the README's first command ("Try it") takes in a fresh copy of the repository
with a fresh virtualenv: `python3 -m venv`, `pip install -e .`, then `trainform init` and
`apply` of the quick-start example. Goal: under 45 s on a fresh machine.

    python bench/quickstart_install.py                  # pip's cache as it is
    python bench/quickstart_install.py --cold           # no pip cache: every wheel fetched
    python bench/quickstart_install.py --source DIR     # a copy of DIR instead of HEAD
    python bench/quickstart_install.py --image trainform/base --rate 6mbit   # fresh machine

The command is read from the README (the sh block under **Try it**) and its `&&` steps are run
one after another with sh, each timed, in a temporary copy of the committed tree
(`git archive HEAD`). It prints each step's time, the total, and what pip installed. With a
warm cache pip still resolves and installs every package, but downloads nothing: a fresh
machine adds the downloads (see --cold, and what the index pip is configured with serves).

--image runs the command instead in a new container of a Debian image with python3 and
python3-venv (`scripts/build-base-image` makes one): a fresh machine, with no pip cache or pip
configuration, downloading from PyPI. --rate (root, needs `tc`) limits what the container
receives to that rate (a tbf queue on the host end of its network link), e.g. "6mbit". Where
PIP_CERT is set (a proxy with its own certificate authority), that file is given to the
container's pip too.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_command() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("**Try it**", 1)[1]
    found = re.search(r"```sh\n(.+?)\n```", section)
    if not found:
        raise SystemExit("no sh block under **Try it** in README.md")
    return found.group(1)


def copy_source(dest: Path, source: Path | None) -> None:
    if source is None:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "HEAD"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    else:
        ignore = shutil.ignore_patterns(".venv", ".git", ".trainform", "__pycache__", "*.egg-info")
        shutil.copytree(source, dest, ignore=ignore, dirs_exist_ok=True)


def in_container(work: Path, image: str, rate: str | None, steps: list[str]) -> list[str]:
    """Run the steps in a new container of ``image``; returns one "SECONDS STEP" line each."""
    args = ["docker", "run", "-d", "--rm", "-v", f"{work}:/src", "-w", "/src"]
    cert = os.environ.get("PIP_CERT")
    if cert:
        args += ["-v", f"{cert}:/etc/trainform-bench-ca.crt:ro"]
        args += ["-e", "PIP_CERT=/etc/trainform-bench-ca.crt"]
    cid = subprocess.run(
        [*args, image, "sleep", "3600"], check=True, capture_output=True, text=True
    ).stdout.strip()
    try:
        if rate:
            index = subprocess.run(
                ["docker", "exec", cid, "cat", "/sys/class/net/eth0/iflink"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            link = next(
                p.parent.name
                for p in Path("/sys/class/net").glob("*/ifindex")
                if p.read_text().strip() == index
            )
            subprocess.run(
                [
                    *("tc", "qdisc", "add", "dev", link, "root", "tbf", "rate", rate),
                    *("burst", "32kbit", "latency", "400ms"),
                ],
                check=True,
            )
        script = "".join(
            f"s=$(date +%s.%N); {{ {step}; }} >/tmp/out.txt 2>&1 || {{ cat /tmp/out.txt; exit 1; }}; "
            f'echo "$(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))" '
            f'$s $(date +%s.%N)) $(wc -l </tmp/out.txt) {step}"; '
            for step in steps
        )
        proc = subprocess.run(
            ["docker", "exec", cid, "sh", "-c", script], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise SystemExit(f"the command failed in the container:\n{proc.stdout}{proc.stderr}")
        return proc.stdout.splitlines()
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cold", action="store_true", help="run pip without its cache")
    parser.add_argument("--source", type=Path, help="copy this tree instead of git HEAD")
    parser.add_argument("--image", help="run in a new container of this Debian image")
    parser.add_argument("--rate", help="with --image: limit the container's downloads")
    args = parser.parse_args()
    command = readme_command()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORM_")}
    env["NO_COLOR"] = "1"
    if args.cold:
        env["PIP_NO_CACHE_DIR"] = "1"
    rows = []
    with tempfile.TemporaryDirectory(prefix="quickstart-") as tmp:
        work = Path(tmp)
        copy_source(work, args.source)
        if args.image:
            lines = in_container(work, args.image, args.rate, command.split(" && "))
            where = f"a new {args.image} container" + (
                f", downloads at {args.rate}" if args.rate else ""
            )
            print(f"the README's first command in {where}, no pip cache:")
            total = 0.0
            for line in lines:
                seconds, count, step = line.split(" ", 2)
                total += float(seconds)
                print(f"  {float(seconds):7.2f} s  {step}  ({count} lines of output)")
            print(f"  {total:7.2f} s  total (goal: < 45 s)")
            return
        start = time.perf_counter()
        for step in command.split(" && "):
            began = time.perf_counter()
            proc = subprocess.run(
                ["sh", "-c", step], cwd=work, env=env, capture_output=True, text=True
            )
            rows.append((step, time.perf_counter() - began, proc))
            if proc.returncode != 0:
                raise SystemExit(f"`{step}` exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
        total = time.perf_counter() - start
        pip = work / ".venv" / "bin" / "pip"
        packages = subprocess.run(
            [str(pip), "list", "--format=freeze"], env=env, capture_output=True, text=True
        ).stdout.split()
        size = sum(f.stat().st_size for f in (work / ".venv").rglob("*") if f.is_file())
    print(f"the README's first command, {'no pip cache' if args.cold else 'pip cache as it is'}:")
    for step, seconds, proc in rows:
        lines = len((proc.stdout + proc.stderr).splitlines())
        print(f"  {seconds:7.2f} s  {step}  ({lines} lines of output)")
    print(f"  {total:7.2f} s  total (goal: < 45 s)")
    print(f"\n{len(packages)} packages in the venv, {size / 2**20:.0f} MiB: {' '.join(packages)}")
    print(f"python: {sys.version.split()[0]}; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
