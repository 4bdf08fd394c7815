"""``trainform`` command line. Thin: it parses flags, calls the library, prints, and picks
exit codes (0 ok, 1 error, 2 changes present with ``--detailed-exitcode``).

Heavy modules are imported inside commands so that ``trainform --version`` stays fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from trainform import __version__

if TYPE_CHECKING:
    from rich.console import Console

    from trainform.engine.session import Session
    from trainform.planner.types import Plan

# Terraform spells long options with one dash (-out=plan, -auto-approve); accept both.
LONG_OPTIONS = {
    "out",
    "var",
    "var-file",
    "auto-approve",
    "no-color",
    "detailed-exitcode",
    "target",
    "replace",
    "destroy",
    "refresh-only",
    "refresh",
    "json",
    "parallelism",
    "lock-timeout",
    "check",
    "diff",
    "input",
    "no-input",
    "lock",
    "detach",
    "force",
    "chdir",
    "example",
    "upgrade",
    "raw",
    "help",
    "version",
    "type",
}


# Boolean flags also take a value, as Go's flag package (Terraform's) reads them:
# -input=false, -lock=false, -refresh=false, -auto-approve=true. True: whether the flag has a
# --no-NAME form, which its false value becomes; the others are false unless given, so
# -NAME=false only undoes an earlier -NAME.
BOOLEAN_FLAGS = {
    "input": True,
    "lock": True,
    "refresh": True,
    "auto-approve": False,
    "detailed-exitcode": False,
    "destroy": False,
    "refresh-only": False,
    "detach": False,
    "json": False,
    "force": False,
    "check": False,
    "diff": False,
    "example": False,
    "upgrade": False,
    "raw": False,
    "quiet": False,
    "follow": False,
}
TRUE_VALUES = ("1", "t", "true")  # strconv.ParseBool's, in any case
FALSE_VALUES = ("0", "f", "false")


def normalize_args(args: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Rewrite ``-name[=v]`` to ``--name[=v]``, boolean ``--name=true|false`` to ``--name``
    or ``--no-name``, and collect ``--var``/``--var-file`` in command-line order (their
    order decides precedence). Raises click.UsageError for a boolean flag's bad value."""
    out: list[str] = []
    ordered: list[tuple[str, str]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            out.extend(args[i:])
            break
        if arg.startswith("-") and not arg.startswith("--") and len(arg) > 2:
            name = arg[1:].split("=", 1)[0]
            if name in LONG_OPTIONS:
                arg = "-" + arg
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if eq and name in BOOLEAN_FLAGS:
                flag = args[i].split("=", 1)[0]
                if value.lower() in TRUE_VALUES:
                    arg = f"--{name}"
                elif value.lower() not in FALSE_VALUES:
                    raise click.UsageError(
                        f"Invalid value for {flag}: {value!r} is not a boolean; "
                        f"use {flag}=true or {flag}=false."
                    )
                elif BOOLEAN_FLAGS[name]:
                    arg = f"--no-{name}"
                else:
                    out = [a for a in out if a != f"--{name}"]
                    i += 1
                    continue
            if name in ("var", "var-file"):
                if not eq and i + 1 < len(args):
                    value = args[i + 1]
                    out.extend([arg, value])
                    i += 2
                else:
                    out.append(arg)
                    i += 1
                ordered.append(("file" if name == "var-file" else "var", value))
                continue
        if arg == "--no-color":
            out.insert(0, arg)  # accepted anywhere, as in Terraform; it is a global option
        else:
            out.append(arg)
        i += 1
    return out, ordered


def _console(ctx: click.Context, stderr: bool = False) -> Console:
    from rich.console import Console

    root = ctx.find_root()
    no_color = bool(root.obj.get("no_color")) or "NO_COLOR" in os.environ
    stream = sys.stderr if stderr else sys.stdout
    return Console(
        stderr=stderr,
        no_color=no_color,
        highlight=False,
        soft_wrap=True,
        color_system=None if no_color else "auto",
        emoji=False,
        # Piped output (CI logs, files) is not cut to 80 columns.
        width=None if stream.isatty() or "COLUMNS" in os.environ else 200,
    )


def _print(ctx: click.Context, lines: list[str] | str, stderr: bool = False) -> None:
    con = _console(ctx, stderr)
    for line in [lines] if isinstance(lines, str) else lines:
        con.print(line)


class Fail(Exception):
    """Raised inside commands to exit 1 after the message has been printed."""


@contextmanager
def _errors(ctx: click.Context) -> Iterator[None]:
    """Turn TrainformError into a message and exit 1; other exceptions into a short report
    with the traceback saved to a file."""
    from trainform.errors import ConfigError, LockError, TrainformError

    try:
        yield
    except ConfigError as exc:
        from dataclasses import replace

        from trainform.cli.render import diagnostic_lines

        for i, d in enumerate(exc.diagnostics):
            if i:
                _print(ctx, "", stderr=True)
            d = replace(d, message=_with_chdir(ctx, d.message), hint=_with_chdir(ctx, d.hint))
            _print(ctx, diagnostic_lines(d), stderr=True)
        raise SystemExit(1) from None
    except LockError as exc:
        from rich.markup import escape

        message = _with_chdir(ctx, str(exc))
        _print(ctx, f"[red bold]Error:[/red bold] {escape(message)}", stderr=True)
        raise SystemExit(1) from None
    except TrainformError as exc:
        from rich.markup import escape

        message = _with_chdir(ctx, str(exc))
        _print(ctx, f"[red bold]Error:[/red bold] {escape(message)}", stderr=True)
        raise SystemExit(1) from None
    except Fail:
        raise SystemExit(1) from None
    except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
        raise
    except KeyboardInterrupt:
        _print(ctx, "[red]Interrupted.[/red]", stderr=True)
        raise SystemExit(130) from None
    except Exception:
        path = _crash_report()
        _print(
            ctx,
            f"[red bold]Error:[/red bold] trainform hit an internal error ({sys.exc_info()[1]!r}).\n"
            f"The full traceback was written to {path}; please include it in a bug report.",
            stderr=True,
        )
        raise SystemExit(1) from None


def _crash_report() -> str:
    import tempfile
    import time
    import traceback

    text = traceback.format_exc()
    name = f"trainform-crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    for folder in (Path(".trainform"), Path(tempfile.gettempdir())):
        try:
            if folder.is_dir():
                (folder / name).write_text(text)
                return str(folder / name)
        except OSError:
            continue
    return "(nowhere: no writable folder)"


def _config_dir(ctx: click.Context) -> Path:
    return Path(ctx.find_root().obj.get("chdir") or ".")


def _command(ctx: click.Context, *words: str) -> str:
    """A trainform command line to paste into a shell, carrying the -C DIR this command
    was given."""
    import shlex

    chdir = ctx.find_root().obj.get("chdir")
    return shlex.join(["trainform", *(["-C", chdir] if chdir else []), *words])


def _with_chdir(ctx: click.Context, text: str) -> str:
    """``text`` with the -C DIR added to the `trainform ...` commands it suggests (the
    library that wrote them cannot know it)."""
    if not ctx.find_root().obj.get("chdir"):
        return text
    return text.replace("`trainform ", f"`{_command(ctx)} ")


def _locked(session: Session, operation: str, lock: bool, timeout: str) -> Any:
    """The state lock for the block, or nothing with --lock=false (as Terraform's -lock)."""
    duration = parse_duration(timeout)
    return session.locked(operation, duration) if lock else nullcontext()


def _prompt_for(ctx: click.Context, use_input: bool) -> Callable[[str, str, bool], str] | None:
    if not (use_input and sys.stdin.isatty()):
        return None

    def prompt(name: str, description: str, sensitive: bool) -> str:
        label = f"var.{name}" + (f" ({description})" if description else "")
        return str(click.prompt(label, hide_input=sensitive, err=True))

    return prompt


def _open_session(
    ctx: click.Context,
    use_input: bool = True,
    parallelism: int = 10,
    fixed: dict[str, Any] | None = None,
) -> Session:
    from trainform.config.variables import VariableInputs
    from trainform.engine.session import Session

    ordered = ctx.find_root().obj.get("var_order", [])
    inputs = VariableInputs(cli=ordered)
    session = Session.open(
        _config_dir(ctx), inputs, _prompt_for(ctx, use_input), parallelism, fixed
    )
    if session.warnings:
        from trainform.cli.render import diagnostic_lines

        for w in session.warnings:
            _print(ctx, diagnostic_lines(w), stderr=True)
    return session


def var_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--var/--var-file (consumed in order by normalize_args) and --input."""
    fn = click.option(
        "--var",
        "vars_",
        multiple=True,
        metavar="NAME=VALUE",
        help="Set a variable (repeatable; later wins).",
    )(fn)
    fn = click.option(
        "--var-file",
        "var_files",
        multiple=True,
        metavar="FILE",
        help="Read variables from a file (.tfvars, .json, .yaml).",
    )(fn)
    fn = click.option(
        "--input/--no-input",
        "use_input",
        default=True,
        help="Ask for missing required variables on a terminal.",
    )(fn)
    return fn


def lock_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--lock/--no-lock",
        default=True,
        show_default=True,
        help="Hold the state lock (--lock=false skips it: only when nobody else may run).",
    )(fn)


def plan_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
        click.option(
            "--target",
            multiple=True,
            metavar="ADDR",
            help="Limit to this resource and what it depends on (repeatable).",
        ),
        click.option(
            "--replace",
            multiple=True,
            metavar="ADDR",
            help="Force replacement of this resource (repeatable).",
        ),
        click.option(
            "--refresh/--no-refresh",
            default=True,
            show_default=True,
            help="Read real-world state first (--refresh=false skips it).",
        ),
        lock_option,
        click.option(
            "--lock-timeout",
            default="0s",
            show_default=True,
            help="How long to wait for the state lock (e.g. 30s, 2m).",
        ),
        click.option(
            "--parallelism",
            default=10,
            show_default=True,
            type=click.IntRange(1, 256),
            help="How many operations run at once.",
        ),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return var_options(fn)


def parse_duration(text: str) -> float:
    from trainform.units import parse_duration as parse

    try:
        return parse(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


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


# ---------------------------------------------------------------------------- init / validate


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


@cli.command()
@click.option("--example", is_flag=True, help="Write a starter main.train.hcl.")
@click.option("--upgrade", is_flag=True, help="Resolve git module sources' refs again (-upgrade).")
@click.pass_context
def init(ctx: click.Context, example: bool, upgrade: bool) -> None:
    """Prepare a directory: create .trainform/, ignore it in git, install modules, check
    providers."""
    with _errors(ctx):
        from trainform.errors import ConfigError, Diagnostic
        from trainform.providers.registry import provider_class, provider_names

        directory = _config_dir(ctx)
        if not directory.is_dir():
            raise ConfigError(Diagnostic(f"directory {str(directory)!r} does not exist"))
        if example:
            target = directory / "main.train.hcl"
            if target.exists():
                _print(ctx, f"{target} already exists; leaving it as it is.")
            else:
                target.write_text(EXAMPLE)
                _print(ctx, f"Wrote {target}.")
        (directory / ".trainform").mkdir(exist_ok=True)
        gi = directory / ".gitignore"
        lines = gi.read_text().splitlines() if gi.exists() else []
        if not any(line.strip() in (".trainform", ".trainform/", "/.trainform/") for line in lines):
            with gi.open("a") as fh:
                if lines and lines[-1] != "":
                    fh.write("\n")
                fh.write(".trainform/\n")
            _print(ctx, "Added .trainform/ to .gitignore.")
        from rich.markup import escape

        from trainform.config.modinstall import install_modules

        installed = install_modules(directory, upgrade)
        if installed.lines:
            _print(ctx, ["Modules:", *(escape(line) for line in installed.lines)])
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
            raise Fail_with(ctx, "Missing providers:\n  " + "\n  ".join(missing))
        _print(
            ctx,
            f"[green]trainform is initialised[/green] in {directory.resolve()} "
            f"(providers installed: {', '.join(provider_names())}).",
        )


def Fail_with(ctx: click.Context, message: str) -> Fail:
    from rich.markup import escape

    _print(ctx, f"[red bold]Error:[/red bold] {escape(message)}", stderr=True)
    return Fail()


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
@click.pass_context
def validate(ctx: click.Context, as_json: bool) -> None:
    """Check the configuration's syntax, schemas and references (no state, no providers)."""
    import json as _json

    from trainform.config.variables import VariableInputs
    from trainform.engine.session import validate_config
    from trainform.errors import ConfigError

    inputs = VariableInputs(cli=ctx.find_root().obj.get("var_order", []))
    if not as_json:
        with _errors(ctx):
            module = validate_config(_config_dir(ctx), inputs)
            n = len(module.resources)
            _print(
                ctx,
                f"[green bold]Success![/green bold] The configuration is valid "
                f"({len(module.files)} file(s), {n} resource block(s)).",
            )
        return
    try:
        validate_config(_config_dir(ctx), inputs)
        diags: list[dict[str, Any]] = []
    except ConfigError as exc:
        diags = [
            {
                "severity": d.severity,
                "summary": d.message,
                "detail": d.hint,
                "range": {
                    "filename": d.pos.file,
                    "start": {"line": d.pos.line, "column": d.pos.column},
                }
                if d.pos
                else None,
            }
            for d in exc.diagnostics
        ]
    click.echo(
        _json.dumps(
            {
                "format_version": "1.0",
                "valid": not diags,
                "error_count": len(diags),
                "diagnostics": diags,
            },
            indent=2,
        )
    )
    if diags:
        raise SystemExit(1)


@cli.command()
@click.option("--check", is_flag=True, help="Exit 3 if any file is not formatted; change nothing.")
@click.option("--diff", is_flag=True, help="Show the changes as a unified diff.")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.pass_context
def fmt(ctx: click.Context, check: bool, diff: bool, paths: tuple[str, ...]) -> None:
    """Rewrite *.train.hcl (and .tfvars) files in the canonical layout. Comments are kept and
    meaning never changes."""
    import difflib

    from trainform.config.fmt import FormatError, format_hcl

    targets: list[Path] = []
    for p in [Path(x) for x in paths] or [_config_dir(ctx)]:
        if p.is_dir():
            targets.extend(
                sorted(q for q in p.iterdir() if q.name.endswith((".train.hcl", ".tfvars")))
            )
        else:
            targets.append(p)
    unformatted = []
    failed = False
    for path in targets:
        text = path.read_text(encoding="utf-8")
        try:
            new = format_hcl(text, str(path))
        except FormatError as exc:
            _print(ctx, f"[red bold]Error:[/red bold] {exc}", stderr=True)
            failed = True
            continue
        if new == text:
            continue
        unformatted.append(path)
        click.echo(str(path))
        if diff:
            click.echo(
                "".join(
                    difflib.unified_diff(
                        text.splitlines(True), new.splitlines(True), f"old/{path}", f"new/{path}"
                    )
                )
            )
        if not check:
            path.write_text(new, encoding="utf-8")
    if failed:
        raise SystemExit(1)
    if check and unformatted:
        raise SystemExit(3)


# ---------------------------------------------------------------------------- plan / apply


def _plan_mode(destroy: bool, refresh_only: bool) -> str:
    if destroy and refresh_only:
        raise click.UsageError("--destroy and --refresh-only cannot be combined")
    return "destroy" if destroy else "refresh-only" if refresh_only else "normal"


def _show_plan(ctx: click.Context, plan: Plan) -> None:
    from trainform.cli.render import plan_text

    _print(ctx, plan_text(plan))


@cli.command()
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

    mode = _plan_mode(destroy, refresh_only)
    with _errors(ctx):
        session = _open_session(ctx, use_input, parallelism)
        with _locked(session, "plan", lock, lock_timeout):
            the_plan = session.make_plan(PlanOptions(mode, target, replace), refresh)[0]
            if out:
                planfile.save(Path(out), session.saved(the_plan))
        if as_json:
            click.echo(_json.dumps(plan_to_json(the_plan), sort_keys=True, indent=2))
        else:
            _show_plan(ctx, the_plan)
            if out:
                from rich.markup import escape

                _print(
                    ctx,
                    f"\nSaved the plan to: {escape(out)}\nTo perform exactly these actions, run:\n"
                    f"  {escape(_command(ctx, 'apply', out))}",
                )
    if detailed_exitcode and the_plan.has_changes:
        raise SystemExit(2)


def _confirm(ctx: click.Context, auto_approve: bool, what: str, cancelled: str) -> None:
    """Ask on the terminal; anything but "yes" prints ``cancelled`` and exits 1."""
    if auto_approve:
        return
    if not sys.stdin.isatty():
        raise Fail_with(
            ctx,
            f"refusing to {what} without confirmation: stdin is not a terminal. Pass "
            "--auto-approve, or apply a saved, reviewed plan file "
            f"(`{_command(ctx, 'apply')} FILE`).",
        )
    _print(
        ctx, f"\n[bold]Do you want to {what}?[/bold]\n  Only 'yes' will be accepted to approve.\n"
    )
    answer = click.prompt("  Enter a value", default="", show_default=False)
    if answer.strip() != "yes":
        _print(ctx, f"\n[red]{cancelled}[/red]")
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

    from trainform.cli.render import ing, past

    cancel = threading.Event()
    printing = threading.Lock()  # events arrive from worker threads
    # Log lines keep their colour only if our own output is in colour.
    log_colour = _console(ctx).color_system is not None

    def on_event(e: Any) -> None:
        c = e.change
        verb = c.verb
        with printing:
            if e.kind == "start":
                _print(ctx, f"{escape(c.address)}: {ing(verb)}...")
            elif e.kind == "done":
                what = past(verb).capitalize()
                if (
                    c.kind in ("run", "sweep")
                    and verb in ("submit", "resubmit")
                    and e.message != "detached"
                ):
                    what = "Completed"
                _print(ctx, f"{escape(c.address)}: {what} after {e.elapsed:.1f}s")
            elif e.kind == "failed" and "\n" in e.message:
                # a run whose log was streamed: why, with its last lines, comes once, at the end
                _print(ctx, f"[red]{escape(c.address)}: failed after {e.elapsed:.1f}s[/red]")
            elif e.kind == "failed":
                _print(ctx, f"[red]{escape(c.address)}: failed: {escape(e.message)}[/red]")
            elif e.kind == "skipped":
                _print(ctx, f"[yellow]{escape(c.address)}: skipped (a dependency failed)[/yellow]")
            elif e.kind == "submitted":
                _print(
                    ctx,
                    f"{escape(c.address)}: submitted as {c.kind} [bold]{escape(e.message)}[/bold]",
                )
            elif e.kind == "status":
                _print(ctx, f"[cyan]{escape(c.address)}: {escape(e.message)}[/cyan]")
            elif e.kind == "log":
                from trainform.cli.loglines import plan_prefix_width, prefixed

                # A multi-node run's lines carry their rank: run.ddp[1] | ... Control
                # sequences are made inert here (so click has nothing left to strip).
                text = prefixed(c.address, e.message, plan_prefix_width(the_plan), log_colour)
                click.echo(text, color=True)
            elif e.kind == "progress":
                _print(ctx, f"[dim]{escape(c.address)}: {escape(e.message)}[/dim]")

    def on_sigint(signum: int, frame: Any) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        _print(
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
        c = changes[addr]
        counts["add"] += "create" in c.actions
        counts["destroy"] += "delete" in c.actions
        counts["change"] += c.actions == ("update",)
    _print(ctx, "")
    if result.ok and the_plan.mode == "destroy":
        _print(
            ctx,
            f"[green bold]Destroy complete![/green bold] Resources: {counts['destroy']} destroyed.",
        )
    elif result.ok:
        imported = f"{len(the_plan.imported)} imported, " if the_plan.imported else ""
        _print(
            ctx,
            f"[green bold]Apply complete![/green bold] Resources: {imported}{counts['add']} "
            f"added, {counts['change']} changed, {counts['destroy']} destroyed.",
        )
    elif result.interrupted and not (result.failed or result.skipped or result.not_started):
        _print(
            ctx,
            f"[yellow bold]Apply interrupted.[/yellow bold] Resources: {counts['add']} added, "
            f"{counts['change']} changed, {counts['destroy']} destroyed; every change was made "
            "and recorded, but trainform stopped watching.",
        )
    else:
        _print(
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
            _print(ctx, f"  [red]failed[/red]  {escape(addr)}: {escape(msg)}")
        for addr in result.skipped:
            _print(ctx, f"  [yellow]skipped[/yellow] {escape(addr)}")
        for addr in result.not_started:
            _print(ctx, f"  [yellow]not started[/yellow] {escape(addr)}")
        _print(ctx, "State records exactly what was done; run the command again to continue.")
    for addr in result.detached:
        follow = (
            _command(ctx, "sweeps", "show", addr)
            if addr.startswith("sweep.")
            else _command(ctx, "runs", "wait", addr)
        )
        _print(
            ctx,
            f"{escape(addr)} keeps running in the background; follow it with `{escape(follow)}`",
        )
    for warning in result.check_warnings:  # check blocks over the state just recorded
        _print(ctx, f"\n[yellow bold]Warning:[/yellow bold] {escape(warning)}")
    if result.outputs and the_plan.mode == "normal":
        _print(ctx, "\nOutputs:\n")
        _print(ctx, _outputs_lines(result.outputs))
    if not result.ok:
        raise SystemExit(130 if result.interrupted and not result.failed else 1)


def _outputs_lines(outputs: dict[str, dict[str, Any]]) -> list[str]:
    from rich.markup import escape

    from trainform.cli.render import SENSITIVE, value_text

    width = max((len(n) for n in outputs), default=0)
    return [
        f"{escape(name.ljust(width))} = {escape(SENSITIVE if o['sensitive'] else value_text(o['value']))}"
        for name, o in sorted(outputs.items())
    ]


@cli.command()
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
        _plan_mode(destroy, refresh_only),
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
    with _errors(ctx):
        if planfile_arg:
            if target or replace or mode != "normal":
                raise click.UsageError(
                    "a saved plan already fixes targets and mode; pass only the plan file"
                )
            saved = pf.load(Path(planfile_arg))
            if Path(saved.config_dir).resolve() != _config_dir(ctx).resolve():
                from trainform.errors import PlanError

                raise PlanError(
                    f"{planfile_arg} was made for the configuration in {saved.config_dir}; "
                    f"run from there or with -C {saved.config_dir}"
                )
            session = _open_session(ctx, use_input, parallelism, fixed=saved.variables)
            with _locked(session, command, lock, lock_timeout):
                planner = session.check_saved(saved)
                the_plan = saved.plan
                if not the_plan.has_changes and not the_plan.drift:
                    _show_plan(ctx, the_plan)
                    return
                _run_apply(ctx, session, the_plan, planner, argv, detach)
            return
        session = _open_session(ctx, use_input, parallelism)
        with _locked(session, command, lock, lock_timeout):
            the_plan, planner = session.make_plan(PlanOptions(mode, target, replace), refresh)
            _show_plan(ctx, the_plan)
            if not the_plan.has_changes and not the_plan.drift:
                return
            if the_plan.has_changes:
                what = {"destroy": "destroy all resources", "refresh-only": "update the state"}.get(
                    mode, "perform these actions"
                )
                cancelled = "Destroy cancelled." if mode == "destroy" else "Apply cancelled."
                _confirm(ctx, auto_approve, what, cancelled)
            _print(ctx, "")
            _run_apply(ctx, session, the_plan, planner, argv, detach)


@cli.command()
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


@cli.command()
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


# ---------------------------------------------------------------------------- state views


def _store(ctx: click.Context, optional: bool = False) -> Any:
    """The configuration's state store; with ``optional``, None when nothing was ever
    recorded (listing commands then show an empty list), else that is an error."""
    from trainform.config.loader import load_module
    from trainform.engine.session import state_path
    from trainform.errors import StateError
    from trainform.state.store import SQLiteStateStore

    module = load_module(_config_dir(ctx))
    path = state_path(module)
    if not path.exists():
        if optional:
            return None
        raise StateError(f"no state yet at {path}: nothing has been applied in this configuration")
    return SQLiteStateStore(path)


@cli.command()
@click.argument("planfile", required=False, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def show(ctx: click.Context, planfile: str | None, as_json: bool) -> None:
    """Show the state (resources, facts, outputs) or a saved plan."""
    import json as _json

    from rich.markup import escape

    from trainform.cli.render import SENSITIVE

    with _errors(ctx):
        if planfile:
            from trainform.planner import planfile as pf
            from trainform.planner.jsonplan import plan_to_json

            saved = pf.load(Path(planfile))
            if as_json:
                click.echo(_json.dumps(plan_to_json(saved.plan), sort_keys=True, indent=2))
            else:
                _show_plan(ctx, saved.plan)
            return
        store = _store(ctx)
        resources = store.resources()
        outputs = store.outputs()
        lineage, serial = store.lineage_serial()
        if as_json:
            from trainform.state.secrets import is_sealed

            def clean(v: Any) -> Any:
                return None if is_sealed(v) else v

            data = {
                "format_version": "1.0",
                "lineage": lineage,
                "serial": serial,
                "resources": [
                    {
                        "address": r.address,
                        "type": r.kind,
                        "name": r.name,
                        "index": r.key,
                        "provider": r.provider,
                        "status": r.status,
                        "attributes": {k: clean(v) for k, v in r.attributes.items()},
                        "sensitive_attributes": sorted(
                            k for k, v in r.attributes.items() if is_sealed(v)
                        ),
                        "computed": r.computed,
                        "depends_on": list(r.dependencies),
                    }
                    for r in resources.values()
                ],
                "outputs": {
                    n: {
                        "value": None if o["sensitive"] else o["value"],
                        "sensitive": o["sensitive"],
                    }
                    for n, o in outputs.items()
                },
            }
            click.echo(_json.dumps(data, sort_keys=True, indent=2))
            return
        if not resources and not outputs:
            _print(ctx, "The state is empty.")
            return
        for r in resources.values():
            status = "" if r.status == "ready" else f" [red]({r.status})[/red]"
            _print(
                ctx,
                f"[bold]# {escape(r.address)}[/bold]{status}  [dim]provider {escape(r.provider)}[/dim]",
            )
            _print(ctx, _attr_lines({**r.attributes, **r.computed}))
            _print(ctx, "")
        if outputs:
            _print(ctx, "Outputs:\n")
            _print(ctx, _outputs_lines(outputs))
        _ = SENSITIVE


def _attr_lines(attrs: dict[str, Any], indent: str = "    ") -> list[str]:
    from rich.markup import escape

    from trainform.cli.render import value_text

    lines = []
    width = max((len(k) for k in attrs), default=0)
    for key in sorted(attrs):
        value = attrs[key]
        if isinstance(value, dict) and value and value.keys() != {"__sensitive__"}:
            lines.append(f"{indent}{escape(key.ljust(width))} = {{")
            lines.extend(_attr_lines(value, indent + "    "))
            lines.append(f"{indent}}}")
        else:
            lines.append(f"{indent}{escape(key.ljust(width))} = {escape(value_text(value))}")
    return lines


@cli.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print values as JSON.")
@click.option("--raw", is_flag=True, help="Print a string output's value without quotes.")
@click.pass_context
def output(ctx: click.Context, name: str | None, as_json: bool, raw: bool) -> None:
    """Show output values from the state. Sensitive outputs are stored only as hashes and
    show as (sensitive value)."""
    import json as _json

    from trainform.cli.render import SENSITIVE, value_text
    from trainform.config.schema import did_you_mean
    from trainform.errors import TrainformError

    with _errors(ctx):
        outputs = _store(ctx).outputs()
        if name is not None:
            if name not in outputs:
                hint = did_you_mean(name, list(outputs))
                raise TrainformError(f"no output named {name!r}" + (f"; {hint}" if hint else ""))
            o = outputs[name]
            if as_json:
                click.echo(_json.dumps(None if o["sensitive"] else o["value"]))
            elif o["sensitive"]:
                click.echo(SENSITIVE)
            elif raw and isinstance(o["value"], (str, int, float, bool)):
                click.echo(o["value"] if isinstance(o["value"], str) else value_text(o["value"]))
            else:
                click.echo(value_text(o["value"]))
            return
        if as_json:
            click.echo(
                _json.dumps(
                    {
                        n: {
                            "value": None if o["sensitive"] else o["value"],
                            "sensitive": o["sensitive"],
                        }
                        for n, o in outputs.items()
                    },
                    sort_keys=True,
                    indent=2,
                )
            )
            return
        _print(ctx, _outputs_lines(outputs))


@cli.group()
def state() -> None:
    """Inspect and edit the state."""


@state.command("list")
@click.argument("filters", nargs=-1)
@click.pass_context
def state_list(ctx: click.Context, filters: tuple[str, ...]) -> None:
    """List resource addresses in the state."""
    with _errors(ctx):
        from trainform.config.address import selects

        for addr in _store(ctx).resources():
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

    with _errors(ctx):
        r = _find(ctx, _store(ctx), address)
        _print(ctx, f"[bold]# {escape(r.address)}[/bold] ({escape(r.status)})")
        _print(ctx, _attr_lines({**r.attributes, **r.computed}))


@state.command("rm")
@click.argument("addresses", nargs=-1, required=True)
@click.option("--lock-timeout", default="0s")
@click.pass_context
def state_rm(ctx: click.Context, addresses: tuple[str, ...], lock_timeout: str) -> None:
    """Stop managing resources (nothing real is destroyed)."""
    with _errors(ctx):
        store = _store(ctx)
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

    with _errors(ctx):
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
        store = _store(ctx)
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


@cli.command("force-unlock")
@click.argument("lock_id")
@click.option("--force", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def force_unlock(ctx: click.Context, lock_id: str, force: bool) -> None:
    """Remove a stale lock left by a process that is gone (on another host)."""
    with _errors(ctx):
        store = _store(ctx)
        if not force and sys.stdin.isatty():
            click.confirm(
                f"Remove lock {lock_id}? Only do this if its holder is not running", abort=True
            )
        info = store.force_unlock(lock_id)
        _print(ctx, f"[green]Released[/green] {info.describe()}.")


@cli.command()
@click.option(
    "--type",
    "graph_type",
    type=click.Choice(["plan", "plan-destroy"]),
    help="Show the planned actions (plan, or plan-destroy) instead of the dependencies.",
)
@click.option(
    "--refresh/--no-refresh",
    default=True,
    show_default=True,
    help="With --type: read real-world state first, as plan does.",
)
@var_options
@click.pass_context
def graph(
    ctx: click.Context, graph_type: str | None, refresh: bool, use_input: bool, **_: Any
) -> None:
    """Print the dependency graph in Graphviz DOT (pipe into `dot -Tsvg`); with -type=plan,
    the resources with their planned actions."""
    from trainform.config.loader import load_module
    from trainform.graph import plan_to_dot, to_dot

    with _errors(ctx):
        if graph_type:
            from trainform.planner.diff import PlanOptions

            mode = "destroy" if graph_type == "plan-destroy" else "normal"
            session = _open_session(ctx, use_input)
            the_plan = session.make_plan(PlanOptions(mode), refresh)[0]
            click.echo(plan_to_dot(the_plan), nl=False)
            return
        module = load_module(_config_dir(ctx))
        click.echo(to_dot(module.dependencies), nl=False)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def version(as_json: bool) -> None:
    """Print the version and installed providers."""
    import json as _json

    from trainform.providers.registry import provider_names

    if as_json:
        click.echo(_json.dumps({"trainform_version": __version__, "providers": provider_names()}))
    else:
        click.echo(f"trainform v{__version__}")
        click.echo("providers: " + ", ".join(provider_names()))


def main(argv: list[str] | None = None) -> None:
    import trainform.cli.compute
    import trainform.cli.console
    import trainform.cli.imports
    import trainform.cli.runs
    import trainform.cli.sweeps  # noqa: F401  (registers `sweeps`)

    try:
        args, ordered = normalize_args(list(sys.argv[1:] if argv is None else argv))
    except click.UsageError as exc:
        exc.show()
        raise SystemExit(1) from None
    cli.main(args=args, prog_name="trainform", obj={"var_order": ordered})
