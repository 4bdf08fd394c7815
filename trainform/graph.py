"""The dependency graph: evaluation order, cycles, closures, and a DOT rendering.

The hot paths (ordering and cycle detection, run by every command) use the standard
library's :mod:`graphlib`; importing networkx costs about 0.2 s, more than a whole no-op plan
of a small configuration, so it is loaded only to render ``trainform graph``.
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Mapping


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
