"""The configuration language, end to end through real files: a directory written to
``tmp_path``, loaded with ``load_module`` and evaluated with ``Evaluator`` (or planned through a
``Session`` where unknown values matter). Diagnostics are checked down to line and column."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from trainform.config.evaluate import Evaluator, resolve_variables
from trainform.config.loader import load_module
from trainform.config.model import Evaluated, Instance
from trainform.config.values import UNKNOWN, FunctionContext
from trainform.config.variables import VariableInputs, collect_values
from trainform.engine.session import Session
from trainform.errors import ConfigError, Diagnostic
from trainform.planner.diff import PlanOptions


def write(directory: Path, text: str, name: str = "main.train.hcl") -> Path:
    """Write a configuration file; the first non-blank line of ``text`` is line 1."""
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def unknown_facts(inst: Instance) -> dict[str, Any]:
    """What plan time knows about resources that do not exist yet: no computed value."""
    return {k: UNKNOWN for k, a in inst.resource.schema.attributes.items() if a.computed}


def evaluate_dir(directory: Path, cli: tuple[tuple[str, str], ...] = ()) -> Evaluated:
    module = load_module(directory)
    functions = FunctionContext(module.directory)
    raw = collect_values(
        module.directory, module.variables, VariableInputs(cli=cli, environ={}), functions
    )
    variables = resolve_variables(module, raw, None, functions)
    return Evaluator(module, variables, functions).run(unknown_facts)


def evaluate_text(tmp_path: Path, text: str, name: str = "main.train.hcl") -> Evaluated:
    write(tmp_path, text, name)
    return evaluate_dir(tmp_path)


def local_value(tmp_path: Path, expr: str) -> Any:
    return evaluate_text(tmp_path, f"locals {{\n  x = {expr}\n}}\n").locals["x"]


def diagnostics(tmp_path: Path, text: str, name: str = "main.train.hcl") -> list[Diagnostic]:
    write(tmp_path, text, name)
    with pytest.raises(ConfigError) as info:
        evaluate_dir(tmp_path)
    return info.value.diagnostics


def only(diags: list[Diagnostic]) -> Diagnostic:
    assert len(diags) == 1, [str(d) for d in diags]
    return diags[0]


def at(diag: Diagnostic, name: str, line: int, column: int) -> None:
    assert diag.pos is not None, str(diag)
    assert (Path(diag.pos.file).name, diag.pos.line, diag.pos.column) == (name, line, column), str(
        diag
    )


# --------------------------------------------------------------------------- operators


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3.5),
        ("8 / 2", 4),
        ("7 % 3", 1),
        ("-5 + 2", -3),
        ("2.5 * 2", 5),
        ("10 - 2 - 3", 5),
        ('"3" + 4', 7),
        ("1 < 2", True),
        ("2 <= 2", True),
        ("3 > 4", False),
        ("4 >= 5", False),
        ("1 == 1.0", True),
        ('1 == "1"', False),
        ('"a" != "b"', True),
        ("[1, 2] == [1, 2]", True),
        ("{ a = 1 } == { a = 2 }", False),
        ("!true", False),
        ("true && false", False),
        ("false || true", True),
        ("1 < 2 && 3 >= 3", True),
        # the right operand is never evaluated when the left decides
        ("false && 1 / 0 == 1", False),
        ("true || 1 / 0 == 1", True),
        ('true ? "yes" : "no"', "yes"),
        ('1 > 2 ? "yes" : "no"', "no"),
        ("true ? 1 : 1 / 0", 1),
        ('2 > 1 ? (1 > 2 ? "a" : "b") : "c"', "b"),
    ],
)
def test_operators(tmp_path: Path, expr: str, expected: Any) -> None:
    value = local_value(tmp_path, expr)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("expr", "message", "column"),
    [
        ("1 / 0", "division by zero", 11),
        ('"a" + 1', "operator + needs numbers, got string 'a'", 7),
        ("1 ? 2 : 3", "condition must be a bool, got number", 7),
        ("true && 1", "operator && needs bools, got number", 15),
        ("!3", "operator ! needs a bool, got number", 7),
    ],
)
def test_operator_errors_point_at_the_operand(
    tmp_path: Path, expr: str, message: str, column: int
) -> None:
    diag = only(diagnostics(tmp_path, f"locals {{\n  x = {expr}\n}}\n"))
    assert diag.message == message
    at(diag, "main.train.hcl", 2, column)


# --------------------------------------------------------------------------- strings


def test_string_templates(tmp_path: Path) -> None:
    ev = evaluate_text(
        tmp_path,
        r"""
        variable "n" {
          default = 3
        }
        variable "names" {
          default = ["x", "y"]
        }
        locals {
          s      = "n=${var.n}"
          whole  = "${var.names}"
          number = "${var.n}"
          spaced = "${ var.n }"
          escape = "$${literal}"
          nested = "a-${"b-${var.n}"}"
          choose = "${var.n > 2 ? "big" : "small"}!"
          flag   = "flag=${true}"
          float  = "${1.5}x"
          quotes = "say \"hi\"\tnow"
        }
        """,
    )
    assert ev.locals == {
        "s": "n=3",
        "whole": ["x", "y"],  # a lone interpolation keeps its value's type
        "number": 3,
        "spaced": 3,
        "escape": "${literal}",
        "nested": "a-b-3",
        "choose": "big!",
        "flag": "flag=true",
        "float": "1.5x",
        "quotes": 'say "hi"\tnow',
    }


def test_interpolating_a_list_into_text_is_an_error_with_a_hint(tmp_path: Path) -> None:
    diag = only(
        diagnostics(
            tmp_path,
            """
            locals {
              l = [1, 2]
              x = "items: ${local.l}"
            }
            """,
        )
    )
    assert diag.message == "cannot interpolate a list into a string"
    assert "jsonencode" in diag.hint
    at(diag, "main.train.hcl", 3, 17)


def test_heredocs_with_interpolation(tmp_path: Path) -> None:
    ev = evaluate_text(
        tmp_path,
        """
        variable "n" {
          default = 3
        }
        locals {
          plain = <<EOT
        hello ${var.n}
          world
        EOT
          trimmed = <<-EOT
            first ${upper("x")}
              second
            EOT
        }
        """,
    )
    assert ev.locals["plain"] == "hello 3\n  world\n"
    assert ev.locals["trimmed"] == "first X\n  second\n"


def test_heredoc_references_order_evaluation(tmp_path: Path) -> None:
    """A local used only inside a heredoc is still evaluated first."""
    ev = evaluate_text(
        tmp_path,
        """
        locals {
          a = <<EOT
        b is ${local.b}
        EOT
          b = "bee"
        }
        """,
    )
    assert ev.locals["a"] == "b is bee\n"


def test_heredoc_reference_to_a_resource_is_a_dependency(tmp_path: Path) -> None:
    write(
        tmp_path,
        """
        workspace "ws" {}
        compute "box" {
          type        = "local"
          description = <<EOT
        store: ${workspace.ws.path}
        EOT
        }
        """,
    )
    assert load_module(tmp_path).dependencies["compute.box"] == ("workspace.ws",)


def test_heredoc_diagnostic_names_the_line_inside_the_heredoc(tmp_path: Path) -> None:
    diag = only(
        diagnostics(
            tmp_path,
            """
            variable "region" {
              default = "x"
            }
            locals {
              h = <<EOT
            line one
            value ${var.regoin}
            EOT
            }
            """,
        )
    )
    assert diag.message == "reference to undeclared variable 'var.regoin'"
    assert diag.hint == 'did you mean "region"?'
    at(diag, "main.train.hcl", 7, 9)


def test_heredoc_evaluation_error_names_the_line_inside_the_heredoc(tmp_path: Path) -> None:
    diag = only(
        diagnostics(
            tmp_path,
            """
            locals {
              h = <<EOT
            one
            two ${1 + "a"}
            EOT
            }
            """,
        )
    )
    assert diag.message == "operator + needs numbers, got string 'a'"
    at(diag, "main.train.hcl", 4, 11)


def test_sensitive_value_in_a_heredoc_output_needs_sensitive_true(tmp_path: Path) -> None:
    diag = only(
        diagnostics(
            tmp_path,
            """
            variable "token" {
              default   = "hunter2"
              sensitive = true
            }
            output "o" {
              value = <<EOT
            ${var.token}
            EOT
            }
            """,
        )
    )
    assert diag.message == "output 'o' refers to sensitive values"
    assert diag.hint == "set sensitive = true in the output block"


def test_sensitive_and_nonsensitive_mark_locals_and_outputs(tmp_path: Path) -> None:
    """sensitive() in a local makes what uses it sensitive; nonsensitive() lets an output
    show a value derived from a secret without sensitive = true (as Terraform)."""
    evaluated = evaluate_text(
        tmp_path,
        """
        variable "token" {
          default   = "hunter2"
          sensitive = true
        }
        locals {
          hidden = sensitive("made-up")
        }
        environment "env" {
          variables = { A = local.hidden, B = "plain" }
        }
        output "length" {
          value = nonsensitive(length(var.token))
        }
        """,
    )
    assert evaluated.instances["environment.env"].sensitive == frozenset({"variables.A"})
    assert evaluated.outputs["length"] == (7, False)
    assert "local.hidden" in evaluated.sensitivity.nodes


# --------------------------------------------------------------------------- collections


def test_lists_maps_and_indexing(tmp_path: Path) -> None:
    ev = evaluate_text(
        tmp_path,
        """
        locals {
          l     = [1, "two", [3]]
          k     = "dyn"
          m     = { a = 1, "b-c" = 2, (local.k) = 3, 4 = "four" }
          i0    = local.l[0]
          i2    = local.l[2][0]
          str_i = local.l["1"]
          dash  = local.m["b-c"]
          dot   = local.m.a
          dyn   = local.m[local.k]
          num   = local.m[4]
          empty = []
        }
        """,
    )
    assert ev.locals["m"] == {"a": 1, "b-c": 2, "dyn": 3, "4": "four"}
    got = {k: ev.locals[k] for k in ("i0", "i2", "str_i", "dash", "dot", "dyn", "num", "empty")}
    assert got == {
        "i0": 1,
        "i2": 3,
        "str_i": "two",
        "dash": 2,
        "dot": 1,
        "dyn": 3,
        "num": "four",
        "empty": [],
    }


@pytest.mark.parametrize(
    ("expr", "message", "hint"),
    [
        ("local.l[5]", "index 5 out of range (length 2)", ""),
        ('local.m["bet"]', "no key 'bet'", 'did you mean "beta"?'),
        ("local.m.alpah", "no attribute 'alpah'", 'did you mean "alpha"?'),
        (
            "local.l.name",
            "cannot read attribute 'name' of a list",
            "index it first ([0]) or use a splat ([*])",
        ),
        ('local.l["x"]', "a list index must be a number, got string", ""),
    ],
)
def test_indexing_errors(tmp_path: Path, expr: str, message: str, hint: str) -> None:
    diags = diagnostics(
        tmp_path,
        f"""
        locals {{
          l = [1, 2]
          m = {{ alpha = 1, beta = 2 }}
          x = {expr}
        }}
        """,
    )
    diag = only(diags)
    assert (diag.message, diag.hint) == (message, hint)
    assert diag.pos is not None and diag.pos.line == 4


def test_for_expressions(tmp_path: Path) -> None:
    ev = evaluate_text(
        tmp_path,
        """
        locals {
          evens   = [for x in [1, 2, 3, 4] : x * 10 if x % 2 == 0]
          upper   = { for k, v in { a = 1, b = 2 } : upper(k) => v + 1 }
          big     = { for k, v in { a = 1, b = 2 } : k => v if v > 1 }
          indexed = [for i, x in ["p", "q"] : "${i}:${x}"]
          grouped = { for x in ["a1", "a2", "b1"] : substr(x, 0, 1) => x... }
          values  = [for k, v in { z = 26, a = 1 } : "${k}=${v}"]
        }
        """,
    )
    assert ev.locals["evens"] == [20, 40]
    assert ev.locals["upper"] == {"A": 2, "B": 3}
    assert ev.locals["big"] == {"b": 2}
    assert ev.locals["indexed"] == ["0:p", "1:q"]
    assert ev.locals["grouped"] == {"a": ["a1", "a2"], "b": ["b1"]}
    assert ev.locals["values"] == ["a=1", "z=26"]  # maps are iterated in key order, as in HCL


def test_for_expression_duplicate_key_suggests_grouping(tmp_path: Path) -> None:
    diag = only(diagnostics(tmp_path, 'locals {\n  x = { for s in ["a", "a"] : s => 1 }\n}\n'))
    assert diag.message == "duplicate key 'a' in for expression"
    assert diag.hint == "add '...' to group"


def test_for_expression_variables_do_not_leak_as_references(tmp_path: Path) -> None:
    """``x`` in a for expression is bound, not an undeclared reference."""
    ev = evaluate_text(tmp_path, "locals {\n  x = [for each_item in [1] : each_item + 1]\n}\n")
    assert ev.locals["x"] == [2]


# --------------------------------------------------------------------------- resources


def test_count_index_and_splat(tmp_path: Path) -> None:
    ev = evaluate_text(
        tmp_path,
        """
        compute "gpu" {
          type  = "local"
          count = 2
          tags  = { idx = "n${count.index}" }
        }
        output "tags" {
          value = compute.gpu[*].tags
        }
        output "idx" {
          value = compute.gpu[*].tags.idx
        }
        output "first" {
          value = compute.gpu[0].tags.idx
        }
        """,
    )
    assert sorted(ev.instances) == ["compute.gpu[0]", "compute.gpu[1]"]
    assert ev.instances["compute.gpu[1]"].attributes["tags"] == {"idx": "n1"}
    assert ev.outputs["tags"] == ([{"idx": "n0"}, {"idx": "n1"}], False)
    assert ev.outputs["idx"] == (["n0", "n1"], False)
    assert ev.outputs["first"] == ("n0", False)


def test_count_zero_makes_no_instances_and_an_empty_splat(tmp_path: Path) -> None:
    ev = evaluate_text(
        tmp_path,
        """
        compute "gpu" {
          type  = "local"
          count = 0
        }
        output "all" {
          value = compute.gpu[*].tags
        }
        """,
    )
    assert ev.instances == {}
    assert ev.outputs["all"] == ([], False)


def test_for_each_over_a_map_and_a_set(tmp_path: Path) -> None:
    ev = evaluate_text(
        tmp_path,
        """
        compute "named" {
          type        = "local"
          for_each    = { beta = "B", alpha = "A" }
          description = "${each.key}=${each.value}"
        }
        compute "set" {
          type        = "local"
          for_each    = toset(["z", "y", "z"])
          description = "${each.key}/${each.value}"
        }
        output "descriptions" {
          value = [for k, c in compute.named : c.description]
        }
        output "one" {
          value = compute.set["y"].description
        }
        """,
    )
    got = {a: i.attributes["description"] for a, i in ev.instances.items()}
    assert got == {
        'compute.named["alpha"]': "alpha=A",
        'compute.named["beta"]': "beta=B",
        'compute.set["y"]': "y/y",
        'compute.set["z"]': "z/z",
    }
    assert ev.outputs["descriptions"] == (["alpha=A", "beta=B"], False)
    assert ev.outputs["one"] == ("y/y", False)


def test_for_each_rejects_a_list_with_duplicates_and_a_number(tmp_path: Path) -> None:
    diag = only(
        diagnostics(tmp_path, 'compute "a" {\n  type = "local"\n  for_each = ["x", "x"]\n}\n')
    )
    assert diag.message == "for_each set has duplicate elements"
    at(diag, "main.train.hcl", 3, 14)
    diag = only(diagnostics(tmp_path, 'compute "a" {\n  type = "local"\n  for_each = 3\n}\n'))
    assert diag.message == "for_each must be a map or a list of strings"
    assert diag.hint == "use toset([...]) or a map"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "description = count.index",
            "count.index is only available in a resource that sets count",
        ),
        ("description = each.key", "each.* is only available in a resource that sets for_each"),
    ],
)
def test_count_and_each_outside_their_blocks(tmp_path: Path, body: str, message: str) -> None:
    diag = only(diagnostics(tmp_path, f'compute "a" {{\n  type = "local"\n  {body}\n}}\n'))
    assert diag.message == message
    at(diag, "main.train.hcl", 3, 17)


def test_count_must_be_a_whole_number(tmp_path: Path) -> None:
    diag = only(diagnostics(tmp_path, 'compute "a" {\n  type = "local"\n  count = 1.5\n}\n'))
    assert diag.message == "count must be a whole number >= 0, got 1.5"
    at(diag, "main.train.hcl", 3, 11)


def test_path_module_and_file_functions(tmp_path: Path) -> None:
    (tmp_path / "msg.txt").write_text("from a file\n")
    ev = evaluate_text(
        tmp_path,
        """
        locals {
          dir  = path.module
          msg  = trimspace(file("msg.txt"))
          full = file("${path.module}/msg.txt")
        }
        """,
    )
    assert ev.locals["dir"] == str(tmp_path.resolve())
    assert ev.locals["msg"] == "from a file"
    assert ev.locals["full"] == "from a file\n"


def test_functions_through_the_evaluator(tmp_path: Path) -> None:
    ev = evaluate_text(
        tmp_path,
        """
        locals {
          up     = upper("abc")
          joined = join("-", ["a", "b"])
          spread = max([3, 9, 2]...)
          fmt    = format("%s-%s", ["x", "y"]...)
          mixed  = format("%s:%s:%s", "a", ["b", "c"]...)
          merged = merge({ a = 1 }, { b = 2 })
          len    = length(local.merged)
        }
        """,
    )
    got = {k: ev.locals[k] for k in ("up", "joined", "spread", "fmt", "mixed", "merged", "len")}
    assert got == {
        "up": "ABC",
        "joined": "a-b",
        "spread": 9,
        "fmt": "x-y",
        "mixed": "a:b:c",
        "merged": {"a": 1, "b": 2},
        "len": 2,
    }


def test_function_errors(tmp_path: Path) -> None:
    diag = only(diagnostics(tmp_path, 'locals {\n  x = uper("a")\n}\n'))
    assert diag.message == "unknown function 'uper'"
    assert diag.hint == 'did you mean "upper"?'
    at(diag, "main.train.hcl", 2, 7)
    diag = only(diagnostics(tmp_path, "locals {\n  x = max(3...)\n}\n"))
    assert diag.message == "'...' expands a list"
    diag = only(diagnostics(tmp_path, 'locals {\n  x = file("missing.txt")\n}\n'))
    assert diag.message == "file: cannot read file 'missing.txt': No such file or directory"
    at(diag, "main.train.hcl", 2, 7)


# --------------------------------------------------------------------------- unknown values


UNKNOWN_CONFIG = """
workspace "ws" {}
locals {
  sub = "${workspace.ws.path}/sub"
}
compute "box" {
  type        = "local"
  description = upper(local.sub)
  tags        = { store = workspace.ws.path, fixed = "yes" }
}
compute "plain" {
  type        = "local"
  description = workspace.ws.path == "" ? "empty" : "set"
}
output "store" {
  value = workspace.ws.path
}
output "known" {
  value = "fixed"
}
"""


def test_unknown_values_propagate_to_after_unknown(tmp_path: Path) -> None:
    write(tmp_path, UNKNOWN_CONFIG)
    session = Session.open(tmp_path, VariableInputs(environ={}))
    try:
        plan, _ = session.make_plan(PlanOptions())
    finally:
        session.close()
    changes = {c.address: c for c in plan.changes}
    box = changes["compute.box"]
    assert box.actions == ("create",)
    # an attribute built from an unknown (through a local, a function, a map) is unknown
    assert {"description", "tags"} <= set(box.after_unknown)
    assert box.after is not None
    assert "description" not in box.after
    assert "tags" not in box.after  # a map with one unknown entry is unknown as a whole
    assert box.after["max_concurrent_runs"] == 1
    assert "description" in changes["compute.plain"].after_unknown
    assert {"id", "path"} <= set(changes["workspace.ws"].after_unknown)
    outputs = {o.name: o for o in plan.outputs}
    assert outputs["store"].after_unknown is True
    assert outputs["store"].after is None
    assert outputs["known"].after_unknown is False
    assert outputs["known"].after == "fixed"


def test_unknown_values_through_every_kind_of_expression(tmp_path: Path) -> None:
    """Before compute.box exists its facts are unknown; whatever is built from them is
    unknown too (never an error), and what does not depend on them stays known."""
    ev = evaluate_text(
        tmp_path,
        """
        compute "box" {
          type = "local"
        }
        locals {
          over_map  = { for k, v in compute.box.facts : k => v }
          over_list = [for g in compute.box.facts.gpus : g.name]
          filtered  = [for x in [1, 2] : x if x == compute.box.facts.cpus]
          keyed     = { for x in ["a"] : compute.box.workdir_path => x }
          values    = [for x in [1, 2] : compute.box.facts.cpus * x]
          cond      = compute.box.facts.cpus > 4 ? "big" : "small"
          text      = "dir: ${compute.box.workdir_path}"
          call      = upper(compute.box.workdir_path)
          index     = compute.box.facts["cpus"]
          compare   = compute.box.workdir_path == "/x"
          short     = false && compute.box.facts.cpus > 1
          known     = [for x in [1, 2] : x * 2]
        }
        """,
    )
    unknown = {k for k, v in ev.locals.items() if v is UNKNOWN}
    assert unknown == {
        "over_map",
        "over_list",
        "filtered",
        "keyed",
        "cond",
        "text",
        "call",
        "index",
        "compare",
    }
    assert ev.locals["values"] == [UNKNOWN, UNKNOWN]
    assert ev.locals["short"] is False
    assert ev.locals["known"] == [2, 4]


def test_depends_on_adds_an_edge_and_is_checked(tmp_path: Path) -> None:
    write(
        tmp_path,
        """
        workspace "a" {}
        compute "b" {
          type       = "local"
          depends_on = [workspace.a]
        }
        """,
    )
    module = load_module(tmp_path)
    assert module.dependencies["compute.b"] == ("workspace.a",)
    ev = evaluate_dir(tmp_path)
    assert ev.instances["compute.b"].depends_on == ("workspace.a",)

    diag = only(
        diagnostics(
            tmp_path,
            """
            workspace "a" {}
            compute "b" {
              type       = "local"
              depends_on = [workspace.b]
            }
            """,
        )
    )
    assert diag.message == "depends_on: 'workspace.b' is not a resource in this configuration"
    assert diag.hint == 'did you mean "workspace.a"?'


# --------------------------------------------------------------------------- diagnostics


def test_unknown_reference_with_did_you_mean(tmp_path: Path) -> None:
    diags = diagnostics(
        tmp_path,
        """
        variable "region" {
          default = "x"
        }
        locals {
          a = var.regoin
          b = locl.x
          c = local.aa
        }
        """,
    )
    assert len(diags) == 3
    by_line = {d.pos.line: d for d in diags if d.pos}
    assert by_line[5].message == "reference to undeclared variable 'var.regoin'"
    assert by_line[5].hint == 'did you mean "region"?'
    at(by_line[5], "main.train.hcl", 5, 7)
    assert by_line[6].message == "unknown reference 'locl'"
    assert by_line[6].hint == 'did you mean "local"?'
    at(by_line[6], "main.train.hcl", 6, 7)
    assert by_line[7].message == "reference to undeclared local value 'local.aa'"
    assert by_line[7].hint == 'did you mean "a"?'


def test_unsupported_attribute(tmp_path: Path) -> None:
    diag = only(diagnostics(tmp_path, 'compute "a" {\n  type = "local"\n  descripton = "x"\n}\n'))
    assert diag.message == "unsupported attribute 'descripton' in compute \"a\""
    assert diag.hint == 'did you mean "description"?'
    at(diag, "main.train.hcl", 3, 3)


def test_unsupported_attribute_of_a_resource_value(tmp_path: Path) -> None:
    diag = only(
        diagnostics(
            tmp_path,
            """
            compute "a" {
              type = "local"
            }
            locals {
              x = compute.a.factz
            }
            """,
        )
    )
    assert diag.message == "no attribute 'factz'"
    assert diag.hint == 'did you mean "facts"?'
    at(diag, "main.train.hcl", 5, 17)


def test_computed_attribute_cannot_be_set(tmp_path: Path) -> None:
    diag = only(diagnostics(tmp_path, 'compute "a" {\n  type = "local"\n  facts = {}\n}\n'))
    assert diag.message == "'facts' is computed by trainform and cannot be set"
    at(diag, "main.train.hcl", 3, 3)


def test_duplicate_attribute(tmp_path: Path) -> None:
    diag = only(
        diagnostics(
            tmp_path,
            """
            compute "a" {
              type        = "local"
              description = "x"
              description = "y"
            }
            """,
        )
    )
    assert diag.message == "attribute 'description' is set twice in this block"
    assert diag.hint == "first set at line 3"
    at(diag, "main.train.hcl", 4, 3)


def test_duplicate_block(tmp_path: Path) -> None:
    diag = only(
        diagnostics(
            tmp_path,
            """
            compute "a" {
              type = "local"
            }

            compute "a" {
              type = "local"
            }
            """,
        )
    )
    assert diag.message == "compute.a is declared twice"
    assert diag.hint.startswith("first declared at ")
    assert diag.hint.endswith("main.train.hcl:1:1")
    at(diag, "main.train.hcl", 5, 1)


def test_duplicate_block_across_hcl_and_yaml_files(tmp_path: Path) -> None:
    write(tmp_path, 'compute "a" {\n  type = "local"\n}\n', "a.train.hcl")
    diag = only(
        diagnostics(
            tmp_path, "compute:\n  b:\n    type: local\n  a:\n    type: local\n", "b.train.yaml"
        )
    )
    assert diag.message == "compute.a is declared twice"
    assert diag.hint.endswith("a.train.hcl:1:1")
    at(diag, "b.train.yaml", 4, 3)


def test_wrong_label_count(tmp_path: Path) -> None:
    diags = diagnostics(
        tmp_path,
        """
        compute "a" "b" {
          type = "local"
        }
        locals "x" {
        }
        output {
          value = 1
        }
        """,
    )
    assert [(d.message, d.pos.line if d.pos else 0) for d in diags] == [
        ("block 'compute' takes 1 label, got 2", 1),
        ("block 'locals' takes 0 labels, got 1", 4),
        ("block 'output' takes 1 label, got 0", 6),
    ]
    assert diags[0].hint == 'e.g. compute "name" { ... }'


def test_unknown_block_type(tmp_path: Path) -> None:
    diags = diagnostics(tmp_path, 'local {\n  x = 1\n}\ncompte "a" {\n}\n')
    assert [(d.message, d.hint) for d in diags] == [
        ("unknown block type 'local'", 'did you mean "locals"?'),
        ("unknown block type 'compte'", 'did you mean "compute"?'),
    ]
    at(diags[0], "main.train.hcl", 1, 1)
    at(diags[1], "main.train.hcl", 4, 1)


def cycle(message: str) -> list[str]:
    """The nodes of "dependency cycle: a -> b -> a", without the repeated first one."""
    prefix = "dependency cycle: "
    assert message.startswith(prefix), message
    nodes = message[len(prefix) :].split(" -> ")
    assert nodes[0] == nodes[-1], message
    return nodes[:-1]


def rotation(chain: list[str], expected: list[str]) -> bool:
    """True if ``chain`` is ``expected`` (a cycle in reference order) started anywhere."""
    if sorted(chain) != sorted(expected):
        return False
    i = expected.index(chain[0])
    return chain == expected[i:] + expected[:i]


def test_cycle_through_locals(tmp_path: Path) -> None:
    diag = only(
        diagnostics(
            tmp_path,
            """
            locals {
              a = local.b
              b = "${local.c}!"
              c = [local.a]
            }
            """,
        )
    )
    chain = cycle(diag.message)
    assert rotation(chain, ["local.a", "local.b", "local.c"])
    assert diag.hint == "break one of these references"
    # the diagnostic points at the declaration of the first node it names
    at(diag, "main.train.hcl", {"local.a": 2, "local.b": 3, "local.c": 4}[chain[0]], 3)


def test_cycle_through_resources(tmp_path: Path) -> None:
    diag = only(
        diagnostics(
            tmp_path,
            """
            compute "a" {
              type        = "local"
              description = compute.b.workdir_path
            }
            compute "b" {
              type       = "local"
              depends_on = [compute.a]
            }
            """,
        )
    )
    chain = cycle(diag.message)
    assert rotation(chain, ["compute.a", "compute.b"])
    at(diag, "main.train.hcl", {"compute.a": 1, "compute.b": 5}[chain[0]], 1)


def test_cycle_through_a_resource_and_a_local(tmp_path: Path) -> None:
    diag = only(
        diagnostics(
            tmp_path,
            """
            locals {
              name = compute.a.workdir_path
            }
            compute "a" {
              type        = "local"
              description = local.name
            }
            """,
        )
    )
    chain = cycle(diag.message)
    assert rotation(chain, ["compute.a", "local.name"])
    at(diag, "main.train.hcl", *{"compute.a": (4, 1), "local.name": (2, 3)}[chain[0]])


def test_count_and_for_each_together(tmp_path: Path) -> None:
    diag = only(
        diagnostics(
            tmp_path,
            """
            compute "a" {
              type     = "local"
              count    = 1
              for_each = {}
            }
            """,
        )
    )
    assert diag.message == "count and for_each cannot both be set"
    at(diag, "main.train.hcl", 4, 3)


def test_self_reference(tmp_path: Path) -> None:
    diag = only(
        diagnostics(
            tmp_path,
            """
            compute "a" {
              type        = "local"
              description = compute.a.workdir_path
            }
            """,
        )
    )
    assert diag.message == "compute.a refers to itself"
    at(diag, "main.train.hcl", 3, 17)


def test_syntax_error_position(tmp_path: Path) -> None:
    diag = only(diagnostics(tmp_path, 'compute "a" {\n  type = "local"\n  tags = { a = }\n}\n'))
    assert diag.message.startswith("syntax error")
    assert diag.pos is not None and diag.pos.line == 3


def test_several_independent_problems_are_reported_together(tmp_path: Path) -> None:
    diags = diagnostics(
        tmp_path,
        """
        compute "a" {
          type = "local"
          descripton = "x"
        }
        workspace "w" {
          tagz = {}
        }
        """,
    )
    assert sorted((d.pos.line if d.pos else 0) for d in diags) == [3, 6]


# --------------------------------------------------------------------------- YAML


def test_yaml_typed_literals(tmp_path: Path) -> None:
    ev = evaluate_text(
        tmp_path,
        """
        locals:
          i: 2
          f: 1.5
          b: true
          n: null
          s: "2"
          q: 'false'
          sum: "${local.i + 1}"
          text: "n=${local.i}"
          lst: [1, "a", true]
          mp: {k: 1}
        """,
        "main.train.yaml",
    )
    assert ev.locals == {
        "i": 2,
        "f": 1.5,
        "b": True,
        "n": None,
        "s": "2",
        "q": "false",
        "sum": 3,
        "text": "n=2",
        "lst": [1, "a", True],
        "mp": {"k": 1},
    }
    assert type(ev.locals["s"]) is str


def test_yaml_resources_mirror_hcl(tmp_path: Path) -> None:
    ev = evaluate_text(
        tmp_path,
        """
        variable:
          team:
            default: ml
        compute:
          gpu:
            type: local
            count: 2
            max_concurrent_runs: "2"
            tags:
              team: "${var.team}"
              n: 1
            description: "idx ${count.index}"
            lifecycle:
              ignore_changes: [description]
        """,
        "main.train.yaml",
    )
    inst = ev.instances["compute.gpu[1]"]
    assert inst.attributes["description"] == "idx 1"
    assert inst.attributes["max_concurrent_runs"] == 2  # converted to the schema's number
    assert inst.attributes["tags"] == {"team": "ml", "n": "1"}  # map(string)
    assert inst.resource.lifecycle.ignore_changes == ("description",)


def test_yaml_and_hcl_files_refer_to_each_other(tmp_path: Path) -> None:
    write(tmp_path, 'workspace "ws" {\n  description = local.text\n}\n', "a.train.hcl")
    write(tmp_path, 'locals:\n  text: "hello"\n', "b.train.yaml")
    ev = evaluate_dir(tmp_path)
    assert ev.instances["workspace.ws"].attributes["description"] == "hello"


def test_yaml_duplicate_key(tmp_path: Path) -> None:
    diag = only(diagnostics(tmp_path, "locals:\n  a: 1\n  b: 2\n  a: 3\n", "main.train.yaml"))
    assert diag.message == "key 'a' appears twice"
    assert diag.hint == "first at line 2"
    at(diag, "main.train.yaml", 4, 3)


def test_yaml_duplicate_resource_name(tmp_path: Path) -> None:
    text = "compute:\n  gpu:\n    type: local\n  cpu:\n    type: local\n  gpu:\n    type: local\n"
    diag = only(diagnostics(tmp_path, text, "main.train.yaml"))
    assert diag.message == "key 'gpu' appears twice"
    at(diag, "main.train.yaml", 6, 3)


@pytest.mark.parametrize(
    ("line", "message", "column"),
    [
        (
            'max_concurrent_runs: "two"',
            "compute.gpu: attribute 'max_concurrent_runs': expected a number, got string 'two'",
            26,
        ),
        ("tags: 5", "compute.gpu: attribute 'tags': expected a map, got number", 11),
        ("tags: [a]", "compute.gpu: attribute 'tags': expected a map, got list", 11),
    ],
)
def test_yaml_literal_of_the_wrong_type(
    tmp_path: Path, line: str, message: str, column: int
) -> None:
    diag = only(
        diagnostics(tmp_path, f"compute:\n  gpu:\n    type: local\n    {line}\n", "main.train.yaml")
    )
    assert diag.message == message
    at(diag, "main.train.yaml", 4, column)


def test_yaml_interpolation_diagnostics_point_into_the_file(tmp_path: Path) -> None:
    diags = diagnostics(
        tmp_path,
        """
        variable:
          region:
            default: x
        locals:
          a: "${var.regoin}"
          b: "pre ${ locl.x }"
        """,
        "main.train.yaml",
    )
    by_line = {d.pos.line: d for d in diags if d.pos}
    assert sorted(by_line) == [5, 6]
    assert by_line[5].message == "reference to undeclared variable 'var.regoin'"
    at(by_line[5], "main.train.yaml", 5, 9)
    assert by_line[6].message == "unknown reference 'locl'"
    at(by_line[6], "main.train.yaml", 6, 14)


def test_yaml_interpolation_evaluation_error_position(tmp_path: Path) -> None:
    diag = only(
        diagnostics(tmp_path, "locals:\n  a: 1\n  b: 'x${local.a + \"q\"}'\n", "main.train.yaml")
    )
    assert diag.message == "operator + needs numbers, got string 'q'"
    at(diag, "main.train.yaml", 3, 20)


def test_yaml_syntax_error_position(tmp_path: Path) -> None:
    diag = only(diagnostics(tmp_path, "locals:\n  a: [1, 2\n  b: 3\n", "main.train.yaml"))
    assert diag.message.startswith("YAML syntax error")
    assert diag.pos is not None and diag.pos.line == 3


def test_yaml_block_scalar_diagnostic_position(tmp_path: Path) -> None:
    diag = only(
        diagnostics(
            tmp_path,
            """
            locals:
              script: |
                echo one
                echo ${local.nope}
            """,
            "main.train.yaml",
        )
    )
    assert diag.message == "reference to undeclared local value 'local.nope'"
    at(diag, "main.train.yaml", 4, 12)


def test_trimmed_heredoc_diagnostic_position(tmp_path: Path) -> None:
    diag = only(
        diagnostics(
            tmp_path,
            """
            locals {
              h = <<-EOT
                  first
                    ${local.nope}
                  EOT
            }
            """,
        )
    )
    assert diag.message == "reference to undeclared local value 'local.nope'"
    at(diag, "main.train.hcl", 4, 11)


def test_yaml_block_scalar_with_interpolation(tmp_path: Path) -> None:
    ev = evaluate_text(
        tmp_path,
        """
        locals:
          n: 2
          script: |
            echo ${local.n}
            done
        """,
        "main.train.yaml",
    )
    assert ev.locals["script"] == "echo 2\ndone\n"
