"""Reading a base image from disk into overlay-format layer directories.

Accepted inputs (detected, not declared):

* an OCI image layout directory (``oci-layout`` + ``index.json`` + ``blobs/``);
* an OCI archive: a tar of such a layout (``skopeo copy ... oci-archive:F``);
* a ``docker save`` archive (``manifest.json`` + config + layer tars; also as an
  extracted directory), layers plain or gzip;
* a plain root-filesystem tarball (one layer, a default config).

Archives may be gzip/xz/bzip2-compressed as a whole; a compressed archive is first
decompressed to a temporary file in ``staging``, an uncompressed one is read in place.

Every blob is verified while it is read: manifests, configs and layer blobs against
their descriptor digests (and sizes), and each layer's uncompressed stream against the
config's ``rootfs.diff_ids``. A mismatch is a StoreError naming the file and both
digests. Digests are validated before they become paths. Layers are extracted with
:func:`pipeline.tarball.extract_layer` (hostile paths refused, device nodes skipped).
On any error every directory and temporary file this call made in ``staging`` is
removed before the error propagates.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from pipeline.digest import DIGEST_PREFIX, hex_of, is_digest
from pipeline.errors import StoreError, UnsafePathError
from pipeline.fs.extract import extract_layer
from pipeline.fs.tarread import HashingReader, TarArchive, decompressed, member_names
from pipeline.fs.tree import remove_tree
from pipeline.limits import current, human, over
from pipeline.oci.config import DEFAULT_PATH
from pipeline.oci.media import REF_ANNOTATION, document_kind
from pipeline.oci.platform import host_arch

MAX_JSON = 16 << 20  # manifests and configs are small; refuse to buffer anything huge
_CHUNK = 1 << 20
_HEX_NAME = re.compile(r"^(?:blobs/sha256/)?([0-9a-f]{64})(?:\.tar|\.json)?$")


@dataclass(frozen=True)
class ImportedImage:
    """An image read from disk.

    ``config`` is the image's OCI config JSON (its ``rootfs.diff_ids`` describe the
    *source* layers; re-tarring the directories gives new, deterministic digests).
    ``layer_dirs`` are fresh subdirectories of the staging dir, bottom layer first,
    in overlay upperdir format; the caller owns (moves or removes) them.
    ``source_digest`` is the manifest digest of the source image; for a
    ``docker save`` archive without an OCI index, the config digest (docker's image
    ID); for a rootfs tarball, the sha256 of the file as given.
    """

    config: Mapping[str, Any]
    layer_dirs: tuple[Path, ...]
    source_digest: str
    notes: tuple[str, ...] = ()


class _Source(Protocol):
    """Files of an image layout or archive, by relative name."""

    where: str

    def is_file(self, name: str) -> bool: ...

    def open(self, name: str) -> BinaryIO: ...

    def shown(self, name: str) -> str: ...


class _DirSource:
    """A layout directory. A name that resolves outside the directory is refused."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.where = str(root)
        self._real = os.path.realpath(root)

    def _path(self, name: str) -> str:
        path = os.path.realpath(os.path.join(self._real, name))
        if os.path.commonpath([path, self._real]) != self._real:
            raise UnsafePathError(self.where, name, "resolves outside the image directory")
        return path

    def is_file(self, name: str) -> bool:
        return os.path.isfile(self._path(name))

    def open(self, name: str) -> BinaryIO:
        try:
            return open(self._path(name), "rb")  # the caller closes it
        except FileNotFoundError:
            raise StoreError(f"{self.shown(name)}: missing") from None

    def shown(self, name: str) -> str:
        return os.path.join(self.where, name)


class _ArchiveSource:
    """Members of an uncompressed tar archive, read in place."""

    def __init__(self, archive: TarArchive, where: str) -> None:
        self.archive = archive
        self.where = where

    def is_file(self, name: str) -> bool:
        return self.archive.is_file(name)

    def open(self, name: str) -> BinaryIO:
        if not self.archive.is_file(name):
            raise StoreError(f"{self.shown(name)}: missing from the archive")
        return self.archive.open(name)

    def shown(self, name: str) -> str:
        return f"{self.where}:{name}"


