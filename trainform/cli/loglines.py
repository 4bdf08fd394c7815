"""How the log lines of runs are shown: under the run's address, and a multi-node run's
under the address with the rank of the node that wrote them (``run.ddp[1] | ...``, like
docker compose's service prefixes), padded to one width so that the streams line up."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trainform.runs.watch import node_address

# The last plan whose prefix width was asked for, and that width: log lines arrive many
# times a second, and the plan's changes need not be looked at again for each one.
_plan_width: list[Any] = [None, 0]


def prefix_width(runs: Iterable[tuple[str, int]]) -> int:
    """The width of the prefixes of runs given as (address, node count)."""
    return max(
        (len(address) + (len(f"[{nodes - 1}]") if nodes > 1 else 0) for address, nodes in runs),
        default=0,
    )


def plan_prefix_width(plan: Any) -> int:
    """The prefix width for the log lines of an apply of ``plan`` (a Plan)."""
    if _plan_width[0] is not plan:
        runs = []
        for change in plan.resource_changes:
            nodes = (change.after or {}).get("node_count") if change.kind == "run" else 1
            runs.append((change.address, int(nodes) if isinstance(nodes, (int, float)) else 1))
        _plan_width[:] = [plan, prefix_width(runs)]
    return int(_plan_width[1])


def prefixed(address: str, line: str, width: int) -> str:
    """``line`` under its prefix, padded to ``width``."""
    return f"{node_address(address, line).ljust(width)} | {line}"
