"""Docker engine fixtures (defined in tests/docker_engine.py, shared with tests/integration):
`docker_client`, `base_image`, `no_leftovers`, and the `managed` helper."""

from __future__ import annotations

from docker_engine import (  # noqa: F401 (fixtures and helpers for this folder)
    PROJECT_LABEL,
    base_image,
    built_images,
    docker_client,
    managed,
    no_leftovers,
)
