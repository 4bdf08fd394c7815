"""``trainform runs ...`` and ``trainform submit``: the run history, logs, metrics and
outputs. History rows are updated without the state lock (they are keyed by run id and never
part of the managed state), so these commands work while an apply is waiting on a run."""

from __future__ import annotations

import json
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from trainform.cli.context import (
    config_dir,
    error_boundary,
    make_console,
    open_providers,
    open_store,
    print_lines,
)
from trainform.cli.loglines import inert
from trainform.errors import TrainformError

ACTIVE = ("queued", "preparing", "running")


def _find_run(store: Any, ref: str) -> dict[str, Any]:
    """A run by id, or the latest run of a run address."""
    from trainform.config.schema import did_you_mean

    runs = store.runs()
    for r in runs:
        if r["id"] == ref:
            return dict(r)
    for r in runs:  # newest first
        if r["address"] == ref:
            return dict(r)
    hint = did_you_mean(ref, sorted({r["id"] for r in runs} | {r["address"] for r in runs}))
    raise TrainformError(f"no run {ref!r} in the history" + (f"; {hint}" if hint else ""))


def _runs_at(store: Any, address: str | None) -> list[dict[str, Any]]:
    """Runs of one run address, or of every run a block or module address selects
    (``run.train`` covers ``run.train[0]``; ``module.team["a"]`` every run in it)."""
    from trainform.config.address import selects

    if address is None:
        return list(store.runs())
    exact = list(store.runs(address))
    if exact:
        return exact
    return [r for r in store.runs() if selects(address, r["address"])]


def _record(
    ctx: click.Context,
    store: Any,
    run: dict[str, Any],
    computed: dict[str, Any],
    results: dict[str, Any] | None,
) -> None:
    """Record how a run stands (with its results once it ended), showing on stderr what
    went wrong on the way that did not stop it (a continuous export that failed)."""
    from rich.markup import escape

    from trainform.runs.history import record_run

    for warning in record_run(store, run["address"], run["workspace"], computed, results):
        print_lines(ctx, f"[yellow]{run['address']}: warning: {escape(warning)}[/yellow]", True)


def _refresh(ctx: click.Context, store: Any, run: dict[str, Any]) -> dict[str, Any]:
    """Bring a run's history row up to date from its target (collecting it if it ended)."""
    from trainform.providers.base import TERMINAL
    from trainform.runs.history import run_computed

    if run["status"] in TERMINAL and run["record"].get("outputs_path"):
        return run
    provider = open_providers(ctx, store).get("run")
    computed = run_computed(run)
    computed.update(provider.status_of(computed))
    results = provider.collect(computed) if computed.get("status") in TERMINAL else None
    _record(ctx, store, run, computed, results)
    return _find_run(store, run["id"])


def _duration(run: dict[str, Any]) -> str:
    from datetime import datetime

    from trainform.units import format_duration

    rec = run["record"]
    start, end = rec.get("started") or run["created"], run["finished"]
    if not start:
        return ""
    try:
        t0 = datetime.fromisoformat(str(start).replace("Z", "+00:00"))
        t1 = datetime.fromisoformat(str(end).replace("Z", "+00:00")) if end else None
    except ValueError:
        return ""
    if t1 is None:
        return "running" if run["status"] in ACTIVE else ""
    return format_duration((t1 - t0).total_seconds())


@click.group()
def runs() -> None:
    """Run history: list, show, logs, metrics, compare, export, cancel, wait, outputs."""


@runs.command("list")
@click.option("--experiment", help="Only runs of this experiment.")
@click.option("--status", help="Only runs with this status.")
@click.option("--address", help="Only runs of this run resource.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def runs_list(
    ctx: click.Context,
    experiment: str | None,
    status: str | None,
    address: str | None,
    as_json: bool,
) -> None:
    """List runs, newest first."""
    from rich.table import Table

    from trainform.runs.history import shown_time

    with error_boundary(ctx):
        store = open_store(ctx, optional=True)
        for r in _runs_at(store, address) if store else []:
            if r["status"] in ACTIVE:
                _refresh(ctx, store, r)
        rows = [
            r
            for r in (_runs_at(store, address) if store else [])
            if (not experiment or r["experiment"] == experiment)
            and (not status or r["status"] == status)
        ]
        if as_json:
            click.echo(json.dumps([{k: r[k] for k in r if k != "record"} for r in rows], indent=2))
            return
        if not rows:
            print_lines(ctx, "No runs.")
            return
        table = Table(box=None, header_style="bold")
        for col in ("RUN", "ADDRESS", "EXPERIMENT", "STATUS", "CREATED", "DURATION"):
            table.add_column(col, no_wrap=True)
        for r in rows:
            table.add_row(
                r["id"],
                r["address"],
                r["experiment"] or "",
                status_text(r["status"]),
                shown_time(r["created"]),
                _duration(r),
            )

        make_console(ctx).print(table)


