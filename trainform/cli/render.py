"""Text views of plans, state and diagnostics, in Terraform's shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.markup import escape

from trainform.errors import Diagnostic
from trainform.planner.types import Change, Plan
from trainform.providers.base import AWAITED
from trainform.state import secrets

SYMBOLS = {
    ("create",): ("+", "green"),
    ("update",): ("~", "yellow"),
    ("delete",): ("-", "red"),
    ("delete", "create"): ("-/+", "red"),
    ("create", "delete"): ("+/-", "green"),
    ("no-op",): (" ", "white"),
    ("forget",): (".", "white"),
}
KNOWN_AFTER = "(known after apply)"
SENSITIVE = "(sensitive value)"

_PAST = {
    "update": "updated in-place",
    "forget": "forgotten",
    "submit": "submitted",
    "resubmit": "resubmitted",
}


def past(verb: str) -> str:
    """attach -> attached, create -> created (provider verbs are regular English verbs)."""
    return _PAST.get(verb) or (verb + "d" if verb.endswith("e") else verb + "ed")


def ing(verb: str) -> str:
    """attach -> Attaching, create -> Creating."""
    if verb == "update":
        return "Modifying"
    if verb in ("submit", "resubmit", "forget"):
        return verb.capitalize() + "ting"
    stem = verb[:-1] if verb.endswith("e") and not verb.endswith("ee") else verb
    return (stem + "ing").capitalize()


def value_text(value: Any) -> str:
    """A value as HCL-ish text: strings quoted, maps and lists inline."""
    if secrets.is_sealed(value):
        return SENSITIVE
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_key(k)} = {value_text(v)}" for k, v in value.items()) + " }"
    return str(value)


def _shown(value: Any, name: str, sensitive: tuple[str, ...]) -> str:
    """An attribute's value as text, with the keys inside it that are sensitive (paths
    ``name.KEY...``; the plan holds null there) shown as ``(sensitive value)``."""
    inner = [p.split(".")[1:] for p in sensitive if p.startswith(name + ".")]
    if inner and isinstance(value, dict):
        value = json.loads(json.dumps(value))
        for steps in inner:
            node: Any = value
            for step in steps[:-1]:
                node = node.get(step) if isinstance(node, dict) else None
            if isinstance(node, dict):  # (a plan may leave the null out)
                node[steps[-1]] = {secrets.MARKER: ""}
    return value_text(value)


def _key(key: str) -> str:
    return (
        key
        if key.replace("_", "").replace("-", "").isalnum() and not key[0].isdigit()
        else json.dumps(key)
    )


def _header(c: Change) -> str:
    kind_label = f'{c.kind} "{c.name}"'
    if c.key is not None:
        kind_label += f"[{json.dumps(c.key) if isinstance(c.key, str) else c.key}]"
    return kind_label


def _titles(c: Change) -> list[str]:
    """The comment lines above a change, as Terraform words moves, imports and forgets."""
    if c.actions == ("forget",):
        return [
            f"# {c.address} will no longer be managed by trainform, but will not be destroyed",
            f"# ({c.reason})",
        ]
    if c.is_noop and c.previous_address is not None:
        return [f"# {c.previous_address} has moved to {c.address}"]
    if c.is_noop and c.importing is not None:
        return [f"# {c.address} will be imported"]
    lines = [_title(c)]
    if c.previous_address is not None:
        lines.append(f"# (moved from {c.previous_address})")
    if c.importing is not None:
        lines.append(f"# (imported from {json.dumps(c.importing)})")
    return lines


def _title(c: Change) -> str:
    if c.actions == ("create",) or c.actions == ("delete",):
        base = f"will be {past(c.verb)}"
    elif c.actions == ("update",) and c.verb == "resubmit" and AWAITED in c.changed:
        return f"# {c.address} {c.reason} (decided by apply once they are known)"
    elif c.actions == ("update",) and c.verb == "resubmit":
        return f"# {c.address} will be resubmitted: {c.reason}"
    elif c.actions == ("update",):  # the reason may say why (a cluster healing lost nodes)
        return f"# {c.address} {c.reason or 'will be updated in-place'}"
    elif len(c.actions) == 2:
        base = c.reason or "must be replaced"
        return f"# {c.address} {base}"
    else:
        base = "is up to date"
    if c.reason and c.actions != ("update",) and not c.reason.startswith("will be"):
        return (
            f"# {c.address} {base} ({c.reason})"
            if not c.reason.startswith("has been")
            else f"# {c.address} {c.reason}; it {base}"
        )
    return f"# {c.address} {base}"


def change_lines(c: Change) -> list[str]:
    sym, colour = SYMBOLS[c.actions]
    lines = [f"  [bold]{escape(t)}[/bold]" for t in _titles(c)]
    lines.append(f"[{colour}]{sym:>3}[/{colour}] {escape(_header(c))} {{")
    before = c.before or {}
    after = c.after or {}
    names = sorted(set(before) | set(after) | set(c.after_unknown))
    if c.actions in (("update",),):
        names = [n for n in names if n in c.changed]
    width = max((len(n) for n in names), default=0)
    hidden_same = 0
    for name in names:
        pad = name.ljust(width)
        old = (
            SENSITIVE
            if name in c.before_sensitive
            else _shown(before.get(name), name, c.before_sensitive)
        )
        if name in c.after_unknown:
            new = KNOWN_AFTER
        elif name in c.after_sensitive:
            new = SENSITIVE
        else:
            new = _shown(after.get(name), name, c.after_sensitive)
        forces = " [red]# forces replacement[/red]" if name in c.replace_paths else ""
        if c.actions == ("create",):
            if name not in after and name not in c.after_unknown:
                continue
            if (
                after.get(name) in (None, {}, [])
                and name not in c.after_unknown
                and name not in c.after_sensitive
            ):
                continue
            lines.append(f"      [green]+[/green] {escape(pad)} = {escape(new)}")
        elif c.actions == ("delete",):
            if before.get(name) in (None, {}, []) and name not in c.before_sensitive:
                continue
            lines.append(f"      [red]-[/red] {escape(pad)} = {escape(old)} [dim]-> null[/dim]")
        elif name in c.changed or (name in c.after_unknown and name in before):
            if old == new and name not in c.after_unknown:
                whole = name in c.before_sensitive or name in c.after_sensitive
                new = SENSITIVE + " (changed)" if whole else new + " (a sensitive value changed)"
            lines.append(
                f"      [yellow]~[/yellow] {escape(pad)} = {escape(old)} -> {escape(new)}{forces}"
            )
        elif name in c.after_unknown:
            lines.append(f"      [green]+[/green] {escape(pad)} = {escape(new)}")
        else:
            hidden_same += 1
    if hidden_same:
        lines.append(f"        [dim]# ({hidden_same} unchanged attributes hidden)[/dim]")
    lines.append("    }")
    return lines


def plan_text(plan: Plan) -> list[str]:
    """The whole plan as rich-markup lines."""
    out: list[str] = [f"[yellow bold]Warning:[/yellow bold] {escape(w)}" for w in plan.warnings]
    out += [f"[cyan]{escape(n)}[/cyan]" for n in plan.notes]
    if out:
        out.append("")
    if plan.drift:
        out.append("[bold]Note: Objects have changed outside of trainform[/bold]")
        out.append("")
        out.append("trainform detected the following changes made outside of trainform since the")
        out.append("last apply:")
        out.append("")
        for d in plan.drift:
            if d.kind == "changed":
                out.append(f"  [bold]# {escape(d.address)} has changed[/bold]")
                for path in sorted(d.after):
                    out.append(
                        f"      [yellow]~[/yellow] {escape(path)} = {escape(value_text(d.before.get(path)))}"
                        f" -> {escape(value_text(d.after[path]))}"
                    )
            elif d.kind == "deleted":
                out.append(f"  [bold]# {escape(d.address)} has been deleted[/bold]")
            else:
                out.append(
                    f"  [bold]# {escape(d.address)} could not be read[/bold]: {escape(d.message)}"
                )
        out.append("")
        if plan.mode == "refresh-only":
            out.append(
                "This is a refresh-only plan, so trainform will not take any actions to undo"
            )
            out.append("these. Applying it records them in the state.")
            out.append("")
    running = [c for c in plan.changes if c.is_noop and c.kind == "run" and c.reason]
    for c in running:
        out.append(
            f"[cyan]{escape(c.address)} {escape(c.reason)}; its inputs are unchanged.[/cyan]"
        )
    if running:
        out.append("")
    changes = plan.shown_changes
    if not changes and not any(o.actions != ("no-op",) for o in plan.outputs):
        if plan.mode == "refresh-only" and not plan.drift:
            out.append("[green bold]No changes.[/green bold] Your state matches the real world.")
        elif plan.mode != "refresh-only":
            out.append(
                "[green bold]No changes.[/green bold] Your infrastructure matches the configuration."
            )
        return out
    if changes:
        out.append("trainform will perform the following actions:")
        out.append("")
        for c in changes:
            out.extend(change_lines(c))
            out.append("")
        out.append(summary_line(plan))
        forgotten = [c.address for c in changes if c.actions == ("forget",)]
        if forgotten:  # as Terraform warns after the summary
            out.extend(
                [
                    "",
                    "[yellow bold]Warning:[/yellow bold] Some objects will no longer be "
                    "managed by trainform",
                    "",
                    "If you apply this plan, trainform will discard its tracking information "
                    "for the following objects, but it will not delete them:",
                    *(f" - {escape(a)}" for a in forgotten),
                    "",
                    "After applying this plan, trainform will no longer manage these objects. "
                    "You will need to import them into trainform to manage them again.",
                ]
            )
    outs = [o for o in plan.outputs if o.actions != ("no-op",)]
    if outs:
        out.append("")
        out.append("Changes to Outputs:")
        width = max(len(o.name) for o in outs)
        for o in outs:
            sym, colour = SYMBOLS[o.actions]
            new = (
                KNOWN_AFTER
                if o.after_unknown
                else SENSITIVE
                if o.sensitive
                else value_text(o.after)
            )
            old = SENSITIVE if o.sensitive else value_text(o.before)
            name = escape(o.name.ljust(width))
            if o.actions == ("create",):
                out.append(f"  [{colour}]{sym}[/{colour}] {name} = {escape(new)}")
            elif o.actions == ("delete",):
                out.append(f"  [{colour}]{sym}[/{colour}] {name} = {escape(old)} -> null")
            else:
                out.append(f"  [{colour}]{sym}[/{colour}] {name} = {escape(old)} -> {escape(new)}")
    return out


def summary_line(plan: Plan) -> str:
    verbs: dict[str, int] = {}
    for c in plan.resource_changes:
        verb = c.verb if not c.is_replace else "replace"
        verbs[verb] = verbs.get(verb, 0) + 1
    counts = plan.counts()
    detail = ", ".join(f"{n} to {v}" for v, n in sorted(verbs.items()))
    imported = sum(c.importing is not None for c in plan.changes)
    imports = f"{imported} to import, " if imported else ""
    return (
        f"[bold]Plan:[/bold] {imports}{counts['add']} to add, {counts['change']} to change, "
        f"{counts['destroy']} to destroy" + (f" ({detail})." if detail else ".")
    )


def diagnostic_lines(d: Diagnostic) -> list[str]:
    """A diagnostic with the offending source line, as rich-markup lines."""
    label = (
        "[red bold]Error:[/red bold]"
        if d.severity == "error"
        else "[yellow bold]Warning:[/yellow bold]"
    )
    lines = [f"{label} {escape(d.message)}"]
    if d.pos is not None:
        lines.append("")
        lines.append(f"  on {escape(str(d.pos))}:")
        src = _source_line(d.pos.file, d.pos.line)
        if src is not None:
            lines.append(f"  {d.pos.line:>4} | {escape(src)}")
            lines.append("       | " + " " * max(0, d.pos.column - 1) + "[red]^[/red]")
    if d.hint:
        lines.append("")
        lines.append(f"  {escape(d.hint)}")
    return lines


def _source_line(file: str, line: int) -> str | None:
    try:
        with Path(file).open(encoding="utf-8", errors="replace") as fh:
            for i, text in enumerate(fh, 1):
                if i == line:
                    return text.rstrip("\n").replace("\t", " ")
    except OSError:
        return None
    return None


def outputs_lines(outputs: dict[str, dict[str, Any]]) -> list[str]:
    """``name = value`` lines for outputs, aligned; a sensitive one shows as
    (sensitive value)."""
    width = max((len(n) for n in outputs), default=0)
    return [
        f"{escape(name.ljust(width))} = {escape(SENSITIVE if o['sensitive'] else value_text(o['value']))}"
        for name, o in sorted(outputs.items())
    ]


def attr_lines(attrs: dict[str, Any], indent: str = "    ") -> list[str]:
    """``key = value`` lines for a resource's attributes, aligned, nested maps indented."""
    lines = []
    width = max((len(k) for k in attrs), default=0)
    for key in sorted(attrs):
        value = attrs[key]
        if isinstance(value, dict) and value and value.keys() != {"__sensitive__"}:
            lines.append(f"{indent}{escape(key.ljust(width))} = {{")
            lines.extend(attr_lines(value, indent + "    "))
            lines.append(f"{indent}}}")
        else:
            lines.append(f"{indent}{escape(key.ljust(width))} = {escape(value_text(value))}")
    return lines
