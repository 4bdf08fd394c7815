"""Container images for runs: the settings of an environment's ``docker`` block, the content
hash that tags an image built from a Dockerfile, and the translation of resource settings into
the docker SDK's container options.

Everything here is pure (it reads files, never an engine) except :func:`image_present`.
"""

from __future__ import annotations

import collections
import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainform.errors import ProviderError
from trainform.extras import needs

IMAGE_REPOSITORY = "trainform-env"  # images built from a Dockerfile: trainform-env:<hash12>
HASH_LABEL = "trainform.context_hash"

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: object) -> int:
    """Bytes in a size such as ``"2g"``, ``"512m"``, ``"1.5GiB"`` or a bare number of bytes
    (units are powers of 1024, as Docker reads them). Raises ValueError naming the form."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return int(value)
    match = _SIZE.fullmatch(str(value).strip()) if isinstance(value, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"{value!r} is not a size such as 512m, 2g or 1.5g")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def gpu_count(value: object) -> int | None:
    """The device request count for ``gpus``: -1 for ``"all"``, a whole number >= 1, or None
    when no GPUs are asked for (unset or 0). Raises ValueError otherwise."""
    if value is None or value == 0 or value == "0":
        return None
    if isinstance(value, str) and value.strip().lower() == "all":
        return -1
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ValueError(f'gpus = {value!r}: use "all" or a whole number of GPUs')


def check_settings(docker: dict[str, Any], config_dir: Path) -> list[str]:
    """Problems with an environment's ``docker`` block, as messages. Reads only the files it
    names."""
    problems = []
    if bool(docker.get("image")) == bool(docker.get("dockerfile")):
        problems.append("docker needs exactly one of image or dockerfile")
    if docker.get("build_context") and not docker.get("dockerfile"):
        problems.append("docker.build_context is only used with dockerfile")
    if docker.get("build_args") and not docker.get("dockerfile"):
        problems.append("docker.build_args are only used with dockerfile")
    if docker.get("dockerfile"):
        dockerfile, context = build_paths(docker, config_dir)
        if not context.is_dir():
            problems.append(
                f"docker.build_context {str(docker.get('build_context'))!r} is not a folder"
            )
        if not dockerfile.is_file():
            problems.append(f"docker.dockerfile {str(docker['dockerfile'])!r} does not exist")
    try:
        gpu_count(docker.get("gpus"))
    except ValueError as exc:
        problems.append(f"docker.{exc}")
    for key in ("shm_size", "memory"):
        if docker.get(key) is not None:
            try:
                parse_size(docker[key])
            except ValueError as exc:
                problems.append(f"docker.{key}: {exc}")
    cpus = docker.get("cpus")
    if cpus is not None and (
        isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or cpus <= 0
    ):
        problems.append(f"docker.cpus = {cpus!r}: use a number of CPUs > 0, such as 2 or 0.5")
    return problems


def build_paths(docker: dict[str, Any], config_dir: Path) -> tuple[Path, Path]:
    """The Dockerfile and the build context as absolute paths. Both are relative to the
    configuration folder; the context defaults to the Dockerfile's folder."""
    dockerfile = (config_dir / str(docker["dockerfile"])).resolve()
    context = docker.get("build_context")
    return dockerfile, (config_dir / str(context)).resolve() if context else dockerfile.parent


def build_excludes(context: Path, config_dir: Path) -> list[str]:
    """The patterns of files left out of a build context: its ``.dockerignore`` (read as the
    docker SDK reads it), and trainform's own folder (``.trainform/``: state, runs, caches)
    when it lies inside the context. The hash covers exactly the files the engine is sent."""
    try:
        text = (context / ".dockerignore").read_text()
    except OSError:
        text = ""
    lines = (line.strip() for line in text.splitlines())
    patterns = [line for line in lines if line and not line.startswith("#")]
    data_dir = (config_dir / ".trainform").resolve()
    if data_dir.is_relative_to(context.resolve()):
        patterns.append(data_dir.relative_to(context.resolve()).as_posix())
    return patterns


# File digests by (path, size, mtime_ns, inode): a plan hashes a context several times.
_digests: dict[tuple[str, int, int, int], bytes] = {}


def _file_digest(path: Path, st: os.stat_result) -> bytes:
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    digest = _digests.get(key)
    if digest is None:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        digest = _digests[key] = h.digest()
    return digest


def context_hash(docker: dict[str, Any], config_dir: Path) -> str:
    """sha256 over everything a build reads: every file of the build context that is sent to
    the engine (``.dockerignore`` honoured; names, modes, contents, link targets), the
    Dockerfile and the build args. Raises ProviderError if a file cannot be read."""
    try:
        from docker.utils.build import exclude_paths
    except ImportError:
        raise ProviderError(needs("docker", "an environment with a docker block")) from None

    dockerfile, context = build_paths(docker, config_dir)
    rel_dockerfile = os.path.relpath(dockerfile, context)
    h = hashlib.sha256()
    try:
        h.update(b"dockerfile\0" + dockerfile.read_bytes() + b"\0")
        excludes = build_excludes(context, config_dir)
        names = sorted(exclude_paths(str(context), excludes, rel_dockerfile))
        for rel in names:
            path = context / rel
            st = path.lstat()
            if path.is_symlink():
                h.update(f"link\0{rel}\0{os.readlink(path)}\0".encode())
            elif path.is_file():
                h.update(f"file\0{rel}\0{st.st_mode & 0o111:o}\0".encode())
                h.update(_file_digest(path, st) + b"\0")
            elif path.is_dir():
                h.update(f"dir\0{rel}\0".encode())
    except OSError as exc:
        raise ProviderError(
            f"cannot read the docker build context {context}: {exc.strerror} ({exc.filename})"
        ) from None
    args = docker.get("build_args") or {}
    for key in sorted(args):
        h.update(f"arg\0{key}\0{args[key]}\0".encode())
    return h.hexdigest()


