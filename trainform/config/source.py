"""Reading configuration files into raw blocks: HCL through python-hcl2's parse tree, YAML
through PyYAML's node graph. Both produce the same :class:`RawBlock` structure, with every
attribute's expression kept unevaluated and every element carrying its ``file:line:column``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lark import Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.tree import Meta

from trainform.config.templates import (
    Part,
    Piece,
    Span,
    TemplateSyntaxError,
    blank_strip_markers,
    build,
    directive_syntax,
    restore_strip_markers,
    scan,
)
from trainform.config.values import (
    MAX_COLLECTION_SIZE,
    MAX_NESTING_DEPTH,
    MAX_NUMBER_DIGITS,
    number_problem,
)
from trainform.errors import ConfigError, Diagnostic, Pos

if TYPE_CHECKING:
    import yaml  # imported where used: it costs ~10 ms of every command's start

CONFIG_SUFFIXES = (".train.hcl", ".train.yaml", ".train.yml")


@dataclass(frozen=True)
class Expr:
    """An unevaluated expression.

    ``node`` is one of: a lark ``Tree``/``Token`` from the HCL grammar; :class:`Template` (a
    YAML string, possibly with ``${...}`` interpolations); :class:`Literal`; a ``list`` of
    :class:`Expr` (YAML sequence) or a ``dict`` of str -> :class:`Expr` (YAML mapping).
    """

    node: Any
    pos: Pos


@dataclass(frozen=True)
class Literal:
    """A YAML scalar that is not a string (number, bool, null)."""

    value: Any


@dataclass(frozen=True)
class Template:
    """A string template: literal text parts, parsed ``${...}`` expression trees and
    directives (``%{if}``, ``%{for}``: see templates.py)."""

    parts: tuple[Part, ...]
    text: str


@dataclass
class RawAttr:
    name: str
    expr: Expr
    pos: Pos


@dataclass
class RawBlock:
    """A block as written: type, labels, attributes and nested blocks, with positions."""

    type: str
    labels: list[str]
    pos: Pos
    attrs: dict[str, RawAttr] = field(default_factory=dict)
    blocks: list[RawBlock] = field(default_factory=list)


def node_pos(node: Any, file: str, default: Pos | None = None) -> Pos:
    """The position of a lark tree or token, falling back to ``default``."""
    if isinstance(node, Token) and node.line is not None:
        return Pos(file, node.line, node.column or 1)
    if isinstance(node, Tree) and not node.meta.empty:
        return Pos(file, node.meta.line, node.meta.column)
    return default or Pos(file, 1, 1)


def syntax_error(
    exc: UnexpectedInput, file: str, line_offset: int = 0, col_offset: int = 0
) -> Diagnostic:
    """A one-line diagnostic for a lark parse error (no dump of expected tokens)."""
    line = (exc.line or 1) + line_offset
    column = (exc.column or 1) + (col_offset if (exc.line or 1) == 1 else 0)
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        what = "end of file" if tok.type == "$END" else repr(str(tok).split("\n")[0] or "newline")
        msg = f"syntax error: unexpected {what}"
        expected = sorted(exc.expected)
        if "RBRACE" in expected and "NAME" in expected:
            msg += "; expected an attribute, a block or '}'"
        elif "EQ" in expected or "LBRACE" in expected:
            msg += "; expected '=' or '{'"
    elif isinstance(exc, UnexpectedCharacters):
        msg = f"syntax error: unexpected character {exc.char!r}"
    elif isinstance(exc, UnexpectedEOF):
        msg = "syntax error: unexpected end of file (an unclosed '{', '[' or string?)"
    else:
        msg = "syntax error"
    return Diagnostic(msg, Pos(file, line, max(column, 1)))


# Parse-tree nodes that are a level of nesting as a user sees it (a bracket, a call, an
# operator, an interpolation...); the rest wrap these one or two at a time. Everything that
# walks a tree or a value recurses, so nesting is refused past MAX_NESTING_DEPTH here, at
# parse time, rather than as a RecursionError wherever it happens to be walked.
_NESTING = frozenset(
    {
        "block",
        "function_call",
        "tuple",
        "object",
        "conditional",
        "unary_op",
        "binary_op",
        "for_tuple_expr",
        "for_object_expr",
        "index_expr_term",
        "get_attr_expr_term",
        "attr_splat_expr_term",
        "full_splat_expr_term",
        "interpolation",
    }
)


class NestingError(ValueError):
    """An expression nests past the limit; ``node`` is where the limit is passed."""

    def __init__(self, node: Tree) -> None:
        super().__init__(nesting_message())
        self.node = node


def nesting_message() -> str:
    return (
        f"nested more than {MAX_NESTING_DEPTH} levels deep (the nesting limit): brackets, "
        "calls, operators, conditionals, interpolations and blocks each add a level"
    )


def check_nesting(tree: Tree, levels: int = 0) -> None:
    """Raise :class:`NestingError` if ``tree`` (starting ``levels`` deep) nests past the
    limit. Iterative: the tree may be arbitrarily deep."""
    stack: list[tuple[Tree, int]] = [(tree, levels)]
    while stack:
        node, level = stack.pop()
        if node.data in _NESTING or (
            node.data == "expr_term"
            and any(isinstance(c, Token) and c.type == "LPAR" for c in node.children)
        ):
            level += 1
            if level > MAX_NESTING_DEPTH:
                raise NestingError(node)
        stack.extend((c, level) for c in node.children if isinstance(c, Tree))


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
# A sweep parameter's name may carry the dashes of the flag it becomes (`parameter "--lr"`);
# it names an argument, never a path.
_PARAMETER = re.compile(r"-{0,2}[A-Za-z_][A-Za-z0-9_-]*")


def check_label(label: str, btype: str, pos: Pos) -> str:
    """``label`` if it is an identifier, as Terraform requires of block names; labels become
    addresses, folder names and keys in state, so nothing else (``../x``, ``a/b``) is let in.
    A sweep ``parameter`` may also start with one or two dashes."""
    if (_PARAMETER if btype == "parameter" else _IDENTIFIER).fullmatch(label):
        return label
    shown = label if len(label) <= 60 else label[:57] + "..."
    fixed = re.sub(r"[^A-Za-z0-9_-]+", "_", label).strip("_-")[:60] or "name"
    if not (fixed[0].isalpha() or fixed[0] == "_"):
        fixed = "_" + fixed
    raise ConfigError(
        Diagnostic(
            f"invalid {btype} name {shown!r}: a block label must start with a letter or '_' "
            "and contain only letters, digits, '_' and '-'",
            pos,
            f'for example {btype} "{fixed}"',
        )
    )


@functools.lru_cache(maxsize=4096)
def parse_expression_text(text: str) -> Tree:
    """Parse one HCL expression given as text (used for YAML interpolations and types).
    Raises lark's UnexpectedInput, or ValueError (:class:`NestingError` if too deep)."""
    import hcl2

    tree = hcl2.parses_to_tree(f"__e = {text}\n")
    check_nesting(tree)
    body = tree.children[0]
    attrs = [c for c in body.children if isinstance(c, Tree) and c.data == "attribute"]
    if len(attrs) != 1:
        raise ValueError("not a single expression")
    return attrs[0].children[-1]


