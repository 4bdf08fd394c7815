"""Where a slurm compute's Slurm client commands run and its shared folder is reached: this
machine (``LocalSlurmHost``) or, with ``login`` set, a login node over SSH (the login host
class, with the ssh compute's options and host-key rules).

The provider (`providers/slurm.py`) only speaks to a :class:`SlurmHost`: it runs Slurm's
commands as argument vectors (never a shell line), stages a run's folder in the shared
``workdir`` and reads files back from it. Paths are POSIX strings on the host's side.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

from trainform.errors import ProviderError
from trainform.providers.base import RunRequest

COMMAND_TIMEOUT = 60  # seconds a Slurm client command may take (slurmctld may be busy)


class SlurmHost:
    """The contract every host implements. ``where`` names it in messages ("this machine",
    "login ml@login:22")."""

    where = "this machine"

    def run(
        self, argv: list[str], env: dict[str, str] | None = None, input: bytes | None = None
    ) -> tuple[int, str, str]:
        """Run a command (an argv) and return its exit code, stdout and stderr (decoded with
        replacement). ProviderError naming the command and host when it cannot be started or
        does not answer within COMMAND_TIMEOUT. ``env`` adds variables (locally: to this
        process's environment without TRAINFORM_VAR_*/TF_VAR_*)."""
        raise NotImplementedError

    def checked(self, argv: list[str], env: dict[str, str] | None = None) -> str:
        """A command's stdout; ProviderError with its stderr tail if it fails."""
        code, out, err = self.run(argv, env)
        if code != 0:
            raise ProviderError(
                f"{shlex.join(argv)[:200]} exited with {code} on {self.where}: "
                f"{err.strip()[-500:]}",
                command=argv[0],
                exit_code=code,
            )
        return out

    def prepare_workdir(self, workdir: str) -> str:
        """Create ``workdir`` if needed and return its absolute path."""
        raise NotImplementedError

    def stage(self, request: RunRequest, workdir: str, run_dir: str) -> str:
        """Create ``run_dir`` (which must not exist), put the lib and the snapshot's missing
        blobs under ``workdir`` and write the run's ``spec.json`` (secrets apart, as
        ``shipping.split_secrets`` says). Returns the lib folder. Raises ProviderError."""
        raise NotImplementedError

    def write_file(self, path: str, data: bytes) -> None:
        """Write a small file whole (replacing it)."""
        raise NotImplementedError

    def read_from(self, path: str, offset: int, limit: int = 1 << 20) -> tuple[bytes, int]:
        """Up to ``limit`` bytes of a growing file from ``offset`` on, and the next offset
        (``b""`` and ``offset`` for a file that does not exist yet)."""
        raise NotImplementedError

    def read_status(self, run_dir: str) -> dict[str, Any]:
        """The launcher's ``status.json`` of ``run_dir`` (``{}`` when absent or unreadable)."""
        raise NotImplementedError

    def discard_secrets(self, run_dir: str) -> None:
        """Delete secret values no launcher read (the job was never submitted)."""
        raise NotImplementedError

    def fetch_run(self, run_dir: str, dest: Path) -> None:
        """Copy the run folder's outputs, log, metrics and status into ``dest`` by the rules
        of ``shipping.collect_run_folder`` (everything read is hostile)."""
        raise NotImplementedError


class LocalSlurmHost(SlurmHost):
    """This machine's Slurm client (``SLURM_CONF`` or the default configuration) and a shared
    folder mounted here."""

    def run(
        self, argv: list[str], env: dict[str, str] | None = None, input: bytes | None = None
    ) -> tuple[int, str, str]:
        from trainform.providers.local import launcher_environ

        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                timeout=COMMAND_TIMEOUT,
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                env={**launcher_environ(), **(env or {})},
            )
        except FileNotFoundError:
            raise ProviderError(
                f"{argv[0]} is not installed on this machine: install the Slurm client "
                "(Debian: slurm-client) or set login",
                command=argv[0],
            ) from None
        except subprocess.TimeoutExpired:
            raise ProviderError(
                f"{shlex.join(argv)[:200]} did not answer within {COMMAND_TIMEOUT} s "
                "(is slurmctld up?)",
                command=argv[0],
            ) from None
        return (
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )

    def prepare_workdir(self, workdir: str) -> str:
        absolute = os.path.abspath(workdir)
        try:
            os.makedirs(absolute, exist_ok=True)
        except OSError as exc:
            raise ProviderError(f"cannot create workdir {absolute}: {exc}") from None
        return absolute

    def stage(self, request: RunRequest, workdir: str, run_dir: str) -> str:
        from trainform.providers.local import start_failed
        from trainform.runs.shipping import discard_secrets, install_lib, write_spec

        root, folder = Path(workdir), Path(run_dir)
        try:
            folder.mkdir(parents=True)
            lib = install_lib(root / "lib")
            copy_blobs(request.manifest, request.blob_dir, root / "blobs")
            write_spec(
                folder, request, blob_dir=root / "blobs", lib_dir=lib, cache_dir=root / "envs"
            )
        except OSError as exc:
            discard_secrets(folder)
            raise start_failed(request, folder, exc) from None
        return str(lib)

    def write_file(self, path: str, data: bytes) -> None:
        target = Path(path)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, target)
        except OSError as exc:
            raise ProviderError(f"cannot write {path}: {exc}", host=socket.gethostname()) from None

    def read_from(self, path: str, offset: int, limit: int = 1 << 20) -> tuple[bytes, int]:
        from trainform.providers.local import read_from

        return read_from(Path(path), offset, limit)

    def read_status(self, run_dir: str) -> dict[str, Any]:
        from trainform.runs.launcher import read_status

        return read_status(Path(run_dir))

    def discard_secrets(self, run_dir: str) -> None:
        from trainform.runs.shipping import discard_secrets

        discard_secrets(Path(run_dir))

    def fetch_run(self, run_dir: str, dest: Path) -> None:
        from trainform.runs.shipping import collect_run_folder

        collect_run_folder(Path(run_dir), dest)


def copy_blobs(manifest: dict[str, Any], source: Path, dest: Path) -> int:
    """Copy the manifest's blobs that ``dest`` lacks from ``source`` (both laid out
    ``ab/cdef...``); each arrives whole (copied aside, then renamed). Returns how many were
    copied."""
    copied = 0
    for digest in sorted({e["sha256"] for e in manifest["entries"] if e.get("kind") == "file"}):
        target = dest / digest[:2] / digest[2:]
        if target.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        # Unique per thread too: parallel submissions of one apply copy the same blobs.
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        shutil.copyfile(source / digest[:2] / digest[2:], tmp)
        os.replace(tmp, target)
        copied += 1
    return copied
