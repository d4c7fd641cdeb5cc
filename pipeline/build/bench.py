"""``pipeline bench``: the rebuild-after-a-change use case, measured on the user's own
fleet, in a temporary copy.

Phases, each one ``pipeline build-all`` run as a child process (interpreter start,
imports and spec parsing included, as a user or CI runs it; the benchmark suite in
``benchmarks/`` runs the same command line from ``build_all_argv`` and reads the same
``figures``):

* cold: into a scratch store that holds only the fleet's bases (hard-linked from the
  user's store);
* no-op: the same again, ``rounds`` times;
* per chosen app, ``rounds`` times: one realistic change in the copy, then a build.
  ``source`` appends a comment line to one file the app's COPY takes from its context
  (new text each round); ``deps`` appends a shell comment to the line that declares
  the app's first RUN step (its command changes, so that layer and everything above it
  rebuild); ``base`` gives the app's base a new top layer in the scratch store.
  Each round's change is undone before the next app's.

Contracts: the user's files and store are only read. The copy is the smallest
directory that holds the specs, every build context and every Dockerfile, without
``.git``; it and the scratch store are removed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError, UsageError
from pipeline.fs.contexthash import FileDigest
from pipeline.model import Copy, Fleet, ImageDef, Run
from pipeline.store import Store

SCHEMA = "pipeline-bench"
SCHEMA_VERSION = 1
CHANGES = ("source", "deps", "base")
COMMENT = {
    "#": (".py", ".sh", ".rb", ".pl", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".ini",
          ".conf", ".r", ".tf", ".hcl", ".mk", "Dockerfile", "Makefile", ".env"),
    "//": (".js", ".ts", ".jsx", ".tsx", ".go", ".c", ".h", ".cc", ".cpp", ".java", ".rs",
           ".kt", ".swift", ".scala", ".cs", ".php"),
    "--": (".sql", ".lua", ".hs"),
}  # fmt: skip


# -- what the suite shares -------------------------------------------------------------------


def build_all_argv(
    store: Path, specs: Path, report: Path, jobs: int | None = None, python: str = ""
) -> list[str]:
    """The measured command: a quiet ``build-all`` writing its JSON report."""
    argv = [python or sys.executable, "-m", "pipeline", "--store", str(store), "build-all"]
    argv += ["--specs", str(specs), "--progress", "quiet", "--json-report", str(report)]
    if jobs:
        argv += ["-j", str(jobs)]
    return argv


def figures(report: Mapping[str, Any], seconds: float) -> dict[str, Any]:
    """The figures of one measured build, from its ``--json-report``."""
    t = report["totals"]
    rebuilt = [n for n in report["nodes"] if n["outcome"] == "built"]
    return {
        "seconds": round(seconds, 3),
        "layers_rebuilt": t["built"],
        "layers_cached": t["cached"],
        "hit_ratio": t["hit_ratio"],
        "bytes_written": t["bytes_written"],
        "unique_bytes": t["unique_bytes"],
        "naive_bytes": t["naive_bytes"],
        "saved_bytes": t["saved_bytes"],
        "apps_rebuilt": sorted({a for n in rebuilt for a in n["apps"]}),
    }


def run_build_all(
    store: Path, specs: Path, report: Path, jobs: int | None = None
) -> tuple[float, dict[str, Any]]:
    """Run the measured command; (wall seconds, its JSON report). PipelineError with
    the output's tail when it fails."""
    argv = build_all_argv(store, specs, report, jobs)
    env = dict(os.environ)
    env.pop("PIPELINE_STORE", None)
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=specs.parent, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise PipelineError(f"{specs}: build-all failed in the bench copy: {tail}")
    return seconds, json.loads(report.read_text())


# -- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """One measured phase: per-round figures and the median of their seconds."""

    name: str
    app: str = ""
    changed: str = ""  # what was changed (a path relative to the copy, a step, a base)
    rounds: tuple[dict[str, Any], ...] = ()
    note: str = ""

    @property
    def seconds(self) -> float:
        return statistics.median(r["seconds"] for r in self.rounds) if self.rounds else 0.0


