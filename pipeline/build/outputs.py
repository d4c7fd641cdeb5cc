"""Writing to a path the user named (``export -o``, ``--json-report``) without ever
destroying what is there.

Contract of :func:`place`:

* The output is written under a fresh temporary sibling (``.NAME.pipeline-<random>``),
  so a half-written output never appears under the user's name and an existing file of
  that temporary-looking name is never touched. The temporary is removed on any error.
* It is moved into place only when PATH does not exist, or (for a directory output) is
  an empty directory, replaced by one ``rename``. Anything else is a one-line
  UsageError naming PATH.
* With ``force``, a PATH that is a regular file, or a directory this module wrote before
  (it carries :data:`MARKER`), is replaced. Never a symlink, never any other directory.
* The parent directory must exist: we do not create directories the user did not ask for.

Idempotent in effect: the same output written twice with ``force`` gives the same PATH.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import uuid
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import UsageError

MARKER = ".pipeline-output"
"""A file inside every directory output we write, so ``--force`` knows it is ours."""


def place(
    path: Path,
    write: Callable[[Path], object],
    *,
    directory: bool,
    force: bool = False,
    replaceable: Callable[[Path], bool] | None = None,
) -> None:
    """Write an output with ``write(tmp)`` and move it to ``path`` (see the module's
    contract). ``directory`` says whether ``write`` makes a directory or a file.
    ``replaceable(path)`` may say that what exists is an earlier output of ours (a
    previous build report, :func:`previous_output`), which is then replaced as with
    ``force``."""
    path = Path(os.path.abspath(path))
    force = check(path, directory=directory, force=force, replaceable=replaceable)
    parent = path.parent
    tmp = parent / f".{path.name}.pipeline-{uuid.uuid4().hex[:12]}"
    try:
        write(tmp)
        if directory:
            (tmp / MARKER).write_text("written by pipeline; `--force` may replace this\n")
        _move(tmp, path, force)
    except BaseException:
        _remove(tmp)
        raise


def check(
    path: Path,
    *,
    directory: bool,
    force: bool = False,
    replaceable: Callable[[Path], bool] | None = None,
) -> bool:
    """Refuse now (UsageError) what :func:`place` would refuse later, so a command can
    fail before doing its work. Returns the effective ``force``."""
    path = Path(os.path.abspath(path))
    if not path.parent.is_dir():
        raise UsageError(f"{path}: cannot write there: {path.parent} is not a directory")
    if replaceable is not None and path.exists() and not path.is_symlink():
        force = force or replaceable(path)
    _check_target(path, force, directory)
    return force


def previous_output(path: Path) -> bool:
    """An earlier output at a path the user declared as an output (a bake file's
    ``output``): a directory pipeline wrote, or a tar archive. Anything else is kept."""
    import tarfile

    if path.is_symlink():
        return False
    if path.is_dir():
        return (path / MARKER).is_file()
    try:
        return path.is_file() and tarfile.is_tarfile(path)
    except OSError:
        return False


def _check_target(path: Path, force: bool, directory: bool) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if directory and stat.S_ISDIR(st.st_mode) and not any(os.scandir(path)):
        return
    if force and (stat.S_ISREG(st.st_mode) or _ours(path, st)):
        return
    what = _describe(path, st)
    hint = (
        "; --force replaces a file or a directory pipeline wrote, never anything else"
        if not force
        else ""
    )
    raise UsageError(f"{path}: {what} exists; refusing to overwrite it{hint}")


def _ours(path: Path, st: os.stat_result) -> bool:
    return stat.S_ISDIR(st.st_mode) and (path / MARKER).is_file()


def _describe(path: Path, st: os.stat_result) -> str:
    if stat.S_ISLNK(st.st_mode):
        return "a symlink"
    if stat.S_ISDIR(st.st_mode):
        return "a directory" + (" written by pipeline" if _ours(path, st) else "")
    if stat.S_ISREG(st.st_mode):
        return "a file"
    return "something"


def _move(tmp: Path, path: Path, force: bool) -> None:
    """rename(2) into place: atomic, and it refuses by itself to replace a non-empty
    directory, so a directory created meanwhile by someone else is never lost."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and force and stat.S_ISDIR(st.st_mode) != tmp.is_dir():
        raise UsageError(f"{path}: exists as another kind of file; remove it first")
    if st is not None and force and _ours(path, st):
        trash = path.with_name(f".{path.name}.pipeline-old-{uuid.uuid4().hex[:12]}")
        os.rename(path, trash)
        try:
            os.rename(tmp, path)
        except OSError:
            os.rename(trash, path)
            raise
        _remove(trash)
        return
    if st is not None and force and stat.S_ISREG(st.st_mode):
        os.replace(tmp, path)
        return
    if tmp.is_dir():
        try:
            os.rename(tmp, path)  # onto nothing, or an empty dir
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise UsageError(f"{path}: appeared while exporting; not replaced") from None
            raise
        return
    try:
        os.link(tmp, path)  # fails if anything is there now
    except FileExistsError:
        raise UsageError(f"{path}: appeared while exporting; not replaced") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP):
            raise
        if os.path.lexists(path):
            raise UsageError(f"{path}: appeared while exporting; not replaced") from None
        os.rename(tmp, path)
        return
    os.unlink(tmp)


