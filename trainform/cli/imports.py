"""``trainform import ADDR ID``: bring an existing object (an SSH host, a Docker cluster, a
run of the history) under the management of a block of the configuration, as Terraform's
``import`` command does. The ``import`` block does the same through plan and apply."""

from __future__ import annotations

from typing import Any

import click

from trainform.cli.context import error_boundary, open_session, print_lines, state_lock
from trainform.cli.options import lock_option, var_options


@click.command("import")
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

    with error_boundary(ctx):
        session = open_session(ctx, use_input)
        with state_lock(session, "import", lock, lock_timeout):
            print_lines(ctx, f"{escape(address)}: Importing from ID {escape(repr(ident))}...")
            rs = import_now(session, address, ident)
            session.store.record_version("import", None)
            print_lines(ctx, f"{escape(rs.address)}: Import prepared!")
        print_lines(
            ctx,
            [
                "",
                "[green bold]Import successful![/green bold]",
                "",
                "The resources that were imported are shown above. These resources are now in",
                "your trainform state and will henceforth be managed by trainform.",
            ],
        )
