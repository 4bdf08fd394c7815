"""Salted hashes for sensitive values: enough to notice a change, never the value itself."""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

MARKER = "__sensitive__"


def _digest(salt: str, value: Any) -> str:
    data = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(salt.encode() + b"\0" + data).hexdigest()


def seal(value: Any, salt: str | None = None) -> dict[str, str]:
    """A marker ``{"__sensitive__": "sha256$SALT$HEX"}`` standing for ``value``."""
    salt = salt or secrets.token_hex(16)
    return {MARKER: f"sha256${salt}${_digest(salt, value)}"}


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and MARKER in value


def matches(marker: Any, value: Any) -> bool:
    """True if ``marker`` was made from ``value`` (constant-time compare)."""
    if not is_sealed(marker):
        return False
    _, salt, digest = str(marker[MARKER]).split("$", 2)
    return secrets.compare_digest(digest, _digest(salt, value))
