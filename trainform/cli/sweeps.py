"""``trainform sweeps ...``: the sweep history, its trials and decisions, and cancelling."""

from __future__ import annotations

import json
from typing import Any

import click

from trainform.cli.context import (
    error_boundary,
    make_console,
    open_providers,
    open_store,
    print_lines,
)
from trainform.cli.runs import status_text
from trainform.errors import TrainformError


def _observe(store: Any, sweep: dict[str, Any]) -> dict[str, Any]:
    """The sweep, marked lost (and recorded so) if it has not ended but its controller is gone."""
    from trainform.providers.base import TERMINAL
    from trainform.state.locking import process_alive

    pid = sweep["record"].get("controller_pid")
    if sweep["status"] in TERMINAL or not pid or process_alive(int(pid), ""):
        return sweep
    message = f"the sweep controller (pid {pid}) ended before the sweep did"
    sweep = {**sweep, "status": "lost", "record": {**sweep["record"], "message": message}}
    store.put_sweep(sweep)
    return sweep


def _sweeps(store: Any) -> list[dict[str, Any]]:
    return [_observe(store, s) for s in store.sweeps()]


def _find_sweep(store: Any, ref: str) -> dict[str, Any]:
    """A sweep by id, or the latest sweep of an address (``sweep.tune`` or ``tune``)."""
    from trainform.config.schema import did_you_mean

    sweeps = _sweeps(store)
    address = ref if ref.startswith("sweep.") else f"sweep.{ref}"
    for s in sweeps:
        if s["id"] == ref:
            return dict(s)
    for s in sweeps:
        if s["address"] == address:
            return dict(s)
    names = sorted({s["id"] for s in sweeps} | {s["address"] for s in sweeps})
    hint = did_you_mean(ref, names)
    raise TrainformError(f"no sweep {ref!r} in the history" + (f"; {hint}" if hint else ""))


@click.group()
def sweeps() -> None:
    """Sweep history: list, show (trials, decisions, best), cancel."""


@sweeps.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sweeps_list(ctx: click.Context, as_json: bool) -> None:
    """List sweeps, newest first."""
    from rich.table import Table

    from trainform.runs.history import shown_time

    with error_boundary(ctx):
        store = open_store(ctx, optional=True)
        rows = _sweeps(store) if store else []
        if as_json:
            click.echo(
                json.dumps([{k: v for k, v in r.items() if k != "record"} for r in rows], indent=2)
            )
            return
        if not rows:
            print_lines(ctx, "No sweeps.")
            return
        table = Table(box=None, header_style="bold")
        for col in ("SWEEP", "ADDRESS", "STATUS", "TRIALS", "BEST", "CREATED"):
            table.add_column(col, no_wrap=True)
        for r in rows:
            best = (r["record"].get("best") or {}).get("best")
            table.add_row(
                r["id"],
                r["address"],
                status_text(r["status"]),
                str(len(r["record"].get("trials", []))),
                "" if best is None else f"{best:.6g}",
                shown_time(r["created"]),
            )
        make_console(ctx).print(table)


@sweeps.command("show")
@click.argument("sweep")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sweeps_show(ctx: click.Context, sweep: str, as_json: bool) -> None:
    """Trials with parameters, status, metric and why each stopped; the best trial."""
    from rich.markup import escape
    from rich.table import Table

    with error_boundary(ctx):
        s = _find_sweep(open_store(ctx), sweep)
        rec = s["record"]
        if as_json:
            click.echo(json.dumps(s, indent=2, sort_keys=True, default=str))
            return
        objective = rec.get("objective") or {}
        print_lines(
            ctx,
            [
                f"[bold]{escape(s['id'])}[/bold]  ({escape(s['address'])})  {status_text(s['status'])}",
                f"  objective  {objective.get('goal')} {objective.get('metric')}",
                f"  sampling   {(rec.get('sampling') or {}).get('algorithm')}"
                f"   policy {(rec.get('policy') or {}).get('name')}",
                f"  {escape(str(rec.get('message') or ''))}",
            ],
        )
        table = Table(box=None, header_style="bold")
        for col in ("#", "RUN", "PARAMETERS", "STATUS", "BEST", "LAST", "WHY IT STOPPED"):
            table.add_column(col)
        best_id = (rec.get("best") or {}).get("run_id")
        for t in rec.get("trials", []):
            params = ", ".join(
                f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in t["params"].items()
            )
            mark = " *" if t["run_id"] == best_id else ""
            table.add_row(
                str(t["index"]),
                t["run_id"] + mark,
                params,
                status_text(t["status"]),
                "" if t["best"] is None else f"{t['best']:.6g}",
                "" if t["last"] is None else f"{t['last']:.6g}",
                escape(t.get("stopped") or t.get("failure") or ""),
            )
        make_console(ctx).print(table)
        if best_id:
            print_lines(ctx, f"best trial (*): {escape(best_id)}")


@sweeps.command("cancel")
@click.argument("sweep")
@click.pass_context
def sweeps_cancel(ctx: click.Context, sweep: str) -> None:
    """Stop a sweep's controller and all its running trials."""
    from trainform.providers.base import TERMINAL

    with error_boundary(ctx):
        store = open_store(ctx)
        s = _find_sweep(store, sweep)
        if s["status"] in TERMINAL:
            print_lines(ctx, f"{s['id']} already ended: {status_text(s['status'])}")
            return
        resources = store.resources()
        computed = resources[s["address"]].computed if s["address"] in resources else {}
        if computed.get("sweep_id") != s["id"]:
            raise TrainformError(f"{s['id']} is not the current sweep of {s['address']}")
        open_providers(ctx, store).get("sweep").cancel_sweep(computed)
        s = _find_sweep(store, s["id"])
        print_lines(ctx, f"{s['id']}: {status_text(s['status'])}")
