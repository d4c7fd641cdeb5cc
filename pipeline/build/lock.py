"""The lock file that pins registry bases.

**Lock file** ``pipeline.lock`` next to the specs pins each registry base's tag to the
manifest digest it resolved to; later builds use the pinned digest (and no network
at all when the store already has it) until ``update=True``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.build.pull import local_for, pull_image
from pipeline.digest import is_digest
from pipeline.errors import UsageError
from pipeline.oci.platform import host_arch
from pipeline.registry.client import Registries
from pipeline.registry.reference import Reference
from pipeline.store import Store

LOCK_FILE = "pipeline.lock"
LOCK_VERSION = 1
# ---------------------------------------------------------------------------------------
# the lock file


def read_lock(path: Path) -> dict[str, str]:
    """The pins of a lock file (reference -> manifest digest); {} when it is absent."""
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a pipeline lock file: {exc}") from None
    bases = value.get("bases") if isinstance(value, Mapping) else None
    if not isinstance(bases, Mapping) or not all(
        isinstance(v, str) and is_digest(v) for v in bases.values()
    ):
        raise UsageError(f"{path}: not a pipeline lock file (expected 'bases': ref -> digest)")
    return {str(k): str(v) for k, v in bases.items()}


def write_lock(path: Path, pins: Mapping[str, str]) -> None:
    """Write the base pins atomically (temp + rename), keys sorted, one pin a line;
    the file's other sections (``pip``) are kept."""

    def change(value: dict[str, Any]) -> None:
        value["bases"] = dict(sorted(pins.items()))

    update_lock(path, change)


def update_lock(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Read the lock file (an empty one when absent), let ``change`` edit it, write it
    back atomically (temp + rename)."""
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        loaded = {}
    value: dict[str, Any] = loaded if isinstance(loaded, dict) else {}
    value.setdefault("bases", {})
    change(value)
    value["comment"] = (
        "written by pipeline: the manifest digest each registry base resolved to, and the "
        "exact closure of each pip set; builds use them until `--update`"
    )
    value["version"] = LOCK_VERSION
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


@dataclass(frozen=True)
class BaseResolution:
    ref: str
    digest: str  # the pinned remote digest
    local: str  # the store's manifest
    pulled: bool  # False when the store had it (no transfer)


def ensure_bases(
    refs: Iterable[str],
    store: Store,
    registries: Registries,
    lock_path: Path,
    update: bool = False,
    epoch: int = 0,
) -> list[BaseResolution]:
    """Make every registry base reference resolvable in the store under its own text,
    pinned by the lock file. Touches the network only for what the lock does not pin
    or the store does not hold (or everything, with ``update``)."""
    pins = read_lock(lock_path)
    changed = False
    out = []
    for text in sorted(set(refs)):
        ref = Reference.parse(text)
        pinned = ref.digest or (None if update else pins.get(text))
        if pinned is not None:
            local = local_for(store, pinned, host_arch())
            if local is not None:
                if store.resolve(text) != local:
                    store.tag(text, local)
                out.append(BaseResolution(text, pinned, local, False))
                continue
            result = pull_image(store, registries, ref.with_digest(pinned), text, epoch=epoch)
        else:
            result = pull_image(store, registries, ref, text, epoch=epoch)
        if not ref.digest and pins.get(text) != result.remote_digest:
            pins[text] = result.remote_digest
            changed = True
        out.append(BaseResolution(text, result.remote_digest, result.local_digest, True))
    if changed:
        write_lock(lock_path, pins)
    return out
