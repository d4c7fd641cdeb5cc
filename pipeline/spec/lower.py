"""Lowering of declarative ``app`` blocks to ordered steps. Pure.

The compiler decides the layers, most shared first::

    base -> system packages (apt) -> language packages (pip) -> source -> metadata

Package lists are sets: sorted and deduplicated, so two apps asking for the same
packages in any order produce the same step, hence the same cache key and one node.
Metadata (workdir, env, user, expose, labels, entrypoint, cmd) comes last and makes
no layer, so it never invalidates a shared layer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from pipeline.errors import Location
from pipeline.model import BaseRef, Copy, ImageDef, Meta, Mount, Pairs, Run, Step

APT_TEMPLATE = (
    "apt-get update && apt-get install -y --no-install-recommends {packages}"
    " && rm -rf /var/lib/apt/lists/*"
)
APT_ENV = (("DEBIAN_FRONTEND", "noninteractive"),)
# pip's HTTP cache keeps nothing when a proxy strips Cache-Control headers (seen here),
# so the fleet shares a wheelhouse instead: downloads land once in the cache mount
# (under a lock, as parallel steps share it) and installs read only from there.
WHEELS = "/root/.cache/pip/wheels"
PIP_TEMPLATE = (
    f"flock {WHEELS}.lock python3 -m pip download -q -d {WHEELS} {{packages}}"
    f" && python3 -m pip install --no-index --find-links {WHEELS} {{packages}}"
)
# Step-only settings (part of the key, not of the image config): Debian marks its
# Python as externally managed, and pip's root/version warnings are noise here.
PIP_ENV = (
    ("PIP_BREAK_SYSTEM_PACKAGES", "1"),
    ("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
    ("PIP_ROOT_USER_ACTION", "ignore"),
)
PIP_CACHE = Mount(type="cache", target="/root/.cache/pip", id="pip")
DEFAULT_APP_WORKDIR = "/app"


@dataclass(frozen=True)
class AppFields:
    """The evaluated attributes of an ``app`` block (after ``inherits``/``matrix``)."""

    id: str
    base: BaseRef
    apt: tuple[str, ...] = ()
    pip: tuple[str, ...] = ()
    factoring: bool = True  # pip packages in independent, shared layers (pipeline.factoring)
    source: str = ""  # absolute path of the build context, "" for none
    ignore: tuple[str, ...] = ()  # patterns from the context's ignore file
    workdir: str = ""
    env: Pairs = ()
    user: str = ""
    expose: tuple[str, ...] = ()
    labels: Pairs = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    tags: tuple[str, ...] = ()
    loc: Location | None = None
    apt_loc: Location | None = None
    pip_loc: Location | None = None
    source_loc: Location | None = None


def package_set(names: Iterable[str]) -> tuple[str, ...]:
    """Sorted, deduplicated, whitespace-stripped package names; empty names dropped."""
    return tuple(sorted({n.strip() for n in names if n.strip()}))


def normalise_port(port: str | int) -> str:
    """``8080`` -> ``"8080/tcp"``; ``"53/udp"`` stays. Raises ValueError on junk."""
    text = str(port).strip().lower()
    number, _, proto = text.partition("/")
    proto = proto or "tcp"
    if not number.isdigit() or not 0 < int(number) < 65536 or proto not in ("tcp", "udp", "sctp"):
        raise ValueError(f"not a port: {port!r}")
    return f"{int(number)}/{proto}"


def lower_app(app: AppFields) -> ImageDef:
    """The ImageDef for an app: apt, pip and source layers, then metadata."""
    steps: list[Step] = []
    apt = package_set(app.apt)
    if apt:
        steps.append(apt_step(apt, app.apt_loc))
    pip = package_set(app.pip)
    if pip:
        steps.append(
            Run(
                PIP_TEMPLATE.format(packages=" ".join(pip)),
                mounts=(PIP_CACHE,),
                env=PIP_ENV,
                loc=app.pip_loc,
                display=f"pip install {' '.join(pip)}",
                pip=pip if app.factoring else (),
            )
        )
    workdir = app.workdir or (DEFAULT_APP_WORKDIR if app.source else "")
    if app.source:
        steps.append(
            Copy(
                sources=(".",),
                dest=workdir.rstrip("/") + "/",
                context=app.source,
                ignore=app.ignore,
                loc=app.source_loc,
            )
        )
    steps.extend(_metadata(app, workdir))
    return ImageDef(
        id=app.id, base=app.base, steps=tuple(steps), tags=app.tags, is_app=True, loc=app.loc
    )


def apt_step(packages: Sequence[str], loc: Location | None) -> Run:
    """The step that installs ``packages`` (a sorted set) with apt."""
    return Run(
        APT_TEMPLATE.format(packages=" ".join(packages)),
        env=APT_ENV,
        loc=loc,
        display=f"{APT_DISPLAY}{' '.join(packages)}",
    )


APT_DISPLAY = "apt-get install "
APT_LAYERS = 8  # at most this many system layers per app; the rest share the last


def _apt_packages(step: object) -> tuple[str, ...] | None:
    if isinstance(step, Run) and step.env == APT_ENV and step.display.startswith(APT_DISPLAY):
        return tuple(step.display.removeprefix(APT_DISPLAY).split())
    return None


def order_apt(images: Mapping[str, ImageDef], skip: frozenset[str]) -> dict[str, ImageDef]:
    """Order-based sharing of system packages across the fleet. Pure.

    An app's ``apt`` set becomes a chain of layers, most popular packages first: the
    packages are sorted by how many apps (on the same base) ask for them, then by
    name, and split where that count changes, so apps that share packages share the
    longest common prefix of system layers (at most APT_LAYERS layers; the rest go in
    the last). A set whose packages all have one count stays one layer, exactly as
    before. Apps in ``skip`` (factoring switched off) keep their one layer."""
    counts: dict[tuple[str, str], int] = {}
    for image in images.values():
        for step in image.steps:
            for name in _apt_packages(step) or ():
                key = (image.base.ref, name)
                counts[key] = counts.get(key, 0) + 1
    out = dict(images)
    for image_id, image in images.items():
        if image_id in skip or not image.is_app:
            continue
        steps: list[Step] = []
        for step in image.steps:
            names = _apt_packages(step)
            if not names or not isinstance(step, Run):
                steps.append(step)
                continue
            ranked = sorted(names, key=lambda n: (-counts[(image.base.ref, n)], n))
            groups: list[list[str]] = []
            for name in ranked:
                count = counts[(image.base.ref, name)]
                same = bool(groups) and counts[(image.base.ref, groups[-1][0])] == count
                if same or len(groups) == APT_LAYERS:
                    groups[-1].append(name)
                else:
                    groups.append([name])
            steps.extend(apt_step(tuple(sorted(g)), step.loc) for g in groups)
        out[image_id] = replace(image, steps=tuple(steps))
    return out


def _metadata(app: AppFields, workdir: str) -> Sequence[Meta]:
    out: list[Meta] = []
    if workdir:
        out.append(Meta("workdir", workdir, app.loc))
    if app.env:
        out.append(Meta("env", app.env, app.loc))
    if app.user:
        out.append(Meta("user", app.user, app.loc))
    if app.expose:
        out.append(Meta("expose", tuple(sorted(set(app.expose))), app.loc))
    if app.labels:
        out.append(Meta("labels", app.labels, app.loc))
    if app.entrypoint is not None:
        out.append(Meta("entrypoint", app.entrypoint, app.loc))
    if app.cmd is not None:
        out.append(Meta("cmd", app.cmd, app.loc))
    return out
