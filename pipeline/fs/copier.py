"""COPY: write one fresh layer dir from source trees, with Docker's COPY semantics.

Sources are :class:`SourceTree` values, one per top-level source after wildcard
expansion, made by :func:`entry_trees` from ``pipeline.context.select`` (a build
context) or by :func:`image_trees` (``COPY --from``: paths in another image's
LayerStack). :func:`copy_step` writes them into ``layer_dir`` (overlayfs upperdir
format, see pipeline.layerstack), consulting the destination image's stack for what
already exists; nothing is mounted. :func:`run_copy` does all of it for a model step.

Safety: the layer is written only through directory fds opened with ``O_NOFOLLOW``
from ``layer_dir`` down, and entries are created with ``O_EXCL``/``mkdir``/``symlink``
relative to those fds, so no symlink (from the image, the context or the layer being
written) can make the copier write outside ``layer_dir``. Destination paths follow the
image's symlinks only within the image root (LayerStack.resolve). Source files are
opened with ``O_NOFOLLOW`` and must still be regular files when opened.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import UnsafePathError
from pipeline.fs.context import Entry, select
from pipeline.fs.contexthash import digest_entries
from pipeline.fs.copysources import (
    CopyError,
    Meta,
    Parts,
    SourceNode,
    SourceTree,
    entry_trees,
    image_trees,
)
from pipeline.fs.layerstack import LayerStack, join_parts, split_path
from pipeline.model import Copy
from pipeline.users import Ids, resolve_user

DEFAULT_DIR_MODE = 0o755
_CHUNK = 1 << 30
_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

# -- options -----------------------------------------------------------------------------


def parse_chmod(text: str, where: str) -> int:
    """Permission bits from ``text``: octal "755" or "0755" (up to 07777)."""
    if not re.fullmatch(r"[0-7]{3,4}", text.strip()):
        raise CopyError(where, f"chmod {text!r}: not an octal mode such as 755 or 0755")
    return int(text.strip(), 8)


def resolve_owner(chown: str, stack: LayerStack, where: str) -> Ids:
    """The ids for ``chown`` ("user", "user:group", "uid", "uid:gid"), names looked up
    in the destination image's /etc/passwd and /etc/group (read through ``stack``)."""

    def text(path: str) -> str:
        data = stack.read_bytes(path)
        return data.decode("utf-8", "replace") if data else ""

    try:
        return resolve_user(chown, text("/etc/passwd"), text("/etc/group"))
    except ValueError as exc:
        raise CopyError(where, f"chown {chown!r}: {exc}") from None


def dest_path(dest: str, workdir: str) -> tuple[str, bool]:
    """The absolute, lexically clean ``dest`` (relative ones against ``workdir``), and
    whether it names a directory by its spelling (trailing "/", "." or "..")."""
    if not dest.strip():
        raise CopyError(workdir or "/", "COPY needs a destination")
    as_dir = dest.endswith("/") or dest.rsplit("/", 1)[-1] in (".", "..")
    joined = dest if dest.startswith("/") else f"{workdir or '/'}/{dest}"
    return join_parts(split_path(joined)), as_dir


# -- writing the layer -------------------------------------------------------------------


def _copy_data(src: int, dst: int, digest: Any = None) -> None:
    """Copy the rest of ``src`` to ``dst`` (both at their current offsets). With
    ``digest`` (a hashlib object), through memory, hashing exactly the bytes written;
    otherwise in-kernel where possible: copy_file_range (reflinks on CoW filesystems),
    then sendfile."""
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


class _LayerWriter:
    """Creates entries below one layer dir through O_NOFOLLOW directory fds only.

    Directory metadata is recorded and applied by :meth:`finish`, after every write,
    so that writing children does not disturb a directory's mtime.
    """

    def __init__(self, layer_dir: Path, hash_files: bool = False) -> None:
        self.hash_files = hash_files
        self.digests: dict[str, str] = {}  # source host path -> sha256 of the bytes copied
        self.layer_dir = layer_dir
        self.root_fd = os.open(layer_dir, _DIR_OPEN)
        self._chain: list[tuple[str, int]] = []  # open fds for the current dir path
        self.dir_meta: dict[Parts, Meta] = {}

    def _where(self, parts: Parts) -> str:
        return join_parts(parts)

    def close(self) -> None:
        for _, fd in self._chain:
            os.close(fd)
        self._chain.clear()
        os.close(self.root_fd)

    def dir_fd(self, parts: Parts) -> int:
        """An fd for the layer directory ``parts``; missing ones are made 0755 root:root,
        a non-directory on the way is an error (never followed)."""
        keep = 0
        while keep < len(self._chain) and keep < len(parts) and self._chain[keep][0] == parts[keep]:
            keep += 1
        for _, fd in self._chain[keep:]:
            os.close(fd)
        del self._chain[keep:]
        for i in range(keep, len(parts)):
            parent = self._chain[-1][1] if self._chain else self.root_fd
            self._chain.append((parts[i], self._open_dir(parent, parts[: i + 1])))
        return self._chain[-1][1] if parts else self.root_fd

    def _open_dir(self, parent: int, parts: Parts) -> int:
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

    def _clear(self, parent: int, parts: Parts) -> None:
        """Remove whatever the layer already holds at ``parts`` (an earlier source)."""
        name = parts[-1]
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=parent)  # fd-based: does not follow symlinks
            n = len(parts)
            for key in [k for k in self.dir_meta if k[:n] == parts]:
                del self.dir_meta[key]
        else:
            os.unlink(name, dir_fd=parent)

    def make_dir(self, parts: Parts, meta: Meta) -> None:
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

    def write_file(self, parts: Parts, node: SourceNode, meta: Meta) -> None:
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

    def write_symlink(self, parts: Parts, node: SourceNode, meta: Meta) -> None:
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


