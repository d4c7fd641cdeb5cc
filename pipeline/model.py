"""The spec model: small frozen values, produced by the HCL and Dockerfile front ends
and consumed by the compiler (``pipeline.graph``). Pure: no I/O here.

An ``ImageDef`` is one buildable thing: an ``image`` block, an ``app`` block (already
lowered to ordered steps), or one stage of a Dockerfile. Its ``steps`` run in order
with Dockerfile semantics:

* ``Run`` and ``Copy`` make a filesystem layer each;
* ``Meta`` changes the image config (env, workdir, user, entrypoint, ...). It makes no
  layer, but env/workdir/user feed the keys of later steps that can observe them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pipeline.errors import Location

Pairs = tuple[tuple[str, str], ...]

NetworkMode = Literal["default", "none"]
BaseKind = Literal["scratch", "store", "registry", "oci-layout", "oci-archive", "block"]


@dataclass(frozen=True)
class BaseRef:
    """What an image starts ``from``.

    kind      meaning of ``ref``
    scratch   "scratch"
    store     a tag in the local store, "name:tag", or a digest ref "name@sha256:..."
    registry  "host:port/name:tag" (a host part with a dot, a colon or "localhost")
    oci-layout / oci-archive   an absolute path to an OCI layout dir / archive
    block     the id of another ImageDef, e.g. "image.python" or "app.web"
    """

    kind: BaseKind
    ref: str
    loc: Location | None = None


@dataclass(frozen=True)
class Mount:
    """A build-time mount for one RUN step; never part of the layer.

    type "cache":  a directory kept in the store across builds, shared by every step
                   with the same ``id`` (default: the target path).
    type "secret": a host file (``source``) bind-mounted read-only at ``target``; its
                   content is not part of any cache key.
    """

    type: Literal["cache", "secret"]
    target: str
    id: str = ""
    source: str = ""


@dataclass(frozen=True)
class Run:
    """A RUN step. ``command`` is a shell string (``/bin/sh -c``) or an exec argv tuple.

    ``env`` holds step-only variables (Dockerfile ARG values) seen by this step on top
    of the image env; they are part of the key but not of the image config.
    ``display`` (optional) is what plans and progress show instead of the command;
    the image history always records the real command.
    """

    command: str | tuple[str, ...]
    network: NetworkMode = "default"
    mounts: tuple[Mount, ...] = ()
    env: Pairs = ()
    loc: Location | None = None
    display: str = ""  # a short description for plans and progress; never part of a key


@dataclass(frozen=True)
class Copy:
    """A COPY step: ``sources`` (relative to ``context``, may hold globs) to ``dest``.

    ``dest`` relative paths are taken against the workdir at that point. With
    ``from_image`` (an ImageDef id, e.g. a Dockerfile stage), the sources are paths in
    that image's filesystem instead of the build context.
    ``ignore`` is the ignore-file patterns already read for this context; the context
    hasher and the copier both apply them.

    ``inline`` (Dockerfile ``COPY <<EOF``): files given by content, ``sources`` their
    names. No ``sources`` (and no ``from_image``): Dockerfile WORKDIR's layer, creating
    ``dest`` (against the workdir before it) and its missing parents, owned by the
    image's user at that point, as BuildKit does (a layer even when they all exist).
    """

    sources: tuple[str, ...]
    dest: str
    context: str = ""
    from_image: str | None = None
    chown: str | None = None
    chmod: str | None = None
    ignore: tuple[str, ...] = ()
    loc: Location | None = None
    inline: Pairs = ()  # heredoc files (name, content): the sources, instead of a context
    unpack: bool = False  # Dockerfile ADD: a local tar source is unpacked into dest


MetaField = Literal[
    "env",
    "workdir",
    "user",
    "entrypoint",
    "entrypoint-keep-cmd",
    "cmd",
    "expose",
    "labels",
    "healthcheck",
    "stopsignal",
    "volumes",
    "shell",
    "onbuild",
    "author",
]


@dataclass(frozen=True)
class Meta:
    """A config change. Normalised values by field:

    env, labels          Pairs, merged into the current mapping (later wins)
    workdir              str, absolute, or relative to the current workdir
    user                 str ("name", "uid", "uid:gid")
    entrypoint, cmd      tuple[str, ...] (exec form; shell form already wrapped in
                         ("/bin/sh", "-c", text)); setting entrypoint resets cmd,
                         as in Docker
    entrypoint-keep-cmd  like entrypoint, but the cmd stays (Dockerfile: a CMD set
                         earlier in the same stage survives ENTRYPOINT)
    expose               tuple[str, ...] like ("8080/tcp",), added to the set
    healthcheck          str, the config's Healthcheck object as canonical JSON
    stopsignal, author   str (author is the image config's top-level field)
    volumes              tuple[str, ...] of paths, added to the set
    shell                tuple[str, ...], the shell of later shell-form commands
    onbuild              tuple[str, ...] of trigger texts appended; () clears them
    """

    field: MetaField
    value: str | tuple[str, ...] | Pairs
    loc: Location | None = None


Step = Run | Copy | Meta


@dataclass(frozen=True)
class ImageDef:
    """One buildable image.

    ``id`` is "image.NAME", "app.NAME", or for a Dockerfile's inner stages
    "app.NAME/STAGE" (only the last stage is the app itself).
    ``is_app`` marks app blocks and a Dockerfile's final stage. ``build-all`` outputs
    every app plus every ``image`` block that has tags; the rest is built as needed.
    """

    id: str
    base: BaseRef
    steps: tuple[Step, ...] = ()
    tags: tuple[str, ...] = ()
    is_app: bool = False
    loc: Location | None = None

    @property
    def kind(self) -> str:
        return self.id.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.id.split(".", 1)[1]


@dataclass(frozen=True)
class Fleet:
    """Every ImageDef of every ``*.hcl`` file in a specs directory, plus groups.

    ``images`` maps ImageDef.id to the def, in a stable (sorted) order.
    ``groups`` maps a group name to ImageDef ids, in the order the spec lists them.
    ``volatile`` maps an app id to what in it changes from run to run (values made
    by ``timestamp()``/``uuidv4()``): ``arg:NAME=VALUE`` for a build argument, ``all``
    for everything, and ``by:FUNCTION`` for the functions that made them.
    """

    images: Mapping[str, ImageDef]
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    volatile: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def outputs(self) -> tuple[str, ...]:
        """The ids ``build-all`` builds: apps, plus image blocks that have tags."""
        return tuple(i for i, d in self.images.items() if d.is_app or d.tags)


def classify_ref(text: str, loc: Location | None = None) -> BaseRef:
    """Classify a ``from`` string that is not a block reference. Pure.

    "scratch" -> scratch; "oci-archive:PATH" / "oci:PATH" -> an archive / layout path
    (kept as written; the front end resolves it against the spec file's directory);
    a first path component with a dot or a colon, or "localhost" -> registry;
    anything else ("name:tag", "name@sha256:...") -> a store reference.
    """
    if text == "scratch":
        return BaseRef("scratch", "scratch", loc)
    if text.startswith("oci-archive:"):
        return BaseRef("oci-archive", text.removeprefix("oci-archive:"), loc)
    if text.startswith("oci:"):
        return BaseRef("oci-layout", text.removeprefix("oci:"), loc)
    first, sep, _ = text.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return BaseRef("registry", text, loc)
    return BaseRef("store", text, loc)
