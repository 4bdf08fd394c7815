"""Values written the way ``terraform console`` writes them.

:func:`render_value` is shared by ``trainform console`` and the tests that compare trainform's
functions with Terraform's documented results, so both speak Terraform's console syntax:
two-space indentation, a trailing comma after each list element, ``"key" = value`` for
maps and objects, ``tolist([...])``/``toset([...])``/``tomap({...})`` for converted
collections (a literal ``[...]`` is a tuple and ``{...}`` an object), Go-quoted strings,
heredocs for multi-line strings, ``(known after apply)`` and ``(sensitive value)``.
"""

from __future__ import annotations

from typing import Any

from trainform.config.types import is_number, number_text
from trainform.config.values import UNKNOWN, TfList, TfMap, TfSet, TypeName

__all__ = ["SENSITIVE_TEXT", "UNKNOWN_TEXT", "go_quote", "render_value"]

UNKNOWN_TEXT = "(known after apply)"
SENSITIVE_TEXT = "(sensitive value)"

_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ESCAPES.update({"\v": "\\v", "\\": "\\\\", '"': '\\"'})


def go_quote(text: str) -> str:
    """text as Go's strconv.Quote writes it (printable characters kept, others escaped)."""
    out = ['"']
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char.isprintable() or char == " ":
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append('"')
    return "".join(out)


def _heredoc(text: str, indent: int) -> str:
    lines = text.split("\n")
    delimiter = "EOT"
    while any(line.strip() == delimiter for line in lines):
        delimiter += "_"
    pad = " " * indent
    body = "".join(f"\n{pad}{line}" for line in lines)
    return f"{'<<-' if indent else '<<'}{delimiter}{body}\n{pad}{delimiter}"


def render_value(value: Any, sensitive: bool = False, indent: int = 0) -> str:
    """``value`` as ``terraform console`` prints it; ``(sensitive value)`` if sensitive.
    ``indent`` is the column the value starts at (for values nested in others)."""
    if sensitive:
        return SENSITIVE_TEXT
    if value is UNKNOWN:
        return UNKNOWN_TEXT
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if is_number(value):
        return number_text(value)
    if isinstance(value, TypeName):
        return str(value)
    if isinstance(value, str):
        return _heredoc(value, indent) if "\n" in value else go_quote(value)
    pad = " " * (indent + 2)
    if isinstance(value, list):
        prefix, suffix = ("", "")
        if isinstance(value, TfSet):
            prefix, suffix = "toset(", ")"
        elif isinstance(value, TfList):
            prefix, suffix = "tolist(", ")"
        if not value:
            return f"{prefix}[]{suffix}"
        body = "".join(f"{pad}{render_value(v, indent=indent + 2)},\n" for v in value)
        return f"{prefix}[\n{body}{' ' * indent}]{suffix}"
    if isinstance(value, dict):
        prefix, suffix = ("tomap(", ")") if isinstance(value, TfMap) else ("", "")
        if not value:
            return f"{prefix}{{}}{suffix}"
        body = "".join(
            f"{pad}{go_quote(str(k))} = {render_value(value[k], indent=indent + 2)}\n"
            for k in sorted(value)
        )
        return f"{prefix}{{\n{body}{' ' * indent}}}{suffix}"
    return repr(value)