def status_text(status: str) -> str:
    colour = {
        "completed": "green",
        "failed": "red",
        "timed_out": "red",
        "lost": "red",
        "canceled": "yellow",
    }.get(status, "cyan")
    return f"[{colour}]{status}[/{colour}]"


@runs.command("show")
@click.argument("run")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def runs_show(ctx: click.Context, run: str, as_json: bool) -> None:
    """Status, exit code, timings, fingerprint, snapshot, git, params, metrics, outputs."""
    from rich.markup import escape

    with error_boundary(ctx):
        store = open_store(ctx)
        r = _refresh(ctx, store, _find_run(store, run))
        rec = r["record"]
        if as_json:
            out = {k: r[k] for k in r if k != "record"}
            out.update({k: v for k, v in rec.items() if k != "handle"})
            click.echo(json.dumps(out, indent=2, sort_keys=True, default=str))
            return
        git = rec.get("git") or {}
        lines = [
            f"[bold]{escape(r['id'])}[/bold]  ({escape(r['address'])})",
            f"  status       {status_text(r['status'])}"
            + (
                f"  [dim]{escape(str(rec.get('message')))}[/dim]"
                if rec.get("message") and r["status"] != "completed"
                else ""
            ),
            f"  exit code    {rec.get('exit_code') if rec.get('exit_code') is not None else '-'}",
            f"  experiment   {escape(str(r['experiment']))}",
            f"  compute      {escape(str(rec.get('compute_address')))}",
            f"  created      {r['created']}",
            f"  started      {rec.get('started') or '-'}",
            f"  finished     {r['finished'] or '-'}   ({_duration(r)})",
            f"  fingerprint  {str(r['fingerprint'])[:16]}",
            f"  snapshot     {str(rec.get('snapshot_id'))[:16]} ({rec.get('snapshot_files')} files)",
        ]
        if git:
            dirty = " (dirty)" if git.get("dirty") else ""
            lines.append(
                f"  git          {escape(str(git.get('repository')))} "
                f"{escape(str(git.get('branch')))}@{str(git.get('commit'))[:12]}{dirty}"
            )
        if rec.get("environment"):
            lines.append(f"  environment  {rec['environment']}")
        lines.extend(_attempt_lines(rec.get("attempts")))
        lines.extend(_spark_lines(rec.get("spark"), r["status"]))
        if rec.get("params"):
            lines.append("  params")
            lines.extend(
                f"    {escape(k)} = {escape(json.dumps(v))}" for k, v in rec["params"].items()
            )
        if rec.get("metrics"):
            lines.append("  metrics      last / min / max (points)")
            for name, m in sorted(rec["metrics"].items()):
                lines.append(
                    f"    {escape(name)}: {m['last']:.6g} / {m['min']:.6g} / {m['max']:.6g}"
                    f" ({m['count']})"
                )
        if rec.get("logged_tags"):
            lines.append("  tags         (logged by the script)")
            lines.extend(
                f"    {inert(k)} = {escape(json.dumps(v))}"
                for k, v in sorted(rec["logged_tags"].items())
            )
        if rec.get("models"):
            lines.append("  models       (flavors): folder in the outputs")
            lines.extend(
                f"    {inert(m['name'])} ({inert(', '.join(m['flavors']))}): {inert(m['path'])}"
                for m in rec["models"]
            )
        lines.append(f"  outputs      {escape(str(rec.get('outputs_path') or '-'))}")
        lines.extend(_data_lines(rec.get("inputs"), rec.get("outputs")))
        print_lines(ctx, lines)


