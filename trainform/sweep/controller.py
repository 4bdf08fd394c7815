"""The sweep controller: launches trials up to the concurrency limit, reads their metrics as
they report them, applies the early-termination policy, cancels stopped trials, and records
every decision with its reason.

It runs inside ``apply`` (the engine's watch phase) or, with ``--detach``, as a background
process (``python -m trainform.sweep.controller SPEC``) whose pid is recorded. Trials watch
the controller's pid: if the controller dies, even by SIGKILL, its trials cancel themselves.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from trainform.config.schema import did_you_mean
from trainform.config.values import PARAM_MARK, substitute_params
from trainform.errors import TrainformError
from trainform.providers.base import TERMINAL, ProviderContext
from trainform.providers.registry import Providers
from trainform.providers.run import RunProvider
from trainform.runs.history import record_run, stamp
from trainform.runs.metrics_stream import MetricsStream
from trainform.runs.results import read_points
from trainform.runs.spec import argument_string
from trainform.runs.watch import collected_fields
from trainform.state.backend import open_location
from trainform.state.store import StateStore

TICK_SECONDS = 0.2
# The names a trial reported, remembered to say which metrics it did report: bounded, as the
# stream is the script's to write.
MAX_METRIC_NAMES = 1000
# Trial statuses that count as failures; "canceled" and "stopped" are the sweep's own doing.
FAILED = ("failed", "timed_out", "lost")
_MARKER = re.compile(re.escape(PARAM_MARK) + "(.*?)\x00", re.DOTALL)


@dataclass
class Trial:
    index: int
    params: dict[str, Any]
    computed: dict[str, Any]
    stream: MetricsStream
    reports: list[tuple[int, float]] = field(default_factory=list)
    status: str = "queued"
    stopped: str = ""  # why the policy stopped it
    failure: str = ""  # why it failed: its status, message and last log line
    metric_names: set[str] = field(default_factory=set)  # every metric it reported

    @property
    def run_id(self) -> str:
        return str(self.computed["run_id"])

    def best(self, goal: str) -> float | None:
        values = [v for _, v in self.reports]
        if not values:
            return None
        return max(values) if goal == "maximize" else min(values)

    def summary(self, goal: str) -> dict[str, Any]:
        return {
            "index": self.index,
            "run_id": self.run_id,
            "params": self.params,
            "status": self.status,
            "best": self.best(goal),
            "last": self.reports[-1][1] if self.reports else None,
            "reports": len(self.reports),
            "stopped": self.stopped,
            **({"failure": self.failure} if self.failure else {}),
        }


def placed_parameters(template: Any) -> set[str]:
    """The parameters a trial template places itself (``param.lr`` anywhere in it)."""
    found: set[str] = set()
    if isinstance(template, str):
        found.update(_MARKER.findall(template))
    elif isinstance(template, list):
        for item in template:
            found |= placed_parameters(item)
    elif isinstance(template, dict):
        for item in template.values():
            found |= placed_parameters(item)
    return found


def parameter_flags(
    names: list[str], template: dict[str, Any], *, hyperdrive: bool
) -> dict[str, str | None]:
    """The flag each parameter is passed to the script with, or None for a parameter that is
    not added to the arguments.

    A name written with dashes (``--lr``, ``-x``) is passed as written. A name without them
    is passed as ``--NAME`` when it comes from a HyperDrive file, as Azure ML does (its
    samples name ``learning_rate`` and parse ``--learning_rate``); in a ``parameter`` block it
    reaches the script where the template places it (``param.lr``). A parameter the template
    places itself is not added again."""
    placed = placed_parameters(template)
    flags: dict[str, str | None] = {}
    for name in names:
        if name in placed:
            flags[name] = None
        elif name.startswith("-"):
            flags[name] = name
        else:
            flags[name] = f"--{name}" if hyperdrive else None
    return flags


def legacy_flags(names: list[str]) -> dict[str, str | None]:
    """The flags of sweeps submitted before :func:`parameter_flags`: dashed names only."""
    return {n: (n if n.startswith("-") else None) for n in names}


def parameters_args(params: dict[str, Any], flags: dict[str, str | None]) -> list[str]:
    """``--flag VALUE`` for each parameter that has a flag (see :func:`parameter_flags`),
    the value written as a run's arguments are."""
    out: list[str] = []
    for name, value in params.items():
        flag = flags.get(name)
        if flag:
            out.extend([flag, argument_string(value)])
    return out


