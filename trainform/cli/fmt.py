"""``trainform fmt``: rewrite configuration files in the canonical layout."""

from __future__ import annotations

from pathlib import Path

import click

from trainform.cli.context import config_dir, print_lines


@click.command()
@click.option("--check", is_flag=True, help="Exit 3 if any file is not formatted; change nothing.")
@click.option("--diff", is_flag=True, help="Show the changes as a unified diff.")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.pass_context
def fmt(ctx: click.Context, check: bool, diff: bool, paths: tuple[str, ...]) -> None:
    """Rewrite *.train.hcl (and .tfvars) files in the canonical layout. Comments are kept and
    meaning never changes."""
    import difflib

    from trainform.config.fmt import FormatError, format_hcl

    targets: list[Path] = []
    for p in [Path(x) for x in paths] or [config_dir(ctx)]:
        if p.is_dir():
            targets.extend(
                sorted(q for q in p.iterdir() if q.name.endswith((".train.hcl", ".tfvars")))
            )
        else:
            targets.append(p)
    unformatted = []
    failed = False
    for path in targets:
        text = path.read_text(encoding="utf-8")
        try:
            new = format_hcl(text, str(path))
        except FormatError as exc:
            print_lines(ctx, f"[red bold]Error:[/red bold] {exc}", stderr=True)
            failed = True
            continue
        if new == text:
            continue
        unformatted.append(path)
        click.echo(str(path))
        if diff:
            click.echo(
                "".join(
                    difflib.unified_diff(
                        text.splitlines(True), new.splitlines(True), f"old/{path}", f"new/{path}"
                    )
                )
            )
        if not check:
            path.write_text(new, encoding="utf-8")
    if failed:
        raise SystemExit(1)
    if check and unformatted:
        raise SystemExit(3)
