"""The expression evaluator: walks python-hcl2 parse trees (never Python ``eval``).

Evaluation is a pure function of the expression and a :class:`Scope`. Unknown values
(:data:`UNKNOWN`) propagate through every operation. Errors are :class:`ConfigError` with the
``file:line:column`` of the offending sub-expression.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from lark import Token, Tree

from trainform.config.functions import FUNCTIONS, function_names
from trainform.config.schema import RESOURCE_KINDS, did_you_mean, type_of
from trainform.config.source import Expr, Literal, Template, node_pos, template_from_text
from trainform.config.templates import Part, Piece, build, hcl_piece, parts_trees, render
from trainform.config.types import convert, infer, unify
from trainform.config.values import (
    MAX_EVALUATION_STEPS,
    MAX_NESTING_DEPTH,
    MAX_NUMBER_DIGITS,
    UNKNOWN,
    FunctionContext,
    FunctionError,
    LimitError,
    check_totals,
    is_unknown,
    measure,
    number_problem,
)
from trainform.errors import ConfigError, Diagnostic, Pos

_SKIP = ("new_line_or_comment",)

# Roots whose first step names something declared (a variable, a local, a resource): a
# missing name under them is a static error, which try() does not hide.
_NAMESPACES = frozenset({"var", "local", "module", "dataset", *RESOURCE_KINDS})


@dataclass(frozen=True)
class Ref:
    """A static reference found in an expression: ``root.first`` plus the rest of the path."""

    root: str
    steps: tuple[str | int, ...]
    pos: Pos

    @property
    def key(self) -> str:
        return f"{self.root}.{self.steps[0]}" if self.steps else self.root


@dataclass
class Scope:
    """What an expression may refer to: root name -> value, and the function context."""

    values: dict[str, Any]
    functions: FunctionContext
    locals_: dict[str, Any] = field(default_factory=dict)  # for-expression variables

    def child(self, extra: dict[str, Any]) -> Scope:
        return Scope(self.values, self.functions, {**self.locals_, **extra})


def _kids(node: Tree) -> list[Any]:
    """Children that matter (no newline/comment filler, no punctuation tokens)."""
    return [c for c in node.children if isinstance(c, Tree) and c.data not in _SKIP]


# --------------------------------------------------------------------------- references


def traversal(node: Any) -> tuple[str, list[str | int], Any] | None:
    """If ``node`` is a static traversal (``a.b[0].c``), return (root, steps, root node)."""
    steps: list[str | int] = []
    while isinstance(node, Tree):
        if node.data == "expr_term":
            kids = _kids(node)
            if len(kids) != 1 or any(
                isinstance(c, Token) and c.type == "LPAR" for c in node.children
            ):
                return None
            node = kids[0]
        elif node.data == "identifier":
            steps.reverse()
            return str(node.children[0]), steps, node
        elif node.data == "get_attr_expr_term":
            attr = node.children[1].children[1]
            steps.append(str(attr.children[0]) if isinstance(attr, Tree) else str(attr))
            node = node.children[0]
        elif node.data == "index_expr_term":
            idx = node.children[1]
            if idx.data == "short_index":
                steps.append(int(str(idx.children[1])))
            else:
                inner = _kids(idx)[0]
                lit = _static_key(inner)
                steps.clear() if lit is None else steps.append(lit)
            node = node.children[0]
        elif node.data in ("attr_splat_expr_term", "full_splat_expr_term"):
            steps.clear()
            node = node.children[0]
        else:
            return None
    return None


def _static_key(node: Any) -> str | int | None:
    if isinstance(node, Tree) and node.data == "expr_term" and len(_kids(node)) == 1:
        node = _kids(node)[0]
    if isinstance(node, Tree) and node.data == "int_lit":
        return int(str(node.children[0]))
    if isinstance(node, Tree) and node.data == "string":
        parts = [c for c in node.children if isinstance(c, Tree)]
        if all(isinstance(p.children[0], Token) for p in parts):
            return "".join(str(p.children[0]) for p in parts)
    return None


def object_entries(expr: Expr) -> list[tuple[str, Expr]] | None:
    """The entries of a literal map with static keys (``{ A = x, "b" = y }`` in HCL, a
    mapping in YAML) as (key, value expression); None for any other expression."""
    node = expr.node
    if isinstance(node, dict):
        return list(node.items())
    if isinstance(node, Tree) and node.data == "expr_term" and len(_kids(node)) == 1:
        node = _kids(node)[0]
    if not (isinstance(node, Tree) and node.data == "object"):
        return None
    out: list[tuple[str, Expr]] = []
    for elem in _kids(node):
        key_expr = _kids(elem.children[0])[0]
        key = _bare_name(key_expr)
        if key is None:
            lit = _static_key(key_expr)
            if lit is None:
                return None
            key = str(lit)
        out.append((key, Expr(elem.children[-1], expr.pos)))
    return out


def single_reference(expr: Expr) -> Ref | None:
    """The reference an expression is made of alone (``environment.gpu``, or
    ``"${environment.gpu}"`` in YAML), or None."""
    node = expr.node
    if isinstance(node, Template):
        trees = [p for p in node.parts if isinstance(p, Tree)]
        if len(node.parts) != 1 or len(trees) != 1:
            return None
        node = trees[0]
    if not isinstance(node, Tree):
        return None
    trav = traversal(node)
    if trav is None:
        return None
    root, steps, root_node = trav
    return Ref(root, tuple(steps), node_pos(root_node, expr.pos.file, expr.pos))


def references(expr: Expr) -> list[Ref]:
    """Every reference an expression makes (``var.x``, ``compute.gpu[0].facts``, ...)."""
    out: list[Ref] = []
    _collect(expr.node, expr.pos, frozenset(), out)
    return out


def _collect(node: Any, pos: Pos, bound: frozenset[str], out: list[Ref]) -> None:
    if isinstance(node, Template):
        for tree, in_for in parts_trees(node.parts):  # with the names %{for} binds there
            _collect(tree, pos, bound | in_for, out)
        return
    if isinstance(node, list):
        for item in node:
            _collect(item.node, item.pos, bound, out)
        return
    if isinstance(node, dict):
        for item in node.values():
            _collect(item.node, item.pos, bound, out)
        return
    if not isinstance(node, Tree):
        return
    if node.data in ("heredoc_template", "heredoc_template_trim"):
        _collect(heredoc(node, pos), pos, bound, out)
        return
    if node.data == "string":
        _collect(string_template(node, pos), pos, bound, out)
        return
    trav = traversal(node)
    if trav is not None:
        root, steps, root_node = trav
        if root not in bound:
            out.append(Ref(root, tuple(steps), node_pos(root_node, pos.file, pos)))
        # indexes that are expressions may hold references of their own
        for sub in node.iter_subtrees():
            if sub.data == "braces_index":
                _collect(_kids(sub)[0], pos, bound, out)
        return
    if node.data == "function_call":
        for arg in node.children[1:]:
            if isinstance(arg, Tree):
                _collect(arg, pos, bound, out)
        return
    if node.data == "object_elem":
        key = node.children[0]
        key_expr = _kids(key)[0] if _kids(key) else None
        if not (key_expr is not None and _bare_name(key_expr) is not None):
            _collect(key, pos, bound, out)
        _collect(node.children[-1], pos, bound, out)
        return
    if node.data in ("for_tuple_expr", "for_object_expr"):
        intro = next(c for c in node.children if isinstance(c, Tree) and c.data == "for_intro")
        names = [
            str(c.children[0])
            for c in intro.children
            if isinstance(c, Tree) and c.data == "identifier"
        ]
        _collect(_kids(intro)[-1], pos, bound, out)
        inner = bound | set(names)
        for child in node.children:
            if isinstance(child, Tree) and child is not intro:
                _collect(child, pos, inner, out)
        return
    for child in node.children:
        if isinstance(child, Tree):
            _collect(child, pos, bound, out)


def _bare_name(node: Any) -> str | None:
    if isinstance(node, Tree) and node.data == "expr_term":
        kids = _kids(node)
        if len(kids) == 1 and kids[0].data == "identifier":
            return str(kids[0].children[0])
    if isinstance(node, Tree) and node.data == "keyword":
        return str(node.children[0])
    return None


def static_names(expr: Expr) -> list[tuple[str, Pos]]:
    """A list of bare names or addresses (``depends_on``, ``ignore_changes``) as written.

    Accepts HCL traversals (``compute.gpu``) and, for YAML, strings (``"compute.gpu"``).
    """
    node = expr.node
    items: list[tuple[Any, Pos]]
    if isinstance(node, list):
        items = [(e.node, e.pos) for e in node]
    elif isinstance(node, Tree):
        inner = _kids(node)[0] if node.data == "expr_term" and _kids(node) else node
        if not (isinstance(inner, Tree) and inner.data == "tuple"):
            raise ConfigError(Diagnostic("expected a list", expr.pos))
        items = [(c, node_pos(c, expr.pos.file, expr.pos)) for c in _kids(inner)]
    else:
        raise ConfigError(Diagnostic("expected a list", expr.pos))
    names = []
    for item, pos in items:
        if isinstance(item, Template) and len(item.parts) == 1 and isinstance(item.parts[0], str):
            names.append((item.parts[0], pos))
            continue
        if isinstance(item, Tree):
            key = _static_key(item)
            if isinstance(key, str):
                names.append((key, pos))
                continue
            trav = traversal(item)
            if trav is not None:
                root, steps, _ = trav
                names.append((".".join([root, *(str(s) for s in steps)]), pos))
                continue
        raise ConfigError(Diagnostic("expected a name or address, not an expression", pos))
    return names


def heredoc(node: Tree, pos: Pos) -> Template:
    """The template of a heredoc (``<<EOT`` or, indentation removed, ``<<-EOT``)."""
    raw = str(node.children[0])
    first_nl = raw.index("\n")
    body = raw[first_nl + 1 :]
    body = body[: body.rstrip("\n").rfind("\n") + 1] if "\n" in body.rstrip("\n") else ""
    start = node_pos(node, pos.file, pos)
    trim = node.data == "heredoc_template_trim"
    return template_from_text(body, Pos(start.file, start.line + 1, 1), lines=True, flush=trim)


def string_template(node: Tree, pos: Pos) -> Template:
    """The template of a quoted HCL string (python-hcl2 has parsed its directives)."""
    pieces: list[Piece] = []
    for part in node.children:
        if not (isinstance(part, Tree) and part.data == "string_part"):
            continue
        inner = part.children[0]
        if isinstance(inner, Tree):
            pieces.append(hcl_piece(inner, node_pos(part, pos.file, pos)))
        elif inner.type in ("ESCAPED_INTERPOLATION", "ESCAPED_DIRECTIVE"):
            pieces.append(Piece("lit", pos, _unescape(str(inner)[1:])))
        else:
            pieces.append(Piece("lit", pos, _unescape(str(inner))))
    return Template(build(pieces), "")


# --------------------------------------------------------------------------- evaluation


def evaluate(expr: Expr, scope: Scope, sensitive: Callable[[Ref], bool] | None = None) -> Any:
    """Evaluate an expression. Raises :class:`ConfigError` with the position of the fault.

    ``sensitive`` says which references carry a sensitive value; when the expression makes
    one and fails, its diagnostics quote no value at all (see :func:`redacted`)."""
    try:
        return _bounded(expr, scope)
    except ConfigError as exc:
        if sensitive is None:
            raise
        raise redacted_for(exc, expr, scope, sensitive) from None


def redacted_for(
    error: ConfigError, expr: Expr, scope: Scope, sensitive: Callable[[Ref], bool]
) -> ConfigError:
    """``error``, found while evaluating or checking ``expr``, as it may be shown: redacted
    (see :func:`redacted`) if the expression refers to a sensitive value, else as it is."""
    secret = [r for r in references(expr) if sensitive(r)]
    if not secret:
        return error
    return redacted(error, [_referenced(scope.values, r) for r in secret])


# --------------------------------------------------------------------------- redaction

SENSITIVE_TEXT = "(sensitive value)"

# A quoted value ("..." as json.dumps writes it, '...' as repr does) and a number standing
# alone (not the 256 of sha256 or the 8 of utf-8), hex included: the two ways a diagnostic
# quotes a value.
_QUOTED = re.compile(r""""(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'""")
_NUMBER = re.compile(r"(?<![\w.-])[-+]?(?:0[xX][0-9a-fA-F]+|\d[\d_]*(?:\.\d+)?(?:[eE][-+]?\d+)?)\b")


