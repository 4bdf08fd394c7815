"""Environments: recorded in state with a content hash; materialised on a target (a
virtualenv or an image) when a run needs it, keyed by that hash."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from trainform.config.schema import ENVIRONMENT
from trainform.errors import ProviderError
from trainform.extras import missing
from trainform.providers.base import Definition, Observed


class EnvironmentProvider(Definition):
    """Defines environments. Creating one checks the files it names and records its hash."""

    name = "environment"
    kind = "environment"
    schema = ENVIRONMENT
    parallel_reads = False

    def validate(self, address: str, desired: dict[str, Any]) -> list[str]:
        problems = []
        if desired.get("pip") and desired.get("requirements_file"):
            problems.append("set either pip or requirements_file, not both")
        if desired.get("user_managed") and (desired.get("pip") or desired.get("requirements_file")):
            problems.append(
                "a user_managed environment installs nothing: remove pip/requirements_file"
            )
        docker = desired.get("docker") or {}
        if docker:
            from trainform.runs.images import check_settings

            if missing_extra := missing("docker", "an environment with a docker block"):
                problems.append(missing_extra)
            problems.extend(check_settings(docker, self.context.config_dir))
        for key in ("requirements_file", "conda_file"):
            value = desired.get(key)
            if isinstance(value, str) and not (self.context.config_dir / value).is_file():
                problems.append(f"{key} {value!r} does not exist")
        return problems

    def content_hash(self, desired: dict[str, Any]) -> str:
        parts: dict[str, Any] = {
            k: desired.get(k) for k in ("python", "user_managed", "pip", "docker")
        }
        for key in ("requirements_file", "conda_file"):
            value = desired.get(key)
            if isinstance(value, str):
                try:
                    parts[key] = hashlib.sha256(
                        (self.context.config_dir / value).read_bytes()
                    ).hexdigest()
                except OSError as exc:
                    raise ProviderError(f"cannot read {key} {value!r}: {exc.strerror}") from None
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def create(self, address: str, desired: dict[str, Any]) -> Observed:
        return {"hash": self.content_hash(desired)}
