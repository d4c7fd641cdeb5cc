"""What ``pipeline bake`` does after the build: each target's outputs, on top of the
store's export and push code. Effects: files written, images pushed, ``docker load``.

* ``type=docker``: a docker-archive at ``dest``, or without ``dest`` loaded into the
  local docker (``docker load``; DOCKER_HOST is honoured as docker does);
* ``type=oci``: an OCI archive at ``dest`` (``tar=false``: an OCI layout directory);
* ``type=registry``, ``type=image,push=true``: pushed to each name (default: the tags);
* ``type=image`` without push: the names are tags in the store (the build sets them);
* ``type=local`` / ``type=tar``: the image's files, as a directory at ``dest`` / a tar;
* ``type=cacheonly`` and no output at all: the image stays in the store.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.build.outputs import previous_output
from pipeline.errors import PipelineError, UsageError
from pipeline.names import qualify
from pipeline.spec.bakelower import Export, Lowered
from pipeline.store import Store


class OutputError(PipelineError):
    """An output could not be written (exit status 1)."""


@dataclass(frozen=True)
class Done:
    target: str
    kind: str
    where: str  # a path, a reference, or "docker"


def write_outputs(
    store: Store,
    lowered: Sequence[Lowered],
    epoch: int,
    cwd: Path,
    push: Callable[[str, Sequence[str]], list[str]],
    environ: Mapping[str, str],
    namespace: str = "",
) -> list[Done]:
    """Write every output of the built targets (stored as ``NAMESPACE/app.NAME``).
    ``push(image_id, names)`` pushes one stored image to references and returns what
    it pushed (the caller owns the registry clients)."""
    done: list[Done] = []
    for low in lowered:
        for out in low.exports:
            try:
                done.extend(_one(store, low, out, epoch, cwd, push, environ, namespace))
            except OSError as exc:
                where = out.dest or out.kind
                raise OutputError(
                    f'target "{low.name}": output {where}: {exc.strerror or exc}'
                ) from None
    return done


def _one(
    store: Store,
    low: Lowered,
    out: Export,
    epoch: int,
    cwd: Path,
    push: Callable[[str, Sequence[str]], list[str]],
    environ: Mapping[str, str],
    namespace: str = "",
) -> list[Done]:
    from pipeline.build.images import Format, export_image

    stored = qualify(namespace, low.app_id)

    if out.dest:
        (cwd / out.dest).parent.mkdir(parents=True, exist_ok=True)
    if out.kind == "docker" and out.dest:
        export_image(
            store, stored, cwd / out.dest, "docker-archive", epoch, replaceable=previous_output
        )
        return [Done(low.name, "docker", str(cwd / out.dest))]
    if out.kind == "docker":
        docker_load(store, stored, epoch, environ)
        return [Done(low.name, "docker", "docker")]
    if out.kind in ("local", "tar"):
        if out.dest == "-":
            raise UsageError(f'target "{low.name}": an output to standard output is not supported')
        write_filesystem(store, stored, cwd / out.dest, out.kind == "tar", epoch)
        return [Done(low.name, out.kind, str(cwd / out.dest))]
    if out.kind == "oci":
        fmt: Format = "oci-archive" if out.oci_tar else "oci"
        export_image(
            store,
            stored,
            cwd / out.dest,
            fmt,
            epoch,
            replaceable=previous_output,
        )
        return [Done(low.name, "oci", str(cwd / out.dest))]
    if out.kind in ("registry", "image") and out.push:
        names = out.names or _tags(low)
        if not names:
            raise UsageError(f'target "{low.name}": nothing to push to: give it tags or a name')
        return [Done(low.name, "push", ref) for ref in push(stored, names)]
    if out.kind == "image":
        digest = store.resolve(stored)
        for name in out.names:
            if digest is not None:
                store.tag(name, digest)
        return [Done(low.name, "image", ",".join(out.names) or low.app_id)]
    return []


def _tags(low: Lowered) -> tuple[str, ...]:
    app = next((i for i in low.images if i.id == low.app_id), None)
    return app.tags if app else ()


def docker_load(store: Store, image_id: str, epoch: int, environ: Mapping[str, str]) -> None:
    """``docker load`` of the image's docker-archive (the docker CLI on PATH, talking to
    DOCKER_HOST or its default socket). OutputError with docker's message."""
    from pipeline.build.images import export_image

    docker = shutil.which("docker", path=environ.get("PATH", os.defpath))
    if docker is None:
        raise OutputError(f"{image_id}: --load needs the docker CLI, which is not on PATH")
    with store.staging() as staging:
        archive = staging.path / "image.tar"
        export_image(store, image_id, archive, "docker-archive", epoch)
        proc = subprocess.run(
            [docker, "load", "-i", str(archive)],
            env=dict(environ),
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise OutputError(f"{image_id}: docker load failed: {tail[0]}")


def export_kinds(exports: Sequence[Export]) -> str:
    return ",".join(e.kind for e in exports) or "store"


def write_filesystem(store: Store, image_id: str, dest: Path, as_tar: bool, epoch: int) -> None:
    """The image's merged filesystem (what ``type=local`` and ``type=tar`` export): a
    directory tree at ``dest``, or a tar of it (``-`` is standard output's place, not
    supported here). Times are clamped to ``epoch`` when it is set; owners are kept
    when running as root."""
    import tarfile

    from pipeline.build.images import load_image
    from pipeline.build.outputs import merge_tree, place
    from pipeline.fs.layerstack import LayerStack

    image = load_image(store, image_id)
    stack = LayerStack([store.layer_path(d) for d, _ in reversed(image.layers)])
    entries = [e for e in stack.walk("/") if e.path != "/"]

    def write_tar(tmp: Path) -> None:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for e in entries:
                info = tarfile.TarInfo(e.path.lstrip("/"))
                st = e.stat
                info.mode, info.uid, info.gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
                info.mtime = min(int(st.st_mtime), epoch) if epoch else int(st.st_mtime)
                if stat.S_ISDIR(st.st_mode):
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif stat.S_ISLNK(st.st_mode):
                    info.type, info.linkname = tarfile.SYMTYPE, os.readlink(e.host)
                    tar.addfile(info)
                elif stat.S_ISREG(st.st_mode):
                    info.size = st.st_size
                    with open(e.host, "rb") as f:
                        tar.addfile(info, f)
                # device nodes and fifos are not exported

    def write_tree(tmp: Path) -> None:
        tmp.mkdir()
        as_root = os.geteuid() == 0
        for e in entries:  # a fresh directory, parents before children
            target = tmp / e.path.lstrip("/")
            st = e.stat
            if stat.S_ISDIR(st.st_mode):
                target.mkdir()
            elif stat.S_ISLNK(st.st_mode):
                target.symlink_to(os.readlink(e.host))
            elif stat.S_ISREG(st.st_mode):
                shutil.copyfile(e.host, target, follow_symlinks=False)
            else:
                continue
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(target, stat.S_IMODE(st.st_mode))
            if as_root:
                os.lchown(target, st.st_uid, st.st_gid)

    if as_tar:
        place(dest, write_tar, directory=False, replaceable=previous_output)
    else:
        merge_tree(dest, write_tree, store.root / "cache" / ".local-exports")
