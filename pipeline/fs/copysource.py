"""What a COPY copies: each selected file, directory or symlink (``SourceNode``) and
the top-level sources they belong to (``SourceTree``). Plain values; reading a symlink's
target in ``SourceNode.of`` is the only effect."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SourceNode:
    """One file, directory or symlink to copy, as it was selected (never followed).

    ``rel`` is its "/"-separated path below the top-level source ("" for the top-level
    object itself); ``mode`` is a full st_mode (type and permission bits); ``host`` is
    the host path holding its bytes (regular file); ``target`` is a symlink's link text
    as selected. ``uid``/``gid`` are the owner the copy gets when there is no chown;
    ``mtime_ns`` None leaves the time of writing.
    """

    rel: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int | None
    host: str
    target: str = ""

    @classmethod
    def of(cls, rel: str, st: os.stat_result, host: str, keep_owner: bool) -> SourceNode:
        """The node for ``st`` (an lstat of ``host``); owner root:root unless
        ``keep_owner``. Reads a symlink's target."""
        uid, gid = (st.st_uid, st.st_gid) if keep_owner else (0, 0)
        target = os.readlink(host) if stat.S_ISLNK(st.st_mode) else ""
        return cls(rel, st.st_mode, uid, gid, st.st_mtime_ns, host, target)


@dataclass(frozen=True, slots=True)
class SourceTree:
    """One top-level COPY source, its nodes parents before children.

    When ``nodes[0].rel`` is "" it is the source itself: a file or symlink source has
    just that node; a directory source has it, then its contents. A directory tree may
    also come without a root node (``context.select`` does not report the directory
    itself, and an empty directory gives no nodes at all): then a destination
    directory the image lacks is created 0755 root:root. ``name`` is the name a file
    source gets inside a directory destination; ``origin`` names the source in messages.
    """

    name: str
    origin: str
    nodes: tuple[SourceNode, ...]

    @property
    def is_dir(self) -> bool:
        return not self.nodes or self.nodes[0].rel != "" or stat.S_ISDIR(self.nodes[0].mode)

    @property
    def root(self) -> SourceNode | None:
        return self.nodes[0] if self.nodes and self.nodes[0].rel == "" else None


__all__ = ["SourceNode", "SourceTree"]
