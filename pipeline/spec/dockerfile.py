"""Dockerfiles as ImageDefs: ``app "x" { dockerfile = "..." }`` joins the fleet's DAG.

The file is split into instructions by :mod:`.dockerlines` (lines, continuations,
comments, heredocs; the ``escape`` directive). This module and its helpers (:mod:`.dockerbase`,
:mod:`.dockerrun`, :mod:`.dockercopy`, :mod:`.dockermeta`) give each instruction
Docker's meaning: flags, JSON (exec) versus shell form, quoting, ``$VAR``
substitution, ARG scoping and stages. Each stage becomes one ``ImageDef``; the last
stage is the app itself. Pure apart from reading the Dockerfile and looking at the
build context (sources of COPY/ADD must exist).

What is supported and every known difference from BuildKit: ``docs/dockerfile.md``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from pipeline.errors import Location, SpecError, did_you_mean
from pipeline.limits import current as current_limits
from pipeline.limits import over
from pipeline.model import BaseRef, Copy, ImageDef, Meta, MetaField, classify_ref
from pipeline.oci.config import DEFAULT_PATH
from pipeline.spec import dockermeta
from pipeline.spec.dockerbase import Instr, Stage
from pipeline.spec.dockercontexts import NamedContext, context_image, up_to_stage
from pipeline.spec.dockercopy import CopyLoader
from pipeline.spec.dockerlines import split_lines
from pipeline.spec.dockerrun import RunLoader
from pipeline.spec.dockerwords import (
    NAME_CHARS,
    NAME_START,
    escape_char,
    json_array,
    key_values,
    split_flags,
    split_words,
)

SUPPORTED = (
    "FROM",
    "ARG",
    "ENV",
    "RUN",
    "COPY",
    "ADD",
    "WORKDIR",
    "USER",
    "ENTRYPOINT",
    "CMD",
    "EXPOSE",
    "LABEL",
    "HEALTHCHECK",
    "VOLUME",
    "STOPSIGNAL",
    "SHELL",
    "ONBUILD",
    "MAINTAINER",
)
DOCKER_ONLY: tuple[str, ...] = ()
"""Real Dockerfile instructions this builder refuses (no hint offered for them)."""

_STAGE_NAME = re.compile(r"^[a-z][a-z0-9._-]*$")
_NOT_ONBUILD = ("ONBUILD", "FROM", "MAINTAINER")


# ---------------------------------------------------------------------------
# the loader


class _Loader(RunLoader, CopyLoader):
    """Reads the instructions in order into stages."""

    def load(self, instrs: list[Instr]) -> tuple[ImageDef, ...]:
        handlers: dict[str, Callable[[Stage, Instr], None]] = {
            "ARG": self.arg,
            "ENV": self.env,
            "RUN": self.run,
            "COPY": self.copy,
            "ADD": self.copy,
            "WORKDIR": self.workdir,
            "USER": self.user,
            "ENTRYPOINT": self.command_meta,
            "CMD": self.command_meta,
            "EXPOSE": self.expose,
            "LABEL": self.label,
            "HEALTHCHECK": self.healthcheck,
            "VOLUME": self.volume,
            "STOPSIGNAL": self.stopsignal,
            "SHELL": self.shell,
            "ONBUILD": self.onbuild,
            "MAINTAINER": self.maintainer,
        }
        self.handlers = handlers
        for ins in instrs:
            if ins.word == "FROM":
                with contextlib.suppress(ValueError):
                    words = split_flags(ins.value)[1].split()
                    if len(words) == 3:
                        self.later_names.add(words[2].lower())
        for ins in instrs:
            if ins.word not in SUPPORTED:
                hint = None if ins.word in DOCKER_ONLY else did_you_mean(ins.word, SUPPORTED)
                raise self.error(ins, f'unsupported instruction "{ins.word}"', hint=hint)
            if ins.word == "FROM":
                self.from_(ins)
            elif not self.stages:
                if ins.word != "ARG":
                    raise self.error(ins, f"{ins.word} before the first FROM")
                self.global_arg(ins)
            else:
                handlers[ins.word](self.stages[-1], ins)
        if not self.stages:
            raise SpecError(Location(str(self.path)), "no FROM instruction", block=self.block)
        return (*self.extra.values(), *(self.image(s, s is self.stages[-1]) for s in self.stages))

    def image(self, stage: Stage, last: bool) -> ImageDef:
        return ImageDef(
            id=self.stage_id(stage, last),
            base=stage.base,
            steps=tuple(stage.steps),
            is_app=last,
            loc=stage.loc,
        )

    def from_(self, ins: Instr) -> None:
        flags, rest = self.flags(ins, ("platform",))
        scope = self.meta_scope()
        wanted = self.value_flag(ins, flags, "platform")
        if wanted is not None:
            wanted = self.sub(ins, wanted, scope)
            here = scope.get("BUILDPLATFORM", "")
            if wanted not in (here, here.rsplit("/", 1)[0] if here.count("/") > 1 else here):
                raise self.error(
                    ins,
                    f'FROM --platform="{wanted}": cross-platform builds are not supported '
                    f'(this machine builds "{here}")',
                )
        words = rest.split()
        if len(words) == 3 and words[1].lower() == "as":
            name = words[2].lower()
            if not _STAGE_NAME.match(name):
                raise self.error(ins, f'FROM: invalid stage name "{words[2]}"')
            if name in self.by_name:
                raise self.error(ins, f'FROM: duplicate stage name "{words[2]}"')
        elif len(words) == 1:
            name = ""
        else:
            raise self.error(ins, 'FROM: expected "FROM [--platform=...] IMAGE [AS NAME]"')
        image = self.sub(ins, words[0], scope)
        if not image:
            raise self.error(ins, f'FROM: "{words[0]}" is empty after substitution')
        env: dict[str, str] = {}
        parent: Stage | None = None
        if image in self.contexts:  # a named context replaces a stage of that name
            made = context_image(self.extra, self.app_id, image, self.contexts[image], ins.loc)
            base = BaseRef("block", made, ins.loc)
        elif image.lower() in self.by_name:
            parent = self.stages[self.by_name[image.lower()]]
            base = BaseRef("block", self.stage_id(parent, last=False), ins.loc)
            env = dict(parent.env)
        else:
            base = classify_ref(image, ins.loc)
        stage = Stage(len(self.stages), name, base, ins.loc, env)
        if name:
            self.by_name[name] = stage.index
        self.stages.append(stage)
        if base.kind == "scratch":  # BuildKit's empty image config
            stage.env["PATH"] = DEFAULT_PATH
            stage.steps.append(Meta("env", (("PATH", DEFAULT_PATH),), ins.loc))
            stage.steps.append(Meta("workdir", "/", ins.loc))
        if parent is not None:
            stage.shell = parent.shell
            if parent.onbuild:
                self.run_triggers(stage, parent.onbuild, ins.loc)

    def arg_words(self, ins: Instr) -> list[tuple[str, str | None]]:
        out: list[tuple[str, str | None]] = []
        words = split_words(ins.value, self.escape)
        if not words:
            raise self.error(ins, "ARG needs a name")
        for w in words:
            name, eq, default = w.partition("=")
            if not NAME_START.match(name) or NAME_CHARS.fullmatch(name) is None:
                raise self.error(ins, f'ARG: invalid name "{name}"')
            out.append((name, default if eq else None))
        return out

    def global_arg(self, ins: Instr) -> None:
        for name, default in self.arg_words(ins):
            if name in self.build_args:
                self.meta[name] = self.build_args[name]
            elif default is not None:
                self.meta[name] = self.sub(ins, default, self.meta_scope())
            else:
                self.meta.setdefault(name, None)

    def arg(self, stage: Stage, ins: Instr) -> None:
        for name, default in self.arg_words(ins):
            if name in self.build_args:
                stage.args[name] = self.build_args[name]
            elif default is not None:
                stage.args[name] = self.sub(ins, default, self.scope(stage))
            else:
                stage.args[name] = self.meta.get(name)
            if name in stage.env:
                stage.arg_wins.add(name)

    def env(self, stage: Stage, ins: Instr) -> None:
        try:
            pairs = key_values(ins.value, self.escape, self.scope(stage), "ENV")
        except ValueError as exc:
            raise self.error(ins, str(exc)) from None
        stage.env.update(pairs)
        stage.arg_wins.difference_update(k for k, _ in pairs)
        stage.steps.append(Meta("env", pairs, ins.loc))

    def label(self, stage: Stage, ins: Instr) -> None:
        try:
            pairs = key_values(ins.value, self.escape, self.scope(stage), "LABEL")
        except ValueError as exc:
            raise self.error(ins, str(exc)) from None
        stage.steps.append(Meta("labels", pairs, ins.loc))

    def workdir(self, stage: Stage, ins: Instr) -> None:
        value = self.sub(ins, ins.value.strip(), self.scope(stage))
        if not value:
            raise self.error(ins, "WORKDIR needs a path")
        stage.steps.append(Copy((), value, loc=ins.loc))  # BuildKit's mkdir layer
        stage.steps.append(Meta("workdir", value, ins.loc))

    def user(self, stage: Stage, ins: Instr) -> None:
        value = self.sub(ins, ins.value.strip(), self.scope(stage))
        if not value:
            raise self.error(ins, "USER needs a user")
        stage.steps.append(Meta("user", value, ins.loc))

    def expose(self, stage: Stage, ins: Instr) -> None:
        ports: list[str] = []
        for word in split_words(ins.value, self.escape):
            for port in self.sub(ins, word, self.scope(stage)).split():
                try:
                    ports.extend(dockermeta.exposed_ports(port))
                except ValueError as exc:
                    raise self.error(ins, str(exc)) from None
        stage.steps.append(Meta("expose", tuple(ports), ins.loc))

    def healthcheck(self, stage: Stage, ins: Instr) -> None:
        try:
            value = dockermeta.healthcheck(ins.value)
        except ValueError as exc:
            raise self.error(ins, str(exc)) from None
        stage.steps.append(Meta("healthcheck", value, ins.loc))

    def volume(self, stage: Stage, ins: Instr) -> None:
        try:
            paths = dockermeta.volumes(ins.value, self.scope(stage), self.escape)
        except ValueError as exc:
            raise self.error(ins, str(exc)) from None
        stage.steps.append(Meta("volumes", paths, ins.loc))

    def stopsignal(self, stage: Stage, ins: Instr) -> None:
        try:
            value = dockermeta.stop_signal(ins.value, self.scope(stage), self.escape)
        except ValueError as exc:
            raise self.error(ins, str(exc)) from None
        stage.steps.append(Meta("stopsignal", value, ins.loc))

    def shell(self, stage: Stage, ins: Instr) -> None:
        try:
            stage.shell = dockermeta.shell(ins.value)
        except ValueError as exc:
            raise self.error(ins, str(exc)) from None
        stage.steps.append(Meta("shell", stage.shell, ins.loc))

    def onbuild(self, stage: Stage, ins: Instr) -> None:
        trigger = ins.value.strip()
        word = trigger.split(None, 1)[0].upper() if trigger else ""
        if not word:
            raise self.error(ins, "ONBUILD needs an instruction")
        if word in _NOT_ONBUILD:
            raise self.error(ins, f"ONBUILD: {word} is not allowed as an ONBUILD trigger")
        if word not in SUPPORTED:
            raise self.error(ins, f'ONBUILD: unsupported instruction "{word}"')
        stage.onbuild = (*stage.onbuild, trigger)
        stage.steps.append(Meta("onbuild", (trigger,), ins.loc))

    def run_triggers(self, stage: Stage, triggers: tuple[str, ...], at: Location) -> None:
        """A base's ONBUILD triggers, run as this stage's first instructions (Docker
        runs them at FROM); the new image's OnBuild starts empty."""
        stage.steps.append(Meta("onbuild", (), at))
        for trigger in triggers:
            word, _, value = trigger.strip().partition(" ")
            ins = Instr(word.upper(), value.strip(), at)
            if ins.word not in self.handlers or ins.word in _NOT_ONBUILD:
                raise self.error(at, f'FROM: ONBUILD trigger "{trigger}" is not allowed')
            self.handlers[ins.word](stage, ins)

    def maintainer(self, stage: Stage, ins: Instr) -> None:
        stage.steps.append(Meta("author", ins.value.strip(), ins.loc))

    def command_meta(self, stage: Stage, ins: Instr) -> None:
        try:
            argv = json_array(ins.value)
        except ValueError as exc:
            raise self.error(ins, f"{ins.word}: {exc}") from None
        if argv is None:
            argv = (*stage.shell, ins.value.strip())
        field_name: MetaField = "cmd"
        if ins.word == "CMD":
            stage.cmd_set = True
        else:  # ENTRYPOINT resets only a CMD the stage inherited
            field_name = "entrypoint-keep-cmd" if stage.cmd_set else "entrypoint"
        stage.steps.append(Meta(field_name, argv, ins.loc))


