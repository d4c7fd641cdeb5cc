"""Build contexts in a registry, named by their content digest, for cluster workers.

A COPY from a build context is keyed by the content digest of what it copies
(``node.content``: paths, kinds, modes, bytes, symlink targets). A cluster worker
never sees the client's paths: the client uploads each context selection once, as an
OCI artifact in the cluster's cache repository tagged ``context-<64 hex of the
content digest>``, and a worker fetches the ones it needs.

Format: the manifest's config (media type
``application/vnd.pipeline.context.config.v1+json``) is ``{"content", "entries"}``;
``entries`` lists the selection as ``context.select`` returned it, one
``[rel, kind, mode, size, target, top, source, mtime_ns, sha256]`` per entry (the
file's content digest, or "" for a dir or symlink). Its one layer is a tar holding
each distinct file content once, as ``files/<64 hex>`` (regular files only, mode
0644, owner 0, mtime 0: deterministic, so an equal selection gives equal bytes).

Trust: the client checks that the bytes it packs give the digest the node was keyed
by before it tags the entry. A worker takes only ``files/<hex>`` members whose bytes
hash to their name, checks the tar's blob digest, and the copier refuses a layer whose
copied content does not give ``node.content`` again: a tampered entry fails the step,
it never makes a wrong layer.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, cast

from pipeline.build.cache import RegistryCache
from pipeline.digest import Digest, canonical_json, hex_of, is_digest
from pipeline.fs.context import Entry, select
from pipeline.fs.contexthash import digest_entries
from pipeline.model import Copy
from pipeline.oci.manifest import Descriptor, json_blob
from pipeline.oci.media import MT_LAYER, MT_MANIFEST
from pipeline.registry.reference import RegistryError
from pipeline.store import Store

CONTEXT_ARTIFACT = "application/vnd.pipeline.context.v1+json"
CONTEXT_CONFIG = "application/vnd.pipeline.context.config.v1+json"
CONTEXT_TAG_PREFIX = "context-"
MAX_CONFIG = 64 << 20
_MEMBER = re.compile(r"files/([0-9a-f]{64})")
_CHUNK = 1 << 20


def context_tag(content: str) -> str:
    return CONTEXT_TAG_PREFIX + hex_of(content)


class ContextChanged(Exception):
    """The context's files no longer give the digest the COPY was keyed by."""


def _file_digest(path: Path) -> Digest:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return Digest("sha256:" + h.hexdigest())


class _Hashing:
    """A reader that hashes and counts what is read through it."""

    def __init__(self, inner: IO[bytes]) -> None:
        self.inner = inner
        self.hash = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        self.hash.update(data)
        self.count += len(data)
        return data


def _entry_row(e: Entry, digest: str) -> list[Any]:
    return [e.rel, e.kind, e.mode, e.size, e.target, e.top, e.source, e.stat_key[1], digest]


def upload(cache: RegistryCache, step: Copy, content: str, store: Store) -> bool:
    """Make the context selection of ``step`` (keyed ``content``) present in the cache
    repository; True when this call uploaded it. Raises ContextChanged when the files
    no longer give ``content`` (edited since the build was planned)."""
    client = cache.client
    repo = cache.ref.repository
    tag = context_tag(content)
    if client.manifest_digest(repo, tag) is not None:
        return False
    selection = select(Path(step.context), step.sources, step.ignore)
    digests = {str(e.path): _file_digest(e.path) for e in selection if e.kind == "file"}
    if digest_entries(selection, lambda e: digests[str(e.path)]) != content:
        raise ContextChanged(f"COPY {' '.join(step.sources)}: changed during the build; run again")
    changed = ContextChanged(f"COPY {' '.join(step.sources)}: changed during the build; run again")
    with store.staging() as staging:
        tar_path = staging.path / "files.tar"
        paths = {hex_of(d): p for p, d in digests.items()}
        with (
            open(tar_path, "wb") as raw,
            tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar,
        ):
            for hexd in sorted(paths):
                with open(paths[hexd], "rb") as f:
                    data = _Hashing(f)
                    info = tarfile.TarInfo(f"files/{hexd}")
                    info.size = os.fstat(f.fileno()).st_size
                    info.mode = 0o644
                    tar.addfile(info, cast(IO[bytes], data))
                    if data.hash.hexdigest() != hexd or data.count != info.size:
                        raise changed
        blob_digest = _file_digest(tar_path)
        blob_size = tar_path.stat().st_size
        if not client.blob_exists(repo, blob_digest):
            client.upload_blob(repo, blob_digest, blob_size, tar_path)
    rows = [_entry_row(e, digests.get(str(e.path), "")) for e in selection]
    config = json_blob({"content": content, "entries": rows}, CONTEXT_CONFIG)
    if not client.blob_exists(repo, config.descriptor.digest):
        client.upload_bytes(repo, config.descriptor.digest, config.data)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "artifactType": CONTEXT_ARTIFACT,
        "config": config.descriptor.to_json(),
        "layers": [Descriptor(MT_LAYER, blob_digest, blob_size).to_json()],
    }
    client.put_manifest(repo, tag, canonical_json(manifest), MT_MANIFEST)
    return True


