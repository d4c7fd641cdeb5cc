"""Bake targets as values: the attributes bake documents, read from evaluated blocks,
merged as bake merges them, overridden by ``--set``, and printed in bake's ``--print``
JSON schema. Pure.

Merge rules (``Target.Merge`` in buildx): ``args``, ``labels``, ``contexts`` and
``extra-hosts`` merge key by key (a null value leaves what is there); ``annotations``,
``attest``, ``cache-from``, ``secret``, ``ssh``, ``no-cache-filter``, ``ulimits`` and
``entitlements`` append; every other attribute is replaced by the later definition.
The same rules merge repeated blocks of one target (an override file), ``inherits``
(parents in order, then the target itself) and ``--set``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from pipeline.errors import Location, SpecError, did_you_mean
from pipeline.hcl import cty
from pipeline.hcl.convert import ConversionError, convert
from pipeline.hcl.cty import V

# attribute name -> kind: str, bool, strings, map (nullable strings), entries, any
TARGET_FIELDS: dict[str, str] = {
    "description": "str",
    "inherits": "strings",
    "annotations": "strings",
    "attest": "entries",
    "context": "str",
    "contexts": "map",
    "dockerfile": "str",
    "dockerfile-inline": "str",
    "args": "map",
    "labels": "map",
    "tags": "strings",
    "cache-from": "entries",
    "cache-to": "entries",
    "target": "str",
    "secret": "entries",
    "ssh": "entries",
    "platforms": "strings",
    "output": "entries",
    "pull": "bool",
    "no-cache": "bool",
    "network": "str",
    "no-cache-filter": "strings",
    "shm-size": "str",
    "ulimits": "strings",
    "resources": "map",
    "call": "str",
    "entitlements": "strings",
    "extra-hosts": "map",
    "policy": "entries",
    "matrix": "any",
    "name": "str",
}
GROUP_FIELDS = {"description": "str", "targets": "strings"}
MERGED_MAPS = ("args", "labels", "contexts", "extra-hosts", "resources")
APPENDED = (
    "annotations",
    "attest",
    "cache-from",
    "secret",
    "ssh",
    "no-cache-filter",
    "ulimits",
    "entitlements",
    "policy",
)
# the order of --print's keys (buildx's Target struct)
PRINT_ORDER = (
    "description",
    "annotations",
    "attest",
    "context",
    "contexts",
    "dockerfile",
    "dockerfile-inline",
    "args",
    "labels",
    "tags",
    "cache-from",
    "cache-to",
    "target",
    "secret",
    "ssh",
    "platforms",
    "output",
    "pull",
    "no-cache",
    "network",
    "no-cache-filter",
    "shm-size",
    "ulimits",
    "resources",
    "call",
    "entitlements",
    "extra-hosts",
    "policy",
)

Entry = dict[str, str]  # one "type=...,key=value" item of output/cache/secret/ssh/attest


@dataclass
class Target:
    """A target's attributes (None: not set). ``where`` remembers where each attribute
    was last set, for messages; ``volatile`` which functions made which values."""

    name: str
    values: dict[str, Any] = field(default_factory=dict)
    where: dict[str, Location] = field(default_factory=dict)
    volatile: dict[str, frozenset[str]] = field(default_factory=dict)
    directory: str = ""  # the directory of the file that set "context" (or the target)
    context_dirs: dict[str, str] = field(default_factory=dict)  # per named context

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def merge(self, other: Target) -> None:
        """Merge ``other`` (the later definition) into this one, in place."""
        for key, value in other.values.items():
            if value is None or key in ("matrix", "name"):
                continue
            if key in MERGED_MAPS:
                merged = dict(self.values.get(key) or {})
                for k, v in value.items():
                    if v is not None or key == "contexts":
                        merged[k] = v
                self.values[key] = merged
            elif key in APPENDED or key == "inherits":
                self.values[key] = [*(self.values.get(key) or []), *value]
            else:
                self.values[key] = value
            if key in other.where:
                self.where[key] = other.where[key]
            if key in other.volatile:
                self.volatile[key] = other.volatile[key]
        if other.values.get("context") is not None or not self.directory:
            self.directory = other.directory or self.directory
        for k, d in other.context_dirs.items():
            self.context_dirs[k] = d

    def copy(self) -> Target:
        return Target(
            self.name,
            {
                k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
                for k, v in self.values.items()
            },
            dict(self.where),
            dict(self.volatile),
            self.directory,
            dict(self.context_dirs),
        )


# --------------------------------------------------------------------------- reading


def target_from(
    name: str,
    attrs: Mapping[str, V],
    locs: Mapping[str, Location],
    label: str,
    volatile: Mapping[str, frozenset[str]],
    directory: str,
) -> Target:
    """A Target from one evaluated block's attributes; SpecError for an unknown
    attribute or a value of the wrong type."""
    t = Target(name, directory=directory)
    for key, value in attrs.items():
        if key in ("matrix", "name"):
            continue
        loc = locs[key]
        if key not in TARGET_FIELDS:
            raise SpecError(
                loc,
                f'unknown attribute "{key}"',
                block=label,
                hint=did_you_mean(key, sorted(TARGET_FIELDS)),
            )
        t.values[key] = read_value(key, TARGET_FIELDS[key], value, loc, label)
        t.where[key] = loc
        if volatile.get(key):
            t.volatile[key] = volatile[key]
    if t.values.get("contexts"):
        t.context_dirs = dict.fromkeys(t.values["contexts"], directory)
    return t


def read_value(key: str, kind: str, value: V, loc: Location, label: str) -> Any:
    def bad(what: str) -> SpecError:
        return SpecError(
            loc, f'attribute "{key}": expected {what}, found {_describe(value)}', block=label
        )

    if value.is_null:
        return None
    try:
        if kind == "str":
            return convert(value, cty.STRING).text
        if kind == "bool":
            return convert(value, cty.BOOL).flag
        if kind == "strings":
            items = convert(value, cty.ListType(cty.STRING)).items
            return [i.text for i in items if not i.is_null]
        if kind == "map":
            m = convert(value, cty.MapType(cty.STRING))
            return {k: (None if v.is_null else v.text) for k, v in m.attrs.items()}
    except ConversionError:
        raise bad(
            {
                "str": "a string",
                "bool": "a bool",
                "strings": "a list of strings",
                "map": "a map of strings",
            }[kind]
        ) from None
    if kind == "entries":
        if not cty.is_sequence(value.type):
            raise bad("a list")
        kept = [v for v in value.items if not v.is_null and v.data != ""]
        return [read_entry(key, item, loc, label) for item in kept]
    return value


def _describe(value: V) -> str:
    if isinstance(value.type, cty.TupleType):
        return "a list"
    return cty.describe(value)


def read_entry(key: str, item: V, loc: Location, label: str) -> Entry:
    """One entry as key=value pairs, from its string (CSV) or object form."""
    if item.type == cty.STRING:
        return parse_entry(key, item.text, loc, label)
    if isinstance(item.type, cty.ObjectType | cty.MapType):
        out: Entry = {}
        for k, v in item.attrs.items():
            if v.is_null:
                continue
            if cty.is_sequence(v.type):
                out[k] = ",".join(convert(x, cty.STRING).text for x in v.items)
                continue
            try:
                out[k] = convert(v, cty.STRING).text
            except ConversionError:
                raise SpecError(
                    loc, f'attribute "{key}": "{k}" must be a string', block=label
                ) from None
        return _defaults(key, out)
    raise SpecError(
        loc,
        f'attribute "{key}": each entry is a string or an object, found {_describe(item)}',
        block=label,
    )


def parse_entry(key: str, text: str, loc: Location | None, label: str) -> Entry:
    """``type=registry,ref=x`` (buildx's CSV forms; a bare value means the usual
    default: a registry ref for caches, a local directory for outputs, an id for
    ssh and secrets; ssh is ``ID[=PATH,PATH...]``, not CSV)."""
    if key == "ssh":
        ident, _, paths = text.partition("=")
        return {"id": ident, "paths": paths} if paths else {"id": ident}
    try:
        fields_ = next(csv.reader(io.StringIO(text)), [])
    except csv.Error:
        raise SpecError(loc, f'attribute "{key}": cannot parse "{text}"', block=label) from None
    out: Entry = {}
    for i, f in enumerate(fields_):
        k, sep, v = f.partition("=")
        if not sep:
            if key in ("cache-from", "cache-to") and len(fields_) == 1:
                out.update(type="registry", ref=f)
            elif key == "output" and len(fields_) == 1:
                out.update({"type": "tar" if f == "-" else "local", "dest": f})
            elif key == "ssh" and i == 0:
                out["id"] = f
            elif key == "attest" and i == 0:
                out["type"] = f
            else:
                raise SpecError(loc, f'attribute "{key}": "{f}" is not key=value', block=label)
            continue
        k = k.strip().lower() if key != "ssh" else k.strip()
        if key == "ssh" and i == 0 and "id" not in out:
            out.update(id=k, paths=v)
            continue
        out[k] = v
    return _defaults(key, out)


def _defaults(key: str, entry: Entry) -> Entry:
    if key == "secret":
        entry.setdefault("type", "env" if "env" in entry and "src" not in entry else "file")
        if "source" in entry:
            entry.setdefault("src", entry.pop("source"))
    if key == "output" and "type" not in entry and "dest" in entry:
        entry["type"] = "local"
    return entry


# --------------------------------------------------------------------------- --set

LIST_SET = (
    "output",
    "cache-to",
    "cache-from",
    "tags",
    "platform",
    "secrets",
    "ssh",
    "attest",
    "entitlements",
    "annotations",
    "no-cache-filter",
    "ulimits",
    "policy",
)


@dataclass(frozen=True)
class Override:
    pattern: str
    key: str  # e.g. "args.FOO", "tags", "no-cache"
    value: str | None  # None: "--set t.args.X" (from the environment) or a bare bool
    append: bool = False


def parse_overrides(pairs: Sequence[str]) -> list[Override]:
    from pipeline.errors import UsageError

    out = []
    for pair in pairs:
        lhs, sep, value = pair.partition("=")
        append = lhs.endswith("+")
        lhs = lhs.removesuffix("+")
        parts = lhs.split(".", 2)
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise UsageError(f"--set {pair}: expected TARGET.KEY=VALUE")
        key = ".".join(parts[1:])
        field_name = parts[1]
        if not sep and field_name not in ("args", "no-cache", "pull", "push", "load"):
            raise UsageError(f"--set {pair}: expected TARGET.KEY=VALUE")
        keyed = ("args", "contexts", "labels", "secret", "resources", "extra-hosts")
        if field_name in keyed and len(parts) != 3:
            raise UsageError(
                f"--set {pair}: {field_name} needs a name: {parts[0]}.{field_name}.NAME=VALUE"
            )
        if append and field_name not in LIST_SET:
            raise UsageError(f"--set {pair}: {field_name} does not support +=")
        out.append(Override(parts[0], key, value if sep else None, append))
    return out


def apply_overrides(t: Target, overrides: Sequence[Override], environ: Mapping[str, str]) -> None:
    """Apply the ``--set`` values that concern ``t`` (already matched by pattern), in
    order. UsageError for an unknown key or a bad value."""
    from pipeline.errors import UsageError

    lists: dict[str, list[str]] = {}
    appends: dict[str, bool] = {}
    for o in overrides:
        head, _, sub = o.key.partition(".")
        value = o.value
        if head in ("args", "contexts", "labels", "extra-hosts", "resources"):
            if value is None:
                if head != "args" or sub not in environ:
                    continue
                value = environ[sub]
            t.values[head] = {**(t.values.get(head) or {}), sub: value}
        elif head in ("no-cache", "pull"):
            t.values[head] = _parse_bool(head, "true" if value is None else value)
        elif head in ("push", "load"):
            flag = _parse_bool(head, "true" if value is None else value)
            t.values["output"] = (push_outputs if head == "push" else load_outputs)(
                list(t.values.get("output") or []), flag
            )
        elif head in LIST_SET:
            lists.setdefault(head, [])
            if value:
                lists[head].append(value)
            appends[head] = o.append
        elif head in ("context", "dockerfile", "target", "call", "network", "shm-size"):
            t.values[head] = value
        elif head == "secret":
            found = next((s for s in t.values.get("secret") or [] if s.get("id") == sub), None)
            if found is None:
                raise UsageError(
                    f"--set {t.name}.secret.{sub}: the target declares no secret {sub!r}"
                )
            found.update(
                {k: v for k, v in parse_entry("secret", value or "", None, "").items() if k != "id"}
            )
        else:
            raise UsageError(
                f"--set {o.pattern}.{o.key}: unknown key {head!r}",
            )
    for head, values in lists.items():
        name = "platforms" if head == "platform" else "secret" if head == "secrets" else head
        parsed: list[Any] = values
        if name in ("output", "cache-to", "cache-from", "secret", "ssh", "attest", "policy"):
            parsed = [parse_entry(name, v, None, f'target "{t.name}"') for v in values]
        if appends[head] or name in ("annotations", "attest", "entitlements"):
            t.values[name] = [*(t.values.get(name) or []), *parsed]
        else:
            t.values[name] = parsed


def _parse_bool(key: str, text: str) -> bool:
    from pipeline.errors import UsageError
    from pipeline.spec.bakevars import GO_FALSE, GO_TRUE

    if text in GO_TRUE:
        return True
    if text in GO_FALSE:
        return False
    raise UsageError(f"--set: invalid value {text!r} for the bool key {key}")


def push_outputs(outputs: list[Entry], push: bool) -> list[Entry]:
    """bake's ``--push``: ``image`` outputs get push=true, a registry output is added
    when every output is ``docker``; ``push=false`` drops registry outputs."""
    if not push:
        kept = [o for o in outputs if o.get("type") != "registry"]
        for o in kept:
            if o.get("type") == "image":
                o["push"] = "false"
        return kept
    add = True
    for o in outputs:
        if o.get("type") != "docker":
            add = False
        if o.get("type") == "image":
            o["push"] = "true"
    if add:
        outputs.append({"type": "image", "push": "true"})
    return outputs


def load_outputs(outputs: list[Entry], load: bool) -> list[Entry]:
    """bake's ``--load``: add a ``docker`` output unless one (without dest) exists or
    an output is ``local``/``tar``."""
    if not load:
        return outputs
    for o in outputs:
        kind = o.get("type")
        if kind == "docker" and not o.get("dest"):
            return outputs
        if kind not in ("image", "registry", "oci", "docker"):
            return outputs
    return [*outputs, {"type": "docker"}]


# --------------------------------------------------------------------------- print


def normalize(t: Target) -> None:
    for key in ("annotations", "tags", "platforms", "no-cache-filter", "ulimits", "entitlements"):
        if t.values.get(key) is not None:
            t.values[key] = list(dict.fromkeys(v for v in t.values[key] if v))
    for key in ("attest", "secret", "ssh", "cache-from", "cache-to", "output"):
        if t.values.get(key) is not None:
            seen: list[Entry] = []
            for entry in t.values[key]:
                if entry not in seen:
                    seen.append(entry)
            t.values[key] = seen
    if t.values.get("network") == "host":
        t.values["entitlements"] = list(
            dict.fromkeys([*(t.values.get("entitlements") or []), "network.host"])
        )
    if t.values.get("contexts") is not None:
        t.values["contexts"] = {k: v for k, v in t.values["contexts"].items() if v} or None
    for key in ("args", "labels", "extra-hosts"):
        if t.values.get(key) is not None:
            t.values[key] = {k: v for k, v in t.values[key].items() if v is not None}


def print_target(t: Target) -> dict[str, Any]:
    """The target in bake's ``--print`` JSON schema (``${`` escaped as ``$${`` in
    values that are templates when read back)."""
    out: dict[str, Any] = {}
    for key in PRINT_ORDER:
        value = t.values.get(key)
        if (value is None or value == [] or value == {}) and key not in ("context", "dockerfile"):
            continue
        if key in ("args", "labels", "extra-hosts", "annotations", "dockerfile-inline"):
            value = _escape(value)
        if isinstance(value, dict):
            value = dict(sorted(value.items()))
        if key in ("cache-from", "cache-to", "output", "secret", "ssh", "attest", "policy"):
            value = [_entry_json(key, e) for e in value or ()]
        out[key] = value
    return out


def _escape(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("${", "$${").replace("%{", "%%{")
    if isinstance(value, list):
        return [_escape(v) for v in value]
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    return value


def _entry_json(key: str, entry: Entry) -> dict[str, Any]:
    out: dict[str, Any] = dict(sorted(entry.items()))
    if key == "ssh" and "paths" in out:
        out["paths"] = [p for p in str(out["paths"]).split(",") if p]
    if key == "secret":  # buildx prints a secret as id, src and env only
        kind = out.pop("type", "file")
        if kind == "env" and "env" not in out and "src" in out:
            out["env"] = out.pop("src")
        out = {k: out[k] for k in ("id", "src", "env") if out.get(k)}
    return out


__all__ = ["fields"]
