"""A tiny real base image made locally from Debian's busybox-static, no registry needed.

The rootfs holds ``/bin/busybox`` (a static binary copied from the host), one
absolute symlink per applet at the path ``busybox --list-full`` gives it (so
``/bin/sh``, ``/usr/bin/env`` ... exist), ``/etc/passwd`` and ``/etc/group`` with
``root``, ``app`` (uid/gid 1000) and ``nobody``, ``/tmp`` (1777), ``/root`` (0700),
``/home/app`` and empty mount points ``/dev``, ``/proc``, ``/sys``. No
``/etc/hostname``. Every mtime is 0, so the tar is a function of the busybox binary
alone. Tests and the offline example import it as ``busybox:latest``.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.fs.tarwrite import write_layer

BUSYBOX = Path("/bin/busybox")

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""

GROUP = """\
root:x:0:
app:x:1000:
nogroup:x:65534:
"""

# (path, mode, uid, gid) of every directory, parents first
_DIRS = (
    ("bin", 0o755, 0, 0),
    ("sbin", 0o755, 0, 0),
    ("usr", 0o755, 0, 0),
    ("usr/bin", 0o755, 0, 0),
    ("usr/sbin", 0o755, 0, 0),
    ("etc", 0o755, 0, 0),
    ("home", 0o755, 0, 0),
    ("home/app", 0o755, 1000, 1000),
    ("root", 0o700, 0, 0),
    ("tmp", 0o1777, 0, 0),
    ("dev", 0o755, 0, 0),
    ("proc", 0o555, 0, 0),
    ("sys", 0o555, 0, 0),
)


def _require_static_busybox() -> None:
    """PipelineError unless BUSYBOX is a statically linked ELF binary."""
    path = BUSYBOX
    hint = "install the busybox-static package (apt-get install busybox-static)"
    try:
        with path.open("rb") as f:
            ident = f.read(64)
            if len(ident) < 64 or ident[:4] != b"\x7fELF" or ident[4] != 2:
                raise PipelineError(f"{path}: not a 64-bit ELF binary; {hint}")
            order = "<" if ident[5] == 1 else ">"
            (phoff,) = struct.unpack_from(order + "Q", ident, 0x20)
            phentsize, phnum = struct.unpack_from(order + "HH", ident, 0x36)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found; {hint}") from None
    for i in range(phnum):
        (p_type,) = struct.unpack_from(order + "I", table, i * phentsize)
        if p_type == 3:  # PT_INTERP: needs a dynamic loader the rootfs does not have
            raise PipelineError(f"{path}: dynamically linked; {hint}")


def _applets() -> list[str]:
    """Applet paths relative to /, as ``busybox --list-full`` prints them."""
    proc = subprocess.run(
        [str(BUSYBOX), "--list-full"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise PipelineError(f"{BUSYBOX} --list-full: exited {proc.returncode}: {proc.stderr}")
    paths = []
    for line in proc.stdout.split():
        line = line.strip("/")
        if "/" not in line or line == "bin/busybox":
            continue  # "linuxrc" and the binary itself
        paths.append(line)
    return sorted(set(paths))


def make_busybox_rootfs(dest: Path) -> None:
    """Create the busybox rootfs in ``dest`` (missing or empty; created if missing).

    Not atomic: on error ``dest`` may hold a partial tree. PipelineError if
    /bin/busybox is missing or not static ("install the busybox-static package").
    """
    _require_static_busybox()
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise PipelineError(f"{dest}: not empty; the busybox rootfs needs an empty directory")
    for rel, mode, uid, gid in _DIRS:
        path = dest / rel
        path.mkdir()
        os.chown(path, uid, gid)
        path.chmod(mode)
    binary = dest / "bin/busybox"
    shutil.copyfile(BUSYBOX, binary)
    binary.chmod(0o755)
    for rel in _applets():
        link = dest / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")
    for name, text in (("passwd", PASSWD), ("group", GROUP)):
        path = dest / "etc" / name
        path.write_text(text)
        path.chmod(0o644)
    for path in (dest, *sorted(dest.rglob("*"))):
        os.utime(path, ns=(0, 0), follow_symlinks=False)


def busybox_rootfs_tar(out: Path, epoch: int = 0) -> None:
    """Write the busybox rootfs as a deterministic layer tar to ``out``.

    Atomic: built in a temp dir beside ``out``, written to a temp file, renamed into
    place. Equal busybox binaries give identical bytes.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        rootfs = Path(tmp) / "rootfs"
        make_busybox_rootfs(rootfs)
        partial = Path(tmp) / "layer.tar"
        with partial.open("wb") as f:
            write_layer(rootfs, f, epoch)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, out)
