"""From a run block's evaluated attributes to what the launcher needs, and the fingerprint
that decides whether a completed run is still up to date."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainform.capture.logs import PatternError, compile_pattern
from trainform.errors import ProviderError
from trainform.providers.base import SENSITIVE_PATHS
from trainform.runs.images import image_settings
from trainform.state.secrets import keyed
from trainform.units import parse_duration

# Attributes whose change means a new run: everything that decides the result. Tags, wait,
# max_duration and metrics regexes do not change what the script computes.
FINGERPRINTED = ("script", "command", "env", "node_count")
SPARK_LIMITS = ("executor_memory", "driver_memory")  # a run's spark { } values that are limits


def requirements(environment: dict[str, Any] | None, config_dir: Path) -> list[str]:
    """The pip requirement lines of an environment (its ``pip`` list or its
    ``requirements_file``), empty for none or a user-managed one."""
    if not environment or environment.get("user_managed"):
        return []
    if environment.get("requirements_file"):
        text = (config_dir / environment["requirements_file"]).read_text()
        return [
            line.strip()
            for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]
    return [str(r) for r in environment.get("pip") or []]


def environment_spec(environment: dict[str, Any] | None, config_dir: Path) -> dict[str, Any]:
    """The launcher's ``environment`` section (without the target's ``cache_dir``)."""
    env = environment or {}
    reqs = requirements(env, config_dir)
    spec: dict[str, Any] = {
        "python": str(env.get("python") or "python3"),
        "user_managed": bool(env.get("user_managed")),
        "requirements": reqs,
        "variables": {str(k): str(v) for k, v in (env.get("variables") or {}).items()},
    }
    # The virtualenv is keyed by interpreter + requirements only: variables do not change
    # what gets installed.
    key = {"python": spec["python"], "requirements": reqs, "user_managed": spec["user_managed"]}
    spec["hash"] = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    # In a container the same hash is used under a cache folder keyed by the image id, so a
    # virtualenv built in one image is never used on the host or in another image.
    docker = image_settings(env.get("docker"), config_dir)
    if docker is not None:
        spec["docker"] = docker
    return spec


def image_identity(env_spec: dict[str, Any]) -> dict[str, Any] | None:
    """What of an environment's container decides a run's result: the image (its name, or
    the hash of the build context it is built from) and the GPUs. Resource limits (shm_size,
    cpus, memory) are left out, as max_duration is: they do not change what a script
    computes."""
    docker = env_spec.get("docker")
    if not docker:
        return None
    build = docker.get("build") or {}
    return {"image": docker["image"], "build": build.get("hash"), "gpus": docker.get("gpus")}


def argument_string(value: Any) -> str:
    """One argument as the script sees it: numbers and bools written the way HCL prints
    them (0.1 -> "0.1", 10.0 -> "10", true -> "true")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def argument_strings(arguments: list[Any]) -> list[str]:
    """Arguments (or a command vector) as the script sees them: see :func:`argument_string`."""
    return [argument_string(a) for a in arguments or []]


def command_strings(command: Any) -> Any:
    """A run's ``command`` as the launcher takes it: a list's items written as
    :func:`argument_string` writes them. Anything else (``None``, or a value the launcher
    will refuse) is returned as it is."""
    return argument_strings(command) if isinstance(command, list) else command


def fingerprint(
    desired: dict[str, Any],
    snapshot_id: str,
    config_dir: Path,
    key: Callable[[], bytes] | None = None,
) -> str:
    """Hash of everything that decides a run's result: snapshot content, environment,
    compute, script or command, arguments, env, node count and ``env_passthrough``.

    An input at one of the sensitive paths that ``desired[SENSITIVE_PATHS]`` lists
    (``env.TOKEN``, ``environment.variables.KEY``, ``arguments``) enters only as a keyed
    hash under ``key()``, the state's key (:func:`trainform.state.secrets.keyed`): the
    fingerprint is stored in state and shown in plans, and a plain hash would let anyone
    who has it check a guessed secret offline. Equal secrets still fingerprint equal within
    a state. Without sensitive inputs the fingerprint is what it always was. Raises
    ProviderError if there are sensitive inputs but no ``key``."""
    compute = desired.get("compute") or {}
    env = environment_spec(desired.get("environment"), config_dir)
    environment = {k: env[k] for k in ("python", "user_managed", "requirements", "variables")}
    container = image_identity(env)
    if container is not None:  # only then, so runs without one keep their fingerprints
        environment["docker"] = container
    target: dict[str, Any] = {"address": compute.get("address"), "type": compute.get("type")}
    if compute and not isinstance(compute.get("address"), str):  # the run's own compute { }
        target["inline"] = compute
    data = {
        "snapshot": snapshot_id,
        "environment": environment,
        "compute": target,
        **{k: desired.get(k) for k in FINGERPRINTED},
        # As the launcher gets it: [..., 10] and [..., "10"] run the same command.
        "command": command_strings(desired.get("command")),
        "arguments": argument_strings(desired.get("arguments") or []),
    }
    if desired.get("env_passthrough") is not None:  # only then: others keep their fingerprints
        data["env_passthrough"] = list(desired["env_passthrough"])
    if desired.get("inputs"):  # only then; by content, never by the run that made them
        from trainform.runs.inputs import input_ids

        data["inputs"] = input_ids(desired["inputs"])
        data["input_mode"] = desired.get("input_mode") or "copy"
        data["input_args"] = bool(desired.get("input_args"))
    if desired.get("outputs"):  # what the run must produce
        data["outputs"] = dict(desired["outputs"])
    if desired.get("spark") is not None:  # only then; its limits (memory) are left out
        data["spark"] = {k: v for k, v in desired["spark"].items() if k not in SPARK_LIMITS}
    places = {_input_place(str(p), data) for p in desired.get(SENSITIVE_PATHS) or ()}
    places.discard(None)
    if places:
        if key is None:
            raise ProviderError("the run has sensitive inputs but no state key to hash them with")
        secret = key()
        data = copy.deepcopy(data)  # it shares the env and variables maps with desired
        for place in sorted(p for p in places if p is not None):
            _hide(data, place, secret)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _input_place(path: str, data: dict[str, Any]) -> tuple[str, ...] | None:
    """Where the run attribute at sensitive ``path`` sits in a fingerprint's ``data``: a
    path into it (``()`` for all of it), or None if it is not fingerprinted."""
    if not path:
        return ()
    first, *rest = path.split(".")
    if first == "env":
        return ("env", *rest)
    if first in ("script", "command", "arguments", "node_count", "env_passthrough"):
        return (first,)  # lists are sensitive whole
    if first == "compute":
        return ("compute", "inline", *rest) if "inline" in data["compute"] else None
    if first == "environment":
        if not rest:
            return ("environment",)
        if rest[0] == "variables":
            return ("environment", "variables", *rest[1:])
        head = "requirements" if rest[0] in ("pip", "requirements_file") else rest[0]
        return ("environment", head) if head in data["environment"] else None
    return None


