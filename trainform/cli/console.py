"""``trainform console``: evaluate expressions against the configuration and the recorded
state, as ``terraform console`` does.

The scope is built once: variables (from --var, --var-file, TRAINFORM_VAR_*, tfvars; a
required one without a value is unknown, never prompted for), locals, ``path.*``, module
outputs (``module.NAME.OUTPUT``), and every
resource by address with its configured attributes and the computed ones recorded in state
(facts, run ids, status). Nothing is refreshed and the state is only read: no lock is taken,
and without a state file the console works from the configuration alone.

On a terminal it is a readline prompt (history of the *expressions* typed, never of their
values, in ``.trainform/console_history``); otherwise it reads one expression per line from
stdin, prints each result, and stops at the first error with exit 1, as Terraform does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from trainform.cli.context import config_dir, error_boundary, open_store, print_lines
from trainform.cli.options import var_options

if TYPE_CHECKING:
    from trainform.config.expr import Ref
    from trainform.config.model import Instance, Module
    from trainform.config.sensitivity import SensitiveRef
    from trainform.config.values import FunctionContext
    from trainform.errors import Diagnostic

INPUT_FILE = "<console input>"
HISTORY_FILE = "console_history"
HISTORY_LENGTH = 1000
HELP = """\
The console evaluates expressions against the configuration and the recorded state:
  var.NAME, local.NAME, path.module, module.NAME.OUTPUT, KIND.NAME[.ATTR] (e.g.
  compute.gpu.facts.cpus), and every function (upper("x"), jsonencode(var.tags), ...).
