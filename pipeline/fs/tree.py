"""Removing directory trees of any depth: iteratively, never following a symlink,
holding two directory fds at most (``shutil.rmtree`` recurses and keeps one fd per
level, so a tree deeper than the recursion limit or ``ulimit -n`` cannot be removed
with it).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _ident(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def remove_tree_at(parent_fd: int, name: str | bytes) -> None:
    """Remove entry ``name`` of directory ``parent_fd`` and, for a directory, all it
    holds. Missing is fine. Descends with ``O_NOFOLLOW`` opens and climbs back with
    ``..``, checking each parent is the directory it came from (OSError otherwise)."""
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=parent_fd)
        return
    cur = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    # one frame per level: (name, identity, subdirectories still to remove)
    trail: list[tuple[str | bytes, tuple[int, int], list[str]]] = []
    here: tuple[str | bytes, tuple[int, int]] = (name, _ident(cur))
    try:
        while True:
            subdirs: list[str] = []
            with os.scandir(cur) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        subdirs.append(entry.name)
                    else:
                        os.unlink(entry.name, dir_fd=cur)
            trail.append((*here, subdirs))
            while trail and not trail[-1][2]:  # this level is empty: climb
                done = trail.pop()[0]
                if not trail:
                    os.close(cur)
                    cur = -1
                    os.rmdir(done, dir_fd=parent_fd)
                    return
                up = os.open("..", _DIR_FLAGS, dir_fd=cur)
                os.close(cur)
                cur = up
                if _ident(cur) != trail[-1][1]:
                    raise OSError(f"{os.fsdecode(done)}: moved while being removed")
                os.rmdir(done, dir_fd=cur)
            sub = trail[-1][2].pop()
            nxt = os.open(sub, _DIR_FLAGS, dir_fd=cur)
            os.close(cur)
            cur = nxt
            here = (sub, _ident(cur))
    finally:
        if cur >= 0:
            os.close(cur)


def fd_budget(wanted: int) -> int:
    """How many directory fds a walker may keep cached: ``wanted``, but no more than
    a quarter of this process's ``ulimit -n`` (at least 2)."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(2, min(wanted, soft // 4))


def remove_tree(path: Path | str) -> None:
    """Remove ``path`` (a file, a symlink, or a directory tree of any depth); missing
    is fine. The last component is not followed if it is a symlink."""
    path = Path(path)
    parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        remove_tree_at(parent, path.name)
    finally:
        os.close(parent)
