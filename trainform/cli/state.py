"""``trainform state list|show|rm|mv`` and ``force-unlock``: read and edit the recorded
state directly, and release its lock."""

from __future__ import annotations

import sys
from typing import Any

import click

from trainform.cli.context import error_boundary, open_store, parse_duration, print_lines


@click.group()
def state() -> None:
    """Inspect and edit the state."""


@state.command("list")
@click.argument("filters", nargs=-1)
@click.pass_context
def state_list(ctx: click.Context, filters: tuple[str, ...]) -> None:
    """List resource addresses in the state."""
    with error_boundary(ctx):
        from trainform.config.address import selects

        for addr in open_store(ctx).resources():
            if not filters or any(
                addr == f or selects(f, addr) or addr.startswith(f + ".") for f in filters
            ):
                click.echo(addr)


def _find(ctx: click.Context, store: Any, address: str) -> Any:
    from trainform.config.schema import did_you_mean
    from trainform.errors import StateError

    resources = store.resources()
    if address not in resources:
        hint = did_you_mean(address, list(resources))
        raise StateError(f"no resource {address!r} in the state" + (f"; {hint}" if hint else ""))
    return resources[address]


@state.command("show")
@click.argument("address")
@click.pass_context
def state_show(ctx: click.Context, address: str) -> None:
    """Show one resource's recorded attributes and facts."""
    from rich.markup import escape

    from trainform.cli.render import attr_lines

    with error_boundary(ctx):
        r = _find(ctx, open_store(ctx), address)
        print_lines(ctx, f"[bold]# {escape(r.address)}[/bold] ({escape(r.status)})")
        print_lines(ctx, attr_lines({**r.attributes, **r.computed}))


@state.command("rm")
@click.argument("addresses", nargs=-1, required=True)
@click.option("--lock-timeout", default="0s")
@click.pass_context
def state_rm(ctx: click.Context, addresses: tuple[str, ...], lock_timeout: str) -> None:
    """Stop managing resources (nothing real is destroyed)."""
    with error_boundary(ctx):
        store = open_store(ctx)
        lock = store.acquire_lock("state rm", parse_duration(lock_timeout))
        try:
            for address in addresses:
                _find(ctx, store, address)
                store.remove_resource(address)
                click.echo(f"Removed {address}")
        finally:
            store.release_lock(lock)


@state.command("mv")
@click.argument("source")
@click.argument("destination")
@click.option("--lock-timeout", default="0s")
@click.pass_context
def state_mv(ctx: click.Context, source: str, destination: str, lock_timeout: str) -> None:
    """Rename a resource in state (after renaming its block), without replacing it."""
    from trainform.config.address import (
        Address,
        AddressError,
        parse_address,
        parse_target,
        selects,
    )
    from trainform.errors import StateError

    with error_boundary(ctx):
        try:
            src, dst = parse_target(source), parse_target(destination)
        except AddressError as exc:
            raise StateError(str(exc)) from None
        if isinstance(src, tuple) != isinstance(dst, tuple):
            raise StateError(
                f"cannot move {source} to {destination}: move a module to a module address "
                "(module.NAME) and a resource to a resource address (compute.gpu, "
                'module.team["a"].compute.gpu)'
            )
        store = open_store(ctx)
        lock = store.acquire_lock("state mv", parse_duration(lock_timeout))
        try:
            resources = store.resources()
            if isinstance(src, tuple):  # a whole module instance: everything in it
                assert isinstance(dst, tuple)
                moves = []
                for addr in sorted(resources):
                    if not selects(source, addr):
                        continue
                    parsed = parse_address(addr)
                    inner = parsed.module[len(src) :]
                    moves.append(
                        (addr, Address((*dst, *inner), parsed.kind, parsed.name, parsed.key))
                    )
                if not moves:
                    raise StateError(f"no resource in {source} in the state")
            else:
                prior = _find(ctx, store, source)
                target = parse_address(destination)
                if target.kind != prior.kind:
                    raise StateError(f"cannot move a {prior.kind} to a {target.kind} address")
                moves = [(source, target)]
            for _old, new in moves:
                if str(new) in resources:
                    raise StateError(f"{new} already exists in the state")
            for old, new in moves:
                store.move_resource(old, str(new), new.kind, new.name, new.key)
                click.echo(f"Moved {old} to {new}")
        finally:
            store.release_lock(lock)


@click.command("force-unlock")
@click.argument("lock_id")
@click.option("--force", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def force_unlock(ctx: click.Context, lock_id: str, force: bool) -> None:
    """Remove a stale lock left by a process that is gone (on another host)."""
    with error_boundary(ctx):
        store = open_store(ctx)
        if not force and sys.stdin.isatty():
            click.confirm(
                f"Remove lock {lock_id}? Only do this if its holder is not running", abort=True
            )
        info = store.force_unlock(lock_id)
        print_lines(ctx, f"[green]Released[/green] {info.describe()}.")
