"""Settling work that ended while nobody watched: a run submitted with ``--detach``, left
running by Ctrl-C, canceled with ``trainform runs cancel``, or whose launcher died. Refresh
reads its real outcome; settling records it (outputs collected, history and state updated)
exactly as if apply had waited for it.

A run whose apply stopped while submitting it (after recording the intent, before the
handle) is resolved the same way: adopted if refresh found it on its target, else left to
be submitted again.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from trainform.errors import TrainformError
from trainform.planner.diff import Observations
from trainform.providers.base import TERMINAL, ResourceState
from trainform.providers.registry import Providers
from trainform.state.store import StateStore


def settle_run(
    store: StateStore, providers: Providers, rs: ResourceState, observed: dict[str, Any]
) -> dict[str, Any]:
    """A run's observed computed attributes, with its results collected into the artifact
    store when it has ended, and its history row brought up to date. A run whose target
    cannot be reached now keeps ``outputs_path`` null (so it stays unsettled) and is
    collected by a later refresh."""
    from trainform.runs.history import record_run, workspace_of
    from trainform.runs.watch import collected_fields

    results = None
    if observed.get("status") in TERMINAL and observed.get("run_id"):
        try:
            results = providers.get(rs.provider).collect(observed)
            observed = {**observed, **collected_fields(results)}
        except TrainformError:
            results = None
    if observed.get("run_id"):
        record_run(store, rs.address, workspace_of(rs.attributes), observed, results)
    return observed


def adopt_submitted(
    store: StateStore, providers: Providers, rs: ResourceState, observed: dict[str, Any]
) -> tuple[ResourceState, str] | None:
    """Resolve a run recorded as being submitted (status ``submitting``, no handle: its apply
    stopped in between) from what refresh found (see ``RunProvider.read``): found on its
    target, it is adopted (``ready``, settled if it ended); never started, or on a target
    that cannot be searched, it stays ``pending``, so the plan submits it again. Writes state
    and the history row. Returns the new record and a note; None if ``rs`` is no such run or
    ``observed`` does not resolve it."""
    from trainform.runs.history import record_run, workspace_of

    if rs.kind != "run" or rs.computed.get("status") != "submitting" or rs.computed.get("handle"):
        return None
    run = f"run {observed.get('run_id')}"
    if observed.get("handle"):
        computed = settle_run(store, providers, rs, observed)
        new = replace(rs, status="ready", computed=computed)
        note = (
            f"{run} was started by an apply that stopped before recording it; adopted "
            f"({computed.get('status')})"
        )
    elif observed.get("status") in ("not_started", "lost") and observed.get("run_id"):
        record_run(store, rs.address, workspace_of(rs.attributes), observed)
        new = replace(rs, status="pending", computed=observed)
        note = f"{run}: {observed.get('message')}; it will be submitted again"
    else:
        return None
    store.put_resource(new)
    return new, note


def settle_ended(
    store: StateStore,
    providers: Providers,
    prior: dict[str, ResourceState],
    observations: Observations,
) -> list[str]:
    """Record every run or sweep that refresh found ended but state still shows as going, and
    resolve every run whose submission was cut off (:func:`adopt_submitted`).
    Writes state; the caller holds the lock. Updates ``prior`` and ``observations`` in place
    so that planning sees what was recorded. Returns a note per settled resource."""
    notes: list[str] = []
    for addr, now in list(observations.computed.items()):
        rs = prior.get(addr)
        resolved = adopt_submitted(store, providers, rs, now) if rs is not None else None
        if resolved is not None:
            prior[addr] = resolved[0]
            observations.computed[addr] = resolved[0].computed
            notes.append(f"{addr}: {resolved[1]}")
            continue
        if rs is None or now.get("status") not in TERMINAL:
            continue
        provider = providers.get(rs.provider)
        if provider.settled(rs.computed):
            continue
        computed = settle_run(store, providers, rs, now) if rs.kind == "run" else now
        if computed == rs.computed:
            continue
        settled = replace(rs, computed=computed)
        store.put_resource(settled)
        prior[addr] = settled
        observations.computed[addr] = computed
        ident = computed.get("run_id") or computed.get("sweep_id")
        what = f"{rs.kind} {ident} {computed.get('status')}"
        if not provider.settled(computed):
            what += " (its results could not be collected yet; a later refresh retries)"
        notes.append(f"{addr}: {what} while trainform was not watching; recorded")
    return notes
