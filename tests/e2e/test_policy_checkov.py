"""checkov 3.3 (real, from PyPI) reads trainform's JSON plans, and the policies shipped in
examples/ci/policies pass on a good plan and fail on bad ones, through the CI example's
commands: `plan -out plan.bin`, `show -json plan.bin > plan.json`, then
`checkov -f plan.json --framework terraform_plan --external-checks-dir examples/ci/policies`.

checkov lives in a virtualenv of its own (scripts/install-test-deps makes .venv-checkov), or
wherever $TRAINFORM_CHECKOV points."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import CLI, ok

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "examples" / "ci" / "policies"

GOOD = """
workspace "main" {}

compute "box" {
  type = "local"
  tags = { owner = "ml" }
}

compute "gpu" {
  type             = "ssh"
  address          = "192.0.2.10"
  username         = "train"
  private_key_file = "id_ed25519"
  host_key         = "SHA256:0123456789abcdef"
  tags             = { owner = "ml" }
}

compute "pool" {
  type       = "docker-cluster"
  node_image = "trainform-node:latest"
  max_nodes  = 4
  tags       = { owner = "ml" }
}

run "train" {
  experiment   = "e"
  workspace    = workspace.main
  compute      = compute.box
  source_dir   = "src"
  script       = "train.py"
  max_duration = "1h"
}
"""


@pytest.fixture(scope="module")
def checkov() -> str:
    path = os.environ.get("TRAINFORM_CHECKOV") or str(REPO / ".venv-checkov" / "bin" / "checkov")
    if not Path(path).is_file():
        message = f"checkov is not installed at {path}: run scripts/install-test-deps"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def policy_check(cli: CLI, checkov: str, config: str, **env: str) -> tuple[int, dict[str, Any]]:
    """Plan `config` as CI does and run checkov with the shipped policies on it: (exit code,
    checkov's JSON report)."""
    cli.write("main.train.hcl", config)
    cli.write("src/train.py", "print('hi')\n")
    cli.write("id_ed25519", "")
    ok(cli("plan", "-input=false", "-out", "plan.bin"))
    cli.write("plan.json", ok(cli("show", "-json", "plan.bin")).out)
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
    assert report["summary"]["resource_count"] == 5
    passed = {(c["check_id"], c["resource"]) for c in report["results"]["passed_checks"]}
    assert passed == {
        ("CKV_TRAINFORM_1", "compute.box"),
        ("CKV_TRAINFORM_1", "compute.gpu"),
        ("CKV_TRAINFORM_1", "compute.pool"),
        ("CKV_TRAINFORM_2", "compute.gpu"),
        ("CKV_TRAINFORM_3", "run.train"),
        ("CKV_TRAINFORM_4", "compute.pool"),
    }


@pytest.mark.parametrize(
    ("old", "new", "failed"),
    [
        ('  tags = { owner = "ml" }\n', "", ("CKV_TRAINFORM_1", "compute.box")),
        ('owner = "ml" }\n}\n\nrun', 'owner = "" }\n}\n\nrun', ("CKV_TRAINFORM_1", "compute.pool")),
        (
            '  host_key         = "SHA256:0123456789abcdef"\n',
            "",
            ("CKV_TRAINFORM_2", "compute.gpu"),
        ),
        (
            '  host_key         = "SHA256:0123456789abcdef"\n',
            '  host_key = "SHA256:0123456789abcdef"\n  trust_on_first_use = true\n',
            ("CKV_TRAINFORM_2", "compute.gpu"),
        ),
        ('  max_duration = "1h"\n', "", ("CKV_TRAINFORM_3", "run.train")),
        ("max_nodes  = 4", "max_nodes  = 9", ("CKV_TRAINFORM_4", "compute.pool")),
    ],
    ids=["no-owner", "empty-owner", "no-host-key", "tofu", "no-max-duration", "max-nodes"],
)
def test_each_policy_fails_a_bad_plan(
    cli: CLI, checkov: str, old: str, new: str, failed: tuple[str, str]
) -> None:
    assert old in GOOD
    code, report = policy_check(cli, checkov, GOOD.replace(old, new, 1))
    assert code == 1
    assert failures(report) == {failed}


def test_max_nodes_limit_is_a_policy_setting(cli: CLI, checkov: str) -> None:
    code, report = policy_check(cli, checkov, GOOD, TRAINFORM_POLICY_MAX_NODES="3")
    assert code == 1 and failures(report) == {("CKV_TRAINFORM_4", "compute.pool")}
    code, _ = policy_check(
        cli, checkov, GOOD.replace("= 4", "= 12"), TRAINFORM_POLICY_MAX_NODES="16"
    )
    assert code == 0
