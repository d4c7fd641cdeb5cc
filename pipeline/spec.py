"""Spec loading: every ``*.hcl`` file of a specs directory becomes one :class:`Fleet`.

Pure apart from reading: it reads the spec files, stats the directories and files they
name (``source``, ``context``, ``dockerfile``) and reads build-context ignore files. It
never writes. Every problem is a one-line :class:`~pipeline.errors.SpecError` that
starts with ``file:line:col`` and names the block, e.g.
``specs/api.hcl:12:3: app "api": unknown attribute "srcs" (did you mean "source"?)``.

The language is documented in ``docs/spec-language.md``.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import context as build_context
from pipeline.errors import Location, SpecError, did_you_mean
from pipeline.hcl import (
    Attribute,
    Block,
    BlockRef,
    Call,
    File,
    Namespace,
    ParseCache,
    Scope,
    Template,
    Value,
    Variable,
    describe,
    evaluate,
    parse_file,
    parse_number,
    to_string,
)
from pipeline.lower import AppFields, lower_app, normalise_port
from pipeline.model import (
    BaseRef,
    Copy,
    Fleet,
    ImageDef,
    Meta,
    Mount,
    Pairs,
    Run,
    Step,
    classify_ref,
)

TOP_BLOCKS = ("variable", "locals", "image", "app", "group")
VARIABLE_TYPES = ("string", "number", "bool", "list(string)", "map(string)")
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
MATRIX_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")

# Attribute kinds: what a value must be, and how it is normalised.
EXPECTED = {
    "string": "a string",
    "strings": "a list of strings",
    "map": "a map of strings",
    "ref": "a block reference or a string",
    "refs": "a list of block references or names",
    "command": "a string or a list of strings",
    "ports": "a list of ports",
    "matrix": "a map of lists of strings",
    "any": "a value",
}

META_FIELDS = {
    "workdir": "string",
    "env": "map",
    "user": "string",
    "expose": "ports",
    "labels": "map",
    "entrypoint": "command",
    "cmd": "command",
}
META_ORDER = ("workdir", "env", "user", "expose", "labels", "entrypoint", "cmd")
IMAGE_ATTRS = {"from": "ref", "tags": "strings", "description": "string", **META_FIELDS}
IMAGE_BLOCKS = ("run", "copy", "env", "workdir", "user")
APP_ATTRS = {
    "from": "ref",
    "apt": "strings",
    "pip": "strings",
    "source": "string",
    "tags": "strings",
    "description": "string",
    "inherits": "refs",
    "matrix": "matrix",
    "name": "string",
    "dockerfile": "string",
    "context": "string",
    "args": "map",
    **META_FIELDS,
}
APP_MAP_ATTRS = ("env", "labels", "args")  # merged key-wise by ``inherits``
NOT_INHERITED = ("inherits", "matrix", "name")
NOT_WITH_DOCKERFILE = ("from", "apt", "pip", "source")
ONLY_WITH_DOCKERFILE = ("context", "args")
GROUP_ATTRS = {"targets": "refs", "description": "string"}
VARIABLE_ATTRS = ("default", "type", "description")
RUN_ATTRS = {"command": "command", "network": "string"}
MOUNT_ATTRS = {"type": "string", "target": "string", "id": "string", "source": "string"}
COPY_ATTRS = {
    "src": "command",
    "dest": "string",
    "chown": "string",
    "chmod": "string",
    "context": "string",
    "from": "ref",
}


def load_fleet(
    specs_dir: Path,
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    parse_cache: ParseCache | None = None,
) -> Fleet:
    """Load every ``*.hcl`` file directly in ``specs_dir`` (sorted by name) as one fleet.

    Variables take ``overrides`` (``--set``) first, then ``environ[NAME]``, then their
    default; ``environ=None`` reads no environment at all. Relative paths resolve
    against the directory of the file that wrote them; locations show files as
    ``str(specs_dir / name)``. Raises SpecError (exit status 2) on any bad input.
    ``parse_cache`` (optional, owned by the caller) skips re-parsing unchanged files.
    """
    paths = sorted(p for p in specs_dir.glob("*.hcl") if p.is_file())
    if not paths:
        raise SpecError(Location(str(specs_dir)), "no *.hcl spec files in this directory")
    files = [parse_file(p, str(specs_dir / p.name), parse_cache) for p in paths]
    return _Loader(files, dict(overrides or {}), dict(environ or {})).load()


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class _Decl:
    """A top-level block with its name and the absolute directory of its file."""

    kind: str
    name: str
    block: Block
    dir: Path

    @property
    def label(self) -> str:
        return self.block.label()

    def attr(self, name: str) -> Attribute | None:
        return next((a for a in self.block.attributes if a.name == name), None)


@dataclass(frozen=True)
class _Val:
    """An evaluated, checked attribute value, with where it was written: its location,
    the directory relative paths resolve against, and the label of its block."""

    value: object
    loc: Location
    dir: Path
    block: str


class _Mismatch(Exception):
    def __init__(self, found: str) -> None:
        super().__init__(found)
        self.found = found


@contextmanager
def _in_block(label: str) -> Iterator[None]:
    """Label located errors that do not name a block yet with ``label``."""
    try:
        yield
    except SpecError as exc:
        if exc.block is None and exc.loc is not None:
            raise SpecError(exc.loc, exc.message, block=label, hint=exc.hint) from None
        raise


def _abs(base: Path, rel: str) -> Path:
    """``rel`` resolved against the absolute directory ``base``, normalised."""
    return Path(os.path.normpath(base / rel))


def _valid_name(name: str) -> bool:
    return bool(name) and (name[0].isalpha() or name[0] == "_") and set(name) <= NAME_CHARS


def _sanitise(name: str) -> str:
    return "".join(c if c in MATRIX_NAME_CHARS else "-" for c in name.lower())


def _pairs(mapping: object) -> Pairs:
    assert isinstance(mapping, dict)
    return tuple(sorted((str(k), str(v)) for k, v in mapping.items()))


def _command(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return ("/bin/sh", "-c", value)
    assert isinstance(value, tuple)
    return value


def _check(kind: str, value: Value) -> object:
    """``value`` normalised for ``kind``; raises _Mismatch saying what was found."""
    if kind == "any":
        return value
    if kind == "string":
        text = to_string(value)
        if text is None:
            raise _Mismatch(describe(value))
        return text
    if kind == "strings":
        return _strings(value)
    if kind == "command":
        text = to_string(value)
        return text if text is not None and not isinstance(value, bool) else _strings(value)
    if kind == "map":
        if not isinstance(value, dict):
            raise _Mismatch(describe(value))
        out = {}
        for key, item in value.items():
            text = to_string(item)
            if text is None:
                raise _Mismatch(f'an object with {describe(item)} at key "{key}"')
            out[key] = text
        return out
    if kind == "ref":
        if not isinstance(value, BlockRef | str):
            raise _Mismatch(describe(value))
        return value
    if kind == "refs":
        if not isinstance(value, tuple):
            raise _Mismatch(describe(value))
        for i, item in enumerate(value):
            if not isinstance(item, BlockRef | str):
                raise _Mismatch(f"a list with {describe(item)} at index {i}")
        return value
    if kind == "ports":
        if not isinstance(value, tuple):
            raise _Mismatch(describe(value))
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, int | float | str):
                raise _Mismatch(f"a list with {describe(item)} at index {i}")
        return value
    if kind == "matrix":
        if not isinstance(value, dict):
            raise _Mismatch(describe(value))
        matrix = {}
        for key, item in value.items():
            if not isinstance(item, tuple):
                raise _Mismatch(f'an object with {describe(item)} at key "{key}"')
            try:
                matrix[key] = _strings(item)
            except _Mismatch as exc:
                raise _Mismatch(f'an object whose key "{key}" holds {exc.found}') from None
        return matrix
    raise AssertionError(kind)  # pragma: no cover


def _strings(value: Value) -> tuple[str, ...]:
    if not isinstance(value, tuple):
        raise _Mismatch(describe(value))
    out = []
    for i, item in enumerate(value):
        text = to_string(item)
        if text is None:
            raise _Mismatch(f"a list with {describe(item)} at index {i}")
        out.append(text)
    return tuple(out)


# --------------------------------------------------------------------------- the loader


@dataclass
class _Loader:
    files: Sequence[File]
    overrides: dict[str, str]
    environ: dict[str, str]
    decls: dict[tuple[str, str], _Decl] = field(default_factory=dict)
    locals: dict[str, tuple[Attribute, Path]] = field(default_factory=dict)
    local_values: dict[str, Value] = field(default_factory=dict)
    local_stack: list[str] = field(default_factory=list)
    variables: dict[str, Value] = field(default_factory=dict)
    scope: dict[str, Value | Namespace] = field(default_factory=dict)
    matrix_apps: dict[str, tuple[tuple[str, Mapping[str, str]], ...]] = field(default_factory=dict)
    app_names: dict[str, Location] = field(default_factory=dict)
    resolved: dict[str, dict[str, _Val]] = field(default_factory=dict)
    ignores: dict[Path, tuple[str, ...]] = field(default_factory=dict)

    def of_kind(self, kind: str) -> list[_Decl]:
        return [d for (k, _), d in self.decls.items() if k == kind]

    # ---- top level

    def load(self) -> Fleet:
        for file in self.files:
            self.collect(file)
        self.load_variables()
        self.scope = {
            "var": Namespace.of("var", self.variables),
            "local": Namespace("local", self.locals, self.local),
            "image": Namespace.blocks("image", [d.name for d in self.of_kind("image")]),
            "app": Namespace.blocks("app", [d.name for d in self.of_kind("app")]),
            "group": Namespace.blocks("group", [d.name for d in self.of_kind("group")]),
        }
        for name, (attr, _) in self.locals.items():
            self.local(name, attr.loc)  # every local is checked, used or not
        for decl in self.of_kind("app"):
            self.expand_matrix(decl)
        self.scope["app"] = Namespace.blocks("app", {*self.app_names, *self.matrix_apps})
        images: dict[str, ImageDef] = {}
        for decl in self.of_kind("image"):
            image = self.image(decl)
            images[image.id] = image
        for decl in self.of_kind("app"):
            for image in self.apps(decl):
                if image.id in images:
                    raise SpecError(
                        image.loc, f"{image.id} is defined twice", block=decl.label
                    )  # pragma: no cover - names are checked earlier
                images[image.id] = image
        self.check_references(images)
        groups = {d.name: self.group(d, ()) for d in self.of_kind("group")}
        return Fleet(
            images=dict(sorted(images.items())),
            groups=dict(sorted(groups.items())),
            files=tuple(f.path for f in self.files),
        )

    def collect(self, file: File) -> None:
        directory = Path(os.path.abspath(Path(file.path).parent))
        for item in file.body:
            if isinstance(item, Attribute):
                raise SpecError(
                    item.loc,
                    f'unexpected attribute "{item.name}" at the top level '
                    "(attributes belong inside a block)",
                )
            kind = item.type
            if kind not in TOP_BLOCKS:
                raise SpecError(
                    item.loc,
                    f'unknown block type "{kind}"',
                    hint=did_you_mean(kind, TOP_BLOCKS),
                )
            if kind == "locals":
                self.collect_locals(item, directory)
                continue
            if len(item.labels) != 1:
                raise SpecError(
                    item.loc, f'{kind} blocks take exactly one name: {kind} "NAME" {{ ... }}'
                )
            name = item.labels[0]
            if not _valid_name(name):
                raise SpecError(
                    item.loc,
                    f'invalid name "{name}": use letters, digits, "_" and "-", '
                    "starting with a letter",
                    block=item.label(),
                )
            previous = self.decls.get((kind, name))
            if previous is not None:
                raise SpecError(
                    item.loc, f"already defined at {previous.block.loc}", block=item.label()
                )
            self.decls[(kind, name)] = _Decl(kind, name, item, directory)
            if kind == "app":
                self.app_names[name] = item.loc

    def collect_locals(self, block: Block, directory: Path) -> None:
        if block.labels:
            raise SpecError(block.loc, "a locals block takes no name", block="locals")
        for nested in block.blocks:
            raise SpecError(nested.loc, f'unexpected block "{nested.type}"', block="locals")
        for attr in block.attributes:
            previous = self.locals.get(attr.name)
            if previous is not None:
                raise SpecError(
                    attr.loc,
                    f'local "{attr.name}" is already defined at {previous[0].loc}',
                    block="locals",
                )
            self.locals[attr.name] = (attr, directory)

    # ---- variables and locals

    def load_variables(self) -> None:
        declared = {d.name for d in self.of_kind("variable")}
        for name in self.overrides:
            if name not in declared:
                raise SpecError(
                    None,
                    f'--set {name}: no variable "{name}" is declared in the specs',
                    hint=did_you_mean(name, sorted(declared)),
                )
        for decl in self.of_kind("variable"):
            with _in_block(decl.label):
                value = self.variable(decl)
            if value is _REQUIRED:
                raise SpecError(
                    decl.block.loc,
                    f'variable "{decl.name}" is required: '
                    f"set it with --set {decl.name}=... or the environment",
                )
            self.variables[decl.name] = value  # type: ignore[assignment]

    def variable(self, decl: _Decl) -> object:
        """The variable's value (``--set`` > environment > default), or _REQUIRED."""
        for nested in decl.block.blocks:
            raise SpecError(nested.loc, f'unexpected block "{nested.type}"')
        for attr in decl.block.attributes:
            if attr.name not in VARIABLE_ATTRS:
                raise SpecError(
                    attr.loc,
                    f'unknown attribute "{attr.name}"',
                    hint=did_you_mean(attr.name, VARIABLE_ATTRS),
                )
        type_attr, default_attr = decl.attr("type"), decl.attr("default")
        type_name = self.variable_type(type_attr) if type_attr else None
        desc = decl.attr("description")
        if desc is not None:
            self.checked(desc, "string", {}, "")
        default: Value = None
        if default_attr is not None:
            default = evaluate(default_attr.expr, {})
            if type_name is None:
                type_name = _type_of(default)
            elif default is not None:
                converted = _convert_default(default, type_name)
                if converted is _BAD:
                    raise SpecError(
                        default_attr.loc,
                        f'attribute "default": expected {_type_phrase(type_name)}, '
                        f"found {describe(default)}",
                    )
                default = converted
        for source, values in (("--set", self.overrides), ("environment", self.environ)):
            if decl.name in values:
                raw = values[decl.name]
                value = _convert_text(raw, type_name or "string")
                if value is _BAD:
                    assert type_name is not None
                    raise SpecError(
                        decl.block.loc,
                        f"{source} value {json.dumps(raw)} is not {_type_phrase(type_name)}",
                    )
                return value
        return _REQUIRED if default_attr is None else default

    @staticmethod
    def variable_type(attr: Attribute) -> str:
        expr = attr.expr
        text: str | None = None
        if isinstance(expr, Variable):
            text = expr.name
        elif isinstance(expr, Template) and all(isinstance(p, str) for p in expr.parts):
            text = "".join(str(p) for p in expr.parts)
        elif (
            isinstance(expr, Call)
            and len(expr.args) == 1
            and isinstance(expr.args[0], Variable)
            and not expr.expand_last
        ):
            text = f"{expr.name}({expr.args[0].name})"
        if text not in VARIABLE_TYPES:
            shown = f" {text}" if text else ""
            raise SpecError(
                attr.loc,
                f'attribute "type": unsupported type{shown}; expected one of '
                + ", ".join(VARIABLE_TYPES),
                hint=did_you_mean(text, VARIABLE_TYPES) if text else None,
            )
        assert text is not None
        return text

    def local(self, name: str, loc: Location) -> Value:
        if name in self.local_values:
            return self.local_values[name]
        attr, _ = self.locals[name]
        if name in self.local_stack:
            cycle = [*self.local_stack[self.local_stack.index(name) :], name]
            first, _ = self.locals[cycle[0]]
            raise SpecError(
                first.loc,
                "reference cycle: " + " -> ".join(f"local.{n}" for n in cycle),
                block="locals",
            )
        self.local_stack.append(name)
        try:
            with _in_block("locals"):
                value = evaluate(attr.expr, self.scope)
        finally:
            self.local_stack.pop()
        self.local_values[name] = value
        return value

    # ---- attributes

    def checked(self, attr: Attribute, kind: str, scope: Scope, where: str) -> object:
        """Evaluate ``attr`` and check it is of ``kind``; None stays None (unset)."""
        value = evaluate(attr.expr, scope)
        if value is None:
            return None
        try:
            return _check(kind, value)
        except _Mismatch as exc:
            raise SpecError(
                attr.loc,
                f'{where}attribute "{attr.name}": expected {EXPECTED[kind]}, found {exc.found}',
            ) from None

    def attrs(
        self,
        block: Block,
        schema: Mapping[str, str],
        scope: Scope,
        directory: Path,
        where: str = "",
        skip: Sequence[str] = (),
    ) -> dict[str, _Val]:
        """Every attribute of ``block`` evaluated and checked against ``schema``;
        null values are left out (null means "not set")."""
        out: dict[str, _Val] = {}
        for attr in block.attributes:
            if attr.name not in schema:
                raise SpecError(
                    attr.loc,
                    f'{where}unknown attribute "{attr.name}"',
                    hint=did_you_mean(attr.name, sorted(schema)),
                )
            if attr.name in skip:
                continue
            value = self.checked(attr, schema[attr.name], scope, where)
            if value is not None:
                out[attr.name] = _Val(value, attr.loc, directory, block.label())
        return out

    @staticmethod
    def no_blocks(block: Block, allowed: Sequence[str], where: str = "") -> None:
        for nested in block.blocks:
            if nested.type not in allowed:
                if not allowed:
                    raise SpecError(nested.loc, f'{where}unexpected block "{nested.type}"')
                raise SpecError(
                    nested.loc,
                    f'{where}unknown block type "{nested.type}"',
                    hint=did_you_mean(nested.type, allowed),
                )

    @staticmethod
    def required(vals: Mapping[str, _Val], name: str, loc: Location, where: str = "") -> _Val:
        if name not in vals:
            raise SpecError(loc, f'{where}missing required attribute "{name}"')
        return vals[name]

    def base(self, val: _Val) -> BaseRef:
        """The ``from`` value as a BaseRef."""
        value = val.value
        if isinstance(value, BlockRef):
            return BaseRef("block", self.image_ref(value, val.loc, "from"), val.loc)
        assert isinstance(value, str)
        ref = classify_ref(value, val.loc)
        if ref.kind in ("oci-layout", "oci-archive"):
            return BaseRef(ref.kind, str(_abs(val.dir, ref.ref)), val.loc)
        return ref

    def image_ref(self, ref: BlockRef, loc: Location, what: str) -> str:
        """The ImageDef id a block reference names, for ``from`` and ``copy.from``."""
        if ref.kind == "group":
            raise SpecError(loc, f"{what}: a group ({ref.id}) cannot be used as an image")
        if ref.kind == "app" and ref.name in self.matrix_apps:
            names = ", ".join(f"app.{n}" for n, _ in self.matrix_apps[ref.name])
            raise SpecError(
                loc, f"{what}: {ref.id} is a matrix block; name one of its apps: {names}"
            )
        return ref.id

    def ignore(self, directory: Path) -> tuple[str, ...]:
        if directory not in self.ignores:
            self.ignores[directory] = build_context.read_ignore(directory)
        return self.ignores[directory]

    def directory(self, val: _Val, what: str, where: str = "") -> Path:
        """The existing directory ``val`` names. Errors name the block that wrote it
        (a parent's, for an inherited attribute); ``where`` prefixes nested blocks."""
        value = val.value
        assert isinstance(value, str)
        path = _abs(val.dir, value)
        block = None if where else val.block
        if not path.exists():
            raise SpecError(val.loc, f"{where}{what} directory not found: {path}", block=block)
        if not path.is_dir():
            raise SpecError(val.loc, f"{where}{what} is not a directory: {path}", block=block)
        return path

    def meta_steps(self, vals: Mapping[str, _Val]) -> list[Step]:
        steps: list[Step] = []
        for name in META_ORDER:
            if name not in vals:
                continue
            val = vals[name]
            if name in ("env", "labels"):
                if val.value:  # an empty map changes nothing
                    steps.append(Meta(name, _pairs(val.value), val.loc))
            elif name == "expose":
                if val.value:
                    steps.append(Meta("expose", self.ports(val), val.loc))
            elif name == "entrypoint":
                steps.append(Meta("entrypoint", _command(val.value), val.loc))
            elif name == "cmd":
                steps.append(Meta("cmd", _command(val.value), val.loc))
            elif name == "workdir":
                steps.append(Meta("workdir", str(val.value), val.loc))
            else:
                steps.append(Meta("user", str(val.value), val.loc))
        return steps

    @staticmethod
    def ports(val: _Val) -> tuple[str, ...]:
        out = []
        assert isinstance(val.value, tuple)
        for item in val.value:
            try:
                out.append(normalise_port(item))
            except ValueError:
                shown = to_string(item)
                raise SpecError(
                    val.loc,
                    f'attribute "expose": "{shown}" is not a port '
                    "(expected 1-65535, optionally with /tcp, /udp or /sctp)",
                    block=val.block,
                ) from None
        return tuple(out)

    # ---- images

    def image(self, decl: _Decl) -> ImageDef:
        block = decl.block
        with _in_block(decl.label):
            self.no_blocks(block, IMAGE_BLOCKS)
            vals = self.attrs(block, IMAGE_ATTRS, self.scope, decl.dir)
            base = self.base(self.required(vals, "from", block.loc))
            steps: list[Step] = []
            for nested in block.blocks:
                step = self.step(nested, decl)
                if step is not None:
                    steps.append(step)
            steps.extend(self.meta_steps(vals))
            tags = vals["tags"].value if "tags" in vals else ()
            assert isinstance(tags, tuple)
            return ImageDef(
                id=f"image.{decl.name}", base=base, steps=tuple(steps), tags=tags, loc=block.loc
            )

    def step(self, block: Block, decl: _Decl) -> Step | None:
        where = f"{block.type}: "
        if block.labels:
            raise SpecError(block.loc, f"{where}this block takes no name")
        if block.type == "run":
            return self.run(block, decl, where)
        if block.type == "copy":
            return self.copy(block, decl, where)
        self.no_blocks(block, (), where)
        if block.type == "env":
            schema = {a.name: "string" for a in block.attributes}
            vals = self.attrs(block, schema, self.scope, decl.dir, where)
            if not vals:
                return None
            return Meta("env", _pairs({k: v.value for k, v in vals.items()}), block.loc)
        key = "path" if block.type == "workdir" else "name"
        vals = self.attrs(block, {key: "string"}, self.scope, decl.dir, where)
        value = self.required(vals, key, block.loc, where).value
        assert isinstance(value, str)
        return Meta("workdir" if block.type == "workdir" else "user", value, block.loc)

    def run(self, block: Block, decl: _Decl, where: str) -> Run:
        self.no_blocks(block, ("mount",), where)
        vals = self.attrs(block, RUN_ATTRS, self.scope, decl.dir, where)
        command = self.required(vals, "command", block.loc, where)
        if isinstance(command.value, tuple) and not command.value:
            raise SpecError(command.loc, f'{where}attribute "command": the list is empty')
        network = vals.get("network")
        if network is not None and network.value not in ("default", "none"):
            raise SpecError(
                network.loc,
                f'{where}attribute "network": expected "default" or "none", '
                f'found "{network.value}"',
            )
        mounts = tuple(self.mount(m, decl, where + "mount: ") for m in block.blocks)
        return Run(
            command=command.value,  # type: ignore[arg-type]
            network="none" if network is not None and network.value == "none" else "default",
            mounts=mounts,
            loc=block.loc,
        )

    def mount(self, block: Block, decl: _Decl, where: str) -> Mount:
        self.no_blocks(block, (), where)
        vals = self.attrs(block, MOUNT_ATTRS, self.scope, decl.dir, where)
        kind = self.required(vals, "type", block.loc, where)
        if kind.value not in ("cache", "secret"):
            raise SpecError(
                kind.loc,
                f'{where}attribute "type": expected "cache" or "secret", found "{kind.value}"',
                hint=did_you_mean(str(kind.value), ("cache", "secret")),
            )
        target = self.required(vals, "target", block.loc, where)
        assert isinstance(target.value, str)
        if not target.value.startswith("/"):
            raise SpecError(
                target.loc,
                f'{where}attribute "target": expected an absolute path, found "{target.value}"',
            )
        mount_id = str(vals["id"].value) if "id" in vals else ""
        if kind.value == "cache":
            if "source" in vals:
                raise SpecError(
                    vals["source"].loc, f'{where}attribute "source" only applies to secret mounts'
                )
            return Mount("cache", target.value, mount_id or target.value)
        source = self.required(vals, "source", block.loc, where)
        assert isinstance(source.value, str)
        return Mount("secret", target.value, mount_id, str(_abs(source.dir, source.value)))

    def copy(self, block: Block, decl: _Decl, where: str) -> Copy:
        self.no_blocks(block, (), where)
        vals = self.attrs(block, COPY_ATTRS, self.scope, decl.dir, where)
        src = self.required(vals, "src", block.loc, where).value
        sources = (src,) if isinstance(src, str) else src
        assert isinstance(sources, tuple)
        if not sources:
            raise SpecError(vals["src"].loc, f'{where}attribute "src": the list is empty')
        dest = self.required(vals, "dest", block.loc, where).value
        assert isinstance(dest, str)
        chmod = vals.get("chmod")
        if chmod is not None:
            mode = str(chmod.value)
            if not (3 <= len(mode) <= 4 and set(mode) <= set("01234567")):
                raise SpecError(
                    chmod.loc,
                    f'{where}attribute "chmod": expected an octal mode like "0644", found "{mode}"',
                )
        from_image: str | None = None
        context = ""
        ignore: tuple[str, ...] = ()
        if "from" in vals:
            if "context" in vals:
                raise SpecError(
                    vals["context"].loc,
                    f'{where}attribute "context" cannot be used together with "from"',
                )
            ref = vals["from"]
            if isinstance(ref.value, BlockRef):
                from_image = self.image_ref(ref.value, ref.loc, where + "from")
            else:
                from_image = str(ref.value)
        else:
            path = (
                self.directory(vals["context"], "context", where) if "context" in vals else decl.dir
            )
            context = str(path)
            ignore = self.ignore(path)
        return Copy(
            sources=tuple(str(s) for s in sources),
            dest=dest,
            context=context,
            from_image=from_image,
            chown=str(vals["chown"].value) if "chown" in vals else None,
            chmod=str(chmod.value) if chmod is not None else None,
            ignore=ignore,
            loc=block.loc,
        )

    # ---- apps

    def expand_matrix(self, decl: _Decl) -> None:
        """Evaluate ``matrix``/``name``; record the apps a matrix block makes."""
        block = decl.block
        with _in_block(decl.label):
            matrix_attr, name_attr = decl.attr("matrix"), decl.attr("name")
            matrix = self.checked(matrix_attr, "matrix", self.scope, "") if matrix_attr else None
            if matrix is None:
                if name_attr is not None:
                    raise SpecError(
                        name_attr.loc, 'attribute "name" only applies together with "matrix"'
                    )
                return
            assert isinstance(matrix, dict) and matrix_attr is not None
            for key, values in matrix.items():
                if not values:
                    raise SpecError(matrix_attr.loc, f'attribute "matrix": "{key}" has no values')
            if not matrix:
                raise SpecError(matrix_attr.loc, 'attribute "matrix": no keys')
            keys = sorted(matrix)
            made: list[tuple[str, Mapping[str, str]]] = []
            seen: set[str] = set()
            for combo in itertools.product(*(matrix[k] for k in keys)):
                values = dict(zip(keys, combo, strict=True))
                scope = {**self.scope, "matrix": Namespace.of("matrix", values)}
                if name_attr is not None:
                    raw = self.checked(name_attr, "string", scope, "")
                    if raw is None:
                        raise SpecError(name_attr.loc, 'attribute "name" is null')
                else:
                    raw = "-".join([decl.name, *combo])
                name = _sanitise(str(raw))
                if not name or name in seen:
                    raise SpecError(
                        (name_attr or matrix_attr).loc,
                        f'the matrix makes the app name "{name}" twice; '
                        'use every matrix key in "name"',
                    )
                if name in self.app_names:
                    raise SpecError(
                        (name_attr or matrix_attr).loc,
                        f'the matrix makes the app name "{name}", '
                        f"already defined at {self.app_names[name]}",
                    )
                seen.add(name)
                made.append((name, values))
            for name, _ in made:
                self.app_names[name] = block.loc
            del self.app_names[decl.name]
            self.matrix_apps[decl.name] = tuple(made)

    def parents(self, decl: _Decl) -> list[str]:
        """App block names listed in ``inherits``, in order."""
        attr = decl.attr("inherits")
        if attr is None:
            return []
        value = self.checked(attr, "refs", self.scope, "")
        names = []
        for item in value or ():
            assert isinstance(item, BlockRef | str)
            if isinstance(item, BlockRef):
                if item.kind != "app":
                    raise SpecError(
                        item.loc or attr.loc,
                        f'attribute "inherits": expected app blocks, found {item.id}',
                    )
                name = item.name
            else:
                name = item.removeprefix("app.")
            loc = item.loc if isinstance(item, BlockRef) and item.loc else attr.loc
            if ("app", name) not in self.decls:
                blocks = sorted(n for k, n in self.decls if k == "app")
                if name in self.app_names:
                    raise SpecError(
                        loc,
                        f'attribute "inherits": app.{name} is made by a matrix; '
                        "inherit from an app block",
                    )
                hint = did_you_mean(name, blocks)
                raise SpecError(
                    loc,
                    f'attribute "inherits": unknown app "{name}"',
                    hint=hint,
                )
            if name in self.matrix_apps:
                raise SpecError(
                    loc,
                    f'attribute "inherits": cannot inherit from app.{name}, a matrix block',
                )
            names.append(name)
        return names

    def cycle_error(
        self, kind: str, attr_name: str, what: str, trail: tuple[str, ...], name: str
    ) -> SpecError:
        """The error for ``name`` met again on ``trail``: located at the ``attr_name``
        attribute of the cycle's first block, printing the cycle."""
        cycle = [*trail[trail.index(name) :], name]
        first = self.decls[(kind, cycle[0])]
        attr = first.attr(attr_name)
        return SpecError(
            attr.loc if attr else first.block.loc,
            f"{what}: " + " -> ".join(f"{kind}.{n}" for n in cycle),
            block=first.label,
        )

    def merged(self, decl: _Decl, trail: tuple[str, ...], scope: Scope) -> dict[str, _Val]:
        """The attributes of app ``decl`` after ``inherits``: parents in list order,
        then its own; env/labels/args merge key-wise, everything else is replaced."""
        if decl.name in trail:
            raise self.cycle_error("app", "inherits", "inherits cycle", trail, decl.name)
        with _in_block(decl.label):
            for nested in decl.block.blocks:
                raise SpecError(
                    nested.loc,
                    f'unexpected block "{nested.type}" '
                    "(app blocks take attributes only; steps belong in an image block)",
                )
            parent_names = self.parents(decl)
        out: dict[str, _Val] = {}
        for name in parent_names:
            parent = self.resolved_app(name, (*trail, decl.name))
            _merge_into(out, {k: v for k, v in parent.items() if k not in NOT_INHERITED})
        with _in_block(decl.label):
            own = self.attrs(decl.block, APP_ATTRS, scope, decl.dir, skip=NOT_INHERITED)
        _merge_into(out, own)
        return out

    def resolved_app(self, name: str, trail: tuple[str, ...]) -> dict[str, _Val]:
        if name not in self.resolved:
            self.resolved[name] = self.merged(self.decls[("app", name)], trail, self.scope)
        return self.resolved[name]

    def apps(self, decl: _Decl) -> list[ImageDef]:
        if decl.name not in self.matrix_apps:
            vals = self.resolved_app(decl.name, ())
            with _in_block(decl.label):
                return self.app(decl, decl.name, vals)
        out = []
        for name, values in self.matrix_apps[decl.name]:
            scope = {**self.scope, "matrix": Namespace.of("matrix", values)}
            vals = self.merged(decl, (), scope)
            with _in_block(decl.label):
                out.extend(self.app(decl, name, vals))
        return out

    def app(self, decl: _Decl, name: str, vals: Mapping[str, _Val]) -> list[ImageDef]:
        app_id = f"app.{name}"
        block = decl.block
        if "dockerfile" in vals:
            return self.dockerfile_app(decl, app_id, vals)
        for key in ONLY_WITH_DOCKERFILE:
            if key in vals:
                raise SpecError(
                    vals[key].loc,
                    f'attribute "{key}" only applies together with "dockerfile"',
                    block=vals[key].block,
                )
        if "from" not in vals:
            raise SpecError(block.loc, 'missing required attribute "from"', block=decl.label)
        with _in_block(vals["from"].block):
            base = self.base(vals["from"])
        source = ""
        ignore: tuple[str, ...] = ()
        if "source" in vals:
            path = self.directory(vals["source"], "source")
            source, ignore = str(path), self.ignore(path)

        def strings(key: str) -> tuple[str, ...]:
            value = vals[key].value if key in vals else ()
            assert isinstance(value, tuple)
            return value

        def text(key: str) -> str:
            return str(vals[key].value) if key in vals else ""

        def loc(key: str) -> Location | None:
            return vals[key].loc if key in vals else None

        fields = AppFields(
            id=app_id,
            base=base,
            apt=strings("apt"),
            pip=strings("pip"),
            source=source,
            ignore=ignore,
            workdir=text("workdir"),
            env=_pairs(vals["env"].value) if "env" in vals else (),
            user=text("user"),
            expose=self.ports(vals["expose"]) if "expose" in vals else (),
            labels=_pairs(vals["labels"].value) if "labels" in vals else (),
            entrypoint=_command(vals["entrypoint"].value) if "entrypoint" in vals else None,
            cmd=_command(vals["cmd"].value) if "cmd" in vals else None,
            tags=strings("tags"),
            loc=block.loc,
            apt_loc=loc("apt"),
            pip_loc=loc("pip"),
            source_loc=loc("source"),
        )
        return [lower_app(fields)]

    def dockerfile_app(self, decl: _Decl, app_id: str, vals: Mapping[str, _Val]) -> list[ImageDef]:
        for key in NOT_WITH_DOCKERFILE:
            if key in vals:
                raise SpecError(
                    vals[key].loc,
                    f'attribute "{key}" cannot be used together with "dockerfile"',
                    block=vals[key].block,
                )
        val = vals["dockerfile"]
        assert isinstance(val.value, str)
        path = _abs(val.dir, val.value)
        if not path.is_file():
            raise SpecError(val.loc, f"dockerfile not found: {path}", block=val.block)
        context = self.directory(vals["context"], "context") if "context" in vals else path.parent
        args = vals["args"].value if "args" in vals else {}
        assert isinstance(args, dict)
        tags = vals["tags"].value if "tags" in vals else ()
        assert isinstance(tags, tuple)
        from pipeline.dockerfile import load_dockerfile

        defs = load_dockerfile(path, app_id, context, dict(args), tags, val.loc)
        extra = self.meta_steps(vals)
        if not extra:
            return list(defs)
        return [
            ImageDef(d.id, d.base, (*d.steps, *extra), d.tags, d.is_app, d.loc)
            if d.id == app_id
            else d
            for d in defs
        ]

    # ---- groups

    def group(self, decl: _Decl, trail: tuple[str, ...]) -> tuple[str, ...]:
        if decl.name in trail:
            raise self.cycle_error("group", "targets", "reference cycle", trail, decl.name)
        with _in_block(decl.label):
            self.no_blocks(decl.block, ())
            vals = self.attrs(decl.block, GROUP_ATTRS, self.scope, decl.dir)
            targets = self.required(vals, "targets", decl.block.loc)
            out: list[str] = []
            assert isinstance(targets.value, tuple)
            for item in targets.value:
                for target in self.target(item, targets.loc, (*trail, decl.name)):
                    if target not in out:
                        out.append(target)
            return tuple(out)

    def target(self, item: object, loc: Location, trail: tuple[str, ...]) -> tuple[str, ...]:
        if isinstance(item, BlockRef):
            kind, name, where = item.kind, item.name, item.loc or loc
        else:
            assert isinstance(item, str)
            prefix, _, rest = item.partition(".")
            kind, name = (prefix, rest) if prefix in ("app", "image", "group") else ("", item)
            where = loc
            if not kind:
                found = [
                    k
                    for k, known in (
                        ("app", name in self.app_names or name in self.matrix_apps),
                        ("image", ("image", name) in self.decls),
                        ("group", ("group", name) in self.decls),
                    )
                    if known
                ]
                if len(found) > 1:
                    options = " or ".join(f"{k}.{name}" for k in found)
                    raise SpecError(
                        loc, f'attribute "targets": "{name}" is ambiguous; write {options}'
                    )
                if not found:
                    choices = sorted(
                        {*self.app_names, *self.matrix_apps, *(n for _, n in self.decls)}
                    )
                    raise SpecError(
                        loc,
                        f'attribute "targets": unknown target "{name}"',
                        hint=did_you_mean(name, choices),
                    )
                kind = found[0]
        if kind == "group":
            if ("group", name) not in self.decls:
                raise SpecError(where, f'attribute "targets": unknown target "group.{name}"')
            return self.group(self.decls[("group", name)], trail)
        if kind == "app" and name in self.matrix_apps:
            return tuple(f"app.{n}" for n, _ in self.matrix_apps[name])
        known = name in self.app_names if kind == "app" else ("image", name) in self.decls
        if not known:
            raise SpecError(where, f'attribute "targets": unknown target "{kind}.{name}"')
        return (f"{kind}.{name}",)

    # ---- whole-fleet checks

    @staticmethod
    def check_references(images: Mapping[str, ImageDef]) -> None:
        """Every block reference names an image; ``from``/``copy.from`` make no cycle."""
        edges: dict[str, list[tuple[str, Location | None]]] = {}
        for image_id, image in images.items():
            out = edges.setdefault(image_id, [])
            if image.base.kind == "block":
                out.append((image.base.ref, image.base.loc))
            for step in image.steps:
                if isinstance(step, Copy) and step.from_image is not None:
                    out.append((step.from_image, step.loc))
            for target, loc in out:
                if target not in images:
                    raise SpecError(
                        loc,
                        f'unknown reference "{target}"',
                        block=_label_of(image_id),
                        hint=did_you_mean(target, sorted(images)),
                    )
        done: set[str] = set()

        def visit(node: str, path: list[str]) -> None:
            if node in done:
                return
            if node in path:
                cycle = [*path[path.index(node) :], node]
                loc = next(loc for t, loc in edges[cycle[0]] if t == cycle[1])
                raise SpecError(
                    loc, "reference cycle: " + " -> ".join(cycle), block=_label_of(cycle[0])
                )
            path.append(node)
            for target, _ in edges[node]:
                visit(target, path)
            path.pop()
            done.add(node)

        for image_id in sorted(edges):
            visit(image_id, [])


