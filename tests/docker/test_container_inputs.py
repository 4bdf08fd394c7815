"""Run inputs in container environments (local compute, the real Docker engine), through
the CLI: a dataset placed by trainform and bind-mounted read-only into the run's container,
and a linked dataset (input_mode = "link") mounted read-only where it sits; root in the
container gets "Read-only file system" writing into either, and the data is untouched."""

from __future__ import annotations

from typing import Any

from helpers import ok

PROBE = """\
import os
p = os.environ["TRAINFORM_INPUT_RAW"]
print("in container:", os.path.exists("/.dockerenv"), "uid", os.getuid(), sorted(os.listdir(p)))
try:
    open(os.path.join(p, "a.csv"), "a").write("changed")
    print("wrote")
except OSError as exc:
    print("refused", exc.strerror)
"""


def config(base_image: str, mode: str) -> str:
    return f"""\
compute "local" {{
  type = "local"
}}
environment "base" {{
  docker {{ image = "{base_image}" }}
}}
dataset "raw" {{
  source = "data"
}}
run "probe" {{
  experiment  = "container-inputs"
  compute     = compute.local
  environment = environment.base
  source_dir  = "src"
  script      = "probe.py"
  inputs      = {{ raw = dataset.raw }}
  input_mode  = "{mode}"
}}
"""


def test_inputs_are_mounted_read_only_into_the_container(
    cli: Any, base_image: str, no_leftovers: None
) -> None:
    cli.write("data/a.csv", "row 1\n")
    cli.write("data/b.csv", "row 2\n")
    cli.write("src/probe.py", PROBE)
    for mode in ("copy", "link"):
        cli.write("main.train.hcl", config(base_image, mode))
        out = ok(cli("apply", "-auto-approve")).out
        assert "run.probe: Completed" in out, out
        assert "in container: True uid 0 ['a.csv', 'b.csv']" in out, out
        assert "refused Read-only file system" in out and "wrote" not in out, out
        assert (cli.cwd / "data" / "a.csv").read_text() == "row 1\n"
    ok(cli("destroy", "-auto-approve"))
