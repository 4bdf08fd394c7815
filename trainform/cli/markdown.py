"""``show -markdown PLANFILE``: a plan as a short Markdown summary for a pull-request
comment. A heading, the counts, then one line per change: its action, address and reason.

Deterministic (no timestamp, sorted addresses), without ANSI, and built only from what a
plan holds, which never includes a secret: sensitive values are not in a plan at all, and
the summary shows no values, only addresses and reasons.
"""

from __future__ import annotations

import re

from trainform.planner.types import Change, Plan

_RUN_KINDS = ("run", "sweep")


def _escape(text: str) -> str:
    """Text that Markdown shows as written (no emphasis, links, tables or HTML)."""
    return re.sub(r"([\\`*_{}\[\]<>()#+!|~])", r"\\\1", text.replace("\n", " "))


def _code(text: str) -> str:
    return f"`{text}`" if "`" not in text else f"`` {text} ``"


def _action(c: Change) -> str:
    """What happens to it, in a word a reviewer reads without a legend."""
    if c.actions == ("forget",):
        return "forget"
    if c.is_noop:
        return "move" if c.previous_address is not None else "import"
    if c.is_replace:
        return "resubmit" if c.kind in _RUN_KINDS else "replace"
    if c.actions == ("create",):
        return "submit" if c.kind in _RUN_KINDS else "create"
    if c.actions == ("delete",):
        return c.verb  # destroy, detach, cancel, or forget (a finished run's history kept)
    return "resubmit" if c.verb == "resubmit" else "update"


def _counts(changes: list[Change]) -> dict[str, int]:
    counts = {"add": 0, "change": 0, "replace": 0, "destroy": 0, "submit": 0}
    for c in changes:
        action = _action(c)
        if c.kind in _RUN_KINDS and action in ("submit", "resubmit"):
            counts["submit"] += 1
        elif action == "create":
            counts["add"] += 1
        elif action == "update":
            counts["change"] += 1
        elif action == "replace":
            counts["replace"] += 1
        elif c.actions == ("delete",):  # a delete whatever its verb (detach, cancel)
            counts["destroy"] += 1
    return counts


def _line(c: Change) -> str:
    where = _code(c.address)
    if c.previous_address is not None:
        where += f" (moved from {_code(c.previous_address)})"
    if c.importing is not None:
        where += f" (imported from {_code(c.importing)})"
    reason = f": {_escape(c.reason)}" if c.reason else ""
    return f"- **{_action(c)}** {where}{reason}"


def plan_markdown(plan: Plan, workspace: str = "default") -> str:
    """The summary, ending with a newline. The title names the CLI workspace the plan was
    made in unless it is "default"."""
    title = {
        "destroy": "trainform plan (destroy)",
        "refresh-only": "trainform plan (refresh-only)",
    }.get(plan.mode, "trainform plan")
    if workspace != "default":
        title += f" in workspace {_code(workspace)}"
    lines = [f"### {title}", ""]
    changes = sorted(plan.shown_changes, key=lambda c: c.address)
    drift = [d for d in plan.drift if d.kind in ("changed", "deleted")]
    if drift:
        lines.append(
            f"{len(drift)} object(s) changed outside trainform: "
            + ", ".join(_code(d.address) for d in sorted(drift, key=lambda d: d.address))
            + "."
        )
        lines.append("")
    if not changes and not any(o.actions != ("no-op",) for o in plan.outputs):
        lines.append("**No changes.** The infrastructure matches the configuration.")
        return "\n".join(lines) + "\n"
    n = _counts(changes)
    runs = "run" if n["submit"] == 1 else "runs"
    lines.append(
        f"**Plan:** {n['add']} to add, {n['change']} to change, {n['replace']} to replace, "
        f"{n['destroy']} to destroy, {n['submit']} {runs} to submit."
    )
    lines.append("")
    lines += [_line(c) for c in changes]
    outputs = [o for o in plan.outputs if o.actions != ("no-op",)]
    if outputs:
        lines.append("")
        lines.append(
            "Outputs: "
            + ", ".join(f"{_code(o.name)} ({'/'.join(o.actions)})" for o in outputs)
            + "."
        )
    return "\n".join(lines) + "\n"
