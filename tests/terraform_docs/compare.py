"""Evaluate Terraform's documented function examples (examples.json) with trainform's
evaluator and compare each result with the documented one.

Shared by ``tests/unit/test_terraform_doc_examples.py`` (which asserts the pass rate) and
``bench/functions_doc_examples.py`` (which prints it for the README).

A result matches when trainform's value, written by :func:`render_value` as ``terraform
console`` writes it, is the documented text; or, since the pages were written for different
Terraform versions (older ones print ``[...]`` where newer print ``tolist([...])``, or a
string without its quotes), when the documented text read back as an expression is the same
value with the same primitive types; or, for a documented error, when evaluation fails.
Names a page defines in its own examples (``> local.foo`` followed by its value) are in
scope for the page's later examples.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainform.config.display import render_value
from trainform.config.expr import Ref, Scope, evaluate
from trainform.config.functions import FUNCTIONS
from trainform.config.sensitivity import is_sensitive_expression
from trainform.config.source import Expr, parse_expression_text
from trainform.config.values import FunctionContext, TfSet
from trainform.errors import ConfigError, Pos

EXAMPLES = Path(__file__).with_name("examples.json")

KNOWN_DIFFERENT: dict[str, str] = {
    "type(var.list)": "the page shows an older Terraform's 'tuple'; Terraform 1.11 prints "
    "'tuple([])' for an empty tuple, as trainform does",
    '[for i, z in {"i-123"="us-west","i-abc"="us-east","i-def"="us-east"}: i if z == '
    '"us-east"]': "the page lists i-def before i-abc, but a for expression iterates a map in "
    'key order: Terraform 1.11 gives ["i-abc", "i-def"], as trainform does',
    'templatefile(\n               "${path.module}/config.tftpl",\n               {\n'
    '                 config = {\n                   "x"   = "y"\n'
    '                   "foo" = "bar"\n                   "key" = "value"\n'
    "                 }\n               }\n              )": "the page's template has no "
    "strip marker after %{ for ... }, so each line starts with a blank one; Terraform 1.11 "
    "gives those blank lines too, as trainform does, and the page leaves them out",
}
"""Examples whose documented result trainform knowingly does not give, with the reason."""

NOT_COMPARABLE: dict[str, str] = {
    "abspath(path.root)": "the result is the machine's working folder",
    'pathexpand("~/.ssh/id_rsa")': "the result is the home folder of the page's author",
    "timestamp()": "the result is the time of day (and unknown until apply)",
    "plantimestamp()": "the result is the time of day",
    "uuid()": "the result is random (and unknown until apply)",
    '[for x in aws_instance.example: x.id if x.availability_zone == "us-east-1a"]': (
        "it refers to an AWS resource"
    ),
}
"""Examples that cannot be compared at all (their result is random, the time of day or
the machine's, or they need a cloud provider), with the reason."""

PAGE_FILES: dict[str, str] = {
    "hello.txt": "Hello World",
    "files/hello.txt": "hello",
    "files/world.txt": "world",
    "files/subdirectory/anotherfile.txt": "another",
    "backends.tftpl": "%{ for addr in ip_addrs ~}\nbackend ${addr}:${port}\n%{ endfor ~}\n",
    "config.tftpl": (
        "%{ for config_key, config_value in config }\nset ${config_key} = ${config_value}\n"
        "%{ endfor ~}\n"
    ),
}
"""Files the pages describe (file.mdx, filebase64.mdx, fileset.mdx, templatefile.mdx), made in the
folder that ``path.module`` names."""

PAGE_CONTEXT: dict[str, list[tuple[str, str, bool]]] = {
    # page -> (reference, expression giving its value, whether it is sensitive), as the
    # page's own configuration blocks or prose define them.
    "format.mdx": [("var.name", '"Valentina"', False)],
    "type.mdx": [
        ("var.list", "[]", False),
        (
            "local.default_list",
            '[{foo = "bar", map = { bleep = "bloop" }}, {beep = "boop"}]',
            False,
        ),
    ],
    "nonsensitive.mdx": [
        (
            "var.mixed_content_json",
            '"{\\n  \\"username\\": \\"zqb\\",\\n  \\"password\\": \\"p4ssw0rd\\"\\n}"',
            True,
        ),
        ("local.mixed_content", "jsondecode(var.mixed_content_json)", True),
    ],
}


@dataclass(frozen=True)
class Outcome:
    function: str
    expression: str
    expected: str
    got: str
    matched: bool


def load() -> list[dict[str, str]]:
    return list(json.loads(EXAMPLES.read_text())["examples"])


def _same(a: Any, b: Any) -> bool:
    """Equal values with equal primitive types (1 is not "1", 1 is 1.0)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return bool(a == b)
    if isinstance(a, TfSet) and isinstance(b, list):  # a page may list a set in any order
        return len(a) == len(b) and all(any(_same(x, y) for y in b) for x in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def _expr(text: str) -> Expr:
    return Expr(parse_expression_text(text), Pos("<doc>", 1, 1))


def _evaluate(text: str, values: dict[str, Any], ctx: FunctionContext) -> Any:
    return evaluate(_expr(text), Scope(values, ctx))


def _is_sensitive(text: str, secret: set[str]) -> bool:
    """Whether the result of the expression is sensitive, as trainform judges it (statically,
    from sensitive() calls and references to sensitive names). Raises ConfigError for a
    nonsensitive() call on a value that is not sensitive."""

    def ref_paths(ref: Ref) -> set[str] | None:
        return {""} if ref.key in secret else None

    return is_sensitive_expression(_expr(text), ref_paths)


def _read_back(text: str, values: dict[str, Any], ctx: FunctionContext) -> Any:
    """The documented result text as a value, or a marker if it is not an expression."""
    try:
        return _evaluate(text, values, ctx)
    except Exception:
        return _NOT_AN_EXPRESSION


_NOT_AN_EXPRESSION = object()


def matches(value: Any, expected: str, values: dict[str, Any], ctx: FunctionContext) -> bool:
    if render_value(value) == expected:
        return True
    if isinstance(value, str) and expected in (value, value.rstrip("\n")):
        return True
    back = _read_back(expected, values, ctx)
    return back is not _NOT_AN_EXPRESSION and _same(value, back)


def run(examples: list[dict[str, str]] | None = None) -> list[Outcome]:
    """Every comparable example of a function trainform offers, evaluated and compared."""
    out: list[Outcome] = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for name, text in PAGE_FILES.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        ctx = FunctionContext(root)
        page_values: dict[str, dict[str, Any]] = {}
        page_secrets: dict[str, set[str]] = {}
        for example in load() if examples is None else examples:
            function, expression, expected = (
                example["function"],
                example["expression"],
                example["expected"],
            )
            page = example["page"]
            if page not in page_values:
                values = page_values[page] = {
                    "local": {},
                    "var": {},
                    "path": {"module": folder, "root": folder, "cwd": folder},
                }
                secret = page_secrets[page] = set()
                for ref, text, sensitive in PAGE_CONTEXT.get(page, []):
                    root_name, _, name = ref.partition(".")
                    values[root_name][name] = _evaluate(text, values, ctx)
                    if sensitive:
                        secret.add(ref)
            values, secret = page_values[page], page_secrets[page]
            root_name, _, name = expression.partition(".")
            if root_name in ("local", "var") and name.isidentifier():
                if name not in values[root_name]:
                    values[root_name][name] = _read_back(expected, values, ctx)
                continue
            if function not in FUNCTIONS or expression in NOT_COMPARABLE:
                continue
            try:
                parse_expression_text(expression)
            except Exception as exc:
                got = f"(not parsed: {type(exc).__name__})"
                out.append(Outcome(function, expression, expected, got, False))
                continue
            try:
                hidden = _is_sensitive(expression, secret)
                value = _evaluate(expression, values, ctx)
            except ConfigError as exc:
                got = "Error: " + "; ".join(d.message for d in exc.diagnostics)
                ok = expected.lstrip().startswith("Error")
                out.append(Outcome(function, expression, expected, got, ok))
                continue
            got = render_value(value, sensitive=hidden)
            ok = (got == expected) if hidden else matches(value, expected, values, ctx)
            out.append(Outcome(function, expression, expected, got, ok))
    return out
