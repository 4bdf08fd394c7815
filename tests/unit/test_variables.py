"""Input variables: type constraints, validation, where values come from and in which order
they win, and what happens when one is missing. Everything goes through real files in
``tmp_path``; the environment is passed explicitly so the test runner's own is never read."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from trainform.config.evaluate import resolve_variables
from trainform.config.loader import load_module
from trainform.config.values import FunctionContext
from trainform.config.variables import VariableInputs, VariableValues, collect_values
from trainform.engine.session import Session
from trainform.errors import ConfigError, Diagnostic

Prompt = Callable[[str, str, bool], str]


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def collect(
    directory: Path,
    cli: list[tuple[str, str]] | None = None,
    environ: Mapping[str, str] | None = None,
) -> VariableValues:
    module = load_module(directory)
    inputs = VariableInputs(cli=cli or [], environ=dict(environ or {}))
    return collect_values(
        module.directory, module.variables, inputs, FunctionContext(module.directory)
    )


def resolve(
    directory: Path,
    cli: list[tuple[str, str]] | None = None,
    environ: Mapping[str, str] | None = None,
    prompt: Prompt | None = None,
) -> dict[str, Any]:
    module = load_module(directory)
    functions = FunctionContext(module.directory)
    inputs = VariableInputs(cli=cli or [], environ=dict(environ or {}))
    raw = collect_values(module.directory, module.variables, inputs, functions)
    return resolve_variables(module, raw, prompt, functions)


def errors(directory: Path, **kwargs: Any) -> list[Diagnostic]:
    with pytest.raises(ConfigError) as info:
        resolve(directory, **kwargs)
    return info.value.diagnostics


def one_variable(tmp_path: Path, type_expr: str, extra: str = "") -> Path:
    write(tmp_path / "main.train.hcl", f'variable "v" {{\n  type = {type_expr}\n{extra}}}\n')
    return tmp_path


# --------------------------------------------------------------------------- types


@pytest.mark.parametrize(
    ("type_expr", "text", "expected"),
    [
        ("string", "hello world", "hello world"),
        # text given for a string stays exactly that text
        ("string", "3.10", "3.10"),
        ("string", "007", "007"),
        ("string", "true", "true"),
        ("string", "1+1", "1+1"),
        ("string", '"quoted"', '"quoted"'),
        ("number", "4.5", 4.5),
        ("number", "42", 42),
        ("number", "-3", -3),
        ("bool", "true", True),
        ("bool", "false", False),
        ("list(string)", '["a", "b"]', ["a", "b"]),
        ("list(string)", '["a", 1, true]', ["a", "1", "true"]),
        ("list(number)", '[1, "2"]', [1, 2]),
        ("map(number)", '{ a = 1, b = "2" }', {"a": 1, "b": 2}),
        ("map(string)", "{}", {}),
        (
            "object({ name = string, size = number })",
            '{ name = "x", size = "3" }',
            {"name": "x", "size": 3},
        ),
        # attributes the object type does not name are dropped
        ("object({ name = string })", '{ name = "x", extra = 1 }', {"name": "x"}),
        ("tuple([string, number, bool])", '["a", "7", "true"]', ["a", 7, True]),
        ("set(string)", '["b", "a", "b"]', ["a", "b"]),
        ("list(list(number))", "[[1], [2, 3]]", [[1], [2, 3]]),
        ("map(object({ n = number }))", "{ x = { n = 1 } }", {"x": {"n": 1}}),
        # no type: text from the command line is a string, as in Terraform
        ("any", "3.10", "3.10"),
    ],
)
def test_type_constraints_convert_command_line_values(
    tmp_path: Path, type_expr: str, text: str, expected: Any
) -> None:
    one_variable(tmp_path, type_expr)
    value = resolve(tmp_path, cli=[("var", f"v={text}")])["v"]
    assert value == expected
    assert json.dumps(value) == json.dumps(expected)  # same types (1 is not "1", 2 is not 2.0)


@pytest.mark.parametrize(
    ("type_expr", "text", "reason"),
    [
        ("number", "abc", "a number is required, got 'abc'"),
        ("bool", "yes", "bool required, got string"),
        ("list(string)", "notalist", "list(string) required, got string"),
        ("list(string)", '[["a"]]', "string required, got list"),
        ("map(number)", '{ a = "x" }', "a number is required, got 'x'"),
        (
            "object({ name = string, size = number })",
            '{ name = "x" }',
            "attribute 'size' is required",
        ),
        ("tuple([string, number])", '["a"]', "a tuple of 2 elements is required"),
        ("set(number)", '["a"]', "a number is required, got 'a'"),
    ],
)
def test_conversion_errors_name_the_variable_its_source_and_type(
    tmp_path: Path, type_expr: str, text: str, reason: str
) -> None:
    one_variable(tmp_path, type_expr)
    [diag] = errors(tmp_path, cli=[("var", f"v={text}")])
    assert diag.message.startswith("invalid value ")
    assert f"for variable 'v' (from --var v): {reason}" in diag.message
    assert diag.hint.startswith("the variable's type is ")
    assert diag.pos is not None and (diag.pos.line, diag.pos.column) == (1, 1)


def test_type_spelled_in_a_diagnostic_hint(tmp_path: Path) -> None:
    one_variable(tmp_path, "object({ name = string, tags = map(string) })")
    [diag] = errors(tmp_path, cli=[("var", "v=5")])
    assert diag.hint == "the variable's type is object({name = string, tags = map(string)})"


def test_sensitive_value_is_not_shown_in_a_conversion_error(tmp_path: Path) -> None:
    one_variable(tmp_path, "number", "  sensitive = true\n")
    [diag] = errors(tmp_path, cli=[("var", "v=hunter2")])
    assert diag.message == (
        "invalid value (sensitive value) for variable 'v' (from --var v): "
        "it does not match the type"
    )
    assert "hunter2" not in str(diag)


def test_default_is_converted_to_the_type(tmp_path: Path) -> None:
    write(
        tmp_path / "main.train.hcl",
        """
        variable "n" {
          type    = number
          default = "5"
        }
        variable "bad" {
          type    = number
          default = "five"
        }
        """,
    )
    [diag] = errors(tmp_path)
    assert "for variable 'bad' (from " in diag.message
    assert "main.train.hcl:7:" in diag.message  # where the default was written
    write(tmp_path / "main.train.hcl", 'variable "n" {\n  type    = number\n  default = "5"\n}\n')
    assert resolve(tmp_path) == {"n": 5}


def test_unknown_type_name_suggests_one(tmp_path: Path) -> None:
    write(tmp_path / "main.train.hcl", 'variable "v" {\n  type = strng\n}\n')
    with pytest.raises(ConfigError) as info:
        load_module(tmp_path)
    [diag] = info.value.diagnostics
    assert diag.message == "unknown type 'strng'"
    assert diag.hint == 'did you mean "string"?'
    assert diag.pos is not None and diag.pos.line == 2


def test_non_nullable_variable_rejects_null(tmp_path: Path) -> None:
    write(tmp_path / "main.train.hcl", 'variable "v" {\n  nullable = false\n  default  = null\n}\n')
    [diag] = errors(tmp_path)
    assert diag.message == "variable 'v' must not be null"
    write(tmp_path / "main.train.hcl", 'variable "v" {\n  default = null\n}\n')
    assert resolve(tmp_path) == {"v": None}


# --------------------------------------------------------------------------- validation


VALIDATED = """
variable "lr" {
  type        = number
  description = "learning rate"
  validation {
    condition     = var.lr > 0 && var.lr < 1
    error_message = "lr must be in (0, 1), got ${var.lr}."
  }
  validation {
    condition     = var.lr != 0.5
    error_message = "0.5 is too round."
  }
}
"""


@pytest.mark.parametrize(
    ("text", "messages"),
    [
        ("0.1", []),
        ("2", ["invalid value for variable 'lr': lr must be in (0, 1), got 2."]),
        ("0.5", ["invalid value for variable 'lr': 0.5 is too round."]),
        ("-1", ["invalid value for variable 'lr': lr must be in (0, 1), got -1."]),
    ],
)
def test_validation_blocks(tmp_path: Path, text: str, messages: list[str]) -> None:
    write(tmp_path / "main.train.hcl", VALIDATED)
    if not messages:
        assert resolve(tmp_path, cli=[("var", f"lr={text}")]) == {"lr": 0.1}
        return
    diags = errors(tmp_path, cli=[("var", f"lr={text}")])
    assert [d.message for d in diags] == messages
    # each points at its own condition
    assert diags[0].pos is not None and diags[0].pos.line in (5, 9)


def test_validation_condition_must_be_a_bool(tmp_path: Path) -> None:
    write(
        tmp_path / "main.train.hcl",
        """
        variable "v" {
          default = "x"
          validation {
            condition     = length(var.v)
            error_message = "never shown"
          }
        }
        """,
    )
    [diag] = errors(tmp_path)
    assert diag.message == "a validation condition must be true or false"
    assert diag.pos is not None and diag.pos.line == 4


def test_validation_may_refer_only_to_its_variable(tmp_path: Path) -> None:
    write(
        tmp_path / "main.train.hcl",
        """
        variable "a" {
          default = 1
        }
        variable "b" {
          default = 2
          validation {
            condition     = var.b > var.a
            error_message = "b must exceed a"
          }
        }
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_module(tmp_path)
    [diag] = info.value.diagnostics
    assert diag.message == "a validation condition may refer only to the variable itself"
    assert diag.pos is not None and (diag.pos.line, diag.pos.column) == (7, 29)


