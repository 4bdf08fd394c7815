"""Modules: loading a configuration that calls modules (local folders), evaluating each
module instance in its own scope, addresses and dependencies per instance, sensitivity across
the boundary, and one clear diagnostic for each kind of bad module call."""

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
from trainform.errors import ConfigError, Diagnostic

BOX = """
variable "team" {
  type = string
}

variable "cpus" {
  type    = number
  default = 1
  validation {
    condition     = var.cpus > 0
    error_message = "cpus must be positive"
  }
}

locals {
  label = "team-${var.team}"
}

compute "box" {
  type = "local"
}

run "train" {
  experiment = local.label
  compute    = compute.box
  source_dir = "src"
  script     = "train.py"
  arguments  = ["--cpus", var.cpus]
  depends_on = [compute.box]
}

output "box" {
  value = compute.box.address
}

output "where" {
  value = path.module
}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def unknown_facts(inst: Instance) -> dict[str, Any]:
    return {k: UNKNOWN for k, a in inst.resource.schema.attributes.items() if a.computed}


def evaluate_dir(directory: Path) -> Evaluated:
    module = load_module(directory)
    functions = FunctionContext(module.directory)
    raw = collect_values(module.directory, module.variables, VariableInputs(environ={}), functions)
    variables = resolve_variables(module, raw, None, functions)
    return Evaluator(module, variables, functions).run(unknown_facts)


def diagnostics(directory: Path) -> list[Diagnostic]:
    with pytest.raises(ConfigError) as info:
        evaluate_dir(directory)
    return info.value.diagnostics


@pytest.fixture
def box(tmp_path: Path) -> Path:
    write(tmp_path / "modules" / "box" / "main.train.hcl", BOX)
    write(tmp_path / "modules" / "box" / "src" / "train.py", "print('hi')\n")
    return tmp_path


def test_for_each_makes_one_instance_of_every_block_per_key(box: Path) -> None:
    write(
        box / "main.train.hcl",
        """
        module "team" {
          source   = "./modules/box"
          for_each = { a = 2, b = 3 }
          team     = each.key
          cpus     = each.value
        }

        output "boxes" {
          value = { for k, m in module.team : k => m.box }
        }

        output "a_box" {
          value = module.team["a"].box
        }
        """,
    )
    ev = evaluate_dir(box)
    assert sorted(ev.instances) == [
        'module.team["a"].compute.box',
        'module.team["a"].run.train',
        'module.team["b"].compute.box',
        'module.team["b"].run.train',
    ]
    run_b = ev.instances['module.team["b"].run.train']
    assert run_b.attributes["experiment"] == "team-b"
    assert run_b.attributes["arguments"] == ["--cpus", 3]
    # team b's run waits for team b's box, not team a's
    assert run_b.depends_on == ('module.team["b"].compute.box',)
    assert run_b.attributes["compute"]["address"] == 'module.team["b"].compute.box'
    # a module's relative paths are relative to its folder
    assert run_b.attributes["source_dir"] == "modules/box/src"
    assert ev.outputs["boxes"][0] == {
        "a": 'module.team["a"].compute.box',
        "b": 'module.team["b"].compute.box',
    }
    assert ev.outputs["a_box"][0] == 'module.team["a"].compute.box'


def test_count_on_a_module_and_path_module(box: Path) -> None:
    write(
        box / "main.train.hcl",
        """
        module "team" {
          source = "./modules/box"
          count  = 2
          team   = "t${count.index}"
        }

        output "first" {
          value = module.team[0].box
        }

        output "all" {
          value = [for m in module.team : m.where]
        }

        output "root" {
          value = path.module
        }
        """,
    )
    ev = evaluate_dir(box)
    assert "module.team[1].run.train" in ev.instances
    assert ev.instances["module.team[1].run.train"].attributes["experiment"] == "team-t1"
    assert ev.outputs["first"][0] == "module.team[0].compute.box"
    folder = str((box / "modules" / "box").resolve())
    assert ev.outputs["all"][0] == [folder, folder]
    assert ev.outputs["root"][0] == str(box.resolve())


def test_modules_nest(tmp_path: Path, box: Path) -> None:
    write(
        tmp_path / "modules" / "org" / "main.train.hcl",
        """
        variable "teams" {
          type = list(string)
        }

        module "team" {
          source   = "../box"
          for_each = toset(var.teams)
          team     = each.key
        }

        output "boxes" {
          value = [for t in var.teams : module.team[t].box]
        }
        """,
    )
    write(
        tmp_path / "main.train.hcl",
        """
        module "org" {
          source = "./modules/org"
          teams  = ["x", "y"]
        }

        output "boxes" {
          value = module.org.boxes
        }
        """,
    )
    ev = evaluate_dir(tmp_path)
    assert 'module.org.module.team["y"].run.train' in ev.instances
    inst = ev.instances['module.org.module.team["y"].run.train']
    assert inst.depends_on == ('module.org.module.team["y"].compute.box',)
    assert ev.outputs["boxes"][0] == [
        'module.org.module.team["x"].compute.box',
        'module.org.module.team["y"].compute.box',
    ]


def test_a_dependency_on_a_whole_module_waits_for_every_instance(box: Path) -> None:
    write(
        box / "main.train.hcl",
        """
        module "team" {
          source   = "./modules/box"
          for_each = toset(["a", "b"])
          team     = each.key
        }

        compute "after" {
          type       = "local"
          depends_on = [module.team]
        }
        """,
    )
    ev = evaluate_dir(box)
    # keyless module steps select every instance (see address.covers)
    assert set(ev.instances["compute.after"].depends_on) == {
        "module.team.compute.box",
        "module.team.run.train",
    }


def test_sensitive_values_stay_sensitive_across_the_boundary(tmp_path: Path) -> None:
    write(
        tmp_path / "modules" / "env" / "main.train.hcl",
        """
        variable "token" {
          type = string
        }

        environment "py" {
          variables = { TOKEN = var.token, MODE = "x" }
        }

        output "token" {
          value     = var.token
          sensitive = true
        }
        """,
    )
    write(
        tmp_path / "main.train.hcl",
        """
        variable "token" {
          type      = string
          default   = "hunter22"
          sensitive = true
        }

        module "env" {
          source = "./modules/env"
          token  = var.token
        }

        output "token" {
          value = module.env.token
        }
        """,
    )
    found = diagnostics(tmp_path)
    assert "output 'token' refers to sensitive values" in found[0].message
    assert "hunter22" not in str(found)
    main = tmp_path / "main.train.hcl"
    main.write_text(main.read_text().replace("value = module.env.token", "value = 1"))
    ev = evaluate_dir(tmp_path)
    assert "variables.TOKEN" in ev.instances["module.env.environment.py"].sensitive
    assert "variables.MODE" not in ev.instances["module.env.environment.py"].sensitive


def test_a_module_output_that_hides_a_secret_must_say_so(tmp_path: Path) -> None:
    write(
        tmp_path / "modules" / "env" / "main.train.hcl",
        """
        variable "token" {
          type      = string
          sensitive = true
        }

        output "token" {
          value = var.token
        }
        """,
    )
    write(
        tmp_path / "main.train.hcl",
        """
        module "env" {
          source = "./modules/env"
          token  = "x"
        }
        """,
    )
    (found,) = diagnostics(tmp_path)
    assert "output 'token' refers to sensitive values" in found.message
    assert found.pos is not None and found.pos.file.endswith("modules/env/main.train.hcl")
    assert "in module.env (" in found.hint


def test_module_inputs_are_converted_and_validated(box: Path) -> None:
    write(
        box / "main.train.hcl",
        """
        module "team" {
          source = "./modules/box"
          team   = "a"
          cpus   = "4"
        }
        """,
    )
    ev = evaluate_dir(box)
    assert ev.instances["module.team.run.train"].attributes["arguments"] == ["--cpus", 4]
    main = box / "main.train.hcl"
    main.write_text(main.read_text().replace('"4"', "0"))
    (found,) = diagnostics(box)
    assert found.message == "invalid value for variable 'cpus': cpus must be positive"
    assert found.pos is not None and found.pos.file.endswith("modules/box/main.train.hcl")
    assert "in module.team (" in found.hint
    main.write_text(main.read_text().replace("cpus   = 0", 'cpus   = "many"'))
    (found,) = diagnostics(box)
    assert "invalid value 'many' for variable 'cpus'" in found.message


def bad_call(box: Path, text: str) -> list[Diagnostic]:
    write(box / "main.train.hcl", text)
    with pytest.raises(ConfigError) as info:
        load_module(box)
    return info.value.diagnostics


def test_a_missing_input_names_the_variable_at_the_module_block(box: Path) -> None:
    (found,) = bad_call(box, 'module "team" {\n  source = "./modules/box"\n}\n')
    assert found.message == "module 'team' requires input variable 'team'"
    assert found.pos is not None and (found.pos.line, found.pos.column) == (1, 1)


def test_an_undeclared_input_gets_a_did_you_mean(box: Path) -> None:
    text = 'module "team" {\n  source = "./modules/box"\n  team = "a"\n  cpu = 2\n}\n'
    (found,) = bad_call(box, text)
    assert found.message == "module 'team' has no input variable 'cpu'"
    assert "cpus" in found.hint
    assert found.pos is not None and found.pos.line == 4


def test_an_unknown_module_output_gets_a_did_you_mean(box: Path) -> None:
    text = """
    module "team" {
      source = "./modules/box"
      team   = "a"
    }

    output "x" {
      value = module.team.boxx
    }
    """
    (found,) = bad_call(box, textwrap.dedent(text))
    assert found.message == "module.team has no output 'boxx'"
    assert "box" in found.hint
    assert found.pos is not None and found.pos.line == 7


def test_count_and_for_each_together(box: Path) -> None:
    text = 'module "t" {\n  source = "./modules/box"\n  count = 1\n  for_each = {}\n}\n'
    (found,) = bad_call(box, text)
    assert found.message == "count and for_each cannot both be set"
    assert found.pos is not None and found.pos.line == 4


def test_a_module_cycle_is_one_diagnostic(tmp_path: Path) -> None:
    write(tmp_path / "modules" / "a" / "main.train.hcl", 'module "b" {\n  source = "../b"\n}\n')
    write(tmp_path / "modules" / "b" / "main.train.hcl", 'module "a" {\n  source = "../a"\n}\n')
    write(tmp_path / "main.train.hcl", 'module "a" {\n  source = "./modules/a"\n}\n')
    (found,) = bad_call(tmp_path, 'module "a" {\n  source = "./modules/a"\n}\n')
    assert found.message.startswith(
        "module cycle: module.a -> module.a.module.b -> module.a.module.b.module.a (which loads "
    )
    assert found.pos is not None and found.pos.file.endswith("modules/b/main.train.hcl")
    write(tmp_path / "modules" / "self" / "main.train.hcl", 'module "me" {\n  source = "./"\n}\n')
    (found,) = bad_call(tmp_path, 'module "s" {\n  source = "./modules/self"\n}\n')
    assert found.message.startswith("module cycle: module.s -> module.s.module.me (which loads")
    assert "in module.s (" in found.hint


def test_missing_and_empty_source_folders(tmp_path: Path) -> None:
    (found,) = bad_call(tmp_path, 'module "m" {\n  source = "./modules/nope"\n}\n')
    assert "source folder './modules/nope' does not exist" in found.message
    assert found.pos is not None and (found.pos.line, found.pos.column) == (2, 12)
    (tmp_path / "modules" / "empty").mkdir(parents=True)
    (found,) = bad_call(tmp_path, 'module "m" {\n  source = "./modules/empty"\n}\n')
    assert "no configuration files" in found.message
    (found,) = bad_call(tmp_path, 'module "m" {\n  source = "modules/empty"\n}\n')
    assert "unsupported module source 'modules/empty'" in found.message


def test_errors_inside_a_module_name_its_file_and_the_call_chain(box: Path) -> None:
    write(
        box / "modules" / "box" / "extra.train.hcl",
        'compute "bad" {\n  type = "local"\n  max_concurent_runs = 2\n}\n',
    )
    (found,) = bad_call(box, 'module "team" {\n  source = "./modules/box"\n  team = "a"\n}\n')
    assert "unsupported attribute 'max_concurent_runs'" in found.message
    assert found.pos is not None and found.pos.file.endswith("modules/box/extra.train.hcl")
    assert found.pos.line == 3
    assert found.hint.endswith(f"in module.team ({box.resolve() / 'main.train.hcl'}:1:1)") or (
        "in module.team (" in found.hint
    )


def test_a_git_source_must_be_installed(tmp_path: Path) -> None:
    text = 'module "m" {\n  source = "git::file:///nowhere/repo.git?ref=v1"\n}\n'
    (found,) = bad_call(tmp_path, text)
    assert found.message == "module.m: not installed; run `trainform init`"
