"""The sandbox's host side around a run: the work dir's layout and the upper dir's
cleanup afterwards (placeholders, overlay's bookkeeping xattrs). Used by
:mod:`pipeline.sandbox.linux` only; see its docstring for the placeholder rule. Runs in the
caller, after the step's mount namespace is gone or before it exists.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import SandboxError

OVERLAY_OPTIONS = ("redirect_dir=off", "metacopy=off", "index=off", "xino=off")
_BOOKKEEPING_XATTRS = frozenset(
    {
        "trusted.overlay.origin",
        "trusted.overlay.impure",
        "trusted.overlay.nlink",
        "trusted.overlay.uuid",
    }
)


def _escape(path: str) -> str:
    return path.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def layout(lowerdirs: Sequence[Path], upper: Path, work: Path) -> str:
    """Make ``work/{l,ovl,root}``; the overlay mount options (relative to ``work/l``).

    Lowerdirs are named through short symlinks ``work/l/0``, ``work/l/1``, ... (as Docker's
    overlay2 does), so the option string stays far below the one-page limit of mount(2)
    whatever the store's paths look like.
    """
    links = work / "l"
    links.mkdir()
    names = []
    for i, d in enumerate(lowerdirs):
        name = _short(i)
        os.symlink(d, links / name)
        names.append(name)
    (work / "ovl").mkdir()
    (work / "root").mkdir()
    options = ",".join(
        (
            f"lowerdir={':'.join(names)}",
            f"upperdir={_escape(str(upper))}",
            "workdir=../ovl",
            *OVERLAY_OPTIONS,
        )
    )
    page = os.sysconf("SC_PAGE_SIZE")
    if len(options.encode()) >= page:
        raise SandboxError(
            f"sandbox: {len(lowerdirs)} layers: overlay mount options take "
            f"{len(options.encode())} bytes, over the kernel's limit of {page - 1}"
        )
    return options


def _short(i: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        i, r = divmod(i, 36)
        out = digits[r] + out
        if not i:
            return out


def remove_placeholders(upper: Path, records: Sequence[Sequence[Any]]) -> None:
    """Apply the placeholder rule (module docstring) to ``upper``. Host side, after the
    sandbox's namespace is gone, so nothing is mounted over these paths any more."""
    unchanged = []
    for path, kind, ino, ctime, mode, uid, gid, size, xattrs in records:
        host = str(upper) + path
        try:
            st = os.lstat(host)
            names = sorted(os.listxattr(host, follow_symlinks=False))
        except OSError:
            continue
        same = (st.st_ino, st.st_ctime_ns, st.st_mode, st.st_uid, st.st_gid, names) == (
            ino,
            ctime,
            mode,
            uid,
            gid,
            xattrs,
        )
        if same and (kind == "dir" or st.st_size == size):
            unchanged.append((path.count("/"), path, kind))
    for _, path, kind in sorted(unchanged, reverse=True):
        host = str(upper) + path
        try:
            if kind == "dir":
                os.rmdir(host)
            else:
                os.unlink(host)
        except OSError:
            pass  # not empty: the step put something there, so it stays


def strip_bookkeeping(upper: Path) -> None:
    """Remove overlay's internal xattrs (origin, impure, nlink, uuid) from ``upper``."""
    stack = [str(upper)]
    _strip_one(str(upper))
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                _strip_one(entry.path)
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)


def _strip_one(path: str) -> None:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        if name in _BOOKKEEPING_XATTRS:
            os.removexattr(path, name, follow_symlinks=False)


def clear_work(work: Path) -> None:
    for name in ("l", "ovl", "root"):
        path = work / name
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.exists():
            shutil.rmtree(path, ignore_errors=True)
