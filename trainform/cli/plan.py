"""``trainform plan``: show what apply would change (or save it for ``apply FILE``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from trainform.cli.context import (
    error_boundary,
    open_session,
    print_lines,
    shell_command,
    state_lock,
)
from trainform.cli.options import plan_options

if TYPE_CHECKING:
    from trainform.planner.types import Plan


def plan_mode(destroy: bool, refresh_only: bool) -> str:
    if destroy and refresh_only:
        raise click.UsageError("--destroy and --refresh-only cannot be combined")
    return "destroy" if destroy else "refresh-only" if refresh_only else "normal"


def show_plan(ctx: click.Context, plan: Plan) -> None:
    from trainform.cli.render import plan_text

    print_lines(ctx, plan_text(plan))


@click.command()
@click.option("--out", "out", metavar="FILE", help="Save the plan to FILE for `apply FILE`.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 no changes, 1 error, 2 changes.")
@click.option("--destroy", is_flag=True, help="Plan to destroy everything in state.")
@click.option("--refresh-only", is_flag=True, help="Plan only to record real-world changes.")
@plan_options
@click.pass_context
def plan(
    ctx: click.Context,
    out: str | None,
    as_json: bool,
    detailed_exitcode: bool,
    destroy: bool,
    refresh_only: bool,
    target: tuple[str, ...],
    replace: tuple[str, ...],
    refresh: bool,
    lock: bool,
    lock_timeout: str,
    parallelism: int,
    use_input: bool,
    **_: Any,
) -> None:
    """Show what apply would change."""
    import json as _json

    from trainform.planner import planfile
    from trainform.planner.diff import PlanOptions
    from trainform.planner.jsonplan import plan_to_json

    mode = plan_mode(destroy, refresh_only)
    with error_boundary(ctx):
        session = open_session(ctx, use_input, parallelism)
        with state_lock(session, "plan", lock, lock_timeout):
            the_plan = session.make_plan(
                PlanOptions(mode, target, replace, describe=as_json or bool(out)), refresh
            )[0]
            if out:
                planfile.save(Path(out), session.saved(the_plan))
        if as_json:
            click.echo(_json.dumps(plan_to_json(the_plan), sort_keys=True, indent=2))
        else:
            if session.workspace != "default":  # which state this plan is against
                print_lines(ctx, f'Workspace: "{session.workspace}"\n')
            show_plan(ctx, the_plan)
            if out:
                from rich.markup import escape

                print_lines(
                    ctx,
                    f"\nSaved the plan to: {escape(out)}\nTo perform exactly these actions, run:\n"
                    f"  {escape(shell_command(ctx, 'apply', out))}",
                )
    if detailed_exitcode and the_plan.has_changes:
        raise SystemExit(2)
