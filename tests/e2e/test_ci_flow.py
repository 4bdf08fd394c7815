"""The review-gated CI example (examples/ci) end to end, against a real PostgreSQL server and
real checkov: the commands are the `run:` lines of the shipped GitHub Actions workflow's steps
(and the `script:` lines of the GitLab pipeline's jobs), read from the YAML files and run
verbatim by bash, so a change to a workflow that breaks the flow breaks this test.

Two "runners" act like two CI machines: each has its own working copy of examples/ci, its own
HOME and its own processes. Like two jobs on GitLab shell runners (`builds/TOKEN/CONCURRENT_ID/
GROUP/PROJECT`) or self-hosted runners with a folder per job, they check out at different paths:
a plan file records its inputs relative to the configuration's folder, so it applies from
another checkout. One plans, its plan.bin is handed to the other (as an artifact would be),
which applies it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import Result, base_env, block_after, ok, unavailable
from postgres import PASSWORD, PASSWORD_ROLE, PgServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "ci"
GITHUB_WORKFLOW = EXAMPLE / "github" / "workflows" / "trainform.yml"
GITLAB_PIPELINE = EXAMPLE / "gitlab-ci.yml"
CHECKOUT_IGNORES = (".trainform", "plan.bin", "plan.json", "plan.md", "__pycache__")
CHECKOV_BIN = ROOT / ".venv-checkov" / "bin"


class _GitLabLoader(yaml.SafeLoader):
    """GitLab's YAML: `!reference [job, key]` is kept as a marker (the test does not run it)."""


_GitLabLoader.add_constructor(
    "!reference", lambda loader, node: {"!reference": loader.construct_sequence(node)}
)


def github_steps(job: str) -> dict[str, str]:
    """The `run:` script of each step of ``job`` that has an `id`, from the shipped workflow."""
    workflow = yaml.safe_load(GITHUB_WORKFLOW.read_text())
    return {s["id"]: s["run"] for s in workflow["jobs"][job]["steps"] if "id" in s and "run" in s}


def github_env(secrets: dict[str, str], variables: dict[str, str]) -> dict[str, str]:
    """The workflow's top-level `env:` with `${{ secrets.X }}` and `${{ vars.X }}` filled in."""
    workflow = yaml.safe_load(GITHUB_WORKFLOW.read_text())

    def fill(value: Any) -> str:
        def one(m: re.Match[str]) -> str:
            kind, name = m.group(1), m.group(2)
            return (secrets if kind == "secrets" else variables)[name]

        return re.sub(r"\$\{\{\s*(secrets|vars)\.(\w+)\s*\}\}", one, str(value))

    return {k: fill(v) for k, v in workflow["env"].items()}


def gitlab_script(job: str) -> str:
    """The `script:` lines of ``job`` in the shipped pipeline, as GitLab's bash runs them."""
    pipeline = yaml.load(GITLAB_PIPELINE.read_text(), Loader=_GitLabLoader)
    return "\n".join(pipeline[job]["script"])


@dataclass
class Runner:
    """One CI machine: its own working copy at ``checkout``, a path of its own."""

    name: str
    checkout: Path
    home: Path
    env: dict[str, str]
    log: list[str]

    def step(self, script: str, code: int = 0, **env: str) -> Result:
        """Run ``script`` in the checkout the way `shell: bash` does (bash -e -o pipefail)."""
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
            cwd=self.checkout,
            env={**self.env, "HOME": str(self.home), **env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        self.log.append(result.all)
        return ok(result, code)


@pytest.fixture
def ci_env(tmp_path: Path, pg_server: PgServer) -> dict[str, str]:
    """The environment both runners share: trainform and checkov on PATH, and the workflow's
    env with the secret (the connection string of a database of this test's own, as a role
    whose password the server checks: it must never appear in any output or file of the
    flow) and the shared artifact store filled in."""
    if not (CHECKOV_BIN / "checkov").exists():
        unavailable(
            f"checkov is not installed in {CHECKOV_BIN.parent}: run scripts/install-test-deps"
        )
    secret = pg_server.conn_str(pg_server.create_database(PASSWORD_ROLE), PASSWORD_ROLE, PASSWORD)
    shared = tmp_path / "shared-volume" / "artifacts"
    env = base_env()
    env.update(
        github_env({"TRAINFORM_PG_CONN_STR": secret}, {"TRAINFORM_ARTIFACT_STORE": str(shared)})
    )
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), str(CHECKOV_BIN), env["PATH"]])
    return env


def make_runners(tmp_path: Path, env: dict[str, str]) -> tuple[Runner, Runner]:
    runners = []
    for concurrent_id, name in enumerate(("runner-1", "runner-2")):
        base = tmp_path / name
        # A fresh checkout at a path of this job's own, as a GitLab shell runner makes it:
        # what git would hold (no local state, plans or caches).
        checkout = base / "builds" / "Zx8kQ2" / str(concurrent_id) / "team" / "infra"
        checkout = checkout / "examples" / "ci"
        shutil.copytree(EXAMPLE, checkout, ignore=shutil.ignore_patterns(*CHECKOUT_IGNORES))
        (base / "home").mkdir()
        runner_env = {
            **env,
            "GITHUB_OUTPUT": str(base / "github_output"),
            "GITHUB_STEP_SUMMARY": str(base / "step_summary.md"),
        }
        runners.append(Runner(name, checkout, base / "home", runner_env, []))
    return runners[0], runners[1]


def edit(runner: Runner, old: str, new: str) -> None:
    """Change the configuration in ``runner``'s working copy, as a pull request would."""
    path = runner.checkout / "main.train.hcl"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def assert_no_password(tmp_path: Path, runners: tuple[Runner, Runner]) -> None:
    for runner in runners:
        for output in runner.log:
            assert PASSWORD not in output
    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert PASSWORD.encode() not in path.read_bytes(), f"the password is in {path}"