def image_settings(docker: dict[str, Any] | None, config_dir: Path) -> dict[str, Any] | None:
    """The ``docker`` section of a launcher spec's environment, or None without a docker
    block: the image to use (``image``: a name, or ``trainform-env:<hash12>`` for a
    Dockerfile, with ``build`` saying how to build it) and the container's resources."""
    if not docker:
        return None
    out: dict[str, Any] = {}
    if docker.get("dockerfile"):
        digest = context_hash(docker, config_dir)
        dockerfile, context = build_paths(docker, config_dir)
        out["image"] = f"{IMAGE_REPOSITORY}:{digest[:12]}"
        out["build"] = {
            "dockerfile": str(dockerfile),
            "context": str(context),
            "args": {str(k): str(v) for k, v in (docker.get("build_args") or {}).items()},
            "exclude": build_excludes(context, config_dir),
            "hash": digest,
        }
    else:
        out["image"] = str(docker.get("image") or "")
    for key in ("gpus", "shm_size", "cpus", "memory"):
        if docker.get(key) is not None:
            out[key] = docker[key]
    return out


def container_options(settings: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``containers.create`` for an image settings dict (see
    :func:`image_settings`): GPUs as a device request (count -1 for all), ``shm_size`` and
    ``memory`` in bytes, ``cpus`` as nano-CPUs. Raises ValueError for an invalid value."""
    options: dict[str, Any] = {}
    count = gpu_count(settings.get("gpus"))
    if count is not None:
        from docker.types import DeviceRequest

        options["device_requests"] = [DeviceRequest(count=count, capabilities=[["gpu"]])]
    if settings.get("shm_size") is not None:
        options["shm_size"] = parse_size(settings["shm_size"])
    if settings.get("memory") is not None:
        options["mem_limit"] = parse_size(settings["memory"])
    if settings.get("cpus") is not None:
        options["nano_cpus"] = round(float(settings["cpus"]) * 1e9)
    return options


def image_present(client: Any, name: str) -> bool:
    """Whether the engine has the image ``name`` (never pulls)."""
    from docker.errors import ImageNotFound

    try:
        client.images.get(name)
    except ImageNotFound:
        return False
    return True


def missing_image_message(name: str) -> str:
    """What to say when a run's image is not on the engine."""
    return (
        f"image {name!r} is not on the local Docker engine, and trainform does not pull from "
        "registries. Load or build it first (docker load / docker build; "
        "scripts/build-base-image builds a Debian image with python3 offline), or give the "
        "environment a dockerfile instead of an image."
    )


BUILD_PREFIX = "[build]"  # how build output is marked in a run's log
TAIL_LINES = 15  # lines of a failed build (or container) shown in its error message
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # the engine colours a build's stderr


class BuildLog:
    """A build's output as ``[build]`` lines for a run's log (colour codes and blank lines
    left out), keeping the last ones for an error message."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._partial = ""

    def feed(self, text: str) -> None:
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            line = _ANSI.sub("", line).rstrip("\r")
            if line.strip():
                self.tail.append(line)
                self.write(f"{BUILD_PREFIX} {line}\n")

    def failure(self, error: str, where: str = "") -> str:
        """Finish the log with ``error``; the message for the run: the error and last lines."""
        self.feed("\n")
        self.write(f"{BUILD_PREFIX} error: {error}\n")
        lines = "\n".join(self.tail)
        message = f"image build failed{where}: {error}"
        return f"{message}\nthe last lines of the build:\n{lines}" if lines else message


def stream_build(
    api: Any, name: str, build: dict[str, Any], labels: dict[str, str], log: BuildLog
) -> str:
    """Build image ``name`` with the engine's classic builder from ``build`` (the build
    settings: context, dockerfile, exclude, args, hash), feeding its output to ``log``; returns the error ("" when it
    was built). The classic builder tags the image only when every step succeeded, and
    ``forcerm`` removes the intermediate containers whatever happens, so a failed build
    leaves no tag and no container. The context is sent exactly as it was hashed
    (``.dockerignore`` and trainform's own folder left out), through the SDK's tar helper."""
    from docker.api.build import process_dockerfile
    from docker.errors import DockerException
    from docker.utils.build import tar

    from trainform.remote.docker import short_error

    error = ""
    try:
        dockerfile = process_dockerfile(build["dockerfile"], build["context"])
        context = tar(
            build["context"], exclude=list(build.get("exclude") or []), dockerfile=dockerfile
        )
        stream = api.build(
            fileobj=context,
            custom_context=True,
            dockerfile=dockerfile[0],
            tag=name,
            buildargs=build.get("args") or {},
            labels={**labels, HASH_LABEL: build["hash"]},
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
            timeout=None,
        )
        for chunk in stream:
            if "stream" in chunk:
                log.feed(str(chunk["stream"]))
            elif "error" in chunk:
                error = str(chunk.get("error") or "").strip()
            elif "status" in chunk:
                log.feed(str(chunk["status"]) + "\n")
    except DockerException as exc:
        error = short_error(exc)
    return error
