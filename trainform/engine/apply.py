"""The engine: applies a :class:`Plan` by walking its changes in dependency order, in
parallel, calling providers, and persisting every completed change before its dependents
start. Providers run in worker threads; state is written only from the calling thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

from trainform.config.address import config_block_of, selects
from trainform.config.evaluate import Evaluator
from trainform.config.model import Evaluated, Instance
from trainform.config.values import UNKNOWN, is_unknown
from trainform.engine import refactor
from trainform.engine.recorded import resource_state
from trainform.errors import ProviderError, TrainformError
from trainform.planner.types import DELETE, Change, Plan
from trainform.providers.base import (
    AWAITED,
    TERMINAL,
    ResourceState,
    awaited_values,
    recording_intents,
    reporting,
    with_sensitive_paths,
)
from trainform.providers.registry import Providers
from trainform.state import secrets
from trainform.state.store import StateStore


@dataclass(frozen=True)
class Event:
    """Progress of one change, for the CLI to show: start, done, failed, skipped, submitted,
    status, log, progress (what a provider reports during a long create), warning (what
    went wrong beside the change, such as exporting a finished run to MLflow)."""

    kind: str
    change: Change
    elapsed: float = 0.0
    message: str = ""


@dataclass
class ApplyResult:
    succeeded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)
    interrupted: bool = False
    detached: list[str] = field(default_factory=list)  # runs left running (Ctrl-C, --detach)
    # changes that waited on others and were not needed after all (a run whose inputs came
    # out unchanged)
    reused: list[str] = field(default_factory=list)
    # work an earlier apply left going that this one waited for (its dependents read it)
    awaited: list[str] = field(default_factory=list)
    # skipped change -> the failed change it depended on
    skipped_because: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    check_warnings: list[str] = field(default_factory=list)  # check blocks, after apply

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped and not self.interrupted


def _order(changes: list[Change]) -> dict[str, set[str]]:
    """change address -> addresses of changes that must finish first."""
    # A dependency names a block inside a module instance (module.team["a"].compute.box);
    # a keyless module step in it stands for every instance of that module.
    by_block: dict[str, list[Change]] = {}
    for c in changes:
        by_block.setdefault(config_block_of(c.address), []).append(c)
    before: dict[str, set[str]] = {c.address: set() for c in changes}
    for c in changes:
        for dep in c.depends_on:
            for d in by_block.get(config_block_of(dep), []):
                if d.address == c.address or not (d.address == dep or selects(dep, d.address)):
                    continue
                if c.actions == DELETE and d.actions == DELETE:
                    before[d.address].add(c.address)  # dependents are destroyed first
                elif c.actions != DELETE and d.actions != DELETE:
                    before[c.address].add(d.address)
    return before


class DesiredValues:
    """The real (unmasked) desired attributes of each instance at apply time. Instances whose
    attributes were unknown at plan time are re-evaluated once what they depend on is known."""

    def __init__(
        self,
        evaluator: Evaluator,
        evaluated: Evaluated,
        store: StateStore,
        providers: Providers,
    ) -> None:
        self.evaluator = evaluator
        self.evaluated = evaluated
        self.store = store
        self.providers = providers
        self._state: dict[str, ResourceState] = {}

    def from_state(self, inst: Instance) -> dict[str, Any]:
        return _recorded(self._state, self.providers, inst)

    def get(self, address: str) -> Instance:
        inst = self.evaluated.instances[address]
        if not inst.unknown_inputs:
            return inst
        from trainform.config.evaluate import block_nodes

        self._state = self.store.resources()
        # Non-deterministic functions (timestamp(), uuid()) were unknown at plan time and
        # are decided now, as in Terraform.
        self.evaluator.functions.apply_time = True
        fresh = self.evaluator.run(
            self.from_state, block_nodes(self.evaluator.module, [inst.resource.address])
        )
        inst = fresh.instances[address]
        unknown = sorted(k for k, v in inst.attributes.items() if is_unknown(v))
        if unknown:
            raise TrainformError(
                f"{address}: {', '.join(unknown)} still unknown after its dependencies were applied"
            )
        return inst

    def outputs(self) -> dict[str, tuple[Any, bool]]:
        return outputs_from_state(self.evaluator, self.store, self.providers)

    def condition_failure(self, kind: str, inst: Instance) -> str:
        """The first of an instance's preconditions or postconditions (``kind``) that is
        false over what state records now, as a message with its file:line; "" if none.
        ``self`` in a postcondition is the instance as just recorded."""
        from trainform.config.conditions import failure_text, postconditions, preconditions
        from trainform.config.evaluate import block_nodes

        lifecycle = inst.resource.lifecycle
        if not (lifecycle.preconditions if kind == "precondition" else lifecycle.postconditions):
            return ""
        self._state = self.store.resources()
        nodes = block_nodes(self.evaluator.module, [inst.resource.address])
        try:
            fresh = self.evaluator.run(self.from_state, None if kind == "postcondition" else nodes)
        except TrainformError:
            fresh = self.evaluator.run(self.from_state, nodes)
        now = fresh.instances.get(inst.address, inst)
        check = preconditions if kind == "precondition" else postconditions
        for outcome in check(fresh, now, self.evaluator.functions):
            if outcome.ok is False:
                return f"{inst.address}: " + failure_text(kind, inst.address, outcome)
            if outcome.ok is None and kind == "precondition":
                return f"{inst.address}: precondition ({outcome.where}) still unknown: {outcome.message}"
        return ""


def _recorded(
    state: dict[str, ResourceState], providers: Providers, inst: Instance
) -> dict[str, Any]:
    """An instance's computed attributes as recorded in ``state`` (unknown where not yet)."""
    prior = state.get(inst.address)
    computed = inst.resource.schema.published()
    if prior is None:
        return {k: UNKNOWN for k in computed}
    return awaited_values(providers.get(prior.provider), prior.computed, computed)