def test_github_workflow_plans_on_one_runner_and_applies_on_another(
    tmp_path: Path, ci_env: dict[str, str]
) -> None:
    pr, merge = github_steps("plan"), github_steps("apply")
    planner, applier = make_runners(tmp_path, ci_env)

    # The pull request: every check of the plan job passes, and the plan is kept.
    for step in ("fmt", "init", "validate", "plan", "policy", "summary"):
        planner.step(pr[step])
    assert "exitcode=2" in Path(planner.env["GITHUB_OUTPUT"]).read_text()
    plan_json = json.loads((planner.checkout / "plan.json").read_text())
    assert plan_json["terraform_version"] and plan_json["planned_values"]
    summary = Path(planner.env["GITHUB_STEP_SUMMARY"]).read_text()
    for address in ("workspace.team", "compute.runner", "run.smoke"):
        assert address in summary
    (applier.checkout / "plan.bin").write_bytes((planner.checkout / "plan.bin").read_bytes())

    # The merge: another machine applies exactly that plan.
    applier.step(merge["init"])
    applied = applier.step(merge["apply"])
    assert "Apply complete! Resources: 4 added" in applied.out
    assert "step 4: loss 0.0312" in applied.out  # the run trained on the applying runner

    # Nothing left to do for the next pull request (state and artifact store are shared).
    planner.step(pr["plan"])
    assert Path(planner.env["GITHUB_OUTPUT"]).read_text().splitlines()[-1] == "exitcode=0"

    # Two pull requests planned against the same state; the other one is applied first.
    edit(planner, "max_concurrent_runs = 1", "max_concurrent_runs = 2")
    planner.step(pr["plan"])
    reviewed = (planner.checkout / "plan.bin").read_bytes()
    edit(applier, 'role = "ci"', 'role = "ci-gpu"')
    applier.step(pr["plan"])
    applier.step(merge["apply"])

    # Merged after it, the first pull request's plan is refused and changes nothing: with the
    # merged tree (both changes) because the configuration differs from the planned one; with
    # exactly the planned tree because the state moved on (the serial check).
    (applier.checkout / "plan.bin").write_bytes(reviewed)
    edit(applier, "max_concurrent_runs = 1", "max_concurrent_runs = 2")
    stale = applier.step(merge["apply"], code=1)
    # named relative to the applying checkout's configuration folder, not the planner's path
    assert "the saved plan is stale: main.train.hcl changed since the plan was made" in stale.all
    (applier.checkout / "main.train.hcl").write_bytes(
        (planner.checkout / "main.train.hcl").read_bytes()
    )
    stale = applier.step(merge["apply"], code=1)
    assert re.search(
        r"the saved plan is stale: state changed since it was made \(serial \d+ -> \d+\); "
        r"run `trainform plan` again",
        stale.all,
    ), stale.all
    # The refused plan changed nothing: planning again still shows its change to make.
    replan = applier.step(pr["plan"])
    assert "max_concurrent_runs = 1 -> 2" in replan.out
    assert_no_password(tmp_path, (planner, applier))


def test_gitlab_pipeline_plans_on_one_runner_and_applies_on_another(
    tmp_path: Path, ci_env: dict[str, str]
) -> None:
    planner, applier = make_runners(tmp_path, ci_env)
    planner.step(gitlab_script("check"))
    planner.step(gitlab_script("plan"))
    planner.step(gitlab_script("policy"))
    markdown = (planner.checkout / "plan.md").read_text()
    assert "run.smoke" in markdown
    (applier.checkout / "plan.bin").write_bytes((planner.checkout / "plan.bin").read_bytes())
    applied = applier.step(gitlab_script("apply"))
    assert "Apply complete! Resources: 4 added" in applied.out

    # A merge request whose compute has no owner: the plan succeeds, the policy job fails it.
    edit(planner, 'merge(local.tags, { role = "ci" })', '{ role = "ci" }')
    planner.step(gitlab_script("plan"))
    refused = planner.step(gitlab_script("policy"), code=1)
    assert "CKV_TRAINFORM_1" in refused.out and "compute.runner" in refused.out
    assert_no_password(tmp_path, (planner, applier))


def test_the_example_readmes_commands_run_verbatim(tmp_path: Path, ci_env: dict[str, str]) -> None:
    """examples/ci/README.md's own blocks: the policy check by hand (plan, show -json,
    checkov with the shipped policies) on one runner, then the merge job's init and apply of
    that plan.bin on the other. (Its conftest/opa block is documented, not run: neither
    installs here; tests/e2e/test_policy_rego.py evaluates the same Rego with regorus.)"""
    readme = EXAMPLE / "README.md"
    by_hand = block_after("Run them by hand with", "sh", readme)
    on_merge = block_after("newest successful plan run", "sh", readme)
    assert "checkov -f plan.json" in by_hand and "apply" in on_merge
    planner, applier = make_runners(tmp_path, ci_env)
    checked = planner.step(by_hand)
    # the example has a local compute and a run: the owner-tag and max_duration checks apply
    assert "Passed checks: 2, Failed checks: 0" in checked.out, checked.out[-2000:]
    assert "PASSED for resource: compute.runner" in checked.out
    assert "PASSED for resource: run.smoke" in checked.out
    shutil.copy(planner.checkout / "plan.bin", applier.checkout / "plan.bin")
    applied = applier.step(on_merge)
    assert "Apply complete!" in applied.out, applied.all[-2000:]
    assert "No changes." in planner.step("trainform plan -input=false").out
    assert_no_password(tmp_path, (planner, applier))
