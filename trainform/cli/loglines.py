"""How the log lines of runs are shown: under the run's address, and a multi-node run's
under the address with the rank of the node that wrote them (``run.ddp[1] | ...``, like
docker compose's service prefixes), padded to one width so that the streams line up.

A run's log is not trusted to drive the terminal that shows it: every control sequence but
colour is shown as inert text (see :func:`trainform.runs.watch.neutralise`), and colour is
kept only when trainform's own output is in colour (a terminal, no ``--no-color`` or
``NO_COLOR``). The same holds for CI logs and files, without colour. ``runs logs --raw``
writes the bytes as the run wrote them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trainform.runs.watch import neutralise, node_address

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


def prefixed(address: str, line: str, width: int, colour: bool = False) -> str:
    """``line`` (one or more lines of a log) made inert (see :func:`shown`), each line under
    its prefix, padded to ``width``."""
    prefix = f"{node_address(address, line).ljust(width)} | "
    text = shown(line, colour)
    # A colour left on by one line does not run into the next line's prefix.
    end = "\x1b[0m\n" if colour and "\x1b" in text else "\n"
    return prefix + text.replace("\n", end + prefix)


def shown(line: str, colour: bool = False) -> str:
    """``line`` (log lines of a run) as it may be written to a terminal: control sequences
    made visible and inert, colour kept with ``colour`` (then reset at the end)."""
    text = neutralise(line, colour)
    return text + "\x1b[0m" if colour and "\x1b" in text else text


def inert(text: str) -> str:
    """Text a run or a target gave (names, paths: hostile), as one line of inert Rich text."""
    from rich.markup import escape

    return escape(neutralise(str(text)).replace("\n", " ").replace("\t", " "))
