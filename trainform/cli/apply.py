"""``trainform apply``, ``destroy`` and ``refresh``: plan (or load a saved plan), confirm,
and carry the changes out while printing their progress and streaming run logs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from trainform.cli.context import (
    config_dir,
    error_boundary,
    fail_with,
    make_console,
    open_session,
    print_lines,
    shell_command,
    state_lock,
)
from trainform.cli.options import lock_option, plan_options, var_options
from trainform.cli.plan import plan_mode, show_plan

if TYPE_CHECKING:
    from trainform.engine.session import Session
    from trainform.planner.types import Plan


def _confirm(ctx: click.Context, auto_approve: bool, what: str, cancelled: str) -> None:
    """Ask on the terminal; anything but "yes" prints ``cancelled`` and exits 1."""
    if auto_approve:
        return
    if not sys.stdin.isatty():
        raise fail_with(
            ctx,
            f"refusing to {what} without confirmation: stdin is not a terminal. Pass "
            "--auto-approve, or apply a saved, reviewed plan file "
            f"(`{shell_command(ctx, 'apply')} FILE`).",
        )
    print_lines(
        ctx, f"\n[bold]Do you want to {what}?[/bold]\n  Only 'yes' will be accepted to approve.\n"
    )
    answer = click.prompt("  Enter a value", default="", show_default=False)
    if answer.strip() != "yes":
        print_lines(ctx, f"\n[red]{cancelled}[/red]")
        raise SystemExit(1)


def _run_apply(
    ctx: click.Context,
    session: Session,
    the_plan: Plan,
    planner: Any,
    command: str,
    detach: bool = False,
) -> None:
    import signal
    import threading

    from rich.markup import escape

    from trainform.cli.render import ing, outputs_lines, past

    cancel = threading.Event()
    printing = threading.Lock()  # events arrive from worker threads
    # Log lines keep their colour only if our own output is in colour.
    log_colour = make_console(ctx).color_system is not None

    def on_event(e: Any) -> None:
        c = e.change
        verb = c.verb
        with printing:
            if e.kind == "start":
                print_lines(ctx, f"{escape(c.address)}: {ing(verb)}...")
            elif e.kind == "done":
                what = past(verb).capitalize()
                if (
                    c.kind in ("run", "sweep")
                    and verb in ("submit", "resubmit", "await")
                    and e.message != "detached"
                ):
                    what = "Completed"
                if e.message == "reused":
                    print_lines(
                        ctx,
                        f"{escape(c.address)}: Reused: its inputs came out as its last run "
                        "read them, so it was not resubmitted",
                    )
                else:
                    print_lines(ctx, f"{escape(c.address)}: {what} after {e.elapsed:.1f}s")
            elif e.kind == "failed" and "\n" in e.message:
                # a run whose log was streamed: why, with its last lines, comes once, at the end
                print_lines(ctx, f"[red]{escape(c.address)}: failed after {e.elapsed:.1f}s[/red]")
            elif e.kind == "failed":
                print_lines(ctx, f"[red]{escape(c.address)}: failed: {escape(e.message)}[/red]")
            elif e.kind == "skipped":
                why = f"not started: {e.message}" if e.message else "a dependency failed"
                print_lines(ctx, f"[yellow]{escape(c.address)}: skipped ({escape(why)})[/yellow]")
            elif e.kind == "submitted":
                print_lines(
                    ctx,
                    f"{escape(c.address)}: submitted as {c.kind} [bold]{escape(e.message)}[/bold]",
                )
            elif e.kind == "status":
                print_lines(ctx, f"[cyan]{escape(c.address)}: {escape(e.message)}[/cyan]")
            elif e.kind == "log":
                from trainform.cli.loglines import plan_prefix_width, prefixed

                # A multi-node run's lines carry their rank: run.ddp[1] | ... Control
                # sequences are made inert here (so click has nothing left to strip).
                text = prefixed(c.address, e.message, plan_prefix_width(the_plan), log_colour)
                click.echo(text, color=True)
            elif e.kind == "progress":
                print_lines(ctx, f"[dim]{escape(c.address)}: {escape(e.message)}[/dim]")
            elif e.kind == "warning":
                print_lines(
                    ctx, f"[yellow]{escape(c.address)}: warning: {escape(e.message)}[/yellow]"
                )

    def on_sigint(signum: int, frame: Any) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        print_lines(
            ctx,
            "\n[yellow]Interrupt received. Finishing the operations in flight and saving "
            "state (Ctrl-C again to stop at once)...[/yellow]",
            stderr=True,
        )

    old = signal.signal(signal.SIGINT, on_sigint)
    try:
        result = session.apply(the_plan, planner, command, cancel, on_event, detach)
    finally:
        signal.signal(signal.SIGINT, old)
    counts = {"add": 0, "change": 0, "destroy": 0}
    changes = {c.address: c for c in the_plan.resource_changes}
    for addr in result.succeeded:
        if addr in result.reused:  # nothing changed after all
            continue
        c = changes[addr]
        counts["add"] += "create" in c.actions
        counts["destroy"] += "delete" in c.actions
        counts["change"] += c.actions == ("update",)
    print_lines(ctx, "")
    if result.ok and the_plan.mode == "destroy":
        print_lines(
            ctx,
            f"[green bold]Destroy complete![/green bold] Resources: {counts['destroy']} destroyed.",
        )
    elif result.ok:
        imported = f"{len(the_plan.imported)} imported, " if the_plan.imported else ""
        print_lines(
            ctx,
            f"[green bold]Apply complete![/green bold] Resources: {imported}{counts['add']} "
            f"added, {counts['change']} changed, {counts['destroy']} destroyed.",
        )
    elif result.interrupted and not (result.failed or result.skipped or result.not_started):
        print_lines(
            ctx,
            f"[yellow bold]Apply interrupted.[/yellow bold] Resources: {counts['add']} added, "
            f"{counts['change']} changed, {counts['destroy']} destroyed; every change was made "
            "and recorded, but trainform stopped watching.",
        )
    else:
        print_lines(
            ctx,
            f"[red bold]Apply incomplete.[/red bold] Resources: {counts['add']} added, "
            f"{counts['change']} changed, {counts['destroy']} destroyed; "
            f"{len(result.failed)} failed, {len(result.skipped)} skipped"
            + (
                f", {len(result.not_started)} not started (interrupted)"
                if result.interrupted
                else ""
            )
            + ".",
        )
        for addr, msg in sorted(result.failed.items()):
            print_lines(ctx, f"  [red]failed[/red]  {escape(addr)}: {escape(msg)}")
        for addr in result.skipped:
            upstream = result.skipped_because.get(addr)
            why = f" (not started: {upstream} failed)" if upstream else ""
            print_lines(ctx, f"  [yellow]skipped[/yellow] {escape(addr)}{escape(why)}")
        for addr in result.not_started:
            print_lines(ctx, f"  [yellow]not started[/yellow] {escape(addr)}")
        print_lines(ctx, "State records exactly what was done; run the command again to continue.")
    for addr in result.detached:
        follow = (
            shell_command(ctx, "sweeps", "show", addr)
            if addr.startswith("sweep.")
            else shell_command(ctx, "runs", "wait", addr)
        )
        print_lines(
            ctx,
            f"{escape(addr)} keeps running in the background; follow it with `{escape(follow)}`",
        )
    for warning in result.check_warnings:  # check blocks over the state just recorded
        print_lines(ctx, f"\n[yellow bold]Warning:[/yellow bold] {escape(warning)}")
    if result.outputs and the_plan.mode == "normal":
        print_lines(ctx, "\nOutputs:\n")
        print_lines(ctx, outputs_lines(result.outputs))
    if not result.ok:
        raise SystemExit(130 if result.interrupted and not result.failed else 1)


@click.command()
@click.argument("planfile", required=False, type=click.Path())
@click.option("--auto-approve", is_flag=True, help="Skip the confirmation prompt.")
@click.option("--destroy", is_flag=True, help="Destroy everything in state.")
@click.option("--refresh-only", is_flag=True, help="Only record real-world changes in state.")
@click.option("--detach", is_flag=True, help="Return once runs are submitted; do not wait.")
@plan_options
@click.pass_context
def apply(
    ctx: click.Context,
    planfile: str | None,
    auto_approve: bool,
    destroy: bool,
    refresh_only: bool,
    detach: bool,
    target: tuple[str, ...],
    replace: tuple[str, ...],
    refresh: bool,
    lock: bool,
    lock_timeout: str,
    parallelism: int,
    use_input: bool,
    **_: Any,
) -> None:
    """Make the real world match the configuration (or apply a saved plan exactly). Runs are
    submitted and waited for, their logs streamed, unless --detach."""
    _apply_command(
        ctx,
        planfile,
        auto_approve,
        plan_mode(destroy, refresh_only),
        target,
        replace,
        refresh,
        lock_timeout,
        parallelism,
        use_input,
        "apply",
        detach,
        lock=lock,
    )


def _redacted_command(args: list[str]) -> str:
    """The command line for the apply history, with every --var value hidden (any of them
    may be a secret; the history must not hold one)."""
    out: list[str] = []
    hide_next = False
    for arg in args:
        if hide_next:
            out.append(arg.split("=", 1)[0] + "=***")
            hide_next = False
        elif arg.lstrip("-") == "var":
            out.append(arg)
            hide_next = True
        elif arg.lstrip("-").startswith("var=") and arg.startswith("-"):
            out.append(arg.split("=", 2)[0] + "=" + arg.split("=", 2)[1] + "=***")
        else:
            out.append(arg)
    return " ".join(["trainform", *out])[:500]


def _apply_command(
    ctx: click.Context,
    planfile_arg: str | None,
    auto_approve: bool,
    mode: str,
    target: tuple[str, ...],
    replace: tuple[str, ...],
    refresh: bool,
    lock_timeout: str,
    parallelism: int,
    use_input: bool,
    command: str,
    detach: bool = False,
    lock: bool = True,
) -> None:
    from trainform.planner import planfile as pf
    from trainform.planner.diff import PlanOptions

    argv = _redacted_command(sys.argv[1:])
    with error_boundary(ctx):
        if planfile_arg:
            if target or replace or mode != "normal":
                raise click.UsageError(
                    "a saved plan already fixes targets and mode; pass only the plan file"
                )
            saved = pf.load(Path(planfile_arg))
            # a plan applies from any checkout of its configuration (old files: only where made)
            pf.check_folder(saved, config_dir(ctx), planfile_arg)
            session = open_session(ctx, use_input, parallelism, fixed=saved.variables)
            with state_lock(session, command, lock, lock_timeout):
                planner = session.check_saved(saved)
                the_plan = saved.plan
                if not the_plan.has_changes and not the_plan.drift:
                    show_plan(ctx, the_plan)
                    return
                _run_apply(ctx, session, the_plan, planner, argv, detach)
            return
        session = open_session(ctx, use_input, parallelism)
        with state_lock(session, command, lock, lock_timeout):
            the_plan, planner = session.make_plan(PlanOptions(mode, target, replace), refresh)
            show_plan(ctx, the_plan)
            if not the_plan.has_changes and not the_plan.drift:
                return
            if the_plan.has_changes:
                what = {"destroy": "destroy all resources", "refresh-only": "update the state"}.get(
                    mode, "perform these actions"
                )
                if session.workspace != "default":  # as Terraform asks
                    what += f' in workspace "{session.workspace}"'
                cancelled = "Destroy cancelled." if mode == "destroy" else "Apply cancelled."
                _confirm(ctx, auto_approve, what, cancelled)
            print_lines(ctx, "")
            _run_apply(ctx, session, the_plan, planner, argv, detach)


@click.command()
@click.option("--auto-approve", is_flag=True, help="Skip the confirmation prompt.")
@click.option(
    "--target", multiple=True, metavar="ADDR", help="Destroy only this (and its dependents)."
)
@click.option(
    "--refresh/--no-refresh",
    default=True,
    show_default=True,
    help="Read real-world state first (--refresh=false skips it).",
)
@lock_option
@click.option("--lock-timeout", default="0s", show_default=True)
@click.option("--parallelism", default=10, show_default=True, type=click.IntRange(1, 256))
@var_options
@click.pass_context
def destroy(
    ctx: click.Context,
    auto_approve: bool,
    target: tuple[str, ...],
    refresh: bool,
    lock: bool,
    lock_timeout: str,
    parallelism: int,
    use_input: bool,
    **_: Any,
) -> None:
    """Destroy (or detach) everything trainform manages here."""
    _apply_command(
        ctx,
        None,
        auto_approve,
        "destroy",
        target,
        (),
        refresh,
        lock_timeout,
        parallelism,
        use_input,
        "destroy",
        lock=lock,
    )


@click.command()
@lock_option
@click.option("--lock-timeout", default="0s", show_default=True)
@var_options
@click.pass_context
def refresh(ctx: click.Context, lock: bool, lock_timeout: str, use_input: bool, **_: Any) -> None:
    """Record real-world changes (facts, deleted resources) in state."""
    _apply_command(
        ctx,
        None,
        True,
        "refresh-only",
        (),
        (),
        True,
        lock_timeout,
        10,
        use_input,
        "refresh",
        lock=lock,
    )