def text_pos(text: str, offset: int, pos: Pos) -> Pos:
    """Where ``offset`` of a template's ``text`` is in its file, the text starting at ``pos``
    (every line of a multi-line text starts at pos.column: heredoc, YAML block scalar)."""
    newlines = text.count("\n", 0, offset)
    column = pos.column + offset - (text.rfind("\n", 0, offset) + 1 if newlines else 0)
    return Pos(pos.file, pos.line + newlines, column)


def template_from_text(
    text: str, pos: Pos, levels: int = 0, *, lines: bool = False, flush: bool = False
) -> Template:
    """Parse a template string, positions of errors relative to ``pos``; the template is
    ``levels`` deep in YAML collections (which count towards the nesting limit). With
    ``lines``, strip markers reach no further than their line (heredocs, template files);
    ``flush`` removes the lines' common indentation (``<<-`` heredocs)."""
    try:
        spans = scan(text, per_line=lines)
        pieces: list[Piece] = []
        for span in spans:
            if span.kind == "lit":
                pieces.append(Piece("lit", text_pos(text, span.offset, pos), span.text))
                continue
            where = text_pos(text, span.offset - 2 - span.strip_left, pos)  # at "${" or "%{"
            if span.kind == "interp":
                if not span.text.strip():
                    raise ConfigError(Diagnostic("empty interpolation '${}'", where))
                tree = _snippet(text, span.text, span.offset, pos, levels, "interpolation ${%s}")
                pieces.append(Piece("interp", where, "", tree, (), *_strips(span)))
                continue
            keyword, names, src, offset = directive_syntax(span)
            shape = "%%{" + keyword + " %s}"
            operand = _snippet(text, src, offset, pos, levels, shape) if src else None
            pieces.append(Piece(keyword, where, "", operand, names, *_strips(span)))
    except TemplateSyntaxError as exc:
        where = text_pos(text, exc.offset, pos)
        raise ConfigError(Diagnostic(f"invalid template: {exc}", where)) from None
    return Template(build(pieces, flush=flush), text)


