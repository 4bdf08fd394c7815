"""Optional dependencies (pip extras) through the real CLI: a configuration that uses a feature
whose extra is not installed fails at plan time with one diagnostic at the block's file:line
that names the `pip install 'trainform[...]'` to run (optuna for bayesian sampling,
paramiko for ssh, the docker SDK for container environments and docker-cluster); without
the extras the quick-start example plans and applies.

"Not installed" is simulated in the trainform process by a sitecustomize module that sets
``sys.modules[name] = None`` (then ``import name`` fails and ``importlib.util.find_spec``
finds nothing), so the test needs no second virtualenv.
"""

from __future__ import annotations

import re
from pathlib import Path

from helpers import CLI, failed, ok

SWEEP = """\
compute "local" {
  type = "local"
}

sweep "tune" {
  experiment = "tests"
  trial {
    compute   = compute.local
    command   = ["python3", "-c", "pass"]
    arguments = ["--lr", param.lr]
  }
  sampling {
    algorithm = "%s"
  }
  parameter "lr" {
    distribution = "choice"
    values       = [0.01, 0.1]
  }
  objective {
    metric = "accuracy"
    goal   = "maximize"
  }
}
"""

SSH = """\
compute "local" {
  type = "local"
}

compute "box" {
  type             = "ssh"
  address          = "127.0.0.1"
  username         = "nobody"
  private_key_file = "id_ed25519"
}
"""


def without(cli: CLI, tmp_path: Path, *modules: str) -> CLI:
    """The CLI as if ``modules`` were not installed."""
    site = tmp_path / "site-without"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
    )
    return CLI(cli.cwd, {**cli.env, "PYTHONPATH": str(site)})


def test_bayesian_sampling_without_optuna_names_the_extra(cli: CLI, tmp_path: Path) -> None:
    bare = without(cli, tmp_path, "optuna")
    cli.write("main.train.hcl", SWEEP % "bayesian")
    result = failed(
        bare("plan"), "bayesian sampling needs optuna: pip install 'trainform[bayesian]'"
    )
    assert re.search(r"main\.train\.hcl:5:\d+", result.all), result.all
    failed(bare("validate"), "pip install 'trainform[bayesian]'")
    # The same configuration plans where optuna is installed, and random sampling does not
    # need it at all.
    ok(cli("plan"))
    cli.write("main.train.hcl", SWEEP % "random")
    ok(bare("plan"))


def test_ssh_compute_without_paramiko_names_the_extra(cli: CLI, tmp_path: Path) -> None:
    bare = without(cli, tmp_path, "paramiko")
    cli.write("main.train.hcl", SSH)
    result = failed(
        bare("plan"), """compute type "ssh" needs paramiko: pip install 'trainform[ssh]'"""
    )
    assert re.search(r"main\.train\.hcl:5:\d+", result.all), result.all


CONTAINER = """\
compute "local" {
  type = "local"
}

environment "container" {
  docker {
    %s
  }
}

run "train" {
  experiment  = "tests"
  compute     = compute.local
  environment = environment.container
  command     = ["python3", "-c", "pass"]
}
"""

CLUSTER = """\
compute "cluster" {
  type       = "docker-cluster"
  node_image = "trainform/base:latest"
  max_nodes  = 1
}
"""


def test_docker_features_without_the_sdk_name_the_extra(cli: CLI, tmp_path: Path) -> None:
    bare = without(cli, tmp_path, "docker")
    wanted = "needs docker: pip install 'trainform[docker]'"
    # Planning the run looks at its image (or hashes its build context) before the
    # configuration is validated: the message names the run rather than a file:line.
    cli.write("main.train.hcl", CONTAINER % 'image = "trainform/base:latest"')
    failed(bare("plan"), "run.train: Docker support " + wanted)
    cli.write("docker/Dockerfile", "FROM trainform/base:latest\n")
    cli.write("main.train.hcl", CONTAINER % 'dockerfile = "docker/Dockerfile"')
    failed(bare("plan"), "run.train: an environment with a docker block " + wanted)
    cli.write("main.train.hcl", CLUSTER)
    result = failed(bare("plan"), 'compute type "docker-cluster" ' + wanted)
    assert re.search(r"main\.train\.hcl:1:\d+", result.all), result.all


def test_the_quickstart_needs_no_extra(cli: CLI, tmp_path: Path) -> None:
    bare = without(cli, tmp_path, "optuna", "paramiko", "docker")
    example = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
    for path in example.rglob("*"):
        if path.is_file() and ".trainform" not in path.parts:
            cli.write(str(path.relative_to(example)), path.read_text())
    out = ok(bare("apply", "-auto-approve")).out
    assert "Apply complete!" in out, out
