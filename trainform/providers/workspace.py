"""Workspaces: an artifact store folder (snapshots, logs, outputs) and a run registry."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from trainform.config.schema import WORKSPACE
from trainform.errors import ProviderError
from trainform.providers.base import Observed, Provider, ResourceState

MARKER = ".trainform-workspace"
LAYOUT = ("snapshots", "runs", "environments")


class WorkspaceProvider(Provider):
    """Creates the artifact store folder and its layout. Deleting removes the folder only if
    trainform created it; a folder that existed before keeps everything but the marker."""

    name = "workspace"
    kind = "workspace"
    schema = WORKSPACE
    parallel_reads = False

    def store_path(self, name: str, desired: dict[str, Any]) -> Path:
        configured = desired.get("artifact_store")
        if configured:
            path = Path(os.path.expanduser(configured))
            return path if path.is_absolute() else self.context.config_dir / path
        if self.context.workspace != "default":  # each CLI workspace its own stores: a
            # destroy in one must not remove what another's workspace block created
            return self.context.data_dir / "workspaces.d" / self.context.workspace / name
        return self.context.data_dir / "workspaces" / name

    def validate(self, address: str, desired: dict[str, Any]) -> list[str]:
        """A continuous-export URI must be an MLflow server's, without credentials in it."""
        uri = desired.get("mlflow_tracking_uri")
        if not isinstance(uri, str) or not uri:
            return []
        from trainform.runs.mlflow_rest import uri_problems

        return [f"mlflow_tracking_uri: {p}" for p in uri_problems(uri, credentials=False)]

    def read(self, resource: ResourceState) -> Observed | None:
        path = Path(resource.computed.get("path", ""))
        if not resource.computed.get("path") or not (path / MARKER).is_file():
            return None
        return dict(resource.computed)

    def create(self, address: str, desired: dict[str, Any]) -> Observed:
        name = address.split(".", 1)[1]
        if address.startswith("module."):  # module.team["a"].workspace.main: one folder name
            name = address.replace('"', "").replace("/", "%2F")
        path = self.store_path(name, desired).resolve()
        created = not path.exists()
        try:
            for sub in LAYOUT:
                (path / sub).mkdir(parents=True, exist_ok=True)
            if not (path / MARKER).exists():
                (path / MARKER).write_text(f"{address}\n")
        except OSError as exc:
            raise ProviderError(
                f"cannot create artifact store {path}: {exc.strerror}", address=address
            ) from None
        ident = hashlib.sha256(f"{address}:{path}".encode()).hexdigest()[:16]
        return {"path": str(path), "id": ident, "created_dir": created}

    def update(
        self, address: str, desired: dict[str, Any], prior: ResourceState, changed: list[str]
    ) -> Observed:
        return dict(prior.computed) or self.create(address, desired)

    def delete(self, prior: ResourceState) -> None:
        path = Path(prior.computed.get("path", ""))
        if not prior.computed.get("path") or not path.exists():
            return
        try:
            if prior.computed.get("created_dir"):
                shutil.rmtree(path)
            else:
                (path / MARKER).unlink(missing_ok=True)
                for sub in LAYOUT:
                    if (path / sub).is_dir() and not any((path / sub).iterdir()):
                        (path / sub).rmdir()
        except OSError as exc:
            raise ProviderError(
                f"cannot remove artifact store {path}: {exc.strerror}", address=prior.address
            ) from None
