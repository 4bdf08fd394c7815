"""``trainform show``: the state (resources, facts, outputs) or a saved plan; ``-json`` in
Terraform's JSON state and plan formats, ``-markdown`` a saved plan as a short summary."""

from __future__ import annotations

import json
from pathlib import Path

import click

from trainform.cli.context import error_boundary, open_store, print_lines
from trainform.cli.plan import show_plan


@click.command()
@click.argument("planfile", required=False, type=click.Path())
@click.option(
    "--json", "as_json", is_flag=True, help="Terraform's JSON state or plan representation."
)
@click.option(
    "--markdown",
    "as_markdown",
    is_flag=True,
    help="A saved plan as a short Markdown summary (for a pull-request comment).",
)
@click.pass_context
def show(ctx: click.Context, planfile: str | None, as_json: bool, as_markdown: bool) -> None:
    """Show the state (resources, facts, outputs) or a saved plan."""
    from rich.markup import escape

    from trainform.cli.render import attr_lines, outputs_lines
    from trainform.planner.diff import public_values

    if as_json and as_markdown:
        raise click.UsageError("-json and -markdown cannot be combined")
    if as_markdown and not planfile:
        raise click.UsageError("-markdown shows a saved plan: trainform show -markdown PLANFILE")
    with error_boundary(ctx):
        if planfile:
            from trainform.planner import planfile as pf

            saved = pf.load(Path(planfile))
            if as_json:
                from trainform.planner.jsonplan import plan_to_json

                click.echo(json.dumps(plan_to_json(saved.plan), sort_keys=True, indent=2))
            elif as_markdown:
                from trainform.cli.markdown import plan_markdown

                click.echo(plan_markdown(saved.plan, saved.workspace), nl=False)
            else:
                show_plan(ctx, saved.plan)
            return
        store = open_store(ctx, optional=as_json)
        if as_json:
            from trainform.planner.jsonstate import state_json

            if store is None:  # as Terraform with no state: only the format version
                data = state_json([], {})
            else:
                data = state_json(store.resources().values(), store.outputs())
            click.echo(json.dumps(data, sort_keys=True, indent=2))
            return
        resources = store.resources()
        outputs = store.outputs()
        if not resources and not outputs:
            print_lines(ctx, "The state is empty.")
            return
        for r in resources.values():
            status = "" if r.status == "ready" else f" [red]({r.status})[/red]"
            print_lines(
                ctx,
                f"[bold]# {escape(r.address)}[/bold]{status}  [dim]provider {escape(r.provider)}[/dim]",
            )
            # provider bookkeeping (a workspace's created_dir) is no attribute: not shown
            print_lines(
                ctx, attr_lines(public_values(r.kind, r.provider, {**r.attributes, **r.computed}))
            )
            print_lines(ctx, "")
        if outputs:
            print_lines(ctx, "Outputs:\n")
            print_lines(ctx, outputs_lines(outputs))
