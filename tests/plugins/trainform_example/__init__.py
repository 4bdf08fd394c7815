"""An example third-party provider, installed only through entry-point metadata.

It proves a provider can be added without touching trainform's code: the tests put this
folder and a generated ``*.dist-info/entry_points.txt`` on ``PYTHONPATH``, exactly as
``pip install`` of a package declaring ``[project.entry-points."trainform.providers"]`` would.

``compute "x" { type = "example" }`` manages a marker file per resource in ``marker_dir``
(real side effects the tests can see), can be slowed down (``delay_seconds``) to test
interruption, and can be told to fail (``fail = true``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, ClassVar

from trainform.config.schema import Attribute, BlockSchema
from trainform.errors import ProviderError
from trainform.providers.base import Observed, Provider, ResourceState


class ExampleProvider(Provider):
    name = "example"
    kind = "compute"
    verbs: ClassVar[dict[str, str]] = {"create": "provision", "delete": "deprovision"}
    schema = BlockSchema(
        attributes={
            "marker_dir": Attribute(required=True, force_new=True, description="Where markers go."),
            "size": Attribute("number", default=1, description="Updated in place."),
            "delay_seconds": Attribute("number", default=0, description="Sleep in create/update."),
            "fail": Attribute("bool", default=False, description="Make create fail."),
            "secret": Attribute(sensitive=True, description="A sensitive attribute."),
            "marker": Attribute(computed=True, description="Path of the marker file."),
        }
    )

    def _marker(self, address: str, desired: dict[str, Any]) -> Path:
        safe = address.replace("/", "_").replace('"', "")
        return Path(desired["marker_dir"]) / f"{safe}.json"

    def read(self, resource: ResourceState) -> Observed | None:
        path = Path(resource.computed.get("marker", ""))
        if not resource.computed.get("marker") or not path.is_file():
            return None
        return {"marker": str(path)}

    def create(self, address: str, desired: dict[str, Any]) -> Observed:
        time.sleep(float(desired.get("delay_seconds") or 0))
        if desired.get("fail"):
            raise ProviderError(f"{address}: failing as asked (fail = true)", address=address)
        path = self._marker(address, desired)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"address": address, "size": desired.get("size")}))
        return {"marker": str(path)}

    def update(
        self, address: str, desired: dict[str, Any], prior: ResourceState, changed: list[str]
    ) -> Observed:
        return self.create(address, desired)

    def delete(self, prior: ResourceState) -> None:
        path = Path(prior.computed.get("marker", ""))
        if prior.computed.get("marker"):
            path.unlink(missing_ok=True)
