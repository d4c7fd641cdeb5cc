"""The spec schema: which blocks and attributes exist, their expected types, and the
small checks and conversions the loader applies to evaluated values. Pure.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import Location, SpecError
from pipeline.hcl.values import (
    Attribute,
    Block,
    BlockRef,
    Value,
    describe,
    parse_number,
    to_string,
)
from pipeline.model import (
    MetaField,
    Pairs,
)

TOP_BLOCKS = ("variable", "locals", "image", "app", "group")
VARIABLE_TYPES = ("string", "number", "bool", "list(string)", "map(string)")
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
MATRIX_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")

# Attribute kinds: what a value must be, and how it is normalised.
EXPECTED = {
    "bool": "true or false",
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
META_ORDER: tuple[MetaField, ...] = (
    "workdir",
    "env",
    "user",
    "expose",
    "labels",
    "entrypoint",
    "cmd",
)
IMAGE_ATTRS = {"from": "ref", "tags": "strings", "description": "string", **META_FIELDS}
IMAGE_BLOCKS = ("run", "copy", "env", "workdir", "user")
APP_ATTRS = {
    "from": "ref",
    "apt": "strings",
    "pip": "strings",
    "factoring": "bool",
    "source": "string",
    "tags": "strings",
    "description": "string",
    "inherits": "refs",
    "matrix": "matrix",
    "name": "string",
    "dockerfile": "string",
    "context": "string",
    "args": "map",
    "target": "string",
    **META_FIELDS,
}
APP_MAP_ATTRS = ("env", "labels", "args")  # merged key-wise by ``inherits``
NOT_INHERITED = ("inherits", "matrix", "name")
NOT_WITH_DOCKERFILE = ("from", "apt", "pip", "factoring", "source")
ONLY_WITH_DOCKERFILE = ("context", "args", "target")
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


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Decl:
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
class Val:
    """An evaluated, checked attribute value, with where it was written: its location,
    the directory relative paths resolve against, and the label of its block."""

    value: object
    loc: Location
    dir: Path
    block: str


class Mismatch(Exception):
    def __init__(self, found: str) -> None:
        super().__init__(found)
        self.found = found


@contextmanager
def in_block(label: str) -> Iterator[None]:
    """Label located errors that do not name a block yet with ``label``."""
    try:
        yield
    except SpecError as exc:
        if exc.block is None and exc.loc is not None:
            raise SpecError(exc.loc, exc.message, block=label, hint=exc.hint) from None
        raise


def abs_path(base: Path, rel: str) -> Path:
    """``rel`` resolved against the absolute directory ``base``, normalised."""
    return Path(os.path.normpath(base / rel))


def valid_name(name: str) -> bool:
    return bool(name) and (name[0].isalpha() or name[0] == "_") and set(name) <= NAME_CHARS


def sanitise_name(name: str) -> str:
    return "".join(c if c in MATRIX_NAME_CHARS else "-" for c in name.lower())


def as_pairs(mapping: object) -> Pairs:
    assert isinstance(mapping, dict)
    return tuple(sorted((str(k), str(v)) for k, v in mapping.items()))


def as_command(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return ("/bin/sh", "-c", value)
    assert isinstance(value, tuple)
    return value


def check_value(kind: str, value: Value) -> object:
    """``value`` normalised for ``kind``; raises _Mismatch saying what was found."""
    if kind == "any":
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise Mismatch(describe(value))
        return value
    if kind == "string":
        text = to_string(value)
        if text is None:
            raise Mismatch(describe(value))
        return text
    if kind == "strings":
        return _strings(value)
    if kind == "command":
        text = to_string(value)
        return text if text is not None and not isinstance(value, bool) else _strings(value)
    if kind == "map":
        if not isinstance(value, dict):
            raise Mismatch(describe(value))
        out = {}
        for key, item in value.items():
            text = to_string(item)
            if text is None:
                raise Mismatch(f'an object with {describe(item)} at key "{key}"')
            out[key] = text
        return out
    if kind == "ref":
        if not isinstance(value, BlockRef | str):
            raise Mismatch(describe(value))
        return value
    if kind == "refs":
        if not isinstance(value, tuple):
            raise Mismatch(describe(value))
        for i, item in enumerate(value):
            if not isinstance(item, BlockRef | str):
                raise Mismatch(f"a list with {describe(item)} at index {i}")
        return value
    if kind == "ports":
        if not isinstance(value, tuple):
            raise Mismatch(describe(value))
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, int | float | str):
                raise Mismatch(f"a list with {describe(item)} at index {i}")
        return value
    if kind == "matrix":
        if not isinstance(value, dict):
            raise Mismatch(describe(value))
        matrix = {}
        for key, item in value.items():
            if not isinstance(item, tuple):
                raise Mismatch(f'an object with {describe(item)} at key "{key}"')
            try:
                matrix[key] = _strings(item)
            except Mismatch as exc:
                raise Mismatch(f'an object whose key "{key}" holds {exc.found}') from None
        return matrix
    raise AssertionError(kind)  # pragma: no cover


def _strings(value: Value) -> tuple[str, ...]:
    if not isinstance(value, tuple):
        raise Mismatch(describe(value))
    out = []
    for i, item in enumerate(value):
        text = to_string(item)
        if text is None:
            raise Mismatch(f"a list with {describe(item)} at index {i}")
        out.append(text)
    return tuple(out)


def label_of(image_id: str) -> str:
    kind, _, name = image_id.partition(".")
    return f'{kind} "{name}"'


def merge_into(out: dict[str, Val], new: Mapping[str, Val]) -> None:
    for key, val in new.items():
        if key in APP_MAP_ATTRS and key in out:
            merged = dict(out[key].value)  # type: ignore[call-overload]
            merged.update(val.value)
            out[key] = Val(merged, val.loc, val.dir, val.block)
        else:
            out[key] = val


# --------------------------------------------------------------------------- variable types

BAD = object()
REQUIRED = object()


def type_of(value: Value) -> str | None:
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


def type_phrase(type_name: str) -> str:
    return {
        "string": "a string",
        "number": "a number",
        "bool": "a bool (true or false)",
        "list(string)": "a JSON list of strings",
        "map(string)": "a JSON object of strings",
    }[type_name]


def convert_default(value: Value, type_name: str) -> object:
    try:
        if type_name == "string":
            return check_value("string", value)
        if type_name == "list(string)":
            return check_value("strings", value)
        if type_name == "map(string)":
            return check_value("map", value)
    except Mismatch:
        return BAD
    if type_name == "bool":
        return value if isinstance(value, bool) else BAD
    if isinstance(value, str):
        return convert_text(value, "number")
    return value if isinstance(value, int | float) and not isinstance(value, bool) else BAD


def convert_text(raw: str, type_name: str | None) -> object:
    """A ``--set`` / environment string converted to a variable's type."""
    if type_name in (None, "string"):
        return raw
    if type_name == "number":
        number = parse_number(raw)
        return BAD if number is None else number
    if type_name == "bool":
        return {"true": True, "false": False}.get(raw.strip(), BAD)
    try:
        data = json.loads(raw)
    except ValueError:
        return BAD
    if type_name == "list(string)":
        if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
            return BAD
        return tuple(data)
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        return BAD
    return dict(sorted(data.items()))
