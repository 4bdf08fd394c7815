"""Reading configuration files into raw blocks: HCL through python-hcl2's parse tree, YAML
through PyYAML's node graph. Both produce the same :class:`RawBlock` structure, with every
attribute's expression kept unevaluated and every element carrying its ``file:line:column``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lark import Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.tree import Meta

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
    """A string template: literal text parts and parsed ``${...}`` expression trees."""

    parts: tuple[str | Tree, ...]
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


@functools.lru_cache(maxsize=4096)
def parse_expression_text(text: str) -> Tree:
    """Parse one HCL expression given as text (used for YAML interpolations and types)."""
    import hcl2

    tree = hcl2.parses_to_tree(f"__e = {text}\n")
    body = tree.children[0]
    attrs = [c for c in body.children if isinstance(c, Tree) and c.data == "attribute"]
    if len(attrs) != 1:
        raise ValueError("not a single expression")
    return attrs[0].children[-1]


def split_template(text: str) -> list[tuple[str, str, int]]:
    """Split template text into ('lit', text, offset) and ('expr', source, offset) parts.

    ``$${`` escapes an interpolation; braces and quoted strings inside ``${...}`` nest.
    Raises ValueError naming the offset of an unterminated interpolation.
    """
    parts: list[tuple[str, str, int]] = []
    buf: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        if text.startswith("$${", i):
            buf.append("${")
            i += 3
            continue
        if text.startswith("%%{", i):
            buf.append("%{")
            i += 3
            continue
        if text.startswith("%{", i):
            raise ValueError(f"template directives (%{{...}}) are not supported at offset {i}")
        if text.startswith("${", i):
            if buf:
                parts.append(("lit", "".join(buf), i))
                buf = []
            start = i + 2
            depth = 1
            j = start
            in_str = False
            while j < n and depth:
                ch = text[j]
                if in_str:
                    if ch == "\\":
                        j += 1
                    elif ch == '"':
                        in_str = False
                elif ch == '"':
                    in_str = True
                elif ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                j += 1
            if depth:
                raise ValueError(f"unterminated '${{' at offset {i}")
            parts.append(("expr", text[start : j - 1].strip(), start))
            i = j
            continue
        buf.append(text[i])
        i += 1
    if buf or not parts:
        parts.append(("lit", "".join(buf), n))
    return parts


def template_from_text(text: str, pos: Pos) -> Template:
    """Parse a template string, positions of errors relative to ``pos``."""
    parts: list[str | Tree] = []
    try:
        pieces = split_template(text)
    except ValueError as exc:
        raise ConfigError(Diagnostic(f"invalid template: {exc}", pos)) from None
    for kind, src, offset in pieces:
        if kind == "lit":
            parts.append(src)
            continue
        if not src:
            raise ConfigError(Diagnostic("empty interpolation '${}'", pos))
        offset += len(text[offset:]) - len(text[offset:].lstrip())
        newlines = text.count("\n", 0, offset)
        line = pos.line + newlines
        # every line of a multi-line text starts at pos.column (heredoc, YAML block scalar)
        column = pos.column + offset - (text.rfind("\n", 0, offset) + 1 if newlines else 0)
        try:
            # The snippet is parsed as `__e = SRC`: SRC starts at line 1, column 7.
            parts.append(_moved(parse_expression_text(src), line - 1, column - 7))
        except UnexpectedInput as exc:
            d = syntax_error(exc, pos.file, line - 1, column - 7)
            raise ConfigError(
                Diagnostic(f"in interpolation ${{{src}}}: {d.message}", d.pos)
            ) from None
        except ValueError:
            raise ConfigError(Diagnostic(f"invalid interpolation ${{{src}}}", pos)) from None
    return Template(tuple(parts), text)


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


def _label_of(node: Tree, file: str) -> str:
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
                labels=[_label_of(h, file) for h in header[1:]],
                pos=node_pos(header[0], file),
            )
            _hcl_body(inner, nested, file)
            block.blocks.append(nested)


def parse_hcl(text: str, file: str) -> RawBlock:
    """Parse HCL text into a root :class:`RawBlock` (type ``""``) holding the top-level blocks."""
    import hcl2

    try:
        tree = hcl2.parses_to_tree(text)
    except UnexpectedInput as exc:
        raise ConfigError(syntax_error(exc, file)) from None
    root = RawBlock("", [], Pos(file, 1, 1))
    _hcl_body(tree.children[0], root, file)
    return root


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


def _yaml_expr(node: yaml.Node, file: str) -> Expr:
    import yaml

    pos = _yaml_pos(node, file)
    if isinstance(node, yaml.ScalarNode):
        if node.tag == "tag:yaml.org,2002:str":
            start = Pos(file, pos.line, pos.column + (1 if node.style in ("'", '"') else 0))
            if node.style in ("|", ">"):  # a block scalar's text starts on the next line
                buf = node.start_mark.buffer or ""
                nl = buf.find("\n", node.start_mark.index) + 1
                first = buf[nl:].split("\n", 1)[0]
                start = Pos(file, pos.line + 1, len(first) - len(first.lstrip(" ")) + 1)
            return Expr(template_from_text(node.value, start), pos)
        return Expr(Literal(_scalar_constructor().construct_object(node)), pos)
    if isinstance(node, yaml.SequenceNode):
        return Expr([_yaml_expr(item, file) for item in node.value], pos)
    mapping: dict[str, Expr] = {}
    for key_node, value_node in node.value:
        mapping[str(key_node.value)] = _yaml_expr(value_node, file)
    return Expr(mapping, pos)


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


def _yaml_block(
    btype: str, labels: list[str], node: yaml.Node, file: str, path: list[str], nested: NestedBlocks
) -> RawBlock:
    import yaml

    block = RawBlock(btype, labels, _yaml_pos(node, file))
    if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
        return block  # an empty block written as `name:` with nothing under it
    items = _yaml_mapping(node, file, f"block {btype!r}")
    plain = {str(k.value): v for k, v in items}
    allowed = nested(path, plain)
    for key, value in items:
        name = str(key.value)
        if name in allowed and isinstance(value, (yaml.MappingNode, yaml.SequenceNode)):
            nlabels = allowed[name]
            bodies = value.value if isinstance(value, yaml.SequenceNode) else [value]
            for body in bodies:
                if nlabels:
                    for lkey, lval in _yaml_mapping(body, file, f"block {name!r}"):
                        block.blocks.append(
                            _yaml_block(name, [str(lkey.value)], lval, file, [*path, name], nested)
                        )
                else:
                    block.blocks.append(_yaml_block(name, [], body, file, [*path, name], nested))
        else:
            block.attrs[name] = RawAttr(name, _yaml_expr(value, file), _yaml_pos(key, file))
    return block


def parse_yaml(text: str, file: str, nested: NestedBlocks, labeled: dict[str, int]) -> RawBlock:
    """Parse a YAML configuration into a root :class:`RawBlock`.

    ``labeled`` maps top-level block types to their number of labels (0 or 1); with one
    label, the mapping under the type is keyed by name (``compute: {gpu: {...}}``).
    """
    import yaml

    try:
        doc = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Pos(file, mark.line + 1, mark.column + 1) if mark else Pos(file, 1, 1)
        raise ConfigError(Diagnostic(f"YAML syntax error: {exc.problem or exc}", pos)) from None
    root = RawBlock("", [], Pos(file, 1, 1))
    if doc is None:
        return root
    for key, value in _yaml_mapping(doc, file, "a configuration file"):
        btype = str(key.value)
        kpos = _yaml_pos(key, file)
        if btype not in labeled:
            # Unknown types are kept as label-less blocks so the schema check can suggest a fix.
            root.blocks.append(RawBlock(btype, [], kpos))
            continue
        if labeled[btype]:
            for name, body in _yaml_mapping(value, file, f"{btype!r}"):
                blk = _yaml_block(btype, [str(name.value)], body, file, [btype], nested)
                blk.pos = _yaml_pos(name, file)
                root.blocks.append(blk)
        else:
            blk = _yaml_block(btype, [], value, file, [btype], nested)
            blk.pos = kpos
            root.blocks.append(blk)
    return root


def config_files(directory: Path) -> list[Path]:
    """The configuration files of a directory, in a stable order."""
    return sorted(
        p for p in directory.iterdir() if p.is_file() and p.name.endswith(CONFIG_SUFFIXES)
    )