@dataclass(frozen=True)
class _Layer:
    """Where a layer's bytes are and what they must hash to."""

    name: str  # relative name in the source
    digest: str | None  # the blob's digest (possibly compressed), when known
    size: int | None  # the blob's size, when known
    # docker archives written by skopeo name an uncompressed layer "<diff_id hex>.tar"
    digest_may_be_diff_id: bool = False


def _safe_name(name: object, where: str) -> str:
    """A relative file name from a manifest: refuses absolute paths and ``..``."""
    if not isinstance(name, str) or not name:
        raise StoreError(f"{where}: expected a file name, got {name!r}")
    if name.startswith("/") or "\\" in name or "\0" in name:
        raise UnsafePathError(where, name, "not a relative path inside the image")
    if ".." in name.split("/"):
        raise UnsafePathError(where, name, "'..' component")
    return posixpath.normpath(name)


def _blob_name(digest: object, where: str) -> str:
    """``blobs/sha256/<hex>`` for a well-formed digest; refuses anything else."""
    if isinstance(digest, str) and is_digest(digest):
        return f"blobs/sha256/{hex_of(digest)}"
    text = str(digest)
    if "/" in text or "\\" in text or ".." in text:
        raise UnsafePathError(where, text, "not a sha256 digest; refusing it as a blob path")
    raise StoreError(f"{where}: unsupported or malformed digest {digest!r} (expected sha256:<hex>)")


def _mismatch(shown: str, what: str, expected: str, actual: str) -> StoreError:
    return StoreError(f"{shown}: {what} mismatch: expected {expected}, got {actual}")


def _read_json(
    src: _Source, name: str, digest: str | None = None, size: int | None = None
) -> tuple[Any, str]:
    """Parse a small JSON file, verifying its digest and size when given; (value, digest)."""
    with src.open(name) as f:
        data = f.read(MAX_JSON + 1)
    if len(data) > MAX_JSON:
        raise StoreError(f"{src.shown(name)}: larger than {MAX_JSON} bytes; not an image JSON")
    actual = DIGEST_PREFIX + hashlib.sha256(data).hexdigest()
    if digest is not None and actual != digest:
        raise _mismatch(src.shown(name), "digest", digest, actual)
    if size is not None and len(data) != size:
        raise StoreError(f"{src.shown(name)}: size mismatch: expected {size}, got {len(data)}")
    try:
        return json.loads(data), actual
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"{src.shown(name)}: not valid JSON: {exc}") from None
    except RecursionError:
        raise StoreError(f"{src.shown(name)}: not an image JSON: nested too deeply") from None


def _descriptor(value: object, where: str) -> tuple[str, str, int | None, Mapping[str, Any]]:
    """(mediaType, blob name, size, the raw descriptor) of a descriptor object."""
    if not isinstance(value, Mapping):
        raise StoreError(f"{where}: expected a descriptor object, got {value!r}")
    size = value.get("size")
    if size is not None and (not isinstance(size, int) or size < 0):
        raise StoreError(f"{where}: bad descriptor size {size!r}")
    name = _blob_name(value.get("digest"), where)
    return str(value.get("mediaType", "")), name, size, value


def _short_ref(ref: str) -> str:
    """``docker.io/library/busybox:latest`` and ``busybox:latest`` compare equal."""
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/"):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref


def _tag_of(ref: str) -> str:
    last = ref.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else ref


# ---------------------------------------------------------------------------------------
# OCI layouts


def _pick_platform(
    entries: Sequence[Mapping[str, Any]], arch: str, shown: str
) -> Mapping[str, Any]:
    found = []
    for entry in entries:
        plat = entry.get("platform") or {}
        if plat.get("os") == "linux" and plat.get("architecture") == arch:
            return entry
        found.append(f"{plat.get('os', '?')}/{plat.get('architecture', '?')}")
    raise StoreError(f"{shown}: no linux/{arch} image (has: {', '.join(found) or 'none'})")


def _ref_name(entry: Mapping[str, Any]) -> str | None:
    annotations = entry.get("annotations")
    name = annotations.get(REF_ANNOTATION) if isinstance(annotations, Mapping) else None
    return name if isinstance(name, str) else None