def _check_name(name: str, where: str, path: str) -> None:
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise UnsafePathError(where, path, f"bad name {name!r}")
    if name.startswith(".wh."):
        raise UnsafePathError(where, path, "names starting with .wh. are reserved for whiteouts")


def _check_tree(tree: SourceTree) -> list[Parts]:
    """Each node's path below the tree as components, after checking names and types."""
    if any(node.rel == "" for node in tree.nodes[1:]):
        raise CopyError(tree.origin, "source tree has its root after other nodes")
    if not tree.is_dir:
        _check_name(tree.name, tree.origin, tree.name)
    rels: list[Parts] = []
    for node in tree.nodes:
        kind = stat.S_IFMT(node.mode)
        if kind not in (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK):
            raise CopyError(
                node.host, "unsupported file type (only files, directories, symlinks are copied)"
            )
        parts = tuple(node.rel.split("/")) if node.rel else ()
        for name in parts:
            _check_name(name, tree.origin, node.rel)
        rels.append(parts)
    return rels


def _node_meta(node: SourceNode, mode: int | None, owner: Ids | None) -> Meta:
    uid, gid = (owner.uid, owner.gid) if owner else (node.uid, node.gid)
    bits = stat.S_IMODE(node.mode) if mode is None else mode
    return (bits, uid, gid, node.mtime_ns)


def _write_node(
    writer: _LayerWriter, parts: Parts, node: SourceNode, mode: int | None, owner: Ids | None
) -> None:
    if stat.S_ISDIR(node.mode):
        writer.make_dir(parts, _node_meta(node, mode, owner))
    elif stat.S_ISLNK(node.mode):
        writer.write_symlink(parts, node, _node_meta(node, None, owner))
    else:
        writer.write_file(parts, node, _node_meta(node, mode, owner))


def _make_parents(writer: _LayerWriter, parts: Parts, stack: LayerStack) -> bool:
    """Directories ``parts`` and its ancestors in the layer: re-created with the
    stack's metadata where the image has them, else 0755 root:root. Returns whether the
    image already had ``parts``."""
    existed = True
    for i in range(1, len(parts) + 1):
        prefix = parts[:i]
        st = stack.lstat(join_parts(prefix))
        if st is None:
            existed = False
            writer.make_dir(prefix, (DEFAULT_DIR_MODE, 0, 0, None))
        elif stat.S_ISDIR(st.st_mode):
            meta = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)
            writer.make_dir(prefix, meta)
        else:
            raise CopyError(join_parts(prefix), "not a directory in the image")
    return existed