def _strips(span: Span) -> tuple[bool, bool]:
    return span.strip_left, span.strip_right


def _snippet(text: str, src: str, offset: int, pos: Pos, levels: int, shape: str) -> Tree:
    """The parse tree of the expression ``src`` found at ``offset`` of a template's text,
    its positions where it is written. ``shape`` shows it in a diagnostic."""
    offset += len(src) - len(src.lstrip())
    src = src.strip()
    where = text_pos(text, offset, pos)
    line, column = where.line, where.column
    shown = shape % src
    try:
        # The snippet is parsed as `__e = SRC`: SRC starts at line 1, column 7.
        tree = _moved(parse_expression_text(src), line - 1, column - 7)
    except NestingError:  # the snippet alone is too deep
        raise ConfigError(Diagnostic(nesting_message(), where)) from None
    except UnexpectedInput as exc:
        d = syntax_error(exc, pos.file, line - 1, column - 7)
        end = text_pos(text, offset + len(src), pos)
        at = d.pos if d.pos and d.pos.line <= end.line else end  # not past the snippet
        message = d.message.split(";")[0]  # what it expected is about the `__e =` wrapper
        raise ConfigError(Diagnostic(f"in {shown}: {message}", at)) from None
    except ValueError:
        raise ConfigError(Diagnostic(f"invalid expression in {shown}", where)) from None
    try:
        check_nesting(tree, levels + 1)  # the interpolation itself is a level
    except NestingError as exc:  # too deep where it is written (in YAML collections)
        raise ConfigError(Diagnostic(nesting_message(), node_pos(exc.node, pos.file))) from None
    return tree


def _moved(node: Any, lines: int, columns: int) -> Any:
    """A copy of a parsed snippet with its positions moved to where it is written: down by
    ``lines``, and right by ``columns`` on its first line. Parsed snippets are cached and
    shared, so they are never changed in place."""
    if isinstance(node, Token):
        tok = Token.new_borrow_pos(node.type, node.value, node)
        if tok.line is not None:
            tok.column = tok.column + columns if tok.line == 1 and tok.column else tok.column
            tok.line += lines
        return tok
    if not isinstance(node, Tree):
        return node
    meta = Meta()
    if not node.meta.empty:
        meta.__dict__.update(node.meta.__dict__)
        if meta.line == 1:
            meta.column += columns
        meta.line += lines
    return type(node)(node.data, [_moved(c, lines, columns) for c in node.children], meta)


# --------------------------------------------------------------------------- HCL


def _name_of(node: Any) -> str:
    """The text of an identifier/keyword/literal_value node used as a name."""
    if isinstance(node, Token):
        return str(node)
    return str(node.children[0])


def _label_of(node: Tree, file: str, btype: str) -> str:
    return check_label(_label_text(node, file), btype, node_pos(node, file))


def _label_text(node: Tree, file: str) -> str:
    if node.data != "string":
        return _name_of(node)
    text = []
    for part in node.children:
        if isinstance(part, Tree) and part.data == "string_part":
            inner = part.children[0]
            if isinstance(inner, Tree):
                raise ConfigError(
                    Diagnostic("block labels cannot contain interpolations", node_pos(node, file))
                )
            text.append(str(inner))
    return "".join(text)


def _hcl_body(body: Tree, block: RawBlock, file: str) -> None:
    for child in body.children:
        if not isinstance(child, Tree):
            continue
        if child.data == "attribute":
            name_node, expr = child.children[0], child.children[-1]
            name = _name_of(name_node)
            pos = node_pos(name_node, file)
            if name in block.attrs:
                raise ConfigError(
                    Diagnostic(
                        f"attribute {name!r} is set twice in this block",
                        pos,
                        f"first set at line {block.attrs[name].pos.line}",
                    )
                )
            block.attrs[name] = RawAttr(name, Expr(expr, node_pos(expr, file, pos)), pos)
        elif child.data == "block":
            parts = [c for c in child.children if isinstance(c, Tree)]
            header = [c for c in parts if c.data not in ("body", "new_line_or_comment")]
            inner = next(c for c in parts if c.data == "body")
            nested = RawBlock(
                type=_name_of(header[0]),
                labels=[_label_of(h, file, _name_of(header[0])) for h in header[1:]],
                pos=node_pos(header[0], file),
            )
            _hcl_body(inner, nested, file)
            block.blocks.append(nested)


