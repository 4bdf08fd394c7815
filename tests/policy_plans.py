"""The plans the policy tests check (tests/e2e/test_policy_checkov.py with checkov, and
tests/e2e/test_policy_rego.py with the Rego rules): a GOOD configuration that every rule
passes, the BAD_PLANS edits that each break one rule on one resource, and `plan_json`, which
plans a configuration as the CI example does (`plan -out plan.bin`, then `show -json plan.bin`).

The policy tools live in a virtualenv of their own (scripts/install-test-deps makes
.venv-checkov: checkov and opa-eval), or beside wherever $TRAINFORM_CHECKOV points."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from helpers import CLI, ok, unavailable

REPO = Path(__file__).resolve().parents[1]
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

GOOD_ADDRESSES = {"workspace.main", "compute.box", "compute.gpu", "compute.pool", "run.train"}


@dataclass(frozen=True)
class BadPlan:
    """GOOD with `old` replaced by `new`: only `rule` (1 owner tag, 2 pinned host key, 3
    max_duration, 4 max_nodes limit) fails, on the resource at `address`."""

    id: str
    old: str
    new: str
    rule: int
    address: str

    def config(self) -> str:
        assert self.old in GOOD, self.old
        return GOOD.replace(self.old, self.new, 1)


BAD_PLANS = [
    BadPlan("no-owner", '  tags = { owner = "ml" }\n', "", 1, "compute.box"),
    BadPlan("empty-owner", 'owner = "ml" }\n}\n\nrun', 'owner = "" }\n}\n\nrun', 1, "compute.pool"),
    BadPlan(
        "no-host-key", '  host_key         = "SHA256:0123456789abcdef"\n', "", 2, "compute.gpu"
    ),
    BadPlan(
        "tofu",
        '  host_key         = "SHA256:0123456789abcdef"\n',
        '  host_key = "SHA256:0123456789abcdef"\n  trust_on_first_use = true\n',
        2,
        "compute.gpu",
    ),
    BadPlan("no-max-duration", '  max_duration = "1h"\n', "", 3, "run.train"),
    BadPlan("max-nodes", "max_nodes  = 4", "max_nodes  = 9", 4, "compute.pool"),
]


def plan_json(cli: CLI, config: str) -> str:
    """Plan `config` (main.train.hcl, beside a src/train.py and an empty id_ed25519) in
    `cli`'s folder as CI does; write the JSON plan to plan.json and return its text. A
    configuration that calls modules is initialised first."""
    cli.write("main.train.hcl", config)
    cli.write("src/train.py", "print('hi')\n")
    cli.write("id_ed25519", "")
    if "module " in config:
        ok(cli("init"))
    ok(cli("plan", "-input=false", "-out", "plan.bin"))
    text = ok(cli("show", "-json", "plan.bin")).out
    cli.write("plan.json", text)
    return text


def policy_tool(name: str) -> str:
    """The program `name` (checkov, python) of the policy tools' virtualenv: beside
    $TRAINFORM_CHECKOV when set, else .venv-checkov/bin. Missing: skipped, or failed under
    CI=true."""
    checkov = os.environ.get("TRAINFORM_CHECKOV")
    folder = Path(checkov).parent if checkov else REPO / ".venv-checkov" / "bin"
    path = Path(checkov) if checkov and name == "checkov" else folder / name
    if not path.is_file():
        unavailable(f"{name} is not installed at {path}: run scripts/install-test-deps")
    return str(path)
