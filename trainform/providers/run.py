"""Runs as resources: snapshot the source, fingerprint the inputs, submit through the
compute target's provider, and read back status, logs, metrics and outputs.

A run resource points at its latest run; the run history (every run ever submitted) lives
in the state's ``runs`` table and outlives the resource.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from trainform.config.schema import RUN
from trainform.errors import ProviderError, TrainformError
from trainform.providers.base import (
    AWAITED,
    BATCH,
    DOCKER,
    MULTI_NODE,
    RUNS,
    SCALING,
    TERMINAL,
    Handle,
    Observed,
    PlanValues,
    Provider,
    ProviderContext,
    ResourceState,
    RunRequest,
    announce,
)
from trainform.providers.registry import Providers
from trainform.runs import inputs as data
from trainform.runs import spec as runspec
from trainform.runs.history import stamp
from trainform.state import secrets as secrets_
from trainform.state.store import StateStore
from trainform.units import parse_duration

NOT_SUPPORTED_YET = ("conda_file",)


def new_run_id(address: str) -> str:
    """A sortable, readable id: ``train-20261126-214501-3fa2``."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", address.split(".", 1)[-1]).strip("-") or "run"
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"


class WorkProvider(Provider):
    """Base of providers whose resources are work submitted to other providers' compute
    (runs, sweeps): submitted on create, canceled on delete."""

    verbs: ClassVar[dict[str, str]] = {"create": "submit", "delete": "cancel"}

    ident = "run_id"
    does_work = True
    sensitive_inputs = True  # fingerprints hide secrets

    def __init__(self, context: ProviderContext) -> None:
        super().__init__(context)
        self.providers = Providers(context)

    def fingerprint(self, desired: dict[str, Any]) -> str:
        """Hash of everything that decides the work's result."""
        raise NotImplementedError

    def update(
        self, address: str, desired: dict[str, Any], prior: ResourceState, changed: list[str]
    ) -> Observed:
        """Submit again for a "rerun"; unless the change waited on other runs' outputs
        (AWAITED) and they came out as the last submission read them: then nothing
        changed after all, and the completed work stays."""
        if "rerun" in changed and not (
            AWAITED in changed
            and prior.computed.get("status") == "completed"
            and self.fingerprint(desired) == prior.computed.get("fingerprint")
        ):
            return self.create(address, desired)
        return dict(prior.computed)

    def awaits(self, computed: dict[str, Any], prior: dict[str, Any] | None) -> bool:
        """A new submission is awaited; the same one returned again (nothing to resubmit)
        is not."""
        ident = computed.get(self.ident)
        return bool(ident) and ident != (prior or {}).get(self.ident)

    def outcome(self, computed: dict[str, Any], results: Any, tail: list[str]) -> str:
        if results is None or computed.get("status") == "completed":
            return ""
        # The watcher bounds the tail: a multi-node run's holds each failing rank's lines.
        lines = "\n".join(f"    {line}" for line in tail)
        message = f"{self.kind} {computed.get(self.ident)} {computed.get('status')}"
        if computed.get("message"):
            message += f": {computed['message']}"
        return message + (f"\n  last log lines:\n{lines}" if lines else "")


