"""Digests and the canonical encoding that cache keys are computed over. Pure."""

from __future__ import annotations

import hashlib
import json
from typing import Any

DIGEST_PREFIX = "sha256:"


def canonical_json(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, UTF-8. Equal values give equal bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_bytes(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return DIGEST_PREFIX + hashlib.sha256(data).hexdigest()


def key_of(value: Any) -> str:
    """The cache key of a JSON-able value: ``sha256:<hex>`` of its canonical JSON."""
    return sha256_bytes(canonical_json(value))


def hex_of(digest: str) -> str:
    """The hex part of ``sha256:<hex>``; raises ValueError on anything else."""
    if not is_digest(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return digest[len(DIGEST_PREFIX) :]


def is_digest(text: str) -> bool:
    """True for a well-formed ``sha256:`` followed by 64 lowercase hex digits."""
    if not text.startswith(DIGEST_PREFIX):
        return False
    rest = text[len(DIGEST_PREFIX) :]
    return len(rest) == 64 and all(c in "0123456789abcdef" for c in rest)


def short(digest: str, n: int = 12) -> str:
    """A short form for display: the first ``n`` hex digits."""
    return digest.removeprefix(DIGEST_PREFIX)[:n]
