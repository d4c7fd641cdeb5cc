"""Resolved bake targets -> ImageDefs of the fleet, and what each target exports.
Pure apart from reading Dockerfiles and the build contexts' ignore files.

Paths resolve as bake resolves them: ``context`` and local ``contexts`` against the
working directory of the command (``cwd://`` forces that), or against the directory of
the bake file that set them when ``BUILDX_BAKE_FILE_RELATIVE_PATHS=1`` (and for
targets in a specs directory, which never depends on the working directory);
``dockerfile`` against the context unless absolute. A target ``NAME`` is the app
``app.NAME``; its Dockerfile's earlier stages are ``app.NAME/STAGE``.

Attributes that cannot apply here are refused with a located error (remote contexts,
other platforms, ``call`` other than build, ``entitlements``, ``ssh``,
``extra-hosts``, ``ulimits``, ``shm-size`` other than the sandbox's 64m, ``network``
other than default/none, unknown output types), or
reported as a warning when only metadata is lost (``attest``, ``annotations``,
``secret``, cache backends other than ``registry``, ``resources``, ``policy``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipeline.errors import Location, SpecError
from pipeline.model import BaseRef, ImageDef, Meta, Run, classify_ref
from pipeline.oci.platform import platform_args
from pipeline.spec.baketarget import Entry, Target
from pipeline.spec.dockercontexts import NamedContext

REMOTE = re.compile(r"^([a-z][a-z0-9+.-]*://|git@)", re.I)
OUTPUT_TYPES = ("docker", "oci", "registry", "image", "cacheonly", "tar", "local")


@dataclass(frozen=True)
class Export:
    """One output of a target: ``kind`` docker/oci/registry/image/cacheonly; ``dest`` a
    path (docker/oci); ``names`` the references to push or tag; ``push`` for image."""

    kind: str
    dest: str = ""
    names: tuple[str, ...] = ()
    push: bool = False
    oci_tar: bool = True  # oci: an archive (tar=true, the default) or a layout dir


@dataclass(frozen=True)
class Lowered:
    """A target in the fleet: its images, its exports and build settings."""

    name: str
    app_id: str
    images: tuple[ImageDef, ...]
    exports: tuple[Export, ...]
    cache_from: tuple[str, ...] = ()  # registry cache repositories
    cache_to: tuple[str, ...] = ()
    no_cache: bool = False
    no_cache_stages: tuple[str, ...] = ()  # image ids whose own steps skip the cache
    pull: bool = False
    volatile_args: tuple[tuple[str, str], ...] = ()  # (name, value) of args made volatile
    volatile_all: bool = False
    volatile_by: tuple[str, ...] = ()  # the functions that made them (timestamp, ...)
    warnings: tuple[str, ...] = field(default=())


def _err(t: Target, key: str, message: str) -> SpecError:
    return SpecError(t.where.get(key), f'attribute "{key}": {message}', block=f'target "{t.name}"')


def _local(t: Target, key: str, value: str, base: str, cwd: Path) -> Path:
    if REMOTE.match(value) and not value.startswith("cwd://"):
        raise _err(t, key, f'remote contexts are not supported here ("{value}")')
    if value.startswith("cwd://"):
        return Path(os.path.normpath(cwd / value.removeprefix("cwd://")))
    return Path(os.path.normpath(Path(base) / value))


def lower_target(t: Target, cwd: Path, file_relative: bool, linked: bool = False) -> Lowered:
    """The ImageDefs and exports of one resolved target; SpecError when an attribute
    cannot apply here."""
    from pipeline.spec.dockerfile import load_dockerfile

    label = f'target "{t.name}"'
    v = t.values
    warnings: list[str] = []

    def warn(key: str, message: str) -> None:
        where = t.where.get(key)
        warnings.append(
            f'{where}: {label}: attribute "{key}": {message}' if where else f"{label}: {message}"
        )

    _check_refusals(t, warn)
    context_base = t.directory if file_relative else str(cwd)
    context = _local(t, "context", v.get("context") or ".", context_base, cwd)
    if not context.is_dir():
        raise _err(t, "context", f"directory not found: {context}")
    inline = v.get("dockerfile-inline")
    dockerfile_value = v.get("dockerfile") or "Dockerfile"
    if dockerfile_value.startswith("cwd://"):
        dockerfile = Path(os.path.normpath(cwd / dockerfile_value.removeprefix("cwd://")))
    else:
        dockerfile = Path(os.path.normpath(context / dockerfile_value))
    if inline is None and not dockerfile.is_file():
        raise _err(t, "dockerfile", f"Dockerfile not found: {dockerfile}")
    contexts: dict[str, NamedContext] = {}
    for name, value in (v.get("contexts") or {}).items():
        contexts[name] = _named_context(t, name, value, cwd, file_relative)
    args = {k: a for k, a in (v.get("args") or {}).items() if a is not None}
    app_id = f"app.{t.name}"
    exports, cache_from, cache_to = _exports(t, warn, linked)
    loc = t.where.get("target") if v.get("target") else None
    loc = loc or t.where.get("dockerfile") or t.where.get("dockerfile-inline")
    loc = loc or t.where.get("context") or Location(t.directory)
    shown = dockerfile if inline is None else Path(f"{t.name}.Dockerfile (dockerfile-inline)")
    images = load_dockerfile(
        shown,
        app_id,
        context,
        args,
        tuple(v.get("tags") or ()),
        loc,
        target=v.get("target"),
        contexts=contexts,
        inline=inline,
    )
    images = _adjust(t, images, app_id)
    ids = {i.id for i in images}
    stage_filter: list[str] = []
    for stage in v.get("no-cache-filter") or ():
        wanted = f"{app_id}/{stage.lower()}"
        if stage.lower() == (v.get("target") or "").lower():
            stage_filter.append(app_id)
        elif wanted in ids:
            stage_filter.append(wanted)
        else:
            warn("no-cache-filter", f'"{stage}" is not a stage built for this target')
    volatile_args = tuple(sorted(args.items())) if t.volatile.get("args") else ()
    volatile_by = tuple(sorted({f for fns in t.volatile.values() for f in fns}))
    return Lowered(
        t.name,
        app_id,
        images,
        exports,
        cache_from,
        cache_to,
        bool(v.get("no-cache")),
        tuple(stage_filter),
        bool(v.get("pull")),
        volatile_args,
        bool(t.volatile.get("dockerfile-inline") or t.volatile.get("target")),
        volatile_by,
        tuple(warnings),
    )


def _check_refusals(t: Target, warn: object) -> None:
    v = t.values
    if v.get("call") not in (None, "build"):
        raise _err(t, "call", f'"{v["call"]}" is not supported (only build)')
    here = platform_args()["TARGETPLATFORM"]
    for plat in v.get("platforms") or ():
        if plat not in (here, here.rsplit("/", 1)[0] if here.count("/") > 1 else here, "local"):
            raise _err(
                t,
                "platforms",
                f'cross-platform builds are not supported ("{plat}"; this machine builds "{here}")',
            )
    network = v.get("network")
    if network not in (None, "default", "none"):
        raise _err(t, "network", f'"{network}" is not supported (use default or none)')
    for key, why in (
        ("entitlements", "no entitlement can be granted here"),
        ("ssh", "SSH agent forwarding is not supported"),
        ("extra-hosts", "extra /etc/hosts entries are not supported in RUN steps"),
        ("ulimits", "ulimits of RUN steps cannot be set here"),
    ):
        if v.get(key):
            raise _err(t, key, why)
    shm = v.get("shm-size")
    if shm is not None and _bytes(shm) != 64 * 1024 * 1024:
        raise _err(
            t, "shm-size", f'"{shm}" cannot be set: RUN steps get the sandbox\'s 64m /dev/shm'
        )
    assert callable(warn)
    for key, why in (
        ("attest", "attestations are not produced"),
        ("annotations", "manifest annotations are not written"),
        ("secret", "secrets are not passed to RUN steps (RUN --mount=type=secret is refused)"),
        ("resources", "resource limits of RUN steps are not applied"),
        ("policy", "build policies are not evaluated"),
    ):
        if v.get(key):
            warn(key, why)


def _bytes(text: str) -> int | None:
    m = re.fullmatch(r"(\d+)\s*([bkmg]?)b?", text.strip().lower())
    if not m:
        return None
    return int(m.group(1)) * {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2)]


def _named_context(
    t: Target, name: str, value: str, cwd: Path, file_relative: bool
) -> NamedContext:
    loc = t.where.get("contexts")
    if value.startswith("target:"):
        return BaseRef("block", f"app.{value.removeprefix('target:')}", loc)
    if value.startswith("docker-image://"):
        return classify_ref(value.removeprefix("docker-image://"), loc)
    if value.startswith("oci-layout://"):
        layout = value.removeprefix("oci-layout://").split("@", 1)[0].split(":", 1)[0]
        base = t.context_dirs.get(name, t.directory) if file_relative else str(cwd)
        return BaseRef("oci-layout", str(Path(os.path.normpath(Path(base) / layout))), loc)
    base_dir = t.context_dirs.get(name, t.directory) if file_relative else str(cwd)
    path = _local(t, "contexts", value, base_dir, cwd)
    if not path.is_dir():
        raise _err(t, "contexts", f'"{name}": directory not found: {path}')
    return path


def _adjust(t: Target, images: tuple[ImageDef, ...], app_id: str) -> tuple[ImageDef, ...]:
    """bake's labels on the app; its network mode on every RUN step."""
    labels = {k: x for k, x in (t.values.get("labels") or {}).items() if x is not None}
    network = t.values.get("network")
    out = []
    for image in images:
        steps = image.steps
        if network == "none":
            steps = tuple(replace(s, network="none") if isinstance(s, Run) else s for s in steps)
        if image.id == app_id and labels:
            steps = (*steps, Meta("labels", tuple(sorted(labels.items())), t.where.get("labels")))
        out.append(replace(image, steps=steps))
    return tuple(out)