class RunProvider(WorkProvider):
    """Manages ``run`` blocks by delegating execution to the compute provider."""

    name = "run"
    kind = "run"
    schema = RUN

    # -- helpers
    def _source(self, desired: dict[str, Any]) -> Path:
        return (self.context.config_dir / str(desired.get("source_dir") or ".")).resolve()

    def store(self, desired: dict[str, Any]) -> Path:
        """The artifact store the run records into: its workspace's, or a default one."""
        ws = desired.get("workspace")
        if isinstance(ws, dict) and isinstance(ws.get("path"), str):
            return Path(ws["path"])
        return self.context.data_dir / "workspaces" / "default"

    def _compute(self, desired: dict[str, Any]) -> tuple[dict[str, Any], Provider]:
        compute = desired.get("compute")
        if not isinstance(compute, dict) or "type" not in compute:
            raise ProviderError(
                "compute must refer to a compute block (compute = compute.NAME), or declare "
                'compute for this run alone with a compute { type = "docker-cluster" ... } block'
            )
        provider = self.providers.get(str(compute["type"]))
        if _is_inline(compute):
            return _with_defaults(compute, provider), provider
        return compute, provider

    def _inline_problems(
        self, address: str, compute: dict[str, Any], provider: Provider
    ) -> list[str]:
        """What is wrong with a run's inline compute { ... } block."""
        from trainform.config.schema import did_you_mean

        if SCALING not in provider.capabilities:
            return [
                f"compute type {compute['type']!r} cannot be created for one run; declare it as "
                f'a compute "NAME" {{ }} block and refer to it (run-based compute is for '
                "clusters such as docker-cluster)"
            ]
        schema = provider.schema
        problems = []
        for name in compute:
            if (
                name != "type"
                and name not in schema.user_attributes()
                and name not in schema.blocks
            ):
                hint = did_you_mean(name, [*schema.user_attributes(), *schema.blocks])
                problems.append(
                    f"compute block: unsupported attribute {name!r}" + (f"; {hint}" if hint else "")
                )
        for name, attr in schema.user_attributes().items():
            if attr.required and compute.get(name) is None:
                problems.append(f"compute block: attribute {name!r} is required")
        if not problems:
            problems += [f"compute block: {p}" for p in provider.validate(address, compute)]
        return problems

    def _snapshot(self, desired: dict[str, Any]) -> Any:
        from trainform.runs.snapshot import snapshot

        source = self._source(desired)
        if not source.is_dir():
            raise ProviderError(f"source_dir {desired.get('source_dir')!r} is not a folder")
        return snapshot(source, self.context.data_dir / "cache" / "hashes.db")

    # -- validation and planning
    def validate(self, address: str, desired: dict[str, Any]) -> list[str]:
        problems: list[str] = []
        if bool(desired.get("script")) == bool(desired.get("command")):
            problems.append("set exactly one of script or command")
        try:
            compute, provider = self._compute(desired)
        except TrainformError as exc:
            return [*problems, str(exc)]
        ctype = compute.get("type")
        if _is_inline(compute):
            problems.extend(self._inline_problems(f"{address}.compute", compute, provider))
        if RUNS not in provider.capabilities:
            problems.append(f"compute type {ctype!r} cannot run work")
        nodes = desired.get("node_count") or 1
        if not isinstance(nodes, int) or nodes < 1:
            problems.append("node_count must be a whole number >= 1")
        elif nodes > 1 and MULTI_NODE not in provider.capabilities:
            problems.append(
                f"node_count = {nodes}, but compute type {ctype!r} runs one node; use an ssh "
                "pool (hosts = [...]) or a cluster for multi-node runs"
            )
        else:
            problems.extend(
                provider.run_problems(compute, nodes, _options(desired, compute) or None)
            )
        for block in OPTION_BLOCKS:
            if desired.get(block) is not None and ctype != block:
                problems.append(
                    f"a {block} {{ }} block sets the options of a run on {block} compute, but "
                    f"{compute.get('address') or 'the compute'} is of type {ctype!r}: remove it"
                )
        if ctype == "spark" and desired.get("command"):
            problems.append("a run on spark compute sets script (the driver), not command")
        with contextlib.suppress(OSError):  # a missing requirements_file: its own error
            reqs = runspec.requirements(desired.get("environment"), self.context.config_dir)
            problems.extend(provider.environment_problems(compute, reqs))
        source = self._source(desired)
        if not source.is_dir():
            problems.append(f"source_dir {desired.get('source_dir')!r} is not a folder ({source})")
        elif desired.get("script") and not (source / str(desired["script"])).is_file():
            problems.append(f"script {desired['script']!r} not found in {source}")
        for key in ("max_duration", "grace_period"):
            if desired.get(key):
                try:
                    parse_duration(desired[key])
                except ValueError as exc:
                    problems.append(f"{key}: {exc}")
        problems.extend(data.input_problems(desired.get("inputs"), desired.get("input_mode")))
        if desired.get("input_mode") == "link":
            problems.extend(
                data.link_problems(
                    desired.get("inputs"), provider.launcher_here(compute), compute.get("address")
                )
            )
        problems.extend(
            data.output_problems(
                desired.get("outputs"), str(desired.get("outputs_dir") or "outputs")
            )
        )
        problems.extend(runspec.check_metric_patterns(desired.get("metrics") or {}))
        problems.extend(runspec.check_env_passthrough(desired.get("env_passthrough")))
        outputs_dir = desired.get("outputs_dir")
        if isinstance(outputs_dir, str):
            from trainform.remote.tarsafe import relative_folder_problem

            if why := relative_folder_problem(outputs_dir):
                problems.append(
                    f"outputs_dir {outputs_dir!r} must be a relative path inside the run's "
                    f'folder (like "outputs"): {why}'
                )
        env = desired.get("environment")
        if isinstance(env, dict):
            for key in NOT_SUPPORTED_YET:
                if env.get(key):
                    problems.append(
                        f"environment {key} is not supported on compute type {ctype!r} yet"
                    )
            if env.get("docker") and DOCKER not in provider.capabilities:
                problems.append(_no_containers(str(env.get("address") or "environment"), ctype))
            elif env.get("docker") and isinstance(nodes, int):
                problems.extend(provider.container_problems(compute, nodes))
        return problems

    def plan_values(
        self, address: str, desired: dict[str, Any], prior: ResourceState | None
    ) -> PlanValues:
        from trainform.runs.snapshot import describe_changes, load_manifest

        snap = self._snapshot(desired)
        manifest = snap.manifest
        before = prior.attributes.get("inputs") if prior is not None else None
        assumed, pending = data.assume_unchanged(desired.get("inputs"), before)
        if pending and prior is not None:
            desired = {**desired, "inputs": assumed}
        fp = runspec.fingerprint(
            desired, manifest.id, self.context.config_dir, self.context.fingerprint_key
        )
        computed = {
            "fingerprint": fp,
            "snapshot_id": manifest.id,
            "snapshot_files": manifest.file_count,
        }
        if pending and (prior is None or prior.computed.get("fingerprint") == fp):
            computed.pop("fingerprint")
            return PlanValues(
                computed,
                (data.awaiting_reason(pending, before),),
                tuple(snap.warnings),
                awaits=tuple(pending),
            )
        reasons: list[str] = []
        env_spec = runspec.environment_spec(desired.get("environment"), self.context.config_dir)
        image = env_spec.get("docker") or {}
        submits = (
            prior is None
            or prior.status == "pending"
            or prior.computed.get("fingerprint") != fp
            or prior.computed.get("status") in ("failed", "canceled", "timed_out", "lost")
        )
        # Only a run about to be submitted needs its image: an up-to-date one plans no work.
        build = self._image_plan(image, desired) if image and submits else None
        if prior is not None and prior.computed.get("fingerprint") not in (None, fp):
            old_id = prior.computed.get("snapshot_id")
            if old_id and old_id != manifest.id:
                path = (
                    Path(str(prior.computed.get("workspace_path", ""))) / "snapshots" / "manifests"
                )
                try:
                    old = load_manifest(path / f"{old_id}.json")
                    reasons.append(describe_changes(old.diff(manifest)))
                except (OSError, ValueError, KeyError, TrainformError):
                    reasons.append("the source snapshot changed")
            before = prior.attributes
            if runspec.argument_strings(before.get("arguments") or []) != runspec.argument_strings(
                desired.get("arguments") or []
            ):
                reasons.append(
                    runspec.argument_changes(
                        before.get("arguments") or [], desired["arguments"] or []
                    )
                )
            for key in ("script", "command", "node_count", "env_passthrough"):
                if json.dumps(before.get(key), sort_keys=True) != json.dumps(
                    desired.get(key), sort_keys=True
                ):
                    reasons.append(f"{key} changed")
            reasons.append(map_changes("env", before.get("env"), desired.get("env")))
            reasons.extend(data.input_changes(before.get("inputs"), desired.get("inputs")))
            from trainform.planner.diff import attribute_changed

            for key in ("input_mode", "input_args", "outputs"):
                if attribute_changed(before.get(key), desired.get(key)):
                    reasons.append(f"{key} changed")
            old_environment = before.get("environment")
            new_environment = desired.get("environment")
            if isinstance(new_environment, dict):
                name = str(new_environment.get("address") or "the environment")
                if secrets_.is_sealed(old_environment):  # recorded whole by an older version
                    reasons.append(map_changes(name, old_environment, new_environment))
                else:
                    old_vars = (old_environment or {}).get("variables")
                    reasons.append(
                        map_changes(
                            f"{name}'s variables", old_vars, new_environment.get("variables")
                        )
                    )
            old_env = prior.computed.get("environment_hash")
            if old_env and old_env != env_spec["hash"]:
                reasons.append("the environment changed")
            old_image = prior.computed.get("image")
            if image and old_image != image["image"]:
                if build and image.get("build"):
                    reasons.append(f"the image's build context changed: {build}")
                    build = None
                else:
                    reasons.append(f"image {old_image or '(none)'} -> {image['image']}")
            elif old_image and not image:
                reasons.append(f"no longer runs in image {old_image}")
            compute = desired.get("compute") or {}
            if prior.computed.get("compute_address") not in (None, compute.get("address")):
                reasons.append(f"compute changed to {compute.get('address')}")
            if not reasons:
                reasons.append("inputs changed")
        if build:
            reasons.append(build)
        return PlanValues(computed, tuple(r for r in reasons if r), tuple(snap.warnings))

    def _image_plan(self, image: dict[str, Any], desired: dict[str, Any]) -> str | None:
        """For a run about to be submitted in a container: "image X will be built from
        Dockerfile" when its tag is not on the compute's engine yet, else None. Raises
        ProviderError if a named image is missing (nothing is ever pulled) or the engine
        cannot be reached."""
        from trainform.runs.images import missing_image_message

        compute, provider = self._compute(desired)
        present = provider.image_present(compute, image["image"])
        build = image.get("build")
        if build is None:
            if present is False:
                if compute.get("type") == "local":
                    raise ProviderError(missing_image_message(image["image"]))
                raise ProviderError(
                    f"image {image['image']!r} is not on the Docker engine of "
                    f"{compute.get('address')}, and trainform does not pull from registries: "
                    "load or build it there first, or give the environment a dockerfile"
                )
            return None
        if present:
            return None
        try:
            shown = str(Path(build["dockerfile"]).relative_to(self.context.config_dir.resolve()))
        except ValueError:
            shown = build["dockerfile"]
        if present is None:  # the compute is not attached yet: its engine is not known
            return f"image {image['image']} will be built from {shown} unless the engine has it"
        return f"image {image['image']} will be built from {shown}"

    # -- lifecycle
    def read(self, resource: ResourceState) -> Observed | None:
        computed = dict(resource.computed)
        if computed.get("status") == "submitting" and not computed.get("handle"):
            computed = self._find_submitted(computed)
        handle = computed.get("handle")
        if not handle or computed.get("status") in TERMINAL:
            return computed
        provider = self.providers.get(str(computed.get("compute_provider")))
        computed.update(_status_fields(provider.status(handle)))
        return computed

    def _find_submitted(self, computed: Observed) -> Observed:
        """A run whose apply stopped after recording the intent to submit it and before
        recording its handle (``kill -9``, a crash, a lost machine). Returns it with its handle
        (status ``queued``: the caller reads the real one) when its launcher is found on the
        target; with status ``not_started`` when it never started there; with status ``lost``
        when its target cannot be searched (runs in containers, docker-cluster, third-party
        compute). Waits up to LAUNCH_GRACE seconds for a launcher that was started but has
        not written its status yet. Raises ProviderError if the target cannot be reached."""
        where = computed.get("compute_address") or computed.get("compute_provider")
        expected = computed.pop("expected_handle", None)
        if not isinstance(expected, dict):
            return {
                **computed,
                "status": "lost",
                "message": f"apply was interrupted while submitting it to {where}, where "
                "trainform cannot look runs up: if it started, it runs there unrecorded",
            }
        provider = self.providers.get(str(computed.get("compute_provider")))
        deadline = time.monotonic() + LAUNCH_GRACE
        while True:
            try:
                handle, complete, absent = _launched(provider, expected)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ProviderError(
                    f"looking for run {computed.get('run_id')} on {where}: {exc!r}"
                ) from None
            late = time.monotonic() >= deadline
            if handle is not None and (complete or late):
                return {**computed, "handle": handle, "status": "queued", "message": None}
            if handle is None and (absent or late):
                return {
                    **computed,
                    "status": "not_started",
                    "message": f"never started: apply was interrupted before it was launched "
                    f"on {where}",
                }
            time.sleep(0.25)

    def record(
        self,
        store: StateStore,
        address: str,
        attributes: dict[str, Any],
        computed: dict[str, Any],
        results: dict[str, Any] | None = None,
    ) -> list[str]:
        """The run's row in the run history (its results once it ended; an MLflow export
        that failed is a warning)."""
        from trainform.runs.history import record_run, workspace_of

        if not computed.get("run_id"):
            return []
        return record_run(store, address, workspace_of(attributes), computed, results)

    def settle(
        self, store: StateStore, prior: ResourceState, observed: dict[str, Any]
    ) -> dict[str, Any]:
        """A run that ended unwatched (``--detach``, Ctrl-C, ``runs cancel``, a dead
        launcher): its results collected into the artifact store and its history row
        brought up to date. A run whose target cannot be reached now keeps
        ``outputs_path`` null (so it stays unsettled) and is collected by a later refresh."""
        from trainform.runs.watch import collected_fields

        results = None
        if observed.get("status") in TERMINAL and observed.get("run_id"):
            try:
                results = self.collect(observed)
                observed = {**observed, **collected_fields(results)}
            except TrainformError:
                results = None
        self.record(store, prior.address, prior.attributes, observed, results)
        return observed

    def submitting(self, computed: dict[str, Any]) -> bool:
        return computed.get("status") == "submitting" and not computed.get("handle")

    def adopt(
        self, store: StateStore, prior: ResourceState, observed: dict[str, Any]
    ) -> tuple[ResourceState, str] | None:
        """A run recorded as being submitted (its apply stopped in between), resolved from
        what refresh found (see :meth:`read`): found on its target, it is adopted
        (``ready``, settled if it ended); never started, or on a target that cannot be
        searched, it stays ``pending``, so the plan submits it again."""
        from dataclasses import replace

        if not self.submitting(prior.computed):
            return None
        run = f"run {observed.get('run_id')}"
        if observed.get("handle"):
            computed = self.settle(store, prior, observed)
            new = replace(prior, status="ready", computed=computed)
            note = (
                f"{run} was started by an apply that stopped before recording it; adopted "
                f"({computed.get('status')})"
            )
        elif observed.get("status") in ("not_started", "lost") and observed.get("run_id"):
            self.record(store, prior.address, prior.attributes, observed)
            new = replace(prior, status="pending", computed=observed)
            note = f"{run}: {observed.get('message')}; it will be submitted again"
        else:
            return None
        store.put_resource(new)
        return new, note

    def settled(self, computed: dict[str, Any]) -> bool:
        """A run is settled once it ended and its outputs were collected."""
        return computed.get("status") in TERMINAL and computed.get("outputs_path") is not None

    def create(self, address: str, desired: dict[str, Any]) -> Observed:
        return self.submit_run(address, desired)

    def submit_run(
        self, address: str, desired: dict[str, Any], extra_spec: dict[str, Any] | None = None
    ) -> Observed:
        """Snapshot, store and submit one run; ``extra_spec`` adds launcher spec fields (a
        sweep trial's ``watch_pid``). Returns the run's computed attributes."""
        compute, provider = self._compute(desired)
        inline = None
        if _is_inline(compute):  # created for this run; destroyed when it ends
            inline = {
                "address": f"{address}.compute",
                "type": compute["type"],
                "attributes": compute,
            }
            inline["computed"] = provider.create(inline["address"], compute)
            compute = {**compute, **inline["computed"], "address": inline["address"]}
        try:
            return self._submit(address, desired, compute, provider, inline, extra_spec)
        except BaseException:
            if inline is not None:
                self._release_inline({"inline_compute": inline})
            raise

    def submit_runs(
        self,
        runs: list[tuple[str, dict[str, Any]]],
        extra_spec: dict[str, Any] | None = None,
        at_once: int | None = None,
    ) -> list[Observed]:
        """Submit ``runs`` (address, desired) of one compute together, at most ``at_once``
        running at a time: as one batch through the compute's ``submit_many`` (a compute
        with the BATCH capability, such as a Slurm job array). Returns each run's computed
        attributes, in order. Raises ProviderError for a compute that has no batch form."""
        if not runs:
            return []
        prepared = []
        for address, desired in runs:
            compute, provider = self._compute(desired)
            if BATCH not in provider.capabilities or _is_inline(compute):
                raise ProviderError(
                    f"{address}: compute type {compute.get('type')!r} cannot submit runs as "
                    "one batch"
                )
            prepared.append(self._prepare(address, desired, compute, provider, None, extra_spec))
        handles = provider.submit_many([request for request, _ in prepared], at_once)
        return [
            _queued(computed, handle)
            for (_, computed), handle in zip(prepared, handles, strict=True)
        ]

    def _submit(
        self,
        address: str,
        desired: dict[str, Any],
        compute: dict[str, Any],
        provider: Provider,
        inline: dict[str, Any] | None,
        extra_spec: dict[str, Any] | None,
    ) -> Observed:
        request, computed = self._prepare(address, desired, compute, provider, inline, extra_spec)
        return _queued(computed, provider.submit(request))

    def _prepare(
        self,
        address: str,
        desired: dict[str, Any],
        compute: dict[str, Any],
        provider: Provider,
        inline: dict[str, Any] | None,
        extra_spec: dict[str, Any] | None,
    ) -> tuple[RunRequest, Observed]:
        """Snapshot and store a run's source and build its request and computed attributes
        (status ``submitting``), its intent announced; nothing is started yet."""
        from trainform.runs.snapshot import save_manifest, store_blobs

        snap = self._snapshot(desired)
        manifest = snap.manifest
        store = self.store(desired)
        blobs = store / "snapshots" / "blobs"
        store_blobs(manifest, self._source(desired), blobs)
        save_manifest(manifest, store / "snapshots" / "manifests")
        run_id = new_run_id(address)
        spec = runspec.launcher_spec(run_id, address, desired, self.context.config_dir)
        if desired.get("inputs"):
            spec["inputs"] = data.stage_inputs(
                desired["inputs"],
                self.context.config_dir,
                self.context.data_dir,
                store,
                link=desired.get("input_mode") == "link",
                ssh=self.providers.get("ssh") if data.on_hosts(desired["inputs"]) else None,
            )
            spec["input_args"] = bool(desired.get("input_args"))
        if desired.get("outputs"):
            spec["declared_outputs"] = dict(desired["outputs"])
        spec.update(extra_spec or {})
        if not provider.launcher_here(compute):
            # A pid names a process of this machine only: a launcher elsewhere (an SSH host, a
            # cluster node's container) cannot watch the sweep controller by it.
            spec.pop("watch_pid", None)
        request = RunRequest(
            run_id=run_id,
            address=address,
            compute=compute,
            spec=spec,
            manifest=manifest.to_dict(),
            blob_dir=blobs,
            node_count=int(desired.get("node_count") or 1),
            options=_options(desired, compute),
        )
        computed: Observed = {
            "run_id": run_id,
            "fingerprint": runspec.fingerprint(
                desired, manifest.id, self.context.config_dir, self.context.fingerprint_key
            ),
            "status": "submitting",
            "snapshot_id": manifest.id,
            "snapshot_files": manifest.file_count,
            "handle": None,
            "upload": None,
            "compute_provider": str(compute["type"]),
            "compute_address": compute.get("address"),
            "inline_compute": inline,
            "workspace_path": str(store),
            "experiment": spec["experiment"],
            "environment_hash": spec["environment"]["hash"],
            "image": (spec["environment"].get("docker") or {}).get("image"),
            "git": snap.git,
            "created": stamp(),
            "exit_code": None,
            "outputs_path": None,
            "address": address,
            "declared_outputs": desired.get("outputs") or None,
            "outputs_dir": desired.get("outputs_dir") or "outputs",
        }
        if desired.get("inputs"):
            computed["inputs"] = data.input_summary(desired["inputs"])
        # The intent is recorded before anything starts on the target, so that a run whose
        # apply dies before it records the handle is found there (see _find_submitted).
        announce({**computed, "expected_handle": provider.expected_handle(request)})
        return request, computed

    def fingerprint(self, desired: dict[str, Any]) -> str:
        manifest = self._snapshot(desired).manifest
        return runspec.fingerprint(
            desired, manifest.id, self.context.config_dir, self.context.fingerprint_key
        )

    def delete(self, prior: ResourceState) -> None:
        """Cancel the run if it is still going and wait until it has stopped (the grace
        period plus 10 s at most); its history stays."""
        computed = dict(prior.computed)
        if computed.get("handle") and computed.get("status") not in TERMINAL:
            limit = parse_duration(prior.attributes.get("grace_period") or "10s") + 10
            if self.stop(computed, limit).get("status") not in TERMINAL:
                raise ProviderError(
                    f"{prior.address}: run {computed.get('run_id')} did not stop within "
                    f"{limit:.0f}s of being canceled",
                    address=prior.address,
                )
        self._release_inline(computed)

    def _release_inline(self, computed: dict[str, Any]) -> None:
        """Destroy the compute created for this run alone (idempotent)."""
        inline = computed.get("inline_compute")
        if not inline:
            return
        provider = self.providers.get(str(inline["type"]))
        provider.delete(
            ResourceState(
                address=inline["address"],
                kind="compute",
                name="compute",
                key=None,
                provider=str(inline["type"]),
                attributes=inline["attributes"],
                computed=inline["computed"],
            )
        )

    def stop(self, computed: dict[str, Any], limit: float) -> dict[str, Any]:
        """Cancel a run and wait up to ``limit`` seconds for it to end; return its last
        status fields (not terminal if it did not stop in time)."""
        self.cancel_run(computed)
        deadline = time.monotonic() + limit
        while True:
            status = self.status_of(computed)
            if status.get("status") in TERMINAL or time.monotonic() >= deadline:
                return status
            time.sleep(0.1)

    # -- watching, used by the engine and the `runs` commands
    def _target(self, computed: dict[str, Any]) -> tuple[Provider, Handle]:
        handle = computed.get("handle")
        if not handle:  # its apply stopped before recording the handle (see _find_submitted)
            raise ProviderError(
                f"run {computed.get('run_id')} has not been launched, or its apply stopped "
                f"before recording it (status {computed.get('status')}); `trainform plan` "
                "looks it up on its target"
            )
        return self.providers.get(str(computed.get("compute_provider"))), handle

    def poll(self, computed: dict[str, Any], offset: int) -> tuple[dict[str, Any], bytes, int]:
        """Current status fields, new log bytes since ``offset``, and the next offset."""
        provider, handle = self._target(computed)
        status = _status_fields(provider.status(handle))
        chunk, offset = provider.logs(handle, offset)
        return status, chunk, offset

    def watch(
        self,
        computed: dict[str, Any],
        on_line: Callable[[str], None],
        on_status: Callable[[str, str], None],
        stop: threading.Event,
    ) -> tuple[dict[str, Any], Any, list[str]]:
        """Follow the run to its end (see :func:`trainform.runs.watch.follow`)."""
        from trainform.runs.watch import follow

        # Lines a provider already showed while submitting (an image build over SSH) are
        # not printed twice.
        shown = int((computed.get("handle") or {}).get("log_shown") or 0)
        return follow(self, computed, on_line, on_status, stop, offset=shown)

    def status_of(self, computed: dict[str, Any]) -> dict[str, Any]:
        """Current status fields of a submitted run (as recorded for one not launched)."""
        if not computed.get("handle"):
            return {k: computed[k] for k in ("status", "message") if k in computed}
        provider, handle = self._target(computed)
        return _status_fields(provider.status(handle))

    def read_metrics(self, computed: dict[str, Any], offset: int) -> tuple[bytes, int]:
        """New metric lines of a running run since ``offset``."""
        provider, handle = self._target(computed)
        return provider.metrics(handle, offset)

    def cancel_run(self, computed: dict[str, Any]) -> None:
        """Cancel the run if it is still going (idempotent)."""
        if computed.get("handle") and computed.get("status") not in TERMINAL:
            provider, handle = self._target(computed)
            provider.cancel(handle)

    def collect(self, computed: dict[str, Any]) -> dict[str, Any]:
        """Bring outputs, log, metrics and status into the artifact store; return the run's
        summary (``outputs_path``, ``params``, ``metrics``) and its metric points."""
        from trainform.runs.results import read_results

        provider, handle = self._target(computed)
        store = Path(str(computed["workspace_path"]))
        dest = store / "runs" / str(computed["run_id"])
        provider.fetch_outputs(handle, dest)
        self._release_inline(computed)
        results = read_results(dest)
        # A run that did not complete has no named outputs: expressions reading them stay
        # unknown (its dependents were not started), never an error.
        if computed.get("status") == "completed":
            results["outputs"] = data.collect_outputs(
                computed.get("declared_outputs") or {},
                str(computed.get("outputs_dir") or "outputs"),
                dest / "outputs",
                store,
                {"address": computed.get("address"), "run_id": computed.get("run_id")},
            )
        return results


