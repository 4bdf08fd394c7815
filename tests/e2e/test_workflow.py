"""End-to-end workflow through the real CLI, as a new user would run it: write a configuration,
validate, plan, save and apply a plan, inspect state and outputs, edit, move and remove state,
destroy; plus variable precedence, targeting, HCL/YAML equivalence and a third-party provider.

Every test runs `python -m trainform` in its own temporary folder (fixtures in
tests/conftest.py) against the real SQLite state and the real local/workspace providers.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import sqlite3
from pathlib import Path

from helpers import ok

TOKEN = "tok-e2e-workflow-5f1c"

CONFIG = """\
variable "team" {
  type        = string
  default     = "ml"
  description = "Who owns this"
}

variable "token" {
  type      = string
  sensitive = true
}

variable "nodes" {
  type    = number
  default = 2
}

workspace "main" {
  description = "Experiments of team ${var.team}"
}

compute "box" {
  type = "local"
  tags = { team = var.team }
}

compute "pool" {
  type       = "local"
  count      = var.nodes
  tags       = { node = "n${count.index}" }
  depends_on = [workspace.main]
}

output "team" {
  value = var.team
}

output "cpus" {
  value = compute.box.facts.cpus
}

output "hostname" {
  value = compute.box.facts.hostname
}

output "token" {
  value     = var.token
  sensitive = true
}
"""

ALL = ["compute.box", "compute.pool[0]", "compute.pool[1]", "workspace.main"]


def setup(cli, text: str = CONFIG):
    cli.write("main.train.hcl", text)
    cli.env["TRAINFORM_VAR_token"] = TOKEN
    return cli


def applied(cli, text: str = CONFIG):
    setup(cli, text)
    ok(cli("apply", "-auto-approve"))
    return cli


def state_list(cli) -> list[str]:
    return ok(cli("state", "list")).out.split()


def plan_json(cli, *args: str) -> dict:
    return json.loads(ok(cli("plan", "--json", *args)).out)


def actions(plan: dict) -> dict[str, list[str]]:
    return {c["address"]: c["change"]["actions"] for c in plan["resource_changes"]}


def edit(cli, old: str, new: str) -> None:
    path = cli.cwd / "main.train.hcl"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


# ---------------------------------------------------------------------------- the main loop


def test_validate_plan_save_apply_and_converge(cli):
    setup(cli)
    out = ok(cli("validate")).out
    assert "valid" in out

    first = ok(cli("plan", "--detailed-exitcode"), 2).out
    for addr in ALL:
        assert f"# {addr} will be" in first
    assert "Plan: 4 to add, 0 to change, 0 to destroy" in first

    # Terraform spelling: one dash, option=value
    saved = ok(cli("plan", "-out=plan.bin"))
    assert (cli.cwd / "plan.bin").is_file()
    assert "apply plan.bin" in saved.out

    result = ok(cli("apply", "plan.bin"))
    assert "Apply complete! Resources: 4 added, 0 changed, 0 destroyed." in result.out
    assert state_list(cli) == ALL

    again = ok(cli("plan", "--detailed-exitcode"), 0)
    assert "No changes" in again.out


def test_show_lists_gathered_facts(cli):
    applied(cli)
    out = ok(cli("show")).out
    assert "# compute.box" in out
    assert re.search(rf'hostname\s+= "{re.escape(socket.gethostname())}"', out), out
    assert re.search(rf"cpus\s+= {os.cpu_count()}\b", out), out
    assert "Outputs:" in out

    data = json.loads(ok(cli("show", "--json")).out)
    box = next(
        r for r in data["values"]["root_module"]["resources"] if r["address"] == "compute.box"
    )
    assert box["type"] == "trainform_local_compute"
    assert box["values"]["facts"]["hostname"] == socket.gethostname()
    assert box["values"]["facts"]["cpus"] == os.cpu_count()


def test_output_text_raw_and_json(cli):
    applied(cli)
    text = ok(cli("output")).out
    assert re.search(r'^team\s+= "ml"$', text, re.M), text
    assert re.search(rf"^cpus\s+= {os.cpu_count()}$", text, re.M), text
    assert re.search(r"^token\s+= \(sensitive value\)$", text, re.M), text

    assert ok(cli("output", "team")).out.strip() == '"ml"'
    assert ok(cli("output", "-raw", "team")).out.strip() == "ml"

    data = json.loads(ok(cli("output", "--json")).out)
    assert data["team"] == {"value": "ml", "sensitive": False}
    assert data["cpus"] == {"value": os.cpu_count(), "sensitive": False}
    assert data["hostname"]["value"] == socket.gethostname()
    assert data["token"] == {"value": None, "sensitive": True}
    assert json.loads(ok(cli("output", "--json", "cpus")).out) == os.cpu_count()

    missing = cli("output", "tema")
    assert missing.code == 1 and "did you mean" in missing.err and "Traceback" not in missing.all


def test_editing_tags_updates_in_place(cli):
    applied(cli)
    edit(cli, "tags = { team = var.team }", 'tags = { team = var.team, stage = "prod" }')
    out = ok(cli("plan", "--detailed-exitcode"), 2).out
    assert "# compute.box will be updated in-place" in out
    assert re.search(r"^\s+~ compute \"box\" \{", out, re.M), out
    assert 'stage = "prod"' in out
    assert "Plan: 0 to add, 1 to change, 0 to destroy" in out
    assert "forces replacement" not in out
    assert actions(plan_json(cli)) == {
        "compute.box": ["update"],
        "compute.pool[0]": ["no-op"],
        "compute.pool[1]": ["no-op"],
        "workspace.main": ["no-op"],
    }

    ok(cli("apply", "-auto-approve"))
    assert ok(cli("plan", "--detailed-exitcode"), 0)
    shown = ok(cli("state", "show", "compute.box")).out
    assert 'stage = "prod"' in shown


def test_editing_workdir_forces_replacement(cli, tmp_path):
    applied(cli)
    edit(
        cli,
        "tags = { team = var.team }",
        f'tags = {{ team = var.team }}\n  workdir = "{tmp_path}/wd"',
    )
    out = ok(cli("plan", "--detailed-exitcode"), 2).out
    assert re.search(r'^-/\+ compute "box" \{', out, re.M), out
    assert re.search(r"workdir\s+= null -> \".*/wd\" # forces replacement", out), out
    assert "Plan: 1 to add, 0 to change, 1 to destroy" in out
    assert actions(plan_json(cli))["compute.box"] == ["delete", "create"]

    ok(cli("apply", "-auto-approve"))
    ok(cli("plan", "--detailed-exitcode"), 0)
    shown = ok(cli("state", "show", "compute.box")).out
    assert f'workdir_path        = "{tmp_path}/wd"' in shown


def test_state_mv_follows_a_renamed_block_without_replacing_it(cli):
    applied(cli)
    edit(cli, 'compute "box" {', 'compute "laptop" {')
    edit(cli, "compute.box.facts.cpus", "compute.laptop.facts.cpus")
    edit(cli, "compute.box.facts.hostname", "compute.laptop.facts.hostname")
    # Without the move, the rename would detach one and attach the other.
    before = actions(plan_json(cli))
    assert before["compute.box"] == ["delete"] and before["compute.laptop"] == ["create"]

    moved = ok(cli("state", "mv", "compute.box", "compute.laptop"))
    assert "compute.laptop" in moved.out
    assert state_list(cli) == [
        "compute.laptop",
        "compute.pool[0]",
        "compute.pool[1]",
        "workspace.main",
    ]
    ok(cli("plan", "--detailed-exitcode"), 0)

    bad = cli("state", "mv", "compute.nothere", "compute.other")
    assert bad.code == 1 and "compute.nothere" in bad.err and "Traceback" not in bad.all


def test_state_rm_forgets_without_destroying(cli):
    applied(cli)
    workspace = json.loads(ok(cli("show", "--json")).out)["values"]["root_module"]["resources"]
    path = next(r for r in workspace if r["address"] == "workspace.main")["values"]["path"]
    assert Path(path).is_dir()

    out = ok(cli("state", "rm", "compute.pool[1]", "workspace.main")).out
    assert "Removed compute.pool[1]" in out and "Removed workspace.main" in out
    assert state_list(cli) == ["compute.box", "compute.pool[0]"]
    assert Path(path).is_dir(), "state rm must not destroy the real artifact store"

    # Forgotten resources are planned again.
    assert actions(plan_json(cli))["compute.pool[1]"] == ["create"]
    assert actions(plan_json(cli))["workspace.main"] == ["create"]


def test_graph_prints_dot_with_edges(cli):
    setup(cli)
    out = ok(cli("graph")).out
    assert out.lstrip().startswith("digraph")
    assert out.rstrip().endswith("}")
    for edge in [
        '"compute.pool" -> "workspace.main"',  # depends_on
        '"compute.pool" -> "var.nodes"',  # count
        '"compute.box" -> "var.team"',  # reference in a map
        '"output.cpus" -> "compute.box"',  # facts
        '"workspace.main" -> "var.team"',  # interpolation
    ]:
        assert edge in out, f"{edge} missing from\n{out}"
    assert '"compute.box" -> "workspace.main"' not in out


# ---------------------------------------------------------------------------- init and -C


def test_init_adds_trainform_to_gitignore_exactly_once(cli):
    setup(cli)
    (cli.cwd / ".gitignore").write_text("*.pyc\nnode_modules")  # no final newline
    ok(cli("init"))
    ok(cli("init"))
    lines = (cli.cwd / ".gitignore").read_text().splitlines()
    assert lines == ["*.pyc", "node_modules", ".trainform/"]
    assert (cli.cwd / ".trainform").is_dir()


def test_init_creates_gitignore_when_missing(cli):
    setup(cli)
    ok(cli("init"))
    ok(cli("init"))
    assert (cli.cwd / ".gitignore").read_text() == ".trainform/\n"


def test_init_example_validates_and_applies(cli):
    ok(cli("init", "--example"))
    assert (cli.cwd / "main.train.hcl").is_file()
    ok(cli("validate"))
    result = ok(cli("apply", "-auto-approve"))
    assert "Apply complete!" in result.out
    assert state_list(cli)
    ok(cli("plan", "--detailed-exitcode"), 0)
    # a second `init --example` keeps the user's edits
    (cli.cwd / "main.train.hcl").write_text((cli.cwd / "main.train.hcl").read_text() + "# mine\n")
    ok(cli("init", "--example"))
    assert (cli.cwd / "main.train.hcl").read_text().endswith("# mine\n")


def test_chdir_runs_a_configuration_from_another_folder(cli, tmp_path):
    setup(cli)
    elsewhere = dataclasses.replace(cli, cwd=tmp_path)
    folder = str(cli.cwd)
    ok(elsewhere("-C", folder, "validate"))
    ok(elsewhere("-C", folder, "plan", "--detailed-exitcode"), 2)
    ok(elsewhere("-C", folder, "apply", "-auto-approve"))
    assert (cli.cwd / ".trainform" / "state.db").is_file()
    assert not (tmp_path / ".trainform").exists(), "state must live beside the configuration"
    assert ok(elsewhere("-C", folder, "state", "list")).out.split() == ALL
    assert ok(elsewhere("-C", folder, "output", "-raw", "team")).out.strip() == "ml"
    ok(cli("plan", "--detailed-exitcode"), 0)


def test_saved_plan_applies_with_chdir(cli, tmp_path):
    setup(cli)
    elsewhere = dataclasses.replace(cli, cwd=tmp_path)
    ok(elsewhere("-C", str(cli.cwd), "plan", "-out", str(tmp_path / "p.bin")))
    ok(elsewhere("-C", str(cli.cwd), "apply", str(tmp_path / "p.bin")))
    assert state_list(cli) == ALL


# ---------------------------------------------------------------------------- variables


def team_after(cli, *args: str) -> str:
    """The value of output "team" after applying with ``args``."""
    ok(cli("apply", "-auto-approve", *args))
    return ok(cli("output", "-raw", "team")).out.strip()


def team_planned(cli, *args: str) -> str:
    """The value output "team" would get (one command instead of two)."""
    return plan_json(cli, *args)["output_changes"]["team"]["after"]


def test_variable_precedence(cli):
    setup(cli)
    assert team_after(cli) == "ml"  # the default
    cli.env["TRAINFORM_VAR_team"] = "from-env"
    assert team_planned(cli) == "from-env"
    cli.write("trainform.tfvars", 'team = "from-tfvars"\n')
    assert team_planned(cli) == "from-tfvars"
    cli.write("b.auto.tfvars", 'team = "from-auto-b"\n')
    cli.write("a.auto.tfvars", 'team = "from-auto-a"\n')
    assert team_after(cli) == "from-auto-b"  # *.auto.tfvars in alphabetical order
    cli.write("one.tfvars", 'team = "from-file-one"\n')
    cli.write("two.tfvars", 'team = "from-file-two"\n')
    assert team_planned(cli, "--var-file", "one.tfvars") == "from-file-one"
    assert team_after(cli, "--var-file=one.tfvars", "--var", "team=from-cli") == "from-cli"
    # --var-file and --var count in command-line order: the later one wins
    assert team_planned(cli, "-var=team=from-cli", "-var-file=one.tfvars") == "from-file-one"
    assert team_planned(cli, "-var-file=two.tfvars", "-var-file=one.tfvars") == "from-file-one"
    assert team_planned(cli, "-var-file=one.tfvars", "-var-file=two.tfvars") == "from-file-two"
    assert team_after(cli, "--var", "team=first", "--var", "team=second") == "second"


def test_variable_files_in_json_and_yaml(cli):
    setup(cli)
    cli.write("vars.json", json.dumps({"team": "from-json", "nodes": 1}))
    cli.write("vars.yaml", "team: from-yaml\n")
    assert team_after(cli, "--var-file", "vars.json") == "from-json"
    assert state_list(cli) == ["compute.box", "compute.pool[0]", "workspace.main"]
    assert team_after(cli, "--var-file", "vars.json", "--var-file", "vars.yaml") == "from-yaml"


# ---------------------------------------------------------------------------- targeting


def test_target_limits_the_plan(cli):
    setup(cli)
    assert sorted(actions(plan_json(cli, "-target=compute.box"))) == ["compute.box"]
    # a target brings what it depends on
    assert sorted(actions(plan_json(cli, "--target", "compute.pool"))) == [
        "compute.pool[0]",
        "compute.pool[1]",
        "workspace.main",
    ]
    ok(cli("apply", "-auto-approve", "-target=compute.box"))
    assert state_list(cli) == ["compute.box"]
    ok(cli("plan", "--detailed-exitcode", "-target=compute.box"), 0)
    ok(cli("plan", "--detailed-exitcode"), 2)

    bad = cli("plan", "-target=compute.bx")
    assert bad.code == 1 and "did you mean" in bad.err and "Traceback" not in bad.all


def test_replace_forces_replacement(cli):
    applied(cli)
    out = ok(cli("plan", "--replace", "compute.box", "--detailed-exitcode"), 2).out
    assert re.search(r'^-/\+ compute "box" \{', out, re.M), out
    assert "replaced, as requested" in out
    assert actions(plan_json(cli, "-replace=compute.box")) == {
        "compute.box": ["delete", "create"],
        "compute.pool[0]": ["no-op"],
        "compute.pool[1]": ["no-op"],
        "workspace.main": ["no-op"],
    }
    result = ok(cli("apply", "-auto-approve", "-replace=compute.box"))
    assert "compute.box: Replacing..." in result.out
    assert "1 added, 0 changed, 1 destroyed" in result.out
    ok(cli("plan", "--detailed-exitcode"), 0)


# ---------------------------------------------------------------------------- destroy / refresh


def workspace_path(cli) -> Path:
    data = json.loads(ok(cli("show", "--json")).out)
    return Path(
        next(
            r
            for r in data["values"]["root_module"]["resources"]
            if r["address"] == "workspace.main"
        )["values"]["path"]
    )


def test_destroy_empties_state_and_removes_the_artifact_store(cli):
    applied(cli)
    store = workspace_path(cli)
    assert (store / "runs").is_dir()
    result = ok(cli("destroy", "-auto-approve"))
    assert "4 destroyed" in result.out
    assert state_list(cli) == []
    assert not store.exists()
    assert json.loads(ok(cli("output", "--json")).out) == {}
    ok(cli("plan", "--detailed-exitcode"), 2)  # everything would be created again


def test_destroy_without_confirmation_refuses(cli):
    applied(cli)
    result = cli("destroy")
    assert result.code == 1 and "Traceback" not in result.all
    assert "auto-approve" in result.err
    assert state_list(cli) == ALL


def test_refresh_only_records_a_deleted_workspace(cli):
    applied(cli)
    store = workspace_path(cli)
    import shutil

    shutil.rmtree(store)
    out = ok(cli("plan", "--refresh-only", "--detailed-exitcode"), 2).out
    assert "workspace.main has been deleted" in out
    assert state_list(cli) == ALL  # a plan changes nothing

    ok(cli("apply", "--refresh-only", "-auto-approve"))
    assert "workspace.main" not in state_list(cli)
    assert not store.exists(), "refresh-only must not recreate anything"
    assert actions(plan_json(cli))["workspace.main"] == ["create"]

    ok(cli("apply", "-auto-approve"))
    assert store.is_dir()
    shutil.rmtree(store)
    ok(cli("refresh"))
    assert "workspace.main" not in state_list(cli)
    assert not store.exists()


def test_refresh_with_nothing_changed_is_a_no_op(cli):
    applied(cli)
    out = ok(cli("refresh")).out
    assert "No changes" in out
    assert state_list(cli) == ALL


def insert_run(cli, workspace: str = "workspace.main") -> None:
    db = sqlite3.connect(cli.cwd / ".trainform" / "state.db")
    with db:
        db.execute(
            "INSERT INTO runs (id, address, workspace, experiment, status, fingerprint, created, "
            "finished, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                "run-1",
                "run.train",
                workspace,
                "exp",
                "completed",
                "abc",
                "2024-01-01T00:00:00+00:00",
                "2024-01-01T00:01:00+00:00",
                "{}",
            ],
        )
    db.close()


def test_workspace_with_run_history_needs_force_destroy(cli):
    applied(cli)
    store = workspace_path(cli)
    insert_run(cli)

    refused = cli("destroy", "-auto-approve")
    assert refused.code == 1 and "Traceback" not in refused.all
    assert "workspace.main" in refused.err and "force_destroy" in refused.err
    assert state_list(cli) == ALL
    assert store.is_dir()

    edit(cli, 'description = "Experiments', 'force_destroy = true\n  description = "Experiments')
    ok(cli("apply", "-auto-approve"))
    ok(cli("destroy", "-auto-approve"))
    assert state_list(cli) == []
    assert not store.exists()


# ---------------------------------------------------------------------------- HCL and YAML

EQUIV_HCL = """\
variable "team" {
  type    = string
  default = "vision"
}