def fetch(cache: RegistryCache, content: str, dest: Path) -> list[Entry]:
    """Download the context selection keyed ``content`` into the empty dir ``dest``
    and return its entries (file entries pointing at files in ``dest``), ready for
    ``copier.run_copy(selection=...)``. RegistryError naming the entry when it is
    missing or malformed."""
    client = cache.client
    repo = cache.ref.repository
    tag = context_tag(content)
    found = client.get_manifest(repo, tag)
    if found is None:
        raise client.error(f"build context {tag} is not in the cache repository", repo, None)

    def bad(message: str) -> RegistryError:
        return client.error(f"build context {tag}: {message}", repo, found.digest)

    value = found.json()
    config_desc = value.get("config") if isinstance(value, Mapping) else None
    layers = value.get("layers") if isinstance(value, Mapping) else None
    if (
        not isinstance(config_desc, Mapping)
        or config_desc.get("mediaType") != CONTEXT_CONFIG
        or not isinstance(layers, list)
        or len(layers) != 1
        or not isinstance(layers[0], Mapping)
    ):
        raise bad("not a pipeline build context")
    try:
        cfg_digest, cfg_size = str(config_desc["digest"]), int(config_desc["size"])
        tar_digest, tar_size = str(layers[0]["digest"]), int(layers[0]["size"])
    except (KeyError, TypeError, ValueError):
        raise bad("a descriptor lacks its digest or size") from None
    if not is_digest(cfg_digest) or not is_digest(tar_digest):
        raise bad("a descriptor has a malformed digest")
    data = client.get_blob_bytes(repo, cfg_digest, cfg_size, MAX_CONFIG)
    try:
        doc = json.loads(data)
        rows = doc["entries"]
        if doc["content"] != content or not isinstance(rows, list):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise bad(f"its config is not {{content: {content}, entries}}") from None
    wanted = {str(r[8]) for r in rows if isinstance(r, list) and len(r) == 9 and r[8]}
    got = _extract_files(client, repo, tar_digest, tar_size, dest, bad)
    missing = {hex_of(d) for d in wanted if is_digest(d)} - got
    if missing:
        raise bad(f"its files tar lacks {len(missing)} of the files it lists")
    return [_entry_of(row, dest, bad) for row in rows]


def _extract_files(
    client: Any, repo: str, digest: str, size: int, dest: Path, bad: Any
) -> set[str]:
    got: set[str] = set()
    with client.open_blob(repo, digest, size) as reader:
        with tarfile.open(fileobj=cast(IO[bytes], reader), mode="r|") as tar:
            for member in tar:
                m = _MEMBER.fullmatch(member.name)
                if m is None or not member.isreg():
                    raise bad(f"unexpected tar member {member.name[:120]!r}")
                src = tar.extractfile(member)
                assert src is not None
                h = hashlib.sha256()
                out = dest / m.group(1)
                with open(out, "wb") as f:
                    for chunk in _chunks(src):
                        h.update(chunk)
                        f.write(chunk)
                if h.hexdigest() != m.group(1):
                    raise bad(f"member {member.name} does not hash to its name")
                got.add(m.group(1))
        reader.drain()
        if reader.digest != digest:
            raise bad(f"files tar digest mismatch: the registry sent {reader.digest}")
    return got


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    while chunk := f.read(_CHUNK):
        yield chunk


def _entry_of(row: Any, dest: Path, bad: Any) -> Entry:
    try:
        rel, kind, mode, size, target, top, source, mtime_ns, digest = row
        if kind not in ("file", "dir", "symlink"):
            raise ValueError
        path = dest / hex_of(str(digest)) if kind == "file" else dest
        return Entry(
            str(rel),
            path,
            kind,
            int(mode) & 0o7777,
            int(size),
            str(target),
            bool(top),
            str(source),
            (int(size), int(mtime_ns), 0, 0),
        )
    except (ValueError, TypeError):
        raise bad(f"malformed entry {str(row)[:120]}") from None
