"""YAML text as Terraform's ``yamlencode`` writes it (go-cty-yaml over go-yaml's emitter).

Terraform's output differs from PyYAML's in ways a diff of generated files shows: every
string and key is double-quoted (``"a": "yes"``), multi-line strings are literal blocks
(``|-``), a list under a key is not indented, and long quoted strings fold at column 80.
"""

from __future__ import annotations

from typing import Any

from trainform.config.types import is_number, number_text
from trainform.config.values import FunctionError

_WIDTH = 80

_ESCAPES = {
    "\0": "\\0",
    "\a": "\\a",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\v": "\\v",
    "\f": "\\f",
    "\r": "\\r",
    "\x1b": "\\e",
    '"': '\\"',
    "\\": "\\\\",
    "\x85": "\\N",
    "\xa0": "\\_",
    "\u2028": "\\L",
    "\u2029": "\\P",
}


def _printable(char: str) -> bool:
    code = ord(char)
    return (
        code == 0x0A
        or 0x20 <= code <= 0x7E
        or code == 0x85
        or 0xA0 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    ) and code != 0xFEFF


def _block_allowed(text: str) -> bool:
    """Whether go-yaml may write text as a literal block (no tab or other special
    character, no space right before a line break, no trailing space)."""
    if any(not _printable(c) for c in text):
        return False
    return not (" \n" in text or text.endswith(" "))


def _quoted(text: str, column: int, indent: int) -> str:
    """text double-quoted, folded at spaces past column 80 as go-yaml does."""
    out = ['"']
    column += 1
    for i, char in enumerate(text):
        if char == " ":
            if (
                column > _WIDTH
                and 0 < i < len(text) - 1
                and text[i - 1] != " "
                and text[i + 1] != " "
            ):
                out.append("\n" + " " * indent)
                column = indent
                continue
            out.append(" ")
        elif char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif not _printable(char):
            code = ord(char)
            out.append(
                f"\\x{code:02X}"
                if code <= 0xFF
                else f"\\u{code:04X}"
                if code <= 0xFFFF
                else f"\\U{code:08X}"
            )
        else:
            out.append(char)
        column += len(out[-1])
    out.append('"')
    return "".join(out)


def _scalar(value: Any, column: int, indent: int) -> list[str]:
    """A scalar written at ``column`` of its first line; continuation lines (folded strings,
    literal blocks) at ``indent``. The first element goes on the current line."""
    if value is None:
        return ["null"]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if is_number(value):
        return [number_text(value)]
    if isinstance(value, str):
        if "\n" in value and _block_allowed(value):
            body = value
            if value.endswith("\n\n") or value == "\n":
                chomp = "+"
                body = value[:-1]
            elif value.endswith("\n"):
                chomp = ""
                body = value[:-1]
            else:
                chomp = "-"
            indicator = "2" if value[:1] == " " else ""
            lines = [f"|{indicator}{chomp}"]
            lines.extend((" " * indent + line) if line else "" for line in body.split("\n"))
            return lines
        return _quoted(value, column, indent).split("\n")
    raise FunctionError(f"cannot encode a {type(value).__name__} as YAML")


def _block(value: Any, indent: int) -> list[str]:
    """A value as complete lines starting at column ``indent``."""
    pad = " " * indent
    if isinstance(value, dict) and value:
        lines: list[str] = []
        for key in sorted(value):
            head = pad + _quoted(str(key), indent, indent + 2) + ":"
            item = value[key]
            if isinstance(item, dict) and item:
                lines.append(head)
                lines.extend(_block(item, indent + 2))
            elif isinstance(item, list) and item:
                lines.append(head)
                lines.extend(_block(item, indent))
            else:
                first, *rest = _inline(item, len(head) + 1, indent + 2)
                lines.append(f"{head} {first}")
                lines.extend(rest)
        return lines
    if isinstance(value, list) and value:
        lines = []
        for item in value:
            if (isinstance(item, (dict, list))) and item:
                inner = _block(item, indent + 2)
                lines.append(pad + "- " + inner[0][indent + 2 :])
                lines.extend(inner[1:])
            else:
                first, *rest = _inline(item, indent + 2, indent + 2)
                lines.append(f"{pad}- {first}")
                lines.extend(rest)
        return lines
    first, *rest = _inline(value, indent, indent + 2)
    return [pad + first, *rest]


def _inline(value: Any, column: int, indent: int) -> list[str]:
    if isinstance(value, dict):
        return ["{}"]
    if isinstance(value, list):
        return ["[]"]
    return _scalar(value, column, indent)


def yaml_encode(value: Any) -> str:
    """value as Terraform's yamlencode writes it (a trailing newline included)."""
    return "\n".join(_block(value, 0)) + "\n"