def parse_hcl(text: str, file: str) -> RawBlock:
    """Parse HCL text into a root :class:`RawBlock` (type ``""``) holding the top-level blocks."""
    import hcl2

    blanked, markers = blank_strip_markers(text)  # "${~ x ~}": python-hcl2 lacks them
    try:
        tree = hcl2.parses_to_tree(blanked)
        check_nesting(tree)
    except UnexpectedInput as exc:
        raise ConfigError(_in_directive(syntax_error(exc, file), text)) from None
    except NestingError as exc:
        raise ConfigError(Diagnostic(nesting_message(), node_pos(exc.node, file))) from None
    stray = restore_strip_markers(tree, text, markers) if markers else None
    if stray is not None:
        line = text.count("\n", 0, stray) + 1
        pos = Pos(file, line, stray - text.rfind("\n", 0, stray))
        raise ConfigError(Diagnostic("syntax error: unexpected character '~'", pos))
    root = RawBlock("", [], Pos(file, 1, 1))
    _hcl_body(tree.children[0], root, file)
    return root


def _in_directive(diag: Diagnostic, text: str) -> Diagnostic:
    """``diag`` said of a template directive if it is inside one (``"%{ if }"``)."""
    assert diag.pos is not None
    lines = text.split("\n")
    if diag.pos.line > len(lines):
        return diag
    before = lines[diag.pos.line - 1][: diag.pos.column - 1]
    if not re.search(r"%\{~?[^{}\"]*$", before) or before.endswith("%%{"):
        return diag
    return Diagnostic(
        f"{diag.message.split(';')[0]} in a template directive",
        diag.pos,
        "a directive is %{if CONDITION}, %{else}, %{endif}, %{for NAME in COLLECTION} or %{endfor}",
    )


# --------------------------------------------------------------------------- YAML

NestedBlocks = Callable[[list[str], dict[str, Any]], dict[str, int]]
"""Given the path of block types (e.g. ["compute"]) and the block's raw YAML mapping, return
the names of the nested blocks it may contain, each with its number of labels."""


def _yaml_pos(node: yaml.Node, file: str) -> Pos:
    return Pos(file, node.start_mark.line + 1, node.start_mark.column + 1)


@functools.cache
def _scalar_constructor() -> yaml.SafeLoader:
    import yaml

    return yaml.SafeLoader("")


_YAML = "tag:yaml.org,2002:"


class _YamlTooDeep(Exception):
    """Raised while composing YAML nested past the limit, at ``line``:``column``."""

    def __init__(self, line: int, column: int) -> None:
        super().__init__(line, column)
        self.line, self.column = line, column


@functools.cache
def _yaml_loader() -> type[yaml.SafeLoader]:
    """SafeLoader refusing nesting past the limit while it composes (its composer recurses
    once per level, so a deep file would otherwise end in a RecursionError)."""
    import yaml

    class Loader(yaml.SafeLoader):
        levels = 0

        def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
            self.levels += 1
            try:
                if self.levels > MAX_NESTING_DEPTH:
                    mark = self.peek_event().start_mark
                    raise _YamlTooDeep(mark.line + 1, mark.column + 1)
                return super().compose_node(parent, index)
            finally:
                self.levels -= 1

    return Loader


def _yaml_children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node.value, list):  # a sequence's items; a mapping's keys and values
        return [n for item in node.value for n in (item if isinstance(item, tuple) else (item,))]
    return []


