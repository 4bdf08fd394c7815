"""The machine a compute's client commands run on and its folders are reached from: this
machine (``LocalHost``) or one host over SSH (``SSHHost``, with the ssh compute's options and
host-key rules): a slurm compute's ``login`` node, a spark compute's ``gateway``.

The slurm provider (`providers/slurm.py`) only speaks to a :class:`CommandHost`: it runs
Slurm's commands as argument vectors (never a shell line), stages a run's folder in the
shared ``workdir`` and reads files back from it; the spark provider runs its probe, the
master's status and kill requests, and ``yarn`` through one. Paths are POSIX strings on the
host's side.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shlex
import socket
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from trainform.config.schema import Attribute
from trainform.errors import ProviderError
from trainform.providers.base import RunRequest
from trainform.providers.ssh import (
    SSHComputeProvider,
    fetch_run_folder,
    stage_remote,
    store_remote_secrets,
    verified_host_keys,
)

COMMAND_TIMEOUT = 60  # seconds a client command may take (slurmctld may be busy)
T = TypeVar("T")


class CommandHost:
    """The contract every host implements. ``where`` names it in messages ("this machine",
    "login ml@login:22"). ``env``: variables of every command :meth:`run` runs (a slurm
    compute's ``SLURM_CONF``). ``missing``: what to do when a command is not installed,
    for the message. After :meth:`stage`, ``upload`` says what travelled to the host
    (``{"files", "bytes"}``), None when nothing crossed a network."""

    where = "this machine"

    def __init__(self, env: dict[str, str] | None = None, missing: str = "") -> None:
        self.env = dict(env or {})
        self.missing = missing
        self.upload: dict[str, int] | None = None

    def command_env(self, env: dict[str, str] | None) -> dict[str, str]:
        """The variables a command runs with beyond the host's own: the host's, then
        ``env``."""
        return {**self.env, **(env or {})}

    def host_keys(self) -> dict[str, str]:
        """The SSH host keys verified on the way to this host, to pin in state (``{}`` for
        this machine)."""
        return {}

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


class LocalHost(CommandHost):
    """This machine's client commands (Slurm's, with ``SLURM_CONF`` or the default
    configuration; Spark's) and folders (a shared one mounted here)."""

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
                env={**launcher_environ(), **self.command_env(env)},
            )
        except FileNotFoundError:
            raise ProviderError(
                f"{argv[0]} is not installed on this machine"
                + (f": {self.missing}" if self.missing else ""),
                command=argv[0],
            ) from None
        except subprocess.TimeoutExpired:
            raise ProviderError(
                f"{shlex.join(argv)[:200]} did not answer within {COMMAND_TIMEOUT} s "
                "on this machine",
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
        from trainform.runs.shipping import copy_blobs, discard_secrets, install_lib, write_spec

        root, folder = Path(workdir), Path(run_dir)
        try:
            folder.mkdir(parents=True)
            lib = install_lib(root / "lib")
            copy_blobs(request.blob_hashes(), request.blob_dir, root / "blobs")
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


LOGIN_OPTIONS = (
    "port",
    "private_key_file",
    "private_key_passphrase",
    "password",
    "host_key",
    "known_hosts",
    "trust_on_first_use",
    "proxy_jump",
    "connect_timeout",
)
"""The ssh compute's attributes for one host that a slurm compute's ``login`` takes too."""

SECRET_OPTIONS = ("password", "private_key_passphrase")


def login_schema(key: str, description: str) -> dict[str, Attribute]:
    """The attributes of a compute reached through one SSH host named by ``key`` (a slurm
    compute's ``login``, a spark compute's ``gateway``): the ssh compute's options for one
    host, as it defines them (secrets sensitive) but without defaults: they mean nothing
    without ``key`` (and the plan of a compute without one shows none); the ssh compute's
    defaults apply when they are unset. And the pinned ``host_keys``."""
    attributes = SSHComputeProvider.schema.attributes
    return {
        key: Attribute(description=description),
        **{name: replace(attributes[name], default=None) for name in LOGIN_OPTIONS},
        "host_keys": attributes["host_keys"],
    }


def login_problems(
    ssh: SSHComputeProvider, address: str, desired: dict[str, Any], key: str = "login"
) -> list[str]:
    """What is wrong with a compute's SSH host (``key``: the attribute naming it) and its
    options; options set without the host are refused."""
    login = desired.get(key)
    if not isinstance(login, str):
        unused = [name for name in LOGIN_OPTIONS if desired.get(name) is not None]
        if unused:
            return [f"{', '.join(unused)} set without {key}: options of the {key} node"]
        return []
    user, _, host = login.rpartition("@")
    if not user or not host:
        return [f'{key} {login!r} must be "user@host" or "user@host:port"']
    return ssh.validate(address, login_attributes(desired, key)[1])


def login_attributes(attrs: dict[str, Any], key: str = "login") -> tuple[str, dict[str, Any]]:
    """A slurm compute's login node (``login = "user@host"`` or ``"user@host:port"``; another
    compute's host named by ``key``) as the attributes of an ssh compute with that one host,
    and its host entry (``host`` or ``host:port``, the key of its pin in ``host_keys``)."""
    user, _, host = str(attrs.get(key) or "").rpartition("@")
    mapped = {key: attrs.get(key) for key in LOGIN_OPTIONS}
    mapped.update(address=host, username=user, host_keys=dict(attrs.get("host_keys") or {}))
    return host, mapped


def host_target(attrs: dict[str, Any]) -> dict[str, Any]:
    """What a run's handle records so that a later process reaches the same host: ``login``,
    ``slurm_conf``, the ssh options and the pinned host keys; never a password or passphrase
    (those stay in this process's memory, see ``SSHComputeProvider._target``)."""
    keys = ("login", "slurm_conf", *LOGIN_OPTIONS, "host_keys")
    return {
        key: attrs[key] for key in keys if attrs.get(key) is not None and key not in SECRET_OPTIONS
    }


class SSHHost(CommandHost):
    """Client commands on one host (a Slurm login node, a Spark gateway), and the folders as
    that host sees them, over SSH with the ssh compute's options and host-key rules: the
    connections, in-memory credentials, incremental blob upload and open log streams of an
    :class:`~trainform.providers.ssh.SSHComputeProvider` (``ssh``), which the compute's
    provider holds. ``key``: the attribute of ``attrs`` that names the host (``login``,
    ``gateway``). Every byte from the host is read as hostile."""

    def __init__(
        self,
        ssh: SSHComputeProvider,
        attrs: dict[str, Any],
        key: str = "login",
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(env)
        self._ssh = ssh
        self._host, self._target = login_attributes(attrs, key)
        self.where = f"{key} {attrs.get(key)}"

    def _conn(self) -> Any:
        """The cached connection (reconnected when it dropped); HostKeyError, SSHAuthError
        or ProviderError."""
        return self._ssh._session(self._target, self._host)

    def _repeatable(self, operation: Callable[[Any], T]) -> T:
        """``operation(connection)``, again on a new connection if it dropped meanwhile."""
        return self._ssh._with_session(self._target, self._host, operation)

    def host_keys(self) -> dict[str, str]:
        return verified_host_keys(self._host, self._conn())

    def run(
        self, argv: list[str], env: dict[str, str] | None = None, input: bytes | None = None
    ) -> tuple[int, str, str]:
        """Run once (sbatch is not safe to repeat) in the login shell of the login node, the
        variables set with ``env NAME=VALUE argv`` (the whole quoted by ``shlex.join``)."""
        extra = self.command_env(env)
        command = ["env", *(f"{k}={v}" for k, v in extra.items()), *argv] if extra else argv
        code, out, err = self._conn().run(
            command, input=input, timeout=COMMAND_TIMEOUT, check=False
        )
        return code, out.decode(errors="replace"), err.decode(errors="replace")

    def prepare_workdir(self, workdir: str) -> str:
        absolute = posixpath.normpath(workdir)
        self._repeatable(lambda conn: conn.run(["mkdir", "-p", "--", absolute]))
        return absolute

    def stage(self, request: RunRequest, workdir: str, run_dir: str) -> str:
        from trainform.runs.shipping import full_spec

        conn = self._conn()
        lib, self.upload = stage_remote(
            conn, request, workdir, run_dir, self._ssh.known_set(self._host, self._target, workdir)
        )
        spec = full_spec(request, f"{workdir}/blobs", lib, f"{workdir}/envs")
        spec = store_remote_secrets(conn, run_dir, spec)
        try:
            conn.upload_stream([("spec.json", json.dumps(spec).encode())], run_dir)
        except BaseException:
            self.discard_secrets(run_dir)
            raise
        return lib

    def write_file(self, path: str, data: bytes) -> None:
        folder, name = posixpath.split(path)
        self._repeatable(lambda conn: conn.upload_stream([(name, data)], folder))

    def read_from(self, path: str, offset: int, limit: int = 1 << 20) -> tuple[bytes, int]:
        return self._ssh.follow(self._target, self._host, path, offset, limit)

    def read_status(self, run_dir: str) -> dict[str, Any]:
        from trainform.providers.ssh_containers import read_remote_status

        return self._repeatable(lambda conn: read_remote_status(conn, run_dir))

    def discard_secrets(self, run_dir: str) -> None:
        from trainform.runs.shipping import SECRET_DIR

        # Called while a failure is being raised: a host that cannot be reached now keeps
        # the file (0600, its user's only), rather than hiding why the submission failed.
        with contextlib.suppress(ProviderError):
            self._conn().run(["rm", "-rf", "--", f"{run_dir}/{SECRET_DIR}"], check=False)

    def fetch_run(self, run_dir: str, dest: Path) -> None:
        self.discard_secrets(run_dir)  # a job that never started, or one that kept them
        self._ssh._close_streams(run_dir)
        self._repeatable(lambda conn: fetch_run_folder(conn, run_dir, dest))
