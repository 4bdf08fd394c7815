"""``trainform compute show|reconcile NAME``: a compute target as it is now; for a
docker-cluster, its nodes (state, the run each serves, idle time) and its queue."""

from __future__ import annotations

import json
from typing import Any

import click

from trainform.cli.context import error_boundary, open_providers, open_store, print_lines
from trainform.errors import TrainformError


@click.group()
def compute() -> None:
    """Inspect compute targets; scale clusters down."""


def _describe(ctx: click.Context, name: str) -> tuple[str, dict[str, Any]]:
    from trainform.config.schema import did_you_mean

    address = name if name.startswith("compute.") else f"compute.{name}"
    store = open_store(ctx)
    resources = store.resources()
    resource = resources.get(address)
    if resource is None:
        known = sorted(a for a in resources if a.startswith("compute."))
        hint = did_you_mean(address, known)
        raise TrainformError(
            f"no {address} in the state"
            + (f"; {hint}" if hint else "")
            + ("" if known else " (nothing has been applied)")
        )
    return address, open_providers(ctx, store).get(resource.provider).describe(resource)


def _node_lines(info: dict[str, Any]) -> list[str]:
    lines = [
        f"nodes: {len(info['nodes'])} (min_nodes {info['min_nodes']}, max_nodes "
        f"{info['max_nodes']}, idle_timeout {info['idle_timeout']:.0f}s)"
    ]
    if info["nodes"]:
        lines.append(f"  {'NODE':<24} {'STATE':<8} {'ADDRESS':<16} RUN / IDLE")
    for node in info["nodes"]:
        doing = node["run"] or f"idle {node['idle_seconds']}s"
        lines.append(f"  {node['name']:<24} {node['state']:<8} {node['address']:<16} {doing}")
    for entry in info["queue"]:
        lines.append(f"queued: {entry['run_id']} ({entry['node_count']} node(s))")
    return lines


@compute.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def compute_show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show a compute target: facts, or a cluster's nodes and queue."""
    with error_boundary(ctx):
        address, info = _describe(ctx, name)
    if as_json:
        click.echo(json.dumps({"address": address, **info}, indent=2, default=str))
        return
    lines = [address]
    lines += [f"  {a}" for a in info.get("actions") or []]
    if "nodes" in info:
        lines += _node_lines(info)
    else:
        lines += [f"  {k} = {json.dumps(v, default=str)}" for k, v in sorted(info.items())]
    print_lines(ctx, lines)


@compute.command("reconcile")
@click.argument("name")
@click.pass_context
def compute_reconcile(ctx: click.Context, name: str) -> None:
    """Release nodes of finished runs, start queued runs, remove nodes idle too long."""
    with error_boundary(ctx):
        address, info = _describe(ctx, name)
    actions = info.get("actions") or ["nothing to do"]
    lines = [f"{address}: {a}" for a in actions]
    print_lines(ctx, lines + (_node_lines(info) if "nodes" in info else []))