def _remove(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp)
        else:
            tmp.unlink()


def merge_tree(dest: Path, write: Callable[[Path], object], records: Path) -> int:
    """Write a directory tree into ``dest``, which may exist and hold other files (what
    ``docker buildx bake`` does for ``type=local``), without destroying anything there.

    ``write(tmp)`` makes the tree in a fresh directory inside ``dest`` (same filesystem).
    Then every path is checked before anything moves: a path that exists in ``dest`` may
    be replaced only when it is a directory meeting a directory, or a file or symlink an
    earlier merge wrote and nobody changed since: its fingerprint is in the record this
    function keeps for ``dest`` under ``records`` (a directory of ours, e.g. in the
    store), so ``dest`` gets exactly the tree's files and nothing else. Anything else is a
    one-line UsageError naming the path, and ``dest`` is left as it was. Symlinks in
    ``dest`` are never followed. Returns the number of paths written."""
    import hashlib
    import json

    dest = Path(os.path.abspath(dest))
    if os.path.lexists(dest) and not (dest.is_dir() and not dest.is_symlink()):
        raise UsageError(f"{dest}: exists and is not a directory; refusing to write into it")
    dest.mkdir(parents=True, exist_ok=True)
    records.mkdir(parents=True, exist_ok=True)
    manifest_path = records / (hashlib.sha256(os.fsencode(dest)).hexdigest() + ".json")
    try:
        manifest = json.loads(manifest_path.read_text())
        if not isinstance(manifest, dict):
            manifest = {}
    except (OSError, ValueError):
        manifest = {}
    tmp = dest / f".pipeline-{uuid.uuid4().hex[:12]}"
    try:
        write(tmp)
        rels = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*"))
        for rel in rels:  # parents come before their children
            here, there = tmp / rel, dest / rel
            if not os.path.lexists(there):
                continue
            if (
                here.is_dir()
                and not here.is_symlink()
                and there.is_dir()
                and not there.is_symlink()
            ):
                continue
            if manifest.get(rel) is not None and manifest.get(rel) == _fingerprint(there):
                continue
            raise UsageError(
                f"{there}: exists and was not written by an earlier export; not replaced"
            )
        for rel in rels:
            here, there = tmp / rel, dest / rel
            if here.is_dir() and not here.is_symlink():
                there.mkdir(exist_ok=True)
                continue
            os.replace(here, there)
            manifest[rel] = _fingerprint(there)
        data = json.dumps(manifest, indent=0, sort_keys=True) + "\n"
        partial = records / f".{uuid.uuid4().hex[:12]}.json"
        partial.write_text(data)
        os.replace(partial, manifest_path)
        return len(rels)
    finally:
        _remove(tmp)


def _real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _fingerprint(path: Path) -> str | None:
    import hashlib

    try:
        st = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return "link:" + os.readlink(path)
    if stat.S_ISREG(st.st_mode):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        return f"file:{stat.S_IMODE(st.st_mode):o}:{digest.hexdigest()}"
    return None