def _ref_names(entries: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(sorted(_ref_name(e) or "(unnamed)" for e in entries))


def _oci_manifest(src: _Source, ref: str | None, arch: str) -> tuple[Mapping[str, Any], str, str]:
    """(the manifest, its digest, its shown name) of the image picked from index.json."""
    index_name = "index.json"
    index, _ = _read_json(src, index_name)
    shown = src.shown(index_name)
    try:
        if document_kind(index) != "index":
            raise ValueError("an image manifest where the layout's index belongs")
    except ValueError as exc:
        raise StoreError(f"{shown}: refused: {exc}") from None
    entries = index.get("manifests") if isinstance(index, Mapping) else None
    if not isinstance(entries, list) or not entries:
        raise StoreError(f"{shown}: no manifests")
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise StoreError(f"{shown}: expected descriptor objects in 'manifests'")
        _blob_name(entry.get("digest"), shown)  # validate every digest up front
    if ref is not None:
        wanted = {ref, _tag_of(ref), _short_ref(ref)}
        chosen = [e for e in entries if _ref_name(e) in wanted]
        if not chosen and not (len(entries) == 1 and _ref_name(entries[0]) is None):
            raise StoreError(f"{shown}: no image named {ref!r} (has: {_ref_names(entries)})")
        entries = chosen or entries  # a single unnamed image is the one asked for
    if len(entries) == 1:
        desc = entries[0]
    elif all("platform" in e for e in entries):
        desc = _pick_platform(entries, arch, shown)
    else:
        raise StoreError(f"{shown}: {len(entries)} images; name one (has: {_ref_names(entries)})")
    for _ in range(4):  # nested indexes
        media_type, name, size, raw = _descriptor(desc, shown)
        value, digest = _read_json(src, name, raw["digest"], size)
        shown = src.shown(name)
        if not isinstance(value, Mapping):
            raise StoreError(f"{shown}: expected a JSON object")
        try:
            kind = document_kind(value, media_type)
        except ValueError as exc:
            raise StoreError(f"{shown}: {digest}: refused: {exc}") from None
        if kind == "index":
            subs = value.get("manifests")
            if not isinstance(subs, list) or not subs:
                raise StoreError(f"{shown}: empty image index")
            desc = _pick_platform([s for s in subs if isinstance(s, Mapping)], arch, shown)
            continue
        return value, digest, shown
    raise StoreError(f"{shown}: image indexes nested too deeply")


def _read_oci(
    src: _Source, ref: str | None, arch: str, staging: Path, made: list[Path]
) -> ImportedImage:
    manifest, manifest_digest, shown = _oci_manifest(src, ref, arch)
    config_desc = manifest.get("config")
    layer_descs = manifest.get("layers")
    if not isinstance(layer_descs, list):
        raise StoreError(f"{shown}: manifest without a 'layers' list")
    _, config_name, config_size, raw = _descriptor(config_desc, shown)
    config, _ = _read_json(src, config_name, raw["digest"], config_size)
    layers = []
    for desc in layer_descs:
        media_type, name, size, raw = _descriptor(desc, shown)
        if "zstd" in media_type:
            raise StoreError(
                f"{src.shown(name)}: zstd layers need the 'zstandard' package ({media_type})"
            )
        layers.append(_Layer(name, raw["digest"], size))
    dirs, notes = _extract_layers(src, config, src.shown(config_name), layers, staging, made)
    return ImportedImage(config, dirs, manifest_digest, notes)


# ---------------------------------------------------------------------------------------
# docker save archives


def _read_docker(src: _Source, ref: str | None, staging: Path, made: list[Path]) -> ImportedImage:
    shown = src.shown("manifest.json")
    entries, _ = _read_json(src, "manifest.json")
    if not isinstance(entries, list) or not entries:
        raise StoreError(f"{shown}: expected a non-empty list of images")
    if ref is not None:
        wanted = _short_ref(ref)
        entries = [
            e
            for e in entries
            if isinstance(e, Mapping)
            and any(_short_ref(str(t)) == wanted for t in e.get("RepoTags") or [])
        ]
        if not entries:
            raise StoreError(f"{shown}: no image tagged {ref!r}")
    if len(entries) != 1:
        tags = sorted(
            str(t) for e in entries if isinstance(e, Mapping) for t in e.get("RepoTags") or []
        )
        raise StoreError(f"{shown}: {len(entries)} images; name one (has: {', '.join(tags)})")
    entry = entries[0]
    if not isinstance(entry, Mapping):
        raise StoreError(f"{shown}: expected an object per image")
    config_name = _safe_name(entry.get("Config"), shown)
    match = _HEX_NAME.match(config_name)
    config_digest = DIGEST_PREFIX + match.group(1) if match else None
    config, actual = _read_json(src, config_name, config_digest)
    names = entry.get("Layers")
    if not isinstance(names, list):
        raise StoreError(f"{shown}: image without a 'Layers' list")
    layers = []
    for name in names:
        safe = _safe_name(name, shown)
        found = _HEX_NAME.match(safe)
        # blobs/sha256/<hex> (docker >= 25) names the blob; <hex>.tar (skopeo) its diff_id
        digest = DIGEST_PREFIX + found.group(1) if found else None
        layers.append(_Layer(safe, digest, None, digest_may_be_diff_id=True))
    dirs, notes = _extract_layers(src, config, src.shown(config_name), layers, staging, made)
    return ImportedImage(config, dirs, actual, notes)


# ---------------------------------------------------------------------------------------
# shared: layers


def _diff_ids(config: Any, shown: str, count: int) -> list[str]:
    rootfs = config.get("rootfs") if isinstance(config, Mapping) else None
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, Mapping) else None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise StoreError(f"{shown}: config without rootfs.diff_ids")
    if len(diff_ids) != count:
        raise StoreError(
            f"{shown}: config lists {len(diff_ids)} diff_ids for {count} layers in the manifest"
        )
    return diff_ids


