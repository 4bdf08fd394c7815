"""One command's view of a configuration: its module, variables, state and providers.

This is the library entry point the CLI is a thin layer over::

    session = Session.open(Path("."), VariableInputs())
    with session.locked("plan"):
        plan = session.plan(PlanOptions())
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from trainform.config.address import config_block_of, selects
from trainform.config.evaluate import Evaluator, Prompt, resolve_variables, target_blocks
from trainform.config.loader import function_context, load_module
from trainform.config.model import Instance, Module
from trainform.config.values import UNKNOWN, FunctionContext
from trainform.config.variables import VariableInputs, VariableValues, collect_values
from trainform.engine import refactor
from trainform.engine.apply import (
    ApplyResult,
    DesiredValues,
    Engine,
    Event,
    outputs_from_state,
    record_outputs,
)
from trainform.engine.settle import settle_ended
from trainform.errors import (
    ConfigError,
    Diagnostic,
    RefreshError,
    StalePlanError,
    TrainformError,
)
from trainform.graph import dependencies_closure
from trainform.planner import planfile
from trainform.planner.diff import Observations, Planner, PlanOptions, canonical
from trainform.planner.refresh import refresh
from trainform.planner.types import Plan
from trainform.providers.base import Provider, ProviderContext, ResourceState
from trainform.providers.registry import Providers
from trainform.state import secrets
from trainform.state.backend import (
    DATA_DIR,
    DEFAULT_WORKSPACE,
    BackendSpec,
    backend_spec,
    check_initialised,
    current_workspace,
    open_state,
)
from trainform.state.store import LockInfo, StateStore


def plan_digest(plan: Plan) -> str:
    """The sha256 of a plan's content, recorded with the state version its apply made (the
    same for the plan as made and as loaded from its file)."""
    text = json.dumps(plan.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _prior_computed(prior: dict[str, ResourceState], inst: Instance) -> dict[str, Any]:
    rs = prior.get(inst.address)
    keys = inst.resource.schema.published()
    return {k: (rs.computed.get(k, UNKNOWN) if rs else UNKNOWN) for k in keys}


def validate_config(directory: Path, inputs: VariableInputs) -> Module:
    """Check a configuration without state or providers' side effects: syntax, schemas,
    references, and evaluation with missing variables and other resources' facts unknown.
    Raises ConfigError."""
    module = load_module(directory)
    functions = function_context(module)
    raw = collect_values(module.directory, module.variables, inputs, functions)
    variables = resolve_variables(module, raw, None, functions, lenient=True)
    evaluator = Evaluator(module, variables, functions)

    def unknown_facts(inst: Instance) -> dict[str, Any]:
        return {k: UNKNOWN for k in inst.resource.schema.published()}

    evaluated = evaluator.run(unknown_facts)
    providers = Providers(ProviderContext(module.directory, module.directory / DATA_DIR))
    problems = []
    for addr, inst in evaluated.instances.items():
        for msg in providers.get(inst.resource.provider).validate(addr, inst.attributes):
            problems.append(Diagnostic(f"{addr}: {msg}", inst.resource.pos))
    if problems:
        raise ConfigError(problems)
    return module


@dataclass
class Session:
    module: Module
    raw_vars: VariableValues
    variables: dict[str, Any]
    functions: FunctionContext
    store: StateStore
    providers: Providers
    parallelism: int = 10
    warnings: list[Diagnostic] = field(default_factory=list)
    lock: LockInfo | None = None
    backend: BackendSpec | None = None
    workspace: str = DEFAULT_WORKSPACE  # the CLI workspace (not a workspace block)

    @classmethod
    def open(
        cls,
        directory: Path,
        inputs: VariableInputs,
        prompt: Prompt | None = None,
        parallelism: int = 10,
        fixed_variables: dict[str, Any] | None = None,
    ) -> Session:
        """Load and check the configuration, resolve variables, open the selected
        workspace's state in the configured backend. Raises ConfigError / StateError (a
        selected workspace that does not exist)."""
        module = load_module(directory)
        backend = backend_spec(module)
        check_initialised(module.directory, backend)
        workspace = current_workspace(backend, module.directory)
        functions = function_context(module)
        raw = collect_values(module.directory, module.variables, inputs, functions)
        if fixed_variables is not None:
            for name, value in fixed_variables.items():
                raw.values[name] = value
                raw.origin[name] = "the saved plan"
        variables = resolve_variables(module, raw, prompt, functions)
        store = open_state(backend, workspace, create=False)
        data_dir = module.directory / DATA_DIR
        context = ProviderContext(
            module.directory,
            data_dir,
            backend=backend,
            workspace=workspace,
            fingerprint_key=store.fingerprint_key,
        )
        return cls(
            module,
            raw,
            variables,
            functions,
            store,
            Providers(context),
            parallelism,
            list(raw.warnings),
            backend=backend,
            workspace=workspace,
        )

    @contextmanager
    def locked(self, operation: str, timeout: float = 0.0) -> Iterator[LockInfo]:
        """Hold the state lock for the duration of the block."""
        lock = self.store.acquire_lock(operation, timeout)
        self.lock = lock
        try:
            yield lock
        finally:
            self.store.release_lock(lock)
            self.lock = None

    def evaluator(self) -> Evaluator:
        return Evaluator(self.module, self.variables, self.functions, self.workspace)

    def make_plan(self, options: PlanOptions, do_refresh: bool = True) -> tuple[Plan, Planner]:
        """Refresh (unless told not to) and plan. Raises ConfigError, PlanError,
        ProviderNotFound."""
        prior = self.store.resources()
        self.remember_secrets(prior)
        observations = Observations()
        if do_refresh:
            observations = refresh(self._to_read(prior, options), self.providers, self.parallelism)
            # As in Terraform, what cannot be read stops the plan (a changed host key above
            # all); only destroy goes on, so that a dead host can still be detached, and a
            # resource whose create failed or was cut off is planned again regardless.
            failed = {
                a: why
                for a, why in observations.unreachable.items()
                if prior[a].status not in ("tainted", "pending")
            }
            if failed and options.mode != "destroy":
                raise RefreshError(failed)
        notes: list[str] = []
        if self.lock is not None and options.mode != "destroy":
            notes = settle_ended(self.store, self.providers, prior, observations)
            if notes:  # outputs that waited on those runs, as a refresh records them
                record_outputs(
                    self.store, outputs_from_state(self.evaluator(), self.store, self.providers)
                )
        # moved, removed and import blocks: the prior state as the configuration names it
        prepared = refactor.prepare(
            self.module, prior, self._import_view(prior), self.store, self.providers, self.functions
        )
        prior, observations = prepared.prior, refactor.rekey(observations, prepared)
        moved_from = prepared.refactored.moved
        lineage, serial = self.store.lineage_serial()
        run_counts = {
            a: self.store.count_runs(moved_from.get(a, a))
            for a, r in prior.items()
            if r.kind == "workspace"
        }
        planner = Planner(
            self.module,
            self.evaluator(),
            prior,
            observations,
            options,
            lineage,
            serial,
            self.store.outputs(),
            run_counts,
            self.providers,
        )
        planner.renamed_blocks = prepared.refactored.renamed_blocks
        plan = planner.plan()
        self._validate(planner)
        plan = refactor.finish(
            plan, prepared, self.module, planner.evaluated, self.functions, planner.refingerprinted
        )
        if notes:
            plan = replace(plan, notes=tuple(notes))
        return plan, planner

    def _import_view(self, prior: dict[str, ResourceState]) -> Any:
        """The configuration over recorded facts, for import blocks (None when no import
        block names something state does not hold yet)."""
        if all(imp.to in prior for imp in self.module.imports):
            return None
        return self.evaluator().run(lambda inst: _prior_computed(prior, inst))

    def _to_read(
        self, prior: dict[str, ResourceState], options: PlanOptions
    ) -> dict[str, ResourceState]:
        """What refresh reads: everything, or with -target only the targets and what they
        depend on (as Terraform does), so an unreachable host elsewhere can be left out."""
        if not options.targets or options.mode == "destroy":
            return prior
        blocks = target_blocks(self.module, options.targets)
        wanted = dependencies_closure(self.module.dependencies, blocks) | blocks
        return {
            a: r
            for a, r in prior.items()
            if a in options.targets
            or config_block_of(a) in wanted
            or any(selects(t, a) for t in options.targets)
        }

    def remember_secrets(self, prior: dict[str, ResourceState]) -> None:
        """Give providers the configuration's values of recorded resources that hold secrets
        (state has only their hashes), so that refresh can connect. Evaluated only when such
        a resource exists; an evaluation error here is left for planning to report."""
        sealed = [
            r
            for r in prior.values()
            if any(secrets.is_sealed(v) for v in r.attributes.values())
            and self._wants_config(r.provider)
        ]
        if not sealed:
            return
        try:
            evaluated = self.evaluator().run(lambda inst: _prior_computed(prior, inst))
        except TrainformError:
            return
        for r in sealed:
            inst = evaluated.instances.get(r.address)
            if inst is not None:
                with contextlib.suppress(TrainformError):
                    self.providers.get(r.provider).remember(r.address, inst.attributes)

    def _wants_config(self, provider: str) -> bool:
        """Whether a provider uses configuration values before read (SSH passwords); the
        extra evaluation is skipped for the others."""
        try:
            cls = type(self.providers.get(provider))
        except TrainformError:
            return False
        return cls.remember is not Provider.remember

    def _validate(self, planner: Planner) -> None:
        if planner.evaluated is None:
            return
        problems = []
        for addr, inst in planner.evaluated.instances.items():
            try:
                provider = self.providers.get(inst.resource.provider)
            except TrainformError as exc:
                problems.append(Diagnostic(str(exc), inst.resource.pos))
                continue
            for msg in provider.validate(addr, inst.attributes):
                problems.append(Diagnostic(f"{addr}: {msg}", inst.resource.pos))
        if problems:
            raise ConfigError(problems)

    def saved(self, plan: Plan) -> planfile.SavedPlan:
        """The plan with what is needed to detect staleness, and no secrets."""
        sensitive = {n for n, v in self.module.variables.items() if v.sensitive}
        inputs = planfile.file_hashes(list(self.module.files))
        inputs.update(self.raw_vars.files)
        inputs.update(self.functions.files_read)
        return planfile.SavedPlan(
            plan=plan,
            config_dir=str(self.module.directory),
            inputs=planfile.record_inputs(inputs, self.module.directory),
            variables={k: v for k, v in self.variables.items() if k not in sensitive},
            sensitive_variables={
                k: secrets.seal(v) for k, v in self.variables.items() if k in sensitive
            },
            workspace=self.workspace,
        )

    def check_saved(self, saved: planfile.SavedPlan) -> Planner:
        """Verify a saved plan still describes what applying it would do; return the planner
        whose evaluation supplies the real values. Raises StalePlanError / PlanError."""
        planfile.check_workspace(saved, self.workspace)
        planfile.check_inputs(saved, list(self.module.files), self.module.directory)
        lineage, serial = self.store.lineage_serial()
        planfile.check_state(saved, lineage, serial)
        sensitive = {n for n, v in self.module.variables.items() if v.sensitive}
        planfile.check_sensitive(saved, {k: v for k, v in self.variables.items() if k in sensitive})
        options = PlanOptions(saved.plan.mode, saved.plan.targets, saved.plan.replace)
        fresh, planner = self.make_plan(options)
        old, new = saved.plan.to_dict(), fresh.to_dict()
        for key in ("changes", "outputs"):
            if canonical(old[key]) != canonical(new[key]):
                before = {c["address"]: c for c in old["changes"]}
                after = {c["address"]: c for c in new["changes"]}
                moved = sorted(
                    a
                    for a in set(before) | set(after)
                    if canonical(before.get(a)) != canonical(after.get(a))
                )
                what = moved[0] if moved else "the outputs"
                raise StalePlanError(
                    f"the saved plan is stale: {what} no longer plans the same way "
                    "(the infrastructure changed since the plan was made); run `trainform plan` again"
                )
        return planner

    def apply(
        self,
        plan: Plan,
        planner: Planner,
        command: str,
        cancel: threading.Event | None = None,
        on_event: Callable[[Event], None] | None = None,
        detach: bool = False,
    ) -> ApplyResult:
        desired = None
        if planner.evaluated is not None and plan.mode != "destroy":
            desired = DesiredValues(
                planner.evaluator, planner.evaluated, self.store, self.providers
            )
        engine = Engine(
            self.store, self.providers, desired, self.parallelism, cancel, on_event, detach
        )
        try:
            result = engine.apply(plan, command)
        finally:  # what an interrupted or failed apply recorded is a version too
            self.store.record_version(command, plan_digest(plan))
        if self.module.checks and plan.mode == "normal" and not result.interrupted:
            result.check_warnings = refactor.checks_after_apply(
                self.module, planner.evaluator, self.store, self.providers
            )
        return result

    def close(self) -> None:
        self.store.close()
