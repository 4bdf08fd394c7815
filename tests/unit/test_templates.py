"""String template directives (%{if}, %{for}, strip markers) and templatefile(), through
real configuration files loaded and evaluated as a plan does.

Expected strings marked "Terraform" were obtained from Terraform 1.11.4 itself
(`terraform console`, and `locals` printed with `jsonencode(local.x)`), then hard-coded."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from trainform.config.evaluate import Evaluator, resolve_variables
from trainform.config.loader import load_module
from trainform.config.model import Evaluated, Instance
from trainform.config.values import MAX_EVALUATION_STEPS, UNKNOWN, FunctionContext
from trainform.config.variables import VariableInputs, collect_values
from trainform.errors import ConfigError, Diagnostic


def write(directory: Path, text: str, name: str = "main.train.hcl") -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def unknown_facts(inst: Instance) -> dict[str, Any]:
    return {k: UNKNOWN for k, a in inst.resource.schema.attributes.items() if a.computed}


def evaluate_dir(directory: Path) -> tuple[Evaluated, FunctionContext]:
    module = load_module(directory)
    functions = FunctionContext(module.directory)
    raw = collect_values(module.directory, module.variables, VariableInputs(environ={}), functions)
    variables = resolve_variables(module, raw, None, functions)
    return Evaluator(module, variables, functions).run(unknown_facts), functions


def locals_of(directory: Path, text: str, name: str = "main.train.hcl") -> dict[str, Any]:
    write(directory, text, name)
    return evaluate_dir(directory)[0].locals


def local_value(directory: Path, expr: str) -> Any:
    return locals_of(directory, f"locals {{\n  x = {expr}\n}}\n")["x"]


def diagnostic(directory: Path, text: str, name: str = "main.train.hcl") -> Diagnostic:
    write(directory, text, name)
    with pytest.raises(ConfigError) as info:
        evaluate_dir(directory)
    diags = info.value.diagnostics
    assert len(diags) == 1, [str(d) for d in diags]
    return diags[0]


def at(diag: Diagnostic, name: str, line: int, column: int) -> None:
    assert diag.pos is not None, str(diag)
    assert (diag.pos.file.replace(os.sep, "/").endswith(name), diag.pos.line, diag.pos.column) == (
        True,
        line,
        column,
    ), str(diag)


# --------------------------------------------------------------------------- quoted strings


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        # Terraform
        (r'"%{ for x in [1,2] ~}${x} %{~ endfor }"', "12"),
        (r'"%{if true}yes%{else}no%{endif}"', "yes"),
        (r'"%{if false}yes%{else}no%{endif}"', "no"),
        (r'"%{if "true"}yes%{endif}"', "yes"),
        (r'"%{if "false"}a%{else}b%{endif}"', "b"),
        (r'"a ${~ 1 ~} b"', "a1b"),
        (r'"a\n %{~ if true ~} \n b %{~ endif ~} \n c"', "abc"),
        (r'"%{ for k, v in {b=2, a=1} }${k}=${v};%{ endfor }"', "a=1;b=2;"),
        (r'"%{ for i, v in ["x","y"] }${i}:${v},%{ endfor }"', "0:x,1:y,"),
        (r'"%{for k, v in [10, 20]}${k}${v}%{endfor}"', "010120"),
        (r'"%{for x in {a=1}}${x}%{endfor}"', "1"),
        (r'"%%{ if true } $${x}"', "%{ if true } ${x}"),
        (r'"a $${~x} b"', "a ${~x} b"),
        (r'"%{if true}${1}%{endif}"', "1"),
        (r'"  ${~ 1 }"', "1"),  # a string: the stripped literal is still a part
        (r'"[%{ for x in [] }${x}%{ endfor }]"', "[]"),
        (r'"%{ for x in ["a","b"] }%{ if x == "b" }B%{ else }${x}%{ endif }%{ endfor }"', "aB"),
        (r'"%{for x in [1,2]}%{for y in ["a","b"]}${x}${y} %{endfor}%{endfor}"', "1a 1b 2a 2b "),
        (r'"%{if true ~}${""}  x%{endif}"', "  x"),  # a marker strips the next literal only
        (r'"x%{ for v in [1,2] ~}  ${v}  %{~ endfor ~}  y"', "x12y"),
        (r'"a  %{~ if true}%{~ if true}b%{endif}%{endif}"', "ab"),
        (r'"${"a"}${~"b"~}   c"', "abc"),
        (r'"%{if true}  %{~ endif} c"', " c"),
        (r'"a \u00a0%{~ if true}b%{endif}"', "ab"),
        (r'"%{for x in toset(["b","a"])}${x}%{endfor}"', "ab"),
    ],
)
def test_directives_in_quoted_strings_match_terraform(
    tmp_path: Path, expr: str, expected: str
) -> None:
    assert local_value(tmp_path, expr) == expected


def test_a_lone_interpolation_keeps_its_type_with_strip_markers(tmp_path: Path) -> None:
    values = locals_of(
        tmp_path,
        """
        locals {
          bare    = "${[1, 2]}"
          stripped = "${~ 1 ~}"
          wrapped = "%{ if true }${1}%{ endif }"
        }
        """,
    )
    assert values["bare"] == [1, 2]
    assert values["stripped"] == 1  # Terraform: 1
    assert values["wrapped"] == "1"  # Terraform: "1"


def test_strip_markers_leave_literal_tildes_and_comments_alone(tmp_path: Path) -> None:
    values = locals_of(
        tmp_path,
        """
        locals {
          a = "a ~} b ${"~}"} # ~}" # comment ~}
          b = "${~ "x" }" /* ${~ ~} */
        }
        """,
    )
    assert values == {"a": "a ~} b ~} # ~}", "b": "x"}


def test_a_stray_tilde_outside_a_template_is_a_syntax_error(tmp_path: Path) -> None:
    diag = diagnostic(tmp_path, "locals {\n  a = { b = 1 ~}\n}\n")
    assert diag.message == "syntax error: unexpected character '~'"
    at(diag, "main.train.hcl", 2, 15)


def test_for_over_a_variable_binds_names_and_sees_the_configuration(tmp_path: Path) -> None:
    values = locals_of(
        tmp_path,
        """
        variable "gpus" {
          default = { a100 = 2, v100 = 1 }
        }
        locals {
          prefix = "--"
          flags  = "%{ for name, n in var.gpus }${local.prefix}${name}=${n} %{ endfor }"
        }
        """,
    )
    assert values["flags"] == "--a100=2 --v100=1 "


# --------------------------------------------------------------------------- heredocs

HEREDOCS = """
locals {
  a = <<EOT
%{ for x in ["a", "b"] ~}
line ${x}
%{ endfor ~}
end
EOT
  b = <<-EOT
    %{~ for x in [1, 2] }
      item ${x}
    %{~ endfor }
    done
  EOT
  c = <<-EOT
    %{ if true ~}
    yes
    %{ else ~}
    no
    %{ endif ~}
  EOT
  d = <<EOT
  ${~ "x" ~}
  y
EOT
  f = <<-EOT
      deep
    %{ for x in [1] ~}
        ${x}
    %{ endfor ~}
  EOT
  g = <<-EOT
    %{ for x in ["p", "q"] ~}
    - ${x}
    %{ endfor ~}
    %%{ not a directive } $${ nor this }
  EOT
}
"""


def test_heredocs_match_terraform(tmp_path: Path) -> None:
    values = locals_of(tmp_path, HEREDOCS)
    # Terraform: in heredocs a strip marker reaches no further than its line, and <<- removes
    # the indentation common to the lines after the markers have stripped theirs.
    assert values["a"] == "line a\nline b\nend\n"
    assert values["b"] == "\n      item 1\n\n      item 2\n\n    done\n"
    assert values["c"] == "    yes\n"
    assert values["d"] == "x  y\n"
    assert values["f"] == "  deep\n        1\n"
    assert values["g"] == "    - p\n    - q\n    %{ not a directive } ${ nor this }\n"


def test_heredoc_directive_errors_name_their_line(tmp_path: Path) -> None:
    diag = diagnostic(
        tmp_path,
        """
        locals {
          h = <<-EOT
            one
            %{ for x in [1] }
            ${x}
          EOT
        }
        """,
    )
    assert diag.message == "%{for} without a matching %{endfor}: the template ends first"
    at(diag, "main.train.hcl", 4, 5)


# --------------------------------------------------------------------------- YAML


def test_directives_in_yaml_strings(tmp_path: Path) -> None:
    values = locals_of(
        tmp_path,
        """
        locals:
          lrs: [0.1, 0.2]
          flags: "%{ for i, lr in local.lrs }%{ if i > 0 } %{ endif }--lr ${lr}%{ endfor }"
          mode: "%{ if length(local.lrs) > 1 }sweep%{ else }single%{ endif }"
          escaped: "100%%{x}"
          lone: "${~ local.lrs ~}"
          block: |
            %{ for lr in local.lrs ~}
            lr=${lr}
            %{ endfor ~}
        """,
        "main.train.yaml",
    )
    assert values["flags"] == "--lr 0.1 --lr 0.2"
    assert values["mode"] == "sweep"
    assert values["escaped"] == "100%{x}"
    assert values["lone"] == [0.1, 0.2]
    # A YAML string is one literal, as a quoted HCL string is: the marker strips the newline
    # and the next line's indentation
    assert values["block"] == "lr=0.1\nlr=0.2\n"


def test_yaml_directive_syntax_error_points_into_the_file(tmp_path: Path) -> None:
    diag = diagnostic(
        tmp_path,
        'locals:\n  a: 1\n  b: "x %{ if local.a + } y %{ endif }"\n',
        "main.train.yaml",
    )
    assert diag.message.startswith("in %{if local.a +}: syntax error"), diag.message
    at(diag, "main.train.yaml", 3, 24)  # where the condition ends


def test_yaml_unknown_directive(tmp_path: Path) -> None:
    diag = diagnostic(tmp_path, 'locals:\n  b: "x %{ iff true } y"\n', "main.train.yaml")
    assert diag.message == (
        "invalid template: unknown template directive %{iff}: expected if, else, endif, for or "
        "endfor"
    )
    at(diag, "main.train.yaml", 2, 12)


# --------------------------------------------------------------------------- diagnostics


@pytest.mark.parametrize(
    ("expr", "message", "column"),
    [
        ('"x %{ if true } y"', "%{if} without a matching %{endif}: the template ends first", 10),
        ('"a %{ endfor }"', "%{endfor} without a %{for} before it", 10),
        (
            '"%{if true}a%{else}b%{else}c%{endif}"',
            "a second %{else} for the %{if} of line 2",
            27,
        ),
        (
            '"%{for x in [1]}%{endif}"',
            "%{endif} while the %{for} of line 2 is open",
            23,
        ),
        ('"%{for x in [1]}%{else}%{endfor}"', "%{else} inside the %{for} of line 2", 23),
        ('"%{ else }"', "%{else} without an %{if} before it", 8),
        ('"%{if 1}a%{endif}"', "the %{if} condition must be a bool, got number", 13),
        ('"%{if null}a%{endif}"', "the %{if} condition is null; it must be true or false", 13),
        ('"%{for x in "abc"}${x}%{endfor}"', "%{for} cannot iterate over a string", 19),
        ('"%{for x in null}${x}%{endfor}"', "%{for} cannot iterate over null", 19),
        ('"%{for x in [[1]]}${x}%{endfor}"', "cannot interpolate a list into a string", 27),
    ],
)
def test_directive_diagnostics(tmp_path: Path, expr: str, message: str, column: int) -> None:
    diag = diagnostic(tmp_path, f"locals {{\n  x = {expr}\n}}\n")
    assert diag.message == message
    at(diag, "main.train.hcl", 2, column)


def test_bad_syntax_inside_a_directive_is_one_syntax_error(tmp_path: Path) -> None:
    diag = diagnostic(tmp_path, 'locals {\n  x = "%{ if } y %{ endif }"\n}\n')
    assert diag.message == "syntax error: unexpected '} y ' in a template directive"
    assert "%{if CONDITION}" in diag.hint
    at(diag, "main.train.hcl", 2, 14)


# --------------------------------------------------------------------------- unknown values


def test_unknown_condition_or_collection_makes_the_template_unknown(tmp_path: Path) -> None:
    values = locals_of(
        tmp_path,
        """
        compute "box" {
          type = "local"
        }
        locals {
          cond   = "a %{ if compute.box.facts.cpus > 4 }big%{ endif }"
          coll   = "%{ for g in compute.box.facts.gpus }${g.name}%{ endfor }"
          inner  = "%{ for x in [1, 2] }${x}${compute.box.workdir_path}%{ endfor }"
          unused = "%{ if false }${compute.box.workdir_path}%{ else }known%{ endif }"
        }
        """,
    )
    assert values["cond"] is UNKNOWN
    assert values["coll"] is UNKNOWN
    assert values["inner"] is UNKNOWN
    assert values["unused"] == "known"


# --------------------------------------------------------------------------- references


def test_a_reference_only_inside_a_directive_is_a_dependency(tmp_path: Path) -> None:
    write(
        tmp_path,
        """
        workspace "ws" {}
        workspace "other" {}
        compute "box" {
          type        = "local"
          description = "%{ if workspace.ws.path != "" }has a store%{ endif }"
          tags        = { t = "%{ for w in [workspace.other] }${w.path}%{ endfor }" }
        }
        """,
    )
    deps = load_module(tmp_path).dependencies["compute.box"]
    assert set(deps) == {"workspace.ws", "workspace.other"}


def test_a_for_variable_is_not_a_reference(tmp_path: Path) -> None:
    values = locals_of(
        tmp_path,
        """
        locals:
          xs: [a, b]
          y: "%{ for w in local.xs }${w}%{ endfor }"
        """,
        "main.train.yaml",
    )
    assert values["y"] == "ab"


@pytest.mark.parametrize(
    "value",
    [
        '"%{ if var.token != "" }set%{ else }unset%{ endif }"',
        '"%{ for c in split("", var.token) }*%{ endfor }"',
        '<<EOT\n%{ if var.token == "x" ~}\nyes\n%{ endif ~}\nEOT',
    ],
)
def test_a_sensitive_value_in_a_directive_makes_the_output_sensitive(
    tmp_path: Path, value: str
) -> None:
    diag = diagnostic(
        tmp_path,
        'variable "token" {\n  default   = "hunter2"\n  sensitive = true\n}\n'
        f'output "o" {{\n  value = {value}\n}}\n',
    )
    assert diag.message == "output 'o' refers to sensitive values"


# --------------------------------------------------------------------------- limits


def test_a_huge_for_runs_out_of_budget(tmp_path: Path) -> None:
    diag = diagnostic(
        tmp_path,
        'locals {\n  x = "%{ for i in range(1000) }%{ for j in range(1000) }.%{ endfor }'
        '%{ endfor }"\n}\n',
    )
    assert f"more than {MAX_EVALUATION_STEPS} steps (the evaluation limit)" in diag.message


def test_a_for_past_the_string_length_limit_is_refused(tmp_path: Path) -> None:
    diag = diagnostic(
        tmp_path,
        'locals {\n  big = join("", [for i in range(1024) : "0123456789"])\n'
        '  x = "%{ for i in range(1024) }${local.big}%{ endfor }"\n}\n',
    )
    assert "(the string length limit)" in diag.message, diag.message


def test_deeply_nested_directives_are_refused(tmp_path: Path) -> None:
    text = "%{ if true }" * 70 + "x" + "%{ endif }" * 70
    diag = diagnostic(tmp_path, f'locals:\n  x: "{text}"\n', "main.train.yaml")
    assert "(the nesting limit)" in diag.message


# --------------------------------------------------------------------------- templatefile

TEMPLATE = 'a\n  ${~ "x" ~}\n  y\n%{ for v in [1,2] ~}\n  - ${v}\n%{ endfor ~}\nz ${name}\n'


def test_templatefile_matches_terraform_and_records_the_file(tmp_path: Path) -> None:
    write(tmp_path, TEMPLATE, "templates/t.tpl")
    write(tmp_path, "${x}", "one.tpl")
    write(
        tmp_path,
        """
        locals {
          t    = templatefile("templates/t.tpl", { name = "n" })
          one  = templatefile("one.tpl", { x = [1] })
          many = [for n in ["p", "q"] : templatefile("templates/t.tpl", { name = n })]
        }
        """,
    )
    evaluated, functions = evaluate_dir(tmp_path)
    # Terraform: in a template file too a strip marker reaches no further than its line
    assert evaluated.locals["t"] == "a\nx  y\n  - 1\n  - 2\nz n\n"
    assert evaluated.locals["one"] == [1]  # Terraform: a lone interpolation keeps its type
    assert [s.splitlines()[-1] for s in evaluated.locals["many"]] == ["z p", "z q"]
    assert str((tmp_path / "templates" / "t.tpl").resolve()) in functions.files_read


def test_templatefile_undeclared_variable_names_the_template_line(tmp_path: Path) -> None:
    write(tmp_path, TEMPLATE, "templates/t.tpl")
    diag = diagnostic(
        tmp_path, 'locals {\n  t = templatefile("templates/t.tpl", { nmae = 1 })\n}\n'
    )
    assert (
        diag.message
        == "the template refers to 'name', which is not among the vars given to templatefile()"
    )
    assert diag.hint == 'did you mean "nmae"?'
    at(diag, "templates/t.tpl", 7, 5)


def test_templatefile_sees_only_its_vars(tmp_path: Path) -> None:
    write(tmp_path, "${var.x}", "t.tpl")
    diag = diagnostic(
        tmp_path,
        'variable "x" {\n  default = 1\n}\nlocals {\n  t = templatefile("t.tpl", {})\n}\n',
    )
    assert "refers to 'var'" in diag.message
    at(diag, "t.tpl", 1, 3)


def test_templatefile_error_inside_the_template(tmp_path: Path) -> None:
    write(tmp_path, "ok\n%{ if n }\nyes\n", "t.tpl")
    diag = diagnostic(tmp_path, 'locals {\n  t = templatefile("t.tpl", { n = true })\n}\n')
    assert diag.message == "%{if} without a matching %{endif}: the template ends first"
    at(diag, "t.tpl", 2, 1)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ('templatefile("missing.tpl", {})', "templatefile: cannot read file"),
        ('templatefile("t.tpl", ["a"])', "templatefile: vars must be a map, got "),
        ('templatefile("t.tpl", { "a b" = 1 })', "templatefile: invalid template variable name"),
        ('templatefile("../outside.tpl", {})', "templatefile: '../outside.tpl' is outside the"),
        ('templatefile("link.tpl", {})', "templatefile: 'link.tpl' is outside the"),
        ('templatefile("rec.tpl", {})', "templatefile() cannot be called inside a template"),
    ],
)
def test_templatefile_refusals(tmp_path: Path, call: str, message: str) -> None:
    config = tmp_path / "config"
    write(config, "x", "t.tpl")
    write(config, '${templatefile("t.tpl", {})}', "rec.tpl")
    write(tmp_path, "secret", "outside.tpl")
    (config / "link.tpl").symlink_to(tmp_path / "outside.tpl")
    diag = diagnostic(config, f"locals {{\n  t = {call}\n}}\n")
    assert diag.message.startswith(message), diag.message
    if "rec.tpl" in call:
        at(diag, "rec.tpl", 1, 3)
    else:
        at(diag, "main.train.hcl", 2, 7)  # the call
    assert "secret" not in diag.message


def test_templatefile_may_read_installed_modules(tmp_path: Path) -> None:
    write(tmp_path, "from ${who}", ".trainform/modules/team/t.tpl")
    value = local_value(tmp_path, 'templatefile(".trainform/modules/team/t.tpl", { who = "m" })')
    assert value == "from m"


def test_templatefiles_share_the_budget_of_the_expression(tmp_path: Path) -> None:
    """One render stays well within the budget; a thousand renders of it in one
    expression do not multiply what the expression may do."""
    write(tmp_path, "%{ for i in range(500) }${i}%{ endfor }", "t.tpl")
    assert len(local_value(tmp_path, 'templatefile("t.tpl", {})')) == 1390
    diag = diagnostic(
        tmp_path, 'locals {\n  x = [for i in range(1000) : templatefile("t.tpl", {})]\n}\n'
    )
    assert "(the evaluation limit)" in diag.message


# --------------------------------------------------------------------------- templatestring


def test_templatestring_renders_a_template_made_elsewhere(tmp_path: Path) -> None:
    """Terraform 1.11: templatestring(var.template, {name = "w"}) with the default
    "Hi $${name}%%{ if name == \"w\" }!%%{ endif }" is "Hi w!"."""
    values = locals_of(
        tmp_path,
        """
        locals {
          tpl    = "Hi $${name}%%{ if name == \\"w\\" }!%%{ endif }"
          shown  = templatestring(local.tpl, { name = "w" })
        }
        """,
    )
    assert values["tpl"] == 'Hi ${name}%{ if name == "w" }!%{ endif }'
    assert values["shown"] == "Hi w!"


def test_escapes_inside_escaped_interpolations_and_directives_are_read(tmp_path: Path) -> None:
    """Terraform 1.11: "$${a \"b\"}" is ${a "b"} and "%%{ if \"x\" }\t" is %{ if "x" }<tab>."""
    assert local_value(tmp_path, '"$${a \\"b\\"}"') == '${a "b"}'
    assert local_value(tmp_path, '"%%{ if \\"x\\" }\\t"') == '%{ if "x" }\t'


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ('templatestring("x${1}", {})', "must be a reference to a string"),
        ("templatestring(upper(local.tpl), {})", "must be a reference to a string"),
        (
            "templatestring(local.tpl, {})",
            "'name', which is not among the vars given to templatestring()",
        ),
        ("templatestring(local.nested, {})", "templatefile() cannot be called inside a template"),
        ("templatestring(local.tpl, [1])", "vars must be a map"),
    ],
)
def test_templatestring_refusals(tmp_path: Path, expr: str, message: str) -> None:
    diag = diagnostic(
        tmp_path,
        f"""
        locals {{
          tpl    = "Hi $${{name}}"
          nested = "$${{templatefile("x", {{}})}}"
          bad    = {expr}
        }}
        """,
    )
    assert message in diag.message, diag.message