# --------------------------------------------------------------------------- precedence

PRECEDENCE = """
variable "a" { default = "default" }
variable "b" { default = "default" }
variable "c" { default = "default" }
variable "d" { default = "default" }
variable "e" { default = "default" }
variable "f" { default = "default" }
variable "g" { default = "default" }
"""


def test_precedence_from_default_to_command_line(tmp_path: Path) -> None:
    """Each variable is set by every source up to one level, so its value names the
    strongest source: defaults < environment < trainform.tfvars < *.auto.tfvars
    (alphabetically) < --var-file/--var in command-line order."""
    write(tmp_path / "main.train.hcl", PRECEDENCE)
    write(
        tmp_path / "trainform.tfvars",
        'c = "tfvars"\nd = "tfvars"\ne = "tfvars"\nf = "tfvars"\ng = "tfvars"\n',
    )
    write(tmp_path / "a.auto.tfvars", 'd = "a.auto"\ne = "a.auto"\nf = "a.auto"\ng = "a.auto"\n')
    write(tmp_path / "b.auto.tfvars.json", '{"e": "b.auto", "f": "b.auto", "g": "b.auto"}')
    extra = write(tmp_path / "extra.tfvars", 'f = "var-file"\ng = "var-file"\n')
    environ = {f"TRAINFORM_VAR_{n}": "environment" for n in "bcdefg"}
    environ["UNRELATED"] = "x"
    values = resolve(tmp_path, cli=[("file", str(extra)), ("var", "g=--var")], environ=environ)
    assert values == {
        "a": "default",
        "b": "environment",
        "c": "tfvars",
        "d": "a.auto",
        "e": "b.auto",
        "f": "var-file",
        "g": "--var",
    }


