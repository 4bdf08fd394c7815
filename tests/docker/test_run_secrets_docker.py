"""A run's secrets in containers, against the real Docker engine through the CLI: a local run
in a container and a docker-cluster run get their ``env`` values, yet no file of the run folder
(on this machine, or in the node container) holds them once the launcher has started, and
neither inherits the variable values given to trainform.

Fixtures: `cli` (tests/conftest.py); `base_image`, `docker_client` and `no_leftovers` from
tests/docker/conftest.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import ok

pytestmark = pytest.mark.usefixtures("no_leftovers")

SECRET = "hunter2-container-secret-77e1"

# What the run sees: the secret (hashed), its environment's names, and which files of its
# folder hold the secret while it runs.
REPORT = """\
import hashlib, json, os
from pathlib import Path

run_dir = Path(os.environ["TRAINFORM_METRICS_FILE"]).parent
secret = os.environ.get("TOKEN", "").encode()
holding = [
    str(p.relative_to(run_dir))
    for p in run_dir.rglob("*")
    if p.is_file() and p.name != "output.log" and secret and secret in p.read_bytes()
]
report = {
    "token": hashlib.sha256(secret).hexdigest(),
    "names": sorted(os.environ),
    "holding": holding,
    "secret_dir": (run_dir / "secret").exists(),
}
out = Path(os.environ["TRAINFORM_OUTPUT_DIR"])
out.mkdir(parents=True, exist_ok=True)
(out / "report.json").write_text(json.dumps(report))
"""

VARIABLE = """\
variable "token" {
  type      = string
  sensitive = true
}
"""

RUN = """
run "secret" {{
  experiment  = "tests"
  compute     = {compute}
  {environment}
  source_dir  = "src"
  script      = "report.py"
  env         = {{ TOKEN = var.token }}
}}
"""

ENV = {"TRAINFORM_VAR_token": SECRET, "TRAINFORM_VAR_elsewhere": "pw-of-another-compute"}


def run_show(cli: Any) -> dict[str, Any]:
    return json.loads(ok(cli("runs", "show", "run.secret", "--json")).out)


def files_holding(folder: Path, needle: bytes) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def check_report(cli: Any) -> None:
    run = run_show(cli)
    assert run["status"] == "completed", run
    seen = json.loads((Path(run["outputs_path"]) / "report.json").read_text())
    assert seen["token"] == hashlib.sha256(SECRET.encode()).hexdigest()
    assert seen["holding"] == [] and seen["secret_dir"] is False, seen
    assert not [n for n in seen["names"] if n.startswith(("TRAINFORM_VAR_", "TF_VAR_"))]
    assert files_holding(cli.cwd / ".trainform", SECRET.encode()) == []


def test_a_local_container_run_gets_its_secret_and_keeps_none(cli, base_image):
    cli.write("src/report.py", REPORT)
    cli.write(
        "main.train.hcl",
        VARIABLE
        + 'compute "local" {\n  type = "local"\n}\n'
        + f'environment "img" {{\n  docker {{\n    image = "{base_image}"\n  }}\n}}\n'
        + RUN.format(compute="compute.local", environment="environment = environment.img"),
    )
    ok(cli("apply", "-auto-approve", timeout=300, **ENV))
    check_report(cli)
    seen = json.loads((Path(run_show(cli)["outputs_path"]) / "report.json").read_text())
    assert "TRAINFORM_IMAGE" in seen["names"]  # given for the run by its container: kept


def test_a_cluster_run_gets_its_secret_and_its_node_keeps_none(cli, base_image, docker_client):
    cli.write("src/report.py", REPORT)
    cli.write(
        "main.train.hcl",
        VARIABLE
        + 'compute "cpu" {\n  type         = "docker-cluster"\n'
        + f'  node_image   = "{base_image}"\n  min_nodes    = 1\n  max_nodes    = 1\n}}\n'
        + RUN.format(compute="compute.cpu", environment=""),
    )
    ok(cli("apply", "-auto-approve", timeout=300, **ENV))
    check_report(cli)
    run_id = run_show(cli)["id"]
    cluster = json.loads(ok(cli("compute", "show", "cpu", "--json")).out)
    names = [n["name"] for n in cluster.get("nodes") or []]
    assert names, cluster
    for name in names:
        code, out = docker_client.containers.get(name).exec_run(
            ["grep", "-rl", SECRET, f"/var/lib/trainform/runs/{run_id}"]
        )
        assert code == 1 and out == b"", out  # grep found nothing
    ok(cli("destroy", "-auto-approve", timeout=120, **ENV))
