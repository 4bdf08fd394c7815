"""``trainform runs compare``: the params and metrics of several runs side by side, one
column per run, rows whose values differ marked with ``*``; with ``--metric``, one metric of
every run in one terminal chart (trainform.cli.chart).

For each metric the table shows its last value and its best one, the best being the minimum
or the maximum by the metric's goal, decided in this order:

1. ``--goal NAME=min|max``;
2. the objective of a sweep one of the runs is a trial of, when that objective is NAME;
3. the name: a metric whose name has a word that is usually maximised (accuracy, acc, auc,
   precision, recall, f1, score, r2, iou, dice, bleu, rouge, reward, return, ndcg, mrr,
   top1, top5, ...) is maximised, any other (loss, error, mse, perplexity, ...) minimised,
   as Keras's ``mode="auto"`` decides.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import click

from trainform.cli.context import error_boundary, make_console, open_store, print_lines
from trainform.cli.runs import _find_run, _refresh, _runs_at, status_text
from trainform.errors import TrainformError

# Words of a metric's name that mean "higher is better" (see the module docstring).
MAXIMISED = frozenset(
    [
        "acc",
        "accuracy",
        "auc",
        "auroc",
        "auprc",
        "precision",
        "recall",
        "f1",
        "fscore",
        "f1score",
        "score",
        "r2",
        "iou",
        "miou",
        "dice",
        "map",
        "bleu",
        "rouge",
        "reward",
        "rewards",
        "return",
        "returns",
        "ndcg",
        "mrr",
        "hits",
        "sharpe",
    ]
)
GOALS = {"min": "min", "minimize": "min", "max": "max", "maximize": "max"}
CELL = 40  # longest param value shown in a cell; --json has them whole
MISSING = object()  # a run that has no value for a row (differs from every value)


def goal_from_name(name: str) -> str:
    """``max`` if a word of ``name`` (split at non-letters and at camelCase) is one usually
    maximised, else ``min``."""
    words = re.findall(r"[a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower())
    maximised = any(w in MAXIMISED or re.fullmatch(r"top\d+", w) for w in words)
    return "max" if maximised else "min"


def parse_goals(specs: tuple[str, ...]) -> dict[str, str]:
    """``--goal NAME=min|max`` options as {NAME: "min" or "max"}; raises TrainformError for
    one that is not of that form."""
    goals: dict[str, str] = {}
    for spec in specs:
        name, sep, goal = spec.rpartition("=")
        if not sep or not name or goal.lower() not in GOALS:
            raise TrainformError(f"--goal {spec!r}: give NAME=min or NAME=max (e.g. loss=min)")
        goals[name] = GOALS[goal.lower()]
    return goals


def sweep_trials(store: Any) -> dict[str, dict[str, Any]]:
    """Every sweep trial in the history by run id: its sweep's id, its index, the
    hyperparameters the sweep gave it and the sweep's objective (metric and goal)."""
    trials: dict[str, dict[str, Any]] = {}
    for sweep in reversed(store.sweeps()):  # newest last, so it wins a (never seen) tie
        record = sweep["record"]
        for trial in record.get("trials") or []:
            if isinstance(trial, dict) and isinstance(trial.get("run_id"), str):
                trials[trial["run_id"]] = {
                    "sweep": sweep["id"],
                    "index": trial.get("index"),
                    "params": trial.get("params") if isinstance(trial.get("params"), dict) else {},
                    "objective": record.get("objective") or {},
                }
    return trials


