"""No diagnostic shows a sensitive value, whatever failed: every built-in function called with
a sensitive argument in each position, the operators, indexing and for expressions, and the
checks of resource attributes, ``count`` and variable validations. Each through the real
CLI's ``validate`` and ``plan``."""

from __future__ import annotations

import inspect

import pytest
from helpers import ok

from trainform.config.functions import FUNCTIONS

SECRET = "hunter2-Sx9q"
NUMBER = 48151623
# What a secret may have become by the time a message quotes it (upper, strrev, tonumber...).
NEEDLES = ("sx9q", "q9xs", "4815", "3261")

VARIABLES = """\
variable "s" {
  type      = string
  sensitive = true
}

variable "n" {
  type      = number
  sensitive = true
}

variable "l" {
  type      = list(string)
  sensitive = true
}

variable "m" {
  type      = map(string)
  sensitive = true
}
"""

SECRETS = {
    "TRAINFORM_VAR_s": SECRET,
    "TRAINFORM_VAR_n": str(NUMBER),
    "TRAINFORM_VAR_l": f'["{SECRET}", "{SECRET}-2"]',
    "TRAINFORM_VAR_m": f'{{ "{SECRET}" = "v-{SECRET}" }}',
}

# What an argument that is not the sensitive one is, by the parameter's name.
FILLERS = {
    "items": '["a", "b"]',
    "keys": '["a", "b"]',
    "values": '["a", "b"]',
    "mapping": '{ a = "b" }',
    "maps": '{ a = "b" }',
    "index": "5",
    "offset": "5",
    "length": "2",
    "start": "1",
    "end": "9",
    "base": "2",
    "exponent": "2",
    "second": "3",
    "third": "1",
    "spec": '"%d %s"',
}


def calls(name: str) -> list[str]:
    """Calls of ``name`` with a sensitive argument: every kind of secret in every position
    (the others filled by what the parameter usually takes), without and with the optional
    parameters, and with all arguments sensitive."""
    params = list(inspect.signature(FUNCTIONS[name].__wrapped__).parameters.values())[1:]
    required = [
        p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty
    ]
    full = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    full += [p.name for p in params if p.kind is p.VAR_POSITIONAL]
    out = []
    for names in dict.fromkeys((tuple(required), tuple(full))):
        for secret in ("var.s", "var.n", "var.l", "var.m"):
            for i in range(len(names)):
                args = [secret if j == i else FILLERS.get(n, '"x"') for j, n in enumerate(names)]
                out.append(f"{name}({', '.join(args)})")
    for secret in ("var.s", "var.n", "var.l", "var.m"):
        out.append(f"{name}({', '.join([secret] * max(len(full), 1))})")
    # and a secret changed first, as upper() or tonumber() would
    out.append(f"{name}(upper(var.s){', 1' * (len(full) - 1)})")
    return out


def check(cli, body: str, **env: str) -> None:
    cli.write("main.train.hcl", VARIABLES + body)
    for command in ("validate", "plan"):
        result = cli(command, **SECRETS, **env)
        assert "Traceback" not in result.all, result.all
        shown = result.all.lower()
        for needle in NEEDLES:
            assert needle not in shown, f"{command} shows a sensitive value:\n{result.all}"


def locals_block(expressions: list[str]) -> str:
    lines = "\n".join(f"  e{i} = {e}" for i, e in enumerate(expressions))
    return f"\nlocals {{\n{lines}\n}}\n"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_a_function_with_a_sensitive_argument_never_shows_it(cli, name):
    expressions = calls(name)
    for start in range(0, len(expressions), 20):  # evaluation stops after 20 errors
        check(cli, locals_block(expressions[start : start + 20]))


OPERATIONS = [
    "var.s + 1",
    "1 - var.s",
    "-var.s",
    "!var.s",
    "var.s && true",
    "var.s ? 1 : 2",
    "var.n / 0",
    "{ a = 1 }[var.s]",
    '["a"][var.n]',
    '["a"][var.s]',
    "var.l[var.n]",
    'var.m["nope"]',
    "var.m.nope",
    "var.s.attribute",
    '"${var.l}"',
    '"${var.m}"',
    "[for x in var.s : x]",
    '{ for k, v in var.m : "same" => v if k != "" }',
    "{ for x in concat(var.l, var.l) : x => 1 }",
    "var.l[*].name",
]


def test_operators_indexes_and_for_expressions_never_show_a_sensitive_value(cli):
    result_body = locals_block(OPERATIONS)
    check(cli, result_body)
    result = cli("validate", **SECRETS)
    assert result.code == 1 and "(sensitive value)" in result.err, result.all


def test_attribute_and_count_checks_never_show_a_sensitive_value(cli):
    check(
        cli,
        """
compute "a" {
  type                = "local"
  max_concurrent_runs = var.s
}

compute "b" {
  type  = "local"
  count = var.s
}

compute "c" {
  type        = "local"
  description = var.m
}

output "o" {
  value     = tonumber(var.s)
  sensitive = true
}
""",
    )
    result = ok(cli("validate", **SECRETS), 1)
    assert result.err.count("(sensitive value)") >= 4, result.err


def test_a_variable_validation_never_shows_the_sensitive_value(cli):
    body = """
variable "v" {
  type      = string
  sensitive = true
  validation {
    condition     = tonumber(var.v) > 0
    error_message = "must be positive"
  }
}
"""
    check(cli, body, TRAINFORM_VAR_v=SECRET)
    result = ok(cli("validate", TRAINFORM_VAR_v=SECRET, **SECRETS), 1)
    assert "(sensitive value)" in result.err, result.err


def test_a_failure_without_a_sensitive_value_still_quotes_what_it_can(cli):
    """The redaction is only for expressions that refer to sensitive values."""
    cli.write("main.train.hcl", VARIABLES + locals_block(['tonumber("abc")', "var.s"]))
    result = ok(cli("validate", **SECRETS), 1)
    assert '"abc"' in result.err and "(sensitive value)" not in result.err, result.err