def _queued(computed: Observed, handle: Handle) -> Observed:
    """A submitted run's computed attributes: queued, with its handle and what was sent."""
    return {**computed, "status": "queued", "handle": handle, "upload": handle.get("upload")}


def map_changes(what: str, before: Any, after: Any) -> str:
    """ "env: A added, B changed" for two maps of (possibly sealed) values, or "" if equal.
    Sensitive values are compared by their salted hash and never shown."""
    from trainform.planner.diff import attribute_changed

    if secrets_.is_sealed(before):  # recorded whole: only a change can be told
        return f"{what} changed" if attribute_changed(before, after) else ""
    old = before if isinstance(before, dict) else {}
    new = after if isinstance(after, dict) else {}
    parts = [f"{k} added" for k in sorted(set(new) - set(old))]
    parts += [f"{k} removed" for k in sorted(set(old) - set(new))]
    parts += [
        f"{k} changed" for k in sorted(set(old) & set(new)) if attribute_changed(old[k], new[k])
    ]
    return f"{what}: {', '.join(parts)}" if parts else ""


def _no_containers(environment: str, ctype: object) -> str:
    """Why a compute type cannot take a run whose environment has a docker block."""
    hint = {
        "docker-cluster": "its nodes are containers already: give the cluster a node_image instead",
    }.get(str(ctype), "use local compute, or an environment without a docker block")
    return (
        f"{environment} runs in a container (it has a docker block), but compute type "
        f"{ctype!r} cannot run containers; {hint}"
    )


