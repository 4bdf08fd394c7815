"""`show -json` (state and saved plans, Terraform's JSON formats), `plan -json` and
`show -markdown PLANFILE`, through the CLI; secrets never appear in any of them."""

from __future__ import annotations

import json
from typing import Any

from helpers import CLI, ok

SECRET = "s3ntinel-9f1c-never-shown"
LITERAL = "l1teral-7d2e-never-shown"

CONFIG = """
variable "token" {
  type      = string
  sensitive = true
}

workspace "main" {
  description = "experiments"
  tags        = { owner = "ml" }
}

compute "box" {
  type = "local"
  tags = { owner = "ml" }
}

environment "env" {
  user_managed = true
  variables    = { TOKEN = var.token, MODE = "fast" }
}

output "token" {
  value     = var.token
  sensitive = true
}

output "mode" {
  value = environment.env.variables.MODE
}
"""

SSH = f"""
compute "remote" {{
  type     = "ssh"
  address  = "192.0.2.1"
  username = "train"
  password = "{LITERAL}"
  host_key = "SHA256:abc"
}}
"""


def state_resources(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["address"]: r for r in data["values"]["root_module"]["resources"]}


def test_secrets_never_appear_in_json_or_markdown(cli: CLI) -> None:
    env = {"TRAINFORM_VAR_token": SECRET}
    cli.write("main.train.hcl", CONFIG)
    empty = json.loads(ok(cli("show", "-json")).out)
    assert empty == {"format_version": "1.0", "terraform_version": empty["terraform_version"]}
    ok(cli("apply", "-auto-approve", **env))

    state = json.loads(ok(cli("show", "-json")).out)
    assert set(state) == {"format_version", "terraform_version", "values"}
    resources = state_resources(state)
    assert resources["environment.env"]["values"]["variables"] == {"TOKEN": None, "MODE": "fast"}
    assert resources["environment.env"]["sensitive_values"]["variables"] == {"TOKEN": True}
    assert resources["compute.box"]["type"] == "trainform_local_compute"
    assert "index" not in resources["compute.box"] and "status" not in resources["compute.box"]
    assert state["values"]["outputs"]["token"] == {"sensitive": True, "value": None}
    assert state["values"]["outputs"]["mode"] == {
        "sensitive": False,
        "value": "fast",
        "type": "string",
    }
    # a workspace's bookkeeping (created_dir) is not one of its attributes
    assert "created_dir" not in resources["workspace.main"]["values"]
    assert "path" in resources["workspace.main"]["values"]

    cli.write("main.train.hcl", CONFIG.replace('"fast"', '"slow"') + SSH)
    shown = [ok(cli("plan", "-json", **env)).out]
    ok(cli("plan", "-out", "plan.bin", **env))
    shown.append(ok(cli("show", "-json", "plan.bin")).out)
    markdown = ok(cli("show", "-markdown", "plan.bin")).out
    shown.append(markdown)
    shown.append(ok(cli("show", "-json")).out)
    shown.append((cli.cwd / "plan.bin").read_text())
    for text in shown:
        assert SECRET not in text and LITERAL not in text

    plan = json.loads(shown[1])
    assert plan["variables"]["token"] == {"value": None, "sensitive": True}
    changes = {c["address"]: c for c in plan["resource_changes"]}
    remote = changes["compute.remote"]
    assert remote["type"] == "trainform_ssh_compute"
    assert remote["change"]["after"]["password"] is None
    assert remote["change"]["after_sensitive"]["password"] is True
    config = {r["address"]: r for r in plan["configuration"]["root_module"]["resources"]}
    assert config["compute.remote"]["expressions"]["password"] == {
        "constant_value": None,
        "sensitive": True,
    }
    assert plan["output_changes"]["token"]["after_sensitive"] is True
    assert plan["output_changes"]["token"]["after"] is None
    prior = state_resources(plan["prior_state"])
    assert prior["environment.env"]["values"]["variables"]["TOKEN"] is None
    # the plan JSON of a saved plan is the same as plan -json but for its timestamp
    live = json.loads(shown[0])
    live.pop("timestamp"), plan.pop("timestamp")
    assert live == plan


