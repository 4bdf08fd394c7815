"""The dependency graph: evaluation order, cycles, closures, and a DOT rendering.

The hot paths (ordering and cycle detection, run by every command) use the standard
library's :mod:`graphlib`; importing networkx costs about 0.2 s, more than a whole no-op plan
of a small configuration, so it is loaded only to render ``trainform graph``.
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainform.planner.types import Plan


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str]:
    """The nodes of one dependency cycle, in order (each depends on the next), or ``[]``."""
    sorter = graphlib.TopologicalSorter({n: list(d) for n, d in edges.items()})
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle = list(exc.args[1])[:-1]  # graphlib repeats the first node at the end
        return list(reversed(cycle))
    return []


def evaluation_order(edges: Mapping[str, Iterable[str]]) -> list[str]:
    """Nodes ordered so every node comes after what it depends on; ties broken by name so
    the order (and every diagnostic that follows it) is stable."""
    sorter = graphlib.TopologicalSorter({n: list(d) for n, d in edges.items()})
    sorter.prepare()
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order.extend(ready)
        sorter.done(*ready)
    return order


def dependencies_closure(edges: Mapping[str, Iterable[str]], nodes: Iterable[str]) -> set[str]:
    """``nodes`` and everything they depend on, transitively."""
    out: set[str] = set()
    stack = [n for n in nodes if n in edges]
    while stack:
        node = stack.pop()
        if node in out:
            continue
        out.add(node)
        stack.extend(d for d in edges.get(node, ()) if d not in out)
    return out


def to_dot(edges: Mapping[str, Iterable[str]], reduce: bool = True) -> str:
    """A Graphviz DOT rendering, edges pointing from a node to what it depends on. With
    ``reduce``, edges implied by others are left out (networkx's transitive reduction)."""
    import networkx as nx

    g = nx.DiGraph()
    for node, targets in edges.items():
        g.add_node(node)
        g.add_edges_from((node, t) for t in targets)
    if reduce and nx.is_directed_acyclic_graph(g):
        g = nx.transitive_reduction(g)
    lines = [
        "digraph trainform {",
        "  rankdir = LR;",
        '  node [shape = box, fontname = "Helvetica"];',
    ]
    lines.extend(f'  "{node}";' for node in sorted(g.nodes))
    lines.extend(f'  "{a}" -> "{b}";' for a, b in sorted(g.edges))
    lines.append("}")
    return "\n".join(lines) + "\n"


_PIPELINE_SHAPES = {"dataset": "cylinder", "run": "box", "sweep": "box3d"}


def pipeline_to_dot(nodes: Iterable[str], edges: Iterable[tuple[str, str, str]]) -> str:
    """A Graphviz DOT rendering of data flow: ``nodes`` (datasets, runs, sweeps) and
    ``edges`` (producer, consumer, label), pointing the way the data goes."""
    lines = [
        "digraph pipeline {",
        "  rankdir = LR;",
        '  node [fontname = "Helvetica"];',
        '  edge [fontname = "Helvetica", fontsize = 10];',
    ]
    for node in sorted(set(nodes)):
        kind = node.split(".")[-2] if node.count(".") >= 1 else ""
        lines.append(f'  "{node}" [shape = {_PIPELINE_SHAPES.get(kind, "box")}];')
    for a, b, label in sorted(set(edges)):
        lines.append(f'  "{a}" -> "{b}" [label = "{label}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


# Per action: the symbol `trainform plan` shows, and the node's colours and style in DOT.
_PLAN_STYLES = {
    ("create",): ("+", "#e6f4ea", "#1e8e3e", "filled"),
    ("update",): ("~", "#fef7e0", "#e37400", "filled"),
    ("delete",): ("-", "#fce8e6", "#d93025", "filled,dashed"),
    ("delete", "create"): ("-/+", "#fce8e6", "#d93025", "filled,bold"),
    ("create", "delete"): ("+/-", "#e6f4ea", "#d93025", "filled,bold"),
    ("no-op",): ("", "#f1f3f4", "#9aa0a6", "filled,dotted"),
}


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def plan_to_dot(plan: Plan) -> str:
    """The resources of a plan in Graphviz DOT, each labelled with its planned action as
    ``trainform plan`` names it (``+ attach``, ``~ update``, ``-/+ replace``, ``- destroy``,
    ``+ submit``...) and coloured by it; edges point from a resource to what it depends on.
    Resources with nothing to do are drawn grey and dotted."""
    changes = {c.address: c for c in plan.changes}
    lines = [
        "digraph trainform {",
        "  rankdir = LR;",
        '  node [shape = box, fontname = "Helvetica", style = filled];',
    ]
    for address in sorted(changes):
        c = changes[address]
        symbol, fill, colour, style = _PLAN_STYLES.get(c.actions, _PLAN_STYLES[("no-op",)])
        verb = "replace" if len(c.actions) == 2 else c.verb
        action = f"{symbol} {verb}" if symbol else "no changes"
        shape = "doubleoctagon" if len(c.actions) == 2 else "box"
        lines.append(
            f"  {_quoted(address)} [label = {_quoted(address)[:-1]}\\n{_quoted(action)[1:]}, "
            f"shape = {shape}, style = {_quoted(style)}, fillcolor = {_quoted(fill)}, "
            f"color = {_quoted(colour)}];"
        )
    edges = set()
    for address, c in changes.items():
        for block in c.depends_on:
            for other in changes:
                if other == block or other.startswith(block + "["):
                    edges.add((address, other))
    lines.extend(f"  {_quoted(a)} -> {_quoted(b)};" for a, b in sorted(edges))
    lines.append("}")
    return "\n".join(lines) + "\n"
