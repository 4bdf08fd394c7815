"""``trainform compute show|reconcile NAME``: a compute target as it is now; for a
docker-cluster, its nodes (state, the run each serves, idle time) and its queue; for a slurm
compute, its partitions, the queue of its jobs (with why each waits) and its nodes."""

from __future__ import annotations

import json
from typing import Any

import click

from trainform.cli.context import error_boundary, open_providers, open_store, print_lines
from trainform.cli.loglines import inert
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
    info = open_providers(ctx, store).get(resource.provider).describe(resource)
    if "jobs" in info:
        _with_run_addresses(store, info)
    return address, info


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


def _duration(seconds: Any) -> str:
    """``1-02:03:04``-style time for a number of seconds; ``-`` for none (no limit)."""
    if not isinstance(seconds, int):
        return "-"
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{text}" if days else text


def _slurm_lines(info: dict[str, Any]) -> list[str]:
    """A slurm compute's partitions, the queue of its jobs and its nodes, as tables."""
    lines = [f"slurm {info.get('slurm_version') or '?'}", "partitions:"]
    lines.append(
        f"  {'PARTITION':<16} {'STATE':<6} {'NODES':>5} {'CPUS':>5} {'MEMORY':>9} "
        f"{'GPUS':>4}  TIME LIMIT"
    )
    for p in info["partitions"]:
        name = p["name"] + ("*" if p.get("default") else "")
        lines.append(
            f"  {name:<16} {p['state']:<6} {p['nodes']:>5} {p['cpus']:>5} "
            f"{str(p['memory_mb']) + 'M':>9} {p['gpus']:>4}  {_duration(p['time_limit'])}"
        )
    lines.append(f"jobs of this compute: {len(info['jobs'])}")
    if info["jobs"]:
        lines.append(f"  {'JOB':<12} {'RUN':<40} {'STATE':<10} {'TIME':>9}  REASON")
    for job in info["jobs"]:
        run = job.get("address") or job.get("run_id") or "-"
        if job.get("address") and job.get("run_id"):
            run = f"{job['address']} ({job['run_id']})"
        lines.append(
            f"  {job['job_id']:<12} {run:<40} {job['state']:<10} "
            f"{_duration(job['elapsed']):>9}  {job['reason'] or '-'}"
        )
    lines.append("nodes:")
    lines.append(f"  {'NODE':<16} {'STATE':<12} {'CPUS':>5} {'MEMORY':>9}  PARTITIONS")
    for n in info["nodes"]:
        lines.append(
            f"  {n['name']:<16} {n['state']:<12} {n['cpus']:>5} {str(n['memory_mb']) + 'M':>9}"
            f"  {','.join(n['partitions'])}"
            + (f"  gres {','.join(n['gres'])}" if n["gres"] else "")
        )
    return lines


def _spark_lines(store: Any, address: str, info: dict[str, Any]) -> list[str]:
    """A spark compute's master, workers and applications (each named by the run of this
    compute whose driver it was, from the run history), as tables. Names come from the
    cluster: inert."""
    facts = info.get("facts") or {}
    lines = [
        f"spark {facts.get('spark_version') or '?'}, master {inert(str(info.get('master')))}"
        + (f" ({facts['master_status']})" if facts.get("master_status") else "")
    ]
    if "workers" not in info:
        return [*lines, f"  cores {facts.get('cores', '?')}"]
    runs = {
        r["record"]["spark"]["app_id"]: r.get("address")
        for r in store.runs()
        if r["record"].get("compute_address") == address
        and isinstance(r["record"].get("spark"), dict)
        and r["record"]["spark"].get("app_id")
    }
    lines.append("workers:")
    lines.append(f"  {'WORKER':<44} {'STATE':<8} {'CORES':>7} {'MEMORY (MB)':>13}")
    for w in info["workers"]:
        lines.append(
            f"  {inert(w['id']):<44} {inert(w['state']):<8} {w['cores']:>7} {w['memory_mb']:>13}"
        )
    lines.append("applications:")
    lines.append(f"  {'APPLICATION':<28} {'STATE':<10} {'CORES':>5}  RUN (NAME)")
    for a in info["applications"]:
        run = runs.get(a["id"]) or "-"
        lines.append(
            f"  {inert(a['id']):<28} {inert(a['state']):<10} {a['cores']:>5}  "
            f"{run} ({inert(a['name'])})"
        )
    return lines


def _with_run_addresses(store: Any, info: dict[str, Any]) -> None:
    """Name the run each queued job is (its address, from the run history)."""
    ids = {job["run_id"] for job in info.get("jobs") or [] if job.get("run_id")}
    if not ids:
        return
    addresses = {r["id"]: r.get("address") for r in store.runs() if r["id"] in ids}
    for job in info["jobs"]:
        job["address"] = addresses.get(job.get("run_id"))


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
    if "partitions" in info:
        lines += _slurm_lines(info)
    elif "master" in info:
        with error_boundary(ctx):
            lines += _spark_lines(open_store(ctx), address, info)
    elif "nodes" in info:
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
