"""String templates: literal text, ``${...}`` interpolations and Terraform's template
directives (``%{if}``/``%{else}``/``%{endif}``, ``%{for}``/``%{endfor}``), with strip
markers (``${~ x ~}``, ``%{~ if c ~}``) that remove the whitespace beside them.

A template is read in three steps. Its source becomes a flat list of :class:`Piece` (from
text by :func:`scan` and :func:`directive_syntax`, or from python-hcl2's tree of a quoted
string by :func:`hcl_piece`); :func:`build` applies the strip markers (and, for ``<<-``
heredocs, removes the common indentation as HCL does) and nests the directives into
:class:`TemplateIf`/:class:`TemplateFor` parts; :func:`render` evaluates those parts. The
parts of a template are literal strings, expression trees and those two node types.

``templatefile(path, vars)`` is here too (:func:`templatefile`): it renders a file of the
configuration with the given variables only.
"""

from __future__ import annotations

import bisect
import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from lark import Token, Tree

from trainform.config.values import (
    MAX_NESTING_DEPTH,
    MAX_STRING_LENGTH,
    UNKNOWN,
    FunctionContext,
    FunctionError,
    LimitError,
)
from trainform.errors import ConfigError, Diagnostic, Pos

if TYPE_CHECKING:
    from trainform.config.source import Template


@dataclass(frozen=True)
class TemplateIf:
    """``%{if condition}then%{else}otherwise%{endif}``."""

    condition: Tree
    then: tuple[Part, ...]
    otherwise: tuple[Part, ...]
    pos: Pos


@dataclass(frozen=True)
class TemplateFor:
    """``%{for value in collection}body%{endfor}``, or ``%{for key, value in ...}``."""

    key: str | None
    value: str
    collection: Tree
    body: tuple[Part, ...]
    pos: Pos


Part: TypeAlias = "str | Tree | TemplateIf | TemplateFor"
"""A part of a template: literal text, an interpolated expression, or a directive."""

DIRECTIVES = "if, else, endif, for or endfor"


@dataclass
class Piece:
    """One element of a template's flat source: a literal ("lit"), an interpolation
    ("interp") or a directive ("if", "else", "endif", "for", "endfor")."""

    kind: str
    pos: Pos
    text: str = ""  # a literal's text
    expr: Tree | None = None  # the interpolation, the if's condition, the for's collection
    names: tuple[str, ...] = ()  # the for's names
    strip_left: bool = False
    strip_right: bool = False


# --------------------------------------------------------------------------- text


