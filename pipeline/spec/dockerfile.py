"""Dockerfiles as ImageDefs: ``app "x" { dockerfile = "..." }`` joins the fleet's DAG.

The file is split into instructions by ``dockerfile-parse`` (lines, continuations,
comments, the ``escape`` directive). This module gives each instruction Docker's
meaning: flags, JSON (exec) versus shell form, quoting, ``$VAR`` substitution,
ARG scoping and stages. Each stage becomes one ``ImageDef``; the last stage is the
app itself. Pure apart from reading the Dockerfile and looking at the build
context (sources of COPY/ADD must exist; ADD must not be asked to unpack).

Supported: FROM (``AS``, multi-stage, ``--platform`` of this machine), ARG, ENV,
RUN (shell/exec, ``--network``, ``--mount=type=cache``), COPY and ADD of local files
(``--from``, ``--chown``, ``--chmod``, ``--link``), WORKDIR, USER, ENTRYPOINT, CMD,
EXPOSE, LABEL. Anything else is a one-line error naming the file and line.

Known differences from Docker, by design or for now:

* variables a base image's config defines are unknown here: ``$PATH`` expands to
  the usual default path unless the Dockerfile itself sets PATH, any other such
  variable to the empty string; likewise an ARG that the base image's config
  has as ENV still reaches ``Run.env`` (Docker would let that ENV win; an ENV set in
  this Dockerfile, in this stage or a stage it builds on, does win here too);
* ignore files use gitignore syntax (``pipeline.fs.patterns``); heredocs, secret,
  bind, ssh and tmpfs mounts, ADD of URLs or archives, COPY from an image that is
  neither a stage nor a named context, ``--parents``/``--exclude`` are refused.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from dockerfile_parse import DockerfileParser

from pipeline.errors import Location, SpecError, UnsafePathError, did_you_mean
from pipeline.fs.context import ContextError, check_sources, looks_like_archive, read_ignore, select
from pipeline.limits import current as current_limits
from pipeline.limits import over
from pipeline.model import (
    BaseRef,
    Copy,
    ImageDef,
    Meta,
    MetaField,
    Mount,
    NetworkMode,
    Run,
    Step,
    classify_ref,
)
from pipeline.oci.config import DEFAULT_PATH
from pipeline.oci.platform import platform_args
from pipeline.spec.dockercontexts import NamedContext, context_copy, context_image, up_to_stage
from pipeline.spec.dockerwords import (
    NAME_CHARS,
    NAME_START,
    escape_char,
    expand,
    json_array,
    key_values,
    split_flags,
    split_words,
)
from pipeline.spec.lower import normalise_port

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
)
DOCKER_ONLY = ("HEALTHCHECK", "ONBUILD", "SHELL", "VOLUME", "STOPSIGNAL", "MAINTAINER")
"""Real Dockerfile instructions this builder refuses (no hint offered for them)."""

_STAGE_NAME = re.compile(r"^[a-z][a-z0-9._-]*$")
_HEREDOC = re.compile(r"^\d*<<-?[^<]+$")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://|git@)")
_OCTAL = re.compile(r"^[0-7]{3,4}$")


# ---------------------------------------------------------------------------
# the loader


@dataclass
class _Stage:
    index: int
    name: str
    base: BaseRef
    loc: Location
    env: dict[str, str] = field(default_factory=dict)  # ENV so far, base stages included
    args: dict[str, str | None] = field(default_factory=dict)  # ARGs declared in this stage
    steps: list[Step] = field(default_factory=list)


@dataclass(frozen=True)
class _Instr:
    word: str
    value: str
    loc: Location


class _Loader:
    def __init__(
        self,
        path: Path,
        app_id: str,
        context: Path,
        build_args: Mapping[str, str],
        escape: str,
        contexts: Mapping[str, NamedContext] | None = None,
    ) -> None:
        self.path = path
        self.contexts = dict(contexts or {})
        self.extra: dict[str, ImageDef] = {}  # images made for named contexts
        self.app_id = app_id
        self.block = f'app "{app_id.split(".", 1)[-1]}"'
        self.context = Path(os.path.abspath(context))
        self.build_args = dict(build_args)
        self.escape = escape
        self.meta: dict[str, str | None] = {}
        for k, v in platform_args().items():
            self.meta[k] = self.build_args.get(k, v)
        self.stages: list[_Stage] = []
        self.by_name: dict[str, int] = {}
        self.later_names: set[str] = set()  # every AS name in the file, for messages
        self._ignore: tuple[str, ...] | None = None

    # -- helpers

    def error(self, at: _Instr | Location, message: str, hint: str | None = None) -> SpecError:
        loc = at.loc if isinstance(at, _Instr) else at
        return SpecError(loc, message, block=self.block, hint=hint)

    def sub(self, ins: _Instr, text: str, env: Mapping[str, str]) -> str:
        try:
            return expand(text, env, self.escape)
        except ValueError as exc:
            raise self.error(ins, f"{ins.word}: {exc}") from None

    def scope(self, stage: _Stage) -> dict[str, str]:
        """Variables an instruction of ``stage`` can substitute: ENV wins over ARG."""
        out = {"PATH": DEFAULT_PATH}
        out |= {k: v for k, v in stage.args.items() if v is not None}
        out |= stage.env
        return out

    def meta_scope(self) -> dict[str, str]:
        return {k: v for k, v in self.meta.items() if v is not None}

    def flags(
        self, ins: _Instr, allowed: tuple[str, ...], repeatable: tuple[str, ...] = ()
    ) -> tuple[dict[str, list[str | None]], str]:
        try:
            found, rest = split_flags(ins.value)
        except ValueError as exc:
            raise self.error(ins, f"{ins.word}: {exc}") from None
        out: dict[str, list[str | None]] = {}
        for name, value in found:
            if name not in allowed:
                raise self.error(
                    ins,
                    f'unknown flag "--{name}" for {ins.word}',
                    hint=(h := did_you_mean(name, allowed)) and f"--{h}",
                )
            if name in out and name not in repeatable:
                raise self.error(ins, f'{ins.word}: flag "--{name}" given twice')
            out.setdefault(name, []).append(value)
        return out, rest

    def value_flag(self, ins: _Instr, flags: dict[str, list[str | None]], name: str) -> str | None:
        if name not in flags:
            return None
        value = flags[name][0]
        if value is None or value == "":
            raise self.error(ins, f'{ins.word}: flag "--{name}" needs a value')
        return value

    def no_heredoc(self, ins: _Instr, text: str) -> None:
        if any(_HEREDOC.match(w) for w in text.split()):
            raise self.error(ins, f"{ins.word}: heredocs are not supported")

    # -- the instructions

    def load(self, instrs: list[_Instr]) -> tuple[ImageDef, ...]:
        handlers: dict[str, Callable[[_Stage, _Instr], None]] = {
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
        }
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

    def stage_id(self, stage: _Stage, last: bool) -> str:
        if last:
            return self.app_id
        return f"{self.app_id}/{stage.name or stage.index}"

    def image(self, stage: _Stage, last: bool) -> ImageDef:
        return ImageDef(
            id=self.stage_id(stage, last),
            base=stage.base,
            steps=tuple(stage.steps),
            is_app=last,
            loc=stage.loc,
        )

    def from_(self, ins: _Instr) -> None:
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
        if image in self.contexts:  # a named context replaces a stage of that name
            made = context_image(self.extra, self.app_id, image, self.contexts[image], ins.loc)
            base = BaseRef("block", made, ins.loc)
        elif image.lower() in self.by_name:
            parent = self.stages[self.by_name[image.lower()]]
            base = BaseRef("block", self.stage_id(parent, last=False), ins.loc)
            env = dict(parent.env)
        else:
            base = classify_ref(image, ins.loc)
        stage = _Stage(len(self.stages), name, base, ins.loc, env)
        if name:
            self.by_name[name] = stage.index
        self.stages.append(stage)

    def arg_words(self, ins: _Instr) -> list[tuple[str, str | None]]:
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

    def global_arg(self, ins: _Instr) -> None:
        for name, default in self.arg_words(ins):
            if name in self.build_args:
                self.meta[name] = self.build_args[name]
            elif default is not None:
                self.meta[name] = self.sub(ins, default, self.meta_scope())
            else:
                self.meta.setdefault(name, None)

    def arg(self, stage: _Stage, ins: _Instr) -> None:
        for name, default in self.arg_words(ins):
            if name in self.build_args:
                stage.args[name] = self.build_args[name]
            elif default is not None:
                stage.args[name] = self.sub(ins, default, self.scope(stage))
            else:
                stage.args[name] = self.meta.get(name)

    def env(self, stage: _Stage, ins: _Instr) -> None:
        try:
            pairs = key_values(ins.value, self.escape, self.scope(stage), "ENV")
        except ValueError as exc:
            raise self.error(ins, str(exc)) from None
        stage.env.update(pairs)
        stage.steps.append(Meta("env", pairs, ins.loc))

    def label(self, stage: _Stage, ins: _Instr) -> None:
        try:
            pairs = key_values(ins.value, self.escape, self.scope(stage), "LABEL")
        except ValueError as exc:
            raise self.error(ins, str(exc)) from None
        stage.steps.append(Meta("labels", pairs, ins.loc))

    def workdir(self, stage: _Stage, ins: _Instr) -> None:
        value = self.sub(ins, ins.value.strip(), self.scope(stage))
        if not value:
            raise self.error(ins, "WORKDIR needs a path")
        stage.steps.append(Meta("workdir", value, ins.loc))

    def user(self, stage: _Stage, ins: _Instr) -> None:
        value = self.sub(ins, ins.value.strip(), self.scope(stage))
        if not value:
            raise self.error(ins, "USER needs a user")
        stage.steps.append(Meta("user", value, ins.loc))

    def expose(self, stage: _Stage, ins: _Instr) -> None:
        ports: list[str] = []
        for word in ins.value.split():
            for port in self.sub(ins, word, self.scope(stage)).split():
                try:
                    ports.append(normalise_port(port))
                except ValueError:
                    raise self.error(ins, f'EXPOSE: "{port}" is not a port') from None
        stage.steps.append(Meta("expose", tuple(ports), ins.loc))

    def command_meta(self, stage: _Stage, ins: _Instr) -> None:
        try:
            argv = json_array(ins.value)
        except ValueError as exc:
            raise self.error(ins, f"{ins.word}: {exc}") from None
        if argv is None:
            argv = ("/bin/sh", "-c", ins.value.strip())
        field_name: MetaField = "entrypoint" if ins.word == "ENTRYPOINT" else "cmd"
        stage.steps.append(Meta(field_name, argv, ins.loc))

    def run(self, stage: _Stage, ins: _Instr) -> None:
        flags, rest = self.flags(ins, ("mount", "network", "security"), repeatable=("mount",))
        scope = self.scope(stage)
        if "security" in flags:
            raise self.error(ins, "RUN --security is not supported")
        network = self.value_flag(ins, flags, "network") or "default"
        if network not in ("default", "none"):
            raise self.error(
                ins, f'RUN --network="{network}" is not supported (use none or default)'
            )
        mounts = tuple(self.mount(ins, v or "", scope) for v in flags.get("mount", []))
        try:
            argv = json_array(rest)
        except ValueError as exc:
            raise self.error(ins, f"RUN: {exc}") from None
        command: str | tuple[str, ...]
        if argv is not None:
            if not argv:
                raise self.error(ins, "RUN needs a command")
            command = argv
        else:
            command = rest.strip()
            if not command:
                raise self.error(ins, "RUN needs a command")
            self.no_heredoc(ins, command)
        env = tuple(
            sorted((k, v) for k, v in stage.args.items() if v is not None and k not in stage.env)
        )
        assert network in ("default", "none")
        stage.steps.append(Run(command, cast(NetworkMode, network), mounts, env, ins.loc))

    def mount(self, ins: _Instr, spec: str, scope: Mapping[str, str]) -> Mount:
        try:
            fields = next(csv.reader([self.sub(ins, spec, scope)]))
        except (csv.Error, StopIteration):
            raise self.error(ins, f'RUN --mount="{spec}": cannot parse') from None
        opts: dict[str, str] = {}
        for f in fields:
            key, _, value = f.strip().partition("=")
            opts[key.lower()] = value
        kind = opts.pop("type", "bind")
        if kind == "secret":
            raise self.error(ins, "RUN --mount=type=secret is not supported in Dockerfiles yet")
        if kind != "cache":
            raise self.error(ins, f"RUN --mount=type={kind} is not supported (only type=cache)")
        target = ""
        for key in ("target", "dst", "destination"):
            target = opts.pop(key, target)
        mount_id = opts.pop("id", "")
        sharing = opts.pop("sharing", "shared")
        if sharing not in ("shared", "private", "locked"):
            raise self.error(
                ins, f'RUN --mount: sharing="{sharing}" is not one of shared, private, locked'
            )
        if opts:
            bad = sorted(opts)[0]
            raise self.error(ins, f'RUN --mount: option "{bad}" is not supported for cache mounts')
        if not target:
            raise self.error(ins, "RUN --mount=type=cache needs a target")
        if not target.startswith("/"):
            raise self.error(ins, f'RUN --mount: target "{target}" must be an absolute path')
        return Mount("cache", posixpath.normpath(target), mount_id)

    def copy(self, stage: _Stage, ins: _Instr) -> None:
        is_add = ins.word == "ADD"
        allowed = ("chown", "chmod", "link") if is_add else ("from", "chown", "chmod", "link")
        unsupported = ("checksum", "keep-git-dir", "exclude") if is_add else ("parents", "exclude")
        flags, rest = self.flags(ins, allowed + unsupported)
        for name in unsupported:
            if name in flags:
                raise self.error(ins, f"{ins.word} --{name} is not supported")
        if "link" in flags and flags["link"][0] not in (None, "true", "false"):
            raise self.error(ins, f'{ins.word}: flag "--link" takes no value')
        scope = self.scope(stage)
        self.no_heredoc(ins, rest)
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
                        ins, f'ADD of a URL is not supported ("{s}"); download it in a RUN step'
                    )
        self.check_sources(ins, sources, is_add)
        stage.steps.append(
            Copy(sources, dest, str(self.context), None, chown, chmod, self.ignore(), ins.loc)
        )

    def ignore(self) -> tuple[str, ...]:
        if self._ignore is None:
            self._ignore = read_ignore(self.context)
        return self._ignore

    def check_sources(self, ins: _Instr, sources: tuple[str, ...], is_add: bool) -> None:
        """Located errors for sources the context cannot provide; for ADD, refuse a
        local archive that Docker would unpack."""
        try:
            if not is_add:
                check_sources(self.context, sources, self.ignore())
                return
            for e in select(self.context, sources, self.ignore()):
                if e.top and e.kind == "file" and looks_like_archive(e.path):
                    raise self.error(
                        ins,
                        f'ADD of a local archive is not supported ("{e.source}" would be '
                        "unpacked); use COPY to copy it as a file, or unpack it in a RUN step",
                    )
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

    def stage_ref(self, stage: _Stage, ins: _Instr, ref: str) -> str:
        """The ImageDef id of an earlier stage named by ``COPY --from``."""
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
        if any(c in ref for c in ":/@"):
            raise self.error(
                ins,
                f"COPY --from={ref}: copying from an image that is not a stage of this "
                "Dockerfile is not supported",
            )
        names = [s.name for s in self.stages[: stage.index] if s.name]
        raise self.error(ins, f"COPY --from={ref}: no such stage", hint=did_you_mean(ref, names))


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
    parser = DockerfileParser(fileobj=io.BytesIO(data), env_replace=False)
    instrs = [
        _Instr(i["instruction"], i["value"], Location(str(path), i["startline"] + 1, 1))
        for i in parser.structure
        if i["instruction"] != "COMMENT"
    ]
    if not instrs:
        raise SpecError(Location(str(path)), "empty Dockerfile (no instructions)", block=block)
    instrs = up_to_stage(instrs, target, loc, block) if target is not None else instrs
    images = _Loader(path, app_id, context, build_args, escape_char(text), contexts).load(instrs)
    last = images[-1]
    return (*images[:-1], ImageDef(last.id, last.base, last.steps, tuple(tags), True, last.loc))
