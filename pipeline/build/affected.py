"""``pipeline affected --since REF``: which images a change would rebuild, without
building.

The fleet is compiled twice, from the work tree and from REF, and the images are
compared: an image is affected when its chain of layer keys differs (a spec, a
Dockerfile, a build context, an ignore file or a pinned base changed), or its config
or tags do; apps that exist on one side only are ``new`` or ``removed``. A group is
affected when one of its images is.

How REF is read: ``git read-tree`` into a temporary index and ``git checkout-index``
into a temporary directory, so the user's index, HEAD and work tree are never touched
and a shallow clone with REF fetched is enough. Two normalisations keep what git does
not version from counting as a change: a file present on both sides with the same
executable bit takes the work tree's permission bits, and files git ignores inside
the work tree's build contexts are copied to REF's side.

Bases are never looked up in a store (CI may have none): a base is identified by its
reference text, or for a registry base by the digest ``pipeline.lock`` pins on that
side, so rebuilding a base locally affects nothing and re-pinning one affects its
images.

Exit status (set by the CLI): 0 nothing is affected, 1 something is, 2 an error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError, UsageError
from pipeline.fs.contexthash import ContextHasher
from pipeline.graph import BuildGraph, ResolvedBase, compile_fleet
from pipeline.model import Copy, Fleet
from pipeline.oci.config import ImageConfig


@dataclass(frozen=True)
class ImageChange:
    """``reason``: new, removed, layers, config or tags; ``detail`` says where."""

    id: str
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Affected:
    since: str
    commit: str
    changed_paths: tuple[str, ...]
    images: tuple[ImageChange, ...]
    groups: tuple[str, ...]

    @property
    def any(self) -> bool:
        return bool(self.images)

    def names(self) -> list[str]:
        """What to build: the affected image ids (not removed ones), then groups."""
        return [c.id for c in self.images if c.reason != "removed"] + list(self.groups)


# -- the pure part -----------------------------------------------------------------------------


def compare_graphs(
    old: BuildGraph, new: BuildGraph, groups: Mapping[str, Sequence[str]]
) -> tuple[tuple[ImageChange, ...], tuple[str, ...]]:
    """The image changes between two compiled fleets, and the affected groups."""
    changes = []
    for image_id in new.outputs:
        plan = new.images[image_id]
        before = old.images.get(image_id) if image_id in old.outputs else None
        if before is None:
            changes.append(ImageChange(image_id, "new"))
            continue
        if before.nodes != plan.nodes:
            pairs = zip(before.nodes, plan.nodes, strict=False)
            pos = next(
                (i for i, (a, b) in enumerate(pairs) if a != b),
                min(len(before.nodes), len(plan.nodes)),
            )
            label = new.node(plan.nodes[pos]).label if pos < len(plan.nodes) else "(removed)"
            changes.append(ImageChange(image_id, "layers", f"#{pos} {label}"))
        elif before.config != plan.config or before.history != plan.history:
            changes.append(ImageChange(image_id, "config"))
        elif before.tags != plan.tags:
            changes.append(ImageChange(image_id, "tags", ", ".join(plan.tags)))
    changes += [ImageChange(i, "removed") for i in old.outputs if i not in new.outputs]
    hit = {c.id for c in changes}
    affected_groups = tuple(sorted(g for g, ids in groups.items() if hit & set(ids)))
    return tuple(changes), affected_groups


def pinned_bases(fleet: Fleet, pins: Mapping[str, str]) -> dict[str, ResolvedBase]:
    """Registry bases pinned in a lock file, identified by their pinned digest alone."""
    return {
        d.base.ref: ResolvedBase(d.base.ref, pins[d.base.ref], ImageConfig(), ())
        for d in fleet.images.values()
        if d.base.kind == "registry" and d.base.ref in pins
    }


# -- git ---------------------------------------------------------------------------------------


def git(top: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    """Run git in ``top``; its stdout. UsageError with git's own message on failure."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(top), *args],
            capture_output=True,
            text=True,
            env=None if env is None else dict(env),
            check=False,
        )
    except FileNotFoundError:
        raise UsageError("git is not installed (needed by `pipeline affected`)") from None
    if proc.returncode != 0:
        message = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        raise UsageError(f"{top}: git {args[0]}: {message}")
    return proc.stdout


def changed_paths(top: Path, commit: str) -> tuple[str, ...]:
    """Paths (relative to ``top``) that differ between ``commit`` and the work tree,
    untracked files included, ignored ones not."""
    diff = git(top, "diff", "--name-only", "-z", "--no-renames", commit, "--")
    untracked = git(top, "ls-files", "-z", "--others", "--exclude-standard")
    return tuple(sorted({p for p in (diff + untracked).split("\0") if p}))


