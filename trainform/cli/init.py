"""``trainform init``: prepare a directory (``.trainform/``, .gitignore, modules) and check
that the providers its blocks use are installed."""

from __future__ import annotations

from contextlib import suppress

import click

from trainform.cli.context import config_dir, error_boundary, fail_with, print_lines

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
@click.pass_context
def init(ctx: click.Context, example: bool, upgrade: bool) -> None:
    """Prepare a directory: create .trainform/, ignore it in git, install modules, check
    providers."""
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
        print_lines(
            ctx,
            f"[green]trainform is initialised[/green] in {directory.resolve()} "
            f"(providers installed: {', '.join(provider_names())}).",
        )
