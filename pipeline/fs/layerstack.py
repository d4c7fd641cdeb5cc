"""Read-only views over a stack of layer directories (overlayfs upperdir format).

A layer dir holds what one step changed. A deleted path is a character device 0:0 with
that name (a whiteout); a directory with the xattr ``trusted.overlay.opaque=y`` hides
everything below it in lower layers. An image's filesystem is its stack of layer dirs,
top-most first, merged the way overlayfs merges them:

* the top-most entry for a path wins; a whiteout there means "absent";
* a directory merges with the directories at the same path in lower layers, down to
  (and including) the first opaque one, and stops at a lower whiteout or non-directory;
* a non-directory hides everything below it.

Contracts: this module never writes and never follows a host symlink inside a layer
dir (every host path it touches is reached through components it has seen to be real
directories). Image paths are strings, absolute inside the image (a relative one is
taken from ``/``). The layer dirs must not change while a view is in use (store layers
are immutable), since directory merges are memoised.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError

OPAQUE_XATTR = "trusted.overlay.opaque"
MAX_SYMLINKS = 40  # as Linux's MAXSYMLINKS: more links than this on one path is ELOOP
READ_LIMIT = 16 * 1024 * 1024

_Parts = tuple[str, ...]
_Found = tuple[int, os.stat_result]  # (layer index, lstat of the entry in that layer)


class LayerStackError(PipelineError):
    """A path in a layer stack is missing, of the wrong kind, or unreadable."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class SymlinkLoopError(LayerStackError):
    """Resolving an image path met more than MAX_SYMLINKS symlinks."""

    def __init__(self, path: str) -> None:
        super().__init__(path, f"too many levels of symbolic links (more than {MAX_SYMLINKS})")


@dataclass(frozen=True, slots=True)
class StackEntry:
    """A visible entry of the merged view.

    ``path`` is absolute in the image, ``stat`` the lstat of the entry (never followed),
    ``host`` the file inside the layer dir that provides it (for directories: the
    top-most layer's copy, whose metadata is the merged one).
    """

    path: str
    stat: os.stat_result
    host: Path


