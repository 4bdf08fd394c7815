"""The JSON plan follows Terraform's JSON plan format: the same keys and structure as a plan
that the real Terraform (on PATH) writes for ``terraform_data`` resources, nested
``after_unknown``/``*_sensitive``, Terraform's ``action_reason`` codes, no ``index`` where an
instance has no key, modules as ``child_modules``, and ``configuration`` with references."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_planner import local
from test_planner import planner as plain_planner  # noqa: F401  (a fixture)

from trainform.planner.diff import PlanOptions
from trainform.planner.jsonplan import plan_to_json
from trainform.providers.local import gather_local_facts

TF_MAIN = """
variable "secret" {
  type      = string
  sensitive = true
  default   = "tf-secret"
}
variable "n" {
  default = 2
}
resource "terraform_data" "a" {
  input = { owner = "me", token = var.secret, list = [1, 2] }
}
resource "terraform_data" "b" {
  count            = var.n
  input            = terraform_data.a.output
  triggers_replace = [var.n]
}
module "m" {
  source = "./mod"
  x      = "hi"
}
output "o" {
  value = terraform_data.a.id
}
"""
TF_MODULE = """
variable "x" {}
resource "terraform_data" "c" {
  for_each = toset(["k1"])
  input    = var.x
}
"""


RECORDED = Path(__file__).with_name("terraform_reference_plan.json")


@pytest.fixture
def planner(request: pytest.FixtureRequest) -> Any:
    """test_planner's planner, making plans as `plan -json` and saved plans do (with the
    parts only Terraform's JSON plan shows)."""
    plain = request.getfixturevalue("plain_planner")

    def plan(
        config: str,
        prior: list[dict[str, Any]] | None = None,
        options: PlanOptions | None = None,
        **kwargs: Any,
    ) -> Any:
        return plain(config, prior, replace(options or PlanOptions(), describe=True), **kwargs)

    return plan


