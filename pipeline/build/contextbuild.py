"""``pipeline build CONTEXT`` (docker build's arguments) as a fleet of one app.

No second pipeline: the arguments become one bake-style target, lowered by the same
code that turns ``dockerfile = ...`` apps and bake targets into ImageDefs
(:func:`pipeline.spec.bakelower.lower_target` over
:func:`pipeline.spec.dockerfile.load_dockerfile`), so its layers have the keys an
equivalent ``app`` has and live in the same store entries.

Contracts:

* Which arguments are a context: :func:`is_context_path` (pure). An argument that
  names a file is a Dockerfile, its directory the context (``pipeline build
  Dockerfile -t NAME`` works, which docker refuses).
* The app's id is ``app.build:<context directory name>`` (a name no spec writes); the
  image is stored under it and under each ``-t`` tag, a tag without ``:TAG`` as
  ``NAME:latest``, as docker does.
* Bases (:func:`ensure_bases`): ``missing`` (the default) uses a base the store holds
  under its name (bootstrapped, imported or pulled) and pulls the others (a name
  without a registry host from Docker Hub, as docker does); ``always`` pulls again
  every base that names a registry host; ``never`` pulls nothing. No lock file is
  written: the user's directory is never touched.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import UsageError
from pipeline.model import Fleet, ImageDef

if TYPE_CHECKING:
    from pipeline.spec.bakelower import Lowered
    from pipeline.store import Store

ID_PREFIX = "app.build:"
PULL_POLICIES = {
    "missing": "missing",
    "always": "always",
    "never": "never",
    "true": "always",
    "false": "missing",
    "newer": "always",
}


def is_context_path(arg: str) -> bool:
    """Whether a ``pipeline build`` argument is a path (a context directory or a
    Dockerfile) by its spelling alone: ``.``, ``..``, ``-`` is not supported, or any
    text with a ``/``. A bare word is a fleet name, even if a directory of that name
    exists (write ``./web`` for the directory). Pure."""
    return arg in (".", "..") or "/" in arg


@dataclass(frozen=True)
class ContextRequest:
    """docker build's arguments. ``dockerfile``: ``-f`` (None: ``CONTEXT/Dockerfile``);
    ``inline``: the Dockerfile's text when ``-f -`` read it from standard input."""

    path: str  # the CONTEXT argument as given
    dockerfile: str | None = None
    inline: str | None = None
    tags: tuple[str, ...] = ()
    target: str | None = None
    build_args: tuple[tuple[str, str], ...] = ()
    outputs: tuple[str, ...] = ()
    no_cache: bool = False
    network: str | None = None


def normal_tag(text: str) -> str:
    """A ``-t`` value as stored: ``NAME:latest`` when it has no tag (docker's rule);
    UsageError for a malformed name or a digest."""
    from pipeline.registry.reference import Reference

    try:
        ref = Reference.parse(text)
    except UsageError as exc:
        raise UsageError(f"-t {exc}") from None
    if ref.digest is not None:
        raise UsageError(f"-t {text}: give NAME[:TAG], not a digest")
    tail = text.rsplit("/", 1)[-1]
    return text if ":" in tail else f"{text}:latest"


def app_id_for(context: Path) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", context.name.lower()).strip("-.") or "context"
    return ID_PREFIX + name


def context_and_dockerfile(req: ContextRequest, cwd: Path) -> tuple[Path, Path | None]:
    """The context directory and the Dockerfile (None: from standard input)."""
    path = Path(os.path.normpath(cwd / req.path))
    if path.is_file():
        if req.dockerfile is not None:
            raise UsageError(f"{req.path}: is a file; with -f, CONTEXT must be a directory")
        return path.parent, path
    if not path.is_dir():
        raise UsageError(f"{req.path}: no such context directory")
    if req.dockerfile == "-":
        return path, None
    dockerfile = (
        Path(os.path.normpath(cwd / req.dockerfile)) if req.dockerfile else path / "Dockerfile"
    )
    if not dockerfile.is_file():
        shown = req.dockerfile or str(dockerfile)
        raise UsageError(f"{shown}: no such Dockerfile (give one with -f FILE, or -f - for stdin)")
    return path, dockerfile