variable "sizes" {
  type    = map(number)
  default = { small = 1, large = 4 }
}

locals {
  prefix = "tf-${var.team}"
  labels = { owner = var.team, tier = "gold" }
  hyper  = { optimizer = { name = "adam", lr = 0.001 }, layers = [64, 32] }
}

workspace "main" {
  description = "Workspace of ${local.prefix}"
  tags        = local.labels
  lifecycle {
    prevent_destroy = true
  }
}

compute "pool" {
  type                = "local"
  count               = 2
  max_concurrent_runs = count.index + 1
  tags                = { name = "${local.prefix}-${count.index}" }
  depends_on          = [workspace.main]
}

compute "sized" {
  type                = "local"
  for_each            = var.sizes
  max_concurrent_runs = each.value
  description         = "size ${each.key} of ${length(var.sizes)}"
  tags                = merge(local.labels, { size = each.key })
  lifecycle {
    ignore_changes        = [description]
    create_before_destroy = true
  }
}

output "names" {
  value = [for k, v in var.sizes : "${upper(k)}=${v * 2}"]
}

output "hyper" {
  value = local.hyper
}

output "lr" {
  value = local.hyper.optimizer.lr * 10
}

output "pool_tags" {
  value = { for i in [0, 1] : "n${i}" => local.prefix if i > 0 }
}
"""

EQUIV_YAML = """\
variable:
  team:
    type: string
    default: vision
  sizes:
    type: map(number)
    default:
      small: 1
      large: 4