def trial_values(template: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A trial's run attributes: the template with each parameter's value in place, then
    converted to the types the attributes take, as a run block's are when it is read. So
    ``command = ["python", "t.py", "--C", param.C]`` gets ``"0.1"``, not 0.1, and a value
    inside a string is written as HCL writes it (``"v${param.fast}"`` -> ``"vtrue"``)."""
    from trainform.config.schema import SWEEP, check_type

    texts = {k: argument_string(v) for k, v in params.items()}

    def put(value: Any) -> Any:
        if isinstance(value, str):
            whole = _MARKER.fullmatch(value)
            if whole and whole.group(1) in params:
                return params[whole.group(1)]  # keeps its type until the conversion below
            return substitute_params(value, texts)
        if isinstance(value, list):
            return [put(v) for v in value]
        if isinstance(value, dict):
            return {k: put(v) for k, v in value.items()}
        return value

    desired = put(template)
    attributes = SWEEP.blocks["trial"].schema.attributes
    for key, value in list(desired.items()):
        attribute = attributes.get(key)
        if attribute is None or attribute.type in ("any", "list", "map"):
            continue
        converted, problem = check_type(value, attribute.type)
        if problem:
            raise TrainformError(f"trial {key}: {problem}")
        desired[key] = converted
    return desired


def env_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() else "_" for c in name.lstrip("-")).upper()
    return f"TRAINFORM_PARAM_{cleaned}"


class Controller:
    """Drives one sweep to its end. ``spec`` is the JSON written when the sweep was
    submitted (see SweepProvider). Never prints; reports through ``on_event(kind, text)``."""

    def __init__(
        self,
        spec: dict[str, Any],
        store: StateStore,
        stop: threading.Event,
        on_event: Callable[[str, str], None] = lambda kind, text: None,
    ) -> None:
        from trainform.sweep.policies import make_policy
        from trainform.sweep.samplers import make_sampler
        from trainform.sweep.space import SearchSpace, parameter_from_block

        self.spec = spec
        self.store = store
        self.stop = stop
        self.on_event = on_event
        self.goal = spec["objective"]["goal"]
        self.metric = spec["objective"]["metric"]
        space = SearchSpace(
            tuple(parameter_from_block(p["name"], p["attrs"]) for p in spec["parameters"])
        )
        self.sampler = make_sampler(
            spec["sampling"]["algorithm"], space, spec["sampling"].get("seed"), self.goal
        )
        self.policy = make_policy(spec["policy"]["name"], **spec["policy"]["args"])
        context = ProviderContext(
            Path(spec["config_dir"]),
            Path(spec["data_dir"]),
            fingerprint_key=store.fingerprint_key,  # thread-safe (the store's contract)
        )
        self.runs = cast(RunProvider, Providers(context).get("run"))
        names = [p["name"] for p in spec["parameters"]]
        # A spec written before parameter_flags existed keeps the rule it was written with.
        self.flags: dict[str, str | None] = spec.get("parameter_flags") or legacy_flags(names)
        self.trials: list[Trial] = []
        self.finished: list[Trial] = []  # in the order they ended
        self.decisions: list[dict[str, Any]] = []
        self.status = "running"
        self.message = ""

    # -- bookkeeping
    def _record(self, finished: bool = False) -> None:
        best = self.best_trial()
        record = {
            "experiment": self.spec["experiment"],
            "objective": self.spec["objective"],
            "sampling": self.spec["sampling"],
            "policy": self.spec["policy"],
            "limits": self.spec["limits"],
            "controller_pid": os.getpid(),
            "trials": [t.summary(self.goal) for t in self.trials],
            "decisions": self.decisions,
            "best": best.summary(self.goal) if best else None,
            "message": self.message,
        }
        self.store.put_sweep(
            {
                "id": self.spec["sweep_id"],
                "address": self.spec["address"],
                "status": self.status,
                "fingerprint": self.spec["fingerprint"],
                "created": self.spec["created"],
                "finished": stamp() if finished else None,
                "record": record,
            }
        )
        status_file = Path(self.spec["status_file"])
        tmp = status_file.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "status": self.status,
                    "message": self.message,
                    "controller_pid": os.getpid(),
                    "best_trial": best.run_id if best else None,
                    "best_value": best.best(self.goal) if best else None,
                    "best_params": best.params if best else None,
                    "trials": len(self.trials),
                }
            )
        )
        tmp.replace(status_file)

    def best_trial(self) -> Trial | None:
        scored = [t for t in self.trials if t.best(self.goal) is not None]
        if not scored:
            return None
        key = (
            (lambda t: t.best(self.goal))
            if self.goal == "maximize"
            else (lambda t: -(t.best(self.goal) or 0.0))
        )
        return max(scored, key=key)

    def _decide(self, trial: Trial, action: str, reason: str) -> None:
        self.decisions.append(
            {
                "time": stamp(),
                "trial": trial.index,
                "run_id": trial.run_id,
                "action": action,
                "reason": reason,
            }
        )
        self.on_event("decision", f"trial {trial.index} ({trial.run_id}): {action}: {reason}")

    # -- trials
    def _launch(self, index: int, params: dict[str, Any]) -> Trial:
        address, desired = self._trial_run(index, params)
        computed = self.runs.submit_run(address, desired, {"watch_pid": os.getpid()})
        return self._started(index, params, computed)

    def _launch_batch(self, max_total: int, at_once: int) -> list[Trial]:
        """Every trial the sampler gives (up to ``max_total``), submitted as one batch that
        runs ``at_once`` of them at a time (spec ``batch``: the compute's ``submit_many``,
        a Slurm job array). The sampler must not depend on results (checked at plan time)."""
        wanted: list[dict[str, Any]] = []
        while len(wanted) < max_total:
            params = self.sampler.suggest(len(wanted))
            if params is None:
                break
            wanted.append(params)
        runs = [self._trial_run(i, params) for i, params in enumerate(wanted)]
        submitted = self.runs.submit_runs(runs, {"watch_pid": os.getpid()}, at_once)
        return [
            self._started(i, params, computed)
            for i, (params, computed) in enumerate(zip(wanted, submitted, strict=True))
        ]

    def _trial_run(self, index: int, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The address and run attributes of trial ``index`` with ``params``."""
        desired = trial_values(self.spec["trial"], params)
        desired["env"] = {
            **(desired.get("env") or {}),
            **{env_name(k): argument_string(v) for k, v in params.items()},
        }
        desired["arguments"] = [
            *(desired.get("arguments") or []),
            *parameters_args(params, self.flags),
        ]
        desired["experiment"] = self.spec["experiment"]
        desired["workspace"] = self.spec["workspace"]
        if self.spec["limits"].get("trial_max_duration"):
            desired["max_duration"] = self.spec["limits"]["trial_max_duration"]
        return f"{self.spec['address']}[{index}]", desired

    def _started(self, index: int, params: dict[str, Any], computed: dict[str, Any]) -> Trial:
        """Record a submitted trial."""
        address = f"{self.spec['address']}[{index}]"
        computed["sweep_id"] = self.spec["sweep_id"]
        trial = Trial(index, params, computed, MetricsStream(self.runs, computed), status="queued")
        record_run(self.store, address, self.spec["workspace_address"], computed)
        self.on_event("trial", f"trial {index} started as {trial.run_id} with {_fmt(params)}")
        return trial

    def _read_reports(self, trial: Trial) -> bool:
        """New primary-metric reports of a trial; True if there were any."""
        points, _ = trial.stream.read()
        new = False
        for point in points:
            if len(trial.metric_names) < MAX_METRIC_NAMES:
                trial.metric_names.add(point["name"][:100])
            if point["name"] != self.metric or point["value"] is None:
                continue
            step = point["step"]
            trial.reports.append(
                (step if step is not None else len(trial.reports) + 1, point["value"])
            )
            new = True
        return new

    def _apply_policy(self, trial: Trial) -> None:
        history = {t.run_id: t.reports for t in self.trials}
        stop, reason = self.policy.should_stop(trial.run_id, history, self.goal)
        if stop:
            trial.stopped = reason
            self._decide(trial, "stop", f"{self.metric}: {reason}")
            self.runs.cancel_run(trial.computed)

    def _finish_trial(self, trial: Trial) -> None:
        results = self.runs.collect(trial.computed)
        trial.computed.update(collected_fields(results))
        for warning in record_run(
            self.store,
            f"{self.spec['address']}[{trial.index}]",
            self.spec["workspace_address"],
            trial.computed,
            results,
        ):
            self.on_event("warning", f"trial {trial.index}: {warning}")  # an MLflow export
        run_dir = Path(results["outputs_path"]).parent
        trial.metric_names.update(str(p["name"])[:100] for p in results.get("points") or [])
        if trial.status in FAILED:
            trial.failure = _failure(trial, run_dir / "output.log")
        self.finished.append(trial)
        if not trial.reports:  # a last look at what it reported
            points, _ = read_points(run_dir / "metrics.jsonl")
            trial.reports = [
                (int(p["step"]) if isinstance(p.get("step"), int) else i + 1, float(p["value"]))
                for i, p in enumerate(points)
                if p["name"] == self.metric and isinstance(p.get("value"), (int, float))
            ]
        if trial.stopped and trial.status == "canceled":
            trial.status = "stopped"
        value = trial.best(self.goal)
        self.sampler.observe(trial.params, value)
        self.on_event(
            "trial",
            f"trial {trial.index} {trial.status}"
            + (f", best {self.metric} {value:.6g}" if value is not None else ""),
        )

    # -- the loop
    def run(self) -> str:
        """Drive the sweep to its end; return its final status."""
        limits = self.spec["limits"]
        max_total = int(limits.get("max_total_runs") or 20)
        max_concurrent = max(1, int(limits.get("max_concurrent_runs") or 1))
        deadline = (
            time.monotonic() + float(limits["max_duration"]) if limits.get("max_duration") else None
        )
        exhausted = False
        self._record()
        try:
            if self.spec.get("batch"):
                self.trials = self._launch_batch(max_total, max_concurrent)
                exhausted = True
                self._record()
            while True:
                running = [
                    t for t in self.trials if t.status not in TERMINAL and t.status != "stopped"
                ]
                if self.stop.is_set():
                    self.status, self.message = "canceled", "canceled by the user"
                    self._cancel_all(running)
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    reached = f"max_duration ({limits['max_duration']}s) reached"
                    self.on_event("sweep", reached)
                    self._cancel_all(running)
                    self.status, verdict = self.verdict()
                    self.message = f"{reached}; {verdict}"
                    break
                while (
                    not exhausted and len(running) < max_concurrent and len(self.trials) < max_total
                ):
                    params = self.sampler.suggest(len(self.trials))
                    if params is None:
                        exhausted = True
                        break
                    trial = self._launch(len(self.trials), params)
                    self.trials.append(trial)
                    running.append(trial)
                    self._record()
                for trial in running:
                    if self._read_reports(trial) and not trial.stopped:
                        self._apply_policy(trial)
                    status = self.runs.status_of(trial.computed)
                    trial.computed.update(status)
                    if status.get("status") in TERMINAL:
                        trial.status = str(status["status"])
                        self._read_reports(trial)
                        self._finish_trial(trial)
                        self._record()
                    else:
                        trial.status = str(status.get("status"))
                if not running and (exhausted or len(self.trials) >= max_total):
                    self.status, self.message = self.verdict()
                    break
                time.sleep(TICK_SECONDS)
        except TrainformError as exc:
            self.status, self.message = "failed", str(exc)
            self._cancel_all([t for t in self.trials if t.status not in TERMINAL])
        self._record(finished=True)
        self.on_event("sweep", f"sweep {self.status}: {self.message}")
        return self.status

    def verdict(self) -> tuple[str, str]:
        """The status and message of a sweep whose trials have ended: "failed" when every
        trial failed or none reported the primary metric (there is no best trial to use),
        else "completed" with the best trial."""
        if not self.trials:
            return "failed", "no trial ran"
        failed = [t for t in self.finished if t.status in FAILED]
        if len(failed) == len(self.trials):
            count = "the only trial" if len(failed) == 1 else f"all {len(failed)} trials"
            last = "" if len(failed) == 1 else "; the last one"
            return "failed", f"{count} failed{last}: {failed[-1].failure}"
        best = self.best_trial()
        if best is None:
            names = sorted(set().union(*(t.metric_names for t in self.trials)))
            reported = (
                f"trials reported: {', '.join(names)}" if names else "trials reported no metrics"
            )
            hint = did_you_mean(self.metric, names)
            return "failed", (
                f"no trial reported the primary metric '{self.metric}' ({reported})"
                + (f"; {hint}" if hint else "")
            )
        message = (
            f"best trial {best.index} ({best.run_id}): {self.metric} = "
            f"{best.best(self.goal):.6g} with {_fmt(best.params)}"
        )
        if failed:
            message += f" ({len(failed)} of {len(self.trials)} trials failed)"
        return "completed", message

    def _cancel_all(self, trials: list[Trial]) -> None:
        for trial in trials:
            self.runs.cancel_run(trial.computed)
        deadline = time.monotonic() + 30
        for trial in trials:
            while time.monotonic() < deadline:
                status = self.runs.status_of(trial.computed)
                if status.get("status") in TERMINAL:
                    trial.computed.update(status)
                    trial.status = str(status["status"])
                    break
                time.sleep(0.1)
            self._finish_trial(trial)


def _fmt(params: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def _failure(trial: Trial, log: Path) -> str:
    """``run ID failed (exit code 1): LAST LOG LINE``: what a person needs to see first."""
    what = f"run {trial.run_id} {trial.status}"
    message = str(trial.computed.get("message") or "")
    if message and message != trial.status:
        what += f" ({message[:300]})"
    line = _last_line(log)
    return f"{what}: {line}" if line else what


def _last_line(log: Path, limit: int = 16384) -> str:
    """The log's last line of the script's own output (not trainform's), shortened; the log
    comes from the target, so only its end is read."""
    try:
        with log.open("rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - limit))
            data = f.read(limit)
    except OSError:
        return ""
    for raw in reversed(data.decode("utf-8", errors="replace").splitlines()):
        line = "".join(c for c in raw if c.isprintable()).strip()
        if line and not line.startswith("[trainform]"):
            return line if len(line) <= 300 else line[:299] + "…"
    return ""


def main(argv: list[str]) -> int:
    """Background controller: ``python -m trainform.sweep.controller SPEC_FILE``. SIGTERM
    cancels the sweep (and every running trial)."""
    spec = json.loads(Path(argv[0]).read_text())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    store = open_location(state_location(spec))
    try:
        status = Controller(spec, store, stop).run()
    finally:
        store.close()
    return 0 if status == "completed" else 1


def state_location(spec: dict[str, Any]) -> dict[str, str]:
    """Where the sweep's state is (trainform.state.backend.location); a spec written before
    backends names only an SQLite file."""
    return spec.get("state") or {"kind": "sqlite", "path": spec["state_path"]}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