def lower(req: ContextRequest, cwd: Path) -> tuple[Lowered, Path | None]:
    """The one target docker build's arguments describe, and its Dockerfile (None:
    standard input). SpecError for the Dockerfile, UsageError for the arguments."""
    from pipeline.spec.bakelower import lower_target
    from pipeline.spec.baketarget import Target, parse_entry

    context, dockerfile = context_and_dockerfile(req, cwd)
    name = app_id_for(context).removeprefix("app.")
    values: dict[str, object] = {
        "context": str(context),
        "tags": [normal_tag(t) for t in req.tags],
        "args": dict(req.build_args),
        "output": [parse_entry("output", o, None, "-o") for o in req.outputs],
        "no-cache": req.no_cache,
    }
    if dockerfile is not None:
        values["dockerfile"] = str(dockerfile)
    else:
        values["dockerfile-inline"] = req.inline or ""
    if req.target:
        values["target"] = req.target
    if req.network:
        values["network"] = req.network
    low = lower_target(Target(name, values, directory=str(cwd)), cwd, file_relative=False)
    return low, dockerfile


def fleet_of(low: Lowered) -> Fleet:
    """The fleet of the one target: its stages and the app."""
    return Fleet(images={i.id: i for i in low.images})


def ensure_bases(
    store: Store,
    images: Sequence[ImageDef],
    policy: str,
    pull: Callable[[str], str],
) -> list[str]:
    """Make each base of ``images`` that comes from a registry resolvable in the
    store by its own text, by ``policy`` (see the module's contracts); ``pull(ref)``
    pulls one (and returns its digest). The refs pulled, in order. UsageError, at the
    FROM line, for a base ``never`` cannot find."""
    pulled: list[str] = []
    for image in images:
        base = image.base
        if base.kind not in ("store", "registry") or base.ref in pulled:
            continue
        have = store.resolve(base.ref) is not None
        again = policy == "always" and base.kind == "registry"
        if have and not again:
            continue
        if policy == "never":
            where = f"{base.loc}: " if base.loc else ""
            raise UsageError(
                f"{where}FROM {base.ref}: not in the store and --pull=never "
                "(pipeline bootstrap, import or pull it)"
            )
        pull(base.ref)
        pulled.append(base.ref)
    return pulled


@dataclass(frozen=True)
class StepRow:
    """One instruction of the Dockerfile and what the build did with it."""

    number: int
    total: int
    text: str  # the instruction as written (its first line)
    outcome: str  # built, cached, pulled, failed, skipped, base, config, missing
    size: int = 0
    seconds: float = 0.0
    layer: str = ""  # the diff_id it produced (or the base's manifest digest)


def step_rows(
    images: Sequence[ImageDef],
    plans: Mapping[str, tuple[str, ...]],
    results: Mapping[str, tuple[str, float, int, str]],
    text: str,
) -> list[StepRow]:
    """Every instruction of the stages that were built, in Dockerfile order, with its
    result, as ``docker build`` lists them. ``plans``: image id -> its node keys
    (base first); ``results``: node key -> (outcome, seconds, size, diff_id); ``text``:
    the Dockerfile, for the instructions as written. Pure."""
    lines = text.splitlines()

    def written(line: int | None, fallback: str) -> str:
        if line and 0 < line <= len(lines):
            return " ".join(lines[line - 1].rstrip("\\").split())
        return fallback

    rows: list[tuple[str, str, int, float, str]] = []
    for image in images:
        nodes = plans.get(image.id)
        if nodes is None:
            continue  # a stage the target does not need
        layered = [s for s in image.steps if not _is_meta(s)]
        own = list(nodes[len(nodes) - len(layered) :]) if layered else []
        from_line = image.loc.line if image.loc else None
        base = image.base
        from_text = written(from_line, f"FROM {base.ref}")
        base_key = nodes[0] if nodes and len(nodes) > len(layered) else ""
        base_result = results.get(base_key, ("base", 0.0, 0, ""))[0] if base_key else "base"
        shown = "base" if base_result in ("cached", "built", "base") else base_result
        shown = {"block": "stage", "scratch": "scratch"}.get(base.kind, shown)
        rows.append((from_text, shown, 0, 0.0, ""))
        for step in image.steps:
            line = step.loc.line if step.loc else None
            if _is_meta(step):
                rows.append((written(line, str(step.field)), "config", 0, 0.0, ""))  # type: ignore[union-attr]
                continue
            key = own.pop(0)
            outcome, seconds, size, diff_id = results.get(key, ("skipped", 0.0, 0, ""))
            rows.append((written(line, key), outcome, size, seconds, diff_id))
    total = len(rows)
    return [StepRow(i, total, *row) for i, row in enumerate(rows, 1)]


def _is_meta(step: object) -> bool:
    from pipeline.model import Meta

    return isinstance(step, Meta)
