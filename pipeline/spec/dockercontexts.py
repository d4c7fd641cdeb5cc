"""Named build contexts and stage selection for Dockerfile apps. Pure apart from
reading the ignore file of a directory context.

A named context (``docker buildx build --build-context NAME=...``, bake's
``contexts``) is an image (a BaseRef; kind ``block`` for another target's image) or a
local directory. ``FROM NAME`` and ``COPY --from=NAME`` use it in place of the image
or the stage of that name, as BuildKit does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from pipeline.errors import Location, SpecError, did_you_mean
from pipeline.fs.context import ContextError, check_sources, read_ignore
from pipeline.model import BaseRef, Copy, ImageDef

NamedContext = BaseRef | Path


class _Instruction(Protocol):
    @property
    def word(self) -> str: ...
    @property
    def value(self) -> str: ...


Ins = TypeVar("Ins", bound=_Instruction)


def context_image(
    extra: dict[str, ImageDef], app_id: str, name: str, ctx: NamedContext, loc: Location
) -> str:
    """The id of the image a named context stands for, made on first use into
    ``extra``: an image context is that image; a directory is one layer of its files."""
    if isinstance(ctx, BaseRef) and ctx.kind == "block":
        return ctx.ref
    image_id = f"{app_id}/context/{name}"
    if image_id not in extra:
        if isinstance(ctx, BaseRef):
            extra[image_id] = ImageDef(image_id, ctx, loc=loc)
        else:
            copy = Copy((".",), "/", str(ctx), None, None, None, read_ignore(ctx), loc)
            extra[image_id] = ImageDef(
                image_id, BaseRef("scratch", "scratch", loc), (copy,), loc=loc
            )
    return image_id


def up_to_stage(instrs: Sequence[Ins], target: str, loc: Location, block: str) -> list[Ins]:
    """The instructions up to the end of the stage named ``target`` (``--target``)."""
    names: list[str] = []
    start: int | None = None
    for i, ins in enumerate(instrs):
        if ins.word != "FROM":
            continue
        if start is not None:
            return list(instrs[:i])
        words = ins.value.split()
        if len(words) >= 3 and words[-2].lower() == "as":
            names.append(words[-1].lower())
            if words[-1].lower() == target.lower():
                start = i
    if start is None:
        raise SpecError(
            loc,
            f'target stage "{target}" is not a stage of the Dockerfile',
            block=block,
            hint=did_you_mean(target.lower(), names),
        )
    return list(instrs)


def context_copy(
    extra: dict[str, ImageDef],
    app_id: str,
    name: str,
    ctx: NamedContext,
    what: tuple[tuple[str, ...], str, str | None, str | None],
    where: tuple[Location, str, str],
) -> Copy:
    """``COPY --from=NAME`` of a named context, from the directory itself or from the
    image it stands for. ``what``: sources, dest, chown, chmod; ``where``: the
    instruction's location, block label and word, for messages."""
    sources, dest, chown, chmod = what
    loc, block, word = where
    if isinstance(ctx, Path):
        ignore = read_ignore(ctx)
        try:
            check_sources(ctx, sources, ignore)
        except ContextError as exc:
            raise exc.at(loc, block, word) from None
        return Copy(sources, dest, str(ctx), None, chown, chmod, ignore, loc)
    image_id = context_image(extra, app_id, name, ctx, loc)
    return Copy(sources, dest, "", image_id, chown, chmod, (), loc)