locals:
  prefix: "tf-${var.team}"
  labels:
    owner: "${var.team}"
    tier: gold
  hyper:
    optimizer:
      name: adam
      lr: 0.001
    layers: [64, 32]

workspace:
  main:
    description: "Workspace of ${local.prefix}"
    tags: "${local.labels}"
    lifecycle:
      prevent_destroy: true

compute:
  pool:
    type: local
    count: 2
    max_concurrent_runs: "${count.index + 1}"
    tags:
      name: "${local.prefix}-${count.index}"
    depends_on: [workspace.main]
  sized:
    type: local
    for_each: "${var.sizes}"
    max_concurrent_runs: "${each.value}"
    description: "size ${each.key} of ${length(var.sizes)}"
    tags: "${merge(local.labels, { size = each.key })}"
    lifecycle:
      ignore_changes: [description]
      create_before_destroy: true

output:
  names:
    value: '${[for k, v in var.sizes : "${upper(k)}=${v * 2}"]}'
  hyper:
    value: "${local.hyper}"
  lr:
    value: "${local.hyper.optimizer.lr * 10}"
  pool_tags:
    value: '${{ for i in [0, 1] : "n${i}" => local.prefix if i > 0 }}'
"""


def test_hcl_and_yaml_forms_plan_identically(cli, tmp_path):
    hcl = cli
    hcl.write("main.train.hcl", EQUIV_HCL)
    yaml_dir = tmp_path / "yaml-form"
    yaml_dir.mkdir()
    yml = dataclasses.replace(cli, cwd=yaml_dir)
    yml.write("main.train.yaml", EQUIV_YAML)

    ok(hcl("validate"))
    ok(yml("validate"))
    a = ok(hcl("plan", "--json")).out
    b = ok(yml("plan", "--json")).out
    stamp = re.compile(r'"timestamp": "[^"]*"')  # when each plan was made
    assert stamp.sub("", a) == stamp.sub("", b)

    # ... and the plan is the one both forms describe, not an empty one.
    plan = json.loads(a)
    assert sorted(actions(plan)) == [
        "compute.pool[0]",
        "compute.pool[1]",
        'compute.sized["large"]',
        'compute.sized["small"]',
        "workspace.main",
    ]
    changes = {c["address"]: c for c in plan["resource_changes"]}
    assert changes["compute.pool[1]"]["change"]["after"]["max_concurrent_runs"] == 2
    assert changes["compute.pool[1]"]["change"]["after"]["tags"] == {"name": "tf-vision-1"}
    planned = {r["address"]: r for r in plan["planned_values"]["root_module"]["resources"]}
    assert planned["compute.pool[0]"]["depends_on"] == ["workspace.main"]
    assert changes['compute.sized["large"]']["change"]["after"]["tags"] == {
        "owner": "vision",
        "tier": "gold",
        "size": "large",
    }
    assert changes['compute.sized["large"]']["change"]["after"]["max_concurrent_runs"] == 4
    assert changes['compute.sized["small"]']["change"]["after"]["description"] == "size small of 2"
    assert changes["workspace.main"]["change"]["after"]["description"] == "Workspace of tf-vision"
    outputs = plan["output_changes"]
    assert sorted(outputs["names"]["after"]) == ["LARGE=8", "SMALL=2"]
    assert outputs["hyper"]["after"] == {
        "optimizer": {"name": "adam", "lr": 0.001},
        "layers": [64, 32],
    }
    assert outputs["lr"]["after"] == 0.01
    assert outputs["pool_tags"]["after"] == {"n1": "tf-vision"}

    # The graphs agree too, and both forms apply to the same outputs.
    assert ok(hcl("graph")).out == ok(yml("graph")).out
    ok(hcl("apply", "-auto-approve"))
    ok(yml("apply", "-auto-approve"))
    assert ok(hcl("output", "--json")).out == ok(yml("output", "--json")).out
    ok(hcl("plan", "--detailed-exitcode"), 0)
    ok(yml("plan", "--detailed-exitcode"), 0)


# ---------------------------------------------------------------------------- third-party provider


def test_third_party_provider_from_entry_points(plugin_cli, tmp_path):
    cli = plugin_cli
    markers = tmp_path / "markers"
    cli.write(
        "main.train.hcl",
        f"""\
