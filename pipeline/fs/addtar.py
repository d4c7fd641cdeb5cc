"""ADD of a local tar archive: unpacked into the layer being written, as Docker does.

The archive (plain, gzip, bzip2 or xz) goes through the layer extractor
(:func:`pipeline.fs.extract.extract_layer`), so every member path is hostile and
nothing is written outside the destination directory; owners, modes, xattrs,
symlinks and hard links are kept. Writes only below ``dest_dir``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pipeline.fs.extract import extract_layer

_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    """``sha256:...`` of a file's bytes (what the context digest keyed the step by)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def unpack(archive: Path, dest_dir: Path, where: str) -> None:
    """Unpack ``archive`` into the existing directory ``dest_dir`` (entries there are
    replaced by the archive's), owners kept: BuildKit's ADD --chown does not apply to
    an archive's entries. Not atomic: the caller discards the layer on an exception."""
    with archive.open("rb") as stream:
        extract_layer(stream, dest_dir, where, add=True)
