"""templatefile() in a local module that lives outside the root configuration (an infra
repository's `envs/prod` beside `modules/`): the module's own folder may be read, anything
else outside the configuration and its modules is refused with one diagnostic."""

from __future__ import annotations

import json

from helpers import CLI, failed, ok

ROOT = """
module "box" {
  source = "../modules/gpu-box"
  name   = "prod"
}

output "banner" {
  value = module.box.banner
}
"""

MODULE = """
variable "name" {
  type = string
}

compute "box" {
  type = "local"
  tags = { banner = templatefile("${path.module}/banner.tpl", { name = var.name }) }
}

output "banner" {
  value = templatefile("%s", { name = var.name })
}
"""


def sibling_module(cli: CLI, template_path: str = "${path.module}/banner.tpl") -> None:
    cli.write("main.train.hcl", ROOT)
    cli.write("../modules/gpu-box/main.train.hcl", MODULE % template_path)
    cli.write("../modules/gpu-box/banner.tpl", '%{ for c in split(",", name) }[${c}]%{ endfor }')
    cli.write("../secret.txt", "do not read me")


def test_a_sibling_module_renders_its_own_templates(cli: CLI) -> None:
    sibling_module(cli)
    ok(cli("apply", "-auto-approve"))
    assert json.loads(ok(cli("output", "-json", "banner")).out) == "[prod]"
    shown = ok(cli("state", "show", "module.box.compute.box")).out
    assert "[prod]" in shown
    cli.write("../modules/gpu-box/banner.tpl", "<${name}>")
    plan = ok(cli("plan"))
    assert "<prod>" in plan.out  # an edited template is a change


def test_a_template_outside_every_module_folder_is_refused(cli: CLI) -> None:
    sibling_module(cli, "${path.module}/../../secret.txt")
    res = failed(cli("plan"), "outside the configuration directory")
    assert res.err.count("outside the configuration directory") == 1, res.err
    assert "modules/gpu-box/main.train.hcl:12:" in res.err, res.err
    assert "no attribute" not in res.err  # no cascade into the caller
    assert "do not read me" not in res.all


def test_the_console_reads_a_sibling_module_template(cli: CLI) -> None:
    """The console sees the same folders as plan: a template beside a module outside the
    root renders there too."""
    sibling_module(cli)
    expr = 'templatefile("../modules/gpu-box/banner.tpl", { name = "a,b" })\n'
    assert ok(cli("console", input=expr)).out == '"[a][b]"\n'


def test_a_diagnostic_in_a_sibling_module_names_it_relative_to_the_working_folder(
    cli: CLI,
) -> None:
    sibling_module(cli, "${path.module}/nope.tpl")
    res = failed(cli("plan"), "nope.tpl")
    assert "on ../modules/gpu-box/main.train.hcl:12:" in res.err, res.err
