"""The type and console text of a call of every function, compared with Terraform's.

tests/terraform_docs/function_types.json holds, for each call of a table covering every
function trainform offers (with the argument types a result type depends on: a set or a
list or a tuple, a map or an object), what Terraform 1.11's console prints for
``type(<call>)`` and for the call itself. It is written by
tests/terraform_docs/function_types.py, which runs ``terraform console``.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trainform.config.display import render_value
from trainform.config.expr import Scope, evaluate
from trainform.config.functions import function_names
from trainform.config.sensitivity import is_sensitive_expression
from trainform.config.source import Expr, parse_expression_text
from trainform.config.values import FunctionContext, TfList, TfMap, TfSet
from trainform.errors import ConfigError, Pos

TABLE = Path(__file__).resolve().parents[1] / "terraform_docs" / "function_types.json"

KNOWN_DIFFERENT: dict[str, str] = {
    "tostring(null)": "Terraform's null has a type (the console prints tostring(null) and "
    "type() string); trainform's null is one value, of type dynamic",
    "plantimestamp()": "Terraform's console has no plantimestamp() (it exists only while "
    "planning); trainform offers it everywhere",
    'sensitive(["a"])': "type() of a sensitive value: Terraform shows the type, trainform "
    "hides it as (sensitive value) (sensitivity.py judges type() like any other call)",
    'nonsensitive(sensitive(split(",", "a")))': "as for sensitive([...]): trainform's "
    "sensitivity.py takes nonsensitive() inside type() to be sensitive still",
    'base64gzip("a")': "the gzip streams differ (Go's compress/flate and its header against "
    "zlib's); both decompress to the same text, and matching Go's encoder byte for byte "
    "would mean reimplementing it",
}
"""Calls whose type or console text trainform knowingly does not give, with the reason."""


def _table() -> dict[str, Any]:
    return dict(json.loads(TABLE.read_text()))


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    """A folder holding the files the table's calls read, as the console's folder did."""
    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        for path, text in _table()["files"].items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(text)
        yield root


TEMPLATE = 'Hi ${name}%{ if name == "w" }!%{ endif }'
"""The value of var.template, which the table's folder declares for templatestring()."""


def _expr(text: str) -> Expr:
    return Expr(parse_expression_text(text), Pos("<table>", 1, 1))


def _console(expression: str, folder: Path) -> dict[str, str]:
    """What trainform's console prints for expression: {"text": ...} or {"error": ...}.
    Evaluated as at apply time, since Terraform's console decides uuid() and timestamp()
    at once (trainform's console shows them as known after apply); only their types are
    compared."""
    ctx = FunctionContext(folder, apply_time=True)
    try:
        hidden = is_sensitive_expression(_expr(expression), lambda ref: None)
        value = evaluate(_expr(expression), Scope({"var": {"template": TEMPLATE}}, ctx))
    except ConfigError as exc:
        return {"error": "; ".join(d.message for d in exc.diagnostics)}
    return {"text": render_value(value, sensitive=hidden)}


def _agrees(expected: dict[str, str], got: dict[str, str]) -> bool:
    """The same text, or both an error (the messages are not compared)."""
    if "error" in expected:
        return "error" in got
    return got == expected


def _mismatches(folder: Path) -> dict[str, list[str]]:
    """expression -> a description of each way trainform differs from Terraform."""
    out: dict[str, list[str]] = {}
    for row in _table()["calls"]:
        expression = row["expression"]
        checks = [("type", f"type({expression})", row["type"])]
        if not row.get("type_only"):
            checks.append(("console", expression, row["value"]))
        for what, text, expected in checks:
            got = _console(text, folder)
            if not _agrees(expected, got):
                out.setdefault(expression, []).append(
                    f"{what}:\n      terraform: {expected}\n      trainform: {got}"
                )
    return out


def test_every_function_is_in_the_table() -> None:
    assert _table()["terraform_version"].startswith("1.11."), "made with another Terraform"
    called = {
        name
        for row in _table()["calls"]
        for name in re.findall(r"([a-z0-9]+)\(", row["expression"])
    }
    missing = sorted(set(function_names()) - called)
    assert not missing, f"functions no call of the table covers: {missing}"


def test_types_and_console_text_are_terraforms(folder: Path) -> None:
    found = _mismatches(folder)
    unexplained = {e: m for e, m in found.items() if e not in KNOWN_DIFFERENT}
    listing = "\n".join(f"  {e}\n    " + "\n    ".join(m) for e, m in unexplained.items())
    assert not unexplained, f"{len(unexplained)} calls differ from Terraform 1.11:\n{listing}"


def test_known_differences_still_differ(folder: Path) -> None:
    expressions = {row["expression"] for row in _table()["calls"]}
    found = _mismatches(folder)
    for expression in KNOWN_DIFFERENT:
        assert expression in expressions, f"no such call in the table: {expression!r}"
        assert expression in found, f"now matches; remove it: {expression!r}"


def test_a_list_set_or_map_serialises_as_a_tuple_or_object_does() -> None:
    """State and fingerprints are JSON: a value's Terraform type must not change them, so
    runs fingerprinted before results were typed keep their fingerprints."""
    from trainform.runs.spec import fingerprint

    plain = {"a": ["x", 1], "b": {"k": ["y"]}}
    typed = TfMap({"a": TfList(["x", 1]), "b": TfMap({"k": TfSet(["y"])})})
    assert json.dumps(typed, sort_keys=True) == json.dumps(plain, sort_keys=True)
    with tempfile.TemporaryDirectory() as name:
        root = Path(name)

        def run(args: Any, env: Any) -> dict[str, Any]:
            return {
                "script": "train.py",
                "arguments": args,
                "env": env,
                "compute": {"address": "compute.local", "type": "local"},
            }

        before = fingerprint(run(["--lr", 0.1, "x"], {"A": "1"}), "snap", root)
        after = fingerprint(run(TfList(["--lr", 0.1, "x"]), TfMap({"A": "1"})), "snap", root)
    assert before == after
