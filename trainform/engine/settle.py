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

from trainform.planner.diff import Observations
from trainform.providers.base import TERMINAL, ResourceState
from trainform.providers.registry import Providers
from trainform.state.store import StateStore


def settle_ended(
    store: StateStore,
    providers: Providers,
    prior: dict[str, ResourceState],
    observations: Observations,
) -> list[str]:
    """Record every run or sweep that refresh found ended but state still shows as going
    (``Provider.settle``), and resolve every run whose submission was cut off
    (``Provider.adopt``).
    Writes state; the caller holds the lock. Updates ``prior`` and ``observations`` in place
    so that planning sees what was recorded. Returns a note per settled resource."""
    notes: list[str] = []
    for addr, now in list(observations.computed.items()):
        rs = prior.get(addr)
        resolved = providers.get(rs.provider).adopt(store, rs, now) if rs is not None else None
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
        computed = provider.settle(store, rs, now)
        if computed == rs.computed:
            continue
        settled = replace(rs, computed=computed)
        store.put_resource(settled)
        prior[addr] = settled
        observations.computed[addr] = computed
        ident = computed.get(provider.ident)
        what = f"{rs.kind} {ident} {computed.get('status')}"
        if not provider.settled(computed):
            what += " (its results could not be collected yet; a later refresh retries)"
        notes.append(f"{addr}: {what} while trainform was not watching; recorded")
    return notes
