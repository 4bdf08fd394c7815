"""Refresh: ask providers what exists now for every recorded resource."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from trainform.errors import ProviderNotFound, TrainformError
from trainform.planner.diff import Observations
from trainform.providers.base import ResourceState
from trainform.providers.registry import Providers


def refresh(
    prior: dict[str, ResourceState], providers: Providers, parallelism: int = 10
) -> Observations:
    """Read every resource. A missing provider is an error (raised); a provider that cannot
    answer (an unreachable host) is recorded as unreachable, not raised."""
    obs = Observations()
    by_provider: dict[str, list[ResourceState]] = {}
    for res in prior.values():
        by_provider.setdefault(res.provider, []).append(res)
    for name in by_provider:
        providers.get(name)  # raises ProviderNotFound before any reads start

    def read(res: ResourceState) -> None:
        try:
            found = providers.get(res.provider).read(res)
        except ProviderNotFound:
            raise
        except TrainformError as exc:
            obs.unreachable[res.address] = str(exc)
            return
        if found is None:
            obs.gone.add(res.address)
        else:
            obs.computed[res.address] = found

    slow = [r for r in prior.values() if providers.get(r.provider).parallel_reads]
    for res in prior.values():
        if not providers.get(res.provider).parallel_reads:
            read(res)
    if len(slow) <= 1 or parallelism <= 1:
        for res in slow:
            read(res)
    else:
        with ThreadPoolExecutor(max_workers=parallelism) as pool:
            list(pool.map(read, slow))
    return obs
