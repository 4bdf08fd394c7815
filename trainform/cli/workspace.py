"""``trainform workspace list|new|select|show|delete``: Terraform's CLI workspaces. Each
workspace (``dev``, ``staging``, ``prod``) has its own state, run history and lock in the
configuration's backend; ``trainform.workspace`` in expressions is its name.

Not the ``workspace "NAME" { ... }`` block, which declares an artifact store: the CLI
workspace decides *which state* a command reads and writes, the block is a resource in it.
"""

from __future__ import annotations

import os

import click

from trainform.cli.context import (
    config_dir,
    error_boundary,
    fail_with,
    open_backend,
    parse_duration,
    print_lines,
    shell_command,
)
from trainform.cli.options import lock_option

CLASH = """\
A CLI workspace is a separate state (its own resources, run history and lock) for the same
configuration: dev, staging, prod. It is not the `workspace "NAME" { ... }` block, which
declares an artifact store (a resource). Expressions read the CLI workspace's name as
trainform.workspace (terraform.workspace is accepted too). TRAINFORM_WORKSPACE overrides the
selected one."""


@click.group(epilog=CLASH)
def workspace() -> None:
    """Create, list, select and delete CLI workspaces (separate states of this
    configuration; not workspace blocks)."""


def _refuse_overridden(ctx: click.Context, doing: str) -> None:
    from trainform.state.backend import WORKSPACE_ENV

    if not os.environ.get(WORKSPACE_ENV):
        return
    raise fail_with(
        ctx,
        f"The selected workspace is currently overridden using the {WORKSPACE_ENV} "
        f"environment variable ({WORKSPACE_ENV}={os.environ[WORKSPACE_ENV]}). To {doing}, "
        "either update this environment variable or unset it and then run this command again.",
    )


@workspace.command("list")
@click.pass_context
def workspace_list(ctx: click.Context) -> None:
    """List the workspaces; * marks the current one."""
    with error_boundary(ctx):
        from trainform.state.backend import WORKSPACE_ENV, selected_workspace, workspaces

        directory, spec = open_backend(ctx)
        current = selected_workspace(directory)
        for name in workspaces(spec):
            click.echo(f"{'*' if name == current else ' '} {name}")
        if os.environ.get(WORKSPACE_ENV):
            click.echo(
                f"\nThe active workspace is being overridden using the {WORKSPACE_ENV} "
                "environment variable."
            )


@workspace.command("show")
@click.pass_context
def workspace_show(ctx: click.Context) -> None:
    """Show the name of the current workspace."""
    with error_boundary(ctx):
        from trainform.state.backend import selected_workspace

        click.echo(selected_workspace(config_dir(ctx)))


def _created(ctx: click.Context, name: str) -> None:
    print_lines(
        ctx,
        [
            f'[green bold]Created and switched to workspace "{name}"![/green bold]',
            "",
            "You're now on a new, empty workspace. Workspaces isolate their state, so if you "
            "run `trainform plan` trainform will not see any existing state for this "
            "configuration.",
        ],
    )


@workspace.command("new")
@click.argument("name")
@lock_option
@click.option("--lock-timeout", default="0s", show_default=True, help="Accepted for Terraform.")
@click.pass_context
def workspace_new(ctx: click.Context, name: str, lock: bool, lock_timeout: str) -> None:
    """Create a workspace and select it. It starts with empty state.

    Creating one takes no lock that other workspaces would wait on, so -lock and
    -lock-timeout are accepted and have nothing to wait for."""
    with error_boundary(ctx):
        from trainform.state.backend import (
            WORKSPACE_ENV,
            check_workspace_name,
            new_workspace,
            select_workspace,
        )

        parse_duration(lock_timeout)
        check_workspace_name(name)
        if os.environ.get(WORKSPACE_ENV, name) != name:
            raise fail_with(
                ctx,
                f"The workspace is currently overridden using the {WORKSPACE_ENV} environment "
                "variable. You cannot create a new workspace when using this setting: unset "
                "it, or set it to the name of the workspace you are creating, and run this "
                "command again.",
            )
        directory, spec = open_backend(ctx)
        new_workspace(spec, name)
        select_workspace(directory, name)
        _created(ctx, name)


@workspace.command("select")
@click.argument("name")
@click.option("--or-create", is_flag=True, help="Create the workspace if it doesn't exist.")
@click.pass_context
def workspace_select(ctx: click.Context, name: str, or_create: bool) -> None:
    """Select the workspace later commands use."""
    with error_boundary(ctx):
        from trainform.state.backend import (
            check_workspace_name,
            new_workspace,
            select_workspace,
            workspace_exists,
            workspaces,
        )

        _refuse_overridden(ctx, "select a new workspace")
        check_workspace_name(name)
        directory, spec = open_backend(ctx)
        if not workspace_exists(spec, name):
            if not or_create:
                raise fail_with(
                    ctx,
                    f'Workspace "{name}" doesn\'t exist (the workspaces: '
                    f"{', '.join(workspaces(spec))}). You can create it with "
                    f"`{shell_command(ctx, 'workspace', 'new', name)}`, or with the -or-create "
                    "flag of `workspace select`.",
                )
            new_workspace(spec, name)
            select_workspace(directory, name)
            _created(ctx, name)
            return
        select_workspace(directory, name)
        print_lines(ctx, f'[green]Switched to workspace "{name}".[/green]')


@workspace.command("delete")
@click.argument("name")
@click.option(
    "--force",
    is_flag=True,
    help="Delete it even if its state manages resources: trainform can no longer track or "
    "manage them.",
)
@lock_option
@click.option(
    "--lock-timeout", default="0s", show_default=True, help="How long to wait for its lock."
)
@click.pass_context
def workspace_delete(
    ctx: click.Context, name: str, force: bool, lock: bool, lock_timeout: str
) -> None:
    """Delete a workspace with its state and run history. Not "default", not the current
    one, and not one whose state manages resources unless -force."""
    with error_boundary(ctx):
        from trainform.state.backend import (
            check_workspace_name,
            delete_workspace,
            selected_workspace,
        )

        check_workspace_name(name)
        directory, spec = open_backend(ctx)
        if name == selected_workspace(directory) and name != "default":
            raise fail_with(
                ctx,
                f'Workspace "{name}" is your active workspace. You cannot delete the currently '
                "active workspace. Please switch to another workspace and try again.",
            )
        left = delete_workspace(spec, name, force, lock, parse_duration(lock_timeout))
        print_lines(ctx, f'[green]Deleted workspace "{name}"![/green]')
        if left:
            print_lines(
                ctx,
                f"[yellow]Warning:[/yellow] its state managed {left} resource"
                f"{'s' if left != 1 else ''}; trainform no longer tracks them.",
            )
