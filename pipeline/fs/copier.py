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

import os
import posixpath
import re
import stat
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pipeline.errors import UnsafePathError
from pipeline.fs import addtar
from pipeline.fs.context import Entry, looks_like_archive, select
from pipeline.fs.contexthash import digest_entries
from pipeline.fs.layerstack import LayerStack, LayerStackError, join_parts, split_path
from pipeline.fs.layerwriter import DEFAULT_DIR_MODE, CopyError, LayerWriter, Meta
from pipeline.fs.patterns import glob_regex, is_glob
from pipeline.model import Copy
from pipeline.users import Ids, resolve_user

_Parts = tuple[str, ...]


class ContextEntry(Protocol):
    """What the copier reads of a ``pipeline.context.Entry`` (see ``context.select``)."""

    @property
    def rel(self) -> str: ...
    @property
    def path(self) -> Path: ...
    @property
    def kind(self) -> str: ...  # "file" | "dir" | "symlink"
    @property
    def mode(self) -> int: ...  # permission bits
    @property
    def target(self) -> str: ...
    @property
    def top(self) -> bool: ...
    @property
    def source(self) -> str: ...


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


# -- sources -----------------------------------------------------------------------------

_KINDS = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK}


def _entry_node(entry: ContextEntry, rel: str) -> SourceNode:
    try:
        kind = _KINDS[entry.kind]
    except KeyError:
        raise CopyError(str(entry.path), f"unsupported entry kind {entry.kind!r}") from None
    stat_key = getattr(entry, "stat_key", None)
    mtime_ns = stat_key[1] if stat_key and stat_key[1] else None
    return SourceNode(
        rel, kind | stat.S_IMODE(entry.mode), 0, 0, mtime_ns, str(entry.path), entry.target
    )


def entry_trees(entries: Sequence[ContextEntry]) -> list[SourceTree]:
    """Source trees for what ``context.select`` returned for one COPY (owners
    root:root). A ``top`` entry (a file source) is a file tree; each run of other
    entries from one source is a directory tree without a root node. No entries at
    all (an empty directory was selected) is one empty directory tree."""
    trees: list[SourceTree] = []
    run: list[SourceNode] = []
    run_source: str | None = None

    def flush() -> None:
        nonlocal run, run_source
        if run_source is not None:
            trees.append(SourceTree("", run_source, tuple(run)))
        run, run_source = [], None

    for entry in entries:
        if entry.top:
            flush()
            trees.append(SourceTree(entry.rel, entry.source, (_entry_node(entry, ""),)))
            continue
        if run_source is not None and entry.source != run_source:
            flush()
        run_source = entry.source
        run.append(_entry_node(entry, entry.rel))
    flush()
    return trees or [SourceTree("", "", ())]


def _expand(parts: _Parts, children: Callable[[_Parts], list[str]]) -> list[_Parts]:
    """Every path matching ``parts``, whose components may be globs in Go
    ``filepath.Match`` style (one component each, as ``context.glob_regex``), sorted."""
    found: list[_Parts] = [()]
    wild = False
    for pattern in parts:
        if is_glob(pattern):
            wild = True
            rx = glob_regex(pattern)
            found = [(*p, n) for p in found for n in children(p) if rx.fullmatch(n)]
        elif wild:
            found = [(*p, pattern) for p in found if pattern in children(p)]
        else:
            found = [(*p, pattern) for p in found]
    return sorted(found)


def image_trees(stack: LayerStack, sources: Sequence[str]) -> list[SourceTree]:
    """Source trees for ``sources``: paths in the image ``stack`` (``COPY --from``),
    relative ones from ``/``, globs allowed. Symlinks on the way are followed within
    that image's root; a symlink that is the source itself is copied as a symlink
    (unless written with a trailing "/", which names the directory it points to).
    Owners are kept (as BuildKit does for ``--from``) unless the COPY has a chown."""

    def children(parts: _Parts) -> list[str]:
        try:
            return stack.listdir(stack.resolve(join_parts(parts)))
        except LayerStackError:
            return []

    trees: list[SourceTree] = []
    for source in sources:
        parts = split_path(source)
        wild = any(is_glob(p) for p in parts)
        if wild:
            try:
                matches = _expand(parts, children)
            except ValueError as exc:
                raise CopyError(source, str(exc)) from None
            if not matches:
                raise CopyError(source, "no source files match in the source image")
        else:
            matches = [parts]
        for match in matches:
            # "link/" names the directory the link points to, as in POSIX.
            follow = source.endswith(("/", "/.")) and not wild
            path = stack.resolve(join_parts(match), follow_last=follow)
            try:
                entries = list(stack.walk(path))
            except LayerStackError:
                raise CopyError(path, "no such file or directory in the source image") from None
            nodes = tuple(
                SourceNode.of(
                    e.path[len(path) :].lstrip("/"), e.stat, os.fspath(e.host), keep_owner=True
                )
                for e in entries
            )
            trees.append(SourceTree(posixpath.basename(path), path, nodes))
    return trees