def copy_step(
    trees: Sequence[SourceTree],
    dest: str,
    layer_dir: Path,
    stack: LayerStack,
    *,
    workdir: str = "/",
    chown: str | None = None,
    chmod: str | None = None,
    source_count: int = 1,
    hash_files: bool = False,
) -> dict[str, str]:
    """Write the layer that COPYing ``trees`` to ``dest`` adds on top of ``stack``.
    With ``hash_files``, returns the sha256 of the bytes written for each file, by the
    source's host path (else an empty mapping).

    Docker semantics: a directory source copies its contents; ``dest`` is a directory
    when it ends in "/" (or is "." / ".."), when it already is a directory in the image
    (symlinks followed within the image root); several sources (more than one tree,
    or ``source_count`` > 1: the sources as written) need a "/" ending. Otherwise a
    single file or symlink source is written under the name ``dest``.
    A relative ``dest`` is taken against ``workdir``. Parent directories the image lacks
    are created 0755 root:root; those it has are re-created with its mode, owner and
    mtime, so the layer leaves them unchanged. A directory ``dest`` that the image lacks
    takes the metadata of a directory source's root node (with chown/chmod) when the
    tree has one, else it is 0755 and owned by the chown user or root. Files
    and directories keep their mode bits unless ``chmod`` ("755"/"0755") is given;
    owners are the trees' (root:root for a build context) unless ``chown`` is given,
    resolved against the image's /etc/passwd and /etc/group. Symlinks are copied as
    symlinks; hard links become separate copies. Later sources win over earlier ones.

    Not atomic: the caller passes a fresh, empty ``layer_dir`` and moves it into the
    store when this returns; on an exception the caller discards the whole dir.
    """
    target, as_dir = dest_path(dest, workdir)
    if not trees:
        raise CopyError(target, "no source files to copy")
    if (len(trees) > 1 or source_count > 1) and not as_dir:
        raise CopyError(target, 'several sources need a directory destination ending in "/"')
    rels = [_check_tree(tree) for tree in trees]
    mode = parse_chmod(chmod, target) if chmod is not None else None
    owner = resolve_owner(chown, stack, target) if chown is not None else None

    resolved = stack.resolve(target)
    st = stack.lstat(resolved)
    is_dir = st is not None and stat.S_ISDIR(st.st_mode)
    writer = _LayerWriter(layer_dir, hash_files)
    try:
        if len(trees) == 1 and not trees[0].is_dir and not as_dir and not is_dir:
            # One file or symlink under the name ``dest`` (replacing what is there).
            parts = split_path(stack.resolve(target, follow_last=False))
            if not parts:
                raise CopyError(target, "cannot write a file over /")
            for name in parts:
                _check_name(name, "COPY destination", join_parts(parts))
            _make_parents(writer, parts[:-1], stack)
            _write_node(writer, parts, trees[0].nodes[0], mode, owner)
        else:
            if st is not None and not is_dir:
                raise CopyError(resolved, "not a directory in the image")
            base = split_path(resolved)
            for name in base:
                _check_name(name, "COPY destination", resolved)
            existed = _make_parents(writer, base, stack)
            if not existed and owner is not None:
                # A destination directory made for this COPY belongs to the chown user
                # (its parents stay root's); a directory source's root may override.
                writer.make_dir(base, (DEFAULT_DIR_MODE, owner.uid, owner.gid, None))
            for tree, tree_rels in zip(trees, rels, strict=True):
                if not tree.is_dir:
                    _write_node(writer, (*base, tree.name), tree.nodes[0], mode, owner)
                    continue
                for node, rel in zip(tree.nodes, tree_rels, strict=True):
                    if rel:
                        _write_node(writer, (*base, *rel), node, mode, owner)
                    elif not existed:  # the directory source's own metadata
                        _write_node(writer, base, node, mode, owner)
        writer.finish()
        return writer.digests
    finally:
        writer.close()


def run_copy(
    step: Copy,
    layer_dir: Path,
    lower: Sequence[Path],
    from_layers: Sequence[Path] | None,
    workdir: str,
    selection: Sequence[Entry] | None = None,
) -> str | None:
    """Build the layer for ``step`` in the fresh dir ``layer_dir`` on top of the layer
    dirs ``lower`` (top-most first). ``from_layers`` are the source image's layer dirs
    (top-most first) for ``COPY --from``; otherwise the sources come from
    ``step.context`` through ``context.select`` (ignore patterns, hostile paths).
    Same contract as :func:`copy_step`.

    For a build-context COPY, returns the content digest of what was actually copied,
    in :class:`~pipeline.fs.contexthash.ContextHasher`'s format (file digests from the
    bytes as they were written), so the caller can check it against the digest the
    step was keyed by; None for ``--from``. ``selection``, when given, is what
    ``context.select`` returned for the step elsewhere (a cluster worker gets it with
    the files from the client) and is copied instead of reading ``step.context``."""
    if step.from_image is not None:
        if from_layers is None:
            raise CopyError(step.dest, f"COPY --from {step.from_image}: source image not built")
        trees = image_trees(LayerStack(from_layers), step.sources)
        selection = None
    else:
        if selection is None:
            selection = select(Path(step.context), step.sources, step.ignore)
        trees = entry_trees(selection)
    copied = copy_step(
        trees,
        step.dest,
        layer_dir,
        LayerStack(lower),
        workdir=workdir,
        chown=step.chown,
        chmod=step.chmod,
        source_count=len(step.sources),
        hash_files=selection is not None,
    )
    if selection is None:
        return None
    return digest_entries(selection, lambda entry: copied.get(str(entry.path), "not copied"))
