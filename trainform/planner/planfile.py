"""Saved plans: what was planned, and everything needed to tell that it went stale.

A plan file holds the plan, the CLI workspace and the state lineage and serial it was made
against, the sha256 of every input read (configuration files, variable files, files read by
functions) and the non-sensitive variable values. Sensitive variables appear only as salted hashes: they must
be supplied again at apply and are checked against them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainform import __version__
from trainform.errors import PlanError, StalePlanError
from trainform.planner.types import Plan
from trainform.state import secrets

FORMAT = "trainform-plan"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SavedPlan:
    plan: Plan
    config_dir: str
    inputs: dict[str, str]
    variables: dict[str, Any]
    sensitive_variables: dict[str, dict[str, str]]
    workspace: str = "default"  # the CLI workspace whose state it was made against


def file_hashes(paths: list[Path]) -> dict[str, str]:
    return {str(p.resolve()): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def save(path: Path, saved: SavedPlan) -> None:
    data = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "trainform_version": __version__,
        "config_dir": saved.config_dir,
        "inputs": saved.inputs,
        "variables": saved.variables,
        "sensitive_variables": saved.sensitive_variables,
        "workspace": saved.workspace,
        "plan": saved.plan.to_dict(),
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True, indent=1))
    tmp.replace(path)


def load(path: Path) -> SavedPlan:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PlanError(f"plan file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise PlanError(f"{path} is not a trainform plan file") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PlanError(f"{path} is not a trainform plan file")
    if data.get("format_version") != FORMAT_VERSION:
        raise PlanError(
            f"{path} was written by trainform {data.get('trainform_version')} in plan format "
            f"{data.get('format_version')}; this trainform reads format {FORMAT_VERSION}"
        )
    return SavedPlan(
        plan=Plan.from_dict(data["plan"]),
        config_dir=data["config_dir"],
        inputs=data["inputs"],
        variables=data["variables"],
        sensitive_variables=data["sensitive_variables"],
        workspace=str(data.get("workspace") or "default"),  # files from before workspaces
    )


def check_inputs(saved: SavedPlan, current_files: list[Path]) -> None:
    """Raise StalePlanError if any input the plan read changed, vanished or was added."""
    now = {str(p.resolve()) for p in current_files}
    for path, digest in sorted(saved.inputs.items()):
        p = Path(path)
        if not p.is_file():
            raise StalePlanError(
                f"the saved plan is stale: {path} was removed since the plan was made"
            )
        if hashlib.sha256(p.read_bytes()).hexdigest() != digest:
            raise StalePlanError(f"the saved plan is stale: {path} changed since the plan was made")
    added = sorted(now - set(saved.inputs))
    if added:
        raise StalePlanError(
            f"the saved plan is stale: {added[0]} was added since the plan was made"
        )


def check_workspace(saved: SavedPlan, workspace: str) -> None:
    """Raise StalePlanError if the plan was made in another CLI workspace than ``workspace``
    (its state is another one: applying would act on the wrong environment)."""
    if saved.workspace != workspace:
        raise StalePlanError(
            f'the saved plan was made in workspace "{saved.workspace}", but the current '
            f'workspace is "{workspace}"; apply it there (`trainform workspace select '
            f"{saved.workspace}` or TRAINFORM_WORKSPACE={saved.workspace}), or make a new plan "
            "in this one"
        )


def check_state(saved: SavedPlan, lineage: str | None, serial: int) -> None:
    plan = saved.plan
    if plan.lineage is not None and lineage != plan.lineage:
        raise StalePlanError(
            "the saved plan was made for a different state (lineage "
            f"{plan.lineage}, current {lineage}); make a new plan"
        )
    if serial != plan.serial:
        raise StalePlanError(
            f"the saved plan is stale: state changed since it was made (serial {plan.serial} "
            f"-> {serial}); run `trainform plan` again"
        )


def check_sensitive(saved: SavedPlan, supplied: dict[str, Any]) -> None:
    for name, marker in sorted(saved.sensitive_variables.items()):
        if name not in supplied:
            raise PlanError(
                f"sensitive variable {name!r} is not stored in the plan file: supply it again "
                f"(TRAINFORM_VAR_{name}=... or --var {name}=...)"
            )
        if not secrets.matches(marker, supplied[name]):
            raise StalePlanError(
                f"sensitive variable {name!r} differs from the value the plan was made with"
            )
