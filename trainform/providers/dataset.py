"""Datasets: data runs read, content-addressed. Planning hashes the source (one stat per
unchanged file); the recorded id is the manifest's hash, and a change shows in the plan as
the files added, changed and removed."""

from __future__ import annotations

from typing import Any

from trainform.config.schema import DATASET
from trainform.errors import ProviderError, TrainformError
from trainform.providers.base import (
    Definition,
    Observed,
    PlanValues,
    ProviderContext,
    ResourceState,
)
from trainform.providers.registry import Providers
from trainform.runs import inputs as data


class DatasetProvider(Definition):
    """Defines datasets. Refresh re-hashes the source, so a changed folder is seen by every
    run that reads it at plan time."""

    name = "dataset"
    kind = "dataset"
    schema = DATASET

    def __init__(self, context: ProviderContext) -> None:
        super().__init__(context)
        self.providers = Providers(context)  # an ssh:// source is hashed on its host

    def validate(self, address: str, desired: dict[str, Any]) -> list[str]:
        return data.dataset_problems(desired, self.context.config_dir)

    def _content(self, desired: dict[str, Any]) -> data.Content:
        # Planning hashes the source before validate runs: an http(s) source without a
        # (well-formed) sha256 must be refused before it is fetched.
        problems = data.dataset_problems(desired, self.context.config_dir)
        if problems:
            raise ProviderError("; ".join(problems))
        ssh = (
            self.providers.get("ssh") if data.source_kind(str(desired["source"])) == "ssh" else None
        )
        content = data.dataset_content(
            desired, self.context.config_dir, self.context.data_dir / "cache", ssh
        )
        from trainform.runs.snapshot import save_manifest

        save_manifest(content.manifest, data.manifests_dir(self.context.data_dir))
        return content

    def plan_values(
        self, address: str, desired: dict[str, Any], prior: ResourceState | None
    ) -> PlanValues:
        content = self._content(desired)
        computed = data.content_summary(content.manifest)
        old = (prior.computed.get("id") if prior is not None else None) or computed["id"]
        if old == computed["id"]:
            return PlanValues(computed)
        return PlanValues(computed, (f"{address} changed: {self._changes(old, content)}",))

    def _changes(self, old_id: str, content: data.Content) -> str:
        from trainform.runs.snapshot import load_manifest

        try:
            old = load_manifest(data.manifests_dir(self.context.data_dir) / f"{old_id}.json")
        except TrainformError:
            return "a new content id"
        changes = old.diff(content.manifest)
        parts = [
            f"{len(paths)} file{'s' if len(paths) != 1 else ''} {what}"
            for what, paths in (
                ("added", changes.added),
                ("changed", changes.modified),
                ("removed", changes.removed),
            )
            if paths
        ]
        return ", ".join(parts) or "a new content id"

    def read(self, resource: ResourceState) -> Observed | None:
        try:
            content = self._content(resource.attributes)
        except TrainformError:
            return dict(resource.computed)  # the plan says what is wrong with the source
        return {**resource.computed, **data.content_summary(content.manifest)}

    def create(self, address: str, desired: dict[str, Any]) -> Observed:
        return data.content_summary(self._content(desired).manifest)
