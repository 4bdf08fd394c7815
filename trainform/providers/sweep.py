"""Sweeps as resources: validate the search space and policy at plan time, fingerprint
template + space + policy + limits, and hand the work to the controller."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainform.config.schema import SWEEP
from trainform.errors import ProviderError, TrainformError
from trainform.providers.base import (
    SENSITIVE_PATHS,
    TERMINAL,
    Observed,
    PlanValues,
    ResourceState,
)
from trainform.providers.run import WorkProvider, new_run_id
from trainform.runs import inputs as data
from trainform.runs import spec as runspec
from trainform.runs.history import stamp, workspace_of
from trainform.state.locking import process_alive, process_start_time
from trainform.units import parse_duration


class SweepProvider(WorkProvider):
    """Manages ``sweep`` blocks; the trials are runs submitted through the run provider."""

    name = "sweep"
    kind = "sweep"
    schema = SWEEP
    ident = "sweep_id"

    def outcome(self, computed: dict[str, Any], results: Any, tail: list[str]) -> str:
        if results is None or computed.get("status") == "completed":
            return ""
        return (
            f"sweep {computed.get('sweep_id')} {computed.get('status')}: {computed.get('message')}"
        )

    # -- what the sweep is
    def settings(self, desired: dict[str, Any]) -> dict[str, Any]:
        """Space, sampling, objective, policy and limits, from the blocks or from a
        HyperDrive file. Raises ProviderError with a clear message."""
        from trainform.sweep.space import SweepSpecError

        try:
            if desired.get("hyperdrive_config"):
                return self._from_hyperdrive(str(desired["hyperdrive_config"]))
            return self._from_blocks(desired)
        except SweepSpecError as exc:
            raise ProviderError(str(exc)) from None

    def _from_blocks(self, desired: dict[str, Any]) -> dict[str, Any]:
        from trainform.sweep.space import SweepSpecError

        params = desired.get("parameter") or {}
        if not params:
            raise SweepSpecError('a sweep needs at least one parameter "NAME" { ... } block')
        objective = desired.get("objective")
        if not objective:
            raise SweepSpecError("a sweep needs objective { metric = ..., goal = ... }")
        sampling = desired.get("sampling") or {}
        policy = dict(desired.get("early_termination") or {})
        limits = desired.get("limits") or {}
        name = policy.pop("policy", "none") or "none"
        args = {k: v for k, v in policy.items() if v is not None}
        if name == "none":
            args = {}
        return {
            "parameters": [
                {"name": n, "attrs": {k: v for k, v in a.items() if v is not None}}
                for n, a in sorted(params.items())
            ],
            "sampling": {
                "algorithm": sampling.get("algorithm") or "random",
                "seed": sampling.get("seed"),
            },
            "objective": {
                "metric": objective["metric"],
                "goal": objective.get("goal") or "maximize",
            },
            "policy": {"name": name, "args": args},
            "limits": self._limits(
                limits.get("max_total_runs"),
                limits.get("max_concurrent_runs"),
                limits.get("max_duration"),
                limits.get("trial_max_duration"),
            ),
        }

    def _from_hyperdrive(self, path: str) -> dict[str, Any]:
        from trainform.sweep.hyperdrive import load_hyperdrive

        try:
            text = (self.context.config_dir / path).read_text()
        except OSError as exc:
            raise ProviderError(f"hyperdrive_config {path!r}: {exc.strerror}") from None
        hd = load_hyperdrive(text)
        return {
            "parameters": [
                {"name": p.name, "attrs": {"distribution": p.distribution, **p.args}}
                for p in hd.space.parameters
            ],
            "sampling": {"algorithm": hd.sampling, "seed": hd.seed},
            "objective": {"metric": hd.primary_metric_name, "goal": hd.primary_metric_goal},
            "policy": {"name": hd.policy, "args": dict(hd.policy_args)},
            "limits": self._limits(
                hd.max_total_runs,
                hd.max_concurrent_runs,
                hd.max_duration_minutes * 60 if hd.max_duration_minutes else None,
                None,
            ),
        }

    @staticmethod
    def _limits(total: Any, concurrent: Any, duration: Any, trial: Any) -> dict[str, Any]:
        return {
            "max_total_runs": int(total) if total else 20,
            "max_concurrent_runs": int(concurrent) if concurrent else 1,
            "max_duration": parse_duration(duration) if duration else None,
            "trial_max_duration": trial or None,
        }

    def _check(self, settings: dict[str, Any]) -> None:
        """Build the sampler and policy once, so mistakes surface at plan time."""
        from trainform.sweep.policies import make_policy
        from trainform.sweep.samplers import make_sampler
        from trainform.sweep.space import SearchSpace, SweepSpecError, parameter_from_block

        try:
            space = SearchSpace(
                tuple(parameter_from_block(p["name"], p["attrs"]) for p in settings["parameters"])
            )
            space.validate()
            make_sampler(
                settings["sampling"]["algorithm"],
                space,
                settings["sampling"]["seed"],
                settings["objective"]["goal"],
            )
            make_policy(settings["policy"]["name"], **settings["policy"]["args"])
        except SweepSpecError as exc:
            raise ProviderError(str(exc)) from None

    def _trial(self, desired: dict[str, Any]) -> dict[str, Any]:
        trial = dict(desired.get("trial") or {})
        if not trial:
            raise ProviderError("a sweep needs a trial { compute = ..., script = ... } block")
        trial.setdefault("arguments", [])
        # the sweep's sensitive paths under trial, for the trials' fingerprints
        paths = [str(p) for p in desired.get(SENSITIVE_PATHS) or ()]
        inner = [p[len("trial.") :] for p in paths if p.startswith("trial.")]
        inner += [""] if "trial" in paths else []
        if inner:
            trial[SENSITIVE_PATHS] = sorted(inner)
        return trial

    def validate(self, address: str, desired: dict[str, Any]) -> list[str]:
        try:
            trial = self._trial(desired)
            settings = self.settings(desired)
            self._check(settings)
        except TrainformError as exc:
            return [str(exc)]
        run = self.providers.get("run")
        problems = [f"trial: {p}" for p in run.validate(address, {**trial, "experiment": "x"})]
        if desired.get("slurm_array"):
            problems += self._batch_problems(settings, trial)
        return problems

    def _batch_problems(self, settings: dict[str, Any], trial: dict[str, Any]) -> list[str]:
        """Why the trials cannot be submitted as one batch (``slurm_array = true``): a batch
        is submitted whole, so every trial must be known before any reports (grid sampling,
        or random sampling that no policy steers), and the compute must take batches."""
        from trainform.providers.base import BATCH

        problems = []
        algorithm, policy = settings["sampling"]["algorithm"], settings["policy"]["name"]
        if algorithm == "random" and policy != "none":
            problems.append(
                f"slurm_array = true with random sampling cannot use early_termination policy "
                f"{policy!r}: use grid sampling, no policy, or slurm_array = false (one job "
                "per trial)"
            )
        elif algorithm not in ("grid", "random"):
            problems.append(
                f"slurm_array = true needs grid or random sampling, not {algorithm!r}, which "
                "picks each trial from the results of earlier ones; use slurm_array = false"
            )
        compute = trial.get("compute")
        if isinstance(compute, dict) and isinstance(compute.get("type"), str):
            try:
                capabilities = self.providers.get(compute["type"]).capabilities
            except TrainformError:
                return problems  # the trial's own validation names the unknown type
            if BATCH not in capabilities:
                problems.append(
                    f"slurm_array = true needs a compute of type 'slurm', not {compute['type']!r}"
                )
        return problems

    def parameter_flags(self, desired: dict[str, Any]) -> dict[str, str | None]:
        """The flag each parameter reaches the script with (None: only where the template
        places it): see :func:`trainform.sweep.controller.parameter_flags`."""
        from trainform.sweep.controller import parameter_flags

        names = [p["name"] for p in self.settings(desired)["parameters"]]
        return parameter_flags(
            names, self._trial(desired), hyperdrive=bool(desired.get("hyperdrive_config"))
        )

    def fingerprint(self, desired: dict[str, Any]) -> str:
        from trainform.sweep.controller import legacy_flags

        snapshot_id = self._snapshot_id(desired)
        trial = self._trial(desired)
        data: dict[str, Any] = {
            "run": runspec.fingerprint(
                trial, snapshot_id, self.context.config_dir, self.context.fingerprint_key
            ),
            "settings": self.settings(desired),
            "experiment": desired.get("experiment"),
        }
        flags = self.parameter_flags(desired)
        # Only where the arguments differ from what earlier versions passed (dashed names
        # only), so that every other recorded sweep stays up to date.
        if flags != legacy_flags(list(flags)):
            data["parameter_flags"] = flags
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()

    def _snapshot_id(self, desired: dict[str, Any]) -> str:
        run = self.providers.get("run")
        return str(run._snapshot(self._trial(desired)).manifest.id)  # type: ignore[attr-defined]

    def plan_values(
        self, address: str, desired: dict[str, Any], prior: ResourceState | None
    ) -> PlanValues:
        trial = desired.get("trial") or {}
        before = ((prior.attributes.get("trial") or {}) if prior is not None else {}).get("inputs")
        assumed, pending = data.assume_unchanged(trial.get("inputs"), before)
        if pending and prior is not None:  # see RunProvider.plan_values
            desired = {**desired, "trial": {**trial, "inputs": assumed}}
        fp = self.fingerprint(desired)
        if pending and (prior is None or prior.computed.get("fingerprint") == fp):
            return PlanValues({}, (data.awaiting_reason(pending, before),), awaits=tuple(pending))
        reasons: list[str] = []
        if prior is not None and prior.computed.get("fingerprint") not in (None, fp):
            if prior.computed.get("settings") != json.loads(
                json.dumps(self.settings(desired), default=str)
            ):
                reasons.append("the search space, policy, objective or limits changed")
            if prior.computed.get("run_fingerprint") != runspec.fingerprint(
                self._trial(desired),
                self._snapshot_id(desired),
                self.context.config_dir,
                self.context.fingerprint_key,
            ):
                reasons.append("the trial template or its source changed")
            from trainform.sweep.controller import legacy_flags

            flags = self.parameter_flags(desired)
            before = prior.computed.get("parameter_flags") or legacy_flags(list(flags))
            if not reasons and before != flags:
                passed = [f for f in flags.values() if f]
                reasons.append(
                    "the parameters now reach the script as arguments "
                    + (" ".join(f"{f} VALUE" for f in passed) if passed else "only where placed")
                )
        return PlanValues({"fingerprint": fp}, tuple(reasons))

    # -- lifecycle
    def settled(self, computed: dict[str, Any]) -> bool:
        return computed.get("status") in TERMINAL

    def read(self, resource: ResourceState) -> Observed | None:
        computed = dict(resource.computed)
        if computed.get("status") in TERMINAL or not computed.get("status_file"):
            return computed
        try:
            status = json.loads(Path(computed["status_file"]).read_text())
        except (OSError, json.JSONDecodeError):
            status = {}
        computed.update(
            {
                k: status[k]
                for k in ("status", "message", "best_trial", "best_value", "best_params")
                if k in status
            }
        )
        pid = status.get("controller_pid") or computed.get("controller_pid")
        if computed.get("status") not in TERMINAL and pid and not process_alive(int(pid), ""):
            computed["status"] = "lost"
            computed["message"] = f"the sweep controller (pid {pid}) ended before the sweep did"
        return computed

    def create(self, address: str, desired: dict[str, Any]) -> Observed:
        trial = self._trial(desired)
        settings = self.settings(desired)
        snapshot_id = self._snapshot_id(desired)
        sweep_id = new_run_id(address)
        folder = self.context.data_dir / "sweeps" / sweep_id
        folder.mkdir(parents=True, exist_ok=True)
        run = self.providers.get("run")
        workspace = desired.get("workspace")
        spec = {
            "sweep_id": sweep_id,
            "address": address,
            "experiment": desired["experiment"],
            "created": stamp(),
            "fingerprint": self.fingerprint(desired),
            "trial": trial,
            **settings,
            "workspace": workspace,
            "workspace_address": workspace_of(desired),
            "config_dir": str(self.context.config_dir),
            "data_dir": str(self.context.data_dir),
            "state": self._state_location(),
            "status_file": str(folder / "status.json"),
            "parameter_flags": self.parameter_flags(desired),
            # every trial submitted at once as one batch (a job array), not one at a time
            "batch": bool(desired.get("slurm_array")),
        }
        (folder / "spec.json").write_text(json.dumps(spec, indent=1, default=str))
        (folder / "status.json").write_text(json.dumps({"status": "queued"}))
        return {
            "sweep_id": sweep_id,
            "status": "queued",
            "fingerprint": spec["fingerprint"],
            "run_fingerprint": runspec.fingerprint(
                trial, snapshot_id, self.context.config_dir, self.context.fingerprint_key
            ),
            "settings": json.loads(json.dumps(settings, default=str)),
            "parameter_flags": spec["parameter_flags"],
            "spec_path": str(folder / "spec.json"),
            "status_file": str(folder / "status.json"),
            "experiment": desired["experiment"],
            "store": str(run.store(desired)),  # type: ignore[attr-defined]
        }

    def watch(
        self,
        computed: dict[str, Any],
        on_line: Callable[[str], None],
        on_status: Callable[[str, str], None],
        stop: threading.Event,
    ) -> tuple[dict[str, Any], Any, list[str]]:
        """Run the controller in this process until the sweep ends (or ``stop``: the trials
        are then canceled). Returns the updated computed attributes."""
        from trainform.state.backend import open_location
        from trainform.sweep.controller import Controller, state_location

        spec = json.loads(Path(computed["spec_path"]).read_text())
        store = open_location(state_location(spec))
        try:
            on_status("running", "")
            Controller(spec, store, stop, lambda kind, text: on_line(text)).run()
        finally:
            store.close()
        return (
            self.read(ResourceState("", "sweep", "", None, "sweep", computed=computed)) or computed,
            True,
            [],
        )

    def _state_location(self) -> dict[str, str]:
        """Where the controller records trials: this workspace's state, with no secret in it
        (a pg connection string reaches the controller in its environment: see detach)."""
        from trainform.state.backend import location

        if self.context.backend is None:  # a provider made without state (tests, tools)
            return {"kind": "sqlite", "path": str(self.context.data_dir / "state.db")}
        return location(self.context.backend, self.context.workspace)

    def detach(self, computed: dict[str, Any]) -> dict[str, Any]:
        """Start the controller as a background process; record its pid. A pg connection
        string is passed in its environment, never in the spec file."""
        from trainform.state.backend import child_environment

        log = Path(computed["spec_path"]).with_name("controller.log")
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "trainform.sweep.controller", computed["spec_path"]],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                cwd=self.context.config_dir,
                env=child_environment(self.context.backend) if self.context.backend else None,
            )
        return {
            **computed,
            "status": "running",
            "controller_pid": proc.pid,
            "controller_start": process_start_time(proc.pid),
        }

    def delete(self, prior: ResourceState) -> None:
        """Stop the controller, which cancels its running trials; wait for it."""
        self.cancel_sweep(prior.computed)

    def cancel_sweep(self, computed: dict[str, Any]) -> None:
        current = self.read(ResourceState("", "sweep", "", None, "sweep", computed=computed)) or {}
        if current.get("status") in TERMINAL or not computed.get("status_file"):
            return
        status = json.loads(Path(computed["status_file"]).read_text())
        pid = status.get("controller_pid") or computed.get("controller_pid")
        if pid and int(pid) != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and process_alive(int(pid), ""):
                time.sleep(0.1)
