"""OCI image JSON: descriptors, blobs, and the builders of image configs, manifests and
indexes. Pure.

Layers are described uncompressed (``application/vnd.oci.image.layer.v1.tar``): the
store keeps each layer once, unpacked, and its tar form is a deterministic function
of the directory, so the digest is stable and nothing is kept twice. Export and push
may compress later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.digest import canonical_json, sha256_bytes
from pipeline.oci.config import HistoryEntry, ImageConfig
from pipeline.oci.media import MT_CONFIG, MT_INDEX, MT_MANIFEST

EPOCH_CREATED = "1970-01-01T00:00:00Z"


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True)
class Blob:
    """Bytes plus their descriptor."""

    data: bytes
    descriptor: Descriptor


def json_blob(value: Any, media_type: str) -> Blob:
    data = canonical_json(value)
    return Blob(data, Descriptor(media_type, sha256_bytes(data), len(data)))


def image_config_blob(
    config: ImageConfig,
    diff_ids: Sequence[str],
    history: Sequence[HistoryEntry],
    created: str = EPOCH_CREATED,
    arch: str = "amd64",
) -> Blob:
    """The OCI image config blob. ``history`` holds one non-empty entry per layer."""
    hist = []
    for h in history:
        entry: dict[str, Any] = {"created": created, "created_by": h.created_by}
        if h.empty_layer:
            entry["empty_layer"] = True
        hist.append(entry)
    value = {
        "architecture": arch,
        "os": "linux",
        "created": created,
        "config": config.to_oci(),
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": hist,
    }
    if config.author:
        value["author"] = config.author
    return json_blob(value, MT_CONFIG)


def manifest_blob(config: Descriptor, layers: Sequence[Descriptor]) -> Blob:
    value = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": config.to_json(),
        "layers": [d.to_json() for d in layers],
    }
    return json_blob(value, MT_MANIFEST)


def index_blob(manifests: Sequence[Descriptor]) -> Blob:
    value = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [d.to_json() for d in manifests],
    }
    return json_blob(value, MT_INDEX)
