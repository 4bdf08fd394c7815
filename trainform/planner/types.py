"""Plan data: pure, serialisable, and free of secrets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainform.providers.base import ResourceState

CREATE = ("create",)
UPDATE = ("update",)
DELETE = ("delete",)
NOOP = ("no-op",)
REPLACE = ("delete", "create")
REPLACE_CBD = ("create", "delete")
FORGET = ("forget",)  # a removed block with destroy = false: out of state, left as it is


@dataclass(frozen=True)
class Change:
    """One planned change to one resource instance.

    ``before``/``after`` hold attribute values with sensitive ones replaced by ``None`` (their
    names are in ``before_sensitive``/``after_sensitive``) and unknown ones omitted from
    ``after`` (named in ``after_unknown``).
    """

    address: str
    kind: str
    name: str
    key: int | str | None
    provider: str
    actions: tuple[str, ...]
    verb: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    after_unknown: tuple[str, ...] = ()
    before_sensitive: tuple[str, ...] = ()
    after_sensitive: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    replace_paths: tuple[str, ...] = ()
    reason: str = ""
    # Terraform's code for why (replace_because_tainted, delete_because_no_resource_config,
    # ...: trainform.planner.jsonplan lists them); "" where Terraform gives none.
    action_reason: str = ""
    depends_on: tuple[str, ...] = ()
    previous_address: str | None = None  # a moved block moved it here from that address
    importing: str | None = None  # an import block (or `trainform import`) adopts this id

    @property
    def is_noop(self) -> bool:
        return self.actions == NOOP

    @property
    def is_replace(self) -> bool:
        return len(self.actions) == 2


def leaving_change(
    rs: ResourceState,
    actions: tuple[str, ...],
    verb: str,
    reason: str,
    before: dict[str, Any] | None = None,
    before_sensitive: tuple[str, ...] = (),
) -> Change:
    """A change that takes the recorded resource ``rs`` out of state: a delete, or a
    forget (out of state, left as it is)."""
    return Change(
        address=rs.address,
        kind=rs.kind,
        name=rs.name,
        key=rs.key,
        provider=rs.provider,
        actions=actions,
        verb=verb,
        before=before,
        after=None,
        before_sensitive=before_sensitive,
        reason=reason,
        depends_on=rs.dependencies,
    )


@dataclass(frozen=True)
class Drift:
    """A difference between recorded state and what a provider observed."""

    address: str
    kind: str  # changed | deleted | unreachable
    message: str
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputChange:
    name: str
    actions: tuple[str, ...]
    before: Any = None
    after: Any = None
    sensitive: bool = False
    after_unknown: bool = False
    # Terraform's JSON type of the planned value (trainform.planner.jsonstate.json_type:
    # "string", ["list", "string"], ["object", {...}]); None while the value is unknown.
    type: Any = None


@dataclass(frozen=True)
class Plan:
    """A plan: resource changes, output changes, drift, and what it was made from."""

    mode: str  # normal | destroy | refresh-only
    changes: tuple[Change, ...]
    outputs: tuple[OutputChange, ...]
    drift: tuple[Drift, ...]
    lineage: str | None
    serial: int
    refreshed: dict[str, dict[str, Any]] = field(default_factory=dict)  # address -> computed
    gone: tuple[str, ...] = ()  # recorded resources found deleted outside trainform
    targets: tuple[str, ...] = ()
    replace: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # what planning recorded (a run that ended unwatched)
    # State edits apply makes before its walk (trainform.engine.refactor): instance moves
    # (old address, new address), imported resources (ResourceState fields), and runs whose
    # recorded fingerprint is renamed with the compute they ran on (address, old, new).
    moved: tuple[tuple[str, str], ...] = ()
    imported: tuple[dict[str, Any], ...] = ()
    refingerprinted: tuple[tuple[str, str, str], ...] = ()
    # For the JSON plan (trainform.planner.jsonplan), made when planning so that a saved plan
    # is shown without its configuration: when it was made, the root variables (sensitive
    # values left out), the configuration as written, the results of check blocks and of
    # resources' conditions, the whole prior state (Terraform's ``prior_state``: every
    # recorded resource as refreshed, also those -target leaves out; {} when nothing is
    # recorded, and in plan files written before it was kept) and the relevant attributes.
    timestamp: str = ""
    variables: dict[str, Any] = field(default_factory=dict)
    configuration: dict[str, Any] = field(default_factory=dict)
    checks: tuple[dict[str, Any], ...] = ()
    prior_state: dict[str, Any] = field(default_factory=dict)
    relevant_attributes: tuple[dict[str, Any], ...] = ()

    @property
    def resource_changes(self) -> list[Change]:
        """The changes apply carries out through providers (no no-ops, no forgets)."""
        return [c for c in self.changes if not c.is_noop and c.actions != FORGET]

    @property
    def shown_changes(self) -> list[Change]:
        """The changes a plan shows: those apply makes, and moves, imports and forgets that
        only edit state."""
        return [
            c
            for c in self.changes
            if not c.is_noop or c.previous_address is not None or c.importing is not None
        ]

    @property
    def has_changes(self) -> bool:
        if self.mode == "refresh-only":
            return bool(self.drift)
        return (
            bool(self.resource_changes)
            or any(o.actions != ("no-op",) for o in self.outputs)
            or any(c.actions == FORGET for c in self.changes)
            or bool(self.moved or self.imported or self.refingerprinted)
        )

    def counts(self) -> dict[str, int]:
        out = {"add": 0, "change": 0, "destroy": 0}
        for c in self.resource_changes:
            if "create" in c.actions:
                out["add"] += 1
            if "delete" in c.actions:
                out["destroy"] += 1
            if c.actions == UPDATE:
                out["change"] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        def tup(d: dict[str, Any], *keys: str) -> dict[str, Any]:
            return {k: tuple(v) if k in keys and isinstance(v, list) else v for k, v in d.items()}

        changes = tuple(
            Change(
                **tup(
                    c,
                    "actions",
                    "after_unknown",
                    "before_sensitive",
                    "after_sensitive",
                    "changed",
                    "replace_paths",
                    "depends_on",
                )
            )
            for c in data["changes"]
        )
        outputs = tuple(OutputChange(**tup(o, "actions")) for o in data["outputs"])
        drift = tuple(Drift(**d) for d in data["drift"])
        rest = tup(
            {k: v for k, v in data.items() if k not in ("changes", "outputs", "drift")},
            "gone",
            "targets",
            "replace",
            "warnings",
            "notes",
            "imported",
            "checks",
            "relevant_attributes",
        )
        for key in ("moved", "refingerprinted"):
            rest[key] = tuple(tuple(pair) for pair in rest.get(key, ()))
        return cls(changes=changes, outputs=outputs, drift=drift, **rest)