def _fresh_dir(staging: Path, prefix: str, made: list[Path]) -> Path:
    path = Path(tempfile.mkdtemp(dir=staging, prefix=prefix))
    made.append(path)
    path.chmod(0o755)
    return path


def _extract_layers(
    src: _Source,
    config: Any,
    config_shown: str,
    layers: Sequence[_Layer],
    staging: Path,
    made: list[Path],
) -> tuple[tuple[Path, ...], tuple[str, ...]]:
    diff_ids = _diff_ids(config, config_shown, len(layers))
    dirs = []
    notes: list[str] = []
    for i, (layer, diff_id) in enumerate(zip(layers, diff_ids, strict=True)):
        shown = src.shown(layer.name)
        dest = _fresh_dir(staging, f"layer{i:03d}-", made)
        with src.open(layer.name) as raw:
            reader = HashingReader(raw, shown)
            report = extract_layer(reader, dest, shown)  # type: ignore[arg-type]
            reader.drain()
        named_by_diff_id = layer.digest_may_be_diff_id and layer.digest == report.diff_id
        if layer.digest is not None and layer.digest != reader.digest and not named_by_diff_id:
            raise _mismatch(shown, "digest", layer.digest, reader.digest)
        if layer.size is not None and reader.size != layer.size:
            raise StoreError(f"{shown}: size mismatch: expected {layer.size}, got {reader.size}")
        if report.diff_id != diff_id:
            raise _mismatch(shown, "diff_id (uncompressed digest)", diff_id, report.diff_id)
        notes.extend(_layer_notes(i, len(layers), report.skipped, report.notes))
        dirs.append(dest)
    return tuple(dirs), tuple(notes)


def _layer_notes(i: int, count: int, skipped: Sequence[str], notes: Sequence[str]) -> Iterator[str]:
    prefix = f"layer {i + 1}/{count}"
    if skipped:
        shown = ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        yield f"{prefix}: skipped {len(skipped)} device node(s) or special entries: {shown}"
    for note in notes:
        if "skipped" not in note:
            yield f"{prefix}: {note}"


# ---------------------------------------------------------------------------------------
# plain rootfs tarballs


def default_config(diff_id: str, arch: str = "amd64") -> dict[str, Any]:
    """The config of a rootfs tarball: PATH only, linux/``arch``, one layer."""
    return {
        "architecture": arch,
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Env": [f"PATH={DEFAULT_PATH}"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "rootfs tarball"}],
    }


def _read_rootfs(path: Path, staging: Path, made: list[Path]) -> ImportedImage:
    dest = _fresh_dir(staging, "layer000-", made)
    with path.open("rb") as raw:
        reader = HashingReader(raw, str(path))
        report = extract_layer(reader, dest, str(path))  # type: ignore[arg-type]
        reader.drain()
    notes = tuple(_layer_notes(0, 1, report.skipped, report.notes))
    return ImportedImage(default_config(report.diff_id), (dest,), reader.digest, notes)


