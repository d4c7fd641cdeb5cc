"""COPY and ADD in a Dockerfile: flags, sources checked against the build context,
``--from`` a stage, a named context or an image. Pure apart from looking at the
build context."""

from __future__ import annotations

import re
from collections.abc import Mapping

from pipeline.errors import SpecError, UnsafePathError, did_you_mean
from pipeline.fs.context import ContextError, check_sources
from pipeline.fs.patterns import DOCKER_RULES
from pipeline.model import Copy, ImageDef, Pairs, classify_ref
from pipeline.spec.dockerbase import HEREDOC, Instr, LoaderBase, Stage
from pipeline.spec.dockercontexts import context_copy
from pipeline.spec.dockerwords import expand_variables, json_array

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://|git@)")
_OCTAL = re.compile(r"^[0-7]{3,4}$")
_IMAGE_REF = re.compile(r"^[a-z0-9][a-z0-9._/:@-]*$")


class CopyLoader(LoaderBase):
    """COPY and ADD."""

    def copy(self, stage: Stage, ins: Instr) -> None:
        is_add = ins.word == "ADD"
        allowed = ("chown", "chmod", "link") if is_add else ("from", "chown", "chmod", "link")
        unsupported = ("checksum", "keep-git-dir") if is_add else ("parents",)
        flags, rest = self.flags(ins, (*allowed, "exclude", *unsupported), ("exclude",))
        for name in unsupported:
            if name in flags:
                raise self.error(ins, f"{ins.word} --{name} is not supported")
        if "link" in flags and flags["link"][0] not in (None, "true", "false"):
            raise self.error(ins, f'{ins.word}: flag "--link" takes no value')
        scope = self.scope(stage)
        inline = self.heredoc_files(ins, rest, scope)
        try:
            words = json_array(rest)
        except ValueError as exc:
            raise self.error(ins, f"{ins.word}: {exc}") from None
        if words is None:
            words = tuple(rest.split())
        args = [self.sub(ins, w, scope) for w in words]
        if len(args) < 2:
            raise self.error(ins, f"{ins.word} needs at least one source and a destination")
        sources, dest = tuple(args[:-1]), args[-1]
        chown = self.value_flag(ins, flags, "chown")
        chown = self.sub(ins, chown, scope) if chown is not None else None
        chmod = self.value_flag(ins, flags, "chmod")
        chmod = self.sub(ins, chmod, scope) if chmod is not None else None
        if chmod is not None and not _OCTAL.match(chmod):
            raise self.error(ins, f'{ins.word} --chmod="{chmod}": expected an octal mode like 0755')
        src_from = self.value_flag(ins, flags, "from")
        if inline:
            if src_from is not None or len(inline) != len(sources):
                raise self.error(
                    ins, f"{ins.word}: heredocs mixed with other sources are not supported"
                )
            names = tuple(name for name, _ in inline)
            stage.steps.append(Copy(names, dest, "", None, chown, chmod, (), ins.loc, inline))
            return
        if src_from is not None:
            name = self.sub(ins, src_from, scope)
            if name in self.contexts:
                what, where = (sources, dest, chown, chmod), (ins.loc, self.block, ins.word)
                copy = context_copy(self.extra, self.app_id, name, self.contexts[name], what, where)
                stage.steps.append(copy)
                return
            source_id = self.stage_ref(stage, ins, name)
            stage.steps.append(Copy(sources, dest, "", source_id, chown, chmod, (), ins.loc))
            return
        if is_add:
            for s in sources:
                if _URL.match(s):
                    raise self.error(
                        ins,
                        f'ADD "{s}": fetching a URL or git repository is refused by the '
                        "network policy (builds are offline); add the file to the build "
                        "context or download it in a RUN step",
                    )
        ignore = self.ignore()
        excludes = tuple(self.sub(ins, v or "", scope) for v in flags.get("exclude", []))
        if any(not e for e in excludes):
            raise self.error(ins, f'{ins.word}: flag "--exclude" needs a value')
        if excludes:  # Docker's pattern rules, like .dockerignore's
            if ignore and ignore[0] != DOCKER_RULES:
                raise self.error(
                    ins, f"{ins.word} --exclude together with a .pipelineignore is not supported"
                )
            ignore = (DOCKER_RULES, *ignore[1:], *excludes)
        self.check_sources(ins, sources, ignore)
        context = str(self.context)
        stage.steps.append(
            Copy(sources, dest, context, None, chown, chmod, ignore, ins.loc, unpack=is_add)
        )

    def heredoc_files(self, ins: Instr, rest: str, scope: Mapping[str, str]) -> Pairs:
        """``(name, content)`` of each heredoc of a COPY/ADD: an unquoted one's content
        is variable-expanded (not quote-processed), as BuildKit does."""
        out = []
        for doc in ins.heredocs:
            content = doc.body
            if doc.expand:
                try:
                    content = expand_variables(content, scope)
                except ValueError as exc:
                    raise self.error(ins, f"{ins.word}: heredoc {doc.name}: {exc}") from None
            out.append((doc.name, content))
        if not out and any(HEREDOC.match(w) for w in rest.split()):
            raise self.error(ins, f"{ins.word}: a heredoc marker without its heredoc")
        return tuple(out)

    def check_sources(self, ins: Instr, sources: tuple[str, ...], ignore: tuple[str, ...]) -> None:
        """Located errors for sources the context cannot provide."""
        try:
            check_sources(self.context, sources, ignore)
        except ContextError as exc:
            raise exc.at(ins.loc, self.block, ins.word) from None
        except UnsafePathError as exc:
            raise self.error(
                ins, f'{ins.word} source "{exc.path}": refused: {exc.reason}'
            ) from None
        except SpecError as exc:
            if exc.loc is not None:
                raise
            raise self.error(ins, exc.message) from None

    def stage_ref(self, stage: Stage, ins: Instr, ref: str) -> str:
        """The ImageDef id of an earlier stage named by ``COPY --from``, or of an
        image (any other reference, made into ``extra`` as an image with no steps)."""
        index: int | None = None
        if ref.isdigit():
            index = int(ref)
        elif ref.lower() in self.by_name:
            index = self.by_name[ref.lower()]
        elif ref.lower() in self.later_names:
            index = stage.index
        if index is not None and index < stage.index:
            return self.stage_id(self.stages[index], last=False)
        if index is not None:
            raise self.error(ins, f"COPY --from={ref}: only an earlier stage can be copied from")
        names = [s.name for s in self.stages[: stage.index] if s.name]
        hint = did_you_mean(ref, names)
        if not _IMAGE_REF.match(ref) or (hint and not any(c in ref for c in ":/@")):
            raise self.error(
                ins,
                f"COPY --from={ref}: no such stage",
                hint=hint,
            )
        image_id = f"{self.app_id}/image/{ref}"  # an image, resolved like FROM
        if image_id not in self.extra:
            self.extra[image_id] = ImageDef(image_id, classify_ref(ref, ins.loc), loc=ins.loc)
        return image_id
