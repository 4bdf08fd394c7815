"""``trainform import ADDR ID``: bring an existing object (an SSH host, a Docker cluster, a
run of the history) under the management of a block of the configuration, as Terraform's
``import`` command does. The ``import`` block does the same through plan and apply."""

from __future__ import annotations

from typing import Any

import click

from trainform.cli.main import (
    _errors,
    _locked,
    _open_session,
    _print,
    cli,
    lock_option,
    var_options,
)


@cli.command("import")
@click.argument("address", metavar="ADDR")
@click.argument("ident", metavar="ID")
@lock_option
@click.option("--lock-timeout", default="0s", show_default=True)
@var_options
@click.pass_context
def import_command(
    ctx: click.Context,
    address: str,
    ident: str,
    lock: bool,
    lock_timeout: str,
    use_input: bool,
    **_: Any,
) -> None:
    """Import the existing object ID into ADDR, whose block must be in the configuration:
    an ssh compute (ID user@host:port), a docker-cluster compute (ID its cluster id, the
    trainform.cluster label) or a run (ID a run id of the history, e.g. from `submit`)."""
    from rich.markup import escape

    from trainform.engine.refactor import import_now

    with _errors(ctx):
        session = _open_session(ctx, use_input)
        with _locked(session, "import", lock, lock_timeout):
            _print(ctx, f"{escape(address)}: Importing from ID {escape(repr(ident))}...")
            rs = import_now(session, address, ident)
            _print(ctx, f"{escape(rs.address)}: Import prepared!")
        _print(
            ctx,
            [
                "",
                "[green bold]Import successful![/green bold]",
                "",
                "The resources that were imported are shown above. These resources are now in",
                "your trainform state and will henceforth be managed by trainform.",
            ],
        )