def _data_lines(inputs: object, outputs: object) -> list[str]:
    """``runs show``'s lines for a run's inputs (content id, where from) and named outputs
    (content id, files, bytes)."""
    lines = []
    if isinstance(inputs, dict) and inputs:
        lines.append("  inputs       content id (from)")
        lines.extend(
            f"    {inert(str(name))}: {inert(str(v.get('id'))[:16])} ({inert(str(v.get('from')))})"
            for name, v in sorted(inputs.items())
            if isinstance(v, dict)
        )
    if isinstance(outputs, dict) and outputs:
        lines.append("  named outputs content id, files, bytes")
        lines.extend(
            f"    {inert(str(name))}: {inert(str(v.get('id'))[:16])}, {v.get('files')} file(s), "
            f"{v.get('bytes')} B"
            for name, v in sorted(outputs.items())
            if isinstance(v, dict)
        )
    return lines


def _spark_lines(spark: object, status: str) -> list[str]:
    """``runs show``'s line for a Spark driver's application: its id, and its web UI while
    the run runs (the driver serves it). The launcher's values: shown inert."""
    if not isinstance(spark, dict) or (not spark.get("app_id") and not spark.get("ui")):
        return []
    line = f"  spark app    {inert(str(spark.get('app_id') or '(id not logged)'))}"
    if spark.get("ui") and status in ("queued", "preparing", "running"):
        line += f"  UI {inert(str(spark['ui']))}"
    return [line]


def _attempt_lines(attempts: object) -> list[str]:
    """``runs show``'s lines for the attempts of a run Slurm requeued: number, host, start
    and end, and how each ended (the status file's values, so shown inert)."""
    if not isinstance(attempts, list) or not attempts:
        return []
    lines = [f"  attempts     {len(attempts)}"]
    for a in attempts[:100]:
        if not isinstance(a, dict):
            continue
        ended = f"{a.get('status') or '-'}" + (f": {a['message']}" if a.get("message") else "")
        if a.get("ended") == "requeued":
            ended += "; requeued by Slurm"
        lines.append(
            f"    {inert(str(a.get('attempt')))}  {inert(str(a.get('host') or '-'))}  "
            f"{inert(str(a.get('started') or '-'))} → {inert(str(a.get('finished') or '-'))}  "
            f"{inert(ended)}"
        )
    return lines


@runs.command("logs")
@click.argument("run")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the run ends.")
@click.option(
    "--node",
    type=int,
    metavar="N",
    help="The log of the node of rank N of a multi-node run (default: rank 0).",
)
@click.option(
    "--all-nodes",
    is_flag=True,
    help="Every node's log, each line prefixed with the run's address and the node's rank "
    "(run.ddp[1] | ...).",
)
@click.option(
    "--raw",
    is_flag=True,
    help="The log's bytes exactly as the run wrote them, control sequences included "
    "(by default they are shown as inert text, and colour is kept on a terminal).",
)
@click.pass_context
def runs_logs(
    ctx: click.Context, run: str, follow: bool, node: int | None, all_nodes: bool, raw: bool
) -> None:
    """Print a run's log (stdout and stderr). For a multi-node run, that is the log of
    rank 0 unless --node or --all-nodes says otherwise; --all-nodes shows the lines of a
    running run as they arrive (interleaved), and a finished run's one rank after another.
    The whole log is printed, whatever its size, in pieces of 1 MiB."""
    from trainform.runs.watch import NodeLog, collected_log

    with error_boundary(ctx):
        if node is not None and all_nodes:
            raise TrainformError("give --node N or --all-nodes, not both")
        if raw and all_nodes:
            raise TrainformError(
                "--raw shows one node's bytes unchanged: give --node N instead of --all-nodes"
            )
        store = open_store(ctx)
        r = _find_run(store, run)
        count = len(_node_names(ctx, r))
        if node is not None and not 0 <= node < count:
            nodes = f"{count} nodes (ranks 0 to {count - 1})" if count > 1 else "1 node (rank 0)"
            raise TrainformError(f"--node {node}: {r['address']} ({r['id']}) has {nodes}")
        ranks = list(range(count)) if all_nodes else [node or 0]
        show = _printer(ctx, r, count, prefix=len(ranks) > 1)

        def write(data: bytes) -> None:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()

        def log_of(rank: int) -> NodeLog:
            return NodeLog(rank, count, 0, write if raw else None)

        collected = Path(str(r["record"].get("workspace_path", ""))) / "runs" / r["id"]
        if r["status"] not in ACTIVE and (collected / "output.log").is_file():
            for rank in ranks:
                log = log_of(rank)
                if not log.feed_file(collected_log(collected, rank), show):
                    print_lines(ctx, f"(no log was collected from rank {rank})", stderr=True)
                log.flush(show)
            return
        if not r["record"].get("handle"):  # recorded before launch (an apply was killed)
            print_lines(ctx, f"{r['id']} has no log: it was never launched ({r['status']})", True)
            return
        if follow:
            _follow(ctx, store, r, show, ranks, raw=write if raw else None)
            return
        compute = open_providers(ctx, store).get(str(r["record"].get("compute_provider")))
        handle = r["record"]["handle"]
        read = 0
        for rank in ranks:
            log = log_of(rank)
            while True:  # to the end the log has now
                if count > 1:
                    chunk, log.offset = compute.logs(handle, log.offset, node=rank)
                else:
                    chunk, log.offset = compute.logs(handle, log.offset)
                if not chunk:
                    break
                read += len(chunk)
                log.feed(chunk, show)
            log.flush(show)
        if not read and r["status"] not in ACTIVE and not collected.is_dir():
            raise TrainformError(
                f"{r['id']}'s log is not on this machine: it was collected into {collected}, "
                "in the artifact store of the workspace block, a folder this machine does not "
                "have (state shared in PostgreSQL reaches machines that do not share that "
                "folder). Run `trainform runs logs` where the store is, or put the store on a "
                "shared file system; `runs show` and `runs metrics` work from here"
            )


