"""``pipeline verify``: are the stored layers reproducible?

The apps' layers are rebuilt from scratch in a scratch store that holds only the same
bases (their layer directories hard-linked, their manifest and config blobs copied),
and each layer's diff_id is compared with the one the store recorded for the same
cache key, bottom first. For the first layer that differs, the two layer directories
are compared path by path on what the layer tar records: presence, kind, content (or
symlink target), permission bits, owner, group, mtime (clamped to the epoch, as the
tar is) and kept xattrs.

Contracts:

* The user's store gains nothing and loses nothing: the scratch store lives in one of
  its staging directories and is removed when verify ends (also on Ctrl-C).
* Every layer to verify must be in the store already (UsageError naming the first
  missing one); verify does not build the store's side.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.digest import as_digest
from pipeline.errors import PipelineError, UsageError
from pipeline.fs.tarformat import keep_xattr
from pipeline.graph import BuildGraph
from pipeline.oci.manifest import Blob, Descriptor
from pipeline.store import Store

if TYPE_CHECKING:
    from pipeline.build.executor import BuildOptions, BuildResult, Reporter

FILES_SHOWN = 20


@dataclass(frozen=True)
class FileDiff:
    """One path whose tar entry differs; ``attributes`` name what differs."""

    path: str
    attributes: tuple[str, ...]


@dataclass(frozen=True)
class LayerDiff:
    position: int  # in the app's chain; 0 is the base
    key: str
    label: str
    stored: str  # diff_id in the store
    rebuilt: str  # diff_id of the rebuild
    files: tuple[FileDiff, ...] = ()


@dataclass(frozen=True)
class AppVerdict:
    app: str
    layers: int  # layers compared (the base's excluded)
    differing: tuple[LayerDiff, ...] = ()  # bottom first; files listed for the first only

    @property
    def ok(self) -> bool:
        return not self.differing


@dataclass(frozen=True)
class VerifyReport:
    apps: tuple[AppVerdict, ...]
    seconds: float
    layers_rebuilt: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.apps)


class NotReproducible(PipelineError):
    """Some layer rebuilt to other bytes. Exit status 1."""


# -- comparing two layer directories --------------------------------------------------------

_Facts = dict[str, object]


def _facts(path: Path, st: os.stat_result, epoch: int) -> _Facts:
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        kind, content = "dir", ""
    elif stat.S_ISREG(mode):
        kind, content = "file", _sha256(path)
    elif stat.S_ISLNK(mode):
        kind, content = "symlink", os.readlink(path)
    elif stat.S_ISCHR(mode) and st.st_rdev == 0:
        kind, content = "whiteout", ""
    else:
        kind, content = "special", f"{stat.S_IFMT(mode):o}:{st.st_rdev}"
    try:
        names = sorted(n for n in os.listxattr(path, follow_symlinks=False) if keep_xattr(n))
        xattrs = tuple((n, os.getxattr(path, n, follow_symlinks=False)) for n in names)
        opaque = os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        xattrs, opaque = (), False
    return {
        "kind": kind,
        "content" if kind != "symlink" else "target": content,
        "mode": stat.S_IMODE(mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "mtime": min(int(st.st_mtime), epoch),
        "xattrs": xattrs,
        "opaque": opaque,
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _walk(root: Path, epoch: int) -> dict[str, _Facts]:
    out: dict[str, _Facts] = {}
    stack = [root]
    while stack:
        top = stack.pop()
        with os.scandir(top) as it:
            for entry in it:
                path = Path(entry.path)
                st = entry.stat(follow_symlinks=False)
                out[path.relative_to(root).as_posix()] = _facts(path, st, epoch)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(path)
    return out


def diff_layer_dirs(stored: Path, rebuilt: Path, epoch: int = 0) -> tuple[FileDiff, ...]:
    """The paths whose tar entries differ between two layer directories, sorted."""
    a, b = _walk(stored, epoch), _walk(rebuilt, epoch)
    out = []
    for path in sorted(set(a) | set(b)):
        if path not in b:
            out.append(FileDiff(path, ("only in the stored layer",)))
        elif path not in a:
            out.append(FileDiff(path, ("only in the rebuilt layer",)))
        elif a[path] != b[path]:
            names = [k for k in a[path] if a[path][k] != b[path].get(k)]
            names += [k for k in b[path] if k not in a[path]]
            out.append(FileDiff(path, tuple(dict.fromkeys(names))))
    return tuple(out)


# -- the scratch store -------------------------------------------------------------------------


def _link_tree(src: Path, dst: Path) -> None:
    """A copy of layer directory ``src`` at ``dst`` whose files are hard links (no bytes
    copied); directories and symlinks get the source's owner, mode and xattrs."""
    shutil.copytree(src, dst, symlinks=True, copy_function=os.link)
    for here, dirs, files in os.walk(src):
        for name in [*dirs, *files, ""]:
            s = Path(here, name) if name else Path(here)
            st = s.lstat()
            if name and not (stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                continue
            os.lchown(dst / s.relative_to(src), st.st_uid, st.st_gid)


def seed_bases(source: Store, scratch: Store, graph: BuildGraph, keys: Sequence[str]) -> None:
    """Give ``scratch`` the base images the ``keys`` stand on, as ``source`` has them."""
    for key in keys:
        node = graph.node(key)
        if node.kind != "base" or not node.resolved:
            continue
        manifest = source.get_json(node.base_digest)
        for digest in (node.base_digest, manifest["config"]["digest"]):
            data = source.get_blob(digest)
            descriptor = Descriptor("application/octet-stream", as_digest(digest), len(data))
            scratch.put_blob(Blob(data, descriptor))
        for diff_id, size in source.manifest_layers(node.base_digest):
            if scratch.has_layer(diff_id):
                continue
            staged = scratch.root / "tmp" / f"seed-{diff_id.split(':')[-1]}"
            _link_tree(source.layer_path(diff_id), staged)
            scratch.commit_layer(staged, diff_id, size)


# -- verify ----------------------------------------------------------------------------


def require_built(store: Store, graph: BuildGraph, targets: Sequence[str]) -> None:
    """UsageError naming the first layer of ``targets`` the store lacks."""
    for target in targets:
        for key in graph.images[target].nodes:
            node = graph.node(key)
            if node.kind != "base" and store.lookup(key) is None:
                name = target.split(".", 1)[-1]
                raise UsageError(
                    f"{target}: layer {node.label!r} is not in the store; "
                    f"build it first (pipeline build {name})"
                )


def compare(
    store: Store,
    scratch: Store,
    graph: BuildGraph,
    targets: Sequence[str],
    rebuilt: BuildResult,
    epoch: int,
) -> tuple[AppVerdict, ...]:
    """Per target, the layers whose rebuilt diff_id differs from the stored one."""
    verdicts = []
    for target in targets:
        chain = graph.images[target].nodes
        differing: list[LayerDiff] = []
        compared = 0
        for pos, key in enumerate(chain):
            node = graph.node(key)
            if node.kind == "base":
                continue
            compared += 1
            old = store.lookup(key) or ""
            result = rebuilt.nodes.get(key)
            new = result.layers[-1] if result and result.layers else ""
            if old == new:
                continue
            files: tuple[FileDiff, ...] = ()
            if not differing and old and new:
                files = diff_layer_dirs(store.layer_path(old), scratch.layer_path(new), epoch)
            differing.append(LayerDiff(pos, key, node.label, old, new, files))
        verdicts.append(AppVerdict(target, compared, tuple(differing)))
    return tuple(verdicts)


def verify(
    store: Store,
    graph: BuildGraph,
    targets: Sequence[str],
    options: BuildOptions,
    reporter: Reporter | None = None,
) -> VerifyReport:
    """Rebuild ``targets`` in a scratch store from the same bases and compare. Raises
    BuildFailed when a step fails in the rebuild."""
    from pipeline.build import executor
    from pipeline.errors import BuildFailed

    require_built(store, graph, targets)
    with store.staging() as staging:
        scratch = Store(staging.path / "store")
        try:
            need = graph.closure(targets)
            seed_bases(store, scratch, graph, sorted(need))
            plain = replace(options, cache_from=None, cache_to=None)
            result = executor.build(graph, scratch, targets, plain, reporter)
            if result.failures:
                raise BuildFailed(result.failures)
            verdicts = compare(store, scratch, graph, targets, result, options.epoch)
        finally:
            scratch.close()
    return VerifyReport(verdicts, result.seconds, result.count("built"))


def render(report: VerifyReport) -> str:
    """The text ``pipeline verify`` prints."""
    lines = []
    for v in report.apps:
        if v.ok:
            lines.append(f"{v.app}: ok ({v.layers} layers reproduced)")
            continue
        first = v.differing[0]
        more = len(v.differing) - 1
        lines.append(
            f"{v.app}: NOT reproducible: {len(v.differing)} of {v.layers} layers differ;"
            f" first: #{first.position} {first.label}"
        )
        lines.append(f"    stored  {first.stored}")
        lines.append(f"    rebuilt {first.rebuilt}")
        for f in first.files[:FILES_SHOWN]:
            lines.append(f"    {f.path}: {', '.join(f.attributes)}")
        if len(first.files) > FILES_SHOWN:
            lines.append(f"    ... {len(first.files) - FILES_SHOWN} more paths differ")
        if more:
            later = ", ".join(f"#{d.position}" for d in v.differing[1:])
            lines.append(f"    later layers that differ too: {later}")
    bad = sum(1 for v in report.apps if not v.ok)
    lines.append(
        f"{len(report.apps) - bad} of {len(report.apps)} images reproducible;"
        f" {report.layers_rebuilt} layers rebuilt in {report.seconds:.1f}s"
    )
    return "\n".join(lines)
