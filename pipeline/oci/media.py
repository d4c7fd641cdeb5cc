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