compute "one" {{
  type       = "example"
  marker_dir = "{markers}"
  size       = 3
}}

compute "many" {{
  type       = "example"
  marker_dir = "{markers}"
  count      = 2
  size       = count.index + 10
  depends_on = [compute.one]
}}
""",
    )
    assert "example" in ok(cli("version")).out
    ok(cli("validate"))
    out = ok(cli("plan", "--detailed-exitcode"), 2).out
    assert "# compute.one will be provisioned" in out  # the provider's own verbs

    ok(cli("apply", "-auto-approve"))
    files = sorted(p.name for p in markers.iterdir())
    assert files == ["compute.many[0].json", "compute.many[1].json", "compute.one.json"]
    assert json.loads((markers / "compute.many[1].json").read_text())["size"] == 11
    ok(cli("plan", "--detailed-exitcode"), 0)

    # an in-place update goes through the provider
    path = cli.cwd / "main.train.hcl"
    path.write_text(path.read_text().replace("size       = 3", "size       = 5"))
    assert actions(plan_json(cli))["compute.one"] == ["update"]
    ok(cli("apply", "-auto-approve"))
    assert json.loads((markers / "compute.one.json").read_text())["size"] == 5

    # a marker deleted behind trainform's back is noticed and recreated
    (markers / "compute.many[0].json").unlink()
    assert actions(plan_json(cli))["compute.many[0]"] == ["create"]
    ok(cli("apply", "-auto-approve"))
    assert (markers / "compute.many[0].json").is_file()

    ok(cli("destroy", "-auto-approve"))
    assert list(markers.iterdir()) == []
    assert state_list(cli) == []


def test_the_example_provider_is_absent_without_the_plugin(cli, tmp_path):
    cli.write(
        "main.train.hcl",
        f'compute "one" {{\n  type       = "example"\n  marker_dir = "{tmp_path}"\n}}\n',
    )
    result = cli("validate")
    assert result.code == 1 and "Traceback" not in result.all
    assert "example" in result.err and "main.train.hcl:2:" in result.err