def _label_of(image_id: str) -> str:
    kind, _, name = image_id.partition(".")
    return f'{kind} "{name}"'


def _merge_into(out: dict[str, _Val], new: Mapping[str, _Val]) -> None:
    for key, val in new.items():
        if key in APP_MAP_ATTRS and key in out:
            merged = dict(out[key].value)  # type: ignore[call-overload]
            merged.update(val.value)  # type: ignore[call-overload]
            out[key] = _Val(merged, val.loc, val.dir, val.block)
        else:
            out[key] = val


# --------------------------------------------------------------------------- variable types

_BAD = object()
_REQUIRED = object()


def _type_of(value: Value) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
        return "list(string)"
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return "map(string)"
    return None


def _type_phrase(type_name: str) -> str:
    return {
        "string": "a string",
        "number": "a number",
        "bool": "a bool (true or false)",
        "list(string)": "a JSON list of strings",
        "map(string)": "a JSON object of strings",
    }[type_name]


def _convert_default(value: Value, type_name: str) -> object:
    try:
        if type_name == "string":
            return _check("string", value)
        if type_name == "list(string)":
            return _check("strings", value)
        if type_name == "map(string)":
            return _check("map", value)
    except _Mismatch:
        return _BAD
    if type_name == "bool":
        return value if isinstance(value, bool) else _BAD
    if isinstance(value, str):
        return _convert_text(value, "number")
    return value if isinstance(value, int | float) and not isinstance(value, bool) else _BAD


def _convert_text(raw: str, type_name: str | None) -> object:
    """A ``--set`` / environment string converted to a variable's type."""
    if type_name in (None, "string"):
        return raw
    if type_name == "number":
        number = parse_number(raw)
        return _BAD if number is None else number
    if type_name == "bool":
        return {"true": True, "false": False}.get(raw.strip(), _BAD)
    try:
        data = json.loads(raw)
    except ValueError:
        return _BAD
    if type_name == "list(string)":
        if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
            return _BAD
        return tuple(data)
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        return _BAD
    return dict(sorted(data.items()))