def _node_names(ctx: click.Context, run: dict[str, Any]) -> list[str]:
    """The names of a run's nodes in rank order (one for a single-node run). Asks no
    target, so needs no secrets: the handle, or the cluster's registry, knows them."""
    from trainform.engine.session import DATA_DIR
    from trainform.providers.base import ProviderContext
    from trainform.providers.registry import Providers

    rec = run["record"]
    if not rec.get("handle") or not rec.get("compute_provider"):
        return [""]
    directory = config_dir(ctx).resolve()
    providers = Providers(ProviderContext(directory, directory / DATA_DIR))
    return list(providers.get(str(rec["compute_provider"])).nodes(rec["handle"])) or [""]


def _printer(
    ctx: click.Context, run: dict[str, Any], count: int, prefix: bool
) -> Callable[[str], None]:
    """What shows a run's log lines: made inert for the terminal (colour kept if ours is in
    colour: see trainform.cli.loglines) and, with ``prefix``, each under the run's address
    and the rank of its node (``run.ddp[1] | ...``, as apply shows them)."""
    from trainform.cli.loglines import prefix_width, prefixed, shown

    width = prefix_width([(run["address"], count)])
    colour = make_console(ctx).color_system is not None

    def show(line: str) -> None:
        text = prefixed(run["address"], line, width, colour) if prefix else shown(line, colour)
        click.echo(text, color=True)  # nothing left for click to strip

    return show


def _follow(
    ctx: click.Context,
    store: Any,
    run: dict[str, Any],
    show: Callable[[str], None] | None,
    ranks: list[int] | None = None,
    raw: Callable[[bytes], None] | None = None,
) -> dict[str, Any]:
    """Follow a run to its end, showing with ``show`` (None: not at all) the log lines of
    its nodes of rank ``ranks`` (default: every node), or passing their bytes to ``raw``,
    then record how it ended."""
    from trainform.runs.history import run_computed
    from trainform.runs.watch import follow

    provider = open_providers(ctx, store).get("run")

    def on_status(status: str, message: str) -> None:
        if status in ACTIVE:  # the end is reported by the caller
            print_lines(ctx, f"[cyan]{run['id']}: {status}[/cyan]", stderr=True)

    computed, results, _ = follow(
        provider,
        run_computed(run),
        show or (lambda line: None),
        on_status,
        threading.Event(),
        ranks=ranks,
        from_start=True,
        raw=raw,
    )
    _record(ctx, store, run, computed, results)
    return _find_run(store, run["id"])


def _all_lines(ctx: click.Context, run: dict[str, Any]) -> Callable[[str], None]:
    """Shows every node's lines of a run, a multi-node run's prefixed with their rank."""
    count = len(_node_names(ctx, run))
    return _printer(ctx, run, count, prefix=count > 1)


@runs.command("wait")
@click.argument("run")
@click.option("--quiet", is_flag=True, help="Do not print the log.")
@click.pass_context
def runs_wait(ctx: click.Context, run: str, quiet: bool) -> None:
    """Wait for a run to end (printing its log); exit 1 unless it completed."""
    with error_boundary(ctx):
        store = open_store(ctx)
        r = _find_run(store, run)
        if r["status"] in ACTIVE:
            r = _follow(ctx, store, r, None if quiet else _all_lines(ctx, r))
        else:
            r = _refresh(ctx, store, r)
        message = r["record"].get("message") if r["status"] != "completed" else None
        print_lines(
            ctx, f"{r['id']}: {status_text(r['status'])}" + (f": {message}" if message else "")
        )
        if r["status"] != "completed":
            raise SystemExit(1)


