"""Docker engines through the docker SDK: connections with clear errors, commands in
containers as argument vectors, and files in and out of containers as tar streams.

The SDK is imported lazily (only when an engine is used). Its exceptions are translated into
`ProviderError` here, naming the engine and what was being done.
"""

from __future__ import annotations

import io
import logging
import os
import tarfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from trainform.errors import ProviderError
from trainform.extras import needs
from trainform.remote.tarsafe import add_to_tar, extract_stream

log = logging.getLogger(__name__)

LOCAL = "local"  # the engine of this machine: DOCKER_HOST, or the default socket
LABEL = "trainform.managed"  # on every container, network and image trainform creates

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def engine_name(url: str | None) -> str:
    """How messages name an engine."""
    return url if url and url != LOCAL else "the local Docker engine"


def connect(url: str | None = None) -> Any:
    """A client for the engine at ``url`` (``unix://``, ``tcp://``, ``ssh://``; None or
    ``"local"`` for this machine's), shared by the threads of this process."""
    key = url or LOCAL
    with _clients_lock:
        client = _clients.get(key)
        if client is not None:
            return client
        try:
            import docker
            from docker.errors import DockerException
        except ImportError:
            raise ProviderError(needs("docker", "Docker support")) from None
        try:
            client = docker.from_env() if key == LOCAL else docker.DockerClient(base_url=key)
            client.ping()
        except DockerException as exc:
            raise ProviderError(
                f"cannot reach {engine_name(key)}: {short_error(exc)}. Is dockerd running, "
                "and may this user use it?",
                host=key,
            ) from None
        _clients[key] = client
        return client


def short_error(exc: BaseException) -> str:
    """An SDK exception as one readable line (the engine's own explanation when it gave one)."""
    explanation = getattr(exc, "explanation", None)
    text = str(explanation or exc).strip()
    if "Connection refused" in text or "FileNotFoundError" in text:
        return "connection refused (no engine listens there)"
    if "Permission denied" in text:
        return "permission denied on the engine's socket"
    return text.splitlines()[0] if text else type(exc).__name__


def api_call(what: str, url: str | None, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` and translate SDK errors into ProviderError naming ``what`` and the engine."""
    from docker.errors import DockerException

    try:
        return fn(*args, **kwargs)
    except DockerException as exc:
        raise ProviderError(
            f"{what} on {engine_name(url)}: {short_error(exc)}", host=url or LOCAL
        ) from None


def is_not_found(exc: BaseException) -> bool:
    from docker.errors import NotFound

    return isinstance(exc, NotFound)


def exec_in(
    container: Any, argv: Sequence[str], *, env: dict[str, str] | None = None
) -> tuple[int, bytes, bytes]:
    """Run ``argv`` in a running container and wait: (exit code, stdout, stderr)."""
    result = container.exec_run(list(argv), environment=env, demux=True)
    out, err = result.output if isinstance(result.output, tuple) else (result.output, b"")
    return int(result.exit_code or 0), out or b"", err or b""


def python_in(container: Any, script: str, args: Sequence[str], what: str) -> bytes:
    """Run a stdlib-only Python program in a container: its stdout, or ProviderError."""
    code, out, err = exec_in(container, ["python3", "-c", script, *args])
    if code != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-5:]
        raise ProviderError(
            f"{what} in container {container.name}: exit {code}: {' / '.join(tail)}",
            exit_code=code,
        )
    return out


def put_files(container: Any, dest: str, items: Iterable[tuple[str, bytes | Path]]) -> int:
    """Write files (relative name, content or local path) under ``dest`` in a container, in
    one tar stream; folders are created as needed. Returns the bytes sent."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, source in items:
            add_to_tar(tar, name, source)
    data = buf.getvalue()
    container.put_archive(dest, data)
    return len(data)


class _StreamReader(io.RawIOBase):
    """A file object over the chunks of an SDK stream (for tarfile's streaming mode)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks, self.buffer = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self.buffer:
            try:
                self.buffer = next(self.chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self.buffer))
        b[:n] = self.buffer[:n]
        self.buffer = self.buffer[n:]
        return n


def get_archive_of_tar(container: Any, path: str, dest: Path) -> list[str]:
    """Extract the tar file ``path`` of a container into ``dest`` (the engine sends it
    wrapped in a tar of its own) as :func:`trainform.remote.tarsafe.extract_safely` does: the
    container's archive is hostile. Returns what was skipped, also logged as warnings."""
    stream, _ = container.get_archive(path)
    reader = io.BufferedReader(_StreamReader(iter(stream)))
    skipped: list[str] = []
    with tarfile.open(fileobj=reader, mode="r|") as outer:
        for member in outer:
            inner = outer.extractfile(member) if member.isfile() else None
            if inner is not None:
                skipped = extract_stream(inner, dest)
                break
    for item in skipped:
        log.warning("copy from container %s: skipped %s", getattr(container, "name", "?"), item)
    return skipped


def user_spec() -> str:
    """``uid:gid`` of this process, so files a container writes into a bind mount are ours."""
    return f"{os.getuid()}:{os.getgid()}"
