"""``trainform show``: the state (resources, facts, outputs) or a saved plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from trainform.cli.context import error_boundary, open_store, print_lines
from trainform.cli.plan import show_plan


@click.command()
@click.argument("planfile", required=False, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def show(ctx: click.Context, planfile: str | None, as_json: bool) -> None:
    """Show the state (resources, facts, outputs) or a saved plan."""
    import json as _json

    from rich.markup import escape

    from trainform.cli.render import attr_lines, outputs_lines

    with error_boundary(ctx):
        if planfile:
            from trainform.planner import planfile as pf
            from trainform.planner.jsonplan import plan_to_json

            saved = pf.load(Path(planfile))
            if as_json:
                click.echo(_json.dumps(plan_to_json(saved.plan), sort_keys=True, indent=2))
            else:
                show_plan(ctx, saved.plan)
            return
        store = open_store(ctx)
        resources = store.resources()
        outputs = store.outputs()
        lineage, serial = store.lineage_serial()
        if as_json:
            from trainform.state.secrets import is_sealed

            def clean(v: Any) -> Any:
                return None if is_sealed(v) else v

            data = {
                "format_version": "1.0",
                "lineage": lineage,
                "serial": serial,
                "resources": [
                    {
                        "address": r.address,
                        "type": r.kind,
                        "name": r.name,
                        "index": r.key,
                        "provider": r.provider,
                        "status": r.status,
                        "attributes": {k: clean(v) for k, v in r.attributes.items()},
                        "sensitive_attributes": sorted(
                            k for k, v in r.attributes.items() if is_sealed(v)
                        ),
                        "computed": r.computed,
                        "depends_on": list(r.dependencies),
                    }
                    for r in resources.values()
                ],
                "outputs": {
                    n: {
                        "value": None if o["sensitive"] else o["value"],
                        "sensitive": o["sensitive"],
                    }
                    for n, o in outputs.items()
                },
            }
            click.echo(_json.dumps(data, sort_keys=True, indent=2))
            return
        if not resources and not outputs:
            print_lines(ctx, "The state is empty.")
            return
        for r in resources.values():
            status = "" if r.status == "ready" else f" [red]({r.status})[/red]"
            print_lines(
                ctx,
                f"[bold]# {escape(r.address)}[/bold]{status}  [dim]provider {escape(r.provider)}[/dim]",
            )
            print_lines(ctx, attr_lines({**r.attributes, **r.computed}))
            print_lines(ctx, "")
        if outputs:
            print_lines(ctx, "Outputs:\n")
            print_lines(ctx, outputs_lines(outputs))
