"""A bake project: bake files (and any ``app``/``image`` blocks among them) loaded into
one fleet. The entry points are :func:`load_bake` (``pipeline bake``: bake's file
lookup and its path rule, relative to the working directory) and
:func:`load_bake_specs` (a specs directory whose files hold ``target`` or ``function``
blocks: paths relative to each file). Pure apart from
reading spec files, Dockerfiles and ignore files.

``app``, ``image`` and ``locals`` blocks are loaded by the spec loader with every bake
variable available as ``var.NAME``; a group may list them by name. A bake target and
an app of the same name are an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import Location, SpecError
from pipeline.hcl import cty
from pipeline.hcl.values import Block, BlockRef, File
from pipeline.model import Fleet, ImageDef
from pipeline.spec.bake import Definition, evaluate_files, resolve
from pipeline.spec.bakefile import BakeFile, parse_bake_file
from pipeline.spec.bakelower import Lowered, fleet_parts, lower_target

BAKE_ONLY = ("target", "function")


@dataclass(frozen=True)
class BakeProject:
    definition: Definition
    lowered: Mapping[str, Lowered]
    fleet: Fleet
    outputs: tuple[str, ...]  # image ids of the requested targets, in order
    warnings: tuple[str, ...]


def is_bake(files: Sequence[File]) -> bool:
    """Whether parsed spec files hold bake blocks (``target``, ``function``); then
    top-level attributes are bake values too, else they stay an error."""
    return any(isinstance(item, Block) and item.type in BAKE_ONLY for f in files for item in f.body)


def load_definition(
    files: Sequence[BakeFile],
    names: Sequence[str] = (),
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    cli_vars: Mapping[str, str] | None = None,
) -> Definition:
    """The resolved definition only (``--print``): nothing is lowered, so attributes
    that could not be built here still print."""
    env = _environ(environ)
    parsed = [(parse_bake_file(f), f.directory) for f in files]
    ev = evaluate_files(parsed, env, dict(cli_vars or {}))
    native = _native_fleet(ev.native, ev.variables, env)
    natives = {i.split(".", 1)[1]: i for i in native.images if "/" not in i}
    return resolve(ev, names, overrides, env, natives=natives)


def _environ(environ: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(environ or {})
    if env.get("BUILDX_BAKE_DISABLE_VARS_ENV_LOOKUP", "") in ("1", "true", "True"):
        env = {k: v for k, v in env.items() if k.startswith("BUILDX_")}
    return env


def load_bake(
    files: Sequence[BakeFile],
    names: Sequence[str] = (),
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    cli_vars: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    file_relative: bool | None = None,
) -> BakeProject:
    """Evaluate, resolve and lower the bake files for the targets ``names``."""
    env = _environ(environ)
    here = (cwd or Path.cwd()).absolute()
    if file_relative is None:
        file_relative = env.get("BUILDX_BAKE_FILE_RELATIVE_PATHS", "") in ("1", "true", "True")
    parsed = [(parse_bake_file(f), f.directory) for f in files]
    return _project(parsed, names, overrides, env, dict(cli_vars or {}), here, file_relative)


def load_bake_specs(
    files: Sequence[File], overrides: Mapping[str, str], environ: Mapping[str, str]
) -> Fleet:
    """A specs directory with bake content, as a fleet of every target (paths relative
    to each file; ``--set NAME=VALUE`` sets variables, as for other specs)."""
    parsed = [(f, Path(f.path).parent.absolute()) for f in files]
    ev = evaluate_files(parsed, dict(environ), dict(overrides))
    names = list(dict.fromkeys(t.name for t in ev.targets))
    project = _project(
        parsed,
        names,
        (),
        dict(environ),
        dict(overrides),
        Path.cwd(),
        True,
        evaluated=ev,
    )
    return project.fleet


def _project(
    parsed: Sequence[tuple[File, Path]],
    names: Sequence[str],
    overrides: Sequence[str],
    environ: Mapping[str, str],
    cli_vars: Mapping[str, str],
    cwd: Path,
    file_relative: bool,
    evaluated: object = None,
) -> BakeProject:
    from pipeline.spec.bakeeval import Evaluated

    ev = (
        evaluated if isinstance(evaluated, Evaluated) else evaluate_files(parsed, environ, cli_vars)
    )
    native = _native_fleet(ev.native, ev.variables, environ)
    native_names = {i.split(".", 1)[1]: i for i in native.images if i.count("/") == 0}
    use_default = evaluated is None or bool(names)  # a specs dir may hold functions only
    definition = resolve(
        ev, names, overrides, environ, natives=native_names, use_default=use_default
    )
    lowered: dict[str, Lowered] = {}
    for name, target in definition.targets.items():
        lowered[name] = lower_target(target, cwd, file_relative, linked=name in definition.linked)
    images, volatile = fleet_parts(lowered)
    for image_id, image in native.images.items():
        if image_id in images:
            raise SpecError(
                image.loc, f'{image_id} is defined as an app and as target "{image_id[4:]}"'
            )
        images[image_id] = image
    groups = {g: tuple(_expand_ids(definition, g, native_names)) for g in definition.groups}
    outputs = tuple(
        native_names.get(n, f"app.{n}") if n not in lowered else lowered[n].app_id
        for n in definition.requested
    )
    fleet = Fleet(
        images=dict(sorted(images.items())),
        groups=dict(sorted(groups.items())),
        files=tuple(f.path for f, _ in parsed),
        volatile=volatile,
    )
    warnings = tuple(w for low in lowered.values() for w in low.warnings)
    return BakeProject(definition, lowered, fleet, outputs, warnings)


def _expand_ids(definition: Definition, group: str, natives: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    for member in definition.groups[group]["targets"]:
        if member in definition.groups:
            sub = _expand_ids(definition, member, natives)
            out += [i for i in sub if i not in out]
        elif member in natives:
            out.append(natives[member])
        elif f"app.{member}" not in out:
            out.append(f"app.{member}")
    return out


def _native_fleet(
    blocks: Sequence[tuple[Block, Path]], variables: Mapping[str, cty.V], environ: Mapping[str, str]
) -> Fleet:
    if not blocks:
        return Fleet(images={})
    from pipeline.spec.loader import Loader

    by_file: dict[str, list[Block]] = {}
    for block, _ in blocks:
        by_file.setdefault(block.loc.file, []).append(block)
    files = [File(path, tuple(items)) for path, items in by_file.items()]
    loader = Loader(files, {}, {})
    loader.variables = {k: _plain(v) for k, v in variables.items()}  # type: ignore[misc]
    return loader.load()


def _plain(value: cty.V) -> object:
    plain = cty.plain(value)
    return plain if not isinstance(plain, BlockRef) else plain.id


__all__ = ["ImageDef", "Location", "is_bake"]
