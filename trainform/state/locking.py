"""Who holds a lock, and whether that process is still alive."""

from __future__ import annotations

import getpass
import os
import socket
from pathlib import Path


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


def process_running(pid: int) -> bool:
    """Whether a process exists and is not a zombie. (The launcher, which must stay
    standalone on targets, has its own copy; importing it here would cost every command.)"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc: trust kill(0)
    return state not in ("Z", "X")


def process_alive(pid: int, start_time: str) -> bool:
    """True if the process that recorded (pid, start_time) still runs on this host."""
    if not process_running(pid):
        return False
    now = process_start_time(pid)
    return not start_time or not now or now == start_time
