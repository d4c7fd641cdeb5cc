"""The COPY layer writer: creates entries below one fresh layer directory through
``O_NOFOLLOW`` directory fds only (see :mod:`pipeline.fs.copier` for the semantics).

At most a bounded number of directory fds are open at once, however deep the tree,
and removing an earlier source's directory is iterative (:mod:`pipeline.fs.tree`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import PipelineError
from pipeline.fs.layerstack import join_parts
from pipeline.fs.tree import fd_budget, remove_tree_at

if TYPE_CHECKING:
    from pipeline.fs.copysource import SourceNode

DEFAULT_DIR_MODE = 0o755
_CHUNK = 1 << 30
_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FD_CACHE = 32

_Parts = tuple[str, ...]
Meta = tuple[int, int, int, int | None]  # mode bits, uid, gid, mtime_ns (None: leave)


class CopyError(PipelineError):
    """A COPY cannot be done as asked (missing source, file where a dir is needed, ...)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def _copy_data(src: int, dst: int, digest: Any = None) -> None:
    """Copy the rest of ``src`` to ``dst`` (both at their current offsets). With
    ``digest`` (a hashlib object), through memory in 1 MiB chunks, hashing exactly the
    bytes written; otherwise in-kernel where possible: copy_file_range (reflinks on CoW
    filesystems), then sendfile."""
    if digest is not None:
        while data := os.read(src, 1 << 20):
            digest.update(data)
            view = memoryview(data)
            while view:
                view = view[os.write(dst, view) :]
        return
    try:
        while os.copy_file_range(src, dst, _CHUNK):
            pass
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    try:
        while os.sendfile(dst, src, None, _CHUNK):
            pass
        return
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOSYS):
            raise
    while data := os.read(src, 1 << 20):
        view = memoryview(data)
        while view:
            view = view[os.write(dst, view) :]


