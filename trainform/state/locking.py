"""Who holds a lock, and whether that process is still alive."""

from __future__ import annotations

import getpass
import os
import socket
from pathlib import Path

from trainform.runs.launcher import process_running


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def hostname() -> str:
    return socket.gethostname()


def process_start_time(pid: int) -> str:
    """The kernel's start time of ``pid`` (field 22 of /proc/PID/stat), so that a recycled pid
    is not mistaken for the process that took the lock; "" where /proc is unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def process_alive(pid: int, start_time: str) -> bool:
    """True if the process that recorded (pid, start_time) still runs on this host."""
    if not process_running(pid):
        return False
    now = process_start_time(pid)
    return not start_time or not now or now == start_time