OPTION_BLOCKS = ("slurm", "spark")
"""A run's blocks of options for one compute type, each named as the type."""


def _options(desired: dict[str, Any], compute: dict[str, Any]) -> dict[str, Any]:
    """The run's block for its compute's type (``slurm { }``, ``spark { }``), ``{}``
    without one."""
    ctype = compute.get("type")
    return dict(desired.get(ctype) or {}) if ctype in OPTION_BLOCKS else {}


def _is_inline(compute: dict[str, Any]) -> bool:
    """A run's own compute { ... } block, rather than a reference to a compute resource."""
    return not isinstance(compute.get("address"), str)


def _with_defaults(compute: dict[str, Any], provider: Provider) -> dict[str, Any]:
    attrs = provider.schema.user_attributes()
    filled = {k: a.default for k, a in attrs.items()}
    filled.update({k: None for k in provider.schema.blocks})
    filled.update(compute)
    return filled


def _status_fields(status: dict[str, Any]) -> dict[str, Any]:
    # attempts: each attempt of a run its scheduler requeued (slurm requeue = true);
    # spark: a Spark driver's application id and web UI
    keys = (
        "status",
        "exit_code",
        "message",
        "started",
        "finished",
        "environment",
        "attempts",
        "spark",
    )
    return {k: status.get(k) for k in keys if k in status}


