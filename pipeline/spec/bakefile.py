"""Finding and reading bake files, as ``docker buildx bake`` does. Pure apart from
reading the files.

Lookup: with no ``-f``, the files of :data:`DEFAULT_FILES` that exist in the working
directory, in that order (later ones override earlier ones when merged); a missing
default file is skipped, a missing ``-f`` file is an error. ``-f -`` reads standard
input. ``BUILDX_BAKE_FILE`` (``:``-separated, or ``BUILDX_BAKE_PATH_SEPARATOR``) is
used when no ``-f`` is given. A name ending in ``.json`` is HCL's JSON syntax, one
ending in ``.hcl`` native syntax, anything else is tried as native syntax, then JSON.
Compose files (``compose.yaml``...) are refused with a message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import Location, SpecError, UsageError
from pipeline.hcl.files import parse
from pipeline.hcl.jsonsyntax import BlockSchema, parse_json
from pipeline.hcl.values import File

COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
DEFAULT_FILES = (
    "docker-bake.json",
    "docker-bake.hcl",
    "docker-bake.override.json",
    "docker-bake.override.hcl",
)

# The block types of a bake file, for its JSON form.
JSON_SCHEMA: Mapping[str, BlockSchema] = {
    "variable": BlockSchema(1, {"validation": BlockSchema(0)}),
    "function": BlockSchema(1),
    "target": BlockSchema(1),
    "group": BlockSchema(1),
}


@dataclass(frozen=True)
class BakeFile:
    """One bake file: the name it was given by (what messages show) and its text."""

    name: str
    text: str
    path: Path | None  # None for standard input

    @property
    def directory(self) -> Path:
        """The directory of the file (the working directory for standard input)."""
        return (self.path.parent if self.path else Path(".")).absolute()


def find_files(
    names: Sequence[str], cwd: Path, environ: Mapping[str, str], stdin: str | None = None
) -> list[BakeFile]:
    """The bake files to read: ``names`` (``-f``), else ``BUILDX_BAKE_FILE``, else the
    defaults found in ``cwd``. UsageError when none is found."""
    given = list(names)
    if not given and environ.get("BUILDX_BAKE_FILE"):
        sep = environ.get("BUILDX_BAKE_PATH_SEPARATOR", ":")
        given = [n for n in environ["BUILDX_BAKE_FILE"].split(sep) if n]
    if given:
        out = []
        for name in given:
            if name == "-":
                out.append(BakeFile("-", stdin or "", None))
                continue
            path = cwd / name
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise UsageError(f"{name}: no such bake file") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise UsageError(f"{name}: cannot read: {exc}") from None
            out.append(BakeFile(name, text, path))
        return out
    for name in COMPOSE_FILES:
        if (cwd / name).is_file():
            raise UsageError(
                f"{name}: Compose files are not read by pipeline bake; "
                "describe the services as bake targets"
            )
    found = [
        BakeFile(n, (cwd / n).read_text(encoding="utf-8"), cwd / n)
        for n in DEFAULT_FILES
        if (cwd / n).is_file()
    ]
    if not found:
        raise UsageError(
            f"{cwd}: no bake file (looked for {', '.join(DEFAULT_FILES)}); give one with -f"
        )
    return found


def parse_bake_file(file: BakeFile) -> File:
    """The parsed file; SpecError located in it on bad syntax."""
    if file.name.endswith(".json"):
        return parse_json(file.text, file.name, JSON_SCHEMA)
    if file.name.endswith(".hcl") or (file.name == "-" and file.text.lstrip()[:1] != "{"):
        return parse(file.text, file.name)
    try:
        return parse(file.text, file.name)
    except SpecError as native_error:
        try:
            return parse_json(file.text, file.name, JSON_SCHEMA)
        except SpecError:
            raise native_error from None


def bake_display(file: BakeFile) -> Location:
    return Location(file.name)