def _exports(
    t: Target, warn: object, linked: bool
) -> tuple[tuple[Export, ...], tuple[str, ...], tuple[str, ...]]:
    assert callable(warn)
    tags = tuple(t.values.get("tags") or ())
    exports: list[Export] = []
    for entry in t.values.get("output") or ():
        exports.append(_export(t, entry, tags))
    if linked and not exports:
        exports.append(Export("cacheonly"))
    caches: dict[str, list[str]] = {"cache-from": [], "cache-to": []}
    for key in caches:
        for entry in t.values.get(key) or ():
            kind = entry.get("type", "registry")
            if kind == "registry" and entry.get("ref"):
                caches[key].append(entry["ref"])
            else:
                warn(key, f'cache type "{kind}" is not supported here (only registry); ignored')
    return tuple(exports), tuple(caches["cache-from"]), tuple(caches["cache-to"])


def _export(t: Target, entry: Entry, tags: tuple[str, ...]) -> Export:
    kind = entry.get("type", "")
    if kind not in OUTPUT_TYPES:
        raise _err(t, "output", f'unknown output type "{kind}"')
    names = tuple(n for n in entry.get("name", "").split(",") if n) or tags
    dest = entry.get("dest", "")
    if kind in ("oci", "tar", "local") and not dest:
        raise _err(t, "output", f"type={kind} needs a dest")
    if kind == "registry":
        return Export("registry", names=names, push=True)
    if kind == "image":
        return Export("image", names=names, push=entry.get("push", "false") in ("true", "1"))
    oci_tar = entry.get("tar", "true") not in ("false", "0")
    return Export(kind, dest, names, oci_tar=oci_tar)


def fleet_parts(
    lowered: Mapping[str, Lowered],
) -> tuple[dict[str, ImageDef], dict[str, tuple[str, ...]]]:
    """The images of all targets, and what is volatile in each (see Fleet.volatile)."""
    images: dict[str, ImageDef] = {}
    volatile: dict[str, tuple[str, ...]] = {}
    for low in lowered.values():
        for image in low.images:
            images[image.id] = image
        marks = [f"arg:{k}={v}" for k, v in low.volatile_args]
        if low.volatile_all:
            marks.append("all")
        if marks:
            marks += [f"by:{f}" for f in low.volatile_by]
        if marks:
            volatile[low.app_id] = tuple(marks)
    return images, volatile
