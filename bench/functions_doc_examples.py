"""How many of Terraform's documented function examples trainform evaluates to Terraform's
documented result (the README's figure).

    .venv/bin/python bench/functions_doc_examples.py [-v]

Counts the ``> expression`` examples of tests/terraform_docs/examples.json for every function
trainform offers (see tests/terraform_docs/compare.py for how results are compared); -v
lists the ones that differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "terraform_docs"))

import compare


def main() -> None:
    outcomes = compare.run()
    matched = sum(o.matched for o in outcomes)
    functions = {o.function for o in outcomes}
    print(
        f"{matched} of {len(outcomes)} examples match "
        f"({matched / len(outcomes):.1%}, {len(functions)} functions)"
    )
    if "-v" in sys.argv[1:]:
        for o in outcomes:
            if not o.matched:
                why = compare.KNOWN_DIFFERENT.get(o.expression, "not explained")
                print(f"- {o.function}: {o.expression!r}\n  {why}")


if __name__ == "__main__":
    main()