def load_dockerfile(
    path: Path,
    app_id: str,
    context: Path,
    build_args: Mapping[str, str],
    tags: tuple[str, ...],
    loc: Location,
    *,
    target: str | None = None,
    contexts: Mapping[str, NamedContext] | None = None,
    inline: str | None = None,
) -> tuple[ImageDef, ...]:
    """The ImageDefs of a Dockerfile, in stage order; the last is the app.

    The last stage gets ``id=app_id``, ``is_app=True`` and ``tags``; an earlier stage
    gets ``f"{app_id}/{name}"`` (its ``AS`` name, lowercased) or ``f"{app_id}/{index}"``
    and ``is_app=False``. ``FROM <earlier stage>`` gives ``BaseRef("block", <its id>)``.
    ``build_args`` override ARG defaults; undeclared ones are ignored, as in Docker.
    Each step carries ``Location(str(path), line, 1)`` of its instruction's first line.

    ``target``: the stage to build (the app; later stages are not read). ``contexts``:
    named contexts (see :mod:`.dockercontexts`). ``inline``: the Dockerfile's text.
    COPY/ADD sources are checked against ``context`` (and its ignore file) so a
    missing or unsafe source is reported here, located. Every error is a
    ``SpecError`` whose message starts with the location (``loc``, the spec line, for
    a missing Dockerfile) and names the app block.
    """
    block = f'app "{app_id.split(".", 1)[-1]}"'
    limit = current_limits().spec_bytes
    try:
        if inline is not None:
            data = inline.encode()
        else:
            with path.open("rb") as f:
                data = f.read(limit + 1)
    except FileNotFoundError:
        raise SpecError(loc, f'Dockerfile "{path}" not found', block=block) from None
    except IsADirectoryError:
        raise SpecError(loc, f'Dockerfile "{path}" is a directory', block=block) from None
    except OSError as exc:
        raise SpecError(loc, f'Dockerfile "{path}": {exc.strerror}', block=block) from None
    if len(data) > limit:
        raise SpecError(
            Location(str(path)),
            f"larger than {limit:,} bytes; " + over("spec_bytes", limit),
            block=block,
        )
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(
            Location(str(path)), f"not UTF-8 text (byte {exc.start})", block=block
        ) from None
    escape = escape_char(text)
    instrs = [
        Instr(ln.word, ln.value, Location(str(path), ln.line + 1, 1), ln.heredocs)
        for ln in split_lines(text, escape)
    ]
    if not instrs:
        raise SpecError(Location(str(path)), "empty Dockerfile (no instructions)", block=block)
    instrs = up_to_stage(instrs, target, loc, block) if target is not None else instrs
    images = _Loader(path, app_id, context, build_args, escape, contexts).load(instrs)
    last = images[-1]
    return (*images[:-1], ImageDef(last.id, last.base, last.steps, tuple(tags), True, last.loc))
