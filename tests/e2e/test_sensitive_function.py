"""``sensitive(...)`` marks the attribute it sets: the plan shows ``(sensitive value)`` and
state holds only a salted hash; ``nonsensitive(...)`` of a value that is not sensitive is an
error, as in Terraform. Through the real CLI."""

from __future__ import annotations

from pathlib import Path

from helpers import failed, ok

SECRET = "sealed-Qv7w-secret"

CONFIG = f"""\
compute "box" {{
  type        = "local"
  description = sensitive("{SECRET}")
}}
"""


def files_holding(folder: Path, needle: bytes) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_a_sensitive_call_hides_the_attribute_in_plans_and_state(cli) -> None:
    cli.write("main.train.hcl", CONFIG)
    plan = ok(cli("plan"))
    assert "(sensitive value)" in plan.out, plan.out
    assert SECRET not in plan.all
    applied = ok(cli("apply", "-auto-approve"))
    assert SECRET not in applied.all
    shown = ok(cli("state", "show", "compute.box"))
    assert SECRET not in shown.all and "(sensitive value)" in shown.out, shown.out
    # (the parse cache holds the configuration's own text, literal included: not state)
    state = [
        p for p in files_holding(cli.cwd / ".trainform", SECRET.encode()) if "cache" not in p.parts
    ]
    assert state == []
    assert list((cli.cwd / ".trainform").glob("state.db*")), "no state written"
    # the salted hash still notices a change, without showing either value
    cli.write("main.train.hcl", CONFIG.replace(SECRET, SECRET + "-2"))
    changed = ok(cli("plan", "-detailed-exitcode"), 2)
    assert "compute.box" in changed.out and SECRET not in changed.all, changed.all


def test_nonsensitive_of_a_value_that_is_not_sensitive_is_an_error(cli) -> None:
    cli.write(
        "main.train.hcl",
        'compute "box" {\n  type        = "local"\n  description = nonsensitive("clear")\n}\n',
    )
    failed(cli("validate"), "main.train.hcl:3", "not sensitive")
