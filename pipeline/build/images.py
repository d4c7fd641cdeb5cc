"""Images in the store: resolving bases for the compiler, importing, describing, exporting.

Composition of store, tarball and oci; every write goes through ``Store`` (atomic) or
to the user's export path (written to a temp name, then renamed).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from pipeline.digest import hex_of
from pipeline.errors import StoreError, UsageError
from pipeline.factoring import PACKAGE_COMMENT
from pipeline.graph import ResolvedBase
from pipeline.model import Fleet
from pipeline.oci.config import HistoryEntry, ImageConfig
from pipeline.oci.manifest import Descriptor, image_config_blob, index_blob, manifest_blob
from pipeline.oci.media import MT_LAYER, MT_MANIFEST
from pipeline.store import Store


@dataclass(frozen=True)
class StoredImage:
    name: str
    manifest_digest: str
    config_digest: str
    config: Mapping[str, Any]
    layers: tuple[tuple[str, int], ...]  # (diff_id, size), bottom first

    @property
    def history(self) -> list[Mapping[str, Any]]:
        return list(self.config.get("history") or [])


def load_image(store: Store, name: str) -> StoredImage:
    """The stored image a name (tag, app id, or name@digest) points at."""
    digest = store.resolve(name)
    if digest is None:
        raise UsageError(f"{name}: no such image in the store ({store.root})")
    manifest = store.get_json(digest)
    config_digest = manifest["config"]["digest"]
    config = store.get_json(config_digest)
    return StoredImage(name, digest, config_digest, config, tuple(store.manifest_layers(digest)))


def resolve_bases(fleet: Fleet, store: Store) -> dict[str, ResolvedBase]:
    """For every store-kind base the fleet names, what the store holds (if anything)."""
    out: dict[str, ResolvedBase] = {}
    for image in fleet.images.values():
        base = image.base
        if base.kind not in ("store", "registry") or base.ref in out:
            continue
        if store.resolve(base.ref) is None:
            continue
        out[base.ref] = as_base(load_image(store, base.ref))
    return out


def as_base(image: StoredImage) -> ResolvedBase:
    diff_ids = tuple(d for d, _ in image.layers)
    history = tuple(
        (str(h.get("created_by", "")), bool(h.get("empty_layer", False))) for h in image.history
    )
    if sum(1 for _, empty in history if not empty) != len(diff_ids):
        history = tuple((f"FROM {image.name}", False) for _ in diff_ids)
    return ResolvedBase(
        ref=image.name,
        manifest_digest=image.manifest_digest,
        config=ImageConfig.from_oci(image.config.get("config") or {}),
        diff_ids=diff_ids,
        history=history,
    )


def import_image(
    store: Store, path: Path, name: str, epoch: int = 0, created_by: str = ""
) -> tuple[str, list[str]]:
    """Import an OCI layout/archive, docker archive or rootfs tar under ``name``.
    Layers are re-tarred deterministically from their extracted dirs. Returns the
    manifest digest and notes (skipped device nodes, ...). Atomic per layer and blob;
    the name is set last."""
    from pipeline.fs import importer
    from pipeline.fs.tarwrite import layer_info

    with store.gc_lock(), store.staging() as staging:
        imported = importer.read_image(path, staging.path)
        descriptors = []
        diff_ids = []
        for layer_dir in imported.layer_dirs:
            info = layer_info(layer_dir, epoch)
            store.commit_layer(layer_dir, info.diff_id, info.size, epoch)
            descriptors.append(Descriptor(MT_LAYER, info.diff_id, info.size))
            diff_ids.append(info.diff_id)
        source_cfg = dict(imported.config)
        config = ImageConfig.from_oci(source_cfg.get("config") or {})
        hist = [
            HistoryEntry(str(h.get("created_by", "")), bool(h.get("empty_layer", False)))
            for h in source_cfg.get("history") or []
        ]
        if created_by or sum(1 for h in hist if not h.empty_layer) != len(diff_ids):
            text = created_by or f"pipeline import {path.name}"
            hist = [HistoryEntry(text, False) for _ in diff_ids]
        config_blob = image_config_blob(config, diff_ids, hist)
        store.put_blob(config_blob)
        manifest = manifest_blob(config_blob.descriptor, descriptors)
        digest = store.put_blob(manifest)
        store.tag(name, digest)
        return digest, list(imported.notes)


Format = Literal["oci", "oci-archive", "docker-archive"]


def export_image(
    store: Store,
    name: str,
    out: Path,
    fmt: Format,
    epoch: int = 0,
    force: bool = False,
    replaceable: Callable[[Path], bool] | None = None,
) -> str:
    """Write a stored image as an OCI layout dir, an OCI archive or a docker-archive.
    Every layer's tar is regenerated from its dir with the epoch recorded for it
    (``epoch`` only for a layer that has none) and checked against its diff_id
    (StoreError on mismatch: the store is corrupted). Written under a temp name and
    moved into place by :func:`pipeline.build.outputs.place`, which never replaces what
    the user has at ``out`` (``force``: a file, or a layout pipeline wrote) and removes
    the partial output on any error; a missing directory (UsageError) or a failed
    write, such as a full disk (StoreError), is one line naming ``out``. Returns the
    manifest digest."""
    from pipeline.build.outputs import check, place

    if fmt not in ("oci", "oci-archive", "docker-archive"):
        raise UsageError(f"unknown export format {fmt!r}")
    check(out, directory=fmt == "oci", force=force, replaceable=replaceable)  # before work
    image = load_image(store, name)

    def write(tmp: Path) -> None:
        if fmt == "oci":
            _write_layout(store, image, tmp, epoch)
        elif fmt == "oci-archive":
            with store.staging() as staging:
                layout = staging.path / "layout"
                _write_layout(store, image, layout, epoch)
                _tar_dir(layout, tmp)
        else:
            _write_docker_archive(store, image, tmp, epoch)

    try:
        place(out, write, directory=fmt == "oci", force=force, replaceable=replaceable)
    except OSError as exc:
        raise StoreError(f"{out}: export failed: {exc.strerror or exc}") from None
    return image.manifest_digest


def _verified_layer(store: Store, diff_id: str, dest: BinaryIO, epoch: int) -> int:
    from pipeline.fs.tarwrite import write_layer

    epoch = store.layer_epoch(diff_id, epoch) or 0  # the epoch its tar was made with
    info = write_layer(store.layer_path(diff_id), dest, epoch)
    if info.diff_id != diff_id:
        raise StoreError(
            f"{store.layer_path(diff_id)}: corrupted layer: expected {diff_id}, "
            f"its files now give {info.diff_id}"
        )
    return info.size


def _write_layout(store: Store, image: StoredImage, root: Path, epoch: int) -> None:
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    for diff_id, _ in image.layers:
        path = blobs / hex_of(diff_id)
        if path.exists():
            continue
        with open(path, "wb") as f:
            _verified_layer(store, diff_id, f, epoch)
    for digest in (image.config_digest, image.manifest_digest):
        (blobs / hex_of(digest)).write_bytes(store.get_blob(digest))
    size = len(store.get_blob(image.manifest_digest))
    annotations = (("org.opencontainers.image.ref.name", _ref_name(_public_name(store, image))),)
    desc = Descriptor(MT_MANIFEST, image.manifest_digest, size, annotations)
    (root / "index.json").write_bytes(index_blob([desc]).data)


def _public_name(store: Store, image: StoredImage) -> str:
    """The name to show outside: the image's first tag (sorted) when it is known by an
    app/image id, else the name it was asked for."""
    if not image.name.startswith(("app.", "image.")):
        return image.name
    tags = sorted(
        n
        for n, digest, _ in store.names()
        if digest == image.manifest_digest and not n.startswith(("app.", "image."))
    )
    return tags[0] if tags else image.name


def _ref_name(name: str) -> str:
    tail = name.rsplit("/", 1)[-1]
    return tail.split(":", 1)[1] if ":" in tail else "latest"


def _tar_dir(src: Path, out: Path) -> None:
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(src.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(src)))
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if path.is_file():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


def _write_docker_archive(store: Store, image: StoredImage, out: Path, epoch: int) -> None:
    """``docker save`` format: manifest.json, the config, one tar per layer."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar, store.staging() as staging:
        layer_names = []
        for diff_id, _ in image.layers:
            name = f"{hex_of(diff_id)}/layer.tar"
            tmp = staging.path / hex_of(diff_id)
            with open(tmp, "wb") as f:
                _verified_layer(store, diff_id, f, epoch)
            if name not in layer_names:
                info = tarfile.TarInfo(name)
                info.size = tmp.stat().st_size
                with open(tmp, "rb") as f:
                    tar.addfile(info, f)
            layer_names.append(name)
        config_name = f"{hex_of(image.config_digest)}.json"
        _add_bytes(tar, config_name, store.get_blob(image.config_digest))
        repo_tags = [_docker_tag(_public_name(store, image))]
        manifest = [{"Config": config_name, "RepoTags": repo_tags, "Layers": layer_names}]
        _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())