def test_origin_of_each_value_is_recorded(tmp_path: Path) -> None:
    write(tmp_path / "main.train.hcl", PRECEDENCE)
    write(tmp_path / "trainform.tfvars", '# comment\nc = "tfvars"\n')
    raw = collect(tmp_path, cli=[("var", "d=x")], environ={"TRAINFORM_VAR_b": "env"})
    assert raw.origin["b"] == "environment variable TRAINFORM_VAR_b"
    assert raw.origin["c"].endswith("trainform.tfvars:2:1")
    assert raw.origin["d"] == "--var d"
    assert "a" not in raw.values  # defaults are applied later, when converting


def test_command_line_order_decides_between_var_file_and_var(tmp_path: Path) -> None:
    write(tmp_path / "main.train.hcl", 'variable "x" {}\n')
    file = write(tmp_path / "x.tfvars", 'x = "from file"\n')
    assert resolve(tmp_path, cli=[("var", "x=from var"), ("file", str(file))]) == {"x": "from file"}
    assert resolve(tmp_path, cli=[("file", str(file)), ("var", "x=from var")]) == {"x": "from var"}
    assert resolve(tmp_path, cli=[("var", "x=one"), ("var", "x=two")]) == {"x": "two"}


def test_auto_tfvars_apply_alphabetically(tmp_path: Path) -> None:
    write(tmp_path / "main.train.hcl", 'variable "x" {}\nvariable "y" {}\n')
    write(tmp_path / "b.auto.tfvars", 'x = "b"\n')
    write(tmp_path / "a.auto.tfvars", 'x = "a"\ny = "a"\n')
    write(tmp_path / "c.auto.tfvars.yaml", "y: c\n")
    assert resolve(tmp_path) == {"x": "b", "y": "c"}