class LayerWriter:
    """Creates entries below one layer dir through O_NOFOLLOW directory fds only.

    Directory metadata is recorded and applied by :meth:`finish`, after every write,
    so that writing children does not disturb a directory's mtime.
    """

    def __init__(self, layer_dir: Path, hash_files: bool = False) -> None:
        """With ``hash_files``, :attr:`digests` maps each copied file's source host path
        to the ``sha256:`` of the bytes written for it."""
        self.hash_files = hash_files
        self.digests: dict[str, str] = {}
        self.layer_dir = layer_dir
        self.root_fd = os.open(layer_dir, _DIR_OPEN)
        # open fds of recently used dirs, bounded: a deep tree never holds one per level
        self._fds: OrderedDict[_Parts, int] = OrderedDict()
        self._fd_cache = fd_budget(_FD_CACHE)
        self.dir_meta: dict[_Parts, Meta] = {}

    def _where(self, parts: _Parts) -> str:
        return join_parts(parts)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        os.close(self.root_fd)

    def dir_fd(self, parts: _Parts) -> int:
        """An fd for the layer directory ``parts`` (borrowed: valid until the next
        call); missing ones are made 0755 root:root, a non-directory on the way is an
        error (never followed). Walks down from the deepest cached ancestor."""
        if not parts:
            return self.root_fd
        fd = self._fds.get(parts)
        if fd is not None:
            self._fds.move_to_end(parts)
            return fd
        depth = len(parts) - 1
        while depth > 0 and parts[:depth] not in self._fds:
            depth -= 1
        parent = self._fds[parts[:depth]] if depth else self.root_fd
        owned = -1
        try:
            for i in range(depth, len(parts)):
                fd = self._open_dir(parent, parts[: i + 1])
                if owned >= 0:
                    os.close(owned)
                owned = parent = fd
            self._fds[parts] = owned
            owned = -1
            while len(self._fds) > self._fd_cache:
                os.close(self._fds.popitem(last=False)[1])
            return parent
        finally:
            if owned >= 0:
                os.close(owned)

    def _forget(self, parts: _Parts) -> None:
        n = len(parts)
        for key in [k for k in self._fds if k[:n] == parts]:
            os.close(self._fds.pop(key))

    def _open_dir(self, parent: int, parts: _Parts) -> int:
        name = parts[-1]
        try:
            return os.open(name, _DIR_OPEN, dir_fd=parent)
        except FileNotFoundError:
            os.mkdir(name, 0o700, dir_fd=parent)
            self.dir_meta.setdefault(parts, (DEFAULT_DIR_MODE, 0, 0, None))
            return os.open(name, _DIR_OPEN, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise CopyError(
                    self._where(parts), "is not a directory in the layer being written"
                ) from None
            raise

    def _clear(self, parent: int, parts: _Parts) -> None:
        """Remove whatever the layer already holds at ``parts`` (an earlier source)."""
        name = parts[-1]
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            self._forget(parts)
            remove_tree_at(parent, name)  # fd-based and iterative: never follows symlinks
            n = len(parts)
            for key in [k for k in self.dir_meta if k[:n] == parts]:
                del self.dir_meta[key]
        else:
            os.unlink(name, dir_fd=parent)

    def make_dir(self, parts: _Parts, meta: Meta) -> None:
        """A directory at ``parts`` (merged with one already written), given ``meta``."""
        if not parts:
            return  # the layer root keeps its own metadata
        parent = self.dir_fd(parts[:-1])
        name = parts[-1]
        try:
            os.mkdir(name, 0o700, dir_fd=parent)
        except FileExistsError:
            if not stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
                os.unlink(name, dir_fd=parent)
                os.mkdir(name, 0o700, dir_fd=parent)
        self.dir_meta[parts] = meta

    def write_file(self, parts: _Parts, node: SourceNode, meta: Meta) -> None:
        parent = self.dir_fd(parts[:-1])
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            src = os.open(node.host, flags)
        except OSError as exc:
            raise CopyError(node.host, f"cannot open source: {exc.strerror}") from None
        try:
            if not stat.S_ISREG(os.fstat(src).st_mode):
                raise CopyError(node.host, "source is no longer a regular file")
            create = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                dst = os.open(parts[-1], create, 0o600, dir_fd=parent)
            except FileExistsError:  # an earlier source wrote this path: later wins
                self._clear(parent, parts)
                dst = os.open(parts[-1], create, 0o600, dir_fd=parent)
            try:
                digest = hashlib.sha256() if self.hash_files else None
                _copy_data(src, dst, digest)
                if digest is not None:
                    self.digests[node.host] = "sha256:" + digest.hexdigest()
                mode, uid, gid, mtime_ns = meta
                os.fchown(dst, uid, gid)  # before chmod: chown clears set-id bits
                os.fchmod(dst, mode)
                if mtime_ns is not None:
                    os.utime(dst, ns=(mtime_ns, mtime_ns))
            finally:
                os.close(dst)
        finally:
            os.close(src)

    def write_symlink(self, parts: _Parts, node: SourceNode, meta: Meta) -> None:
        target = node.target
        if not target:
            raise CopyError(node.host, "symlink without a target")
        parent = self.dir_fd(parts[:-1])
        name = parts[-1]
        try:
            os.symlink(target, name, dir_fd=parent)
        except FileExistsError:  # an earlier source wrote this path: later wins
            self._clear(parent, parts)
            os.symlink(target, name, dir_fd=parent)
        _, uid, gid, mtime_ns = meta
        os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
        if mtime_ns is not None:
            os.utime(name, ns=(mtime_ns, mtime_ns), dir_fd=parent, follow_symlinks=False)

    def finish(self) -> None:
        """Apply the recorded directory metadata, deepest first."""
        for parts in sorted(self.dir_meta, key=len, reverse=True):
            mode, uid, gid, mtime_ns = self.dir_meta[parts]
            fd = self.dir_fd(parts)
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            if mtime_ns is not None:
                os.utime(fd, ns=(mtime_ns, mtime_ns))
