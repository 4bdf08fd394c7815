"""``trainform validate``: check the configuration without state or providers."""

from __future__ import annotations

from typing import Any

import click

from trainform.cli.context import config_dir, error_boundary, print_lines


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
@click.pass_context
def validate(ctx: click.Context, as_json: bool) -> None:
    """Check the configuration's syntax, schemas and references (no state, no providers)."""
    import json as _json

    from trainform.config.variables import VariableInputs
    from trainform.engine.session import validate_config
    from trainform.errors import ConfigError

    inputs = VariableInputs(cli=ctx.find_root().obj.get("var_order", []))
    if not as_json:
        with error_boundary(ctx):
            module = validate_config(config_dir(ctx), inputs)
            n = len(module.resources)
            print_lines(
                ctx,
                f"[green bold]Success![/green bold] The configuration is valid "
                f"({len(module.files)} file(s), {n} resource block(s)).",
            )
        return
    try:
        validate_config(config_dir(ctx), inputs)
        diags: list[dict[str, Any]] = []
    except ConfigError as exc:
        diags = [
            {
                "severity": d.severity,
                "summary": d.message,
                "detail": d.hint,
                "range": {
                    "filename": d.pos.file,
                    "start": {"line": d.pos.line, "column": d.pos.column},
                }
                if d.pos
                else None,
            }
            for d in exc.diagnostics
        ]
    click.echo(
        _json.dumps(
            {
                "format_version": "1.0",
                "valid": not diags,
                "error_count": len(diags),
                "diagnostics": diags,
            },
            indent=2,
        )
    )
    if diags:
        raise SystemExit(1)
