"""Fleet-wide dependency factoring: a resolved pip closure becomes package layers that
do not depend on each other. Pure: no I/O.

A pip set (an app's ``pip`` list) is resolved once per environment (the key of the
layer it installs onto, plus the env the step sees) into a :class:`Resolution`: the
exact closure as pins (name, version, artifact file and sha256), which the lock file
keeps. Each pin is then installed with ``--no-deps`` from the shared wheelhouse into
its *own* layer whose parent is the environment layer, so the layer's key is the
environment's key plus that pin only: the same layer serves every app that needs the
package, in any combination (BuildKit's MergeOp, Nix's layered images).

Units of installation (:func:`plan_units`), in stack order:

* ``own``       one pin, one layer;
* ``conflict``  pins whose wheels write a common path (``.pth`` files, shared
  ``bin/`` entries, old-style namespace ``__init__.py``) share one layer, so no layer
  hides another's file;
* ``budget``    the least shared pins of an app over its layer budget, combined;
* ``chained``   pins whose install cannot be made independent (not a wheel: building
  an sdist runs arbitrary code) go last, in a layer on top of the stacked others.

Stack order is by popularity (how many apps of the fleet use the pin), most shared
first, then by name, so apps share the longest common prefix of layers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pipeline.digest import key_of

# Docker's overlay2 refuses more than 128 layers in one image; 125 is BuildKit's limit
# on a chain. Nix's layered images default to 100; so do we, for the whole image.
DEFAULT_LAYER_BUDGET = 100
WHEELS = "/root/.cache/pip/wheels"
PACKAGE_COMMENT = "pip package layer:"  # the history comment of a package layer

UnitReason = Literal["own", "conflict", "budget", "chained"]


@dataclass(frozen=True, order=True)
class Pin:
    """One package of a resolved closure, exactly: the artifact's file name in the
    wheelhouse and its sha256 (hex)."""

    name: str  # the canonical project name (lower case, "-" separated)
    version: str
    file: str
    sha256: str

    @property
    def req(self) -> str:
        return f"{self.name}=={self.version}"

    @property
    def wheel(self) -> bool:
        return self.file.endswith(".whl")

    @property
    def id(self) -> str:
        return f"{self.name}=={self.version}#{self.sha256[:16]}"


@dataclass(frozen=True)
class Resolution:
    """The exact closure of one pip set in one environment.

    ``groups``: names of pins whose files overlap (each group one layer)."""

    packages: tuple[str, ...]
    pins: tuple[Pin, ...]
    groups: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class Unit:
    pins: tuple[Pin, ...]
    reason: UnitReason
    detail: str = ""

    @property
    def label(self) -> str:
        names = " ".join(p.req for p in self.pins)
        return f"pip {names} (--no-deps)"


def canonical_name(name: str) -> str:
    """PEP 503 normalisation: ``Flask_MySQL`` -> ``flask-mysql``."""
    out: list[str] = []
    dash = False
    for ch in name.strip().lower():
        if ch in "-_.":
            dash = True
            continue
        if dash and out:
            out.append("-")
        dash = False
        out.append(ch)
    return "".join(out)


def resolution_key(env_key: str, packages: Sequence[str], env: Iterable[tuple[str, str]]) -> str:
    """What a resolution is cached and locked under: the environment layer's key, the
    env the pip step sees (``PIP_FIND_LINKS``, ...) and the set."""
    return key_of(
        {"v": 1, "env_layer": env_key, "env": [list(p) for p in env], "pip": list(packages)}
    )


def overlapping(files: Mapping[str, Mapping[str, str]]) -> tuple[tuple[str, ...], ...]:
    """Groups (sorted, 2+ names) of packages that install one path with different
    content (``files``: package -> path -> content digest), transitively. The same
    bytes at one path (a namespace ``__init__.py`` two packages ship alike) is no
    conflict: either layer on top gives the same file."""
    parent = {n: n for n in files}

    def find(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    owner: dict[str, tuple[str, str]] = {}
    for name in sorted(files):
        for path, digest in files[name].items():
            other, other_digest = owner.setdefault(path, (name, digest))
            if other != name and other_digest != digest:
                parent[find(name)] = find(other)
    groups: dict[str, list[str]] = {}
    for name in files:
        groups.setdefault(find(name), []).append(name)
    return tuple(sorted(tuple(sorted(g)) for g in groups.values() if len(g) > 1))


def plan_units(
    resolution: Resolution, popularity: Mapping[str, int], budget: int
) -> tuple[list[Unit], list[Pin]]:
    """The independent units of ``resolution`` in stack order (most shared first), at
    most ``budget`` of them (the least shared combined into the last), and the chained
    pins (installed last, on top of the others)."""
    chained = sorted(p for p in resolution.pins if not p.wheel)
    by_name = {p.name: p for p in resolution.pins if p.wheel}
    units: list[Unit] = []
    grouped: set[str] = set()
    for group in resolution.groups:
        pins = tuple(by_name[n] for n in group if n in by_name)
        grouped.update(group)
        if len(pins) == 1:
            units.append(Unit(pins, "own"))
        elif pins:
            detail = "their files overlap"
            units.append(Unit(pins, "conflict", detail))
    units += [Unit((p,), "own") for n, p in sorted(by_name.items()) if n not in grouped]

    def rank(unit: Unit) -> tuple[int, str]:
        return (-max(popularity.get(p.id, 0) for p in unit.pins), unit.pins[0].name)

    units.sort(key=rank)
    budget = max(1, budget)
    if len(units) > budget:
        keep, rest = units[: budget - 1], units[budget - 1 :]
        pins = tuple(sorted(p for u in rest for p in u.pins))
        detail = f"{len(rest)} least shared units over the layer budget of {budget}"
        units = [*keep, Unit(pins, "budget", detail)]
    return units, chained


def install_command(pins: Sequence[Pin]) -> str:
    """The shell command that installs exactly ``pins`` (no dependencies) from the
    wheelhouse: a missing artifact is fetched first (under the wheelhouse lock), every
    artifact is checked against its pinned sha256, then ``pip install --no-deps``
    by name and version (not by path: a path install would write ``direct_url.json``,
    which a one-shot install does not)."""
    fetch = " && ".join(
        f"{{ test -f {WHEELS}/{p.file} || flock {WHEELS}.lock python3 -m pip download -q"
        f" --no-deps -d {WHEELS} '{p.req}'; }}"
        for p in pins
    )
    sums = "\\n".join(f"{p.sha256}  {p.file}" for p in pins)
    check = f"(cd {WHEELS} && printf '{sums}\\n' | sha256sum -c --quiet -)"
    reqs = " ".join(f"'{p.req}'" for p in pins)
    install = f"python3 -m pip install -q --no-deps --no-index --find-links {WHEELS} {reqs}"
    return f"mkdir -p {WHEELS} && {fetch} && {check} && {install}"


def stack_key(env_key: str, units: Iterable[str]) -> str:
    """The key of a stack of independent layers on ``env_key``: order-free, so a
    popularity change elsewhere in the fleet never rebuilds the layers above it."""
    return key_of({"v": 1, "stack": env_key, "layers": sorted(units)})
