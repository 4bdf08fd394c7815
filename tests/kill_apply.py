"""`kill -9` of `apply` at chosen moments of a run's submission, and what must follow: the next
`plan` and `apply` converge, every launched run is in the run history exactly once, and no run
of the resource is started twice. Shared by the local end-to-end test and the SSH integration
test (importable as `kill_apply`, like `helpers`).

The run's script appends "RUN_ID TAG start" and "RUN_ID TAG end" to a ledger file outside
trainform, so the test knows which runs really started, whatever trainform recorded. Each round
changes the run's argument TAG, so each round submits one new run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import CLI, ok

# argv: --ledger PATH --tag TAG
SCRIPT = """\
import os, sys, time
ledger, tag = sys.argv[2], sys.argv[4]
run_id = os.environ["TRAINFORM_RUN_ID"]
with open(ledger, "a") as fh:
    fh.write(f"{run_id} {tag} start\\n")
time.sleep(0.3)
with open(ledger, "a") as fh:
    fh.write(f"{run_id} {tag} end\\n")
print("trained", tag)
"""

# The engine's line when it starts the run's change: the moment kill offsets count from.
SUBMITTING = re.compile(r"run\.train: (Submitting|Resubmitting)\.\.\.")


@dataclass
class KillRig:
    """One configuration whose run.train records into ``ledger``; ``config(tag)`` is its
    text with the script's TAG argument; ``runs_dir`` is where the target puts run folders."""

    cli: CLI
    ledger: Path
    config: Callable[[str], str]
    runs_dir: Path
    rounds: list[str] = field(default_factory=list)

    def write(self, tag: str) -> None:
        self.cli.write("main.train.hcl", self.config(tag))
        self.rounds.append(tag)

    def _apply(self) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "trainform", "apply", "-auto-approve"],
            cwd=self.cli.cwd,
            env=self.cli.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def kill_after_submitting(self, tag: str, delay: float) -> str:
        """Start `apply` for ``tag`` and SIGKILL it ``delay`` seconds after it starts the run's
        change (or let it finish first); returns what it printed."""
        self.write(tag)
        proc = self._apply()
        assert proc.stdout is not None
        lines: list[str] = []
        started = threading.Event()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if SUBMITTING.search(line):
                    started.set()
            started.set()  # it ended without submitting: the round then fails below

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        started.wait(timeout=120)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        reader.join(timeout=60)
        out = "".join(lines)
        assert SUBMITTING.search(out), out
        return out

    def kill_when(self, tag: str, ready: Callable[[Path], bool]) -> Path:
        """Start `apply` for ``tag``; once the new run's folder appears on the target, let it
        go on in steps of half a millisecond (SIGSTOP, SIGCONT) until ``ready(folder)`` holds,
        then SIGKILL it. Returns the folder."""
        self.write(tag)
        before = set(_names(self.runs_dir))
        proc = self._apply()
        deadline = time.monotonic() + 120
        folder = None
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                if folder is None:
                    new = set(_names(self.runs_dir)) - before
                    if new:
                        proc.send_signal(signal.SIGSTOP)
                        folder = self.runs_dir / new.pop()
                if folder is not None:
                    if ready(folder):
                        break
                    proc.send_signal(signal.SIGCONT)
                    time.sleep(0.0005)
                    proc.send_signal(signal.SIGSTOP)
                else:
                    time.sleep(0.0005)
        finally:
            proc.send_signal(signal.SIGKILL)
            out = proc.communicate(timeout=60)[0]
        assert folder is not None and ready(folder), f"{self.runs_dir}: {folder}\n{out}"
        return folder

    def kill_between_launch_and_record(self, prefix: str, attempts: int = 5) -> tuple[str, Path]:
        """Kill `apply` once the run's launcher is started on the target but before its handle
        is recorded (state says ``submitting``). A kill that came just after the record makes
        a plain round (converged and checked), and another is tried. Returns (tag, folder)."""
        for attempt in range(attempts):
            tag = f"{prefix}{attempt}"
            folder = self.kill_when(tag, launched)
            shown = ok(self.cli("state", "show", "run.train")).out
            if re.search(r'status\s+= "submitting"', shown) and f'"{folder.name}"' in shown:
                return tag, folder
            self.converge(tag)
        pytest.fail(f"no kill came between the launch and its record in {attempts} tries")

    def started(self) -> list[tuple[str, str]]:
        """(run id, tag) of every run whose script started, in order."""
        if not self.ledger.exists():
            return []
        return [
            (parts[0], parts[1])
            for parts in (line.split() for line in self.ledger.read_text().splitlines())
            if len(parts) == 3 and parts[2] == "start"
        ]

    def converge(self, tag: str) -> str:
        """The next `plan` works, `apply` converges, and a third `plan` has nothing to do;
        then the checks of the module docstring. Returns the first plan's text."""
        plan = ok(self.cli("plan", timeout=180))
        ok(self.cli("apply", "-auto-approve", timeout=180))
        again = ok(self.cli("plan", "-detailed-exitcode", timeout=180))
        assert "No changes." in again.out, again.out
        self.check(tag, plan.out)
        return plan.out

    def check(self, tag: str, context: str = "") -> None:
        started = self.started()
        # No run of the resource was started twice: one per round, each id once.
        ids = Counter(run_id for run_id, _ in started)
        assert all(n == 1 for n in ids.values()), (started, context)
        per_tag = Counter(t for _, t in started)
        for t in self.rounds:
            assert per_tag[t] == 1, (f"round {t}: {per_tag[t]} runs started", started, context)
        # Every launched run is in the history, once, and finished; no intent is left open.
        history = json.loads(ok(self.cli("runs", "list", "--json")).out)
        recorded = Counter(r["id"] for r in history)
        status = {r["id"]: r["status"] for r in history}
        for run_id, _ in started:
            assert recorded[run_id] == 1, (run_id, history, context)
            assert status[run_id] == "completed", (run_id, history, context)
        assert not [r for r in history if r["status"] == "submitting"], (history, context)
        # State points at this round's run.
        mine = [run_id for run_id, t in started if t == tag]
        shown = ok(self.cli("state", "show", "run.train")).out
        assert f'"{mine[0]}"' in shown, (shown, context)
        assert re.search(r'status\s+= "completed"', shown), (shown, context)


def launched(folder: Path) -> bool:
    """The run's launcher has been started: a process runs it on the folder, or it has
    already written its pid (targets on this machine)."""
    try:
        if "launcher_pid" in json.loads((folder / "status.json").read_text()):
            return True
    except (OSError, ValueError):
        pass
    needle = str(folder).encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(a.endswith(b"launcher.py") for a in argv) and needle in argv:
                return True
    return False


def exists(folder: Path) -> bool:
    return folder.is_dir()


def _names(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


def sweep(rig: KillRig, delays_ms: list[int]) -> None:
    """One round per delay: kill `apply` that long after it starts the run's change, then
    converge and check."""
    for ms in delays_ms:
        tag = f"after{ms}ms"
        out = rig.kill_after_submitting(tag, ms / 1000)
        try:
            rig.converge(tag)
        except AssertionError as exc:
            pytest.fail(f"killed {ms} ms after submitting began:\n{out}\n{exc}")