def _hide(data: dict[str, Any], place: tuple[str, ...], key: bytes) -> None:
    """Replace the value at ``place`` in ``data`` (or, where the path stops being a map, the
    value that holds it) by its keyed hash; everything but the snapshot for ``()``."""
    if not place:
        for name in [k for k in data if k != "snapshot"]:
            _hide(data, (name,), key)
        return
    node = data
    for depth, step in enumerate(place):
        value = node.get(step)
        if value is None:
            return
        if depth == len(place) - 1 or not isinstance(value, dict):
            node[step] = keyed(key, value)
            return
        node = value


def launcher_spec(
    run_id: str, address: str, desired: dict[str, Any], config_dir: Path
) -> dict[str, Any]:
    """The launcher spec for one run, without target paths (see RunRequest)."""
    max_duration = desired.get("max_duration")
    return {
        "run_id": run_id,
        "address": address,
        "experiment": desired.get("experiment") or "default",
        "script": desired.get("script"),
        "command": command_strings(desired["command"]) if desired.get("command") else None,
        "arguments": argument_strings(desired.get("arguments") or []),
        "env": {str(k): str(v) for k, v in (desired.get("env") or {}).items()},
        "environment": environment_spec(desired.get("environment"), config_dir),
        "max_duration": parse_duration(max_duration) if max_duration else None,
        "grace_seconds": parse_duration(desired.get("grace_period") or "10s"),
        "metrics": dict(desired.get("metrics") or {}),
        "outputs_dir": desired.get("outputs_dir") or "outputs",
        # None: everything the launcher has but trainform's own variables
        "env_passthrough": env_passthrough(desired.get("env_passthrough")),
    }


_PASSTHROUGH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\*?|\*")


def env_passthrough(value: Any) -> list[str] | None:
    """A run's ``env_passthrough`` as the launcher takes it (None when not set)."""
    return None if value is None else [str(p) for p in value]


def check_env_passthrough(value: Any) -> list[str]:
    """Problems with ``env_passthrough``: each entry is a variable name (``HF_HOME``) or a
    prefix ending in ``*`` (``CUDA_*``)."""
    if value is None:
        return []
    bad = [p for p in value if not (isinstance(p, str) and _PASSTHROUGH.fullmatch(p))]
    return [
        f"env_passthrough: {p!r} is not a variable name or a prefix ending in * (CUDA_*)"
        for p in bad
    ]


def check_metric_patterns(metrics: dict[str, Any]) -> list[str]:
    """Problems with the ``metrics`` entries: each is a regular expression with exactly one
    group, or ``{ pattern = "...", lines = N }`` (see
    :func:`trainform.capture.logs.compile_pattern`, which the launcher applies too)."""
    problems = []
    for name, entry in (metrics or {}).items():
        try:
            compile_pattern(str(name), entry)
        except PatternError as exc:
            problems.append(str(exc))
    return problems


def argument_changes(before: list[Any], after: list[Any]) -> str:
    """``--lr 0.1 -> 0.2`` style description of how an argument list changed."""
    b, a = argument_strings(before), argument_strings(after)
    if len(a) == len(b):
        parts = []
        for i, (x, y) in enumerate(zip(b, a)):
            if x != y:
                flag = b[i - 1] if i and b[i - 1].startswith("-") else f"argument {i + 1}"
                parts.append(f"{flag} {x} -> {y}")
        return "; ".join(parts)
    return f"arguments {' '.join(b) or '(none)'} -> {' '.join(a) or '(none)'}"