def _jsonable(value: Any) -> Any:
    """``value`` with its non-finite floats as strings ("nan", "inf"): JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _differs(values: list[Any]) -> bool:
    keys = [
        "\0missing" if v is MISSING else json.dumps(_jsonable(v), sort_keys=True, default=str)
        for v in values
    ]
    return len(set(keys)) > 1


def comparison(
    runs: list[dict[str, Any]],
    points: dict[str, list[dict[str, Any]]],
    trials: dict[str, dict[str, Any]],
    goals: dict[str, str],
) -> dict[str, Any]:
    """What `runs compare --json` prints, and the table shows: the runs (id, address,
    status, experiment, sweep trial), then per param and per metric one value per run, in
    the order of ``runs`` (None where a run has none), and whether they differ.

    ``points`` are each run's metric points by run id, ``trials`` what
    :func:`sweep_trials` returns, ``goals`` the ``--goal`` options. A param is a run's
    logged param or, for a sweep trial, a hyperparameter the sweep gave it (which wins over
    a logged param of the same name). A metric's values are its last and its best finite
    value (see the module docstring for the goal); ``differs`` says whether they differ."""
    from trainform.runs.results import summarise

    params: list[dict[str, Any]] = []
    for r in runs:
        logged = r["record"].get("params")
        trial = trials.get(r["id"])
        params.append(
            {**(logged if isinstance(logged, dict) else {}), **(trial["params"] if trial else {})}
        )
    param_names = sorted({name for p in params for name in p})
    summaries = [summarise(points.get(r["id"], [])) for r in runs]
    metric_names = sorted({name for s in summaries for name in s})
    unknown = sorted(set(goals) - set(metric_names))
    if unknown:
        raise TrainformError(
            f"--goal {unknown[0]}: none of the runs has a metric {unknown[0]!r}"
            + f" ({_names_of(points)})"
        )
    objectives = {
        t["objective"].get("metric"): GOALS.get(str(t["objective"].get("goal")))
        for r in runs
        if (t := trials.get(r["id"]))
    }

    out: dict[str, Any] = {
        "runs": [
            {
                "id": r["id"],
                "address": r["address"],
                "status": r["status"],
                "experiment": r["experiment"],
                "sweep": (
                    {"id": trials[r["id"]]["sweep"], "trial": trials[r["id"]]["index"]}
                    if r["id"] in trials
                    else None
                ),
            }
            for r in runs
        ],
        "params": {},
        "metrics": {},
    }
    for name in param_names:
        values = [p.get(name, MISSING) for p in params]
        out["params"][name] = {
            "values": [None if v is MISSING else _jsonable(v) for v in values],
            "differs": _differs(values),
        }
    for name in metric_names:
        if name in goals:
            goal, source = goals[name], "option"
        elif objectives.get(name):
            goal, source = str(objectives[name]), "sweep"
        else:
            goal, source = goal_from_name(name), "name"
        last = [s[name]["last"] if name in s else MISSING for s in summaries]
        best = [s[name][goal] if name in s else MISSING for s in summaries]
        out["metrics"][name] = {
            "goal": goal,
            "goal_from": source,
            "points": [s[name]["count"] if name in s else 0 for s in summaries],
            "last": {
                "values": [None if v is MISSING else v for v in last],
                "differs": _differs(last),
            },
            "best": {
                "values": [None if v is MISSING else v for v in best],
                "differs": _differs(best),
            },
        }
    return out


@click.command("compare")
@click.argument("refs", nargs=-1, metavar="[RUN]...")
@click.option(
    "--sweep",
    "sweep_ref",
    metavar="S",
    help="Also every trial of this sweep (a sweep id, or an address for its latest sweep).",
)
@click.option(
    "--address",
    metavar="A",
    help="Also every run of this run address in the history, oldest first.",
)
@click.option("--metric", metavar="NAME", help="Chart this metric of every run in one chart.")
@click.option(
    "--goal",
    "goal_specs",
    multiple=True,
    metavar="NAME=min|max",
    help="Whether the best value of metric NAME is its minimum or its maximum (repeatable; "
    "default: a sweep's objective, else from the name: accuracy, f1, score... max, others min).",
)
@click.option("--json", "as_json", is_flag=True, help="The same content as JSON.")
@click.pass_context
def compare(
    ctx: click.Context,
    refs: tuple[str, ...],
    sweep_ref: str | None,
    address: str | None,
    metric: str | None,
    goal_specs: tuple[str, ...],
    as_json: bool,
) -> None:
    """Params and metrics (last and best) of several runs side by side, `*` marking the
    rows whose values differ; with --metric, that metric of every run in one chart. RUN is
    a run id or a run address (its latest run)."""
    from rich.markup import escape

    from trainform.cli.chart import line_chart, metric_series
    from trainform.cli.sweeps import _find_sweep

    with error_boundary(ctx):
        goals = parse_goals(goal_specs)
        store = open_store(ctx)
        chosen = [_find_run(store, ref) for ref in refs]
        trials = sweep_trials(store)
        if sweep_ref:
            sweep = _find_sweep(store, sweep_ref)
            run_ids = [
                t["run_id"]
                for t in sorted(
                    (t for t in sweep["record"].get("trials") or [] if isinstance(t, dict)),
                    key=lambda t: int(t.get("index") or 0),
                )
            ]
            chosen.extend(_find_run(store, run_id) for run_id in run_ids)
        if address:
            of_address = list(reversed(_runs_at(store, address)))
            if not of_address:
                raise TrainformError(f"no run of {address} in the history")
            chosen.extend(of_address)
        runs: list[dict[str, Any]] = []
        for r in chosen:
            if r["id"] not in {x["id"] for x in runs}:
                runs.append(_refresh(ctx, store, r))
        if len(runs) < 2:
            given = f" (got only {runs[0]['id']})" if runs else ""
            raise TrainformError(
                "runs compare needs at least two runs: give two or more RUN arguments "
                f"(run ids or addresses), --sweep S or --address A{given}"
            )
        points = {r["id"]: store.metrics(r["id"]) for r in runs}
        data = comparison(runs, points, trials, goals)

        series, missing = [], []
        if metric:
            for r in runs:
                s = metric_series(f"{r['id']} ({r['address']})", points[r["id"]], metric)
                if s is None:
                    missing.append(r)
                else:
                    series.append((r, s))
            if not series:
                raise TrainformError(
                    f"none of the runs has a metric {metric!r} ({_names_of(points)})"
                )
            data["chart"] = {
                "metric": metric,
                "series": [
                    {
                        "run": r["id"],
                        "points": [[int(x) if x.is_integer() else x, y] for x, y in s.points],
                        "skipped": s.skipped,
                    }
                    for r, s in series
                ],
                "missing": [r["id"] for r in missing],
            }
        if as_json:
            click.echo(json.dumps(data, indent=2))
            return
        console = make_console(ctx)
        console.print(_table(data))
        print_lines(
            ctx,
            "[dim]* marks a row whose values differ between the runs. Best is the min or the "
            "max: by --goal, else a sweep's objective, else the name (accuracy, f1, score... "
            "max; loss, error... min).[/dim]",
        )
        if metric:
            console.print()
            console.print(line_chart(metric, [s for _, s in series], columns=console.width))
            for r in missing:
                note = f"{r['id']} ({r['address']}) has no metric {metric!r}"
                print_lines(ctx, f"[yellow]{escape(note)}[/yellow]")


def _names_of(points: dict[str, list[dict[str, Any]]]) -> str:
    """The metric names the runs have, for an error message (quoted, as they come from
    scripts; at most 20)."""
    names = sorted({str(p["name"]) for run_points in points.values() for p in run_points})
    if not names:
        return "they have none"
    more = f" and {len(names) - 20} more" if len(names) > 20 else ""
    return "they have " + ", ".join(repr(n) for n in names[:20]) + more


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = json.dumps(value, default=str)
    return text if len(text) <= CELL else text[: CELL - 3] + "..."


def _table(data: dict[str, Any]) -> Any:
    """The comparison as a Rich table: a marker column (``*`` where values differ), a label
    column and one column per run. Values from runs are Text (never read as markup)."""
    from rich.table import Table
    from rich.text import Text

    from trainform.runs.watch import neutralise

    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("", no_wrap=True)
    table.add_column("RUN", no_wrap=True)
    for run in data["runs"]:
        table.add_column(Text(run["id"]), no_wrap=True)

    def row(label: str, values: list[Any], differs: bool, raw: bool = False) -> None:
        cells = [Text(str(v)) if raw else Text(_cell(v)) for v in values]
        style = "bold yellow" if differs else None
        # Names come from scripts: their control characters are shown, inert.
        table.add_row("*" if differs else "", Text(neutralise(label)), *cells, style=style)

    runs = data["runs"]
    row("address", [r["address"] for r in runs], False, raw=True)
    table.add_row("", "status", *(status_text(r["status"]) for r in runs))
    if any(r["sweep"] for r in runs):
        trials = [f"{r['sweep']['id']} #{r['sweep']['trial']}" if r["sweep"] else "-" for r in runs]
        row("sweep trial", trials, False, raw=True)
    if data["params"]:
        table.add_row("", "[bold]params[/bold]")
        for name, p in data["params"].items():
            row(f"  {name}", p["values"], p["differs"])
    if data["metrics"]:
        table.add_row("", "[bold]metrics[/bold]")
        for name, m in data["metrics"].items():
            row(f"  {name} last", m["last"]["values"], m["last"]["differs"])
            row(f"  {name} {m['goal']} (best)", m["best"]["values"], m["best"]["differs"])
    return table