@runs.command("cancel")
@click.argument("run")
@click.pass_context
def runs_cancel(ctx: click.Context, run: str) -> None:
    """Stop a run and everything it started."""
    from trainform.providers.base import TERMINAL
    from trainform.runs.history import run_computed

    with error_boundary(ctx):
        store = open_store(ctx)
        r = _find_run(store, run)
        if r["status"] in TERMINAL:
            print_lines(ctx, f"{r['id']} already ended: {status_text(r['status'])}")
            return
        provider = open_providers(ctx, store).get("run")
        computed = run_computed(r)
        computed.update(provider.stop(computed, 30))
        results = provider.collect(computed) if computed.get("status") in TERMINAL else None
        _record(ctx, store, r, computed, results)
        print_lines(ctx, f"{r['id']}: {status_text(str(computed.get('status')))}")


@runs.command("metrics")
@click.argument("run")
@click.option("--json", "as_json", is_flag=True)
@click.option("--chart", metavar="NAME", help="Draw this metric over its steps.")
@click.option(
    "-f",
    "--follow",
    is_flag=True,
    help="Print each point and param as it arrives (JSON lines with --json) until the run ends.",
)
@click.pass_context
def runs_metrics(
    ctx: click.Context, run: str, as_json: bool, chart: str | None, follow: bool
) -> None:
    """A run's metrics: a table of each metric, or a terminal chart of one. A running run's
    are read from its target, as logged so far."""
    from rich.table import Table

    from trainform.cli.chart import line_chart, metric_series
    from trainform.runs.history import run_computed
    from trainform.runs.metrics_stream import MetricsStream
    from trainform.runs.results import summarise

    with error_boundary(ctx):
        if follow and chart:
            raise TrainformError("--follow prints points as they arrive: give it without --chart")
        store = open_store(ctx)
        r = _refresh(ctx, store, _find_run(store, run))
        if follow:
            _follow_metrics(ctx, store, r, as_json)
            return
        points, params = store.metrics(r["id"]), r["record"].get("params", {})
        if r["status"] in ACTIVE and r["record"].get("handle"):
            provider = open_providers(ctx, store).get("run")
            points, params = MetricsStream(provider, run_computed(r)).read()
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "run": r["id"],
                        "params": params,
                        "summary": summarise(points),
                        "points": points,
                    },
                    indent=2,
                )
            )
            return
        if not points:
            print_lines(ctx, f"{r['id']} reported no metrics.")
            return
        if chart:
            series = metric_series(chart, points, chart)
            if series is None:
                raise TrainformError(f"{r['id']} has no metric {chart!r}")
            con = make_console(ctx)
            con.print(line_chart(chart, [series], columns=con.width))
            return
        table = Table(box=None, header_style="bold")
        for col in ("METRIC", "LAST", "MIN", "MAX", "POINTS", "LAST STEP"):
            table.add_column(col)
        for name, m in sorted(summarise(points).items()):
            table.add_row(
                name,
                f"{m['last']:.6g}",
                f"{m['min']:.6g}",
                f"{m['max']:.6g}",
                str(m["count"]),
                str(m.get("last_step")),
            )
        make_console(ctx).print(table)


def _follow_metrics(ctx: click.Context, store: Any, run: dict[str, Any], as_json: bool) -> None:
    """Print a run's params and metric points, one a line (JSON lines with ``as_json``), as
    they arrive on its target, until it ends; then record how it ended. A run that already
    ended has its collected ones printed."""
    import time

    from trainform.providers.base import TERMINAL
    from trainform.runs.history import run_computed
    from trainform.runs.metrics_stream import MetricsStream
    from trainform.runs.watch import POLL_SECONDS, neutralise

    # Names and values come from the target: shown as inert text, never as markup.
    def show(points: list[dict[str, Any]], params: dict[str, Any]) -> None:
        for name, value in params.items():
            if as_json:
                click.echo(json.dumps({"kind": "param", "name": name, "value": value}))
            else:
                click.echo(neutralise(f"param {name} = {value}"))
        for p in points:
            if as_json:
                click.echo(json.dumps({"kind": "metric", **p}))
            else:
                value = p["value"]
                shown = f"{value:.6g}" if value is not None else p.get("nonfinite", "(none)")
                step = "" if p.get("step") is None else f" (step {p['step']})"
                click.echo(neutralise(f"{p['name']} = {shown}{step}"))

    if run["status"] not in ACTIVE or not run["record"].get("handle"):
        show(store.metrics(run["id"]), run["record"].get("params", {}))
        return
    provider = open_providers(ctx, store).get("run")
    computed = run_computed(run)
    stream = MetricsStream(provider, computed)
    while True:
        computed.update(provider.status_of(computed))
        # Read after the status: once it is final, the stream has every line.
        show(*stream.read())
        if computed.get("status") in TERMINAL:
            break
        time.sleep(POLL_SECONDS)
    _record(ctx, store, run, computed, provider.collect(computed))


