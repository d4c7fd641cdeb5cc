"""Written-out expectations for cases Debian's BuildKit 20.10 cannot build.

A written case's ``[expect]`` table states the whole image relative to its base, so a
check can fail on anything the tool adds, drops or changes:

* ``base``: ``"busybox:latest"`` (default), a crafted base of ``bases.toml`` (same
  tree as busybox, its own config) or ``"scratch"`` (an empty root directory);
* ``[expect.paths]``: ``"/path" = { type, mode, uid, gid, content | sha256 |
  same_as, target, xattrs }`` for every path the image adds or changes (parent
  directories included), or ``"/path" = "absent"`` for one it removes (with all below
  it). Defaults: ``type = "file"``, mode ``0644`` for a file, ``0755`` for a directory,
  ``0777`` for a symlink, owner 0:0, no xattrs; a file needs its content
  (``content`` text, ``sha256`` hex or ``same_as`` another path of the expected tree);
* ``hardlinks``: lists of paths that are one inode (every hard-link group of the
  image, beyond the base's);
* ``[expect.config]``: the facts of :func:`tests.oracle.config_facts` that differ
  from the base's (``layers`` and ``history_layers`` count the base's too); an empty
  list, table or string removes a field;
* ``error``: instead of all that, pipeline must refuse the build with a message
  matching this regular expression.

Every other path and fact must be exactly the base's.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from tests.oracle import Entry, config_facts, diff_configs, diff_trees

_ENTRY_KEYS = {"type", "mode", "uid", "gid", "content", "sha256", "same_as", "target", "xattrs"}
_DEFAULT_MODE = {"file": 0o644, "dir": 0o755, "symlink": 0o777}
SCRATCH_TREE = {"/": Entry("dir", 0o755)}


def expected_tree(base: Mapping[str, Entry], expect: Mapping[str, Any]) -> dict[str, Entry]:
    tree = dict(base)
    paths: Mapping[str, Any] = expect.get("paths", {})
    for path, spec in paths.items():
        if spec == "absent":
            for p in [p for p in tree if p == path or p.startswith(path.rstrip("/") + "/")]:
                del tree[p]
    pending = {p: s for p, s in paths.items() if s != "absent"}
    while pending:  # same_as may name another listed path
        progressed = False
        for path, spec in list(pending.items()):
            entry = _entry(path, spec, tree)
            if entry is not None:
                tree[path] = entry
                del pending[path]
                progressed = True
        if not progressed:
            raise ValueError(f"expect.paths: same_as cannot be resolved for {sorted(pending)}")
    for group in expect.get("hardlinks", []):
        for path in group:
            tree[path] = replace(tree[path], links=tuple(sorted(group)))
    return tree


def _entry(path: str, spec: Mapping[str, Any], tree: Mapping[str, Entry]) -> Entry | None:
    unknown = set(spec) - _ENTRY_KEYS
    if unknown:
        raise ValueError(f"expect.paths {path!r}: unknown keys {sorted(unknown)}")
    kind = spec.get("type", "file")
    if kind not in ("file", "dir", "symlink", "fifo"):
        raise ValueError(f"expect.paths {path!r}: unknown type {kind!r}")
    digest = None
    if kind == "file":
        if "content" in spec:
            digest = hashlib.sha256(spec["content"].encode()).hexdigest()
        elif "sha256" in spec:
            digest = spec["sha256"]
        elif "same_as" in spec:
            other = tree.get(spec["same_as"])
            if other is None:
                return None
            digest = other.sha256
        else:
            raise ValueError(f"expect.paths {path!r}: a file needs content, sha256 or same_as")
    if kind == "symlink" and "target" not in spec:
        raise ValueError(f"expect.paths {path!r}: a symlink needs its target")
    return Entry(
        kind=kind,
        mode=int(spec["mode"], 8) if "mode" in spec else _DEFAULT_MODE.get(kind, 0o644),
        uid=int(spec.get("uid", 0)),
        gid=int(spec.get("gid", 0)),
        target=spec.get("target"),
        sha256=digest,
        xattrs=tuple(sorted(spec.get("xattrs", {}).items())),
    )


def expected_facts(base_config: Mapping[str, Any] | None, expect: Mapping[str, Any]) -> dict:
    """The config facts the image must have: the base's, changed as written."""
    if base_config is None:  # scratch
        facts: dict[str, Any] = {"layers": 0, "history_layers": 0}
    else:
        facts = config_facts(base_config)
    for key, value in expect.get("config", {}).items():
        if value in ([], {}, ""):
            facts.pop(key, None)
        else:
            facts[key] = value
    return facts


def check(
    tree: Mapping[str, Entry],
    config: Mapping[str, Any],
    base_tree: Mapping[str, Entry],
    base_config: Mapping[str, Any] | None,
    expect: Mapping[str, Any],
    who: str,
) -> list[str]:
    """One line per way the image differs from the written expectation."""
    names = ("written", who)
    want_facts = expected_facts(base_config, expect)
    if base_config is None:
        got = config_facts(config)
        for key in ("os", "architecture"):  # a scratch image still names its platform
            if key in got:
                want_facts.setdefault(key, got[key])
    lines = diff_trees(expected_tree(base_tree, expect), tree, names)
    lines += diff_configs(want_facts, config_facts(config), names)
    return lines


def check_error(error: str | None, pattern: str) -> list[str]:
    if error is None:
        return [f"pipeline built it; expected a refusal matching {pattern!r}"]
    if not re.search(pattern, error):
        return [f"pipeline's message {error!r} does not match {pattern!r}"]
    return []
