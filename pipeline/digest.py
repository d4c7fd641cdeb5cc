"""Digests and the canonical encoding that cache keys are computed over. Pure."""

from __future__ import annotations

import hashlib
import json
from typing import Any, NewType

DIGEST_PREFIX = "sha256:"

Digest = NewType("Digest", str)
"""``sha256:<hex>`` of some bytes: a blob, a manifest, a config (content addressed)."""
CacheKey = NewType("CacheKey", str)
"""``sha256:<hex>`` of a node's canonical inputs (see ``key_of``); names no bytes."""
DiffID = NewType("DiffID", str)
"""``sha256:<hex>`` of a layer's *uncompressed* tar: the name of a layer in the store."""


def canonical_json(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, UTF-8. Equal values give equal bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_bytes(data: bytes) -> Digest:
    """``sha256:<hex>`` of ``data``."""
    return Digest(DIGEST_PREFIX + hashlib.sha256(data).hexdigest())


def key_of(value: Any) -> CacheKey:
    """The cache key of a JSON-able value: ``sha256:<hex>`` of its canonical JSON."""
    return CacheKey(sha256_bytes(canonical_json(value)))


def uncompressed_blob(diff_id: DiffID) -> Digest:
    """The blob digest of a layer stored uncompressed: its diff_id, by definition."""
    return Digest(diff_id)


def as_digest(text: str, where: str = "") -> Digest:
    """``text`` as a Digest, where it enters from outside (a manifest, a registry, an
    index row); raises ValueError naming ``where`` unless it is well formed."""
    if not is_digest(text):
        raise ValueError(f"{where + ': ' if where else ''}not a sha256 digest: {text!r}")
    return Digest(text)


def as_cache_key(text: str, where: str = "") -> CacheKey:
    """``text`` as a CacheKey (validated like ``as_digest``)."""
    return CacheKey(as_digest(text, where))


def as_diff_id(text: str, where: str = "") -> DiffID:
    """``text`` as a DiffID (validated like ``as_digest``)."""
    return DiffID(as_digest(text, where))


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
