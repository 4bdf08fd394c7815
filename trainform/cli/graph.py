"""``trainform graph``: the dependency graph, or a plan's actions, in Graphviz DOT."""

from __future__ import annotations

from typing import Any

import click

from trainform.cli.context import config_dir, error_boundary, open_session
from trainform.cli.options import var_options


@click.command()
@click.option(
    "--type",
    "graph_type",
    type=click.Choice(["plan", "plan-destroy", "pipeline"]),
    help="Show the planned actions (plan, or plan-destroy), or the data flow between "
    "datasets, runs and sweeps (pipeline), instead of the dependencies.",
)
@click.option(
    "--refresh/--no-refresh",
    default=True,
    show_default=True,
    help="With --type: read real-world state first, as plan does.",
)
@var_options
@click.pass_context
def graph(
    ctx: click.Context, graph_type: str | None, refresh: bool, use_input: bool, **_: Any
) -> None:
    """Print the dependency graph in Graphviz DOT (pipe into `dot -Tsvg`); with -type=plan,
    the resources with their planned actions; with -type=pipeline, the datasets, runs and
    sweeps with the named outputs and inputs between them."""
    from trainform.config.loader import load_module
    from trainform.graph import pipeline_to_dot, plan_to_dot, to_dot

    with error_boundary(ctx):
        if graph_type == "pipeline":
            module = load_module(config_dir(ctx))
            click.echo(pipeline_to_dot(*pipeline(module)), nl=False)
            return
        if graph_type:
            from trainform.planner.diff import PlanOptions

            mode = "destroy" if graph_type == "plan-destroy" else "normal"
            session = open_session(ctx, use_input)
            the_plan = session.make_plan(PlanOptions(mode), refresh)[0]
            click.echo(plan_to_dot(the_plan), nl=False)
            return
        module = load_module(config_dir(ctx))
        click.echo(to_dot(module.dependencies), nl=False)


def pipeline(module: Any) -> tuple[list[str], list[tuple[str, str, str]]]:
    """The datasets, runs and sweeps of a module, and the data edges between them (producer,
    consumer, label): a dataset or another run's named output in a run's ``inputs`` (a
    sweep's in its trial's)."""
    from trainform.config.expr import references

    nodes, edges = [], []
    for res in module.resources.values():
        if res.kind not in ("dataset", "run", "sweep"):
            continue
        nodes.append(res.address)
        exprs = [res.attributes.get("inputs")]
        exprs += [b.attrs["inputs"].expr for b in res.blocks if "inputs" in b.attrs]
        prefix = res.address[: -len(f"{res.kind}.{res.name}")]
        for expr in exprs:
            for ref in references(expr) if expr is not None else []:
                if ref.root == "dataset" and ref.steps:
                    edges.append(
                        (f"{prefix}dataset.{ref.steps[0]}", res.address, str(ref.steps[0]))
                    )
                elif (
                    ref.root in ("run", "sweep")
                    and len(ref.steps) >= 3
                    and ref.steps[1] == "outputs"
                ):
                    edges.append(
                        (f"{prefix}{ref.root}.{ref.steps[0]}", res.address, str(ref.steps[2]))
                    )
    return nodes, edges
