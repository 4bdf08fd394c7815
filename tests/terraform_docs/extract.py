"""Turn Terraform's function documentation pages into a table of ``> expression`` examples.

Terraform's pages (``website/docs/language/functions/*.mdx`` in hashicorp/terraform, up to
commit 70a7246, after which they moved to hashicorp/web-unified-docs) show console sessions::

    > cidrsubnet("10.1.2.0/24", 4, 15)
    10.1.2.240/28

Each ``> `` line inside a fenced code block is an expression; the lines after it, up to the
next ``> `` line or the end of the block, are the documented result (trailing blank lines
dropped). An expression whose brackets are still open continues
on the next lines. In a console session a ``# `` comment line ends an example; a page that then writes its next
expression without the prompt has that line taken as the expression. The table is written
as JSON, one object per example: the page's function, the
expression, the expected text, and the page it came from.

Usage (from the repository root)::

    python tests/terraform_docs/extract.py GIT_DIR [COMMIT]

where GIT_DIR is a clone (or bare mirror) of hashicorp/terraform. It rewrites
``tests/terraform_docs/examples.json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DOCS = "website/docs/language/functions"
DEFAULT_COMMIT = "70a724614cf6a4887bc23acc3e0df759132d4a68"
OUT = Path(__file__).with_name("examples.json")


def _git(git_dir: str, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", git_dir, *args], check=True, capture_output=True, text=True
    ).stdout


def _open(expression: str) -> bool:
    """Whether the expression's brackets are not all closed yet (strings not considered:
    the pages' multi-line examples have no brackets inside strings)."""
    depth = 0
    for char in expression:
        depth += char in "([{"
        depth -= char in ")]}"
    return depth > 0


def examples(page: str, text: str) -> list[dict[str, str]]:
    """The ``> `` examples of one page, in order."""
    function = page.removesuffix(".mdx").removesuffix("_function")
    out: list[dict[str, str]] = []
    in_block = False
    after_comment = False
    session = False  # whether this block is a console session (has had a "> " line)
    current: dict[str, str] | None = None
    result: list[str] = []

    def finish() -> None:
        nonlocal current, result
        if current is not None:
            while result and not result[-1].strip():
                result.pop()
            while result and not result[0].strip() and not current["expression"]:
                result.pop(0)
            current["expected"] = "\n".join(result)
            out.append(current)
        current, result = None, []

    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            if in_block:
                finish()
            in_block = not in_block
            session = after_comment = False
            continue
        if not in_block:
            continue
        if line.startswith("> "):
            finish()
            session = True
            current = {"function": function, "page": page, "expression": line[2:].strip()}
        elif current is not None and not result and _open(current["expression"]):
            # An expression written over several lines: its brackets are still open.
            current["expression"] += "\n" + line.rstrip()
            continue
        elif line.startswith("# ") and session:
            # A comment between examples; some pages then give the next expression
            # without its "> " prompt, on the line after the comment.
            finish()
            after_comment = True
            continue
        elif after_comment and line.strip():
            current = {"function": function, "page": page, "expression": line.strip()}
        elif current is not None:
            result.append(line.rstrip())
        after_comment = False
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    git_dir = argv[0]
    commit = argv[1] if len(argv) > 1 else DEFAULT_COMMIT
    pages = _git(git_dir, "ls-tree", "--name-only", commit, DOCS + "/").split()
    table: list[dict[str, str]] = []
    for path in sorted(pages):
        if not path.endswith(".mdx"):
            continue
        page = path.rsplit("/", 1)[-1]
        table.extend(examples(page, _git(git_dir, "show", f"{commit}:{path}")))
    document = {"source": f"hashicorp/terraform@{commit}:{DOCS}", "examples": table}
    OUT.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(table)} examples from {len(pages)} pages -> {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
