"""Terraform's documented function examples, evaluated by trainform.

The table (tests/terraform_docs/examples.json) is extracted from Terraform's function pages
by tests/terraform_docs/extract.py; tests/terraform_docs/compare.py evaluates each example
of a function trainform offers and compares the result with the documented one.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "terraform_docs"))

import compare

TARGET = 0.98


def test_documented_examples_give_terraforms_results() -> None:
    outcomes = compare.run()
    matched = [o for o in outcomes if o.matched]
    failures = [o for o in outcomes if not o.matched]
    unexplained = [o for o in failures if o.expression not in compare.KNOWN_DIFFERENT]
    listing = "\n".join(
        f"  {o.function}: {o.expression}\n    documented: {o.expected!r}\n    trainform:  {o.got!r}"
        for o in unexplained
    )
    assert len(outcomes) >= 250, "the table of examples lost most of its rows"
    assert len(matched) / len(outcomes) >= TARGET, (
        f"{len(matched)} of {len(outcomes)} examples match; below {TARGET:.0%}:\n{listing}"
    )
    assert not unexplained, f"examples that differ from Terraform's documentation:\n{listing}"


def test_known_differences_still_differ() -> None:
    """The list of known differences stays short and true: an entry that now matches (or no
    longer exists) must be removed."""
    from trainform.config.functions import FUNCTIONS

    outcomes = {o.expression: o for o in compare.run()}
    documented = {e["expression"]: e["function"] for e in compare.load()}
    for expression in compare.KNOWN_DIFFERENT:
        if documented.get(expression) not in FUNCTIONS and expression in documented:
            continue  # a page of a function trainform does not offer (yet)
        assert expression in outcomes, f"no such example any more: {expression!r}"
        assert not outcomes[expression].matched, f"now matches; remove it: {expression!r}"


def test_extraction_reads_console_sessions() -> None:
    import extract

    page = "\n".join(
        [
            "# `f` Function",
            "```hcl",
            "f(x)",
            "```",
            "```",
            "> f(1)",
            "[",
            '  "a",',
            "]",
            "> f(",
            "    2)",
            "b",
            "",
            "# Also:",
            "f(3)",
            "c",
            "```",
        ]
    )
    rows = extract.examples("f.mdx", page)
    assert [(r["expression"], r["expected"]) for r in rows] == [
        ("f(1)", '[\n  "a",\n]'),
        ("f(\n    2)", "b"),
        ("f(3)", "c"),
    ]
