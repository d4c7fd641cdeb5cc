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
    groups: dict[tuple[object, ...], list[PendingPip]] = {}
    for item in pending:
        env = result.nodes.get(item.env_key)
        if env is None or env.outcome not in ("built", "cached", "pulled"):
            continue
        same = (item.env_key, item.env, item.workdir, item.user, item.step.mounts, item.step.env)
        groups.setdefault(same, []).append(item)
    out = {}
    for items in groups.values():
        layers = result.nodes[items[0].env_key].layers
        out.update(_resolve_group(store, items, layers, options, runner))
    return out


def _resolve_group(
    store: Store,
    items: Sequence[PendingPip],
    layers: tuple[str, ...],
    options: BuildOptions,
    runner: StepRunner,
) -> dict[str, Resolution]:
    """Resolve sets that share an environment: one sandbox run asks pip for every set's
    install report (``options.jobs`` at a time, through the image's own ``xargs``),
    a second one fetches the artifacts the wheelhouse lacks, all in one ``pip
    download --no-deps`` of exact pins."""
    first = items[0]
    mount_id = f"pip-resolve-{first.key.removeprefix('sha256:')[:24]}"
    out_dir = store.cache_mount_dir(mount_id)
    for old in out_dir.iterdir():
        old.unlink()
    for n, item in enumerate(items):
        pkgs = " ".join(shlex.quote(p) for p in item.packages)
        (out_dir / f"job-{n:05d}.sh").write_text(
            f"exec python3 -m pip install -q --dry-run --report {OUT}/report-{n}.json {pkgs}\n"
        )
    jobs = max(1, options.jobs)
    command = f"cd {OUT} && ls job-*.sh | xargs -P {jobs} -n 1 sh"
    _run(store, first, layers, options, runner, command, mount_id, f"{len(items)} sets")
    reports = []
    for n, item in enumerate(items):
        try:
            reports.append(json.loads((out_dir / f"report-{n}.json").read_text()))
        except (OSError, ValueError) as exc:
            where = f"{item.step.loc}: " if item.step.loc else ""
            raise UsageError(
                f"{where}pip {' '.join(item.packages)}: no resolver report ({exc})"
            ) from None
    wheels = store.cache_mount_dir(PIP_CACHE_ID) / "wheels"
    missing = sorted(
        {
            f"{e['metadata']['name']}=={e['metadata']['version']}"
            for data in reports
            for e in data.get("install", ())
            if not (wheels / _artifact(e)).is_file()
        }
    )
    if missing:
        reqs = " ".join(shlex.quote(r) for r in missing)
        fetch = (
            f"mkdir -p {WHEELS} && flock {WHEELS}.lock "
            f"python3 -m pip download -q --no-deps -d {WHEELS} {reqs}"
        )
        _run(store, first, layers, options, runner, fetch, mount_id, f"fetch {len(missing)}")
    for old in out_dir.iterdir():
        old.unlink()
    return {
        item.key: _resolution(store, item, data) for item, data in zip(items, reports, strict=True)
    }


def _artifact(entry: Mapping[str, Any]) -> str:
    """The file name of a report entry's artifact."""
    return unquote(str(entry["download_info"]["url"]).rsplit("/", 1)[-1])


def _run(
    store: Store,
    item: PendingPip,
    layers: tuple[str, ...],
    options: BuildOptions,
    runner: StepRunner,
    command: str,
    mount_id: str,
    what: str,
) -> None:
    mounts = (*item.step.mounts, Mount("cache", OUT, mount_id))
    run = Run(command, mounts=mounts, env=item.step.env, loc=item.step.loc)
    node = LayerNode(
        f"resolve:{item.key}",
        "run",
        item.env_key,
        f"RUN pip resolve ({what})",
        run,
        item.env,
        item.workdir,
        item.user,
    )
    run_discarded(store, node, layers, options, lambda line: None, runner)


def _resolution(store: Store, item: PendingPip, data: Mapping[str, Any]) -> Resolution:
    """The pins of one pip report (artifacts read from the wheelhouse on the host)."""
    wheels = store.cache_mount_dir(PIP_CACHE_ID) / "wheels"
    pins = []
    files: dict[str, dict[str, str]] = {}
    for entry in data.get("install", ()):
        meta = entry["metadata"]
        name = canonical_name(str(meta["name"]))
        filename = _artifact(entry)
        path = wheels / filename
        if not path.is_file():
            where = f"{item.step.loc}: " if item.step.loc else ""
            raise UsageError(f"{where}pip: {filename} is not in the wheelhouse after fetching")
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


def wheel_paths(path: Path) -> dict[str, str]:
    """The paths a wheel installs, relative to the install scheme (``site/...``,
    ``bin/...``, ``data/...``, ``headers/...``), each with a digest of what it will
    hold: its files (their bytes) and its console and GUI scripts (their entry point).
    Directories are not paths here: they merge across layers."""
    out: dict[str, str] = {}
    with zipfile.ZipFile(path) as wheel:
        for name in wheel.namelist():
            if name.endswith("/"):
                continue
            top, _, rest = name.partition("/")
            if top.endswith(".data") and rest:
                scheme, _, inner = rest.partition("/")
                where = {"purelib": "site", "platlib": "site", "scripts": "bin"}.get(scheme, scheme)
                out[f"{where}/{inner}"] = hashlib.sha256(wheel.read(name)).hexdigest()
                continue
            out[f"site/{name}"] = hashlib.sha256(wheel.read(name)).hexdigest()
            if top.endswith(".dist-info") and rest == "entry_points.txt":
                parser = ConfigParser(delimiters=("=",), interpolation=None)
                parser.optionxform = str  # type: ignore[assignment,method-assign]
                parser.read_string(wheel.read(name).decode("utf-8", "replace"))
                for section in ("console_scripts", "gui_scripts"):
                    if parser.has_section(section):
                        for script, target in parser[section].items():
                            out[f"bin/{script.strip()}"] = f"{section}:{target.strip()}"
    return out
