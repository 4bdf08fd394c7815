"""``trainform`` command line. Thin: it parses flags, calls the library, prints, and picks
exit codes (0 ok, 1 error, 2 changes present with ``--detailed-exitcode``).

This module only assembles the root group from one module per command or command group;
what they share (console, error boundary, store and session) is in ``cli/context.py`` and
the flags' spelling in ``cli/options.py``. Heavy modules are imported inside commands so
that ``trainform --version`` stays fast.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from trainform import __version__
from trainform.cli import (
    apply,
    compare,
    compute,
    console,
    fmt,
    graph,
    imports,
    init,
    output,
    plan,
    runs,
    show,
    state,
    sweeps,
    validate,
    version,
    workspace,
)
from trainform.cli import export as _export  # noqa: F401  # adds `runs export`
from trainform.cli.options import normalize_args


class Group(click.Group):
    """The root group. A usage error (unknown option, bad value, missing argument) in any
    command exits 1, not click's 2: exit 2 means only "changes present" under
    --detailed-exitcode, and CI must never read a typo as that."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            exc.exit_code = 1  # type: ignore[misc]  # click declares it per class
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # from a subcommand's (or subgroup's) parsing or body
            exc.exit_code = 1  # type: ignore[misc]  # click declares it per class
            raise


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-C", "--chdir", "chdir", metavar="DIR", help="Use the configuration in DIR.")
@click.option("--no-color", is_flag=True, help="Plain output without colour.")
@click.version_option(
    __version__, "--version", "-v", prog_name="trainform", message="%(prog)s v%(version)s"
)
@click.pass_context
def cli(ctx: click.Context, chdir: str | None, no_color: bool) -> None:
    """Declarative infrastructure and runs for machine-learning training.

    Describe workspaces, compute targets and environments in *.train.hcl or *.train.yaml
    files, review what would change with `plan`, and make it so with `apply`.
    """
    ctx.ensure_object(dict)
    if chdir:
        ctx.obj["chdir"] = chdir
    if no_color:
        ctx.obj["no_color"] = True


# `trainform --help` lists the commands in this order.
for command in (
    init.init,
    validate.validate,
    fmt.fmt,
    plan.plan,
    apply.apply,
    apply.destroy,
    apply.refresh,
    show.show,
    output.output,
    state.state,
    state.force_unlock,
    workspace.workspace,
    graph.graph,
    version.version,
    runs.runs,
    runs.submit,
    compute.compute,
    console.console,
    imports.import_command,
    sweeps.sweeps,
):
    cli.add_command(command)
runs.runs.add_command(compare.compare)


def main(argv: list[str] | None = None) -> None:
    try:
        args, ordered = normalize_args(list(sys.argv[1:] if argv is None else argv))
    except click.UsageError as exc:
        exc.show()
        raise SystemExit(1) from None
    cli.main(args=args, prog_name="trainform", obj={"var_order": ordered})
