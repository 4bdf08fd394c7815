"""A big log for tests (importable as `big_log`): the script of a run that writes numbered
lines as fast as it can, the check that a watcher showed them all, and the CLI run with its
own peak memory measured."""

from __future__ import annotations

import hashlib
import itertools
import subprocess
import sys
from pathlib import Path

from helpers import CLI

MIB = 1 << 20
BIG_MIB = 96
LINES_PER_MIB = 8192  # numbered lines of 128 bytes

# Numbered lines, so that a line missing, repeated or out of order shows.
SCRIPT = """\
import os, sys
out = sys.stdout.buffer
for m in range(int(os.environ["MIB"])):
    out.write(b"".join(b"line %011d " % (m * 8192 + i) + b"." * 110 + b"\\n" for i in range(8192)))
out.write(b"the last line, without an end")
"""

# Runs the CLI in this process, then writes its own peak RSS (KiB, since its exec) to $RSS_FILE.
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


def measured(cli: CLI, out: Path, *args: str, **env: str) -> int:
    """Run the CLI with stdout into ``out``; its peak RSS in bytes."""
    rss = cli.cwd.parent / "rss"
    with out.open("wb") as fh:
        proc = subprocess.run(
            [sys.executable, "-c", MEASURED, *args],
            cwd=cli.cwd,
            env={**cli.env, **env, "RSS_FILE": str(rss)},
            stdout=fh,
            stderr=subprocess.PIPE,
            timeout=600,
        )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return int(rss.read_text()) * 1024


def expected_lines(mib: int) -> itertools.chain[bytes]:
    numbered = (b"line %011d " % n + b"." * 110 for n in range(mib * LINES_PER_MIB))
    return itertools.chain(numbered, [b"the last line, without an end"])


def assert_shown(out: Path, mib: int) -> None:
    """Apply's output (``out``) shows the log's lines under `run.big  | `: all, in order,
    once, the unfinished last one too."""
    want = expected_lines(mib)
    count = 0
    with out.open("rb") as fh:
        for line in fh:
            if line.startswith(b"run.big "):
                got = line.rstrip(b"\n").split(b"| ", 1)[1]
                assert got == next(want, None), (count, got)
                count += 1
    assert next(want, None) is None, f"only {count} lines were shown"


def assert_whole(path: Path, mib: int) -> None:
    """The file at ``path`` (a log, or `runs logs` output) has every line of the log, the
    unfinished last one at its end."""
    with path.open("rb") as fh:
        assert sum(1 for _ in fh) >= mib * LINES_PER_MIB + 1
    assert b"\nthe last line, without an end" in tail(path)


def tail(path: Path, size: int = 4096) -> bytes:
    """The last ``size`` bytes of a file."""
    with path.open("rb") as fh:
        fh.seek(max(0, path.stat().st_size - size))
        return fh.read()


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(MIB):
            h.update(chunk)
    return h.hexdigest()