class TemplateSyntaxError(ValueError):
    """A template's text is malformed at ``offset``."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True)
class Span:
    """A stretch of template text: "lit" (its text, escapes resolved), "interp" or
    "directive" (the source between the braces, strip markers removed), from ``offset``."""

    kind: str
    text: str
    offset: int
    strip_left: bool = False
    strip_right: bool = False


_SPECIAL = re.compile(r"\$\$\{|%%\{|\$\{|%\{|\n")


def scan(text: str, per_line: bool = False) -> list[Span]:
    """Split template text into spans. ``$${`` and ``%%{`` escape ``${`` and ``%{``; braces
    and quoted strings (with templates of their own) nest inside ``${...}`` and ``%{...}``.
    With ``per_line`` a literal ends after each newline, as HCL reads heredocs and template
    files (strip markers then reach no further than the line). Raises
    :class:`TemplateSyntaxError` for an unterminated ``${`` or ``%{``."""
    spans: list[Span] = []
    buf: list[str] = []
    start = i = 0

    def literal() -> None:
        joined = "".join(buf)
        if joined:
            spans.append(Span("lit", joined, start))
        buf.clear()

    while True:
        m = _SPECIAL.search(text, i)
        if m is None:
            buf.append(text[i:])
            break
        buf.append(text[i : m.start()])
        tok = m.group()
        i = m.end()
        if tok == "\n":
            buf.append(tok)
            if per_line:
                literal()
                start = i
            continue
        if tok in ("$${", "%%{"):
            buf.append(tok[1:])
            continue
        literal()
        end = _closing(text, i)
        if end is None:
            raise TemplateSyntaxError(f"unterminated '{tok}' (no closing '}}')", m.start())
        first, last = i, end - 1
        strip_left = text.startswith("~", first)
        first += strip_left
        strip_right = last > first and text[last - 1] == "~"
        last -= strip_right
        kind = "interp" if tok == "${" else "directive"
        spans.append(Span(kind, text[first:last], first, strip_left, strip_right))
        start = i = end
    if "".join(buf) or not spans:
        spans.append(Span("lit", "".join(buf), start))
    return spans


def _closing(text: str, i: int) -> int | None:
    """The index after the ``}`` closing the ``${``/``%{`` opened just before ``i``."""
    stack = [1]  # per open template: its brace depth; 0 marks a quoted string
    n = len(text)
    while i < n:
        ch = text[i]
        if stack[-1] == 0:  # inside a quoted string
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                stack.pop()
            elif text.startswith(("$${", "%%{"), i):
                i += 2
            elif text.startswith(("${", "%{"), i):
                stack.append(1)
                i += 1
            i += 1
            continue
        if ch == '"':
            stack.append(0)
        elif ch == "{":
            stack[-1] += 1
        elif ch == "}":
            stack[-1] -= 1
            if stack[-1] == 0:
                stack.pop()
                if not stack:
                    return i + 1
        i += 1
    return None


_FOR = re.compile(r"\s+([A-Za-z_][\w-]*)\s*(?:,\s*([A-Za-z_][\w-]*)\s*)?\s+in(?![\w-])")


def directive_syntax(span: Span) -> tuple[str, tuple[str, ...], str, int]:
    """(keyword, names, expression source, offset of that source) of a directive span.
    Raises :class:`TemplateSyntaxError`."""
    inner = span.text
    m = re.match(r"\s*(\w*)", inner)
    keyword = m.group(1) if m else ""
    rest, at = inner[m.end() if m else 0 :], span.offset + (m.end() if m else 0)
    if not keyword:
        raise TemplateSyntaxError(f"empty template directive: expected {DIRECTIVES}", span.offset)
    if keyword in ("else", "endif", "endfor"):
        if rest.strip():
            extra = rest.strip()
            raise TemplateSyntaxError(
                f"unexpected {extra[:30]!r} after %{{{keyword}}}",
                at + len(rest) - len(rest.lstrip()),
            )
        return keyword, (), "", 0
    if keyword == "if":
        if not rest.strip():
            raise TemplateSyntaxError("%{if} needs a condition: %{if CONDITION}", span.offset)
        return keyword, (), rest, at
    if keyword == "for":
        fm = _FOR.match(rest)
        if fm is None or not rest[fm.end() :].strip():
            raise TemplateSyntaxError(
                "invalid %{for} directive: expected %{for NAME in COLLECTION} or "
                "%{for KEY, VALUE in COLLECTION}",
                span.offset,
            )
        names = tuple(n for n in fm.groups() if n)
        return keyword, names, rest[fm.end() :], at + fm.end()
    raise TemplateSyntaxError(
        f"unknown template directive %{{{keyword}}}: expected {DIRECTIVES}", at - len(keyword)
    )


# --------------------------------------------------------------------------- HCL trees

_HCL_KINDS = {
    "interpolation": "interp",
    "template_if_start": "if",
    "template_else": "else",
    "template_endif": "endif",
    "template_for_start": "for",
    "template_endfor": "endfor",
}


def _tree_pos(node: Any, default: Pos) -> Pos:
    if isinstance(node, Token) and node.line is not None:
        return Pos(default.file, node.line, node.column or 1)
    if isinstance(node, Tree) and not node.meta.empty:
        return Pos(default.file, node.meta.line, node.meta.column)
    return default


def hcl_piece(node: Tree, default: Pos) -> Piece:
    """The piece of a quoted HCL string part that python-hcl2 parsed as an interpolation or
    a directive (strip markers are STRIP_MARKER tokens; see :func:`restore_strip_markers`)."""
    kind = _HCL_KINDS[node.data]
    kids = node.children
    strip_left = isinstance(kids[1], Token) and kids[1].type == "STRIP_MARKER"
    strip_right = isinstance(kids[-2], Token) and kids[-2].type == "STRIP_MARKER"
    names: list[str] = []
    expr: Tree | None = None
    seen_in = kind != "for"
    for kid in kids[1:-1]:
        if isinstance(kid, Token):
            seen_in = seen_in or kid.type == "IN"
        elif kid.data == "identifier" and not seen_in:
            names.append(str(kid.children[0]))
        elif kid.data != "new_line_or_comment" and expr is None:
            expr = kid
    return Piece(
        kind, _tree_pos(node, default), "", expr, tuple(names), bool(strip_left), strip_right
    )


# python-hcl2 does not know strip markers on interpolations ("${~ x ~}"), so they are
# blanked before it parses a file and put back after (see parse_hcl): as STRIP_MARKER tokens
# where they belong to a template, as the text they were in a string, heredoc or comment.
_MARKERS = re.compile(r"(?<=\$\{)~|~(?=\})")
_TEXT_TOKENS = frozenset(
    {
        "STRING_CHARS",
        "ESCAPED_INTERPOLATION",
        "ESCAPED_DIRECTIVE",
        "HEREDOC_TEMPLATE",
        "HEREDOC_TEMPLATE_TRIM",
        "NL_OR_COMMENT",
        "TEMPLATE_STRING",
    }
)


def blank_strip_markers(text: str) -> tuple[str, list[int]]:
    """``text`` with each ``~`` after ``${`` or before ``}`` made a space, and where."""
    if "~" not in text:
        return text, []
    spots = [m.start() for m in _MARKERS.finditer(text)]
    if not spots:
        return text, []
    return _MARKERS.sub(" ", text), spots


def restore_strip_markers(tree: Tree, text: str, spots: list[int]) -> int | None:
    """Put back the ``~`` blanked by :func:`blank_strip_markers` in the parse tree of the
    blanked text (``text`` is the original). Returns the offset of a ``~`` that belongs
    nowhere (a syntax error in the original), or None."""
    left = set(spots)
    for sub in list(tree.iter_subtrees()):
        kids = sub.children
        for idx, kid in enumerate(kids):
            if (
                isinstance(kid, Token)
                and kid.type in _TEXT_TOKENS
                and kid.start_pos is not None
                and kid.end_pos is not None
            ):
                first = bisect.bisect_left(spots, kid.start_pos)
                if first < len(spots) and spots[first] < kid.end_pos:
                    kids[idx] = Token.new_borrow_pos(
                        kid.type, text[kid.start_pos : kid.end_pos], kid
                    )
                    left.difference_update(s for s in spots[first:] if s < kid.end_pos)
        if sub.data not in _HCL_KINDS or not kids:
            continue
        opener, closer = kids[0], kids[-1]
        if not (isinstance(opener, Token) and isinstance(closer, Token)):
            continue
        if opener.end_pos in left and sub.data == "interpolation":
            left.discard(opener.end_pos)
            kids.insert(1, Token.new_borrow_pos("STRIP_MARKER", "~", opener))
        if closer.start_pos is not None and closer.start_pos - 1 in left:
            left.discard(closer.start_pos - 1)
            kids.insert(len(kids) - 1, Token.new_borrow_pos("STRIP_MARKER", "~", closer))
    return min(left) if left else None


# --------------------------------------------------------------------------- building


def build(pieces: list[Piece], flush: bool = False) -> tuple[Part, ...]:
    """The parts of a template from its pieces: strip markers applied, with ``flush`` the
    common indentation of its lines removed (``<<-``), directives nested. Raises
    :class:`ConfigError` for unbalanced or misplaced directives."""
    for idx, piece in enumerate(pieces):
        if piece.kind == "lit":
            continue
        if piece.strip_left and idx > 0 and pieces[idx - 1].kind == "lit":
            pieces[idx - 1].text = pieces[idx - 1].text.rstrip()
        if piece.strip_right and idx + 1 < len(pieces) and pieces[idx + 1].kind == "lit":
            pieces[idx + 1].text = pieces[idx + 1].text.lstrip()
    if flush:
        _flush(pieces)
    root: list[Part] = []
    stack: list[_Open] = []
    out = root
    for piece in pieces:
        if piece.kind == "lit":
            if out and isinstance(out[-1], str):
                out[-1] += piece.text
            else:
                out.append(piece.text)
        elif piece.kind == "interp":
            assert piece.expr is not None
            out.append(piece.expr)
        elif piece.kind in ("if", "for"):
            if len(stack) >= MAX_NESTING_DEPTH:
                raise ConfigError(
                    Diagnostic(
                        f"template directives nested more than {MAX_NESTING_DEPTH} levels deep "
                        "(the nesting limit)",
                        piece.pos,
                    )
                )
            stack.append(_Open(piece))
            out = stack[-1].body
        elif piece.kind == "else":
            top = stack[-1] if stack else None
            if top is None:
                raise _unbalanced(piece, "%{else} without an %{if} before it")
            if top.piece.kind == "for":
                raise _unbalanced(
                    piece, f"%{{else}} inside the %{{for}} of line {top.piece.pos.line}", top
                )
            if top.otherwise is not None:
                raise _unbalanced(
                    piece, f"a second %{{else}} for the %{{if}} of line {top.piece.pos.line}"
                )
            top.otherwise = []
            out = top.otherwise
        else:  # endif, endfor
            opener = piece.kind.removeprefix("end")
            if not stack:
                raise _unbalanced(piece, f"%{{{piece.kind}}} without a %{{{opener}}} before it")
            top = stack[-1]
            if top.piece.kind != opener:
                raise _unbalanced(
                    piece,
                    f"%{{{piece.kind}}} while the %{{{top.piece.kind}}} of line "
                    f"{top.piece.pos.line} is open",
                    top,
                )
            stack.pop()
            out = stack[-1].current() if stack else root
            out.append(top.node())
    if stack:
        top = stack[-1]
        raise ConfigError(
            Diagnostic(
                f"%{{{top.piece.kind}}} without a matching %{{end{top.piece.kind}}}: the "
                "template ends first",
                top.piece.pos,
            )
        )
    return tuple(root)


@dataclass
class _Open:
    """An ``%{if}`` or ``%{for}`` whose end is not reached yet."""

    piece: Piece
    body: list[Part] = field(default_factory=list)
    otherwise: list[Part] | None = None

    def current(self) -> list[Part]:
        return self.body if self.otherwise is None else self.otherwise

    def node(self) -> Part:
        p = self.piece
        assert p.expr is not None
        if p.kind == "if":
            return TemplateIf(p.expr, tuple(self.body), tuple(self.otherwise or ()), p.pos)
        key = p.names[0] if len(p.names) == 2 else None
        return TemplateFor(key, p.names[-1], p.expr, tuple(self.body), p.pos)


def _unbalanced(piece: Piece, message: str, open_: _Open | None = None) -> ConfigError:
    hint = ""
    if open_ is not None:
        hint = f"close the %{{{open_.piece.kind}}} with %{{end{open_.piece.kind}}} first"
    return ConfigError(Diagnostic(message, piece.pos, hint))


def _flush(pieces: list[Piece]) -> None:
    """Remove the indentation common to a ``<<-`` heredoc's lines, as HCL does: after strip
    markers, counting the leading whitespace of each literal that starts a line; a line
    starting with an interpolation or directive counts as unindented, a blank one not at all."""
    smallest: int | None = None
    newline = True
    adjust: list[Piece] = []
    for piece in pieces:
        if newline:
            newline = False
            if piece.kind == "lit":
                trimmed = piece.text.lstrip()
                if trimmed or not piece.text.endswith("\n"):
                    spaces = len(piece.text) - len(trimmed)
                    smallest = spaces if smallest is None else min(smallest, spaces)
                    adjust.append(piece)
            else:
                smallest = 0
        if piece.kind == "lit" and piece.text.endswith("\n"):
            newline = True
    for piece in adjust:
        piece.text = piece.text[smallest or 0 :]


# --------------------------------------------------------------------------- rendering


class _Budget(Protocol):
    def charge(self, steps: int) -> None: ...


class Renderer(Protocol):
    """What rendering needs of the expression evaluator."""

    @property
    def budget(self) -> _Budget: ...

    def value(self, node: Any) -> Any: ...

    def to_string(self, val: Any, node: Any) -> str: ...

    def fail(self, message: str, node: Any = None, hint: str = "") -> ConfigError: ...

    def within(self, names: dict[str, Any]) -> Renderer: ...


class _Unknown(Exception):
    """An interpolation, condition or collection is unknown: so is the whole template."""


def render(ev: Renderer, parts: tuple[Part, ...] | list[Part]) -> Any:
    """The string the parts make, or UNKNOWN. Every part, iteration and 16 characters cost a
    step of the evaluation's budget, and the string may not pass the string length limit
    (LimitError). Raises ConfigError for a value that cannot be used where it is."""
    out: list[str] = []
    try:
        _render(ev, parts, out, [0])
    except _Unknown:
        return UNKNOWN
    return "".join(out)


def _render(ev: Renderer, parts: Any, out: list[str], length: list[int]) -> None:
    for part in parts:
        ev.budget.charge(1)
        if isinstance(part, str):
            text = part
        elif isinstance(part, Tree):
            val = ev.value(part)
            if val is UNKNOWN:
                raise _Unknown
            text = ev.to_string(val, part)
        elif isinstance(part, TemplateIf):
            _render(ev, part.then if _condition(ev, part) else part.otherwise, out, length)
            continue
        else:
            for bound in _iterations(ev, part):
                ev.budget.charge(1)
                _render(ev.within(bound), part.body, out, length)
            continue
        length[0] += len(text)
        if length[0] > MAX_STRING_LENGTH:
            raise LimitError(
                f"a string may have at most {MAX_STRING_LENGTH} characters (the string length "
                f"limit); this template makes more"
            )
        ev.budget.charge(len(text) // 16)
        out.append(text)


def _condition(ev: Renderer, part: TemplateIf) -> bool:
    cond = ev.value(part.condition)
    if cond is UNKNOWN:
        raise _Unknown
    if isinstance(cond, str) and cond in ("true", "false"):
        return cond == "true"  # Terraform converts these two strings
    if cond is None:
        raise ev.fail("the %{if} condition is null; it must be true or false", part.condition)
    if not isinstance(cond, bool):
        from trainform.config.schema import type_of

        raise ev.fail(f"the %{{if}} condition must be a bool, got {type_of(cond)}", part.condition)
    return cond


def _iterations(ev: Renderer, part: TemplateFor) -> list[dict[str, Any]]:
    coll = ev.value(part.collection)
    if coll is UNKNOWN:
        raise _Unknown
    if isinstance(coll, dict):
        pairs: list[tuple[Any, Any]] = sorted(coll.items())  # maps iterate by key, as in HCL
    elif isinstance(coll, list):
        pairs = list(enumerate(coll))
    else:
        from trainform.config.schema import type_of

        what = "null" if coll is None else f"a {type_of(coll)}"
        raise ev.fail(f"%{{for}} cannot iterate over {what}", part.collection)
    if part.key is None:
        return [{part.value: v} for _, v in pairs]
    return [{part.key: k, part.value: v} for k, v in pairs]


def parts_trees(parts: Any) -> list[tuple[Tree, frozenset[str]]]:
    """Every expression of a template's parts with the names its ``%{for}``s bind there."""
    out: list[tuple[Tree, frozenset[str]]] = []
    stack: list[tuple[Any, frozenset[str]]] = [(parts, frozenset())]
    while stack:
        items, bound = stack.pop()
        for part in items:
            if isinstance(part, Tree):
                out.append((part, bound))
            elif isinstance(part, TemplateIf):
                out.append((part.condition, bound))
                stack.append((part.then, bound))
                stack.append((part.otherwise, bound))
            elif isinstance(part, TemplateFor):
                out.append((part.collection, bound))
                names = {part.value} if part.key is None else {part.key, part.value}
                stack.append((part.body, bound | names))
    return out


# --------------------------------------------------------------------------- templatefile

_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def template_roots(base_dir: Path) -> list[Path]:
    """Where templatefile() may read: the configuration directory and the modules installed
    under its ``.trainform/modules`` (symlinks resolved); for a configuration that is itself
    an installed module, also the configuration that installed it."""
    base = base_dir.resolve()
    roots = [base, (base / ".trainform" / "modules").resolve()]
    parts = base.parts
    for i in range(len(parts) - 1):
        if parts[i] == ".trainform" and parts[i + 1] == "modules":
            roots.append(Path(*parts[:i]))
            break
    return roots


def _checked_vars(variables: Any) -> dict[str, Any]:
    from trainform.config.schema import type_of

    if not isinstance(variables, dict):
        raise FunctionError(f"vars must be a map, got {type_of(variables)}")
    for name in variables:
        if not _VAR_NAME.fullmatch(name):
            raise FunctionError(
                f"invalid template variable name {name!r}: it must start with a letter or '_' "
                "and contain only letters, digits, '_' and '-'"
            )
    return variables


def templatefile(ctx: FunctionContext, path: Any, variables: Any) -> Any:
    """Render the template file at ``path`` (relative to the configuration directory, read
    through ``ctx`` so that a saved plan notices a change) with ``variables`` only in scope.
    Raises FunctionError for a bad argument or file, ConfigError (naming the template's
    file and line) for a fault inside the template."""
    from trainform.config.schema import type_of

    if not isinstance(path, str):
        raise FunctionError(f"path must be a string, got {type_of(path)}")
    variables = _checked_vars(variables)
    name = os.path.expanduser(path) if path.startswith("~") else path
    full = (ctx.base_dir / name).resolve()
    roots = template_roots(ctx.base_dir) + [d.resolve() for d in ctx.module_dirs]
    if not any(full.is_relative_to(root) for root in roots):
        raise FunctionError(
            f"{path!r} is outside the configuration directory {roots[0]} and the folders of "
            f"the modules it loads (it resolves to {full}): a template must be a file of the "
            "configuration or of one of its modules"
        )
    try:
        text = ctx.read_file(str(full)).decode("utf-8")
    except UnicodeDecodeError:
        raise FunctionError(f"{path!r} is not valid UTF-8 text") from None
    shown = str(full.relative_to(roots[0])) if full.is_relative_to(roots[0]) else str(full)
    if not full.is_relative_to(roots[0]):  # a module's folder beside the configuration
        shown = os.path.relpath(full, roots[0])
    return _render_text(ctx, text, Pos(shown, 1, 1), variables, "templatefile", lines=True)


def templatestring(ctx: FunctionContext, text: Any, variables: Any) -> Any:
    """Render ``text`` (a string some other expression made: the caller checks that the
    argument is a reference, as Terraform does) as a template with ``variables`` only in
    scope. Raises FunctionError or ConfigError like :func:`templatefile`."""
    from trainform.config.schema import type_of

    if not isinstance(text, str):
        raise FunctionError(f"the template must be a string, got {type_of(text)}")
    return _render_text(
        ctx, text, Pos("<templatestring>", 1, 1), _checked_vars(variables), "templatestring"
    )


def _render_text(
    ctx: FunctionContext,
    text: str,
    pos: Pos,
    variables: dict[str, Any],
    caller: str,
    lines: bool = False,
) -> Any:
    """``text`` parsed as a template (positions from ``pos``) and rendered with only
    ``variables`` and the functions in scope; no template function may be called inside."""
    from trainform.config.expr import Scope, evaluate_nested
    from trainform.config.schema import did_you_mean
    from trainform.config.source import Expr

    parse = _parsed_template if len(text) <= _CACHED_TEMPLATE_CHARS else _parse_template
    template, refs, nested = parse(text, pos, lines)
    for root, ref_pos in refs:
        if root not in variables:
            raise ConfigError(
                Diagnostic(
                    f"the template refers to {root!r}, which is not among the vars given "
                    f"to {caller}()",
                    ref_pos,
                    did_you_mean(root, list(variables))
                    or f"a template sees only the vars passed to {caller}(..., vars)",
                )
            )
    if nested is not None:
        inner, call_pos = nested
        raise ConfigError(
            Diagnostic(
                f"{inner}() cannot be called inside a template that {caller}() renders",
                call_pos,
            )
        )
    return evaluate_nested(Expr(template, pos), Scope(dict(variables), ctx))


_CACHED_TEMPLATE_CHARS = 64 * 1024
"""Templates up to this size are kept parsed (:func:`_parsed_template`): a module's
``templatefile`` is rendered once per instance of the module, from the same text."""


def _parse_template(
    text: str, pos: Pos, lines: bool
) -> tuple[Template, tuple[tuple[str, Pos], ...], tuple[str, Pos] | None]:
    """``text`` parsed as a template; the roots and positions of the references it makes;
    and the first call of ``templatefile``/``templatestring`` inside it (which rendering
    refuses), if any. Raises ConfigError for a malformed template. Never changes what it
    returns, and the parse trees are never changed in place, so the result can be shared."""
    from trainform.config.expr import references
    from trainform.config.source import Expr, template_from_text

    template: Template = template_from_text(text, pos, lines=lines)
    refs = tuple((ref.root, ref.pos) for ref in references(Expr(template, pos)))
    for tree, _ in parts_trees(template.parts):
        for call in tree.find_data("function_call"):
            inner = str(call.children[0].children[0])
            if inner in ("templatefile", "templatestring"):
                return template, refs, (inner, _tree_pos(call, pos))
    return template, refs, None


_parsed_template = functools.lru_cache(maxsize=64)(_parse_template)