# -- options -----------------------------------------------------------------------------


def inline_trees(files: Sequence[tuple[str, str]], tmp: Path) -> list[SourceTree]:
    """One file tree per heredoc ``(name, content)``: 0644 root:root, written into the
    private directory ``tmp`` to be copied from there."""
    trees = []
    for n, (name, content) in enumerate(files):
        _check_name(name, "heredoc", name)
        host = tmp / str(n)
        host.write_text(content, encoding="utf-8")
        node = SourceNode("", stat.S_IFREG | 0o644, 0, 0, None, str(host))
        trees.append(SourceTree(name, f"heredoc {name}", (node,)))
    return trees


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

    if chown.strip().isdigit():  # a uid alone: BuildKit gives gid = uid
        return Ids(int(chown), int(chown))
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


def _check_name(name: str, where: str, path: str) -> None:
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise UnsafePathError(where, path, f"bad name {name!r}")
    if name.startswith(".wh."):
        raise UnsafePathError(where, path, "names starting with .wh. are reserved for whiteouts")


def _check_tree(tree: SourceTree) -> list[_Parts]:
    """Each node's path below the tree as components, after checking names and types."""
    if any(node.rel == "" for node in tree.nodes[1:]):
        raise CopyError(tree.origin, "source tree has its root after other nodes")
    if not tree.is_dir:
        _check_name(tree.name, tree.origin, tree.name)
    rels: list[_Parts] = []
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
    writer: LayerWriter, parts: _Parts, node: SourceNode, mode: int | None, owner: Ids | None
) -> None:
    if stat.S_ISDIR(node.mode):
        writer.make_dir(parts, _node_meta(node, mode, owner))
    elif stat.S_ISLNK(node.mode):
        writer.write_symlink(parts, node, _node_meta(node, None, owner))
    else:
        writer.write_file(parts, node, _node_meta(node, mode, owner))


def _make_parents(
    writer: LayerWriter, parts: _Parts, stack: LayerStack, owner: Ids | None = None
) -> bool:
    """Directories ``parts`` and its ancestors in the layer: re-created with the
    stack's metadata where the image has them, else 0755 owned by ``owner`` (root when
    None). Returns whether the image already had ``parts``."""
    existed = True
    uid, gid = (owner.uid, owner.gid) if owner else (0, 0)
    for i in range(1, len(parts) + 1):
        prefix = parts[:i]
        st = stack.lstat(join_parts(prefix))
        if st is None:
            existed = False
            writer.make_dir(prefix, (DEFAULT_DIR_MODE, uid, gid, None))
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
    (the destination directory too) are created 0755, owned by the chown user or root
    (never taking a directory source's own mode or owner, as BuildKit does); those it
    has are re-created with its mode, owner and mtime, so the layer leaves them
    unchanged. Files
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
    writer = LayerWriter(layer_dir, hash_files)
    try:
        if len(trees) == 1 and not trees[0].is_dir and not as_dir and not is_dir:
            # One file or symlink under the name ``dest`` (replacing what is there).
            parts = split_path(stack.resolve(target, follow_last=False))
            if not parts:
                raise CopyError(target, "cannot write a file over /")
            for name in parts:
                _check_name(name, "COPY destination", join_parts(parts))
            _make_parents(writer, parts[:-1], stack, owner)
            _write_node(writer, parts, trees[0].nodes[0], mode, owner)
        else:
            if st is not None and not is_dir:
                raise CopyError(resolved, "not a directory in the image")
            base = split_path(resolved)
            for name in base:
                _check_name(name, "COPY destination", resolved)
            # Directories made for this COPY (the destination and its missing parents)
            # are 0755 and belong to the chown user, whatever the source directory's
            # own mode and owner (as BuildKit does).
            _make_parents(writer, base, stack, owner)
            for tree, tree_rels in zip(trees, rels, strict=True):
                if not tree.is_dir:
                    _write_node(writer, (*base, tree.name), tree.nodes[0], mode, owner)
                    continue
                for node, rel in zip(tree.nodes, tree_rels, strict=True):
                    if rel:
                        _write_node(writer, (*base, *rel), node, mode, owner)
        writer.finish()
        return writer.digests
    finally:
        writer.close()


def make_workdir(
    path: str, layer_dir: Path, stack: LayerStack, *, workdir: str = "/", user: str = ""
) -> None:
    """The layer WORKDIR ``path`` adds (BuildKit's mkdir -p): directories the image
    lacks are created 0755, owned by ``user`` (resolved in the image; root when
    empty); those it has are re-created unchanged. Same contract as :func:`copy_step`."""
    target, _ = dest_path(path, workdir)
    owner = resolve_owner(user, stack, target) if user else None
    uid, gid = (owner.uid, owner.gid) if owner else (0, 0)
    parts = split_path(stack.resolve(target))
    writer = LayerWriter(layer_dir, False)
    try:
        for i in range(1, len(parts) + 1):
            prefix = parts[:i]
            _check_name(prefix[-1], "WORKDIR", join_parts(parts))
            st = stack.lstat(join_parts(prefix))
            if st is None:
                writer.make_dir(prefix, (DEFAULT_DIR_MODE, uid, gid, None))
            elif stat.S_ISDIR(st.st_mode):
                meta = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)
                writer.make_dir(prefix, meta)
            else:
                raise CopyError(join_parts(prefix), "WORKDIR: not a directory in the image")
        writer.finish()
    finally:
        writer.close()