def terraform_in(work: Path) -> Callable[..., str]:
    """``tf(*args)``: the terraform on PATH run in ``work`` (no CLI config, no checkpoint
    calls), its stdout; the configuration is initialised and applied first."""
    env = {**os.environ, "TF_CLI_CONFIG_FILE": "/dev/null", "CHECKPOINT_DISABLE": "1"}

    def tf(*args: str) -> str:
        done = subprocess.run(
            ["terraform", *args], cwd=work, env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    tf("init", "-input=false", "-no-color")
    tf("apply", "-auto-approve", "-input=false", "-no-color")
    return tf


@pytest.fixture(scope="module")
def terraform_plan(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real Terraform plan (as `terraform show -json PLAN` prints it) with prior state: a
    replace, a delete by count index, an update in a module and outputs. Made by the
    terraform on PATH; where there is none, the one Terraform 1.11.4 made from the same
    files (RECORDED, written by this fixture with TRAINFORM_RECORD_TERRAFORM=1)."""
    if shutil.which("terraform") is None:
        return dict(json.loads(RECORDED.read_text()))
    work = tmp_path_factory.mktemp("tf")
    (work / "main.tf").write_text(TF_MAIN)
    (work / "mod").mkdir()
    (work / "mod" / "main.tf").write_text(TF_MODULE)
    tf = terraform_in(work)
    main = TF_MAIN.replace("default = 2", "default = 1")
    (work / "main.tf").write_text(main)
    (work / "mod" / "main.tf").write_text(TF_MODULE.replace("var.x", '"${var.x}!"'))
    tf("plan", "-out", "p", "-input=false", "-no-color")
    shown = tf("show", "-json", "p")
    if os.environ.get("TRAINFORM_RECORD_TERRAFORM") == "1":
        RECORDED.write_text(json.dumps(json.loads(shown), indent=1) + "\n")
    return dict(json.loads(shown))


MODULE = """
variable "x" {
  type = string
}
compute "c" {
  type     = "local"
  for_each = toset(["k1"])
  tags     = { x = var.x }
}
"""

CONFIG = """
variable "token" {
  type      = string
  sensitive = true
  default   = "never-in-a-plan"
}
variable "n" {
  default = 1
}
compute "a" {
  type        = "local"
  description = "owner me"
  workdir     = "/w2"
}
compute "b" {
  type  = "local"
  count = var.n
  tags  = { of = compute.a.description }
}
environment "env" {
  user_managed = true
  variables    = { TOKEN = var.token, MODE = "fast" }
}
module "m" {
  source = "./mod"
  x      = "ho"
}
output "o" {
  value = compute.a.facts.cpus
}
"""


@pytest.fixture
def trainform_plan(planner: Any, tmp_path: Path) -> dict[str, Any]:
    """trainform's counterpart of terraform_plan: a replace (workdir is force-new), a
    delete by count index, an update in a module, a create and outputs."""
    directory = tmp_path / "tfm"
    (directory / "mod").mkdir(parents=True)
    (directory / "mod" / "main.train.hcl").write_text(MODULE)
    prior = [
        local("a", description="owner me", workdir="/w1"),
        local("b", 0, tags={"of": "owner me"}, workdir="/old"),  # force-new: replaced
        local("b", 1, tags={"of": "owner me"}),
        {**local("c", "k1", tags={"x": "hi"}), "address": 'module.m.compute.c["k1"]'},
    ]
    planned = planner(
        CONFIG,
        prior,
        outputs={"o": {"value": 2, "sensitive": False}},
        directory=directory,
        refresh=False,
    )
    return plan_to_json(planned.plan)


def by_address(changes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["address"]: c for c in changes}


def test_top_level_keys_are_terraforms(
    terraform_plan: dict[str, Any], trainform_plan: dict[str, Any]
) -> None:
    assert set(terraform_plan) <= set(trainform_plan), set(terraform_plan) - set(trainform_plan)
    assert trainform_plan["format_version"] == terraform_plan["format_version"] == "1.2"
    assert trainform_plan["applyable"] is True and trainform_plan["errored"] is False
    # no keys of trainform's old format
    assert not {"trainform_version", "has_changes", "mode", "targets"} & set(trainform_plan)


def test_resource_changes_have_terraforms_shape(
    terraform_plan: dict[str, Any], trainform_plan: dict[str, Any]
) -> None:
    tf = by_address(terraform_plan["resource_changes"])
    ours = by_address(trainform_plan["resource_changes"])
    pairs = [
        ("terraform_data.b[0]", "compute.b[0]"),  # replaced, with a count index
        ("terraform_data.b[1]", "compute.b[1]"),  # deleted by count index
        ('module.m.terraform_data.c["k1"]', 'module.m.compute.c["k1"]'),  # updated in a module
        ("terraform_data.a", "compute.a"),  # no index at all
    ]
    for theirs, mine in pairs[:3]:
        assert set(tf[theirs]) == set(ours[mine]), (theirs, set(tf[theirs]) ^ set(ours[mine]))
        assert set(tf[theirs]["change"]) == set(ours[mine]["change"]), theirs
        assert tf[theirs]["change"]["actions"] == ours[mine]["change"]["actions"], theirs
        assert tf[theirs].get("action_reason") == ours[mine].get("action_reason"), theirs
    # a replace of compute.a (force-new workdir) where Terraform's a is a no-op: same keys
    # but for action_reason and replace_paths
    assert "index" not in ours["compute.a"] and "index" not in tf["terraform_data.a"]
    assert ours["compute.a"]["action_reason"] == "replace_because_cannot_update"
    assert ours["compute.a"]["change"]["replace_paths"] == [["workdir"]]
    assert ours['module.m.compute.c["k1"]']["module_address"] == "module.m"
    assert ours['module.m.compute.c["k1"]']["index"] == "k1"
    assert ours["compute.b[0]"]["index"] == 0
    for change in ours.values():
        assert change["type"] == "trainform_local_compute" or change["address"] == "environment.env"
        assert change["provider_name"].startswith("registry.trainform.dev/trainform/")
    assert ours["environment.env"]["type"] == "trainform_environment"
    # before_sensitive of a create and after_sensitive of a delete are false, as Terraform's
    assert ours["environment.env"]["change"]["before_sensitive"] is False
    assert ours["compute.b[1]"]["change"]["after_sensitive"] is False
    assert tf["terraform_data.b[1]"]["change"]["after_sensitive"] is False


def test_after_unknown_and_sensitive_are_nested(trainform_plan: dict[str, Any]) -> None:
    env = by_address(trainform_plan["resource_changes"])["environment.env"]["change"]
    assert env["after"]["variables"] == {"TOKEN": None, "MODE": "fast"}
    assert env["after_sensitive"]["variables"] == {"TOKEN": True}
    assert env["after_sensitive"]["pip"] == []  # lists mirrored element by element
    assert env["after_unknown"]["hash"] is True
    created = by_address(trainform_plan["resource_changes"])["compute.a"]["change"]
    assert created["after_unknown"]["facts"] is True
    assert created["after_unknown"]["tags"] == {}  # a known map: mirrored, nothing unknown
    assert "facts" not in created["after"]


def test_planned_values_and_prior_state_are_module_trees(
    terraform_plan: dict[str, Any], trainform_plan: dict[str, Any]
) -> None:
    for key in ("planned_values", "prior_state"):
        tf = terraform_plan[key] if key == "planned_values" else terraform_plan[key]["values"]
        ours = trainform_plan[key] if key == "planned_values" else trainform_plan[key]["values"]
        assert set(tf) == set(ours), key
        assert set(tf["root_module"]) == set(ours["root_module"]), key
        (tf_child,) = tf["root_module"]["child_modules"]
        (child,) = ours["root_module"]["child_modules"]
        assert set(tf_child) == set(child) and child["address"] == "module.m"
        assert [r["address"] for r in child["resources"]] == ['module.m.compute.c["k1"]']
        assert set(tf_child["resources"][0]) == set(child["resources"][0]), key
    assert set(trainform_plan["prior_state"]) == set(terraform_plan["prior_state"])
    prior = by_address(trainform_plan["prior_state"]["values"]["root_module"]["resources"])
    assert prior["compute.a"]["values"]["workdir"] == "/w1"
    assert "index" not in prior["compute.a"]
    planned = by_address(trainform_plan["planned_values"]["root_module"]["resources"])
    assert planned["compute.a"]["values"]["workdir"] == "/w2"
    assert "compute.b[1]" not in planned  # deleted
    assert trainform_plan["planned_values"]["outputs"]["o"] == {"sensitive": False}  # unknown


def test_configuration_has_expressions_and_references(
    terraform_plan: dict[str, Any], trainform_plan: dict[str, Any]
) -> None:
    tf = terraform_plan["configuration"]
    ours = trainform_plan["configuration"]
    assert set(tf) == set(ours)
    assert set(tf["root_module"]) == set(ours["root_module"])
    tf_b = by_address(tf["root_module"]["resources"])["terraform_data.b"]
    b = by_address(ours["root_module"]["resources"])["compute.b"]
    assert set(tf_b) == set(b)
    assert b["count_expression"] == {"references": ["var.n"]}
    assert b["expressions"]["tags"] == {"references": ["compute.a.description", "compute.a"]}
    assert b["type"] == "trainform_local_compute" and b["provider_config_key"] == "local"
    a = by_address(ours["root_module"]["resources"])["compute.a"]
    assert a["expressions"]["workdir"] == {"constant_value": "/w2"}
    call = ours["root_module"]["module_calls"]["m"]
    assert set(call) == set(tf["root_module"]["module_calls"]["m"])
    assert call["expressions"]["x"] == {"constant_value": "ho"}
    (c,) = call["module"]["resources"]
    assert c["for_each_expression"] == {"constant_value": ["k1"]} or "for_each_expression" in c
    assert c["expressions"]["tags"] == {"references": ["var.x"]}
    assert ours["root_module"]["outputs"]["o"]["expression"]["references"] == [
        "compute.a.facts.cpus",
        "compute.a.facts",
        "compute.a",
    ]
    # a sensitive variable's default is never written
    assert ours["root_module"]["variables"]["token"] == {"default": None, "sensitive": True}
    assert trainform_plan["variables"]["token"] == {"value": None, "sensitive": True}
    assert "never-in-a-plan" not in json.dumps(trainform_plan)
    assert {"resource": "compute.a", "attribute": ["description"]} in trainform_plan[
        "relevant_attributes"
    ]


def test_internal_attributes_never_appear(planner: Any, tmp_path: Path) -> None:
    """A workspace records created_dir (whether apply made its folder) beside its schema's
    attributes: the JSON plan leaves it out, in prior_state and in an update's after."""
    prior = [
        {
            "address": "workspace.w",
            "kind": "workspace",
            "name": "w",
            "key": None,
            "provider": "workspace",
            "attributes": {
                "description": "old",
                "artifact_store": str(tmp_path / "store"),
                "tags": {},
                "force_destroy": False,
            },
            "computed": {"path": str(tmp_path / "store"), "id": "w1", "created_dir": True},
            "status": "ready",
        }
    ]
    config = (
        f'workspace "w" {{\n  description = "new"\n  artifact_store = "{tmp_path / "store"}"\n}}\n'
    )
    data = plan_to_json(planner(config, prior, refresh=False).plan)
    assert "created_dir" not in json.dumps(data)
    (change,) = data["resource_changes"]
    assert change["change"]["actions"] == ["update"] and change["change"]["after"]["id"] == "w1"


REASONS = """
compute "kept" {
  type = "local"
}
compute "forced" {
  type = "local"
}
compute "each" {
  type     = "local"
  for_each = toset(["a"])
}
"""


def test_action_reason_codes(planner: Any) -> None:
    prior = [
        local("kept", status="tainted"),
        local("forced"),
        local("gone"),
        local("each", "a"),
        local("each", "b"),
    ]
    planned = planner(REASONS, prior, PlanOptions(replace=("compute.forced",)), refresh=False)
    reasons = {
        c["address"]: c.get("action_reason") for c in plan_to_json(planned.plan)["resource_changes"]
    }
    assert reasons == {
        "compute.kept": "replace_because_tainted",
        "compute.forced": "replace_by_request",
        "compute.gone": "delete_because_no_resource_config",
        'compute.each["a"]': None,
        'compute.each["b"]': "delete_because_each_key",
    }


def test_moved_resource_has_previous_address(planner: Any) -> None:
    config = 'compute "new" {\n  type = "local"\n}\nmoved {\n  from = compute.old\n  to = compute.new\n}\n'
    planned = planner(config, [local("old")], refresh=False)
    (change,) = plan_to_json(planned.plan)["resource_changes"]
    assert change["address"] == "compute.new" and change["previous_address"] == "compute.old"
    assert change["change"]["actions"] == ["no-op"]
    assert "action_reason" not in change


def test_module_gone_is_delete_because_no_module(planner: Any) -> None:
    prior = [{**local("c", "k1"), "address": 'module.m.compute.c["k1"]'}]
    planned = planner('compute "x" {\n  type = "local"\n}\n', prior, refresh=False)
    reasons = {
        c["address"]: c.get("action_reason") for c in plan_to_json(planned.plan)["resource_changes"]
    }
    assert reasons['module.m.compute.c["k1"]'] == "delete_because_no_module"


CHECKS = """
variable "n" {
  default = 2
}
compute "a" {
  type = "local"
}
check "enough" {
  assert {
    condition     = var.n > 1
    error_message = "n is too small"
  }
}
check "huge" {
  assert {
    condition     = var.n > 10
    error_message = "n is only ${var.n}"
  }
}
"""


def test_check_blocks_results_are_terraforms_checks(planner: Any) -> None:
    data = plan_to_json(planner(CHECKS, refresh=False).plan)
    assert data["checks"] == [
        {
            "address": {"kind": "check", "name": "enough", "to_display": "check.enough"},
            "status": "pass",
            "instances": [{"address": {"to_display": "check.enough"}, "status": "pass"}],
        },
        {
            "address": {"kind": "check", "name": "huge", "to_display": "check.huge"},
            "status": "fail",
            "instances": [
                {
                    "address": {"to_display": "check.huge"},
                    "status": "fail",
                    "problems": [{"message": "n is only 2"}],
                }
            ],
        },
    ]


def test_resource_drift_has_the_shape_of_a_resource_change(planner: Any) -> None:
    """A fact that changed outside trainform: Terraform's resource_drift entry, an update
    from the recorded object to the one the refresh read."""
    facts = gather_local_facts()
    recorded = local("a", description="d")
    recorded["computed"] = {"facts": {**facts, "cpus": facts["cpus"] + 64}, "workdir_path": "/w"}
    config = 'compute "a" {\n  type = "local"\n  description = "d"\n}\n'
    data = plan_to_json(planner(config, [recorded]).plan)
    (drift,) = data["resource_drift"]
    (change,) = data["resource_changes"]
    assert set(drift) == set(change) - {"action_reason"}
    assert set(drift["change"]) == {
        "actions",
        "before",
        "after",
        "after_unknown",
        "before_sensitive",
        "after_sensitive",
    }
    assert drift["change"]["actions"] == ["update"]
    assert drift["change"]["before"]["facts"]["cpus"] == facts["cpus"] + 64
    assert drift["change"]["after"]["facts"]["cpus"] == facts["cpus"]


# -- against a second real Terraform plan: -target, conditions, output types, relevant
# attributes (each test below fails on a JSON plan built from the changes alone)

TF_MORE = """
locals {
  l = terraform_data.a.input
}
resource "terraform_data" "a" {
  input = "a"
}
resource "terraform_data" "b" {
  input = local.l
}
resource "terraform_data" "c" {
  count = 2
  input = "c"
  lifecycle {
    precondition {
      condition     = length(terraform_data.a.input) > 0
      error_message = "a's input is short"
    }
    postcondition {
      condition     = self.input == "c"
      error_message = "c's input changed"
    }
  }
}
resource "terraform_data" "quiet" {
  input = terraform_data.a.id
}
output "l" {
  value = tolist(["x", "y"])
}
output "q" {
  value = { a = [1, 2], b = "x", c = { d = true } }
}
output "u" {
  value = terraform_data.b.output
}
"""

RECORDED_MORE = Path(__file__).with_name("terraform_reference_more.json")


@pytest.fixture(scope="module")
def terraform_more(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two real Terraform plans over TF_MORE once applied with a's input "a" and then
    changed to "a2": ``target``, with ``-target terraform_data.a``; ``full``, without. Made
    by the terraform on PATH, else the ones Terraform 1.11.4 made (RECORDED_MORE)."""
    if shutil.which("terraform") is None:
        return dict(json.loads(RECORDED_MORE.read_text()))
    work = tmp_path_factory.mktemp("tf-more")
    (work / "main.tf").write_text(TF_MORE)
    tf = terraform_in(work)
    (work / "main.tf").write_text(TF_MORE.replace('input = "a"', 'input = "a2"'))
    tf("plan", "-target", "terraform_data.a", "-out", "t", "-input=false", "-no-color")
    tf("plan", "-out", "f", "-input=false", "-no-color")
    shown = {
        "target": json.loads(tf("show", "-json", "t")),
        "full": json.loads(tf("show", "-json", "f")),
    }
    if os.environ.get("TRAINFORM_RECORD_TERRAFORM") == "1":
        RECORDED_MORE.write_text(json.dumps(shown, indent=1) + "\n")
    return shown


MORE = """
locals {
  l = compute.a.description
}
compute "a" {
  type        = "local"
  description = "a2"
}
compute "b" {
  type        = "local"
  description = local.l
}
compute "c" {
  type        = "local"
  count       = 2
  description = "c"
  lifecycle {
    precondition {
      condition     = length(compute.a.description) > 5
      error_message = "a's description is short"
    }
    postcondition {
      condition     = self.description == "c"
      error_message = "c's description changed"
    }
  }
}
compute "quiet" {
  type = "local"
  tags = { of = compute.a.workdir }
}
output "l" {
  value = tolist(["x", "y"])
}
output "q" {
  value = { a = [1, 2], b = "x", c = { d = true } }
}
output "u" {
  value = compute.b.facts
}
"""

MORE_PRIOR = [
    local("a", description="a"),
    local("b", description="a"),
    local("c", 0, description="c"),
    local("c", 1, description="c"),
    local("quiet", tags={"of": None}),
]
MORE_OUTPUTS = {
    "l": {"value": ["x", "y"], "sensitive": False},
    "q": {"value": {"a": [1, 2], "b": "x", "c": {"d": True}}, "sensitive": False},
}


def resource_addresses(values: dict[str, Any]) -> set[str]:
    return {r["address"] for r in values["root_module"].get("resources", [])}


def test_targeted_plan_has_the_whole_prior_state(
    terraform_more: dict[str, Any],
    planner: Any,
) -> None:
    """With -target, Terraform's prior_state is every recorded resource and planned_values
    only what the plan changes; a targeted plan is not complete."""
    tf = terraform_more["target"]
    assert resource_addresses(tf["prior_state"]["values"]) == {
        "terraform_data.a",
        "terraform_data.b",
        "terraform_data.c[0]",
        "terraform_data.c[1]",
        "terraform_data.quiet",
    }
    assert resource_addresses(tf["planned_values"]) == {"terraform_data.a"}
    assert tf["complete"] is False
    planned = planner(
        MORE, MORE_PRIOR, PlanOptions(targets=("compute.a",)), outputs=MORE_OUTPUTS, refresh=False
    )
    ours = plan_to_json(planned.plan)
    assert resource_addresses(ours["prior_state"]["values"]) == {
        "compute.a",
        "compute.b",
        "compute.c[0]",
        "compute.c[1]",
        "compute.quiet",
    }
    assert resource_addresses(ours["planned_values"]) == {"compute.a"}
    assert ours["complete"] is False
    prior = by_address(ours["prior_state"]["values"]["root_module"]["resources"])
    assert prior["compute.b"]["values"]["description"] == "a"
    tf_b = by_address(tf["prior_state"]["values"]["root_module"]["resources"])["terraform_data.b"]
    assert set(prior["compute.b"]) == set(tf_b) - {"depends_on"}  # none recorded here
    assert set(ours["prior_state"]["values"]["outputs"]) == {"l", "q"}  # outputs too
    assert plan_to_json(planner(MORE, MORE_PRIOR, refresh=False).plan)["complete"] is True


def test_resource_conditions_are_checks(
    terraform_more: dict[str, Any],
    planner: Any,
) -> None:
    """Preconditions and postconditions are Terraform's checks of kind "resource", one
    instance per resource instance; a failed precondition of an unchanged instance is a
    failed check (Terraform would stop the plan on it: both show its message)."""
    tf = {c["address"]["to_display"]: c for c in terraform_more["full"]["checks"]}
    tf_c = tf["terraform_data.c"]
    data = plan_to_json(planner(MORE, MORE_PRIOR, outputs=MORE_OUTPUTS, refresh=False).plan)
    ours = {c["address"]["to_display"]: c for c in data["checks"]}
    assert list(ours) == ["compute.c"]
    c = ours["compute.c"]
    assert set(c) == set(tf_c) and set(c["address"]) == set(tf_c["address"])
    assert c["address"] == {
        "kind": "resource",
        "mode": "managed",
        "name": "c",
        "to_display": "compute.c",
        "type": "trainform_local_compute",
    }
    assert [i["address"] for i in c["instances"]] == [
        {"instance_key": 0, "to_display": "compute.c[0]"},
        {"instance_key": 1, "to_display": "compute.c[1]"},
    ]
    assert [i["address"] for i in tf_c["instances"]] == [
        {"instance_key": 0, "to_display": "terraform_data.c[0]"},
        {"instance_key": 1, "to_display": "terraform_data.c[1]"},
    ]
    # "a2" is short: the precondition fails; the postcondition holds
    assert c["status"] == "fail"
    assert c["instances"][0]["problems"] == [{"message": "a's description is short"}]
    passing = plan_to_json(
        planner(MORE.replace('"a2"', '"longer"'), MORE_PRIOR, refresh=False).plan
    )["checks"]
    assert [(x["status"], [i["status"] for i in x["instances"]]) for x in passing] == [
        ("pass", ["pass", "pass"])
    ]


def test_outputs_carry_terraforms_types(
    terraform_more: dict[str, Any],
    planner: Any,
) -> None:
    """planned_values and prior_state outputs carry Terraform's JSON type; output_changes
    has none, and no "after" for a value known only after apply."""
    tf = terraform_more["full"]
    data = plan_to_json(planner(MORE, MORE_PRIOR, outputs=MORE_OUTPUTS, refresh=False).plan)
    planned = data["planned_values"]["outputs"]
    assert planned["l"] == tf["planned_values"]["outputs"]["l"]  # ["list", "string"]
    assert planned["l"]["type"] == ["list", "string"]
    assert planned["q"] == tf["planned_values"]["outputs"]["q"]
    assert planned["u"] == tf["planned_values"]["outputs"]["u"] == {"sensitive": False}
    prior = data["prior_state"]["values"]["outputs"]
    assert prior["q"] == tf["prior_state"]["values"]["outputs"]["q"]
    assert set(prior["l"]) == set(tf["prior_state"]["values"]["outputs"]["l"])
    for name in ("l", "u"):
        assert set(data["output_changes"][name]) == set(tf["output_changes"][name]), name
    assert "after" not in data["output_changes"]["u"]


def test_relevant_attributes_are_those_behind_changes(
    terraform_more: dict[str, Any],
    planner: Any,
) -> None:
    """Terraform's relevant_attributes: the attributes that changed resources and outputs
    refer to, through locals too; an unchanged resource's references are not relevant."""
    tf = terraform_more["full"]["relevant_attributes"]
    assert {"resource": "terraform_data.a", "attribute": ["input"]} in tf  # through local.l
    assert all(r["resource"] != "terraform_data.a" or r["attribute"] != ["id"] for r in tf)
    data = plan_to_json(planner(MORE, MORE_PRIOR, outputs=MORE_OUTPUTS, refresh=False).plan)
    ours = data["relevant_attributes"]
    assert {"resource": "compute.a", "attribute": ["description"]} in ours
    assert {"resource": "compute.a", "attribute": ["workdir"]} not in ours


def test_only_json_and_saved_plans_build_terraforms_extra_parts(
    request: pytest.FixtureRequest,
) -> None:
    """The configuration, prior state, variables and relevant attributes are built only when
    asked (`plan -json`, `plan -out`): a text plan or an apply does not pay for them."""
    plain = request.getfixturevalue("plain_planner")
    config = 'compute "x" {\n  type = "local"\n}\n'
    bare = plain(config, [local("x")], refresh=False).plan
    assert (bare.configuration, bare.prior_state, bare.relevant_attributes) == ({}, {}, ())
    full = plain(config, [local("x")], PlanOptions(describe=True), refresh=False).plan
    assert full.configuration and full.prior_state
