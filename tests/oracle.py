"""The BuildKit oracle for the differential Dockerfile suite, and the comparison.

Effects at the edges: :class:`Dockerd` starts a private Docker daemon (Debian's
``dockerd`` 20.10, its built-in BuildKit), :func:`unpack_docker_image` and
:func:`unpack_oci_layout` turn images into root filesystems with tools we did not
write (``skopeo``, ``umoci``). The pure part: :func:`scan_tree` records a rootfs as
:class:`Entry` values, :func:`diff_trees` and :func:`diff_configs` compare two images
and return one readable line per differing path or field (empty when identical).

Compared per path: type, permission bits with setuid/setgid/sticky, uid/gid, symlink
target, device numbers, content sha256, hard-link group, xattrs. Not compared: mtimes,
atimes, directory sizes (they are not content), and umoci's own files beside the rootfs.

Compared in the config (:data:`CONFIG_FIELDS`): the runtime fields of ``config`` plus
``author``, ``os``, ``architecture``, the number of layers and the number of history
entries that made a layer. An absent field, ``null`` and an empty list, map or string
are the same (a runtime cannot tell them apart), and a healthcheck's zero durations are
its defaults. Ignored on purpose: ``created`` and every id or digest (they differ by
design), history texts (``created_by`` is each tool's own wording), Docker's legacy
``container``, ``container_config``, ``docker_version``, ``Hostname``, ``Domainname``,
``Image``, the ``Attach*``/``Tty``/``OpenStdin``/``StdinOnce`` flags and ``ArgsEscaped``
(Windows only): none of them reaches a container started from the image.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.compare_peers import _children, _mounts_under, remove_tree

__all__ = ["remove_tree"]  # re-exported for the suite's clean-up

# Debian's 20.10 client has BuildKit built in; the 28.x client on PATH would need the
# buildx plugin for DOCKER_BUILDKIT=1, which is not installed.
DOCKER_CLI = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
DOCKER_API_VERSION = "1.41"  # what dockerd 20.10 speaks; a newer client must go down to it

CONFIG_FIELDS = (
    "Env",
    "Entrypoint",
    "Cmd",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Labels",
    "Volumes",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
    "Shell",
)
TOP_FIELDS = ("author", "os", "architecture")


class OracleUnavailable(RuntimeError):
    """dockerd did not come up; the message carries its log tail."""


class CommandError(RuntimeError):
    """A tool exited non-zero; carries the command and its output tail."""

    def __init__(self, argv: list[str], code: int, output: str) -> None:
        self.argv = argv
        self.code = code
        self.output = output
        tail = "\n".join(output.strip().splitlines()[-30:])
        shown = " ".join(argv if len(argv) <= 12 else [*argv[:12], "..."])
        super().__init__(f"{shown}: exit {code}\n{tail}")


def run(argv: list[str], *, env: Mapping[str, str] | None = None, timeout: float = 600) -> str:
    """Run a tool; its stdout, or :class:`CommandError` with stdout + stderr."""
    proc = subprocess.run(
        argv, capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stdout + proc.stderr)
    return proc.stdout


# -- the private daemon ------------------------------------------------------------------


class Dockerd:
    """A private ``dockerd``: own socket, data root, exec root and pidfile below one
    short directory in /tmp (a unix socket path has at most 107 bytes, and containerd
    puts its sockets below the exec root). :meth:`stop` ends it by its PID, kills a
    containerd it started if that outlived it, unmounts what it left and removes the
    directory; it is safe to call twice."""

    def __init__(self, binary: str = "dockerd") -> None:
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="pdo-", dir="/tmp"))
        self.sock = self.root / "d.sock"
        self.log = self.root / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.children: set[int] = set()

    def env(self) -> dict[str, str]:
        env = dict(os.environ, DOCKER_BUILDKIT="1", DOCKER_API_VERSION=DOCKER_API_VERSION)
        env["DOCKER_CONFIG"] = str(self.root / "client")  # no user config, no credentials
        env.pop("DOCKER_HOST", None)
        env.pop("DOCKER_CONTEXT", None)
        return env

    def docker(self, *args: str, timeout: float = 600) -> str:
        return run(
            [DOCKER_CLI, "-H", f"unix://{self.sock}", *args], env=self.env(), timeout=timeout
        )

    def start(self, timeout: float = 60) -> None:
        with self.log.open("ab") as logf:
            try:
                self.proc = self._spawn(logf)
            except OSError as exc:
                self.stop()
                raise OracleUnavailable(f"{self.binary}: cannot start: {exc}") from None
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.docker("version", timeout=10)
                break
            except (CommandError, subprocess.TimeoutExpired, FileNotFoundError) as exc:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = self.log_tail()
                    self.stop()
                    raise OracleUnavailable(f"dockerd did not start ({exc}):\n{tail}") from None
                time.sleep(0.2)
        self.children = _children(self.proc.pid)

    def _spawn(self, logf: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                self.binary,
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--host",
                f"unix://{self.sock}",
                "--data-root",
                str(self.root / "data"),
                "--exec-root",
                str(self.root / "exec"),
                "--pidfile",
                str(self.root / "dockerd.pid"),
                "--storage-driver",
                "overlay2",
            ],
            stdout=logf,
            stderr=logf,
            start_new_session=True,
        )

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no dockerd log)"

    def stop(self) -> None:
        if self.proc is not None:
            self.children |= _children(self.proc.pid)
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        for pid in sorted(self.children):  # its own containerd, if that outlived it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self.children = set()
        for point in _mounts_under(self.root):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        if self.root.exists():
            remove_tree(self.root)


@contextlib.contextmanager
def private_dockerd() -> Iterator[Dockerd]:
    daemon = Dockerd()
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()


# -- images to root filesystems -------------------------------------------------------


def docker_archive_configs(archive: Path) -> dict[str, dict[str, Any]]:
    """The image config JSON of every tag in a ``docker save`` archive, read as Docker
    wrote it (with the Docker-only fields an OCI conversion may drop)."""
    out: dict[str, dict[str, Any]] = {}
    with tarfile.open(archive) as tar:
        manifest = json.load(_member(tar, "manifest.json"))
        for item in manifest:
            config = json.load(_member(tar, item["Config"]))
            for tag in item.get("RepoTags") or ():
                out[tag] = config
    return out


def docker_archive_digest(archive: Path) -> str:
    """The config digest (what Docker calls the image id) of a one-image archive."""
    with tarfile.open(archive) as tar:
        (item,) = json.load(_member(tar, "manifest.json"))
        return "sha256:" + hashlib.sha256(_member(tar, item["Config"]).read()).hexdigest()


def _member(tar: tarfile.TarFile, name: str) -> Any:
    f = tar.extractfile(name)
    if f is None:
        raise ValueError(f"{tar.name}: {name}: not a regular file")
    return f


def unpack_docker_image(archive: Path, tag: str, work: Path) -> Path:
    """``skopeo copy docker-archive:ARCHIVE:TAG oci:DIR`` then ``umoci unpack``; the
    rootfs directory."""
    layout = work / "oci"
    run(["skopeo", "copy", "-q", f"docker-archive:{archive}:{tag}", f"oci:{layout}:img"])
    return unpack_oci_layout(layout, "img", work / "bundle")


def unpack_oci_layout(layout: Path, ref: str, bundle: Path) -> Path:
    """``umoci unpack --image LAYOUT:REF BUNDLE``; the rootfs directory."""
    run(["umoci", "unpack", "--image", f"{layout}:{ref}", str(bundle)])
    return bundle / "rootfs"


def oci_layout_config(layout: Path) -> dict[str, Any]:
    """The config JSON of the one image in an OCI layout (as ``pipeline export`` wrote)."""
    index = json.loads((layout / "index.json").read_text())
    (desc,) = index["manifests"]
    manifest = json.loads(_blob(layout, desc["digest"]))
    return json.loads(_blob(layout, manifest["config"]["digest"]))


def _blob(layout: Path, digest: str) -> bytes:
    algo, hexpart = digest.split(":", 1)
    return (layout / "blobs" / algo / hexpart).read_bytes()


# -- trees -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One path of a root filesystem, as compared (no times)."""

    kind: str
    mode: int
    uid: int = 0
    gid: int = 0
    target: str | None = None
    sha256: str | None = None
    rdev: tuple[int, int] | None = None
    xattrs: tuple[tuple[str, str], ...] = ()
    links: tuple[str, ...] = ()
    """All paths of the inode, sorted, when it has more than one in the tree."""

    def describe(self) -> str:
        owner = f"{self.uid}:{self.gid}"
        extra = f" -> {self.target}" if self.target is not None else ""
        return f"{self.kind} {self.mode:04o} {owner}{extra}"


