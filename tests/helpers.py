"""The CLI runner, assertions, polling and the README's code blocks, shared by the end-to-end
and integration tests (importable as `helpers`: pytest puts tests/ on sys.path for
tests/conftest.py)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

R = TypeVar("R")


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def all(self) -> str:
        return self.out + self.err


@dataclass
class CLI:
    """Runs `python -m trainform` in a configuration folder."""

    cwd: Path
    env: dict[str, str]

    def __call__(
        self, *args: str, input: str | None = None, timeout: float = 120, **env: str
    ) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "trainform", *args],
            cwd=self.cwd,
            env={**self.env, **env},
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "trainform", *args],
            cwd=self.cwd,
            env={**self.env, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def write(self, name: str, text: str) -> Path:
        path = self.cwd / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORM_")}
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    return env


def applied_quickstart(tmp_path: Path) -> CLI:
    """The quick-start example copied to ``tmp_path/examples/quickstart`` (where the README's
    commands run it from ``tmp_path``), initialised and applied; the CLI there, with this
    Python's `trainform` first on PATH for the README's shell blocks."""
    example = tmp_path / "examples" / "quickstart"
    shutil.copytree(Path(__file__).resolve().parents[1] / "examples" / "quickstart", example)
    shutil.rmtree(example / ".trainform", ignore_errors=True)
    env = base_env()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    cli = CLI(example, env)
    ok(cli("init"))
    ok(cli("apply", "-auto-approve"))
    return cli


def ok(result: R, code: int = 0) -> R:
    """A CLI result that exited with ``code`` and printed no traceback."""
    got: Any = result
    assert got.code == code, f"exit {got.code} (wanted {code})\n{got.out}\n{got.err}"
    assert "Traceback" not in got.all, got.all
    return result


def failed(result: R, *needles: str) -> R:
    """A CLI result that exited 1, with no traceback and each needle in its output."""
    got: Any = result
    assert got.code == 1, f"exit {got.code} (wanted 1)\n{got.out}\n{got.err}"
    assert "Traceback" not in got.all, got.all
    for needle in needles:
        assert needle in got.all, f"{needle!r} not in\n{got.all}"
    return result


def wait_until(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` otherwise.
    ``timeout`` only matters when the test is failing."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s")
        time.sleep(0.1)


def unavailable(message: str) -> None:
    """A service a test needs is missing: under CI=true that fails the test (CI must install
    and start it); on a developer's machine the test is skipped, saying what to install."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def recorded(cwd: Path) -> dict[str, Any]:
    """What the SQLite state beside the configuration in ``cwd`` records for each resource
    (``ResourceState`` by address), provider bookkeeping included: a run's handle and what it
    uploaded, which ``show -json`` (Terraform's state format) leaves out."""
    from trainform.state.sqlite import SQLiteStateStore

    return dict(SQLiteStateStore(cwd / ".trainform" / "state.db").resources())


README = Path(__file__).resolve().parents[1] / "README.md"


def block_after(marker: str, lang: str, readme: Path = README) -> str:
    """The first ```lang block after ``marker`` in ``readme`` (the project's README by
    default; the tests run its commands verbatim)."""
    parts = readme.read_text().split(marker, 1)
    assert len(parts) == 2, f"no {marker!r} in {readme.name}"
    found = re.search(rf"^```{lang}\n(.*?)^```$", parts[1], re.S | re.M)
    assert found, f"no {lang} block after {marker!r} in {readme}"
    return found.group(1)


def slurm_config(
    tmp_path: Path, slurm_conf: Path, script: str, compute: str = "", run: str = ""
) -> CLI:
    """A configuration in ``tmp_path/config`` (``SLURM_CONF`` set to ``slurm_conf``) with a
    slurm compute ``hpc`` whose workdir is ``tmp_path/shared`` (``compute``: more attribute
    lines) and a run ``train`` of ``src/train.py`` = ``script`` (``run``: more lines).
    pytest's folders are root's, as the test clusters' jobs are."""
    folder = tmp_path / "config"
    folder.mkdir()
    cli = CLI(folder, {**base_env(), "SLURM_CONF": str(slurm_conf)})
    cli.write("src/train.py", script)
    cli.write(
        "main.train.hcl",
        'compute "hpc" {\n'
        '  type    = "slurm"\n'
        f'  workdir = "{tmp_path / "shared"}"\n'
        f"{compute}"
        "}\n"
        'run "train" {\n'
        '  experiment = "hpc"\n'
        "  compute    = compute.hpc\n"
        '  source_dir = "src"\n'
        '  script     = "train.py"\n'
        f"{run}"
        "}\n",
    )
    return cli


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports on 127.0.0.1 that nothing listens on right now (all sockets
    are held open together so that the kernel cannot hand out one port twice)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
        return ports