def test_show_markdown_is_a_short_deterministic_summary(cli: CLI) -> None:
    env = {"TRAINFORM_VAR_token": SECRET}
    cli.write("main.train.hcl", CONFIG)
    ok(cli("apply", "-auto-approve", **env))
    changed = CONFIG.replace('"fast"', '"slow"').replace(
        'type = "local"\n', 'type = "local"\n  workdir = "w2"\n'
    )
    cli.write("main.train.hcl", changed + 'compute "extra" {\n  type = "local"\n}\n')
    ok(cli("plan", "-out", "plan.bin", **env))
    first = ok(cli("show", "-markdown", "plan.bin")).out
    assert ok(cli("show", "-markdown", "plan.bin")).out == first
    assert "\x1b" not in first and SECRET not in first
    lines = first.splitlines()
    assert lines[0] == "### trainform plan"
    assert "**Plan:** 1 to add, 1 to change, 1 to replace, 0 to destroy, 0 runs to submit." in lines
    assert "- **create** `compute.extra`" in lines
    assert "- **replace** `compute.box`: must be replaced" in lines
    assert "- **update** `environment.env`: will be updated in-place" in lines
    assert "Outputs: `mode` (update)." in lines
    assert len(lines) < 12

    nothing = ok(cli("plan", "-out", "same.bin", "-destroy", **env))
    assert nothing.code == 0
    destroy = ok(cli("show", "-markdown", "same.bin")).out
    assert destroy.startswith("### trainform plan (destroy)")
    assert "0 to add, 0 to change, 0 to replace, 3 to destroy" in destroy

    usage = cli("show", "-markdown")
    assert usage.code == 1 and "PLANFILE" in usage.err


TARGETED = """
workspace "main" {
  description = "experiments"
}

compute "a" {
  type        = "local"
  description = "first"
}

compute "b" {
  type        = "local"
  description = "second"
}

output "names" {
  value = tolist([compute.a.description, compute.b.description])
}
"""


def test_saved_targeted_plan_shows_the_whole_prior_state(cli: CLI) -> None:
    """show -json of a plan made with -target: prior_state holds every recorded resource
    (Terraform's prior state), planned_values only the target, as Terraform's do; outputs
    carry their type; and text show of state and plan leaves provider bookkeeping out."""
    cli.write("main.train.hcl", TARGETED)
    ok(cli("apply", "-auto-approve"))
    text = ok(cli("show")).out
    assert "workspace.main" in text and "path" in text
    assert "created_dir" not in text  # a workspace's bookkeeping, not an attribute
    state = json.loads(ok(cli("show", "-json")).out)
    assert state["values"]["outputs"]["names"]["type"] == ["tuple", ["string", "string"]]

    cli.write("main.train.hcl", TARGETED.replace("first", "1st").replace("second", "2nd"))
    ok(cli("plan", "-target", "compute.a", "-out", "plan.bin"))
    plan = json.loads(ok(cli("show", "-json", "plan.bin")).out)
    prior = state_resources(plan["prior_state"])
    assert set(prior) == {"workspace.main", "compute.a", "compute.b"}
    assert prior["compute.b"]["values"]["description"] == "second"
    assert "created_dir" not in prior["workspace.main"]["values"]
    planned = {r["address"] for r in plan["planned_values"]["root_module"]["resources"]}
    assert planned == {"compute.a"}
    assert plan["complete"] is False
    assert plan["prior_state"]["values"]["outputs"]["names"]["value"] == ["first", "second"]

    cli.write("main.train.hcl", TARGETED.replace("experiments", "runs"))
    ok(cli("plan", "-out", "update.bin"))
    shown = ok(cli("show", "update.bin")).out
    assert "workspace.main" in shown and "created_dir" not in shown
    full = json.loads(ok(cli("show", "-json", "update.bin")).out)
    assert full["complete"] is True
    assert full["planned_values"]["outputs"]["names"]["type"] == ["list", "string"]
