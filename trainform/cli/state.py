"""``trainform state list|show|rm|mv`` and ``force-unlock``: read and edit the recorded
state directly, and release its lock."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from trainform.cli.context import (
    error_boundary,
    open_backend,
    open_store,
    parse_duration,
    print_lines,
)
from trainform.cli.options import lock_option


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
@click.argument("address", required=False)
@click.option(
    "--version",
    "serial",
    type=click.IntRange(1),
    metavar="N",
    help="Show the state as it was at version N (see `state list-versions`).",
)
@click.pass_context
def state_show(ctx: click.Context, address: str | None, serial: int | None) -> None:
    """Show one resource's recorded attributes and facts; with -version N, the state as it
    was at that version (its resources, or one resource's attributes)."""
    from rich.markup import escape

    from trainform.cli.render import attr_lines

    with error_boundary(ctx):
        if serial is not None:
            _show_version(ctx, serial, address)
            return
        if address is None:
            raise click.UsageError("state show needs an ADDRESS (or -version N)")
        r = _find(ctx, open_store(ctx), address)
        print_lines(ctx, f"[bold]# {escape(r.address)}[/bold] ({escape(r.status)})")
        print_lines(ctx, attr_lines({**r.attributes, **r.computed}))


def _show_version(ctx: click.Context, serial: int, address: str | None) -> None:
    from rich.markup import escape

    from trainform.cli.render import attr_lines, value_text
    from trainform.config.schema import did_you_mean
    from trainform.errors import StateError
    from trainform.providers.base import ResourceState

    store = open_store(ctx)
    version = store.version(serial)
    if version is None:
        known = [str(v["serial"]) for v in store.versions()]
        raise StateError(
            f"no state version {serial} in {store.describe()}"
            + (f" (versions: {', '.join(known)})" if known else " (no version recorded yet)")
        )
    doc = version["state"]
    resources = {
        r["address"]: ResourceState(**{**r, "dependencies": tuple(r["dependencies"])})
        for r in doc["resources"]
    }
    if address is not None:
        if address not in resources:
            hint = did_you_mean(address, list(resources))
            raise StateError(
                f"no resource {address!r} in state version {serial}" + (f"; {hint}" if hint else "")
            )
        r = resources[address]
        print_lines(ctx, f"[bold]# {escape(r.address)}[/bold] ({escape(r.status)})")
        print_lines(ctx, attr_lines({**r.attributes, **r.computed}))
        return
    print_lines(
        ctx,
        f"[bold]# state version {serial}[/bold] (lineage {escape(str(version['lineage']))}, "
        f"{escape(str(version['created']))} by {escape(_who(version))}, "
        f"{escape(str(version['command']))})",
    )
    for addr in sorted(resources):
        print_lines(ctx, f"{escape(addr)} ({escape(resources[addr].status)})")
    outputs = doc.get("outputs") or {}
    if outputs:
        print_lines(ctx, ["", "Outputs:"])
        for name in sorted(outputs):
            out = outputs[name]
            shown = "(sensitive)" if out.get("sensitive") else value_text(out.get("value"))
            print_lines(ctx, f"  {escape(name)} = {escape(shown)}")


def _who(version: dict[str, Any]) -> str:
    return f"{version.get('who') or '?'}@{version.get('host') or '?'}"


@state.command("list-versions")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1))
@click.pass_context
def state_list_versions(ctx: click.Context, limit: int) -> None:
    """List the recorded state versions, newest first: serial, when, who@host, command and
    the digest of the plan applied."""
    from rich.markup import escape

    with error_boundary(ctx):
        store = open_store(ctx, optional=True)
        versions = store.versions(limit) if store is not None else []
        if not versions:
            print_lines(ctx, "No state versions recorded yet.")
            return
        rows = [
            (
                str(v["serial"]),
                str(v["created"]),
                _who(v),
                str(v["command"] or ""),
                (v["plan_digest"] or "-")[:12],
            )
            for v in versions
        ]
        header = ("SERIAL", "CREATED", "WHO", "COMMAND", "PLAN")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            line = "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
            print_lines(ctx, escape(line))


@state.command("pull")
@click.pass_context
def state_pull(ctx: click.Context) -> None:
    """Write the current state document as JSON to stdout (`state pull > state.json`)."""
    import json

    with error_boundary(ctx):
        store = _open_current(ctx)
        try:
            doc = store.export_state()
        finally:
            store.close()
        click.echo(json.dumps(doc, indent=2, sort_keys=True))


def _open_current(ctx: click.Context) -> Any:
    """The selected workspace's store, whether or not anything was recorded in it."""
    from trainform.state.backend import current_workspace, open_state

    directory, spec = open_backend(ctx)
    return open_state(spec, current_workspace(spec, directory), create=False)


@state.command("push")
@click.argument("path", metavar="FILE")
@click.option(
    "--force", is_flag=True, help="Push even if the lineage differs or the serial is older."
)
@lock_option
@click.option(
    "--lock-timeout", default="0s", show_default=True, help="How long to wait for the lock."
)
@click.pass_context
def state_push(ctx: click.Context, path: str, force: bool, lock: bool, lock_timeout: str) -> None:
    """Replace the state with a state document (from `state pull`; - reads stdin). Refused
    when its lineage differs or its serial is older than the state's, unless -force."""
    import json

    from trainform.errors import StateError

    with error_boundary(ctx):
        try:
            text = sys.stdin.read() if path == "-" else Path(path).read_text()
        except OSError as exc:
            raise StateError(f"cannot read {path}: {exc.strerror}") from None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            where = "stdin" if path == "-" else path
            raise StateError(
                f"{where}:{exc.lineno}:{exc.colno}: not a state document (invalid JSON: "
                f"{exc.msg}); write one with `trainform state pull`"
            ) from None
        store = _open_current(ctx)
        try:
            held = store.acquire_lock("state push", parse_duration(lock_timeout)) if lock else None
            try:
                store.import_state(doc, force=force)
            finally:
                if held is not None:
                    store.release_lock(held)
            serial = store.lineage_serial()[1]
        finally:
            store.close()
        print_lines(
            ctx, f"[green]Pushed[/green] the state to {store.describe()} (serial {serial})."
        )


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
            store.record_version("state rm", None)
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
            store.record_version("state mv", None)
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
