"""``trainform output``: output values recorded in the state."""

from __future__ import annotations

import click

from trainform.cli.context import error_boundary, open_store, print_lines


@click.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print values as JSON.")
@click.option("--raw", is_flag=True, help="Print a string output's value without quotes.")
@click.pass_context
def output(ctx: click.Context, name: str | None, as_json: bool, raw: bool) -> None:
    """Show output values from the state. Sensitive outputs are stored only as hashes and
    show as (sensitive value)."""
    import json as _json

    from trainform.cli.render import SENSITIVE, outputs_lines, value_text
    from trainform.config.schema import did_you_mean
    from trainform.errors import TrainformError

    with error_boundary(ctx):
        outputs = open_store(ctx).outputs()
        if name is not None:
            if name not in outputs:
                hint = did_you_mean(name, list(outputs))
                raise TrainformError(f"no output named {name!r}" + (f"; {hint}" if hint else ""))
            o = outputs[name]
            if as_json:
                click.echo(_json.dumps(None if o["sensitive"] else o["value"]))
            elif o["sensitive"]:
                click.echo(SENSITIVE)
            elif raw and isinstance(o["value"], (str, int, float, bool)):
                click.echo(o["value"] if isinstance(o["value"], str) else value_text(o["value"]))
            else:
                click.echo(value_text(o["value"]))
            return
        if as_json:
            click.echo(
                _json.dumps(
                    {
                        n: {
                            "value": None if o["sensitive"] else o["value"],
                            "sensitive": o["sensitive"],
                        }
                        for n, o in outputs.items()
                    },
                    sort_keys=True,
                    indent=2,
                )
            )
            return
        print_lines(ctx, outputs_lines(outputs))