def _check_aliases(doc: yaml.Node, file: str) -> None:
    """Refuse aliases that refer to a collection containing them, or that repeat more
    than :data:`MAX_COLLECTION_SIZE` values in all (nested aliases multiply: "billion
    laughs"). An alias is the node it names, so the document is a graph: its size is
    counted over the graph, nothing is expanded to tell."""
    sizes: dict[int, int] = {}  # id -> nodes in the node's expansion
    uses: dict[int, tuple[yaml.Node, int]] = {}  # id -> (node, times referred to)
    entered: set[int] = set()  # nodes whose expansion is being counted: the current path
    stack: list[tuple[yaml.Node, bool]] = [(doc, False)]
    while stack:
        node, done = stack.pop()
        kids = _yaml_children(node)
        if done:
            sizes[id(node)] = 1 + sum(sizes[id(k)] for k in kids)
            entered.discard(id(node))
            continue
        if id(node) in entered:
            raise ConfigError(
                Diagnostic(
                    "an alias inside this YAML collection refers to the collection itself",
                    _yaml_pos(node, file),
                )
            )
        if id(node) in sizes:
            continue
        entered.add(id(node))
        stack.append((node, True))
        for kid in kids:
            uses[id(kid)] = (kid, uses.get(id(kid), (kid, 0))[1] + 1)
            stack.append((kid, False))
    repeated = sizes[id(doc)] - len(sizes)
    if repeated > MAX_COLLECTION_SIZE:
        node = max(
            (n for n, times in uses.values() if times > 1),
            key=lambda n: sizes[id(n)] * (uses[id(n)][1] - 1),
        )
        raise ConfigError(
            Diagnostic(
                f"YAML aliases repeat more than {MAX_COLLECTION_SIZE} values in this file (the "
                "collection size limit)",
                _yaml_pos(node, file),
                "this anchor is repeated most",
            )
        )


class _YamlWalk:
    """Turning one file's YAML nodes (checked by :func:`_check_aliases`) into blocks and
    expressions."""

    def __init__(self, file: str, nested: NestedBlocks) -> None:
        self.file = file
        self.nested = nested

    def pos(self, node: yaml.Node) -> Pos:
        return _yaml_pos(node, self.file)

    def enter(self, node: yaml.Node, level: int) -> Pos:
        pos = self.pos(node)
        if level > MAX_NESTING_DEPTH:  # aliases can nest deeper than the text does
            raise ConfigError(Diagnostic(nesting_message(), pos))
        return pos

    def expr(self, node: yaml.Node, level: int) -> Expr:
        import yaml

        pos = self.enter(node, level)
        if isinstance(node, yaml.ScalarNode):
            return Expr(self.scalar(node, pos, level), pos)
        if isinstance(node, yaml.SequenceNode):
            return Expr([self.expr(item, level + 1) for item in node.value], pos)
        mapping: dict[str, Expr] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError(Diagnostic("mapping keys must be strings", self.pos(key_node)))
            mapping[str(key_node.value)] = self.expr(value_node, level + 1)
        return Expr(mapping, pos)

    def scalar(self, node: yaml.ScalarNode, pos: Pos, level: int) -> Template | Literal:
        import yaml

        # A timestamp stays the text it was written as, as yamldecode() leaves it.
        if node.tag in (_YAML + "str", _YAML + "timestamp"):
            start = Pos(self.file, pos.line, pos.column + (1 if node.style in ("'", '"') else 0))
            if node.style in ("|", ">"):  # a block scalar's text starts on the next line
                buf = node.start_mark.buffer or ""
                nl = buf.find("\n", node.start_mark.index) + 1
                first = buf[nl : buf.find("\n", nl) if buf.find("\n", nl) >= 0 else None]
                start = Pos(self.file, pos.line + 1, len(first) - len(first.lstrip(" ")) + 1)
            return template_from_text(node.value, start, level)
        kind = node.tag.removeprefix(_YAML)
        if kind not in ("null", "bool", "int", "float"):
            shown = "!!" + kind if node.tag.startswith(_YAML) else node.tag
            raise ConfigError(
                Diagnostic(
                    f"unsupported YAML tag {shown!r}",
                    pos,
                    "quote the value to make it a string",
                )
            )
        if kind in ("int", "float") and len(node.value) > 2 * MAX_NUMBER_DIGITS:
            raise ConfigError(
                Diagnostic(
                    f"a number may have at most {MAX_NUMBER_DIGITS} digits (the number size limit)",
                    pos,
                )
            )
        constructor = _scalar_constructor()
        try:
            # the constructor of the tag itself: construct_object would keep every node
            value = constructor.yaml_constructors[node.tag](constructor, node)
        except (yaml.YAMLError, ValueError, ArithmeticError):
            raise ConfigError(Diagnostic(f"invalid YAML {kind} {node.value[:40]!r}", pos)) from None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            problem = number_problem(value)
            if problem:
                raise ConfigError(Diagnostic(problem, pos))
        return Literal(value)

    def block(
        self, btype: str, labels: list[str], node: yaml.Node, path: list[str], level: int
    ) -> RawBlock:
        import yaml

        block = RawBlock(btype, labels, self.enter(node, level))
        if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
            return block  # an empty block written as `name:` with nothing under it
        items = _yaml_mapping(node, self.file, f"block {btype!r}")
        plain = {str(k.value): v for k, v in items}
        allowed = self.nested(path, plain)
        for key, value in items:
            name = str(key.value)
            if name in allowed and isinstance(value, (yaml.MappingNode, yaml.SequenceNode)):
                nlabels = allowed[name]
                bodies = value.value if isinstance(value, yaml.SequenceNode) else [value]
                for body in bodies:
                    if nlabels:
                        for lkey, lval in _yaml_mapping(body, self.file, f"block {name!r}"):
                            label = check_label(str(lkey.value), name, self.pos(lkey))
                            block.blocks.append(
                                self.block(name, [label], lval, [*path, name], level + 2)
                            )
                    else:
                        block.blocks.append(self.block(name, [], body, [*path, name], level + 1))
            else:
                block.attrs[name] = RawAttr(name, self.expr(value, level + 1), self.pos(key))
        return block