def _docker_tag(name: str) -> str:
    clean = name.replace("app.", "", 1) if name.startswith(("app.", "image.")) else name
    clean = clean.replace("image.", "", 1)
    tail = clean.rsplit("/", 1)[-1]
    return clean if ":" in tail else f"{clean}:latest"


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@dataclass(frozen=True)
class DiskUsage:
    unique_bytes: int  # each layer counted once (tar bytes)
    naive_bytes: int  # sum over named images of their layers
    per_image: tuple[tuple[str, int, int], ...]  # (name, shared bytes, exclusive bytes)
    on_disk: int  # bytes the store's files take (apparent sizes)
    # pip package layers (history comment, size, how many of the apps use it), most used first
    packages: tuple[tuple[str, int, int], ...] = ()


def disk_usage(store: Store, names: Iterable[str] | None = None) -> DiskUsage:
    """Sharing figures over the given names (default: every app id in the store)."""
    chosen = [n for n, _, _ in store.names() if names is None and n.startswith("app.")]
    if names is not None:
        chosen = list(names)
    users: dict[str, set[str]] = {}
    sizes: dict[str, int] = {}
    per: dict[str, list[tuple[str, int]]] = {}
    labels: dict[str, str] = {}
    for name in chosen:
        image = load_image(store, name)
        per[name] = list(image.layers)
        made = [h for h in image.history if not h.get("empty_layer")]
        if len(made) == len(image.layers):
            for h, (diff_id, _) in zip(made, image.layers, strict=True):
                comment = str(h.get("comment") or "")
                if comment.startswith(PACKAGE_COMMENT):
                    labels[diff_id] = comment.removeprefix(PACKAGE_COMMENT).strip()
        for diff_id, size in image.layers:
            users.setdefault(diff_id, set()).add(name)
            sizes[diff_id] = size
    rows = []
    for name, layers in per.items():
        shared = sum(s for d, s in layers if len(users[d]) > 1)
        exclusive = sum(s for d, s in layers if len(users[d]) == 1)
        rows.append((name, shared, exclusive))
    naive = sum(s for layers in per.values() for _, s in layers)
    packages = sorted(
        ((label, sizes[d], len(users[d])) for d, label in labels.items()),
        key=lambda row: (-row[2], row[0]),
    )
    return DiskUsage(
        sum(sizes.values()), naive, tuple(rows), _apparent_size(store.root), tuple(packages)
    )


def _apparent_size(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                continue
    return total