# -- submissions cut off between the intent and the handle ---------------------------------

LAUNCH_GRACE = 10.0
"""Seconds a launcher may take from being started to writing its status: a run found with
no status after this long never started."""

NO_PID = (1 << 22) + 1
"""Above Linux's largest pid_max: never a live process (a launcher pid not known yet)."""


def _launched(provider: Provider, expected: Handle) -> tuple[Handle | None, bool, bool]:
    """Look for the launchers of an expected handle through the target's ``status``: the
    handle with their pids (None if none was found), whether every node's was found, and
    whether none can have started (a local run's status file is written before its
    launcher starts, so a local run without one never started)."""
    from trainform.state.locking import process_start_time

    if "nodes" in expected:
        nodes, found = [], 0
        for node in expected["nodes"]:
            seen = provider.status({**expected, "nodes": [{**node, "launcher_pid": NO_PID}]})
            pid = seen.get("launcher_pid")
            ok = isinstance(pid, int) and pid > 0
            found += ok
            nodes.append({**node, "launcher_pid": pid if ok else NO_PID})
        if not found:
            return None, False, False
        return {**expected, "nodes": nodes}, found == len(nodes), False
    seen = provider.status({**expected, "launcher_pid": NO_PID, "launcher_start": ""})
    pid = seen.get("launcher_pid")
    if isinstance(pid, int) and pid > 0:
        handle = {**expected, "launcher_pid": pid, "launcher_start": process_start_time(pid)}
        return handle, True, False
    return None, False, "host" not in seen
