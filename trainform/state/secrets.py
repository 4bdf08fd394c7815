"""Salted hashes for sensitive values: enough to notice a change, never the value itself;
and keyed hashes, which hash equal values equally under one key (a state's)."""

from __future__ import annotations

import hashlib
import hmac
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


def keyed(key: bytes, value: Any) -> dict[str, str]:
    """``{"__keyed__": "hmac-sha256$HEX"}`` standing for ``value`` under ``key``: the same
    for equal values, and no help in guessing ``value`` without the key (unlike a plain
    hash, which a guess can be checked against offline)."""
    data = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    return {"__keyed__": "hmac-sha256$" + hmac.new(key, data, hashlib.sha256).hexdigest()}


def new_key() -> bytes:
    """A random key for :func:`keyed`."""
    return secrets.token_bytes(32)


def matches(marker: Any, value: Any) -> bool:
    """True if ``marker`` was made from ``value`` (constant-time compare)."""
    if not is_sealed(marker):
        return False
    _, salt, digest = str(marker[MARKER]).split("$", 2)
    return secrets.compare_digest(digest, _digest(salt, value))