def materialise(top: Path, commit: str, dest: Path) -> None:
    """Write the tree of ``commit`` under ``dest`` as a checkout would, through a
    temporary index (the repository's own index and work tree are left alone)."""
    env = dict(os.environ, GIT_INDEX_FILE=str(dest.parent / "affected.index"))
    git(top, "read-tree", commit, env=env)
    git(top, "checkout-index", "-a", "-f", f"--prefix={dest}/", env=env)


def normalise(top: Path, old_top: Path, contexts: Sequence[Path]) -> None:
    """Apply the two normalisations of the module docstring to ``old_top``."""
    for here, dirs, files in os.walk(old_top):
        for name in [*dirs, *files]:
            old = Path(here, name)
            new = top / old.relative_to(old_top)
            try:
                a, b = old.lstat(), new.lstat()
            except OSError:
                continue
            same_kind = (a.st_mode & 0o170000) == (b.st_mode & 0o170000)
            if same_kind and not old.is_symlink() and (a.st_mode & 0o100) == (b.st_mode & 0o100):
                os.chmod(old, b.st_mode & 0o7777)
    for context in contexts:
        try:
            rel = context.relative_to(top)
        except ValueError:
            continue
        listed = git(
            top,
            "ls-files",
            "-z",
            "--others",
            "--ignored",
            "--exclude-standard",
            "--directory",
            "--",
            str(rel) if str(rel) != "." else ".",
        )
        for path in filter(None, listed.split("\0")):
            src, dst = top / path, old_top / path
            if dst.exists() or not src.exists():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir() and not src.is_symlink():
                shutil.copytree(src, dst, symlinks=True)
            else:
                shutil.copy2(src, dst, follow_symlinks=False)


# -- affected ----------------------------------------------------------------------------------


def _compile(specs: Path, fleet: Fleet) -> BuildGraph:
    from pipeline.build.lock import LOCK_FILE, read_lock

    hasher = ContextHasher(None)

    def copy_digest(copy: Copy) -> str:
        from pipeline.fs.context import ContextError

        try:
            return hasher.digest(Path(copy.context), copy.sources, copy.ignore)
        except ContextError as exc:
            raise exc.at(copy.loc) from None

    bases = pinned_bases(fleet, read_lock(specs / LOCK_FILE))
    return compile_fleet(fleet, bases, copy_digest)


def _contexts(fleet: Fleet) -> list[Path]:
    return sorted(
        {
            Path(s.context)
            for d in fleet.images.values()
            for s in d.steps
            if isinstance(s, Copy) and s.context
        }
    )


def affected(
    specs: Path,
    since: str,
    overrides: Mapping[str, str],
    environ: Mapping[str, str],
) -> Affected:
    """Compare the fleet in ``specs`` (work tree) with the same directory at ``since``."""
    from pipeline.spec.loader import load_fleet

    specs = specs.resolve()
    if not specs.is_dir():
        raise UsageError(f"{specs}: no such specs directory")
    top = Path(git(specs, "rev-parse", "--show-toplevel").strip())
    try:
        commit = git(top, "rev-parse", "--verify", "--quiet", f"{since}^{{commit}}").strip()
    except UsageError:
        raise UsageError(
            f"{since}: no such commit here (in a shallow clone, fetch it first:"
            f" git fetch --depth=1 origin {since})"
        ) from None
    paths = changed_paths(top, commit)
    if not paths:
        return Affected(since, commit, (), (), ())
    new_fleet = load_fleet(specs, overrides, environ)
    new = _compile(specs, new_fleet)
    with tempfile.TemporaryDirectory(prefix="pipeline-affected-") as tmp:
        old_top = Path(tmp) / "tree"
        old_top.mkdir()
        materialise(top, commit, old_top)
        normalise(top, old_top, _contexts(new_fleet))
        old_specs = old_top / specs.relative_to(top)
        empty = Fleet({}, {})
        try:
            old_fleet = load_fleet(old_specs, overrides, environ) if old_specs.is_dir() else empty
            old = _compile(old_specs, old_fleet)
        except PipelineError as exc:
            raise UsageError(f"{since}: {str(exc).replace(str(old_top) + '/', '')}") from None
    images, groups = compare_graphs(old, new, new_fleet.groups)
    return Affected(since, commit, paths, images, groups)
