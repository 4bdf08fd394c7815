"""The Rego policies shipped in examples/ci/policies/opa/trainform.rego, evaluated on the same
plans as the checkov checks (tests/policy_plans.py): a good plan has no denies, each bad plan
gets exactly the deny of the rule it breaks, the cluster limit comes from data, and resources in
child modules are checked too.

The engine is regorus, Microsoft's Rego interpreter, through PyPI's `opa-eval` wheel
(`opa_eval.OpaEval(policy, data_json, query).evaluate_parsed(plan_json)`), installed by
scripts/install-test-deps into .venv-checkov and run with that virtualenv's python (trainform's
own virtualenv does not have it). OPA's binary and conftest do not install from the registries
reachable here, so their command lines in examples/ci/README.md are documented, not run."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest
from helpers import CLI, unavailable
from policy_plans import BAD_PLANS, GOOD, GOOD_ADDRESSES, POLICIES, BadPlan, plan_json, policy_tool

REGO = POLICIES / "opa" / "trainform.rego"
DENY = "data.trainform.policies.deny"

# argv: policy file, query, data JSON ("" for none); stdin: the plan; stdout: the result as JSON
EVALUATE = """
import json, sys
import opa_eval
policy, query, data = sys.argv[1:]
engine = opa_eval.OpaEval(policy, data_json=data or None, query=query)
print(json.dumps(engine.evaluate_parsed(sys.stdin.read())))
"""

MESSAGES = {
    1: "{}: every compute carries an owner tag (tags.owner)",
    2: '{}: pin host_key = "SHA256:..." and do not set trust_on_first_use',
    3: '{}: set max_duration (a time limit such as "2h")',
    4: "{}: max_nodes must be at most data.trainform.max_nodes (8)",
}


def deny(rule: int, address: str) -> str:
    return MESSAGES[rule].format(address)


@pytest.fixture(scope="module")
def python() -> str:
    """The policy tools' python, with opa_eval importable."""
    path = policy_tool("python")
    probe = subprocess.run(
        [path, "-c", "import opa_eval"], capture_output=True, text=True, timeout=60, check=False
    )
    if probe.returncode != 0:
        unavailable(
            f"opa-eval is not installed for {path}: run scripts/install-test-deps "
            f"({probe.stderr.strip().splitlines()[-1:]})"
        )
    return path


def evaluate(python: str, plan: str, query: str = DENY, data: dict[str, Any] | None = None) -> Any:
    """`query` evaluated by regorus on the shipped Rego policy, with `plan` as input."""
    done = subprocess.run(
        [python, "-c", EVALUATE, str(REGO), query, json.dumps(data) if data else ""],
        input=plan,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_good_plan_has_no_denies(cli: CLI, python: str) -> None:
    plan = plan_json(cli, GOOD)
    assert evaluate(python, plan) == []
    # the rules saw every resource: a policy that finds none denies nothing, and passes all
    resources = evaluate(python, plan, "data.trainform.policies.resources")
    assert {r["address"] for r in resources} == GOOD_ADDRESSES


@pytest.mark.parametrize("bad", BAD_PLANS, ids=[bad.id for bad in BAD_PLANS])
def test_each_rule_denies_a_bad_plan(cli: CLI, python: str, bad: BadPlan) -> None:
    assert evaluate(python, plan_json(cli, bad.config())) == [deny(bad.rule, bad.address)]


def test_max_nodes_limit_is_data(cli: CLI, python: str) -> None:
    plan = plan_json(cli, GOOD)  # max_nodes = 4
    limit = {"trainform": {"max_nodes": 3}}
    assert evaluate(python, plan, data=limit) == [
        "compute.pool: max_nodes must be at most data.trainform.max_nodes (3)"
    ]
    assert evaluate(python, plan, data={"trainform": {"max_nodes": 4}}) == []
    plan = plan_json(cli, GOOD.replace("max_nodes  = 4", "max_nodes  = 12"))
    assert evaluate(python, plan) == [deny(4, "compute.pool")]
    assert evaluate(python, plan, data={"trainform": {"max_nodes": 16}}) == []


TEAM = """
compute "box" {
  type = "local"
}

run "train" {
  experiment = "team"
  compute    = compute.box
  source_dir = "src"
  script     = "train.py"
}

module "pool" {
  source = "../pool"
}
"""

POOL = """
compute "pool" {
  type       = "docker-cluster"
  node_image = "trainform-node:latest"
  max_nodes  = 9
  tags       = { owner = "ml" }
}
"""


def test_resources_in_child_modules_are_checked(cli: CLI, python: str) -> None:
    cli.write("modules/team/main.train.hcl", TEAM)
    cli.write("modules/team/src/train.py", "print('team')\n")
    cli.write("modules/pool/main.train.hcl", POOL)
    plan = plan_json(cli, GOOD + '\nmodule "team" {\n  source = "./modules/team"\n}\n')
    shown = json.loads(plan)["planned_values"]["root_module"]
    assert [m["address"] for m in shown["child_modules"]] == ["module.team"]
    assert sorted(evaluate(python, plan)) == [
        deny(1, "module.team.compute.box"),
        deny(4, "module.team.module.pool.compute.pool"),
        deny(3, "module.team.run.train"),
    ]


def test_policy_reads_data_only_under_its_own_key() -> None:
    """OPA refuses a rule that reads all of `data` (it holds the policy's own rules:
    rego_recursion_error), a check regorus does not make: the policy's one setting is read at
    data.trainform.max_nodes, which no rule defines."""
    code = "\n".join(line.split("#", 1)[0] for line in REGO.read_text().splitlines())
    reads = [code[m.start() : m.start() + 30] for m in re.finditer(r"\bdata\b", code)]
    assert reads, "the policy reads no data: where is its max_nodes limit?"
    for read in reads:
        assert read.startswith("data.trainform.max_nodes"), read
