"""checkov 3.3 (real, from PyPI) reads trainform's JSON plans, and the policies shipped in
examples/ci/policies pass on a good plan and fail on bad ones, through the CI example's
commands: `plan -out plan.bin`, `show -json plan.bin > plan.json`, then
`checkov -f plan.json --framework terraform_plan --external-checks-dir examples/ci/policies`.

checkov lives in a virtualenv of its own (scripts/install-test-deps makes .venv-checkov), or
wherever $TRAINFORM_CHECKOV points. The plans are tests/policy_plans.py's, which the Rego
policy's test (test_policy_rego.py) checks too."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest
from helpers import CLI
from policy_plans import BAD_PLANS, GOOD, GOOD_ADDRESSES, POLICIES, BadPlan, plan_json, policy_tool


@pytest.fixture(scope="module")
def checkov() -> str:
    return policy_tool("checkov")


def policy_check(cli: CLI, checkov: str, config: str, **env: str) -> tuple[int, dict[str, Any]]:
    """Plan `config` as CI does and run checkov with the shipped policies on it: (exit code,
    checkov's JSON report)."""
    plan_json(cli, config)
    done = subprocess.run(
        [
            checkov,
            "-f",
            "plan.json",
            "--framework",
            "terraform_plan",
            "--external-checks-dir",
            str(POLICIES),
            "--skip-download",
            "-o",
            "json",
        ],
        cwd=cli.cwd,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert isinstance(report, dict) and "summary" in report, done.stdout[:2000]
    return done.returncode, report


def failures(report: dict[str, Any]) -> set[tuple[str, str]]:
    return {(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]}


def test_good_plan_passes_every_policy(cli: CLI, checkov: str) -> None:
    code, report = policy_check(cli, checkov, GOOD)
    assert code == 0, failures(report)
    # the original bug: checkov read 0 resources and passed without checking anything
    assert report["summary"]["resource_count"] == len(GOOD_ADDRESSES)
    passed = {(c["check_id"], c["resource"]) for c in report["results"]["passed_checks"]}
    assert passed == {
        ("CKV_TRAINFORM_1", "compute.box"),
        ("CKV_TRAINFORM_1", "compute.gpu"),
        ("CKV_TRAINFORM_1", "compute.pool"),
        ("CKV_TRAINFORM_2", "compute.gpu"),
        ("CKV_TRAINFORM_3", "run.train"),
        ("CKV_TRAINFORM_4", "compute.pool"),
    }


@pytest.mark.parametrize("bad", BAD_PLANS, ids=[bad.id for bad in BAD_PLANS])
def test_each_policy_fails_a_bad_plan(cli: CLI, checkov: str, bad: BadPlan) -> None:
    code, report = policy_check(cli, checkov, bad.config())
    assert code == 1
    assert failures(report) == {(f"CKV_TRAINFORM_{bad.rule}", bad.address)}


def test_max_nodes_limit_is_a_policy_setting(cli: CLI, checkov: str) -> None:
    code, report = policy_check(cli, checkov, GOOD, TRAINFORM_POLICY_MAX_NODES="3")
    assert code == 1 and failures(report) == {("CKV_TRAINFORM_4", "compute.pool")}
    code, _ = policy_check(
        cli, checkov, GOOD.replace("= 4", "= 12"), TRAINFORM_POLICY_MAX_NODES="16"
    )
    assert code == 0
