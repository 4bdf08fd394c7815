"""Canonical formatting of ``*.train.hcl`` files for ``trainform fmt`` (like ``terraform fmt``).

The formatter works on tokens, not on python-hcl2's parse result: that result drops comments
and re-serialising it can rewrite expressions.  Only whitespace *between* tokens is changed
(indentation, spacing around ``=``, before ``{`` of block headers and before trailing comments,
blank lines), so the meaning cannot change; output is nevertheless re-checked against the
input (token stream, comments and hcl2's parse result) and refused if anything differs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import hcl2
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from trainform.config.templates import blank_strip_markers

__all__ = ["FormatError", "format_hcl"]


class FormatError(Exception):
    """Formatting was refused; the message is meant to be shown to the user."""


@dataclass(frozen=True)
class _Tok:
    # kind: ws, nl, comment, string, heredoc, open, close, eq, word, other
    kind: str
    text: str
    pos: int


class _LexError(Exception):
    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.pos = pos


_WS = " \t\r\f\v"
# Multi-character operators are matched first so that the ``=`` inside them is never
# mistaken for an attribute assignment.
_OPS = ("==", "!=", "<=", ">=", "=>", "&&", "||", "...")
_WORD_RE = re.compile(r"[\w-]+")
_IDENT_RE = re.compile(r"[^\W\d][\w-]*")
# HCL (and python-hcl2) require the newline immediately after the heredoc marker.
_HEREDOC_RE = re.compile(r"<<-?([^\W\d][\w-]*)\r?\n")
# python-hcl2 attaches comments to the dict, but its comment capture is approximate (adjacent
# comments get merged together with the whitespace between them); comments are compared
# token-exactly by the formatter itself instead.
_COMMENT_KEYS = frozenset({"__comments__", "__inline_comments__"})


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text

    def tokenize(self) -> list[_Tok]:
        text, n, i = self.text, len(self.text), 0
        tokens: list[_Tok] = []
        while i < n:
            c = text[i]
            kind = "other"
            if c == "\n":
                kind, end = "nl", i + 1
            elif c in _WS:
                end = i + 1
                while end < n and text[end] in _WS:
                    end += 1
                kind = "ws"
            elif c == "#" or text.startswith("//", i):
                eol = text.find("\n", i)
                eol = n if eol < 0 else eol
                # Trailing blanks are not part of the comment, so they get stripped like any
                # other trailing whitespace.
                kind, end = "comment", i + len(text[i:eol].rstrip(_WS))
            elif text.startswith("/*", i):
                close = text.find("*/", i + 2)
                if close < 0:
                    raise _LexError("unterminated /* comment", i)
                kind, end = "comment", close + 2
            elif c == '"':
                kind, end = "string", self._string_end(i)
            elif m := _HEREDOC_RE.match(text, i):
                kind, end = "heredoc", self._heredoc_end(m)
            elif c in "{[(":
                kind, end = "open", i + 1
            elif c in "}])":
                kind, end = "close", i + 1
            elif op := next((op for op in _OPS if text.startswith(op, i)), None):
                end = i + len(op)
            elif c == "=":
                kind, end = "eq", i + 1
            elif m := _WORD_RE.match(text, i):
                kind, end = "word", m.end()
            else:
                end = i + 1
            tokens.append(_Tok(kind, text[i:end], i))
            i = end
        return tokens

    def _string_end(self, start: int) -> int:
        text, i = self.text, start + 1
        while i < len(text):
            c = text[i]
            if c == "\\":
                i += 2
            elif c == '"':
                return i + 1
            elif c == "\n":
                break
            elif text.startswith(("$${", "%%{"), i):
                i += 3
            elif text.startswith(("${", "%{"), i):
                i = self._template_end(i + 2)
            else:
                i += 1
        raise _LexError("unterminated string", start)

    def _template_end(self, start: int) -> int:
        # Interpolations may contain object literals and nested quoted strings, e.g.
        # "${lookup(var.m, "k")}", so braces are counted and strings skipped recursively.
        text, i, depth = self.text, start, 1
        while i < len(text):
            c = text[i]
            if c == '"':
                i = self._string_end(i)
                continue
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        raise _LexError("unterminated template interpolation", start - 2)

    def _heredoc_end(self, m: re.Match[str]) -> int:
        text, marker, pos = self.text, m.group(1), m.end()
        while pos < len(text):
            eol = text.find("\n", pos)
            eol = len(text) if eol < 0 else eol
            line = text[pos:eol]
            if line.strip(_WS) == marker:
                return pos + line.index(marker) + len(marker)
            pos = eol + 1
        raise _LexError(f"unterminated heredoc <<{marker}", m.start())


@dataclass
class _Line:
    indent: int
    lead: str
    assign: str | None = None  # "= value", present when the line has a top-level `=`
    comment: str | None = None  # trailing comment
    align: bool = False  # may take part in a run of aligned `=`
    gap: int = 1  # spaces before `=`
    comment_gap: int = 1

    def prefix(self) -> str:
        text = " " * (2 * self.indent) + self.lead
        return text if self.assign is None else text + " " * self.gap + self.assign

    def render(self) -> str:
        text = self.prefix()
        return text if self.comment is None else text + " " * self.comment_gap + self.comment


def _strip_ws(toks: list[_Tok]) -> list[_Tok]:
    start, end = 0, len(toks)
    while start < end and toks[start].kind == "ws":
        start += 1
    while end > start and toks[end - 1].kind == "ws":
        end -= 1
    return toks[start:end]


def _join(toks: list[_Tok]) -> str:
    return "".join(t.text for t in toks)


def _net_brackets(toks: list[_Tok]) -> int:
    return sum((t.kind == "open") - (t.kind == "close") for t in toks)


def _top_level_eq(toks: list[_Tok]) -> int | None:
    depth = 0
    for i, t in enumerate(toks):
        if t.kind == "eq" and depth == 0 and i > 0:
            return i
        depth += (t.kind == "open") - (t.kind == "close")
    return None


def _render_plain(toks: list[_Tok]) -> str:
    # Block header (`type "label" label {`): exactly one space between its parts.
    brace = next((i for i, t in enumerate(toks) if t.kind == "open"), None)
    if brace is None or toks[brace].text != "{":
        return _join(toks)
    if any(t.kind not in ("word", "string", "ws") for t in toks[:brace]):
        return _join(toks)
    head = [t for t in toks[:brace] if t.kind != "ws"]
    if not head or head[0].kind != "word" or not _IDENT_RE.fullmatch(head[0].text):
        return _join(toks)
    return " ".join(t.text for t in head) + " " + _join(toks[brace:])


def _analyse(toks: list[_Tok], indent: int) -> _Line:
    comment = None
    if len(toks) > 1 and toks[-1].kind == "comment":
        comment, toks = toks[-1].text, _strip_ws(toks[:-1])
    eq = _top_level_eq(toks)
    if eq is None:
        return _Line(indent, _render_plain(toks), comment=comment)
    lead = _join(_strip_ws(toks[:eq]))
    rhs = _join(_strip_ws(toks[eq + 1 :]))
    assign = "= " + rhs if rhs else "="
    # As in terraform, only a line whose value is complete on it joins an aligned run; an
    # opening `x = {` ends the run.
    align = _net_brackets(toks[eq:]) == 0 and "\n" not in lead
    return _Line(indent, lead, assign, comment, align)


def _indent_lines(tokens: list[_Tok]) -> list[_Line | None]:
    """Split into lines (None for blank ones) and indent them the way terraform fmt does.

    A line with a net surplus of opening brackets opens ONE indent level however many brackets
    it opens (`foo([` indents its contents by 2 spaces, not 4); closing brackets pop levels.
    Multi-line tokens (heredocs, /* */ comments, strings with multi-line interpolations) are
    part of the line they start on, so the lines inside them are never touched.
    """
    raw: list[list[_Tok]] = [[]]
    for t in tokens:
        if t.kind == "nl":
            raw.append([])
        else:
            raw[-1].append(t)
    stack: list[int] = []
    lines: list[_Line | None] = []
    for toks in map(_strip_ws, raw):
        if not toks:
            lines.append(None)
            continue
        net = _net_brackets(toks)
        indent = len(stack)
        if net > 0:
            stack.append(net)
        elif net < 0:
            closed = -net
            while closed > 0 and stack:
                if closed >= stack[-1]:
                    closed -= stack.pop()
                else:
                    stack[-1] -= closed
                    closed = 0
            indent = len(stack)
        lines.append(_analyse(toks, indent))
    return lines


def _align(lines: list[_Line | None]) -> None:
    run: list[_Line] = []

    def close_eq_run() -> None:
        width = max((2 * ln.indent + len(ln.lead) for ln in run), default=0)
        for ln in run:
            ln.gap = width - 2 * ln.indent - len(ln.lead) + 1
        run.clear()

    for line in lines:
        if line is not None and line.assign is not None and line.align:
            run.append(line)
        else:
            close_eq_run()
    close_eq_run()

    # Trailing comments of consecutive lines line up too, after `=` alignment is settled.
    def close_comment_run() -> None:
        width = max((len(ln.prefix()) for ln in run), default=0)
        for ln in run:
            ln.comment_gap = width - len(ln.prefix()) + 1
        run.clear()

    for line in lines:
        if line is not None and line.comment is not None and "\n" not in line.prefix():
            run.append(line)
        else:
            close_comment_run()
    close_comment_run()


def _format_tokens(tokens: list[_Tok]) -> str:
    lines = _indent_lines(tokens)
    _align(lines)
    out: list[str] = []
    previous_blank = True  # also drops blank lines at the top of the file
    for line in lines:
        if line is None:
            if not previous_blank:
                out.append("")
            previous_blank = True
        else:
            out.append(line.render())
            previous_blank = False
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n" if out else ""


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _describe(exc: UnexpectedInput) -> str:
    if isinstance(exc, UnexpectedCharacters):
        return repr(exc.char)
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        # python-hcl2's lexer can hand over the whole rest of the file as one token.
        first = str(exc.token.value).split("\n", 1)[0].strip()
        if not first:
            return "end of line"
        return repr(first if len(first) <= 20 else first[:20] + "...")
    return "end of file"


def _loads(text: str) -> Any:
    """hcl2's reading of ``text``; strip markers (``${~ x ~}``), which python-hcl2 lacks,
    are read as spaces (the token comparison in :func:`_verify` still sees them)."""
    return hcl2.loads(blank_strip_markers(text)[0])


def _parse(text: str, filename: str) -> Any:
    try:
        return _loads(text)
    except UnexpectedInput as exc:
        if not isinstance(exc, UnexpectedEOF) and exc.line > 0:
            where = f"{filename}:{exc.line}:{exc.column}"
        else:
            where = filename
        raise FormatError(f"{where}: syntax error: unexpected {_describe(exc)}") from exc
    except Exception as exc:  # python-hcl2 raises plain exceptions for some semantic errors
        first = str(exc).split("\n", 1)[0]
        raise FormatError(f"{filename}: syntax error: {first}") from exc


def _without_comments(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_comments(v) for k, v in value.items() if k not in _COMMENT_KEYS}
    if isinstance(value, list):
        return [_without_comments(v) for v in value]
    return value


def _comments(tokens: list[_Tok]) -> list[str]:
    return [t.text for t in tokens if t.kind == "comment"]


def _significant(tokens: list[_Tok]) -> list[str]:
    return [t.text for t in tokens if t.kind not in ("ws", "nl")]


def _verify(original: list[_Tok], parsed: Any, result: str, filename: str) -> None:
    unchanged = f"{filename}; file left unchanged"
    try:
        after = _Lexer(result).tokenize()
    except _LexError as exc:
        raise FormatError(
            f"internal formatter error: cannot re-read output for {unchanged}"
        ) from exc
    if _comments(original) != _comments(after):
        raise FormatError(
            f"internal formatter error: formatting would alter comments of {unchanged}"
        )
    changed = FormatError(
        f"internal formatter error: formatting would change meaning of {unchanged}"
    )
    # Only whitespace may differ; hcl2's result below is a second, independent opinion.
    if _significant(original) != _significant(after):
        raise changed
    try:
        reparsed = _loads(result)
    except Exception as exc:
        raise changed from exc
    if _without_comments(reparsed) != _without_comments(parsed):
        raise changed


def format_hcl(text: str, filename: str = "<input>") -> str:
    """Return ``text`` in canonical layout; raise FormatError rather than change its meaning."""
    parsed = _parse(text, filename)
    try:
        tokens = _Lexer(text).tokenize()
    except _LexError as exc:
        line, col = _line_col(text, exc.pos)
        raise FormatError(f"{filename}:{line}:{col}: syntax error: {exc}") from exc
    result = _format_tokens(tokens)
    _verify(tokens, parsed, result, filename)
    return result
