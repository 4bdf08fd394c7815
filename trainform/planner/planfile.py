"""Saved plans: what was planned, and everything needed to tell that it went stale.

A plan file holds the plan, the CLI workspace and the state lineage and serial it was made
against, the sha256 of every input read (configuration files, variable files, files read by
functions) and the non-sensitive variable values. Sensitive variables appear only as salted hashes: they must
be supplied again at apply and are checked against them.

A plan file is relocatable (format 2): an input inside the configuration's repository is
recorded relative to the configuration folder (``main.train.hcl``, ``../modules/box/main.train.hcl``),
so another checkout of the same configuration at another path (the next CI job's runner, a
reviewer's machine) applies it, checking the files it finds there. Inputs outside the
repository (a user's absolute path) stay absolute. Format 1 files recorded absolute paths
only, and apply only in the folder they were made in.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainform import __version__
from trainform.errors import PlanError, StalePlanError
from trainform.planner.types import Plan
from trainform.state import secrets

FORMAT = "trainform-plan"
FORMAT_VERSION = 2
FIRST_FORMAT_VERSION = 1  # absolute inputs: applies only in the folder it was made in


@dataclass(frozen=True)
class SavedPlan:
    plan: Plan
    config_dir: str
    inputs: dict[str, str]
    variables: dict[str, Any]
    sensitive_variables: dict[str, dict[str, str]]
    workspace: str = "default"  # the CLI workspace whose state it was made against
    format_version: int = FORMAT_VERSION  # of the file it was loaded from


def file_hashes(paths: list[Path]) -> dict[str, str]:
    return {str(p.resolve()): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def repository_root(config_dir: Path) -> Path:
    """The folder a plan's inputs may be recorded relative to: the nearest enclosing git work
    tree (a ``.git`` folder, or the ``.git`` file of a linked worktree or submodule) of
    ``config_dir``; without git, ``config_dir`` itself."""
    start = config_dir.resolve()
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return start


def recorded_path(path: str | Path, config_dir: Path, root: Path) -> str:
    """How a plan file names the input at ``path`` (absolute): relative to ``config_dir``
    when it lies inside ``root`` (``../modules/box/main.train.hcl``), else absolute."""
    full = Path(path).resolve()
    if full.is_relative_to(root):
        return os.path.relpath(full, config_dir.resolve())
    return str(full)


def record_inputs(hashes: dict[str, str], config_dir: Path) -> dict[str, str]:
    """``hashes`` (absolute path -> sha256) keyed as a plan file records them (see
    :func:`recorded_path`)."""
    root = repository_root(config_dir)
    return {recorded_path(p, config_dir, root): d for p, d in hashes.items()}


def _located(entry: str, config_dir: Path) -> Path:
    """Where a recorded input is now: a relative entry is resolved against the current
    configuration folder (lexically: it was computed between resolved paths)."""
    if os.path.isabs(entry):
        return Path(entry)
    return Path(os.path.normpath(config_dir.resolve() / entry))


def save(path: Path, saved: SavedPlan) -> None:
    data = {
        "format": FORMAT,
        "format_version": saved.format_version,
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
    version = data.get("format_version")
    if version not in (FIRST_FORMAT_VERSION, FORMAT_VERSION):
        raise PlanError(
            f"{path} was written by trainform {data.get('trainform_version')} in plan format "
            f"{data.get('format_version')}; this trainform reads formats {FIRST_FORMAT_VERSION} "
            f"to {FORMAT_VERSION}"
        )
    return SavedPlan(
        plan=Plan.from_dict(data["plan"]),
        config_dir=data["config_dir"],
        inputs=data["inputs"],
        variables=data["variables"],
        sensitive_variables=data["sensitive_variables"],
        workspace=str(data.get("workspace") or "default"),  # files from before workspaces
        format_version=int(version),
    )


def check_folder(saved: SavedPlan, config_dir: Path, name: str) -> None:
    """Raise PlanError if ``saved`` (read from the file ``name``) is a format 1 plan, whose
    inputs are absolute paths, and ``config_dir`` is not the folder it was made in. A
    format 2 plan applies from any checkout of its configuration."""
    if saved.format_version != FIRST_FORMAT_VERSION:
        return
    if Path(saved.config_dir).resolve() != config_dir.resolve():
        raise PlanError(
            f"{name} was made for the configuration in {saved.config_dir}; "
            f"run from there or with -C {saved.config_dir}"
        )


def check_inputs(saved: SavedPlan, current_files: list[Path], config_dir: Path) -> None:
    """Raise StalePlanError if any input the plan read changed, vanished or was added
    (``current_files``: the configuration files read now, from ``config_dir``). Relative
    inputs are looked for in ``config_dir``, the checkout applying the plan; messages name
    them relative to it."""
    root = repository_root(config_dir)
    planned: set[Path] = set()
    for entry, digest in sorted(saved.inputs.items()):
        p = _located(entry, config_dir)
        planned.add(p)
        shown = recorded_path(p, config_dir, root)
        if not p.is_file():
            raise StalePlanError(
                f"the saved plan is stale: {shown} was removed since the plan was made"
            )
        if hashlib.sha256(p.read_bytes()).hexdigest() != digest:
            raise StalePlanError(
                f"the saved plan is stale: {shown} changed since the plan was made"
            )
    now = {p.resolve() for p in current_files}
    added = sorted(now - planned)
    if added:
        raise StalePlanError(
            f"the saved plan is stale: {recorded_path(added[0], config_dir, root)} was added "
            "since the plan was made"
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
