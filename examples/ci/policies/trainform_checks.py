"""The team's policies for trainform plans, as checkov custom checks.

checkov's ``terraform_plan`` framework reads trainform's JSON plan (``trainform show -json
plan.bin``, Terraform's JSON plan format) and runs these checks on every resource the plan
would leave in place (``planned_values``)::

    checkov -f plan.json --framework terraform_plan --external-checks-dir policies

Resource types are ``trainform_<kind>`` and, for compute, ``trainform_<provider>_compute``
(``trainform_ssh_compute``, ``trainform_docker_cluster_compute``). checkov hands a check each
attribute wrapped in a list (``{"max_nodes": [4], "tags": [{"owner": "ml"}]}``); an attribute
that is null or unknown until apply is absent.

The largest ``max_nodes`` a docker-cluster may have is a policy setting: the environment
variable ``TRAINFORM_POLICY_MAX_NODES`` (a whole number; 8 when unset).
"""

from __future__ import annotations

import os
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

DEFAULT_MAX_NODES = 8


def _first(conf: dict[str, Any], name: str) -> Any:
    value = conf.get(name)
    if isinstance(value, list):
        return value[0] if value else None
    return value


class ComputeOwnerTag(BaseResourceCheck):
    """Every compute target says who answers for it: a non-empty ``owner`` tag."""

    def __init__(self) -> None:
        super().__init__(
            name="Every trainform compute carries an owner tag",
            id="CKV_TRAINFORM_1",
            categories=[CheckCategories.CONVENTION],
            supported_resources=["trainform_*_compute"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        tags = _first(conf, "tags")
        owner = tags.get("owner") if isinstance(tags, dict) else None
        if isinstance(owner, str) and owner.strip():
            return CheckResult.PASSED
        return CheckResult.FAILED


class SSHHostKeyPinned(BaseResourceCheck):
    """An SSH target's host key is pinned (``host_key = "SHA256:..."``), and an unknown key
    is never accepted on first use."""

    def __init__(self) -> None:
        super().__init__(
            name="Every trainform ssh compute pins host_key and does not trust on first use",
            id="CKV_TRAINFORM_2",
            categories=[CheckCategories.NETWORKING],
            supported_resources=["trainform_ssh_compute"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        host_key = _first(conf, "host_key")
        pinned = isinstance(host_key, str) and host_key.startswith("SHA256:")
        if pinned and _first(conf, "trust_on_first_use") is not True:
            return CheckResult.PASSED
        return CheckResult.FAILED


class RunMaxDuration(BaseResourceCheck):
    """A run has a time limit: ``max_duration`` is set."""

    def __init__(self) -> None:
        super().__init__(
            name="Every trainform run sets max_duration",
            id="CKV_TRAINFORM_3",
            categories=[CheckCategories.GENERAL_SECURITY],
            supported_resources=["trainform_run"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        limit = _first(conf, "max_duration")
        return CheckResult.PASSED if isinstance(limit, str) and limit else CheckResult.FAILED


def max_nodes_allowed() -> int:
    """The policy's limit (TRAINFORM_POLICY_MAX_NODES, else DEFAULT_MAX_NODES)."""
    text = os.environ.get("TRAINFORM_POLICY_MAX_NODES", "").strip()
    if not text:
        return DEFAULT_MAX_NODES
    try:
        return int(text)
    except ValueError:
        raise SystemExit(
            f"TRAINFORM_POLICY_MAX_NODES={text!r} is not a whole number (the largest max_nodes "
            "a docker-cluster may have)"
        ) from None


class ClusterMaxNodes(BaseResourceCheck):
    """A docker-cluster's ``max_nodes`` is at most the policy's limit."""

    def __init__(self) -> None:
        super().__init__(
            name="Every trainform docker-cluster keeps max_nodes within the policy's limit "
            "(TRAINFORM_POLICY_MAX_NODES)",
            id="CKV_TRAINFORM_4",
            categories=[CheckCategories.GENERAL_SECURITY],
            supported_resources=["trainform_docker_cluster_compute"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        nodes = _first(conf, "max_nodes")
        if isinstance(nodes, (int, float)) and not isinstance(nodes, bool):
            return CheckResult.PASSED if nodes <= max_nodes_allowed() else CheckResult.FAILED
        return CheckResult.FAILED  # unknown until apply: the limit cannot be shown to hold


ComputeOwnerTag()
SSHHostKeyPinned()
RunMaxDuration()
ClusterMaxNodes()
