"""Template directives and templatefile() through the real CLI: what they render is what the
plan shows, a saved plan notices that a template file changed, and a template outside the
configuration is one diagnostic naming the call."""

from __future__ import annotations

from helpers import CLI, ok

CONFIG = """\
variable "lrs" {
  default = [0.1, 0.2]
}

environment "system" {
  python       = "python3"
  user_managed = true
  variables    = { SIZES = templatefile("templates/env.tpl", { sizes = { small = 1, big = 8 } }) }
}

compute "local" {
  type = "local"
}

run "train" {
  experiment  = "x"
  compute     = compute.local
  environment = environment.system
  source_dir  = "src"
  script      = "train.py"
  arguments   = ["--lrs", "%{ for i, lr in var.lrs }%{ if i > 0 },%{ endif }${lr}%{ endfor }"]
}
"""

TEMPLATE = """\
%{ for name, size in sizes ~}
${upper(name)}=${size}
%{ endfor ~}
"""


def test_plan_shows_what_directives_and_templatefile_render(cli: CLI) -> None:
    cli.write("main.train.hcl", CONFIG)
    cli.write("templates/env.tpl", TEMPLATE)
    cli.write("src/train.py", "print('hi')\n")
    plan = ok(cli("plan"))
    assert '+ arguments       = ["--lrs", "0.1,0.2"]' in plan.out, plan.out
    assert '+ variables         = { SIZES = "BIG=8\\nSMALL=1\\n" }' in plan.out, plan.out

    ok(cli("plan", "-out=saved.plan"))
    cli.write("templates/env.tpl", TEMPLATE + "EXTRA=1\n")
    stale = cli("apply", "saved.plan")
    assert stale.code == 1, stale.all
    assert "the saved plan is stale" in stale.all and "templates/env.tpl changed" in stale.all


def test_a_template_outside_the_configuration_is_refused(cli: CLI) -> None:
    (cli.cwd.parent / "elsewhere.tpl").write_text("secret-text\n")
    cli.write("main.train.hcl", 'locals {\n  x = templatefile("../elsewhere.tpl", {})\n}\n')
    result = cli("plan")
    assert result.code == 1, result.all
    assert "main.train.hcl:2:7" in result.err, result.err
    assert "'../elsewhere.tpl' is outside the configuration directory" in result.err
    assert "secret-text" not in result.all
    assert "Traceback" not in result.all