# ---------------------------------------------------------------------------------------
# entry point


def _kind_of(names: frozenset[str] | set[str]) -> str:
    if "index.json" in names and "oci-layout" in names:
        return "oci"
    if "manifest.json" in names:
        return "docker"
    return "rootfs"


@contextmanager
def _cleanup_on_error(made: list[Path]) -> Iterator[None]:
    try:
        yield
    except BaseException:
        for path in reversed(made):
            with suppress(OSError):
                remove_tree(path)
        raise


def read_image(
    path: Path, staging: Path, ref: str | None = None, arch: str | None = None
) -> ImportedImage:
    """Read the image at ``path`` into fresh layer directories under ``staging``.

    ``ref`` picks one image when a layout/archive holds several (matched against the
    ``org.opencontainers.image.ref.name`` annotation, or a docker archive's RepoTags);
    ``arch`` (default: the host's, e.g. amd64) picks from multi-platform indexes.
    Streaming: archives are read in place (compressed ones via one temporary
    decompressed copy in ``staging``), layers are never held in memory. Atomic in
    the sense that on any error (StoreError for bad data or digest mismatches,
    UnsafePathError for hostile paths) nothing this call created is left in
    ``staging``. Does not modify ``path``.
    """
    arch = arch or host_arch()
    staging.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    with _cleanup_on_error(made):
        if path.is_dir():
            src = _DirSource(path)
            kind = _kind_of(
                {n for n in ("index.json", "oci-layout", "manifest.json") if src.is_file(n)}
            )
            if kind == "rootfs":
                raise StoreError(
                    f"{path}: neither an OCI layout (index.json) nor a docker save dir"
                )
            return _read_source(src, kind, ref, arch, staging, made)
        if not path.is_file():
            raise StoreError(f"{path}: no such file or directory")
        return _read_file(path, ref, arch, staging, made)
    raise AssertionError("unreachable")  # pragma: no cover


def _read_source(
    src: _Source, kind: str, ref: str | None, arch: str, staging: Path, made: list[Path]
) -> ImportedImage:
    if kind == "oci":
        return _read_oci(src, ref, arch, staging, made)
    return _read_docker(src, ref, staging, made)


def _bounded_copy(stream: BinaryIO, out: BinaryIO, where: str) -> None:
    """Copy a decompressing ``stream`` into ``out`` within ``Limits.unpacked_bytes``,
    keeping ``Limits.free_reserve_bytes`` free on ``out``'s disk (checked every 64 MiB)."""
    limits = current()
    written = 0
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            return
        written += len(chunk)
        if written > limits.unpacked_bytes:
            raise StoreError(
                f"{where}: decompresses to more than {human(limits.unpacked_bytes)}; "
                + over("unpacked_bytes", limits.unpacked_bytes)
            )
        if written % (64 << 20) < len(chunk):
            st = os.fstatvfs(out.fileno())
            if st.f_bavail * st.f_frsize < limits.free_reserve_bytes + len(chunk):
                raise StoreError(
                    f"{where}: the store's disk is full after decompressing {written:,} bytes "
                    f"(keeping {human(limits.free_reserve_bytes)} free)"
                )
        try:
            out.write(chunk)
        except OSError as exc:
            raise StoreError(f"{where}: cannot decompress into the store: {exc.strerror}") from None


def _read_file(
    path: Path, ref: str | None, arch: str, staging: Path, made: list[Path]
) -> ImportedImage:
    names, compression = member_names(path)
    kind = _kind_of(names)
    if kind == "rootfs":
        return _read_rootfs(path, staging, made)
    plain = path
    if compression:  # an archive: one decompressed copy we can seek in
        fd, name = tempfile.mkstemp(dir=staging, prefix=".import-", suffix=".tar")
        plain = Path(name)
        made.append(plain)
        with os.fdopen(fd, "wb") as out, path.open("rb") as f:
            stream, _ = decompressed(f, str(path))
            _bounded_copy(stream, out, str(path))
    try:
        with TarArchive(plain) as archive:
            return _read_source(_ArchiveSource(archive, str(path)), kind, ref, arch, staging, made)
    finally:
        if plain != path:
            plain.unlink(missing_ok=True)