def outputs_from_state(
    evaluator: Evaluator, store: StateStore, providers: Providers
) -> dict[str, tuple[Any, bool]]:
    """The configuration's outputs (name -> (value, sensitive)) over what state records."""
    state = store.resources()
    return evaluator.run(lambda inst: _recorded(state, providers, inst)).outputs


@dataclass
class _Intent:
    """A run about to be launched by a worker thread, waiting for its intent to be recorded
    by the thread that writes state."""

    change: Change
    inst: Instance | None
    computed: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class Engine:
    def __init__(
        self,
        store: StateStore,
        providers: Providers,
        desired: DesiredValues | None,
        parallelism: int = 10,
        cancel: threading.Event | None = None,
        on_event: Callable[[Event], None] | None = None,
        detach: bool = False,
    ) -> None:
        self.detach = detach
        self.store = store
        self.providers = providers
        self.desired = desired
        self.parallelism = max(1, parallelism)
        self.cancel = cancel or threading.Event()
        self.on_event = on_event or (lambda e: None)
        self._prior: dict[str, ResourceState] = {}
        self._refreshed: dict[str, dict[str, Any]] = {}
        # Runs' intents, recorded from the walking thread (see _await_intent).
        self._intent_lock = threading.Lock()
        self._intents: list[_Intent] = []
        self._wake: Future[None] = Future()
        self._closing = False
        self._intended: dict[str, dict[str, Any]] = {}  # address -> intent, until recorded
        self._changes: dict[str, Change] = {}

    def apply(self, plan: Plan, command: str) -> ApplyResult:
        """Apply every change of ``plan``. Never raises for a provider failure: failures are
        in the result. Raises StateError if state cannot be written."""
        result = ApplyResult()
        apply_id = self.store.begin_apply(command)
        refactor.record(self.store, plan)  # moves, forgets, imports: before anything else
        self._prior = self.store.resources()
        self._refreshed = plan.refreshed
        try:
            self._persist_refresh(plan)
            self._walk(plan, result)
            if plan.mode != "destroy" and not result.interrupted and self.desired is not None:
                self._persist_outputs(result)
            elif plan.mode == "destroy" and not result.failed and not result.interrupted:
                self.store.put_outputs({})
        finally:
            outcome = "interrupted" if result.interrupted else ("ok" if result.ok else "failed")
            summary = [
                {
                    "address": c.address,
                    "actions": list(c.actions),
                    "outcome": "ok"
                    if c.address in result.succeeded
                    else "failed"
                    if c.address in result.failed
                    else "skipped",
                }
                for c in plan.resource_changes
            ]
            self.store.finish_apply(apply_id, outcome, summary)
        return result

    def _persist_refresh(self, plan: Plan) -> None:
        prior = self._prior
        touched = {c.address for c in plan.resource_changes}
        for addr, computed in plan.refreshed.items():
            rs = prior.get(addr)
            if rs is not None and addr not in touched and computed != rs.computed:
                provider = self.providers.get(rs.provider)
                if provider.adopt(self.store, rs, computed) is not None:
                    continue
                computed = provider.settle(self.store, rs, computed)
                self.store.put_resource(_with(rs, computed=computed))
        for addr in plan.gone:
            if addr in prior and addr not in touched:
                self.store.remove_resource(addr)

    def _walk(self, plan: Plan, result: ApplyResult) -> None:
        changes = self._changes = {c.address: c for c in plan.resource_changes}
        awaited = self._unsettled_upstreams(plan, changes)
        pending = _order([*changes.values(), *(c for c, _, _ in awaited)])
        blocked: set[str] = set()
        # future -> (change, start time, instance, phase): phase "apply" calls the provider;
        # phase "watch" follows a submitted run to its end.
        running: dict[Future[Any], tuple[Change, float, Instance | None, str]] = {}

        def release(change: Change, elapsed: float) -> None:
            if change.address in changes:  # not work an earlier apply started, awaited here
                result.succeeded.append(change.address)
            else:
                result.awaited.append(change.address)
            detached = change.address in result.detached
            note = "reused" if change.address in result.reused else ""
            self.on_event(Event("done", change, elapsed, "detached" if detached else note))
            for w in pending.values():
                w.discard(change.address)

        with ThreadPoolExecutor(max_workers=self.parallelism) as pool, self._recording_intents():
            for upstream, instance, computed in awaited:  # started by an earlier apply
                del pending[upstream.address]
                self.on_event(Event("start", upstream))
                watcher = pool.submit(self._watch, upstream, computed)
                running[watcher] = (upstream, time.monotonic(), instance, "watch")
            while pending or running:
                if not self.cancel.is_set():
                    ready = [a for a, w in pending.items() if not w]
                    for addr in sorted(ready):
                        if len(running) >= self.parallelism:
                            break
                        del pending[addr]
                        change = changes[addr]
                        try:
                            inst = self._prepare(change)
                        except TrainformError as exc:
                            self._fail(change, str(exc), result, pending, blocked)
                            continue
                        self.on_event(Event("start", change))
                        fut = pool.submit(self._execute, change, inst)
                        running[fut] = (change, time.monotonic(), inst, "apply")
                if not running:
                    if self.cancel.is_set():
                        result.interrupted = True
                        result.not_started.extend(sorted(pending))
                        return
                    if pending:  # everything left waits on something that failed
                        for addr in sorted(pending):
                            result.skipped.append(addr)
                            self.on_event(Event("skipped", changes[addr]))
                        return
                    continue
                with self._intent_lock:
                    wake = self._wake
                done, _ = wait([*running, wake], timeout=0.2, return_when=FIRST_COMPLETED)
                self._record_intents()
                for fut in done:
                    if fut is wake:
                        continue
                    change, started, inst, phase = running.pop(fut)
                    elapsed = time.monotonic() - started
                    try:
                        outcome: Any = fut.result()
                    except TrainformError as exc:
                        if phase == "apply":
                            self._record_failure(change, inst, str(exc))
                        self._fail(change, str(exc), result, pending, blocked, elapsed)
                        continue
                    except Exception as exc:  # a provider bug must not lose state
                        if phase == "apply":
                            self._record_failure(change, inst, repr(exc))
                        self._fail(
                            change, f"unexpected error: {exc!r}", result, pending, blocked, elapsed
                        )
                        continue
                    if phase == "watch":
                        failure = self._finish_run(change, inst, outcome, result)
                        if not failure and change.address not in result.detached:
                            failure = self._postcondition_failure(change, inst)
                        if failure:
                            self._fail(change, failure, result, pending, blocked, elapsed)
                        elif change.address not in result.detached:
                            release(change, elapsed)
                        elif change.address in changes:  # interrupted: it goes on by itself
                            result.succeeded.append(change.address)
                        continue
                    self._record_success(change, inst, outcome)
                    if self._is_submission(change, outcome) and inst is not None:
                        ident = outcome.get(self.providers.get(change.provider).ident)
                        self.on_event(Event("submitted", change, elapsed, str(ident)))
                        if not self.detach and inst.attributes.get("wait", True):
                            watcher = pool.submit(self._watch, change, outcome)
                            running[watcher] = (change, started, inst, "watch")
                            continue
                        outcome = self.providers.get(change.provider).detach(outcome)
                        self.store.put_resource(resource_state(inst, outcome, "ready"))
                        result.detached.append(change.address)
                    elif failure := self._postcondition_failure(change, inst):
                        self._fail(change, failure, result, pending, blocked, elapsed)
                        continue
                    elif AWAITED in change.changed:
                        result.reused.append(change.address)
                    release(change, elapsed)
            if self.cancel.is_set():  # even if all was done, runs were left unwatched
                result.interrupted = True
                result.not_started.extend(sorted(pending))

    def _unsettled_upstreams(
        self, plan: Plan, changes: dict[str, Change]
    ) -> list[tuple[Change, Instance, dict[str, Any]]]:
        """Work an earlier apply started and left going (``--detach``, Ctrl-C) that a change
        of this plan depends on (a run reading its outputs): each as a change to await
        (verb ``await``), its instance and its current computed attributes. Awaiting it
        starts at once; its dependents start when it settles, as within one apply."""
        if self.detach or self.desired is None:
            return []
        wanted = {dep for c in changes.values() for dep in c.depends_on}
        found = []
        for c in plan.changes:
            prior = self._prior.get(c.address)
            if (
                c.address in changes
                or prior is None
                or config_block_of(c.address) not in {config_block_of(d) for d in wanted}
            ):
                continue
            provider = self.providers.get(prior.provider)
            computed = {**prior.computed, **self._refreshed.get(c.address, {})}
            if (
                not provider.does_work
                or provider.settled(computed)
                or provider.submitting(computed)
            ):
                continue
            if computed.get("status") in TERMINAL:
                continue  # ended: refresh settles it
            found.append((replace(c, verb="await"), self.desired.get(c.address), computed))
        return found

    def _is_submission(self, change: Change, computed: dict[str, Any] | None) -> bool:
        """Whether applying the change started work the engine awaits (see
        ``Provider.awaits``)."""
        if not computed or change.actions == DELETE:
            return False
        prior = self._prior.get(change.address)
        provider = self.providers.get(change.provider)
        return provider.awaits(computed, prior.computed if prior is not None else None)

    def _watch(
        self, change: Change, computed: dict[str, Any]
    ) -> tuple[dict[str, Any], Any, list[str]]:
        def on_status(status: str, msg: str) -> None:
            if status not in TERMINAL:  # the end is reported once, as done or failed
                text = f"{status}: {msg}" if status == "queued" else status
                self.on_event(Event("status", change, message=text))

        return self.providers.get(change.provider).watch(
            computed,
            lambda line: self.on_event(Event("log", change, message=line)),
            on_status,
            self.cancel,
        )

    def _finish_run(
        self,
        change: Change,
        inst: Instance | None,
        outcome: tuple[dict[str, Any], Any, list[str]],
        result: ApplyResult,
    ) -> str:
        """Persist the end of watched work; return a failure message, or "" if it completed
        (or was left running because the user interrupted)."""
        computed, results, tail = outcome
        assert inst is not None
        self.store.put_resource(resource_state(inst, computed, "ready"))
        provider = self.providers.get(change.provider)
        for warning in provider.record(
            self.store, change.address, inst.attributes, computed, results
        ):
            self.on_event(Event("warning", change, message=warning))  # an MLflow export
        if results is None:
            result.detached.append(change.address)
        return provider.outcome(computed, results, tail)

    def _fail(
        self,
        change: Change,
        message: str,
        result: ApplyResult,
        pending: dict[str, set[str]],
        blocked: set[str],
        elapsed: float = 0.0,
    ) -> None:
        result.failed[change.address] = message
        self.on_event(Event("failed", change, elapsed, message))
        # Dependents of a failure are skipped; independent branches go on.
        stack = [change.address]
        while stack:
            failed = stack.pop()
            for addr in [a for a, w in pending.items() if failed in w]:
                del pending[addr]
                result.skipped.append(addr)
                result.skipped_because[addr] = change.address
                self.on_event(
                    Event("skipped", self._changes[addr], message=f"{change.address} failed")
                )
                blocked.add(addr)
                stack.append(addr)

    def _prepare(self, change: Change) -> Instance | None:
        """Real desired values, and a "pending" record so a crash mid-create is noticed."""
        self._resolve_submitted(change)
        if change.actions == DELETE:
            return None
        if self.desired is None:
            raise TrainformError(f"{change.address}: no configuration to apply")
        inst = self.desired.get(change.address)
        failure = self.desired.condition_failure("precondition", inst)
        if failure:
            raise TrainformError(failure)
        if "create" in change.actions and change.address not in self._prior:
            self.store.put_resource(resource_state(inst, {}, "pending"))
        return inst

    def _resolve_submitted(self, change: Change) -> None:
        """A run still recorded as being submitted by an apply that stopped (its plan was
        made without resolving it: ``-lock=false``, ``-refresh=false``, or its target could
        not be read) is resolved from this plan's refresh, or not changed at all: it may be
        running unrecorded, and must be neither started twice nor forgotten. Raises
        TrainformError."""
        prior = self._prior.get(change.address)
        if prior is None:
            return
        provider = self.providers.get(prior.provider)
        if not provider.submitting(prior.computed):
            return
        observed = self._refreshed.get(change.address) or {}
        resolved = provider.adopt(self.store, prior, observed)
        if resolved is not None:
            self._prior[change.address] = resolved[0]
            if change.actions == DELETE or resolved[0].status == "pending":
                return  # canceled (if it runs) and forgotten, or never started: submitted
            raise TrainformError(
                f"{resolved[1]}; it was not submitted again: run `trainform plan` to see what "
                "is left to do"
            )
        where = prior.computed.get("compute_address") or prior.computed.get("compute_provider")
        raise TrainformError(
            f"{prior.kind} {prior.computed.get(provider.ident)} was being submitted to "
            f"{where} when an apply stopped, and whether it started there is not known yet; "
            "run `trainform plan` with refresh and the lock (which looks it up there)"
            + (
                f", or `trainform state rm {change.address}` if {where} is gone for good"
                if change.actions == DELETE
                else ""
            )
        )

    def _postcondition_failure(self, change: Change, inst: Instance | None) -> str:
        """A postcondition of a just created or updated resource that is false (its state is
        recorded all the same, as Terraform records it); "" if none."""
        if inst is None or self.desired is None or change.actions == DELETE:
            return ""
        try:
            return self.desired.condition_failure("postcondition", inst)
        except TrainformError as exc:
            return f"{change.address}: its postconditions could not be evaluated: {exc}"

    def _execute(self, change: Change, inst: Instance | None) -> dict[str, Any] | None:
        def report(message: str) -> None:
            self.on_event(Event("progress", change, message=message))

        with (
            reporting(report),
            recording_intents(lambda intent: self._await_intent(change, inst, intent)),
        ):
            return self._execute_change(change, inst)

    @contextlib.contextmanager
    def _recording_intents(self) -> Iterator[None]:
        """While the walk goes on, runs' intents are recorded; once it stops (by an error
        too), a submission still waiting for its intent fails instead of launching."""
        with self._intent_lock:
            self._closing = False
        try:
            yield
        finally:
            with self._intent_lock:
                self._closing = True
                waiting, self._intents = self._intents, []
            for box in waiting:
                box.error = TrainformError(f"{box.change.address}: apply stopped before the launch")
                box.done.set()

    def _await_intent(self, change: Change, inst: Instance | None, intent: dict[str, Any]) -> None:
        """(worker thread) Have the walking thread record a run's intent, and wait until it
        has; raises if it could not (then the run is not launched)."""
        box = _Intent(change, inst, intent)
        with self._intent_lock:
            if self._closing:
                raise TrainformError(f"{change.address}: apply stopped before the launch")
            self._intents.append(box)
            if not self._wake.done():
                self._wake.set_result(None)
        box.done.wait()
        if box.error is not None:
            raise box.error

    def _record_intents(self) -> None:
        """(walking thread) Record the intents workers wait on, and let them go on."""
        with self._intent_lock:
            waiting, self._intents = self._intents, []
            if self._wake.done():
                self._wake = Future()
        for i, box in enumerate(waiting):
            try:
                self._record_intent(box.change, box.inst, box.computed)
            except BaseException as exc:
                for other in waiting[i:]:
                    other.error = TrainformError(
                        f"{other.change.address}: its intent could not be recorded: {exc}"
                    )
                    other.done.set()
                raise
            box.done.set()

    def _record_intent(self, change: Change, inst: Instance | None, intent: dict[str, Any]) -> None:
        """Record that work is about to be started, before it is: state says ``pending``
        with its id, target and where its launcher will be, and the provider records it
        (a run's history has it as ``submitting``). An apply that dies from here until its
        handle is recorded leaves work that refresh finds (see ``Provider.adopt``)."""
        assert inst is not None
        self.store.put_resource(resource_state(inst, intent, "pending"))
        provider = self.providers.get(change.provider)
        provider.record(self.store, change.address, inst.attributes, intent)
        self._intended[change.address] = intent

    def _execute_change(self, change: Change, inst: Instance | None) -> dict[str, Any] | None:
        provider = self.providers.get(change.provider)
        prior = self._prior.get(change.address)
        try:
            if change.actions == DELETE:
                assert prior is not None
                provider.delete(prior)
                return None
            assert inst is not None
            attrs = inst.attributes
            if provider.sensitive_inputs:
                attrs = with_sensitive_paths(attrs, inst.sensitive)
            if change.actions == ("update",):
                assert prior is not None
                return provider.update(change.address, attrs, prior, list(change.changed))
            if change.actions == ("delete", "create") and prior is not None:
                self.providers.get(prior.provider).delete(prior)
            computed = provider.create(change.address, attrs)
            if change.actions == ("create", "delete") and prior is not None:
                self.providers.get(prior.provider).delete(prior)
            return computed
        except TrainformError:
            raise
        except OSError as exc:
            raise ProviderError(f"{change.address}: {exc}", address=change.address) from None

    def _record_success(
        self, change: Change, inst: Instance | None, computed: dict[str, Any] | None
    ) -> None:
        if change.actions == DELETE:
            prior = self._prior.get(change.address)
            provider = self.providers.get(prior.provider) if prior is not None else None
            if prior is not None and provider is not None and provider.does_work:
                with contextlib.suppress(TrainformError):  # history is best effort here
                    observed = provider.read(prior) or prior.computed
                    if observed != prior.computed:
                        provider.settle(self.store, prior, observed)
            self.store.remove_resource(change.address)
            return
        assert inst is not None
        self._intended.pop(change.address, None)
        self.store.put_resource(resource_state(inst, computed or {}, "ready"))
        if computed:
            provider = self.providers.get(change.provider)
            provider.record(self.store, change.address, inst.attributes, computed)

    def _record_failure(self, change: Change, inst: Instance | None, message: str = "") -> None:
        if change.actions == DELETE or inst is None:
            return
        prior = self._prior.get(change.address)
        intent = self._intended.pop(change.address, None)
        if intent is not None:  # the submission failed after its intent was recorded
            failed = {**intent, "status": "not_started", "message": f"not started: {message}"}
            provider = self.providers.get(change.provider)
            provider.record(self.store, change.address, inst.attributes, failed)
            if "create" not in change.actions:  # a resubmission: the last run stays recorded
                self.store.put_resource(prior or resource_state(inst, {}, "tainted"))
        if "create" in change.actions:
            self.store.put_resource(
                resource_state(inst, prior.computed if prior else {}, "tainted")
            )

    def _persist_outputs(self, result: ApplyResult) -> None:
        assert self.desired is not None
        result.outputs = record_outputs(self.store, self.desired.outputs())


def record_outputs(
    store: StateStore, values: dict[str, tuple[Any, bool]]
) -> dict[str, dict[str, Any]]:
    """Write the configuration's outputs (name -> (value, sensitive)) to state, sealing
    sensitive values; an output still unknown keeps its recorded value. Returns them."""
    current = store.outputs()
    outputs: dict[str, dict[str, Any]] = {}
    for name, (value, sensitive) in values.items():
        if is_unknown(value):
            if name in current:
                outputs[name] = current[name]
            continue
        prior = current.get(name)
        if sensitive and prior and prior["sensitive"] and secrets.matches(prior["value"], value):
            outputs[name] = prior  # keep the salt so an unchanged secret does not bump serial
        else:
            outputs[name] = {
                "value": secrets.seal(value) if sensitive else value,
                "sensitive": sensitive,
            }
    store.put_outputs(outputs)
    return outputs


def _with(rs: ResourceState, **changes: Any) -> ResourceState:
    return replace(rs, **changes)
