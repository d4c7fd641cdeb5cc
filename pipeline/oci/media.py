"""Media types of the OCI image spec and Docker's distribution formats. Pure."""

from __future__ import annotations

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

MANIFEST_TYPES = (MT_MANIFEST, MT_DOCKER_MANIFEST)
INDEX_TYPES = (MT_INDEX, MT_DOCKER_LIST)
LAYER_TYPES = frozenset({MT_LAYER, MT_LAYER_GZIP, MT_DOCKER_LAYER_GZIP, MT_DOCKER_LAYER})

REF_ANNOTATION = "org.opencontainers.image.ref.name"


def document_kind(value: object, *declared: str) -> str:
    """``"index"`` or ``"manifest"`` for an image JSON document, judged by its shape
    and by every media type declared for it (the descriptor that pointed at it, the
    registry's Content-Type, its own ``mediaType``; empty ones are ignored).

    Raises ValueError saying why when the document is ambiguous: it has both
    ``manifests`` and ``layers``/``config`` (the CVE-2021-41190 class, where one blob
    reads as an image to one tool and as an index to another), a declared type
    contradicts its shape or another declared type, or it is neither."""
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    own = value.get("mediaType")
    types = [t for t in (*declared, own if isinstance(own, str) else "") if t]
    has_index = "manifests" in value
    has_image = "layers" in value or "config" in value
    if has_index and has_image:
        raise ValueError("ambiguous document: it has both 'manifests' and 'layers'/'config'")
    kinds = {
        "index" if t in INDEX_TYPES else "manifest"
        for t in types
        if t in (*INDEX_TYPES, *MANIFEST_TYPES)
    }
    if len(kinds) > 1:
        raise ValueError(f"ambiguous document: declared as {' and '.join(sorted(set(types)))}")
    shape = "index" if has_index else "manifest" if has_image else ""
    if kinds and shape and shape not in kinds:
        raise ValueError(f"declared as {types[0]} but shaped like an image {shape}")
    kind = shape or (kinds.pop() if kinds else "")
    if not kind:
        raise ValueError("neither an image manifest nor an index (no 'layers' or 'manifests')")
    return kind