def _yaml_mapping(node: yaml.Node, file: str, what: str) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(Diagnostic(f"{what} must be a mapping", _yaml_pos(node, file)))
    seen: dict[str, int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode):
            raise ConfigError(Diagnostic("mapping keys must be strings", _yaml_pos(key, file)))
        if key.value in seen:
            raise ConfigError(
                Diagnostic(
                    f"key {key.value!r} appears twice",
                    _yaml_pos(key, file),
                    f"first at line {seen[key.value]}",
                )
            )
        seen[key.value] = key.start_mark.line + 1
    return list(node.value)


def _yaml_error(exc: Exception, text: str, file: str) -> Diagnostic:
    """A diagnostic for an error of PyYAML's reader, scanner, parser or composer."""
    import yaml

    if isinstance(exc, _YamlTooDeep):
        return Diagnostic(nesting_message(), Pos(file, exc.line, exc.column))
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        pos = Pos(file, mark.line + 1, mark.column + 1) if mark else Pos(file, 1, 1)
        return Diagnostic(f"YAML syntax error: {exc.problem or exc.context or 'invalid'}", pos)
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow
        at = max(exc.position, 0)
        line = text.count("\n", 0, at) + 1
        pos = Pos(file, line, at - text.rfind("\n", 0, at))
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        return Diagnostic(
            f"YAML syntax error: character {char!r} (#x{ord(char):04x}) is not allowed: "
            f"{exc.reason}",
            pos,
            'write it as an escape in a double-quoted string ("\\x01")',
        )
    return Diagnostic(
        f"YAML error: {str(exc).splitlines()[0] if str(exc) else 'invalid'}", Pos(file, 1, 1)
    )


def parse_yaml(text: str, file: str, nested: NestedBlocks, labeled: dict[str, int]) -> RawBlock:
    """Parse a YAML configuration into a root :class:`RawBlock`.

    ``labeled`` maps top-level block types to their number of labels (0 or 1); with one
    label, the mapping under the type is keyed by name (``compute: {gpu: {...}}``).
    """
    import yaml

    try:
        doc = yaml.compose(text, Loader=_yaml_loader())
    except (yaml.YAMLError, _YamlTooDeep) as exc:
        raise ConfigError(_yaml_error(exc, text, file)) from None
    root = RawBlock("", [], Pos(file, 1, 1))
    if doc is None:
        return root
    _check_aliases(doc, file)
    walk = _YamlWalk(file, nested)
    for key, value in _yaml_mapping(doc, file, "a configuration file"):
        btype = str(key.value)
        kpos = _yaml_pos(key, file)
        if btype not in labeled:
            # Unknown types are kept as label-less blocks so the schema check can suggest a fix.
            root.blocks.append(RawBlock(btype, [], kpos))
            continue
        if labeled[btype]:
            for name, body in _yaml_mapping(value, file, f"{btype!r}"):
                label = check_label(str(name.value), btype, _yaml_pos(name, file))
                blk = walk.block(btype, [label], body, [btype], 2)
                blk.pos = _yaml_pos(name, file)
                root.blocks.append(blk)
        else:
            blk = walk.block(btype, [], value, [btype], 1)
            blk.pos = kpos
            root.blocks.append(blk)
    return root


def config_files(directory: Path) -> list[Path]:
    """The configuration files of a directory, in a stable order."""
    return sorted(
        p for p in directory.iterdir() if p.is_file() and p.name.endswith(CONFIG_SUFFIXES)
    )
