"""Resolving app pip sets in the sandbox, and the ``pip`` section of the lock file.

A pending set (``BuildGraph.pending_pip``) is resolved on the image's own Python: its
environment layer is built (or found in the store), then one throw-away sandbox step
on it downloads the set's closure into the shared wheelhouse (the ``pip`` cache
mount, under its lock) and asks pip for an install report without installing
(``pip install --dry-run --report``). Nothing of that step is kept but the report.
The artifacts are then read on the host: sha256, and the paths each wheel installs
(from its file list and console scripts), so packages writing the same path are put
in one layer.

Lock file (``pipeline.lock``, shared with the registry base pins): ``"pip"`` maps a
resolution key (``pipeline.factoring.resolution_key``) to the set and its pins. Writes
are atomic (temp + rename) and keep the file's other sections.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import zipfile
from collections.abc import Mapping, Sequence
from configparser import ConfigParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from pipeline.build.executor import BuildOptions, Reporter, build, run_discarded
from pipeline.errors import UsageError
from pipeline.factoring import WHEELS, Pin, Resolution, canonical_name, overlapping
from pipeline.graph import BuildGraph, LayerNode, PendingPip
from pipeline.model import Mount, Run
from pipeline.sandbox.api import StepRunner
from pipeline.store import Store

OUT = "/run/pipeline/resolve"
PIP_CACHE_ID = "pip"

# ---------------------------------------------------------------------------------------
# the lock file's pip section


def read_pip_lock(path: Path) -> dict[str, Resolution]:
    """The pip resolutions of a lock file by resolution key; {} when it has none."""
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a pipeline lock file: {exc}") from None
    section = value.get("pip", {}) if isinstance(value, dict) else None
    out = {}
    try:
        assert isinstance(section, dict)
        for key, entry in section.items():
            pins = tuple(
                Pin(str(p["name"]), str(p["version"]), str(p["file"]), str(p["sha256"]))
                for p in entry["pins"]
            )
            groups = tuple(tuple(str(n) for n in g) for g in entry.get("groups", ()))
            out[str(key)] = Resolution(tuple(str(n) for n in entry["packages"]), pins, groups)
    except (AssertionError, KeyError, TypeError, AttributeError):
        raise UsageError(f"{path}: not a pipeline lock file (bad 'pip' section)") from None
    return out


def write_pip_lock(path: Path, resolutions: Mapping[str, Resolution]) -> None:
    """Add (or replace) ``resolutions`` in the lock file's pip section, atomically,
    keeping its other sections and entries."""
    from pipeline.build.lock import update_lock

    def change(value: dict[str, Any]) -> None:
        section = dict(value.get("pip") or {})
        for key, res in resolutions.items():
            section[key] = {
                "packages": list(res.packages),
                "pins": [
                    {"name": p.name, "version": p.version, "file": p.file, "sha256": p.sha256}
                    for p in res.pins
                ],
                "groups": [list(g) for g in res.groups],
            }
        value["pip"] = dict(sorted(section.items()))

    update_lock(path, change)


# ---------------------------------------------------------------------------------------
# resolving


def resolve_pending(
    store: Store,
    graph: BuildGraph,
    pending: Sequence[PendingPip],
    options: BuildOptions,
    reporter: Reporter,
    runner: StepRunner | None = None,
) -> dict[str, Resolution]:
    """Resolve ``pending`` sets (building their environment layers first). A set whose
    environment fails to build is left out (the build then reports that failure)."""
    if runner is None:
        from pipeline.sandbox.linux import LinuxRunner

        runner = LinuxRunner()
    envs = sorted({p.env_key for p in pending})
    result = build(graph, store, [], options, reporter, runner, keys=envs)
    out = {}
    for item in pending:
        env = result.nodes.get(item.env_key)
        if env is None or env.outcome not in ("built", "cached", "pulled"):
            continue
        out[item.key] = _resolve_one(store, item, env.layers, options, runner)
    return out


def _resolve_one(
    store: Store,
    item: PendingPip,
    layers: tuple[str, ...],
    options: BuildOptions,
    runner: StepRunner,
) -> Resolution:
    mount_id = f"pip-resolve-{item.key.removeprefix('sha256:')[:24]}"
    out_dir = store.cache_mount_dir(mount_id)
    report = out_dir / "report.json"
    report.unlink(missing_ok=True)
    pkgs = " ".join(shlex.quote(p) for p in item.packages)
    command = (
        f"mkdir -p {WHEELS} && flock {WHEELS}.lock python3 -m pip download -q -d {WHEELS} {pkgs}"
        f" && python3 -m pip install -q --dry-run --no-index --find-links {WHEELS}"
        f" --report {OUT}/report.json {pkgs}"
    )
    mounts = (*item.step.mounts, Mount("cache", OUT, mount_id))
    run = Run(command, mounts=mounts, env=item.step.env, loc=item.step.loc)
    label = f"RUN pip resolve {' '.join(item.packages)}"
    node = LayerNode(
        f"resolve:{item.key}", "run", item.env_key, label, run, item.env, item.workdir, item.user
    )
    lines: list[str] = []
    run_discarded(store, node, layers, options, lines.append, runner)
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError) as exc:
        where = f"{item.step.loc}: " if item.step.loc else ""
        raise UsageError(
            f"{where}pip {' '.join(item.packages)}: no resolver report ({exc})"
        ) from None
    finally:
        report.unlink(missing_ok=True)
    wheels = store.cache_mount_dir(PIP_CACHE_ID) / "wheels"
    pins = []
    files: dict[str, frozenset[str]] = {}
    for entry in data.get("install", ()):
        meta = entry["metadata"]
        name = canonical_name(str(meta["name"]))
        filename = unquote(str(entry["download_info"]["url"]).rsplit("/", 1)[-1])
        path = wheels / filename
        pins.append(Pin(name, str(meta["version"]), filename, _sha256(path)))
        if filename.endswith(".whl"):
            files[name] = wheel_paths(path)
    return Resolution(item.packages, tuple(sorted(pins)), overlapping(files))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def wheel_paths(path: Path) -> frozenset[str]:
    """The paths a wheel installs, relative to the install scheme (``site/...``,
    ``bin/...``, ``data/...``, ``headers/...``): its files, and its console and GUI
    scripts. Directories are not paths here: they merge across layers."""
    out = set()
    with zipfile.ZipFile(path) as wheel:
        for name in wheel.namelist():
            if name.endswith("/"):
                continue
            top, _, rest = name.partition("/")
            if top.endswith(".data") and rest:
                scheme, _, inner = rest.partition("/")
                where = {"purelib": "site", "platlib": "site", "scripts": "bin"}.get(scheme, scheme)
                out.add(f"{where}/{inner}")
                continue
            out.add(f"site/{name}")
            if top.endswith(".dist-info") and rest == "entry_points.txt":
                parser = ConfigParser(delimiters=("=",), interpolation=None)
                parser.optionxform = str  # type: ignore[assignment,method-assign]
                parser.read_string(wheel.read(name).decode("utf-8", "replace"))
                for section in ("console_scripts", "gui_scripts"):
                    if parser.has_section(section):
                        out.update(f"bin/{script.strip()}" for script in parser[section])
    return frozenset(out)
