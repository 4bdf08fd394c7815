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
    type=click.Choice(["plan", "plan-destroy"]),
    help="Show the planned actions (plan, or plan-destroy) instead of the dependencies.",
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
    the resources with their planned actions."""
    from trainform.config.loader import load_module
    from trainform.graph import plan_to_dot, to_dot

    with error_boundary(ctx):
        if graph_type:
            from trainform.planner.diff import PlanOptions

            mode = "destroy" if graph_type == "plan-destroy" else "normal"
            session = open_session(ctx, use_input)
            the_plan = session.make_plan(PlanOptions(mode), refresh)[0]
            click.echo(plan_to_dot(the_plan), nl=False)
            return
        module = load_module(config_dir(ctx))
        click.echo(to_dot(module.dependencies), nl=False)