def test_var_file_relative_to_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    write(config / "main.train.hcl", 'variable "x" {}\n')
    write(tmp_path / "vars.tfvars", 'x = "relative"\n')
    monkeypatch.chdir(tmp_path)
    assert resolve(config, cli=[("file", "vars.tfvars")]) == {"x": "relative"}


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("vars.tfvars", 'n = 3\nnames = ["a", "b"]\nopts = { debug = true }\n'),
        ("vars.json", '{"n": 3, "names": ["a", "b"], "opts": {"debug": true}}'),
        ("vars.yaml", "n: 3\nnames: [a, b]\nopts:\n  debug: true\n"),
        ("vars.yml", "n: 3\nnames:\n  - a\n  - b\nopts: {debug: true}\n"),
    ],
)
def test_var_file_formats(tmp_path: Path, name: str, text: str) -> None:
    write(
        tmp_path / "main.train.hcl",
        """
        variable "n" { type = number }
        variable "names" { type = list(string) }
        variable "opts" { type = map(bool) }
        """,
    )
    file = write(tmp_path / name, text)
    values = resolve(tmp_path, cli=[("file", str(file))])
    assert values == {"n": 3, "names": ["a", "b"], "opts": {"debug": True}}


def test_var_file_problems_are_errors(tmp_path: Path) -> None:
    write(tmp_path / "main.train.hcl", 'variable "x" {}\n')
    with pytest.raises(ConfigError, match="does not exist"):
        collect(tmp_path, cli=[("file", str(tmp_path / "missing.tfvars"))])
    bad_json = write(tmp_path / "bad.json", '{"x": 1,\n}')
    with pytest.raises(ConfigError) as info:
        collect(tmp_path, cli=[("file", str(bad_json))])
    [diag] = info.value.diagnostics
    assert diag.message.startswith("invalid JSON")
    assert diag.pos is not None and diag.pos.line == 2
    blocks = write(tmp_path / "blocks.tfvars", 'x = 1\nvariable "y" {}\n')
    with pytest.raises(ConfigError, match="holds only `name = value` lines"):
        collect(tmp_path, cli=[("file", str(blocks))])
    not_a_map = write(tmp_path / "list.yaml", "- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        collect(tmp_path, cli=[("file", str(not_a_map))])


def test_undeclared_names_in_files_are_warnings(tmp_path: Path) -> None:
    write(tmp_path / "main.train.hcl", 'variable "region" {}\n')
    write(tmp_path / "trainform.tfvars", 'region = "eu"\nregoin = "us"\n')
    extra = write(tmp_path / "extra.json", '{"unused": 1}')
    raw = collect(tmp_path, cli=[("file", str(extra))])
    assert raw.values == {"region": "eu"}
    warnings = sorted(raw.warnings, key=lambda d: d.message)
    assert [(w.message, w.severity) for w in warnings] == [
        ("value for undeclared variable 'regoin'", "warning"),
        ("value for undeclared variable 'unused'", "warning"),
    ]
    assert warnings[0].hint == 'did you mean "region"?'
    assert warnings[0].pos is not None and warnings[0].pos.line == 2


def test_session_carries_var_file_warnings(tmp_path: Path) -> None:
    write(tmp_path / "main.train.hcl", 'variable "region" {}\n')
    write(tmp_path / "trainform.tfvars", 'region = "eu"\nregoin = "us"\n')
    session = Session.open(tmp_path, VariableInputs(environ={}))
    try:
        assert session.variables == {"region": "eu"}
        assert [w.message for w in session.warnings] == ["value for undeclared variable 'regoin'"]
    finally:
        session.close()


def test_undeclared_command_line_variable_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "main.train.hcl", 'variable "region" {}\n')
    with pytest.raises(ConfigError) as info:
        collect(tmp_path, cli=[("var", "regoin=us")])
    [diag] = info.value.diagnostics
    assert diag.message == "--var regoin: no variable 'regoin' is declared"
    assert diag.hint == 'did you mean "region"?'
    with pytest.raises(ConfigError, match="expected NAME=VALUE"):
        collect(tmp_path, cli=[("var", "region")])


