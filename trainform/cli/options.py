"""How command-line flags are spelt: Terraform's single-dash long options and
boolean ``-NAME=true|false`` values (rewritten by :func:`normalize_args` before click
parses), and the option sets that several commands share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

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
    "markdown",
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
    "or-create",
    "migrate-state",
    "reconfigure",
    "force-copy",
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
    "markdown": False,
    "force": False,
    "check": False,
    "diff": False,
    "example": False,
    "upgrade": False,
    "raw": False,
    "quiet": False,
    "follow": False,
    "or-create": False,
    "migrate-state": False,
    "reconfigure": False,
    "force-copy": False,
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
