"""``trainform runs export``: push runs of the history to an MLflow tracking server (the work
is done by trainform.runs.mlflow_export; this module chooses the runs and prints)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import click

from trainform.cli.context import error_boundary, open_store, print_lines
from trainform.cli.runs import _find_run, runs
from trainform.errors import TrainformError


def _selected(
    store: Any, refs: tuple[str, ...], experiment: str | None, sweep: str | None
) -> list[dict[str, Any]]:
    """The runs RUN..., --experiment or --sweep name, each once: RUNs in the order given, a
    sweep's trials in its order, else (every run of the history if none) oldest first."""
    from trainform.cli.sweeps import _find_sweep

    if refs:
        chosen = [_find_run(store, ref) for ref in refs]
    elif sweep:
        s = _find_sweep(store, sweep)
        ids = [t.get("run_id") for t in s["record"].get("trials") or [] if isinstance(t, dict)]
        by_id = {r["id"]: r for r in store.runs(limit=1_000_000) if r["id"] in ids}
        chosen = [by_id[i] for i in ids if i in by_id]
        if not chosen:
            raise TrainformError(f"sweep {s['id']} has no trial in the run history")
    else:
        chosen = [
            r
            for r in reversed(store.runs(limit=1_000_000))
            if experiment is None or r["experiment"] == experiment
        ]
        if experiment is not None and not chosen:
            raise TrainformError(f"no run of experiment {experiment!r} in the history")
    unique = {r["id"]: r for r in chosen}
    return list(unique.values())


@runs.command("export")
@click.argument("run_refs", nargs=-1, metavar="[RUN]...")
@click.option(
    "--mlflow",
    "uri",
    required=True,
    metavar="URI",
    help="The MLflow tracking server, http(s)://HOST[:PORT]. Credentials: "
    "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN.",
)
@click.option("--experiment", help="Every run of this experiment.")
@click.option("--sweep", help="Every trial of this sweep (an id, or an address: its latest).")
@click.option("--json", "as_json", is_flag=True, help="What was done, as JSON.")
@click.pass_context
def runs_export(
    ctx: click.Context,
    run_refs: tuple[str, ...],
    uri: str,
    experiment: str | None,
    sweep: str | None,
    as_json: bool,
) -> None:
    """Export runs (every run of the history if none is named) to an MLflow tracking
    server: params, metrics with their steps, tags, status and outputs. Idempotent: a run
    exported before is found by its trainform.run_id tag and not sent again."""
    from rich.markup import escape

    from trainform.runs.mlflow_export import export_runs
    from trainform.runs.mlflow_rest import MlflowServer

    with error_boundary(ctx):
        if sum(map(bool, (run_refs, experiment, sweep))) > 1:
            raise TrainformError("give runs, --experiment or --sweep, not several of them")
        server = MlflowServer(uri)
        store = open_store(ctx)
        chosen = _selected(store, run_refs, experiment, sweep)
        done = []
        for outcome in export_runs(server, store, chosen):
            done.append(outcome)
            if as_json:
                continue
            name = escape(outcome.run_id)
            if outcome.action == "skipped":
                line = f"{name}: [yellow]skipped[/yellow]"
            else:
                where = escape(server.run_url(outcome.experiment_id, outcome.mlflow_run_id))
                line = {
                    "unchanged": f"{name}: already exported ({where})",
                    "exported": f"{name}: exported ({where})",
                    "replaced": f"{name}: exported again, replacing an export that was cut off "
                    f"({where})",
                }[outcome.action]
                if outcome.action != "unchanged":
                    line += (
                        f"; {outcome.params} params, {outcome.metrics} metric points, "
                        f"{outcome.artifacts} output file(s)"
                    )
            print_lines(ctx, line)
            for note in outcome.notes:
                print_lines(ctx, f"  [yellow]{escape(note)}[/yellow]")
        if as_json:
            click.echo(json.dumps([dataclasses.asdict(d) for d in done], indent=2))
            return
        counts = {
            action: sum(d.action == action for d in done)
            for action in ("exported", "replaced", "unchanged", "skipped")
        }
        print_lines(
            ctx,
            f"{counts['exported'] + counts['replaced']} run(s) exported to {escape(server.uri)}, "
            f"{counts['unchanged']} already there, {counts['skipped']} skipped.",
        )
