"""What state records for a configured resource instance: its attributes with sensitive
values sealed, and the :class:`ResourceState` apply and import write."""

from __future__ import annotations

from typing import Any

from trainform.config.model import Instance
from trainform.config.sensitivity import seal_paths
from trainform.providers.base import ResourceState


def sealed_attributes(inst: Instance) -> dict[str, Any]:
    """Attributes as stored in state: sensitive values (whole attributes, or keys inside
    maps) replaced by salted hashes."""
    sensitive = set(inst.sensitive) | {
        k for k, a in inst.resource.schema.attributes.items() if a.sensitive
    }
    return seal_paths(inst.attributes, sensitive)


def resource_state(inst: Instance, computed: dict[str, Any], status: str) -> ResourceState:
    """The state recorded for ``inst`` with ``computed`` attributes and ``status``
    (``ready``, ``pending`` or ``tainted``)."""
    res = inst.resource
    return ResourceState(
        address=inst.address,
        kind=res.kind,
        name=res.name,
        key=inst.key,
        provider=res.provider,
        attributes=sealed_attributes(inst),
        computed=computed,
        dependencies=inst.depends_on,
        status=status,
    )