_KINDS = (
    (stat.S_ISDIR, "dir"),
    (stat.S_ISREG, "file"),
    (stat.S_ISLNK, "symlink"),
    (stat.S_ISFIFO, "fifo"),
    (stat.S_ISCHR, "char"),
    (stat.S_ISBLK, "block"),
    (stat.S_ISSOCK, "socket"),
)


def scan_tree(root: Path) -> dict[str, Entry]:
    """Every path below ``root`` (and ``/`` itself), keyed ``/a/b``."""
    raw: dict[str, tuple[os.stat_result, str | None, str | None, tuple[tuple[str, str], ...]]]
    raw = {}
    stack = [(str(root), "/")]
    while stack:
        real, rel = stack.pop()
        st = os.lstat(real)
        target = os.readlink(real) if stat.S_ISLNK(st.st_mode) else None
        digest = _sha256(real) if stat.S_ISREG(st.st_mode) else None
        raw[rel] = (st, target, digest, _xattrs(real))
        if stat.S_ISDIR(st.st_mode):
            for name in os.listdir(real):
                stack.append((os.path.join(real, name), posixpath_join(rel, name)))
    inodes: dict[tuple[int, int], list[str]] = {}
    for rel, (st, *_rest) in raw.items():
        if not stat.S_ISDIR(st.st_mode):
            inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
    out: dict[str, Entry] = {}
    for rel, (st, target, digest, xattrs) in raw.items():
        group = inodes.get((st.st_dev, st.st_ino), [])
        device = stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
        out[rel] = Entry(
            kind=next(name for test, name in _KINDS if test(st.st_mode)),
            mode=stat.S_IMODE(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
            target=target,
            sha256=digest,
            rdev=(os.major(st.st_rdev), os.minor(st.st_rdev)) if device else None,
            xattrs=xattrs,
            links=tuple(sorted(group)) if len(group) > 1 else (),
        )
    return out


def posixpath_join(parent: str, name: str) -> str:
    return f"/{name}" if parent == "/" else f"{parent}/{name}"


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _xattrs(path: str) -> tuple[tuple[str, str], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    out = []
    for name in sorted(names):
        value = os.getxattr(path, name, follow_symlinks=False)
        out.append((name, value.decode("utf-8", "backslashreplace")))
    return tuple(out)


def diff_trees(
    left: Mapping[str, Entry], right: Mapping[str, Entry], names: tuple[str, str]
) -> list[str]:
    """One line per path that differs between two trees, sorted by path."""
    a, b = names
    lines = []
    for path in sorted(set(left) | set(right)):
        x, y = left.get(path), right.get(path)
        if x is None:
            assert y is not None
            lines.append(f"{path}: only in {b} ({y.describe()})")
        elif y is None:
            lines.append(f"{path}: only in {a} ({x.describe()})")
        elif x != y:
            lines.append(f"{path}: {_entry_diff(x, y, names)}")
    return lines


def _entry_diff(x: Entry, y: Entry, names: tuple[str, str]) -> str:
    a, b = names
    if x.kind != y.kind:
        return f"type {a} {x.describe()}, {b} {y.describe()}"
    parts = []
    if x.mode != y.mode:
        parts.append(f"mode {a} {x.mode:04o}, {b} {y.mode:04o}")
    if (x.uid, x.gid) != (y.uid, y.gid):
        parts.append(f"owner {a} {x.uid}:{x.gid}, {b} {y.uid}:{y.gid}")
    if x.target != y.target:
        parts.append(f"symlink target {a} {x.target!r}, {b} {y.target!r}")
    if x.sha256 != y.sha256:
        parts.append(f"content {a} sha256:{str(x.sha256)[:12]}, {b} sha256:{str(y.sha256)[:12]}")
    if x.rdev != y.rdev:
        parts.append(f"device {a} {x.rdev}, {b} {y.rdev}")
    if x.xattrs != y.xattrs:
        parts.append(f"xattrs {a} {dict(x.xattrs)}, {b} {dict(y.xattrs)}")
    if x.links != y.links:
        parts.append(f"hard links {a} {list(x.links)}, {b} {list(y.links)}")
    return "; ".join(parts)


# -- configs ---------------------------------------------------------------------------


def config_facts(config: Mapping[str, Any]) -> dict[str, Any]:
    """The compared facts of an image config JSON, normalised (see the module doc)."""
    inner = config.get("config") or {}
    facts: dict[str, Any] = {}
    for name in CONFIG_FIELDS:
        value = inner.get(name)
        if name == "Healthcheck" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if v not in (0, None, [], "")}
        if not _empty(value):
            facts[name] = value
    for name in TOP_FIELDS:
        if not _empty(config.get(name)):
            facts[name] = config[name]
    history = config.get("history") or []
    facts["layers"] = len((config.get("rootfs") or {}).get("diff_ids") or [])
    facts["history_layers"] = sum(1 for h in history if not h.get("empty_layer"))
    return facts


def _empty(value: object) -> bool:
    return value is None or value == [] or value == {} or value == ""


def diff_configs(
    left: Mapping[str, Any], right: Mapping[str, Any], names: tuple[str, str]
) -> list[str]:
    """One line per differing fact of two :func:`config_facts` results."""
    a, b = names
    lines = []
    for name in (*CONFIG_FIELDS, *TOP_FIELDS, "layers", "history_layers"):
        x, y = left.get(name), right.get(name)
        if x != y:
            lines.append(f"config {name}: {a} {_show(x)}, {b} {_show(y)}")
    return lines


def _show(value: object) -> str:
    return "(none)" if value is None else json.dumps(value, sort_keys=True)


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path