def _add_step(
    step: Copy, layer_dir: Path, stack: LayerStack, workdir: str, selection: Sequence[Entry]
) -> str:
    """ADD from the build context: local tar archives (top-level file sources that are
    archives) are unpacked into ``dest`` (always a directory), the rest copied as COPY
    does, first. Returns the content digest, as :func:`run_copy` does."""
    archives = [e for e in selection if e.top and e.kind == "file" and looks_like_archive(e.path)]
    others = [e for e in selection if e not in archives]
    copied: dict[str, str] = {}
    if others:
        copied = copy_step(
            entry_trees(others),
            step.dest,
            layer_dir,
            stack,
            workdir=workdir,
            chown=step.chown,
            chmod=step.chmod,
            source_count=len(step.sources),
            hash_files=True,
        )
    if archives:
        target, _ = dest_path(step.dest, workdir)
        owner = resolve_owner(step.chown, stack, target) if step.chown is not None else None
        resolved = stack.resolve(target)
        base = split_path(resolved)
        for name in base:
            _check_name(name, "ADD destination", resolved)
        writer = LayerWriter(layer_dir, False)
        try:
            _make_parents(writer, base, stack, owner)
            writer.finish()
        finally:
            writer.close()
        dest_dir = layer_dir.joinpath(*base)
        for entry in archives:
            copied[str(entry.path)] = addtar.file_digest(entry.path)
            addtar.unpack(entry.path, dest_dir, f"ADD {entry.source}")
    return digest_entries(selection, lambda entry: copied.get(str(entry.path), "not copied"))


def run_copy(
    step: Copy,
    layer_dir: Path,
    lower: Sequence[Path],
    from_layers: Sequence[Path] | None,
    workdir: str,
    selection: Sequence[Entry] | None = None,
    *,
    user: str = "",
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
    the files from the client) and is copied instead of reading ``step.context``.
    A step without sources is WORKDIR's: :func:`make_workdir` (``user`` owns what it
    creates)."""
    if not step.sources and step.from_image is None:
        make_workdir(step.dest, layer_dir, LayerStack(lower), workdir=workdir, user=user)
        return None
    if step.inline:
        with tempfile.TemporaryDirectory(dir=layer_dir.parent, prefix="heredoc-") as tmp:
            copy_step(
                inline_trees(step.inline, Path(tmp)),
                step.dest,
                layer_dir,
                LayerStack(lower),
                workdir=workdir,
                chown=step.chown,
                chmod=step.chmod,
                source_count=len(step.sources),
            )
        return None
    if step.from_image is not None:
        if from_layers is None:
            raise CopyError(step.dest, f"COPY --from {step.from_image}: source image not built")
        trees = image_trees(LayerStack(from_layers), step.sources)
        selection = None
    else:
        if selection is None:
            selection = select(Path(step.context), step.sources, step.ignore)
        if step.unpack:
            return _add_step(step, layer_dir, LayerStack(lower), workdir, selection)
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