def redacted(error: ConfigError, values: list[Any]) -> ConfigError:
    """``error`` as it may be shown when the failing expression used sensitive ``values``:
    in every message and hint, each of those values (or a string inside one) and then
    anything quoted and any number is replaced by ``(sensitive value)``.

    Which part of a message came from a value cannot be told from the text, and a value
    may be shown after a function changed it (``upper``, ``tonumber``, a map's keys in a
    "did you mean"); but every diagnostic of the evaluator and the functions quotes values
    (``'x'``, ``"x"``) or writes them as numbers, so replacing all of that hides whatever a
    sensitive value became, at the cost of the non-sensitive values quoted beside it."""
    texts: set[str] = set()

    def collect(value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                collect(k)
                collect(v)
        elif isinstance(value, list):
            for v in value:
                collect(v)
        elif isinstance(value, str) or (
            isinstance(value, (int, float)) and not isinstance(value, bool)
        ):
            text = value if isinstance(value, str) else _num_str(value)
            for form in (text, json.dumps(text)[1:-1], repr(text)[1:-1]):
                if len(form.strip()) >= 3:  # shorter ones are words of the message
                    texts.add(form)

    for value in values:
        collect(value)
    ordered = sorted(texts, key=len, reverse=True)

    def clean(text: str) -> str:
        for secret in ordered:
            text = text.replace(secret, SENSITIVE_TEXT)
        text = _QUOTED.sub(SENSITIVE_TEXT, text)
        return _NUMBER.sub(SENSITIVE_TEXT, text)

    return ConfigError(
        [
            Diagnostic(clean(d.message), d.pos, clean(d.hint) if d.hint else "", d.severity)
            for d in error.diagnostics
        ]
    )


def _referenced(values: dict[str, Any], ref: Ref) -> Any:
    """The value ``ref`` names in a scope, or the closest enclosing one that exists."""
    value: Any = values.get(ref.root)
    for step in ref.steps:
        found = (isinstance(value, dict) and step in value) or (
            isinstance(value, list) and isinstance(step, int) and 0 <= step < len(value)
        )
        if not found:
            break
        value = value[step]
    return value


def _bounded(expr: Expr, scope: Scope) -> Any:
    """Evaluate within the language's limits (values.py): past one, a ConfigError naming it."""
    budget = _Budget(scope.functions)
    active = _ACTIVE_BUDGET.set(budget)  # templatefile()'s rendering is charged to it too
    try:
        result = _Evaluator(scope, expr.pos, budget).value(expr.node)
        budget.measure(result)
    except LimitError as exc:
        raise ConfigError(Diagnostic(str(exc), expr.pos)) from None
    except RecursionError:
        # Parsing refuses deeper nesting; this is the net under what reaches the evaluator
        # some other way (a heredoc's interpolations, a variable's value).
        raise ConfigError(
            Diagnostic(f"expression nested too deeply (limit {MAX_NESTING_DEPTH} levels)", expr.pos)
        ) from None
    finally:
        _ACTIVE_BUDGET.reset(active)
    return result


def evaluate_nested(expr: Expr, scope: Scope) -> Any:
    """Evaluate ``expr`` as part of the evaluation in progress on this thread (a template
    that templatefile() renders), charging that evaluation's budget, so that calling a
    function many times cannot multiply the work an expression may do; afresh if none is."""
    budget = _ACTIVE_BUDGET.get()
    if budget is None:
        return _bounded(expr, scope)
    return _Evaluator(scope, expr.pos, budget).value(expr.node)


_ACTIVE_BUDGET: ContextVar[_Budget | None] = ContextVar("trainform_budget", default=None)


class _Budget:
    """The work one evaluation may do (:data:`MAX_EVALUATION_STEPS`), and the sizes of the
    values it makes (checked against the collection, string and nesting limits)."""

    def __init__(self, functions: FunctionContext) -> None:
        self.left = MAX_EVALUATION_STEPS
        self.known = functions.sizes

    def charge(self, steps: int) -> None:
        self.left -= steps
        if self.left < 0:
            raise LimitError(
                f"evaluating this expression takes more than {MAX_EVALUATION_STEPS} steps "
                "(the evaluation limit): it iterates over or builds too much"
            )

    def measure(self, value: Any) -> tuple[int, int]:
        return measure(value, self.known, self.charge)


class _Evaluator:
    def __init__(self, scope: Scope, pos: Pos, budget: _Budget | None = None) -> None:
        self.scope = scope
        self.pos = pos
        self.budget = budget or _Budget(scope.functions)

    def fail(self, message: str, node: Any = None, hint: str = "") -> ConfigError:
        pos = node_pos(node, self.pos.file, self.pos) if node is not None else self.pos
        return ConfigError(Diagnostic(message, pos, hint))

    def value(self, node: Any) -> Any:
        try:
            self.budget.charge(1)
            if isinstance(node, Expr):
                return _Evaluator(self.scope, node.pos, self.budget).value(node.node)
            if isinstance(node, Literal):
                return node.value
            if isinstance(node, Template):
                return self.template(node.parts, node)
            if isinstance(node, (list, dict)):  # a YAML sequence or mapping
                out: Any = (
                    [self.value(e) for e in node]
                    if isinstance(node, list)
                    else {k: self.value(e) for k, e in node.items()}
                )
                self.budget.measure(out)
                return out
            handler = getattr(self, "_" + node.data, None)
            if handler is None:
                raise self.fail(f"unsupported expression ({node.data})", node)
            return handler(node)
        except LimitError as exc:  # at the innermost expression that went past the limit
            raise self.fail(str(exc), node if isinstance(node, (Tree, Token)) else None) from None

    # -- terms
    def _expr_term(self, node: Tree) -> Any:
        return self.value(_kids(node)[0])

    def _int_lit(self, node: Tree) -> Any:
        return _int_text(str(node.children[0]))

    def _float_lit(self, node: Tree) -> Any:
        text = str(node.children[0])
        _int_text(text.split(".")[0].split("e")[0].split("E")[0])  # the digits before the point
        return _norm(float(text))

    def _literal_value(self, node: Tree) -> Any:
        return {"true": True, "false": False, "null": None}[str(node.children[0])]

    def _identifier(self, node: Tree) -> Any:
        name = str(node.children[0])
        if name in self.scope.locals_:
            return self.scope.locals_[name]
        if name in self.scope.values:
            return self.scope.values[name]
        candidates = [*self.scope.values, *self.scope.locals_]
        raise self.fail(f"unknown reference {name!r}", node, did_you_mean(name, candidates))

    def _string(self, node: Tree) -> Any:
        return self.template(string_template(node, self.pos).parts, node)

    def _heredoc_template(self, node: Tree) -> Any:
        return self.template(heredoc(node, self.pos).parts, node)

    _heredoc_template_trim = _heredoc_template

    def template(self, parts: tuple[Part, ...], node: Any) -> Any:
        if len(parts) == 1 and isinstance(parts[0], Tree):
            return self.value(parts[0])  # "${x}" keeps x's type, as in Terraform
        return render(self, parts)

    def within(self, names: dict[str, Any]) -> _Evaluator:
        """An evaluator that also sees ``names`` (a template's %{for} variables)."""
        return _Evaluator(self.scope.child(names), self.pos, self.budget)

    def to_string(self, val: Any, node: Any) -> str:
        if isinstance(val, bool):
            return "true" if val else "false"
        if isinstance(val, (int, float)):
            return _num_str(val)
        if isinstance(val, str):
            return val
        if val is None:
            raise self.fail("cannot interpolate null into a string", node)
        raise self.fail(
            f"cannot interpolate a {type_of(val)} into a string", node, "use jsonencode() or join()"
        )

    def _template_string(self, node: Tree) -> Any:
        return json.loads(str(node.children[0]).replace('\\"', '"'))

    def _tuple(self, node: Tree) -> Any:
        out = [self.value(c) for c in _kids(node)]
        self.budget.measure(out)
        return out

    def _object(self, node: Tree) -> Any:
        out: dict[str, Any] = {}
        for elem in _kids(node):
            key_node = elem.children[0]
            key_expr = _kids(key_node)[0]
            name = _bare_name(key_expr)
            key = name if name is not None else self.value(key_expr)
            if key is UNKNOWN:
                return UNKNOWN
            if isinstance(key, (int, float)) and not isinstance(key, bool):
                key = _num_str(key)
            if not isinstance(key, str):
                raise self.fail(f"object keys must be strings, got {type_of(key)}", key_node)
            out[key] = self.value(elem.children[-1])
        self.budget.measure(out)
        return out

    # -- operators
    def _conditional(self, node: Tree) -> Any:
        cond_node, yes, no = _kids(node)
        cond = self.value(cond_node)
        if cond is UNKNOWN:
            return UNKNOWN
        if not isinstance(cond, bool):
            raise self.fail(f"condition must be a bool, got {type_of(cond)}", cond_node)
        chosen = self.value(yes if cond else no)
        return self.unify_branches(chosen, no if cond else yes)

    def unify_branches(self, chosen: Any, other_node: Any) -> Any:
        """The chosen result of a conditional converted to the type both results share, as
        in Terraform (``true ? 1 : "a"`` is ``"1"``). As HCL does, the other result is
        evaluated for its type only: its errors are not reported, and where the two have no
        common type the chosen value is kept as it is."""
        if chosen is None or chosen is UNKNOWN:
            return chosen
        try:
            other = self.value(other_node)
        except ConfigError:
            return chosen
        if other is None or is_unknown(other):
            return chosen
        mine, theirs = infer(chosen), infer(other)
        if mine == theirs:
            return chosen
        common = unify(mine, theirs)
        if common is None or common == mine:
            return chosen
        try:
            return convert(chosen, common)
        except FunctionError:
            return chosen

    def _binary_op(self, node: Tree) -> Any:
        left_node, term = _kids(node)[:2]
        op = str(term.children[0].children[0])
        right_node = _kids(term)[-1]
        left = self.value(left_node)
        if op == "&&" and left is False:
            return False
        if op == "||" and left is True:
            return True
        right = self.value(right_node)
        if left is UNKNOWN or right is UNKNOWN:
            return UNKNOWN
        if op in ("==", "!="):
            equal = _equal(left, right)
            return equal if op == "==" else not equal
        if op in ("&&", "||"):
            for val, n in ((left, left_node), (right, right_node)):
                if not isinstance(val, bool):
                    raise self.fail(f"operator {op} needs bools, got {type_of(val)}", n)
            return (left and right) if op == "&&" else (left or right)
        a = self.number(left, left_node, op)
        b = self.number(right, right_node, op)
        if op == "+":
            return _norm(a + b)
        if op == "-":
            return _norm(a - b)
        if op == "*":
            return _norm(a * b)
        if op in ("/", "%"):
            if b == 0:
                raise self.fail("division by zero", right_node)
            return _norm(a / b) if op == "/" else _norm(math.fmod(a, b))
        return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]

    def number(self, val: Any, node: Any, op: str) -> int | float:
        if isinstance(val, bool) or not isinstance(val, (int, float, str)):
            raise self.fail(f"operator {op} needs numbers, got {type_of(val)}", node)
        if isinstance(val, str):
            try:
                return _norm(float(val))
            except ValueError:
                raise self.fail(f"operator {op} needs numbers, got string {val!r}", node) from None
        return val

    def _unary_op(self, node: Tree) -> Any:
        op = str(node.children[0])
        val = self.value(node.children[1])
        if val is UNKNOWN:
            return UNKNOWN
        if op == "!":
            if not isinstance(val, bool):
                raise self.fail(f"operator ! needs a bool, got {type_of(val)}", node)
            return not val
        return -self.number(val, node, "-")

    # -- calls
    def _function_call(self, node: Tree) -> Any:
        name = str(node.children[0].children[0])
        if name in ("try", "can"):
            return self.try_call(name, node)
        if name == "templatestring":
            self.check_template_reference(node)
        fn = FUNCTIONS.get(name)
        if fn is None:
            raise self.fail(
                f"unknown function {name!r}", node, did_you_mean(name, function_names())
            )
        args_node = next(
            (c for c in node.children if isinstance(c, Tree) and c.data == "arguments"), None
        )
        args: list[Any] = []
        if args_node is not None:
            args = [self.value(c) for c in _kids(args_node)]
            if any(isinstance(c, Token) and c.type == "ELLIPSIS" for c in args_node.children):
                last = args.pop()
                if last is UNKNOWN:
                    return UNKNOWN
                if not isinstance(last, list):
                    raise self.fail("'...' expands a list", node)
                args.extend(last)
        if any(is_unknown(a) for a in args):
            return UNKNOWN
        try:
            self.budget.measure(args)
            result = fn(self.scope.functions, *args)
            self.budget.measure(result)
            return result
        except FunctionError as exc:
            raise self.fail(
                f"{name}(): {exc}" if not str(exc).startswith(name) else str(exc), node
            ) from None

    def try_call(self, name: str, node: Tree) -> Any:
        """``try(a, b, ...)`` and ``can(a)``, whose arguments are evaluated lazily: the first
        that evaluates without an error is the result (``can``: whether it did). As in
        Terraform only dynamic errors are caught: a reference to something not declared at
        all is reported, since no fallback could make it right."""
        args_node = next(
            (c for c in node.children if isinstance(c, Tree) and c.data == "arguments"), None
        )
        args = _kids(args_node) if args_node is not None else []
        if name == "can" and len(args) != 1:
            raise self.fail(f"can(): expected 1 argument, got {len(args)}", node)
        if not args:
            raise self.fail("try(): expected at least 1 argument, got 0", node)
        if args_node is not None and any(
            isinstance(c, Token) and c.type == "ELLIPSIS" for c in args_node.children
        ):
            raise self.fail(f"{name}(): '...' cannot expand the arguments of {name}", node)
        problems: list[str] = []
        for arg in args:
            self.check_declared(arg)
            try:
                result = self.value(arg)
            except ConfigError as exc:
                problems.extend(d.message for d in exc.diagnostics)
                continue
            if is_unknown(result):
                return UNKNOWN  # whether it would fail cannot be known until apply
            return True if name == "can" else result
        if name == "can":
            return False
        raise self.fail(
            "try(): no expression succeeded: " + "; ".join(problems[:3]),
            node,
            "add a last argument that cannot fail, such as a default value",
        )

    def check_template_reference(self, node: Tree) -> None:
        """templatestring()'s template must be a reference to a string made elsewhere (a
        local, an attribute), as in Terraform: a literal would already have been rendered
        as a template where it is written."""
        args_node = next(
            (c for c in node.children if isinstance(c, Tree) and c.data == "arguments"), None
        )
        args = _kids(args_node) if args_node is not None else []
        if args and traversal(args[0]) is None:
            raise self.fail(
                "templatestring(): the template must be a reference to a string, such as "
                "local.template, not an expression",
                args[0],
                "a quoted string is already a template where it is written",
            )

    def check_declared(self, node: Any) -> None:
        """Raise for a reference to an undeclared name in ``node`` (a static error, which
        try() and can() do not catch)."""
        for ref in references(Expr(node, self.pos)):
            if ref.root in self.scope.locals_:
                continue
            if ref.root not in self.scope.values:
                raise ConfigError(
                    Diagnostic(
                        f"unknown reference {ref.root!r}",
                        ref.pos,
                        did_you_mean(ref.root, [*self.scope.values, *self.scope.locals_]),
                    )
                )
            namespace = self.scope.values[ref.root]
            first = ref.steps[0] if ref.steps else None
            if (
                ref.root in _NAMESPACES
                and isinstance(namespace, dict)
                and isinstance(first, str)
                and first not in namespace
            ):
                raise ConfigError(
                    Diagnostic(
                        f"reference to undeclared {ref.root}.{first}",
                        ref.pos,
                        did_you_mean(first, [str(k) for k in namespace]),
                    )
                )

    # -- traversal
    def _get_attr_expr_term(self, node: Tree) -> Any:
        return self.get_attr(self.value(node.children[0]), node.children[1], node)

    def get_attr(self, obj: Any, get_attr: Tree, node: Any) -> Any:
        attr_node = get_attr.children[1]
        name = str(attr_node.children[0])
        if obj is UNKNOWN:
            return UNKNOWN
        if isinstance(obj, dict):
            if name in obj:
                return obj[name]
            raise self.fail(
                f"no attribute {name!r}", attr_node, did_you_mean(name, [str(k) for k in obj])
            )
        if isinstance(obj, list):
            raise self.fail(
                f"cannot read attribute {name!r} of a list",
                attr_node,
                "index it first ([0]) or use a splat ([*])",
            )
        raise self.fail(f"cannot read attribute {name!r} of a {type_of(obj)}", attr_node)

    def _index_expr_term(self, node: Tree) -> Any:
        return self.index(self.value(node.children[0]), node.children[1], node)

    def index(self, obj: Any, idx_node: Tree, node: Any) -> Any:
        if idx_node.data == "short_index":
            key: Any = int(str(idx_node.children[1]))
        else:
            key = self.value(_kids(idx_node)[0])
        if obj is UNKNOWN or key is UNKNOWN:
            return UNKNOWN
        if isinstance(obj, list):
            if isinstance(key, str) and key.lstrip("-").isdigit():
                key = int(key)
            if not isinstance(key, int) or isinstance(key, bool):
                raise self.fail(f"a list index must be a number, got {type_of(key)}", idx_node)
            if not 0 <= key < len(obj):
                raise self.fail(f"index {key} out of range (length {len(obj)})", idx_node)
            return obj[key]
        if isinstance(obj, dict):
            if isinstance(key, (int, float)) and not isinstance(key, bool):
                key = _num_str(key)
            if key not in obj:
                raise self.fail(
                    f"no key {key!r}", idx_node, did_you_mean(str(key), [str(k) for k in obj])
                )
            return obj[key]
        raise self.fail(f"cannot index a {type_of(obj)}", idx_node)

    def _splat(self, node: Tree) -> Any:
        obj = self.value(node.children[0])
        if obj is UNKNOWN:
            return UNKNOWN
        items = obj if isinstance(obj, list) else [] if obj is None else [obj]
        steps = [c for c in node.children[1].children if isinstance(c, Tree)]
        out = []
        for item in items:
            for step in steps:
                if step.data == "get_attr":
                    item = self.get_attr(item, step, node)
                else:
                    item = self.index(item, step, node)
            out.append(item)
        return out

    _attr_splat_expr_term = _splat
    _full_splat_expr_term = _splat

    # -- for expressions
    def _for(self, node: Tree) -> Iterator[Scope]:
        intro = next(c for c in node.children if isinstance(c, Tree) and c.data == "for_intro")
        names = [
            str(c.children[0])
            for c in intro.children
            if isinstance(c, Tree) and c.data == "identifier"
        ]
        coll = self.value(_kids(intro)[-1])
        if coll is UNKNOWN:
            raise _UnknownShape
        cond = next(
            (c for c in node.children if isinstance(c, Tree) and c.data == "for_cond"), None
        )
        if isinstance(coll, dict):
            pairs: list[tuple[Any, Any]] = sorted(coll.items())  # HCL iterates maps by key
        elif isinstance(coll, list):
            pairs = list(enumerate(coll))
        else:
            raise self.fail(f"cannot iterate over a {type_of(coll)}", intro)
        for k, v in pairs:
            bound = {names[0]: v} if len(names) == 1 else {names[0]: k, names[1]: v}
            inner = self.scope.child(bound)
            if cond is not None:
                ok = _Evaluator(inner, self.pos, self.budget).value(_kids(cond)[0])
                if ok is UNKNOWN:
                    raise _UnknownShape
                if ok is not True:
                    continue
            yield inner

    def _for_tuple_expr(self, node: Tree) -> Any:
        body = next(c for c in _kids(node) if c.data not in ("for_intro", "for_cond"))
        try:
            out: list[Any] = []
            elements = chars = 0
            for s in self._for(node):
                out.append(_Evaluator(s, self.pos, self.budget).value(body))
                # checked as the list grows: a nested for must not build a billion first
                e, c = self.budget.measure(out[-1])
                elements, chars = elements + e + 1, chars + c
                check_totals(elements, chars)
            return out
        except _UnknownShape:
            return UNKNOWN

    def _for_object_expr(self, node: Tree) -> Any:
        try:
            return self._for_object(node)
        except _UnknownShape:
            return UNKNOWN

    def _for_object(self, node: Tree) -> dict[str, Any]:
        key_node, val_node = [c for c in _kids(node) if c.data not in ("for_intro", "for_cond")][:2]
        group = any(isinstance(c, Token) and c.type == "ELLIPSIS" for c in node.children)
        out: dict[str, Any] = {}
        elements = chars = 0
        for s in self._for(node):
            ev = _Evaluator(s, self.pos, self.budget)
            key = ev.value(key_node)
            if key is UNKNOWN:
                raise _UnknownShape
            if not isinstance(key, str):
                key = ev.to_string(key, key_node)
            val = ev.value(val_node)
            e, c = self.budget.measure(val)  # checked as the map grows, as for lists
            elements, chars = elements + e + 1, chars + c + len(key)
            check_totals(elements, chars)
            if group:
                out.setdefault(key, []).append(val)
            elif key in out:
                raise self.fail(
                    f"duplicate key {key!r} in for expression", node, "add '...' to group"
                )
            else:
                out[key] = val
        return out


class _UnknownShape(Exception):
    """A for expression over an unknown collection (or with an unknown condition or key)
    cannot be shaped at plan time: it is unknown as a whole."""


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    try:
        return json.loads('"' + text.replace('"', '\\"').replace('\\\\"', '\\"') + '"')
    except json.JSONDecodeError:
        return text.encode().decode("unicode_escape")


def _int_text(text: str) -> int:
    """A whole number literal, refused past the number size limit (before Python's own
    4300-digit limit on converting text to int)."""
    digits = text.lstrip("+-").lstrip("0")
    if len(digits) > MAX_NUMBER_DIGITS:
        raise LimitError(
            f"a number may have at most {MAX_NUMBER_DIGITS} digits (the number size limit); "
            f"this one has {len(digits)}"
        )
    return int(text) if text.lstrip("+-") else 0


def _norm(num: float | int) -> int | float:
    problem = number_problem(num)
    if problem:
        raise LimitError(problem)
    if isinstance(num, float) and num.is_integer() and abs(num) < 2**53:
        return int(num)
    return num


def _num_str(value: int | float) -> str:
    value = _norm(value)
    return repr(value) if isinstance(value, float) else str(value)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (type(a) is type(b) and a == b)
    return bool(a == b)
