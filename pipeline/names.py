"""Names in the store: fleet-qualified image ids, tags, and the one rule for finding
the stored name a user means. Pure: no store, no file system.

A fleet's images are stored as ``FLEET/app.NAME`` and ``FLEET/image.NAME`` (the
fleet's name, then the ImageDef id), so ``app.web`` of one fleet never collides with
another fleet's. Tags (``acme/web:1.2``, ``busybox:latest``) are global, as in docker.
Stores written before fleets existed hold bare ``app.NAME`` ids; they are still
found, after every qualified name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from pipeline.errors import UsageError

KINDS = ("app.", "image.")
FLEET_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_ID_RE = re.compile(r"^(?:([a-z0-9][a-z0-9_.-]{0,62})/)?((?:app|image)\.[^/]+(?:/.+)?)$")
GENERIC_DIRS = ("specs",)  # a directory named so is named by the directory holding it


def qualify(fleet: str, image_id: str) -> str:
    """The stored name of ImageDef ``image_id`` of ``fleet`` (bare when no fleet)."""
    return f"{fleet}/{image_id}" if fleet else image_id


def split_id(name: str) -> tuple[str, str] | None:
    """``(fleet, image id)`` of a stored image id (fleet ``""`` for a bare, older id),
    or None for a tag."""
    m = _ID_RE.match(name)
    if m is None:
        return None
    return m.group(1) or "", m.group(2)


def is_id(name: str) -> bool:
    """Whether ``name`` is a stored image id (``FLEET/app.X``, ``app.X``, ...)."""
    return split_id(name) is not None


def is_app_id(name: str) -> bool:
    found = split_id(name)
    return found is not None and found[1].startswith("app.") and "/" not in found[1]


def short(name: str, current: str | None = None) -> str:
    """A stored id as people say it: ``web`` for the current fleet's app, ``other/web``
    for another fleet's, an image block as ``image.NAME``; a tag as it is."""
    found = split_id(name)
    if found is None:
        return name
    fleet, image_id = found
    shown = image_id.removeprefix("app.")
    return shown if not fleet or fleet == current else f"{fleet}/{shown}"


def check_fleet_name(name: str) -> str | None:
    """None when ``name`` is a valid fleet name, else what is wrong with it."""
    if FLEET_RE.match(name):
        return None
    return (
        f'invalid fleet name "{name}": use lowercase letters, digits, "_", "-" and ".", '
        "starting with a letter or digit (at most 63 characters)"
    )


def default_fleet_name(specs: Path) -> str:
    """The fleet name of a specs directory (or file) that sets none, as compose names a
    project: the directory's name, lowercased, other characters made ``-``. A
    directory called ``specs`` (or a file in one) is named by the directory holding
    it, so ``repo-a/specs`` and ``repo-b/specs`` are two fleets."""
    path = specs.absolute()
    folder = path.parent if path.suffix == ".hcl" else path
    while folder.name in GENERIC_DIRS and folder.parent != folder:
        folder = folder.parent
    text = re.sub(r"[^a-z0-9_.-]+", "-", folder.name.lower()).strip("-._")[:63]
    return text or "default"


def check_new_name(name: str) -> None:
    """UsageError unless ``name`` may be given to ``pipeline tag``: not empty, no
    whitespace, and not a stored image id (those are the builder's)."""
    if not name or any(c.isspace() or ord(c) < 32 for c in name):
        raise UsageError(f"{name!r}: not a valid image name")
    if is_id(name):
        raise UsageError(
            f"{name}: names of the form [FLEET/]app.NAME or image.NAME are kept for the "
            "images a fleet builds; choose another name"
        )
    if "@" in name:
        raise UsageError(f"{name}: a name cannot hold a digest")


def candidates(name: str, current: str | None) -> list[str]:
    """The stored names ``name`` may mean, in the order they are tried: the name
    itself, then the current fleet's ``app.NAME``, ``image.NAME`` (or ``NAME`` when it
    is an id already), then ``FLEET/NAME`` read as another fleet's app or image, then
    the bare ids of older stores."""
    out = [name]
    ids = [name] if name.startswith(KINDS) else [f"app.{name}", f"image.{name}"]
    if "/" in name and not name.startswith(KINDS):
        ids = []  # FLEET/APP or a tag with a path: never read as the current fleet's
    if current:
        out += [qualify(current, i) for i in ids]
    head, sep, tail = name.partition("/")
    if sep and FLEET_RE.match(head) and tail and not is_id(name):
        more = [tail] if tail.startswith(KINDS) else [f"app.{tail}", f"image.{tail}"]
        out += [qualify(head, i) for i in more]
    out += ids
    return list(dict.fromkeys(out))


def in_other_fleets(name: str, stored: Iterable[str]) -> list[str]:
    """The stored ids of any fleet whose app or image is called ``name``."""
    ids = {name} if name.startswith(KINDS) else {f"app.{name}", f"image.{name}"}
    out = []
    for n in stored:
        found = split_id(n)
        if found is not None and found[0] and found[1] in ids:
            out.append(n)
    return sorted(out)


def ambiguous(name: str, found: Sequence[str]) -> UsageError:
    listed = ", ".join(short(n) for n in found)
    return UsageError(
        f"{name}: several fleets have it ({listed}); say which as FLEET/{name.removeprefix('app.')}"
    )