def test_undeclared_environment_variables_are_ignored(tmp_path: Path) -> None:
    write(tmp_path / "main.train.hcl", 'variable "region" {\n  default = "eu"\n}\n')
    assert resolve(tmp_path, environ={"TRAINFORM_VAR_other": "x", "TRAINFORM_VAR_": "y"}) == {
        "region": "eu"
    }


def test_complex_values_from_command_line_and_environment(tmp_path: Path) -> None:
    write(
        tmp_path / "main.train.hcl",
        """
        variable "names" { type = list(string) }
        variable "sizes" { type = map(number) }
        variable "label" { type = string }
        """,
    )
    values = resolve(
        tmp_path,
        cli=[("var", 'names=["a","b"]')],
        environ={"TRAINFORM_VAR_sizes": "{ small = 1, large = 8 }", "TRAINFORM_VAR_label": "1.50"},
    )
    assert values == {"names": ["a", "b"], "sizes": {"small": 1, "large": 8}, "label": "1.50"}


def test_unparsable_complex_value_names_the_variable(tmp_path: Path) -> None:
    write(tmp_path / "main.train.hcl", 'variable "names" { type = list(string) }\n')
    [diag] = errors(tmp_path, cli=[("var", 'names=["a",')])
    assert "for variable 'names' (from --var names)" in diag.message


# --------------------------------------------------------------------------- missing values


REQUIRED = """
variable "lr" {
  type    = number
  default = 0.1
}
variable "password" {
  type        = string
  description = "database password"
  sensitive   = true
}
variable "nodes" {
  type        = list(string)
  description = "hosts"
}
"""


def test_missing_required_variables_are_errors_naming_each(tmp_path: Path) -> None:
    write(tmp_path / "main.train.hcl", REQUIRED)
    diags = errors(tmp_path)
    assert [d.message for d in diags] == [
        "no value for required variable 'nodes'",
        "no value for required variable 'password'",
    ]
    assert [d.pos.line for d in diags if d.pos] == [10, 5]
    assert "--var nodes=..." in diags[0].hint
    assert "TRAINFORM_VAR_nodes" in diags[0].hint


def test_prompt_is_asked_only_for_missing_values(tmp_path: Path) -> None:
    write(tmp_path / "main.train.hcl", REQUIRED)
    asked: list[tuple[str, str, bool]] = []
    answers = {"password": "s3cret", "nodes": '["h1", "h2"]'}

    def prompt(name: str, description: str, sensitive: bool) -> str:
        asked.append((name, description, sensitive))
        return answers[name]

    values = resolve(tmp_path, prompt=prompt)
    assert sorted(asked) == [("nodes", "hosts", False), ("password", "database password", True)]
    assert values == {"lr": 0.1, "nodes": ["h1", "h2"], "password": "s3cret"}

    asked.clear()
    values = resolve(
        tmp_path,
        cli=[("var", "password=given")],
        environ={"TRAINFORM_VAR_nodes": '["e"]'},
        prompt=prompt,
    )
    assert asked == []
    assert values["password"] == "given"


def test_prompted_value_is_converted_and_validated(tmp_path: Path) -> None:
    write(
        tmp_path / "main.train.hcl",
        """
        variable "n" {
          type = number
          validation {
            condition     = var.n > 0
            error_message = "n must be positive."
          }
        }
        """,
    )
    assert resolve(tmp_path, prompt=lambda *_: "3") == {"n": 3}
    [diag] = errors(tmp_path, prompt=lambda *_: "-3")
    assert diag.message == "invalid value for variable 'n': n must be positive."
    [diag] = errors(tmp_path, prompt=lambda *_: "three")
    assert "for variable 'n' (from prompt)" in diag.message


def test_validation_message_of_a_sensitive_variable_does_not_show_it(tmp_path: Path) -> None:
    write(
        tmp_path / "main.train.hcl",
        """
        variable "token" {
          sensitive = true
          validation {
            condition     = length(var.token) > 8
            error_message = "token ${var.token} is too short."
          }
          validation {
            condition     = startswith(var.token, "tok_")
            error_message = "a token starts with tok_."
          }
        }
        """,
    )
    diags = errors(tmp_path, cli=[("var", "token=hunter2")])
    assert [d.message for d in diags] == [
        "invalid value for variable 'token': "
        "(the error message refers to the sensitive value, so it is not shown)",
        "invalid value for variable 'token': a token starts with tok_.",
    ]
    assert all("hunter2" not in str(d) for d in diags)
