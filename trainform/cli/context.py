"""What every command module shares: the console it prints with, the error boundary that
turns exceptions into messages and exit codes, and opening the configuration's state
store, session and providers. It imports no command module.

Heavy modules are imported inside functions so that ``trainform --help`` stays fast."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console

    from trainform.engine.session import Session
    from trainform.state.backend import BackendSpec


def make_console(ctx: click.Context, stderr: bool = False) -> Console:
    """A Rich console for stdout (or stderr) that honours --no-color and NO_COLOR."""
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


def print_lines(ctx: click.Context, lines: list[str] | str, stderr: bool = False) -> None:
    """Print Rich markup, one line or a list of them."""
    con = make_console(ctx, stderr)
    for line in [lines] if isinstance(lines, str) else lines:
        con.print(line)


class Fail(Exception):
    """Raised inside commands to exit 1 after the message has been printed."""


@contextmanager
def error_boundary(ctx: click.Context) -> Iterator[None]:
    """Turn TrainformError into a message and exit 1; other exceptions into a short report
    with the traceback saved to a file."""
    from trainform.errors import ConfigError, LockError, PlanRefusal, TrainformError

    try:
        yield
    except (ConfigError, PlanRefusal) as exc:
        from dataclasses import replace

        from trainform.cli.render import diagnostic_lines

        for i, d in enumerate(exc.diagnostics):
            if i:
                print_lines(ctx, "", stderr=True)
            d = replace(d, message=with_chdir(ctx, d.message), hint=with_chdir(ctx, d.hint))
            print_lines(ctx, diagnostic_lines(d), stderr=True)
        raise SystemExit(1) from None
    except LockError as exc:
        from rich.markup import escape

        message = with_chdir(ctx, str(exc))
        print_lines(ctx, f"[red bold]Error:[/red bold] {escape(message)}", stderr=True)
        raise SystemExit(1) from None
    except TrainformError as exc:
        from rich.markup import escape

        message = with_chdir(ctx, str(exc))
        print_lines(ctx, f"[red bold]Error:[/red bold] {escape(message)}", stderr=True)
        raise SystemExit(1) from None
    except Fail:
        raise SystemExit(1) from None
    except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
        raise
    except KeyboardInterrupt:
        print_lines(ctx, "[red]Interrupted.[/red]", stderr=True)
        raise SystemExit(130) from None
    except Exception:
        path = _crash_report()
        print_lines(
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


def config_dir(ctx: click.Context) -> Path:
    return Path(ctx.find_root().obj.get("chdir") or ".")


def shell_command(ctx: click.Context, *words: str) -> str:
    """A trainform command line to paste into a shell, carrying the -C DIR this command
    was given."""
    import shlex

    chdir = ctx.find_root().obj.get("chdir")
    return shlex.join(["trainform", *(["-C", chdir] if chdir else []), *words])


def with_chdir(ctx: click.Context, text: str) -> str:
    """``text`` with the -C DIR added to the `trainform ...` commands it suggests (the
    library that wrote them cannot know it)."""
    if not ctx.find_root().obj.get("chdir"):
        return text
    return text.replace("`trainform ", f"`{shell_command(ctx)} ")


def state_lock(session: Session, operation: str, lock: bool, timeout: str) -> Any:
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


def open_session(
    ctx: click.Context,
    use_input: bool = True,
    parallelism: int = 10,
    fixed: dict[str, Any] | None = None,
) -> Session:
    from trainform.config.variables import VariableInputs
    from trainform.engine.session import Session

    ordered = ctx.find_root().obj.get("var_order", [])
    inputs = VariableInputs(cli=ordered)
    session = Session.open(config_dir(ctx), inputs, _prompt_for(ctx, use_input), parallelism, fixed)
    if session.warnings:
        from trainform.cli.render import diagnostic_lines

        for w in session.warnings:
            print_lines(ctx, diagnostic_lines(w), stderr=True)
    return session


def parse_duration(text: str) -> float:
    from trainform.units import parse_duration as parse

    try:
        return parse(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def fail_with(ctx: click.Context, message: str) -> Fail:
    """Print ``message`` as an error and return the Fail to raise (exit 1)."""
    from rich.markup import escape

    print_lines(ctx, f"[red bold]Error:[/red bold] {escape(message)}", stderr=True)
    return Fail()


def open_backend(ctx: click.Context) -> tuple[Path, BackendSpec]:
    """The configuration's folder and the state backend it names (checked to be the one
    `init` set up, if it recorded one; no workspace check)."""
    from trainform.config.loader import load_module
    from trainform.state.backend import backend_spec, check_initialised

    module = load_module(config_dir(ctx))
    spec = backend_spec(module)
    check_initialised(module.directory, spec)
    return module.directory, spec


def open_store(ctx: click.Context, optional: bool = False) -> Any:
    """The selected workspace's state store in the configuration's backend; with
    ``optional``, None when nothing was ever recorded there (listing commands then show an
    empty list), else that is an error. A selected workspace that does not exist is an
    error either way."""
    from trainform.errors import StateError
    from trainform.state.backend import current_workspace, describe_workspace, open_state

    directory, spec = open_backend(ctx)
    workspace = current_workspace(spec, directory)
    store = open_state(spec, workspace, create=False)
    if store.is_empty():
        store.close()
        if optional:
            return None
        raise StateError(
            f"no state yet in {describe_workspace(spec, workspace)}: nothing has been applied there"
        )
    return store


def open_providers(ctx: click.Context, store: Any) -> Any:
    """Providers for commands that reach run targets. Targets reached with a password or a
    passphrase need the configuration's values (state holds only salted hashes), so then the
    configuration is evaluated as for `plan` (variables from -var flags, files, TF_VAR_*,
    or a prompt on a terminal)."""
    from trainform.providers.base import ProviderContext
    from trainform.providers.registry import Providers
    from trainform.state import secrets
    from trainform.state.backend import DATA_DIR, current_workspace

    directory, spec = open_backend(ctx)
    directory = directory.resolve()
    resources = store.resources()
    if any(secrets.is_sealed(v) for r in resources.values() for v in r.attributes.values()):
        from trainform.errors import TrainformError

        with suppress(TrainformError):  # then the target reports what it lacks
            session = open_session(ctx)
            session.remember_secrets(resources)
            return session.providers
    context = ProviderContext(
        directory,
        directory / DATA_DIR,
        backend=spec,
        workspace=current_workspace(spec, directory),
    )
    return Providers(context)
