"""``trainform init``: prepare a directory (``.trainform/``, .gitignore, modules) and check
that the providers its blocks use are installed."""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path

import click

from trainform.cli.context import (
    config_dir,
    error_boundary,
    fail_with,
    parse_duration,
    print_lines,
    shell_command,
)

EXAMPLE = """# A starter configuration: a workspace and the local machine as a compute target.
# Run `trainform plan` to see what would change, then `trainform apply`.

variable "team" {
  type        = string
  default     = "ml"
  description = "Owner of these resources"
}

workspace "main" {
  description = "Experiments of team ${var.team}"
}

compute "local" {
  type                = "local"
  max_concurrent_runs = 1
  tags                = { team = var.team }
}

output "cpus" {
  value = compute.local.facts.cpus
}
"""


@click.command()
@click.option("--example", is_flag=True, help="Write a starter main.train.hcl.")
@click.option("--upgrade", is_flag=True, help="Resolve git module sources' refs again (-upgrade).")
@click.option(
    "--migrate-state",
    is_flag=True,
    help="The backend changed: copy the state and history of every workspace to the new one.",
)
@click.option(
    "--reconfigure",
    is_flag=True,
    help="The backend changed: use the new one, leaving the old one as it is.",
)
@click.option(
    "--force-copy",
    is_flag=True,
    help="With -migrate-state: replace state the new backend already holds.",
)
@click.option("--lock-timeout", default="0s", show_default=True, help="How long to wait for locks.")
@click.pass_context
def init(
    ctx: click.Context,
    example: bool,
    upgrade: bool,
    migrate_state: bool,
    reconfigure: bool,
    force_copy: bool,
    lock_timeout: str,
) -> None:
    """Prepare a directory: create .trainform/, ignore it in git, install modules, check
    providers, and set up the state backend (recorded in .trainform/backend.json; when
    the configuration names another one, -migrate-state or -reconfigure)."""
    if migrate_state and reconfigure:
        raise click.UsageError("-migrate-state and -reconfigure exclude each other: choose one")
    if force_copy and not migrate_state:
        raise click.UsageError("-force-copy goes with -migrate-state")
    with error_boundary(ctx):
        from trainform.errors import ConfigError, Diagnostic
        from trainform.providers.registry import provider_class, provider_names

        directory = config_dir(ctx)
        if not directory.is_dir():
            raise ConfigError(Diagnostic(f"directory {str(directory)!r} does not exist"))
        if example:
            target = directory / "main.train.hcl"
            if target.exists():
                print_lines(ctx, f"{target} already exists; leaving it as it is.")
            else:
                target.write_text(EXAMPLE)
                print_lines(ctx, f"Wrote {target}.")
        (directory / ".trainform").mkdir(exist_ok=True)
        gi = directory / ".gitignore"
        lines = gi.read_text().splitlines() if gi.exists() else []
        if not any(line.strip() in (".trainform", ".trainform/", "/.trainform/") for line in lines):
            with gi.open("a") as fh:
                if lines and lines[-1] != "":
                    fh.write("\n")
                fh.write(".trainform/\n")
            print_lines(ctx, "Added .trainform/ to .gitignore.")
        from rich.markup import escape

        from trainform.config.modinstall import install_modules

        installed = install_modules(directory, upgrade)
        if installed.lines:
            print_lines(ctx, ["Modules:", *(escape(line) for line in installed.lines)])
        blocks = installed.blocks  # the root's and every module's
        needed = sorted(
            {
                "workspace" if b.type == "workspace" else "environment"
                for b in blocks
                if b.type in ("workspace", "environment")
            }
        )
        used_at: dict[str, str] = {}  # compute type -> the first block using it
        for b in blocks:
            if b.type == "compute" and "type" in b.attrs:
                from trainform.config.loader import _literal

                with suppress(ConfigError):
                    name = str(_literal(b.attrs["type"].expr, "type"))
                    needed.append(name)
                    label = "".join(f' "{x}"' for x in b.labels)
                    used_at.setdefault(name, f"compute{label} at {b.pos}")
        missing = []
        for name in sorted(set(needed)):
            try:
                provider_class(name)
            except Exception as exc:
                missing.append(f"{name}: {exc}")
                continue
            from trainform.extras import for_compute_type

            if problem := for_compute_type(name):
                missing.append(f"{name}: {problem} (used by {used_at[name]})")
        if missing:
            raise fail_with(ctx, "Missing providers:\n  " + "\n  ".join(missing))
        _init_backend(
            ctx, directory, migrate_state, reconfigure, force_copy, parse_duration(lock_timeout)
        )
        print_lines(
            ctx,
            f"[green]trainform is initialised[/green] in {directory.resolve()} "
            f"(providers installed: {', '.join(provider_names())}).",
        )


def _init_backend(
    ctx: click.Context,
    directory: Path,
    migrate: bool,
    reconfigure: bool,
    force_copy: bool,
    lock_timeout: float,
) -> None:
    """Set up the configuration's backend and record it; if state was in another one,
    copy it (``migrate``), switch (``reconfigure``), or refuse, saying how to choose."""
    from rich.markup import escape

    from trainform.config.loader import config_files, load_module
    from trainform.state.backend import (
        backend_spec,
        migrate_state,
        previous_backend,
        record_backend,
    )

    if not config_files(directory):  # an empty directory: nothing names a backend yet
        return
    module = load_module(directory)
    spec = backend_spec(module)
    old = previous_backend(module.directory, spec)
    if old is not None and not (migrate or reconfigure):
        raise fail_with(
            ctx,
            f"The backend changed: state was in {old.describe()}, and the configuration now "
            f"names {spec.describe()}. Choose: `{shell_command(ctx, 'init', '-migrate-state')}` "
            "copies the state and history of every workspace to the new backend; "
            f"`{shell_command(ctx, 'init', '-reconfigure')}` uses the new one and leaves the "
            "old one as it is.",
        )
    if old is not None and migrate:
        print_lines(
            ctx, f"Copying state from {escape(old.describe())} to {escape(spec.describe())}..."
        )
        for name, counts in migrate_state(old, spec, lock_timeout, force_copy):
            if counts is None:
                what = "already there (the same state)"
            else:
                what = ", ".join(f"{n} {table}" for table, n in counts.items() if n) or "empty"
            print_lines(ctx, f'  workspace "{escape(name)}": {escape(what)}')
        print_lines(ctx, "[green]Copied and verified.[/green] The old backend was left as it is.")
    elif old is not None:
        print_lines(
            ctx, f"Now using {escape(spec.describe())}; {escape(old.describe())} was left as it is."
        )
    record_backend(module.directory, spec)
    print_lines(ctx, f"Backend: {escape(spec.describe())}.")