@dataclass(frozen=True)
class BenchReport:
    specs: str
    change: str
    rounds: int
    jobs: int | None
    phases: tuple[Phase, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        phases = []
        for p in self.phases:
            body = asdict(p)
            body["seconds"] = round(p.seconds, 3)
            phases.append(body)
        cold = next((p for p in self.phases if p.name == "cold"), None)
        disk = {}
        if cold and cold.rounds:
            last = cold.rounds[-1]
            disk = {k: last[k] for k in ("unique_bytes", "naive_bytes", "saved_bytes")}
        return {
            "schema": SCHEMA,
            "version": SCHEMA_VERSION,
            "specs": self.specs,
            "change": self.change,
            "rounds": self.rounds,
            "jobs": self.jobs,
            "cpus": os.cpu_count(),
            "phases": phases,
            "disk": disk,
        }


# -- the copy and the changes --------------------------------------------------------------------


def copy_root(specs: Path, fleet: Fleet) -> Path:
    """The smallest directory holding the specs, contexts and Dockerfiles."""
    paths = [specs.resolve()]
    for image in fleet.images.values():
        if image.loc is not None:
            paths.append(Path(image.loc.file).resolve().parent)
        paths += [
            Path(s.context).resolve() for s in image.steps if isinstance(s, Copy) and s.context
        ]
    return Path(os.path.commonpath([str(p) for p in paths]))


def copy_tree(root: Path, dest: Path, skip: Sequence[Path] = ()) -> None:
    """Copy ``root`` to ``dest`` (symlinks kept as links), without ``.git`` and ``skip``."""
    skipped = {p.resolve() for p in skip}

    def ignore(here: str, names: list[str]) -> list[str]:
        return [n for n in names if n == ".git" or (Path(here) / n).resolve() in skipped]

    shutil.copytree(root, dest, symlinks=True, ignore=ignore)


def comment_for(path: Path) -> str | None:
    """The line-comment marker for a file by its name, None when unknown."""
    for marker, endings in COMMENT.items():
        if any(path.name.endswith(e) for e in endings):
            return marker
    return None


def pick_source_file(
    image: ImageDef, manifests: Mapping[Copy, Sequence[FileDigest]]
) -> Path | None:
    """A text file the image's last context COPY takes, whose comment syntax is known
    (the first by path)."""
    for step in reversed(image.steps):
        if not isinstance(step, Copy) or step.from_image is not None:
            continue
        for row in manifests.get(step, ()):
            path = Path(step.context) / row.rel
            if row.kind == "file" and comment_for(path) and _is_text(path):
                return path
    return None


def _is_text(path: Path) -> bool:
    try:
        path.read_bytes()[:4096].decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return True


def append_comment(path: Path, revision: int) -> None:
    """Append one comment line (different for each ``revision``) to a text file."""
    marker = comment_for(path) or "#"
    text = path.read_text()
    if text and not text.endswith("\n"):
        text += "\n"
    path.write_text(f"{text}{marker} pipeline bench: change {revision}\n")


def deps_line(image: ImageDef, fleet: Fleet) -> tuple[Path, int] | None:
    """(file, line) declaring the first RUN step of the image (or of the image it is
    built on, when it has none), where a shell comment can be added: a one-line
    Dockerfile RUN, or an HCL ``command = "..."`` line (on the block's line or one of
    the three after it). None otherwise, e.g. for a lowered ``pip`` or ``apt`` list."""
    for step in image.steps:
        if isinstance(step, Run) and step.loc is not None and step.loc.line:
            path = Path(step.loc.file)
            lines = path.read_text().splitlines()
            first = step.loc.line - 1
            line = lines[first].rstrip() if first < len(lines) else ""
            if line.lstrip().upper().startswith("RUN ") and not line.endswith("\\"):
                return path, step.loc.line
            for i in range(first, min(first + 4, len(lines))):
                text = lines[i]
                at = text.find("command")
                if at >= 0 and text.rfind('"') > text.find('"', at) > at:
                    return path, i + 1
            return None
    if image.base.kind == "block" and image.base.ref in fleet.images:
        return deps_line(fleet.images[image.base.ref], fleet)
    return None


def append_shell_comment(path: Path, line: int, revision: int) -> None:
    """Add ``# pipeline bench: change N`` at the end of a RUN line's command (inside the
    closing quote of an HCL ``command = "..."``)."""
    lines = path.read_text().splitlines(keepends=True)
    text = lines[line - 1].rstrip("\n")
    note = f" # pipeline bench: change {revision}"
    at = text.find("command")
    quote = text.rfind('"')
    if at >= 0 and quote > text.find('"', at) > at:
        text = text[:quote] + note + text[quote:]
    else:
        text += note
    lines[line - 1] = text + "\n"
    path.write_text("".join(lines))


def new_base_top(store: Store, ref: str, revision: int, epoch: int) -> None:
    """Point ``ref`` in ``store`` at a copy of its image with one more small layer."""
    from pipeline.build.images import load_image
    from pipeline.fs.tarwrite import layer_info
    from pipeline.oci.config import HistoryEntry, ImageConfig
    from pipeline.oci.manifest import Descriptor, image_config_blob, manifest_blob
    from pipeline.oci.media import MT_LAYER

    image = load_image(store, ref)
    with store.staging() as staging:
        layer = staging.path / "layer"
        (layer / "etc").mkdir(parents=True)
        (layer / "etc" / "pipeline-bench-base").write_text(f"change {revision}\n")
        info = layer_info(layer, epoch)
        store.commit_layer(layer, info.diff_id, info.size)
    layers = [*image.layers, (info.diff_id, info.size)]
    history = [HistoryEntry("base layer", False) for _ in image.layers]
    history.append(HistoryEntry(f"pipeline bench: base change {revision}", False))
    config = ImageConfig.from_oci(image.config.get("config") or {})
    blob = image_config_blob(config, [d for d, _ in layers], history)
    store.put_blob(blob)
    manifest = manifest_blob(blob.descriptor, [Descriptor(MT_LAYER, d, s) for d, s in layers])
    store.tag(ref, store.put_blob(manifest))


# -- the bench -------------------------------------------------------------------------------------


def run_bench(
    specs: Path,
    user_store: Store,
    fleet: Fleet,
    apps: Sequence[str],
    change: str,
    rounds: int,
    jobs: int | None,
    epoch: int = 0,
    on_phase: Any = None,
) -> BenchReport:
    """Measure the phases of the module docstring for the image ids ``apps``."""
    from pipeline.build.images import resolve_bases
    from pipeline.build.verify import seed_bases
    from pipeline.fs.contexthash import ContextHasher
    from pipeline.graph import compile_fleet
    from pipeline.spec.loader import load_fleet

    if change not in CHANGES:
        raise UsageError(f"--change {change}: expected one of {', '.join(CHANGES)}")
    if rounds < 1:
        raise UsageError(f"--rounds {rounds}: expected at least 1")
    specs = specs.resolve()
    bases = resolve_bases(fleet, user_store)
    missing = sorted(
        {d.base.ref for d in fleet.images.values() if d.base.kind in ("store", "registry")}
        - set(bases)
    )
    if missing:
        raise UsageError(
            f"{missing[0]}: base image not in the store ({user_store.root}); "
            "bootstrap, import or pull it first"
        )
    hasher = ContextHasher(None)
    manifests: dict[Copy, Any] = {}

    def digest(copy: Copy) -> str:
        rows = hasher.manifest(Path(copy.context), copy.sources, copy.ignore)
        manifests[copy] = rows
        from pipeline.fs.contexthash import digest_of

        return digest_of(rows)

    graph = compile_fleet(fleet, bases, digest)
    root = copy_root(specs, fleet)
    phases: list[Phase] = []
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp:
        work = Path(tmp)
        tree = work / "tree"
        copy_tree(root, tree, skip=[user_store.root])
        copy_specs = tree / specs.relative_to(root)
        store_dir = work / "store"
        scratch = Store(store_dir)
        try:
            seed_bases(user_store, scratch, graph, sorted(graph.nodes))
            for base in bases.values():
                for name, digest_, _ in user_store.names():
                    if digest_ == base.manifest_digest:
                        scratch.tag(name, digest_)
        finally:
            scratch.close()
        counter = iter(range(1, 1_000_000))
        revisions = iter(range(1, 1_000_000))  # new content for every round of every app

        def measure() -> dict[str, Any]:
            report = work / f"report-{next(counter)}.json"
            seconds, body = run_build_all(store_dir, copy_specs, report, jobs)
            return figures(body, seconds)

        def done(phase: Phase) -> None:
            phases.append(phase)
            if on_phase is not None:
                on_phase(phase)

        done(Phase("cold", rounds=(measure(),)))
        done(Phase("no-op", rounds=tuple(measure() for _ in range(rounds))))
        copied = load_fleet(copy_specs, {}, os.environ)
        for app in apps:
            image = copied.images[app]
            done(_change_phase(app, image, copied, change, rounds, tree, store_dir, epoch,
                               measure, manifests, fleet, root, revisions))  # fmt: skip
    return BenchReport(str(specs), change, rounds, jobs, tuple(phases))


def _change_phase(
    app: str,
    image: ImageDef,
    copied: Fleet,
    change: str,
    rounds: int,
    tree: Path,
    store_dir: Path,
    epoch: int,
    measure: Any,
    manifests: Mapping[Copy, Any],
    fleet: Fleet,
    root: Path,
    revisions: Iterator[int],
) -> Phase:
    if change == "source":
        original = pick_source_file(fleet.images[app], manifests)
        if original is None:
            return Phase("change", app, note="no text file in its build context to change")
        path = tree / original.relative_to(root)
        before = path.read_bytes()
        try:
            runs = []
            for r in (next(revisions) for _ in range(rounds)):
                append_comment(path, r)
                runs.append(measure())
                path.write_bytes(before)
        finally:
            path.write_bytes(before)
        return Phase("change", app, str(path.relative_to(tree)), tuple(runs))
    if change == "deps":
        found = deps_line(image, copied)
        if found is None:
            note = "no RUN step declared on a line a comment can be added to"
            return Phase("change", app, note=note)
        path, line = found
        before = path.read_bytes()
        try:
            runs = []
            for r in (next(revisions) for _ in range(rounds)):
                append_shell_comment(path, line, r)
                runs.append(measure())
                path.write_bytes(before)
        finally:
            path.write_bytes(before)
        return Phase("change", app, f"{path.relative_to(tree)}:{line}", tuple(runs))
    ref = _base_ref(image, copied)
    if ref is None:
        return Phase("change", app, note="its base is not a stored image")
    scratch = Store(store_dir)
    try:
        original_digest = scratch.resolve(ref)
        assert original_digest is not None
        runs = []
        for r in (next(revisions) for _ in range(rounds)):
            new_base_top(scratch, ref, r, epoch)
            runs.append(measure())
        scratch.tag(ref, original_digest)
    finally:
        scratch.close()
    return Phase("change", app, f"base {ref}", tuple(runs))


def _base_ref(image: ImageDef, fleet: Fleet) -> str | None:
    while image.base.kind == "block" and image.base.ref in fleet.images:
        image = fleet.images[image.base.ref]
    return image.base.ref if image.base.kind in ("store", "registry") else None


# -- rendering -------------------------------------------------------------------------------------


def _apps(apps: Sequence[str]) -> str:
    if len(apps) > 3:
        return f"{len(apps)} apps"
    return ", ".join(a.removeprefix("app.") for a in apps)


def render(report: BenchReport, human_bytes: Callable[[float], str]) -> str:
    """The table ``pipeline bench`` prints (``human_bytes`` formats byte counts)."""
    rows = [("phase", "changed", "time", "rebuilt", "written", "hits", "apps rebuilt")]
    for p in report.phases:
        if not p.rounds:
            rows.append((f"{p.name} {p.app}".strip(), p.note, "-", "-", "-", "-", ""))
            continue
        last = p.rounds[-1]
        apps = last["apps_rebuilt"]
        rows.append(
            (
                f"{p.name} {p.app.removeprefix('app.')}".strip(),
                p.changed,
                f"{p.seconds:.2f}s",
                str(last["layers_rebuilt"]),
                human_bytes(last["bytes_written"]),
                f"{last['hit_ratio']:.0%}",
                _apps(apps),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in
                       enumerate(zip(r, widths, strict=True))).rstrip() for r in rows]  # fmt: skip
    disk = report.to_json()["disk"]
    if disk:
        lines.append(
            f"disk: images {human_bytes(disk['naive_bytes'])} summed, "
            f"{human_bytes(disk['unique_bytes'])} stored once: sharing saves "
            f"{human_bytes(disk['saved_bytes'])}"
        )
    lines.append(f"median of {report.rounds} round(s) per phase (cold: 1); change: {report.change}")
    return "\n".join(lines)
