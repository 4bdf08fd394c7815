"""Block labels and the language's limits (issue 11): each input that used to crash, hang or
take gigabytes (and the label that became a path) now gets a diagnostic that names the limit
and the file:line, through the same checks `validate` and `plan` make."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from trainform.cli.render import plan_text
from trainform.config import loader
from trainform.config.values import (
    MAX_BLOCKS,
    MAX_COLLECTION_SIZE,
    MAX_CONFIG_FILE_BYTES,
    MAX_FILE_BYTES,
    MAX_INSTANCES,
    MAX_NESTING_DEPTH,
    MAX_NUMBER_DIGITS,
    MAX_STRING_LENGTH,
)
from trainform.config.variables import VariableInputs
from trainform.engine.session import Session, validate_config
from trainform.errors import ConfigError, Diagnostic
from trainform.planner.diff import PlanOptions

DEEP = 1000
HANG = 10.0
WORKSPACE = 'workspace "w" {}\n'


def write(folder: Path, text: str | bytes, name: str = "main.train.hcl") -> None:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)


def problem(folder: Path) -> Diagnostic:
    """The first diagnostic `validate` gives. Each comes within a second or two; the bound
    asserted is looser, against hangs (these inputs took minutes or gigabytes before)."""
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        validate_config(folder, VariableInputs(environ={}))
    assert time.monotonic() - started < HANG, f"no diagnostic within {HANG} s"
    return info.value.diagnostics[0]


def at(diag: Diagnostic, file: str, line: int, column: int | None = None) -> None:
    assert diag.pos is not None, diag
    assert (Path(diag.pos.file).name, diag.pos.line) == (file, line), diag
    if column is not None:
        assert diag.pos.column == column, diag


def local(expr: str) -> str:
    return WORKSPACE + f"locals {{\n  x = {expr}\n}}\n"


# --------------------------------------------------------------------------- labels


def test_a_label_that_is_a_path_is_refused_in_hcl_and_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "escaped"
    write(tmp_path, f'workspace "../../../../{target}" {{}}\n')
    diag = problem(tmp_path)
    assert "invalid workspace name" in diag.message
    assert "must start with a letter or '_'" in diag.message
    assert diag.hint.startswith('for example workspace "')
    at(diag, "main.train.hcl", 1, 11)
    with pytest.raises(ConfigError):  # plan refuses it too, before any provider runs
        Session.open(tmp_path, VariableInputs(environ={}))
    assert not target.exists()


def test_a_label_that_is_a_path_is_refused_in_yaml(tmp_path: Path) -> None:
    write(tmp_path, 'workspace:\n  "../../../../tmp/x": {}\n', "main.train.yaml")
    diag = problem(tmp_path)
    assert "invalid workspace name '../../../../tmp/x'" in diag.message
    at(diag, "main.train.yaml", 2, 3)


@pytest.mark.parametrize("label", ["a/b", "", ".", "..", "1st", "-x", "a b", "é", "a.b", "x\\y"])
def test_every_label_must_be_an_identifier(tmp_path: Path, label: str) -> None:
    escaped = label.replace("\\", "\\\\")
    write(tmp_path, f'compute "{escaped}" {{\n  type = "local"\n}}\n')
    assert "invalid compute name" in problem(tmp_path).message


def test_nested_block_labels_are_identifiers_too(tmp_path: Path) -> None:
    write(
        tmp_path,
        textwrap.dedent(
            """\
            trainform {
              backend "../sqlite" {}
            }
            """
        ),
    )
    diag = problem(tmp_path)
    assert "invalid backend name '../sqlite'" in diag.message
    at(diag, "main.train.hcl", 2, 11)
    write(
        tmp_path,
        "sweep:\n  s:\n    parameter:\n      ../lr: {distribution: choice, values: [1]}\n",
        "main.train.yaml",
    )
    (tmp_path / "main.train.hcl").unlink()
    diag = problem(tmp_path)
    assert "invalid parameter name '../lr'" in diag.message
    at(diag, "main.train.yaml", 4, 7)


def test_identifier_labels_are_accepted(tmp_path: Path) -> None:
    write(tmp_path, 'workspace "_a-b_9" {}\nworkspace "W" {}\nworkspace z {}\n')
    module = validate_config(tmp_path, VariableInputs(environ={}))
    assert sorted(module.resources) == ["workspace.W", "workspace._a-b_9", "workspace.z"]


# --------------------------------------------------------------------------- nesting


@pytest.mark.parametrize(
    ("kind", "expr"),
    [
        ("parentheses", "(" * DEEP + "1" + ")" * DEEP),
        ("lists", "[" * DEEP + "1" + "]" * DEEP),
        ("maps", "{a = " * DEEP + "1" + "}" * DEEP),
        ("calls", "abs(" * DEEP + "1" + ")" * DEEP),
        ("conditionals", "true ? " * DEEP + "1" + " : 2" * DEEP),
        ("interpolations", '"${' * DEEP + "1" + '}"' * DEEP),
        ("operators", " + ".join(["1"] * DEEP)),
        ("for expressions", "[for a in " * DEEP + "[1]" + " : a]" * DEEP),
    ],
)
def test_deep_nesting_in_hcl_names_the_limit(tmp_path: Path, kind: str, expr: str) -> None:
    write(tmp_path, local(expr))
    diag = problem(tmp_path)
    assert f"nested more than {MAX_NESTING_DEPTH} levels deep (the nesting limit)" in diag.message
    at(diag, "main.train.hcl", 3)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("locals:\n  x: " + "[" * DEEP + "1" + "]" * DEEP + "\n", 2),
        ("locals:\n  x: " + "{a: " * DEEP + "1" + "}" * DEEP + "\n", 2),
        ("locals:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(300)), 64),
        ('locals:\n  x: "${' + "(" * DEEP + "1" + ")" * DEEP + '}"\n', 2),
    ],
    ids=["flow-sequences", "flow-mappings", "block-mappings", "interpolation"],
)
def test_deep_nesting_in_yaml_names_the_limit(tmp_path: Path, text: str, line: int) -> None:
    write(tmp_path, text, "main.train.yaml")
    diag = problem(tmp_path)
    assert f"nested more than {MAX_NESTING_DEPTH} levels deep" in diag.message
    at(diag, "main.train.yaml", line)


def test_a_recursive_yaml_alias_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "locals:\n  x: &a\n    - 1\n    - *a\n", "main.train.yaml")
    diag = problem(tmp_path)
    assert diag.message == "an alias inside this YAML collection refers to the collection itself"
    at(diag, "main.train.yaml", 2, 6)  # the anchor &a


@pytest.mark.parametrize(
    ("opening", "closing", "levels"),
    [("[", "]", 1), ('"${', '}"', 1), ("{a = ", "}", 1), ("tolist([", "])", 2)],
)
def test_nesting_at_the_limit_works_with_room_on_the_stack(
    tmp_path: Path, opening: str, closing: str, levels: int
) -> None:
    """An expression nested up to the limit (with its block, 64 levels) is validated,
    planned and rendered even with half of Python's default recursion limit: the limit
    leaves a wide margin for everything that walks trees and values."""
    depth = (MAX_NESTING_DEPTH - 1) // levels
    write(
        tmp_path,
        local(opening * depth + "1" + closing * depth) + 'output "o" {\n  value = local.x\n}\n',
    )
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(500)
    try:
        validate_config(tmp_path, VariableInputs(environ={}))
        session = Session.open(tmp_path, VariableInputs(environ={}))
        plan, _ = session.make_plan(PlanOptions())
        text = "\n".join(plan_text(plan))
    finally:
        sys.setrecursionlimit(old)
    assert "Changes to Outputs:" in text
    (output,) = plan.outputs
    value = output.after
    while isinstance(value, (list, dict)):
        value = value[0] if isinstance(value, list) else value["a"]
    assert value in (1, "1")


def test_values_nested_through_locals_are_refused(tmp_path: Path) -> None:
    chain = "\n".join(f"  a{i + 1} = [local.a{i}]" for i in range(MAX_NESTING_DEPTH + 5))
    write(tmp_path, WORKSPACE + f"locals {{\n  a0 = 1\n{chain}\n}}\n")
    diag = problem(tmp_path)
    assert f"nested at most {MAX_NESTING_DEPTH} levels deep (the nesting limit)" in diag.message


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("text", "name"),
    [
        (local("9" * 5000), "main.train.hcl"),
        (local("9" * 5000 + ".5"), "main.train.hcl"),
        ("locals:\n  x: " + "9" * 5000 + "\n", "main.train.yaml"),
    ],
)
def test_a_5000_digit_number_names_the_number_size_limit(
    tmp_path: Path, text: str, name: str
) -> None:
    write(tmp_path, text, name)
    diag = problem(tmp_path)
    assert f"at most {MAX_NUMBER_DIGITS} digits (the number size limit)" in diag.message
    at(diag, name, 3 if name.endswith("hcl") else 2)


def test_a_number_past_the_limit_from_arithmetic_is_refused(tmp_path: Path) -> None:
    write(tmp_path, local("1" + "0" * 99 + " * 10"))
    assert "the number size limit" in problem(tmp_path).message


def test_count_of_1e999_is_an_error_not_an_overflow(tmp_path: Path) -> None:
    write(tmp_path, 'workspace "w" {\n  count = 1e999\n}\n')
    diag = problem(tmp_path)
    assert "a number must be finite" in diag.message
    at(diag, "main.train.hcl", 2)


# --------------------------------------------------------------------------- count, for_each


def test_count_of_a_billion_names_the_instance_limit(tmp_path: Path) -> None:
    write(tmp_path, 'workspace "w" {\n  count = 1000000000\n}\n')
    diag = problem(tmp_path)
    assert diag.message == (
        f"count may be at most {MAX_INSTANCES} (the limit of instances of one block)"
    )
    at(diag, "main.train.hcl", 2)


def test_for_each_past_the_instance_limit(tmp_path: Path) -> None:
    keys = f'[for i in range({MAX_INSTANCES + 1}) : "k${{i}}"]'
    write(tmp_path, f'workspace "w" {{\n  for_each = toset({keys})\n}}\n')
    diag = problem(tmp_path)
    assert f"for_each may have at most {MAX_INSTANCES} elements" in diag.message
    at(diag, "main.train.hcl", 2)


def test_a_million_element_for_each_names_the_collection_size_limit(tmp_path: Path) -> None:
    write(
        tmp_path,
        "locals {\n  a = range(1024)\n"
        '  keys = flatten([for i in local.a : [for j in local.a : "k${i}-${j}"]])\n}\n'
        'workspace "w" {\n  for_each = toset(local.keys)\n}\n',
    )
    diag = problem(tmp_path)
    # a million strings are not built: the first limit reached stops the for expression
    assert "(the collection size limit)" in diag.message or "(the evaluation limit)" in (
        diag.message
    )
    at(diag, "main.train.hcl", 3)


# --------------------------------------------------------------------------- collections, work


def test_a_triple_nested_for_stops_at_the_collection_size_limit(tmp_path: Path) -> None:
    write(
        tmp_path,
        local("[for i in range(1024) : [for j in range(1024) : [for k in range(1024) : k]]]"),
    )
    diag = problem(tmp_path)
    assert "(the collection size limit)" in diag.message
    at(diag, "main.train.hcl", 3)


def test_an_expression_doing_too_much_work_names_the_evaluation_limit(tmp_path: Path) -> None:
    write(tmp_path, local("[for i in range(1024) : length([for j in range(1024) : j])]"))
    diag = problem(tmp_path)
    assert "(the evaluation limit)" in diag.message
    at(diag, "main.train.hcl", 3)


def test_shared_values_are_counted_each_time_they_appear(tmp_path: Path) -> None:
    """A list of 1024 references to a list of 1024 is small in memory, but jsonencode()
    would write a million numbers: it is refused before that."""
    write(
        tmp_path,
        WORKSPACE + "locals {\n  a = range(1024)\n  b = [for i in local.a : local.a]\n}\n",
    )
    assert "(the collection size limit)" in problem(tmp_path).message


# --------------------------------------------------------------------------- strings


def test_a_configuration_file_past_the_size_limit_is_not_parsed(tmp_path: Path) -> None:
    write(tmp_path, local('"' + "a" * MAX_CONFIG_FILE_BYTES + '"'))
    diag = problem(tmp_path)
    assert f"larger than {MAX_CONFIG_FILE_BYTES} bytes" in diag.message
    at(diag, "main.train.hcl", 1)


def test_20000_blocks_are_refused_quickly(tmp_path: Path) -> None:
    write(tmp_path, "".join(f'workspace "w{i}" {{}}\n' for i in range(20_000)))
    assert "(the configuration file size limit)" in problem(tmp_path).message


def test_blocks_past_the_block_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert MAX_BLOCKS == 10_000
    monkeypatch.setattr(loader, "MAX_BLOCKS", 5)  # the same check, without 10,000 blocks
    write(tmp_path, "".join(f'workspace "w{i}" {{}}\n' for i in range(3)), "a.train.hcl")
    write(tmp_path, "".join(f'workspace "v{i}" {{}}\n' for i in range(3)), "b.train.hcl")
    diag = problem(tmp_path)
    assert diag.message == "more than 5 blocks in this configuration (the block limit)"
    at(diag, "b.train.hcl", 3)


@pytest.mark.parametrize(
    "expr",
    [
        'join("", [for i in range(1024) : local.s])',
        '"${local.s}${local.s}${local.s}${local.s}${local.s}${local.s}${local.s}${local.s}"',
        'replace(local.s, "a", "aaaaaaaa")',
        'replace(local.s, "/a+/", "$0$0$0$0$0")',
        'format("%s%s%s%s%s%s%s%s", local.s, local.s, local.s, local.s, local.s, local.s, '
        "local.s, local.s)",
    ],
)
def test_strings_past_the_length_limit_are_refused(tmp_path: Path, expr: str) -> None:
    size = MAX_STRING_LENGTH // 4
    (tmp_path / "big.txt").write_text("a" * size)
    write(tmp_path, WORKSPACE + f'locals {{\n  s = file("big.txt")\n  x = {expr}\n}}\n')
    diag = problem(tmp_path)
    assert f"{MAX_STRING_LENGTH} characters" in diag.message
    assert "(the string length limit)" in diag.message
    at(diag, "main.train.hcl", 4)


@pytest.mark.parametrize("call", ['regexall("a", local.s)', 'replace(local.s, "/a/", "b")'])
def test_regex_matches_past_the_collection_size_limit(tmp_path: Path, call: str) -> None:
    (tmp_path / "big.txt").write_text("a" * (MAX_COLLECTION_SIZE + 1))
    write(tmp_path, WORKSPACE + f'locals {{\n  s = file("big.txt")\n  x = {call}\n}}\n')
    diag = problem(tmp_path)
    assert diag.message.endswith(
        f"more than {MAX_COLLECTION_SIZE} matches (the collection size limit)"
    )
    at(diag, "main.train.hcl", 4)


def test_format_refuses_a_huge_width(tmp_path: Path) -> None:
    write(tmp_path, local('format("%999999999d", 1)'))
    diag = problem(tmp_path)
    assert diag.message == 'format: width or precision in "%999999999d" is larger than 1000000'
    at(diag, "main.train.hcl", 3)


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize(
    ("call", "what"),
    [('file("/dev/zero")', "/dev/zero"), ('filesha256("/dev/urandom")', "/dev/urandom")],
)
def test_file_functions_read_regular_files_only(tmp_path: Path, call: str, what: str) -> None:
    write(tmp_path, local(call))
    diag = problem(tmp_path)
    assert diag.message.endswith(f"'{what}' is not a regular file")
    at(diag, "main.train.hcl", 3)


def test_file_of_a_fifo_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    write(tmp_path, local('file("fifo")'))
    assert problem(tmp_path).message == "file: 'fifo' is not a regular file"


def test_file_past_the_size_limit(tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_bytes(b"x" * (MAX_FILE_BYTES + 1))
    write(tmp_path, local('filesha256("big.bin")'))
    diag = problem(tmp_path)
    assert f"larger than {MAX_FILE_BYTES} bytes (the limit of file and filesha256)" in (
        diag.message
    )
    (tmp_path / "big.bin").write_bytes(b"x" * MAX_FILE_BYTES)  # at the limit: read
    validate_config(tmp_path, VariableInputs(environ={}))


# --------------------------------------------------------------------------- YAML


def test_a_control_character_in_yaml_is_a_diagnostic(tmp_path: Path) -> None:
    write(tmp_path, 'workspace:\n  w:\n    description: "a\x01b"\n', "main.train.yaml")
    diag = problem(tmp_path)
    assert diag.message.startswith("YAML syntax error: character '\\x01' (#x0001)")
    at(diag, "main.train.yaml", 3, 20)


def test_yaml_billion_laughs_is_refused_without_expanding(tmp_path: Path) -> None:
    lines = ["locals:", "  a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]"]
    for i in range(1, 9):
        prev, name = chr(96 + i), chr(97 + i)
        lines.append(f"  {name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    write(tmp_path, "\n".join(lines) + "\n", "main.train.yaml")
    diag = problem(tmp_path)
    assert f"YAML aliases repeat more than {MAX_COLLECTION_SIZE} values" in diag.message
    at(diag, "main.train.yaml", 9)  # the anchor repeated most


def test_yaml_billion_laughs_in_yamldecode(tmp_path: Path) -> None:
    doc = "a: &a [x,x,x,x,x,x,x,x,x]\\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\\n" for i in range(7)
    )
    write(tmp_path, local(f'yamldecode("{doc}")'))
    diag = problem(tmp_path)
    assert diag.message.startswith("yamldecode: a value may hold at most")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("!!binary aGVsbG8=", "unsupported YAML tag '!!binary'"),
        ("!custom 1", "unsupported YAML tag '!custom'"),
        (".inf", "a number must be finite"),
    ],
)
def test_yaml_scalars_other_than_plain_values(tmp_path: Path, value: str, message: str) -> None:
    write(tmp_path, f"locals:\n  x: {value}\n", "main.train.yaml")
    diag = problem(tmp_path)
    assert diag.message.startswith(message)
    at(diag, "main.train.yaml", 2)


def test_a_yaml_timestamp_stays_the_text_it_was_written_as(tmp_path: Path) -> None:
    write(
        tmp_path,
        'workspace:\n  w:\n    description: 2024-01-02\noutput:\n  d:\n    value: "${workspace.w.description}"\n',
        "main.train.yaml",
    )
    session = Session.open(tmp_path, VariableInputs(environ={}))
    plan, _ = session.make_plan(PlanOptions())
    changes = {c.address: c for c in plan.changes}
    assert changes["workspace.w"].after["description"] == "2024-01-02"


# --------------------------------------------------------------------------- regular expressions


def test_catastrophic_backtracking_is_linear_with_re2(tmp_path: Path) -> None:
    text = "a" * 5000 + "b"
    write(
        tmp_path,
        WORKSPACE + "locals {\n"
        f'  x = replace("{text}", "/^(a|aa)+$/", "x")\n'
        '  y = replace("aaaa", "/^(a|aa)+$/", "x")\n'
        f'  z = length(regexall("(a|aa)+$", "{text}"))\n'
        "}\n",
    )
    started = time.monotonic()
    session = Session.open(tmp_path, VariableInputs(environ={}))
    session.make_plan(PlanOptions())
    assert time.monotonic() - started < HANG
    from trainform.config.evaluate import Evaluator

    evaluated = Evaluator(session.module, session.variables, session.functions).run(lambda inst: {})
    assert evaluated.locals["x"] == text
    assert evaluated.locals["y"] == "x"
    assert evaluated.locals["z"] == 0


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [("(a)\\\\1", "invalid escape sequence"), ("(?=a)", "invalid perl operator")],
)
def test_regexes_take_terraforms_re2_syntax(tmp_path: Path, pattern: str, reason: str) -> None:
    write(tmp_path, local(f'regex("{pattern}", "aa")'))
    diag = problem(tmp_path)
    assert diag.message.startswith("regex: invalid regular expression")
    assert reason in diag.message