def is_whiteout(st: os.stat_result) -> bool:
    """True for an overlay whiteout: a character device with device number 0:0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(host: str) -> bool:
    """True when the directory at ``host`` carries ``trusted.overlay.opaque=y``."""
    try:
        return os.getxattr(host, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def split_path(path: str) -> _Parts:
    """Lexically normalised components of an image path (``..`` stops at ``/``)."""
    parts: list[str] = []
    for name in path.split("/"):
        if name in ("", "."):
            continue
        if name == "..":
            if parts:
                parts.pop()
            continue
        parts.append(name)
    return tuple(parts)


def join_parts(parts: _Parts) -> str:
    """The absolute image path of ``parts``."""
    return "/" + "/".join(parts)


class LayerStack:
    """The merged, read-only view of layer dirs given top-most first.

    An empty stack is the empty image (``scratch``): nothing exists in it.
    Methods that take a path use it literally (no symlink in it is followed) unless
    they say otherwise; use :meth:`resolve` first to follow the image's symlinks.
    """

    def __init__(self, layers: Sequence[Path]) -> None:
        self._layers = tuple(Path(p) for p in layers)
        self._roots = tuple(os.fspath(p) for p in self._layers)
        self._dirs: dict[_Parts, tuple[int, ...]] = {(): tuple(range(len(self._layers)))}

    @property
    def layers(self) -> tuple[Path, ...]:
        """The layer dirs, top-most first."""
        return self._layers

    def __repr__(self) -> str:
        return f"LayerStack({[str(p) for p in self._layers]!r})"

    # -- core lookups -------------------------------------------------------------

    def _host(self, index: int, parts: _Parts) -> str:
        return os.path.join(self._roots[index], *parts) if parts else self._roots[index]

    def _lstat(self, index: int, parts: _Parts) -> os.stat_result | None:
        try:
            return os.lstat(self._host(index, parts))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _merge(self, parts: _Parts, found: Sequence[_Found]) -> tuple[int, ...]:
        """Layers whose directory at ``parts`` takes part in the merged directory, given
        the entries at ``parts`` in the live layers of its parent, top-most first."""
        live: list[int] = []
        for index, st in found:
            if not stat.S_ISDIR(st.st_mode):
                break  # a whiteout or non-directory hides all below it
            live.append(index)
            if is_opaque(self._host(index, parts)):
                break
        return tuple(live)

    def _dir_layers(self, parts: _Parts) -> tuple[int, ...]:
        """Layers holding the merged directory ``parts`` (empty: not a directory)."""
        cached = self._dirs.get(parts)
        if cached is not None:
            return cached
        found = []
        for index in self._dir_layers(parts[:-1]):
            st = self._lstat(index, parts)
            if st is not None:
                found.append((index, st))
        live = self._merge(parts, found)
        self._dirs[parts] = live
        return live

    def _find(self, parts: _Parts) -> _Found | None:
        """The visible entry at ``parts``: (layer index, lstat), or None."""
        if not parts:
            return (0, os.lstat(self._roots[0])) if self._roots else None
        for index in self._dir_layers(parts[:-1]):
            st = self._lstat(index, parts)
            if st is None:
                continue
            return None if is_whiteout(st) else (index, st)
        return None

    def _children(self, parts: _Parts, live: Sequence[int]) -> dict[str, list[_Found]]:
        """For each name in the merged directory, its entries top-most first (whiteouts
        included, entries below a whiteout or non-directory left in: callers stop)."""
        names: dict[str, list[_Found]] = {}
        for index in live:
            with os.scandir(self._host(index, parts)) as it:
                for entry in it:
                    names.setdefault(entry.name, []).append(
                        (index, entry.stat(follow_symlinks=False))
                    )
        return names

    # -- public API ---------------------------------------------------------------

    def lstat(self, path: str) -> os.stat_result | None:
        """The lstat of the visible entry at ``path`` (taken literally), or None."""
        found = self._find(split_path(path))
        return found[1] if found else None

    def host_path(self, path: str) -> Path | None:
        """The file inside a layer dir that provides the visible entry at ``path``."""
        parts = split_path(path)
        found = self._find(parts)
        return Path(self._host(found[0], parts)) if found else None

    def readlink(self, path: str) -> str:
        """The target of the symlink at ``path`` (taken literally), as stored."""
        parts = split_path(path)
        found = self._find(parts)
        if found is None or not stat.S_ISLNK(found[1].st_mode):
            raise LayerStackError(join_parts(parts), "not a symbolic link in the image")
        return os.readlink(self._host(found[0], parts))

    def resolve(self, path: str, follow_last: bool = True) -> str:
        """``path`` with the image's symlinks followed as inside a chroot at the root.

        Absolute link targets start again at the image root, ``..`` never climbs above
        ``/``, missing components are kept as written (so the result may not exist).
        With ``follow_last=False`` a symlink in the last component is kept. The result
        is absolute and normalised; raises SymlinkLoopError after MAX_SYMLINKS links.
        """
        todo = [p for p in reversed(path.split("/")) if p not in ("", ".")]
        done: list[str] = []
        links = 0
        while todo:
            name = todo.pop()
            if name == "..":
                if done:
                    done.pop()
                continue
            here = (*done, name)
            if todo or follow_last:
                found = self._find(here)
                if found is not None and stat.S_ISLNK(found[1].st_mode):
                    links += 1
                    if links > MAX_SYMLINKS:
                        raise SymlinkLoopError(path)
                    target = os.readlink(self._host(found[0], here))
                    if target.startswith("/"):
                        done = []
                    todo.extend(p for p in reversed(target.split("/")) if p not in ("", "."))
                    continue
            done.append(name)
        return join_parts(tuple(done))

    def read_bytes(self, path: str, limit: int = READ_LIMIT) -> bytes | None:
        """The bytes of the regular file at ``path`` (symlinks followed within the
        image), or None when nothing is there. For small files such as /etc/passwd;
        more than ``limit`` bytes, or a non-regular file, raises LayerStackError."""
        resolved = self.resolve(path)
        parts = split_path(resolved)
        found = self._find(parts)
        if found is None:
            return None
        if not stat.S_ISREG(found[1].st_mode):
            raise LayerStackError(resolved, "not a regular file in the image")
        fd = os.open(self._host(found[0], parts), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise LayerStackError(resolved, f"larger than {limit} bytes")
        return data

    def listdir(self, path: str) -> list[str]:
        """Sorted names in the merged directory at ``path`` (taken literally)."""
        parts = split_path(path)
        live = self._dir_layers(parts)
        if not live:
            reason = "not a directory" if self._find(parts) else "no such directory"
            raise LayerStackError(join_parts(parts), f"{reason} in the image")
        children = self._children(parts, live)
        return sorted(name for name, found in children.items() if not is_whiteout(found[0][1]))

    def walk(self, path: str) -> Iterator[StackEntry]:
        """The merged tree at ``path`` (taken literally; a symlink there is yielded, not
        followed): the entry itself first, then its descendants depth-first with
        names sorted, parents before children. Whiteouts are never yielded."""
        parts = split_path(path)
        found = self._find(parts)
        if found is None:
            raise LayerStackError(join_parts(parts), "no such file or directory in the image")
        yield StackEntry(join_parts(parts), found[1], Path(self._host(found[0], parts)))
        if stat.S_ISDIR(found[1].st_mode):
            yield from self._walk_below(parts, self._dir_layers(parts))

    def _walk_below(self, parts: _Parts, live: tuple[int, ...]) -> Iterator[StackEntry]:
        # Iterative depth-first walk: a hostile image may nest deeper than Python recursion.
        pending = [self._sorted_children(parts, live)]
        while pending:
            try:
                child, found = next(pending[-1])
            except StopIteration:
                pending.pop()
                continue
            index, st = found[0]
            yield StackEntry(join_parts(child), st, Path(self._host(index, child)))
            if stat.S_ISDIR(st.st_mode):
                pending.append(self._sorted_children(child, self._merge(child, found)))

    def _sorted_children(
        self, parts: _Parts, live: Sequence[int]
    ) -> Iterator[tuple[_Parts, list[_Found]]]:
        children = self._children(parts, live)
        for name in sorted(children):
            found = children[name]
            if not is_whiteout(found[0][1]):
                yield (*parts, name), found
