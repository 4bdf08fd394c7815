"""What a person reads in a plan, through the real CLI: sensitivity is per key inside maps
(in HCL and YAML, in the text and JSON plans, and in state), a resubmission says why, and
destroy forgets finished runs rather than "canceling" them."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest
from helpers import CLI, ok

SECRET = "s3cr3t-per-key-91d"

HCL = """\
variable "token" {
  type      = string
  sensitive = true
}

environment "system" {
  python       = "python3"
  user_managed = true
  variables    = { TRACKING_TOKEN = var.token, MODE = "MODE_VALUE" }
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
}
"""

YAML = """\
variable:
  token: {type: string, sensitive: true}
environment:
  system:
    python: python3
    user_managed: true
    variables: {TRACKING_TOKEN: "${var.token}", MODE: MODE_VALUE}
compute:
  local: {type: local}
run:
  train:
    experiment: x
    compute: "${compute.local}"
    environment: "${environment.system}"
    source_dir: src
    script: train.py
"""


def write(cli: CLI, form: str, mode: str) -> None:
    if form == "hcl":
        cli.write("main.train.hcl", HCL.replace("MODE_VALUE", mode))
    else:
        cli.write("main.train.yaml", YAML.replace("MODE_VALUE", mode))


@pytest.mark.parametrize("form", ["hcl", "yaml"])
def test_a_plain_key_next_to_a_secret_stays_visible(cli: CLI, form: str) -> None:
    env = {"TRAINFORM_VAR_token": SECRET}
    write(cli, form, "fast")
    cli.write("src/train.py", "import os\nprint('mode', os.environ['MODE'])\n")
    ok(cli("apply", "-auto-approve", **env))

    write(cli, form, "slow")
    plan = ok(cli("plan", "-detailed-exitcode", **env), 2)
    assert re.search(
        r'~ variables = \{ MODE = "fast", TRACKING_TOKEN = \(sensitive value\) \} -> '
        r'\{ (TRACKING_TOKEN = \(sensitive value\), MODE = "slow"|MODE = "slow", '
        r"TRACKING_TOKEN = \(sensitive value\)) \}",
        plan.out,
    ), plan.out
    assert "run.train will be resubmitted: environment.system's variables: MODE changed" in (
        plan.out
    ), plan.out
    # nothing unchanged is labelled sensitive or changed
    assert "snapshot_id" not in plan.out, plan.out
    assert "(sensitive value) (changed)" not in plan.out, plan.out

    data = json.loads(ok(cli("plan", "-json", **env)).out)
    changes = {c["address"]: c["change"] for c in data["resource_changes"]}
    environment = changes["environment.system"]
    assert environment["after"]["variables"]["MODE"] == "slow"
    assert environment["after"]["variables"]["TRACKING_TOKEN"] is None
    assert environment["after_sensitive"]["variables"] == {"TRACKING_TOKEN": True}

    # state seals only the secret's key
    db = sqlite3.connect(cli.cwd / ".trainform" / "state.db")
    (attrs,) = db.execute(
        "SELECT attributes FROM resources WHERE address = 'environment.system'"
    ).fetchone()
    db.close()
    variables = json.loads(attrs)["variables"]
    assert variables["MODE"] == "fast" and "__sensitive__" in variables["TRACKING_TOKEN"]
    for path in (cli.cwd / ".trainform").glob("state.db*"):
        assert SECRET.encode() not in path.read_bytes(), path

    # the secret's own change is noticed without showing it
    plan = ok(cli("plan", "-detailed-exitcode", TRAINFORM_VAR_token=SECRET + "2"), 2)
    assert "TRACKING_TOKEN changed" in plan.out, plan.out
    assert SECRET not in plan.all


def test_destroy_forgets_a_finished_run_and_keeps_its_history(cli: CLI) -> None:
    cli.write(
        "main.train.hcl",
        'compute "local" {\n  type = "local"\n}\n'
        'run "train" {\n  experiment = "x"\n  compute = compute.local\n'
        '  source_dir = "src"\n  script = "train.py"\n}\n',
    )
    cli.write("src/train.py", "print('hi')\n")
    ok(cli("apply", "-auto-approve"))
    plan = ok(cli("plan", "-destroy"))
    assert "# run.train will be forgotten (history kept)" in plan.out, plan.out
    assert "cancel" not in plan.out, plan.out
    assert "1 to forget" in plan.out, plan.out
    done = ok(cli("destroy", "-auto-approve"))
    assert "run.train: Forgetting..." in done.out and "run.train: Forgotten" in done.out
    assert json.loads(ok(cli("runs", "list", "--json")).out)[0]["status"] == "completed"