Values known only after apply show as (known after apply); sensitive values as
(sensitive value). Type `exit` or press Ctrl-D to leave; Ctrl-C cancels the line."""

# ------------------------------------------------------------------------------- rendering
# Values are written by trainform.config.display.render_value (terraform console's syntax).
# Two things only the console knows are settled first: which parts are sensitive (replaced by
# SENSITIVE_VALUE, which renders as "(sensitive value)"), and the declared type of a variable
# (list(string) shows as tolist([...]), as in Terraform, though the value is a plain list).


class _SensitiveType:
    """Stands for a sensitive value inside a value being shown."""

    def __repr__(self) -> str:  # what render_value writes for a value it does not know
        return "(sensitive value)"


SENSITIVE_VALUE = _SensitiveType()


def _element_type(spec: Any, key: Any) -> Any:
    """The type spec of one element of a value of type ``spec``."""
    if isinstance(spec, tuple) and len(spec) == 2:
        kind, inner = spec
        if kind in ("list", "set", "map"):
            return inner
        if kind == "object":
            fields = dict(inner) if isinstance(inner, (dict, tuple, list)) else {}
            return fields.get(key, "any")
        if kind == "tuple" and isinstance(inner, (list, tuple)) and isinstance(key, int):
            return inner[key] if 0 <= key < len(inner) else "any"
    return "any"


def typed(value: Any, spec: Any = "any") -> Any:
    """``value`` ready for render_value: sealed state values as SENSITIVE_VALUE, and lists
    and maps marked as the type ``spec`` (a variable's declared type) says."""
    from trainform.config.values import TfList, TfMap, TfSet
    from trainform.state import secrets

    if secrets.is_sealed(value):
        return SENSITIVE_VALUE
    kind = spec[0] if isinstance(spec, tuple) else None
    if isinstance(value, list):
        items = [typed(v, _element_type(spec, i)) for i, v in enumerate(value)]
        made = {"list": TfList, "set": TfSet}.get(kind or "")
        return (made or type(value))(items)
    if isinstance(value, dict):
        entries = {k: typed(v, _element_type(spec, k)) for k, v in value.items()}
        return (TfMap if kind == "map" else type(value))(entries)
    return value


def show(value: Any, spec: Any = "any") -> str:
    from trainform.config.display import render_value

    return render_value(typed(value, spec))


# ------------------------------------------------------------------------------- the scope


@dataclass
class ConsoleScope:
    """What console expressions may refer to, and which parts of it are sensitive."""

    module: Module
    values: dict[str, Any]
    functions: FunctionContext
    ref_paths: SensitiveRef  # as the evaluator judges references made in the root module
    warnings: list[Diagnostic] = field(default_factory=list)  # about variables' values

    @classmethod
    def load(cls, directory: Path, inputs: Any, prior: dict[str, Any]) -> ConsoleScope:
        """Evaluate the configuration with the computed attributes recorded in ``prior``
        (address -> ResourceState); what is not recorded is unknown. Raises ConfigError."""
        from trainform.config.evaluate import Evaluator, resolve_variables
        from trainform.config.loader import function_context, load_module
        from trainform.config.values import UNKNOWN
        from trainform.config.variables import collect_values

        module = load_module(directory)
        functions = function_context(module)
        raw = collect_values(module.directory, module.variables, inputs, functions)
        variables = resolve_variables(module, raw, None, functions, lenient=True)

        def recorded(inst: Instance) -> dict[str, Any]:
            rs = prior.get(inst.address)
            keys = inst.resource.schema.published()
            return {k: (rs.computed.get(k, UNKNOWN) if rs else UNKNOWN) for k in keys}

        from trainform.state.backend import selected_workspace

        workspace = selected_workspace(module.directory)
        evaluated = Evaluator(module, variables, functions, workspace).run(recorded)
        values = evaluated.scopes[()]  # the root module's scope, as its own expressions see it
        return cls(
            module,
            values,
            functions,
            evaluated.sensitivity.ref_paths_in(""),
            warnings=list(raw.warnings),
        )

    def type_hint(self, expr: Any) -> Any:
        """The declared type of a bare variable reference (and of what it indexes); "any"
        otherwise (functions mark the lists, sets and maps they make themselves)."""
        from trainform.config.expr import single_reference

        ref = single_reference(expr)
        if ref is None or ref.root != "var" or not ref.steps:
            return "any"
        var = self.module.variables.get(str(ref.steps[0]))
        spec = var.type if var is not None else "any"
        for step in ref.steps[1:]:
            spec = _element_type(spec, step)
        return spec

    def evaluate(self, text: str) -> str:
        """The value of one expression as text. Raises ConfigError (positions in the
        ``<console input>``)."""
        from lark.exceptions import UnexpectedInput

        from trainform.config.expr import Scope, evaluate, single_reference
        from trainform.config.sensitivity import expression_paths
        from trainform.config.source import (
            Expr,
            NestingError,
            _moved,
            nesting_message,
            parse_expression_text,
            syntax_error,
        )
        from trainform.errors import ConfigError, Diagnostic, Pos

        start = Pos(INPUT_FILE, 1, 1)
        try:
            # parsed as `__e = TEXT`: TEXT starts at column 7
            tree = _moved(parse_expression_text(text), 0, -6)
        except NestingError:
            raise ConfigError(Diagnostic(nesting_message(), start)) from None
        except UnexpectedInput as exc:
            d = syntax_error(exc, INPUT_FILE, 0, -6)
            if d.pos is not None and d.pos.line > 1:  # at the end (the parser added a newline)
                d = Diagnostic(d.message, Pos(INPUT_FILE, 1, len(text) + 1), d.hint)
            raise ConfigError(d) from None
        except ValueError:
            raise ConfigError(Diagnostic("expected one expression", start)) from None
        expr = Expr(tree, start)
        value = evaluate(expr, Scope(self.values, self.functions), self._secret)
        # judged as an attribute set to the expression would be: sensitive(...) hides it,
        # nonsensitive(...) shows it, a map hides only its sensitive entries
        paths = {p.partition(".")[2] for p in expression_paths("value", expr, self.ref_paths)}
        ref = single_reference(expr)
        if paths and ref is not None:
            value = self._masked(value, ref, paths)
        elif paths:
            value = _hide(value, paths)
        return show(value, self.type_hint(expr))

    def _secret(self, ref: Ref) -> bool:
        return self.ref_paths(ref) is not None

    def _masked(self, value: Any, ref: Ref, paths: set[str]) -> Any:
        """``value`` (what ``ref`` names) with the sensitive ``paths`` inside it hidden."""
        if "" in paths:
            return SENSITIVE_VALUE
        res = self.module.resources.get(ref.key)
        whole_block = (
            res is not None
            and len(ref.steps) == 1
            and (res.count is not None or res.for_each is not None)
        )
        if whole_block and isinstance(value, list):
            return [_hide(v, paths) for v in value]
        if whole_block and isinstance(value, dict):
            return {k: _hide(v, paths) for k, v in value.items()}
        return _hide(value, paths)


def _hide(value: Any, paths: set[str]) -> Any:
    """``value`` with the sensitive ``paths`` inside it hidden (``""``: all of it)."""
    if "" in paths or not isinstance(value, dict):
        return SENSITIVE_VALUE
    out = dict(value)
    for path in sorted(paths):
        first, _, rest = path.partition(".")
        if first in out and out[first] is not None:
            out[first] = _hide(out[first], {rest}) if rest else SENSITIVE_VALUE
    return out


# ------------------------------------------------------------------------------- the loop


def _error_lines(d: Diagnostic, text: str) -> list[str]:
    """A diagnostic with the console input it points into (the file cannot be read)."""
    from rich.markup import escape

    from trainform.cli.render import diagnostic_lines

    lines = diagnostic_lines(d)
    if d.pos is not None and d.pos.file == INPUT_FILE:
        at = next((i for i, line in enumerate(lines) if line.startswith("  on ")), None)
        if at is not None:
            lines[at + 1 : at + 1] = [
                f"  {d.pos.line:>4} | {escape(text)}",
                "       | " + " " * max(0, d.pos.column - 1) + "[red]^[/red]",
            ]
    return lines


def _show_error(ctx: click.Context, exc: Any, text: str) -> None:
    for i, d in enumerate(exc.diagnostics):
        if i:
            print_lines(ctx, "", stderr=True)
        print_lines(ctx, _error_lines(d, text), stderr=True)


def _handle(ctx: click.Context, scope: ConsoleScope, text: str) -> bool | None:
    """Evaluate one line and print its result or error: True if it succeeded, False if it
    failed, None for `exit`."""
    from trainform.errors import ConfigError

    line = text.strip()
    if line == "exit":
        return None
    if not line:
        return True
    if line == "help":
        click.echo(HELP)
        return True
    try:
        click.echo(scope.evaluate(line))
    except ConfigError as exc:
        _show_error(ctx, exc, line)
        return False
    return True


def _interactive(ctx: click.Context, scope: ConsoleScope, history: Path) -> None:
    try:
        import readline
    except ImportError:  # a Python built without it: a plain prompt
        readline = None  # type: ignore[assignment]
    # Ctrl-C cancels a line, as in any interactive prompt, even when this process was
    # started with SIGINT ignored (a shell's background job passes that on, and Python then
    # installs no handler of its own)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if readline is not None:
        readline.set_history_length(HISTORY_LENGTH)
        with contextlib.suppress(OSError):
            readline.read_history_file(history)
    try:
        while True:
            try:
                if _handle(ctx, scope, input("> ")) is None:
                    return
            except KeyboardInterrupt:  # Ctrl-C: cancel this line (or its evaluation)
                click.echo("")
            except EOFError:  # Ctrl-D
                click.echo("")
                return
    finally:
        if readline is not None:
            _save_history(readline, history)


def _save_history(readline: Any, history: Path) -> None:
    """Write the expressions typed (never their values) where only this user can read."""
    try:
        history.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(history, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
        readline.write_history_file(history)
    except OSError:
        pass  # a read-only folder: the console still worked


def _piped(ctx: click.Context, scope: ConsoleScope) -> None:
    for text in sys.stdin:
        result = _handle(ctx, scope, text)
        if result is None:
            return
        if result is False:  # as Terraform's console through a pipe: stop at the first error
            raise SystemExit(1)


@click.command()
@var_options
@click.pass_context
def console(ctx: click.Context, **_: Any) -> None:
    """Evaluate expressions against the configuration and state (read-only; no refresh).

    On a terminal: a prompt (Ctrl-D or `exit` ends). Otherwise one expression per line from
    stdin, e.g. `echo 'compute.gpu.facts.cpus' | trainform console`; exit 1 at the first
    error."""
    from trainform.cli.render import diagnostic_lines
    from trainform.config.variables import VariableInputs

    with error_boundary(ctx):
        inputs = VariableInputs(cli=ctx.find_root().obj.get("var_order", []))
        store = open_store(ctx, optional=True)
        try:
            prior = store.resources() if store is not None else {}
        finally:
            if store is not None:
                store.close()
        scope = ConsoleScope.load(config_dir(ctx), inputs, prior)
        for warning in scope.warnings:
            print_lines(ctx, diagnostic_lines(warning), stderr=True)
        if sys.stdin.isatty():
            history = scope.module.directory / ".trainform" / HISTORY_FILE
            _interactive(ctx, scope, history)
        else:
            _piped(ctx, scope)