@runs.command("outputs")
@click.argument("run")
@click.option(
    "--to",
    "dest",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder to copy the outputs into (created).",
)
@click.pass_context
def runs_outputs(ctx: click.Context, run: str, dest: str) -> None:
    """Copy a run's outputs folder to DIR."""
    with error_boundary(ctx):
        store = open_store(ctx)
        r = _refresh(ctx, store, _find_run(store, run))
        src = r["record"].get("outputs_path")
        if not src or not Path(src).is_dir():
            raise TrainformError(f"{r['id']} has no collected outputs (status {r['status']})")
        shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)
        count = sum(1 for p in Path(dest).rglob("*") if p.is_file())
        print_lines(ctx, f"Copied {count} file(s) of {r['id']} to {dest}")


@click.command("submit")
@click.argument("script")
@click.argument("arguments", nargs=-1)
@click.option(
    "--compute",
    "compute_name",
    required=True,
    metavar="NAME",
    help="A compute in the state (e.g. local or compute.local).",
)
@click.option("--environment", "env_name", metavar="NAME", help="An environment in the state.")
@click.option("--workspace", "ws_name", metavar="NAME", help="A workspace in the state.")
@click.option("--source-dir", default=".", show_default=True)
@click.option("--experiment", default="adhoc", show_default=True)
@click.option("--max-duration", help="Time limit such as 90s or 2h.")
@click.option("--detach", is_flag=True, help="Return once submitted.")
@click.pass_context
def submit(
    ctx: click.Context,
    script: str,
    arguments: tuple[str, ...],
    compute_name: str,
    env_name: str | None,
    ws_name: str | None,
    source_dir: str,
    experiment: str,
    max_duration: str | None,
    detach: bool,
) -> None:
    """Run SCRIPT once on a compute target, recorded in the run history but not managed
    (arguments after `--` reach the script as written)."""
    from trainform.runs.history import record_run

    with error_boundary(ctx):
        store = open_store(ctx)
        resources = store.resources()

        def pick(kind: str, name: str | None) -> dict[str, Any] | None:
            if name is None:
                return None
            address = name if name.startswith(kind + ".") else f"{kind}.{name}"
            if address not in resources:
                raise TrainformError(f"no {address} in the state; apply it first")
            r = resources[address]
            return {**r.attributes, **r.computed, "address": address, "type": r.provider}

        desired = {
            "compute": pick("compute", compute_name),
            "environment": pick("environment", env_name),
            "workspace": pick("workspace", ws_name),
            "source_dir": source_dir,
            "script": script,
            "command": None,
            "arguments": list(arguments),
            "env": {},
            "node_count": 1,
            "experiment": experiment,
            "max_duration": max_duration,
            "metrics": {},
            "outputs_dir": "outputs",
            "grace_period": "10s",
        }
        provider = open_providers(ctx, store).get("run")
        problems = provider.validate("submit", desired)
        if problems:
            raise TrainformError("; ".join(problems))
        address = f"submit.{Path(script).stem}"
        computed = provider.create(address, desired)
        workspace = (ws_name and f"workspace.{ws_name.removeprefix('workspace.')}") or "default"
        record_run(store, address, workspace, computed)
        print_lines(ctx, f"Submitted {computed['run_id']}")
        if detach:
            return
        r = _find_run(store, computed["run_id"])
        r = _follow(ctx, store, r, _all_lines(ctx, r))
        message = r["record"].get("message") if r["status"] != "completed" else None
        print_lines(
            ctx, f"{r['id']}: {status_text(r['status'])}" + (f": {message}" if message else "")
        )
        if r["status"] != "completed":
            raise SystemExit(1)
