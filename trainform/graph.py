"""The dependency graph (networkx): ordering, cycles, and what depends on what."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import networkx as nx


def build(edges: Mapping[str, Iterable[str]]) -> nx.DiGraph:
    """A graph with an edge ``node -> dependency`` for each entry."""
    g = nx.DiGraph()
    for node, targets in edges.items():
        g.add_node(node)
        for t in targets:
            g.add_edge(node, t)
    return g


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str]:
    """The nodes of one dependency cycle, in order, or ``[]``."""
    try:
        cycle = nx.find_cycle(build(edges))
    except nx.NetworkXNoCycle:
        return []
    return [a for a, _ in cycle]


def evaluation_order(edges: Mapping[str, Iterable[str]]) -> list[str]:
    """Nodes ordered so every node comes after what it depends on (ties broken by name)."""
    g = build(edges)
    return list(nx.lexicographical_topological_sort(g.reverse(copy=False)))


def dependencies_closure(edges: Mapping[str, Iterable[str]], nodes: Iterable[str]) -> set[str]:
    """``nodes`` and everything they depend on, transitively."""
    g = build(edges)
    out: set[str] = set()
    for n in nodes:
        if n in g:
            out.add(n)
            out |= nx.descendants(g, n)
    return out


def to_dot(edges: Mapping[str, Iterable[str]]) -> str:
    """A Graphviz DOT rendering, edges pointing from a node to what it depends on."""
    lines = ["digraph trainform {", "  rankdir = LR;", '  node [shape = box, fontname = "Helvetica"];']
    for node in sorted(edges):
        lines.append(f'  "{node}";')
    for node in sorted(edges):
        for dep in sorted(edges[node]):
            lines.append(f'  "{node}" -> "{dep}";')
    lines.append("}")
    return "\n".join(lines) + "\n"
