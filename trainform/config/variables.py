"""Variable type constraints and the collection of values by precedence.

Precedence, lowest first: ``default``, ``TRAINFORM_VAR_name`` environment variables,
``trainform.tfvars``, ``*.auto.tfvars`` (HCL, ``.json`` or ``.yaml``; alphabetical), then
``--var-file`` and ``--var`` in command-line order.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lark import Tree
from lark.exceptions import UnexpectedInput

from trainform.config.expr import Scope, evaluate
from trainform.config.schema import did_you_mean, type_of
from trainform.config.source import Expr, Template, node_pos, parse_expression_text, parse_hcl
from trainform.config.values import UNKNOWN, FunctionContext
from trainform.errors import ConfigError, Diagnostic, Pos

ENV_PREFIX = "TRAINFORM_VAR_"
PRIMITIVES = ("string", "number", "bool", "any")


def type_spec(expr: Expr) -> Any:
    """Turn a ``type = ...`` expression into a spec: "string", ("list", spec), ("object", {...})."""
    node = expr.node
    if isinstance(node, Template):
        text = node.text.strip()
        try:
            node = parse_expression_text(text)
        except (UnexpectedInput, ValueError):
            raise ConfigError(Diagnostic(f"invalid type {text!r}", expr.pos)) from None
    return _spec(node, expr.pos)


def _spec(node: Any, pos: Pos) -> Any:
    where = node_pos(node, pos.file, pos)
    if isinstance(node, Tree) and node.data == "expr_term":
        return _spec(node.children[0], pos)
    if isinstance(node, Tree) and node.data == "identifier":
        name = str(node.children[0])
        if name in PRIMITIVES:
            return name
        raise ConfigError(
            Diagnostic(f"unknown type {name!r}", where, did_you_mean(name, PRIMITIVES))
        )
    if isinstance(node, Tree) and node.data == "function_call":
        name = str(node.children[0].children[0])
        args = next(
            (c for c in node.children if isinstance(c, Tree) and c.data == "arguments"), None
        )
        inner = [c for c in args.children if isinstance(c, Tree)] if args else []
        if name in ("list", "set", "map") and len(inner) == 1:
            return (name, _spec(inner[0], pos))
        if name == "tuple" and len(inner) == 1:
            return ("tuple", [_spec(c, pos) for c in _tuple_items(inner[0])])
        if name == "object" and len(inner) == 1:
            return ("object", _object_spec(inner[0], pos))
        raise ConfigError(Diagnostic(f"invalid type constructor {name}(...)", where))
    raise ConfigError(Diagnostic("invalid type expression", where, "e.g. string, list(number)"))


def _tuple_items(node: Tree) -> list[Any]:
    inner = node.children[0] if node.data == "expr_term" else node
    return [c for c in inner.children if isinstance(c, Tree) and c.data != "new_line_or_comment"]


def _object_spec(node: Tree, pos: Pos) -> dict[str, Any]:
    inner = node.children[0] if node.data == "expr_term" else node
    out = {}
    for elem in (c for c in inner.children if isinstance(c, Tree) and c.data == "object_elem"):
        key_tree = elem.children[0].children[0]
        key = (
            str(key_tree.children[0].children[0]) if key_tree.data == "expr_term" else str(key_tree)
        )
        out[key] = _spec(elem.children[-1], pos)
    return out


def spec_name(spec: Any) -> str:
    if isinstance(spec, str):
        return spec
    kind, inner = spec
    if kind == "object":
        return "object({" + ", ".join(f"{k} = {spec_name(v)}" for k, v in inner.items()) + "})"
    if kind == "tuple":
        return "tuple([" + ", ".join(spec_name(v) for v in inner) + "])"
    return f"{kind}({spec_name(inner)})"


def convert(value: Any, spec: Any) -> Any:
    """Convert a value to a type spec, raising ValueError with a message that says why not."""
    if value is None or value is UNKNOWN or spec == "any":
        return value
    if spec == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return json.dumps(value)
        if isinstance(value, str):
            return value
    elif spec == "number":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                num = float(value)
            except ValueError:
                raise ValueError(f"a number is required, got {value!r}") from None
            return int(num) if num.is_integer() else num
    elif spec == "bool":
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
    elif isinstance(spec, tuple):
        kind, inner = spec
        if kind in ("list", "set") and isinstance(value, list):
            items = [convert(v, inner) for v in value]
            if kind == "set":
                items = sorted({json.dumps(i, sort_keys=True): i for i in items}.values(), key=repr)
            return items
        if kind == "map" and isinstance(value, dict):
            return {k: convert(v, inner) for k, v in value.items()}
        if kind == "tuple" and isinstance(value, list):
            if len(value) != len(inner):
                raise ValueError(f"a tuple of {len(inner)} elements is required")
            return [convert(v, t) for v, t in zip(value, inner)]
        if kind == "object" and isinstance(value, dict):
            missing = sorted(set(inner) - set(value))
            if missing:
                raise ValueError(f"attribute {missing[0]!r} is required")
            return {k: convert(value[k], t) for k, t in inner.items()}
    raise ValueError(f"{spec_name(spec)} required, got {type_of(value)}")


@dataclass
class VariableInputs:
    """Where variable values come from, as given on the command line."""

    var_files: Sequence[str] = ()
    cli: Sequence[tuple[str, str]] = ()  # (--var-file FILE) and (--var NAME=VALUE) in order
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


@dataclass
class VariableValues:
    """Resolved raw values (before type conversion), where each came from, and input files."""

    values: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256
    warnings: list[Diagnostic] = field(default_factory=list)


def _load_var_file(path: Path, scope: Scope) -> dict[str, tuple[Any, Pos]]:
    text = path.read_text()
    name = str(path)
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                Diagnostic(f"invalid JSON: {exc.msg}", Pos(name, exc.lineno, exc.colno))
            ) from None
        if not isinstance(data, dict):
            raise ConfigError(Diagnostic("a variables file must hold an object", Pos(name, 1, 1)))
        return {k: (v, Pos(name, 1, 1)) for k, v in data.items()}
    if path.suffix in (".yaml", ".yml"):
        import yaml  # only for YAML variable files: it costs ~10 ms of a command's start

        try:
            data = yaml.safe_load(text) or {}
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            line = mark.line + 1 if mark else 1
            raise ConfigError(
                Diagnostic(f"YAML syntax error: {exc.problem}", Pos(name, line, 1))
            ) from None
        if not isinstance(data, dict):
            raise ConfigError(Diagnostic("a variables file must hold a mapping", Pos(name, 1, 1)))
        return {k: (v, Pos(name, 1, 1)) for k, v in data.items()}
    root = parse_hcl(text, name)
    if root.blocks:
        blk = root.blocks[0]
        raise ConfigError(Diagnostic("a variables file holds only `name = value` lines", blk.pos))
    return {k: (evaluate(a.expr, scope), a.pos) for k, a in root.attrs.items()}


def collect_values(
    directory: Path,
    declared: Mapping[str, Any],
    inputs: VariableInputs,
    functions: FunctionContext,
) -> VariableValues:
    """Gather raw variable values by precedence. Raises ConfigError for unknown ``--var`` names
    and unreadable files; unknown names in files are warnings, as in Terraform."""
    out = VariableValues()
    scope = Scope({}, functions)

    def record(path: Path) -> None:
        out.files[str(path.resolve())] = hashlib.sha256(path.read_bytes()).hexdigest()

    for key, value in inputs.environ.items():
        var = key[len(ENV_PREFIX) :]
        if key.startswith(ENV_PREFIX) and var in declared:
            out.values[var] = value_from_text(value, _type_of(declared[var]))
            out.origin[var] = f"environment variable {key}"

    def take_file(path: Path) -> None:
        if not path.is_file():
            raise ConfigError(Diagnostic(f"variables file {str(path)!r} does not exist"))
        record(path)
        for name, (value, pos) in _load_var_file(path, scope).items():
            if name not in declared:
                out.warnings.append(
                    Diagnostic(
                        f"value for undeclared variable {name!r}",
                        pos,
                        did_you_mean(name, list(declared)),
                        severity="warning",
                    )
                )
                continue
            out.values[name] = value
            out.origin[name] = str(pos)

    auto = sorted(
        p
        for p in directory.iterdir()
        if p.name.endswith((".auto.tfvars", ".auto.tfvars.json", ".auto.tfvars.yaml"))
    )
    for candidate in [directory / "trainform.tfvars", directory / "trainform.tfvars.json", *auto]:
        if candidate.is_file():
            take_file(candidate)
    for kind, arg in inputs.cli:
        if kind == "file":
            path = Path(arg)
            take_file(path if path.is_absolute() else Path.cwd() / path)
            continue
        name, sep, text = arg.partition("=")
        name = name.strip()
        if not sep:
            raise ConfigError(Diagnostic(f"--var {arg!r}: expected NAME=VALUE"))
        if name not in declared:
            # Point at the declaration the name resembles, so the user sees where it lives.
            close = difflib.get_close_matches(name, sorted(declared), n=1, cutoff=0.6)
            raise ConfigError(
                Diagnostic(
                    f"--var {name}: no variable {name!r} is declared",
                    getattr(declared[close[0]], "pos", None) if close else None,
                    hint=did_you_mean(name, list(declared)),
                )
            )
        out.values[name] = value_from_text(text, _type_of(declared[name]))
        out.origin[name] = f"--var {name}"
    return out


def _type_of(declared: Any) -> Any:
    """The type spec of a declared variable (a :class:`~trainform.config.model.Variable` or
    already a spec), so that text for a string variable stays the text that was given."""
    return getattr(declared, "type", declared)


def value_from_text(text: str, spec: Any) -> Any:
    """A value given as text (environment, --var): primitives as is, complex types as HCL."""
    if spec in PRIMITIVES:
        return text
    try:
        return evaluate(
            Expr(parse_expression_text(text), Pos("<command line>", 1, 1)),
            Scope({}, FunctionContext(Path.cwd())),
        )
    except (ConfigError, UnexpectedInput, ValueError):
        return text  # type conversion reports the problem with the variable's name
