"""Build one generated fleet with pipeline, Docker BuildKit and buildah, alternating
tools in one run, beside the physical floor; write JSON + Markdown.

For every fleet size and repeat, in a rotating tool order:

* cold: a fresh store / data root holding only the busybox base, then build every app;
* store growth: the tool's data root after the cold build minus before it (``du -sb``
  semantics: apparent bytes, each hard-linked inode once);
* no-op: build every app again, nothing changed;
* one change: edit one source file of one app, build every app again.

Peers build the per-app Dockerfiles two at a time (``--peer-parallel``); pipeline runs
one ``build-all -j JOBS``. Docker runs on its own ``dockerd`` (private socket, data root
and exec root under the work dir; started per cold round, always stopped at the end).
The floor runs the fleet's unique RUN commands directly in a chroot of the same busybox
rootfs (system step, then the dependency sets ``--jobs`` at a time) and then tars +
SHA-256s every unique layer (those directories and each app's source) with GNU tar.

    python -m benchmarks.compare_peers --apps 10,40 --dep-sets 3 --dep-mb 20 \\
        --system-mb 4 --files 5 --repeats 3

Needs root, Debian's docker.io and buildah packages, and busybox-static.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import harness
from benchmarks.workload import MIB, Fleet, Shape, change_source, generate, run_steps

RESULTS = Path(__file__).resolve().parent / "results"
BASE_TAG = "busybox:latest"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _run(argv: Sequence[str], timeout: float = 3600, **kw: Any) -> str:
    proc = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False, **kw
    )
    if proc.returncode != 0:
        raise harness.CommandFailed(argv, proc.returncode, proc.stdout + proc.stderr)
    return proc.stdout


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root``, deepest first."""
    prefix = str(root.resolve())
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(set(found), key=len, reverse=True)


def remove_tree(root: Path) -> None:
    """Unmount whatever a tool left mounted below ``root``, then delete it."""
    for point in _mounts_under(root):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    shutil.rmtree(root, ignore_errors=True)
    if root.exists():
        _run(["rm", "-rf", "--one-file-system", str(root)])


def _pool(jobs: int, fn: Callable[[str], None], items: Sequence[str]) -> None:
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for future in [pool.submit(fn, item) for item in items]:
            future.result()


# -- tools ------------------------------------------------------------------------------


class Tool:
    """One builder. ``reset`` (untimed) leaves a fresh store with only the base image;
    ``build`` (timed by the caller) builds every app of the fleet."""

    name = "tool"
    label = "tool"

    def __init__(self, work: Path) -> None:
        self.work = work / self.name
        self.work.mkdir(parents=True, exist_ok=True)

    def data_root(self) -> Path:
        raise NotImplementedError

    def reset(self, base_tar: Path) -> None:
        raise NotImplementedError

    def build(self, fleet: Fleet) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        """Stop what the tool started; must be safe to call twice."""


class PipelineTool(Tool):
    name = "pipeline"
    label = "pipeline"

    def __init__(self, work: Path, jobs: int) -> None:
        super().__init__(work)
        self.jobs = jobs
        self.store = self.work / "store"
        self.builds = 0

    def data_root(self) -> Path:
        return self.store

    def reset(self, base_tar: Path) -> None:
        remove_tree(self.store)
        harness.pipeline(self.store, "import", str(base_tar), "--tag", BASE_TAG)

    def build(self, fleet: Fleet) -> dict[str, Any]:
        self.builds += 1
        report = self.work / f"report-{self.builds}.json"
        run, data = harness.build_all(self.store, fleet.specs, report, self.jobs)
        return {"totals": data["totals"], "peak_rss": run.peak_rss, "cpu_seconds": run.cpu_seconds}


class BuildKitTool(Tool):
    """Docker BuildKit on a private dockerd, restarted with an empty data root per
    cold round."""

    name = "buildkit"
    label = "Docker BuildKit"

    def __init__(self, work: Path, parallel: int, cli: str) -> None:
        super().__init__(work)
        self.parallel = parallel
        self.cli = cli
        self.root = self.work / "data"
        # sockets live in a short path: a unix socket path has at most 107 bytes, and
        # containerd puts its own below the exec root
        self.short = Path(tempfile.mkdtemp(prefix="pbk-", dir="/tmp"))
        self.sock = self.short / "docker.sock"
        self.exec_root = self.short / "exec"
        self.proc: subprocess.Popen[bytes] | None = None
        self.children: set[int] = set()

    def data_root(self) -> Path:
        return self.root

    def docker(self, *args: str, timeout: float = 3600) -> str:
        env = dict(os.environ, DOCKER_BUILDKIT="1")
        env.pop("DOCKER_HOST", None)
        return _run([self.cli, "-H", f"unix://{self.sock}", *args], timeout=timeout, env=env)

    def start(self) -> None:
        self.stop()
        remove_tree(self.root)
        remove_tree(self.exec_root)
        self.short.mkdir(exist_ok=True)
        logf = (self.work / "dockerd.log").open("ab")
        self.proc = subprocess.Popen(
            [
                "dockerd",
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--host",
                f"unix://{self.sock}",
                "--data-root",
                str(self.root),
                "--exec-root",
                str(self.exec_root),
                "--pidfile",
                str(self.work / "dockerd.pid"),
                "--storage-driver",
                "overlay2",
            ],
            stdout=logf,
            stderr=logf,
            start_new_session=True,
        )
        logf.close()
        deadline = time.monotonic() + 60
        while True:
            try:
                self.docker("version", timeout=10)
                break
            except (harness.CommandFailed, subprocess.TimeoutExpired):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = (self.work / "dockerd.log").read_text(errors="replace")[-2000:]
                    self.stop()
                    raise RuntimeError(f"dockerd did not start:\n{tail}") from None
                time.sleep(0.2)
        self.children = _children(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None:
            self.children |= _children(self.proc.pid)
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        for pid in sorted(self.children):  # dockerd's own containerd, if it outlived it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self.children = set()
        for where in (self.work, self.short):
            for point in _mounts_under(where):
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)

    def reset(self, base_tar: Path) -> None:
        self.start()
        self.docker("load", "-q", "-i", str(base_tar))

    def build(self, fleet: Fleet) -> dict[str, Any]:
        def one(app: str) -> None:
            self.docker(
                "build",
                "--network",
                "none",
                "-q",
                "-t",
                f"bench/{app}",
                "-f",
                str(fleet.dockerfile(app)),
                str(fleet.context(app)),
            )

        _pool(self.parallel, one, fleet.apps)
        return {}

    def close(self) -> None:
        self.stop()
        remove_tree(self.short)


def _children(pid: int) -> set[int]:
    """Direct children of ``pid`` (all threads)."""
    out: set[int] = set()
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out |= {int(c) for c in (task / "children").read_text().split()}
    return out


class BuildahTool(Tool):
    name = "buildah"
    label = "buildah"

    def __init__(self, work: Path, parallel: int, storage: str, isolation: str) -> None:
        super().__init__(work)
        self.parallel = parallel
        self.storage = storage
        self.isolation = isolation
        self.root = self.work / "root"
        self.runroot = self.work / "runroot"

    def data_root(self) -> Path:
        return self.root

    def buildah(self, *args: str) -> str:
        return _run(
            [
                "buildah",
                "--root",
                str(self.root),
                "--runroot",
                str(self.runroot),
                "--storage-driver",
                self.storage,
                *args,
            ]
        )

    def reset(self, base_tar: Path) -> None:
        self.close()
        self.buildah("pull", "-q", f"docker-archive:{base_tar}")

    def build(self, fleet: Fleet) -> dict[str, Any]:
        net = ["--network", "none"] if self.isolation != "chroot" else []

        def one(app: str) -> None:
            self.buildah(
                "bud",
                "--layers",
                "--isolation",
                self.isolation,
                *net,
                "--pull=never",
                "-q",
                "-t",
                f"bench/{app}",
                "-f",
                str(fleet.dockerfile(app)),
                str(fleet.context(app)),
            )

        _pool(self.parallel, one, fleet.apps)
        return {}

    def close(self) -> None:
        if self.root.exists():
            with contextlib.suppress(harness.CommandFailed, subprocess.TimeoutExpired):
                self.buildah("rm", "--all")
        remove_tree(self.root)
        remove_tree(self.runroot)


class Floor(Tool):
    """The fleet's unique RUN commands run directly in a chroot of the busybox rootfs,
    then every unique layer tarred and hashed once. No cache, no store, no metadata."""

    name = "floor"
    label = "floor (run + tar + hash)"

    def __init__(self, work: Path, jobs: int) -> None:
        super().__init__(work)
        self.jobs = jobs
        self.rootfs = self.work / "rootfs"
        self.last: dict[str, Any] = {}

    def data_root(self) -> Path:
        return self.rootfs

    def reset(self, base_tar: Path) -> None:
        from pipeline.build.bases import make_busybox_rootfs

        remove_tree(self.rootfs)
        make_busybox_rootfs(self.rootfs)

    def build(self, fleet: Fleet) -> dict[str, Any]:
        steps = run_steps(fleet.shape)
        started = time.perf_counter()

        def run(command: str) -> None:
            _run(["chroot", str(self.rootfs), "/bin/sh", "-c", command], env=_clean_env())

        run(steps[0][1])
        _pool(self.jobs, run, [c for _, c in steps[1:]])
        run_seconds = time.perf_counter() - started
        layers = [self.rootfs / "opt" / "system"]
        layers += [self.rootfs / "opt" / "deps" / f"set-{k}" for k in range(fleet.shape.dep_sets)]
        layers += [fleet.context(app) for app in fleet.apps]
        sizes: dict[str, int] = {}

        def tar_hash(path_s: str) -> None:
            sizes[path_s] = _tar_sha256(Path(path_s))[1]

        started = time.perf_counter()
        _pool(self.jobs, tar_hash, [str(p) for p in layers])
        tar_seconds = time.perf_counter() - started
        run_layers = sum(sizes[str(p)] for p in layers[: 1 + fleet.shape.dep_sets])
        self.last = {
            "run_seconds": run_seconds,
            "tar_hash_seconds": tar_seconds,
            "unique_layer_bytes": sum(sizes.values()),
            "unique_run_layer_bytes": run_layers,
            "unique_layers": len(layers),
        }
        return dict(self.last)

    def close(self) -> None:
        remove_tree(self.rootfs)


def _clean_env() -> dict[str, str]:
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/"}


def _tar_sha256(path: Path) -> tuple[str, int]:
    """SHA-256 and size of a deterministic tar of ``path`` (GNU tar, sorted, mtime 0)."""
    proc = subprocess.Popen(
        [
            "tar",
            "-C",
            str(path),
            "--sort=name",
            "--mtime=@0",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-cf",
            "-",
            ".",
        ],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    h = hashlib.sha256()
    n = 0
    while chunk := proc.stdout.read(1 << 20):
        h.update(chunk)
        n += len(chunk)
    if proc.wait() != 0:
        raise harness.CommandFailed(["tar", str(path)], proc.returncode, "")
    return h.hexdigest(), n


# -- the run ----------------------------------------------------------------------------


def _sync() -> None:
    os.sync()


def _timed(fn: Callable[[], dict[str, Any]]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    info = fn()
    return time.perf_counter() - started, info


def _rotate(items: list[Tool], r: int) -> list[Tool]:
    k = r % len(items)
    return items[k:] + items[:k]


def measure_size(
    tools: list[Tool], floor: Floor | None, fleet: Fleet, base_tar: Path, repeats: int
) -> dict[str, Any]:
    """All phases for one fleet size; errors are recorded per tool, the run goes on."""
    res: dict[str, Any] = {
        t.name: {"cold": [], "noop": [], "change": [], "growth": [], "info": [], "error": None}
        for t in tools
    }
    floor_runs: list[dict[str, Any]] = []
    failed: set[str] = set()

    def attempt(tool: Tool, phase: str, fn: Callable[[], None]) -> None:
        if tool.name in failed:
            return
        try:
            fn()
        except Exception as exc:  # a failed tool is reported, the others still run
            failed.add(tool.name)
            res[tool.name]["error"] = f"{phase}: {exc}"
            log(f"{tool.label}: {phase} FAILED: {exc}")

    for r in range(repeats):
        order = _rotate(tools, r)
        change_source(fleet, revision=0)
        for tool in order:

            def cold(tool: Tool = tool, r: int = r) -> None:
                tool.reset(base_tar)
                _sync()
                before = harness.tree_bytes(tool.data_root())
                seconds, info = _timed(lambda: tool.build(fleet))
                _sync()
                after = harness.tree_bytes(tool.data_root())
                res[tool.name]["cold"].append(seconds)
                res[tool.name]["growth"].append(
                    {k: after[k] - before[k] for k in ("apparent", "allocated")}
                )
                res[tool.name]["info"].append({"phase": "cold", **info})
                log(f"repeat {r + 1}: {tool.label}: cold {seconds:.2f}s")

            attempt(tool, "cold", cold)
        if floor is not None:
            floor.reset(base_tar)
            _sync()
            seconds, info = _timed(lambda: floor.build(fleet))
            floor_runs.append({"seconds": seconds, **info})
            floor.close()
            log(f"repeat {r + 1}: floor {seconds:.2f}s")
        for phase, revision in (("noop", None), ("change", r + 1)):
            if revision is not None:
                path = change_source(fleet, revision=revision)
                log(f"changed {path.relative_to(fleet.root)}")
            for tool in order:

                def again(tool: Tool = tool, phase: str = phase, r: int = r) -> None:
                    _sync()
                    seconds, info = _timed(lambda: tool.build(fleet))
                    res[tool.name][phase].append(seconds)
                    res[tool.name]["info"].append({"phase": phase, **info})
                    log(f"repeat {r + 1}: {tool.label}: {phase} {seconds:.2f}s")

                attempt(tool, phase, again)
    change_source(fleet, revision=0)
    for tool in tools:
        if tool.name == "buildkit":
            tool.close()  # no daemon left running between sizes
    return {"tools": res, "floor": floor_runs}


def _median(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def summarize(size: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    floor = size["floor"]
    unique = _median([f["unique_layer_bytes"] for f in floor]) if floor else None
    for name, r in size["tools"].items():
        growth = _median([g["apparent"] for g in r["growth"]])
        out[name] = {
            "cold": _median(r["cold"]),
            "noop": _median(r["noop"]),
            "change": _median(r["change"]),
            "growth_bytes": growth,
            "growth_allocated_bytes": _median([g["allocated"] for g in r["growth"]]),
            "growth_over_unique": (growth / unique) if growth is not None and unique else None,
            "error": r["error"],
        }
    if floor:
        out["floor"] = {
            "seconds": _median([f["seconds"] for f in floor]),
            "run_seconds": _median([f["run_seconds"] for f in floor]),
            "tar_hash_seconds": _median([f["tar_hash_seconds"] for f in floor]),
            "unique_layer_bytes": unique,
            "unique_run_layer_bytes": _median([f["unique_run_layer_bytes"] for f in floor]),
        }
    p = out.get("pipeline")
    ratios: dict[str, dict[str, float | None]] = {}
    if p:
        for name, s in out.items():
            if name in ("pipeline", "floor"):
                continue
            ratios[name] = {
                k: (p[k] / s[k]) if p.get(k) is not None and s.get(k) else None
                for k in ("cold", "noop", "change", "growth_bytes")
            }
        if "floor" in out and p["cold"] is not None:
            ratios["floor"] = {"cold": p["cold"] / out["floor"]["seconds"]}
    out["ratios"] = ratios
    return out


def _fmt_s(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f} s"


def _fmt_b(x: float | None) -> str:
    return "—" if x is None else f"{x / MIB:.1f} MiB"


def _fmt_r(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}x"


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "# pipeline vs Docker BuildKit vs buildah",
        "",
        f"Run {result['started']} on {m['nproc']} CPUs ({m['cpu']}),"
        f" {m['memory_bytes'] / (1 << 30):.1f} GiB, {m['os']}, kernel {m['kernel']},"
        f" /tmp on {m['tmp_filesystem']}. Medians of {result['repeats']} repeats, tools"
        " alternating in a rotating order; peers build two Dockerfiles at a time,"
        f" pipeline runs `build-all -j {result['jobs']}`. Load average (1 min) at the start"
        f" {result['loadavg_start'][0]:.2f}, at the end {result['loadavg_end'][0]:.2f}.",
        "",
        "Tools: " + "; ".join(f"{k}: {v}" for k, v in m["tools"].items()) + ".",
        "",
    ]
    for size in result["sizes"]:
        s = size["summary"]
        sh = size["shape"]
        lines += [
            f"## {sh['apps']} apps, {sh['dep_sets']} dependency sets x {sh['dep_mb']:g} MiB,"
            f" system {sh['system_mb']:g} MiB, {sh['files']} source files per app",
            "",
            "| tool | cold | no-op | one change | store growth | growth / unique bytes |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name in size["tool_order"]:
            t = s[name]
            label = LABELS.get(name, name) + (" (failed: see JSON)" if t["error"] else "")
            lines.append(
                f"| {label} | {_fmt_s(t['cold'])} | {_fmt_s(t['noop'])} |"
                f" {_fmt_s(t['change'])} | {_fmt_b(t['growth_bytes'])} |"
                f" {_fmt_r(t['growth_over_unique'])} |"
            )
        if "floor" in s:
            f = s["floor"]
            lines.append(
                f"| floor: run {f['run_seconds']:.2f} s + tar/hash {f['tar_hash_seconds']:.2f} s"
                f" | {_fmt_s(f['seconds'])} | | |"
                f" {_fmt_b(f['unique_layer_bytes'])} unique | 1.00x |"
            )
        if s["ratios"]:
            lines += ["", "| pipeline / peer | cold | no-op | one change | store growth |"]
            lines.append("| --- | ---: | ---: | ---: | ---: |")
            for name, r in s["ratios"].items():
                lines.append(
                    f"| {LABELS.get(name, name)} | {_fmt_r(r.get('cold'))} |"
                    f" {_fmt_r(r.get('noop'))} | {_fmt_r(r.get('change'))} |"
                    f" {_fmt_r(r.get('growth_bytes'))} |"
                )
        lines.append("")
    if result.get("scaling"):
        lines += ["## Cold time scaling with the number of apps", ""]
        lines += ["| tool | " + " | ".join(result["scaling_header"]) + " |"]
        lines.append("| --- |" + " ---: |" * len(result["scaling_header"]))
        for name, row in result["scaling"].items():
            lines.append(
                f"| {LABELS.get(name, name)} | " + " | ".join(_fmt_r(x) for x in row) + " |"
            )
        lines.append("")
    checks = targets(result)
    if checks:
        lines += [
            f"## Issue 4 targets for pipeline at {result['sizes'][-1]['shape']['apps']} apps",
            "",
            "| target | limit | measured | |",
            "| --- | ---: | ---: | --- |",
        ]
        for what, limit, value in checks:
            verdict = "met" if value <= limit else f"missed by {value / limit:.2f}x"
            lines.append(f"| {what} | {limit:.2f} | {value:.2f} | {verdict} |")
        lines.append("")
    errors = [
        f"- {LABELS.get(n, n)} at {size['shape']['apps']} apps: {t['error']}"
        for size in result["sizes"]
        for n, t in size["summary"].items()
        if isinstance(t, dict) and t.get("error")
    ]
    if errors:
        lines += ["## Failures", "", *[e.splitlines()[0] for e in errors], ""]
    return "\n".join(lines)


def targets(result: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(target, limit, measured) for the issue's targets that this run can check,
    at the largest fleet size."""
    if not result["sizes"]:
        return []
    s = result["sizes"][-1]["summary"]
    p = s.get("pipeline")
    if not p or p.get("error"):
        return []
    out: list[tuple[str, float, float]] = []
    bk = s["ratios"].get("buildkit", {})
    if bk.get("cold") is not None:
        out.append(("cold / BuildKit cold", 0.5, bk["cold"]))
    if s["ratios"].get("floor", {}).get("cold") is not None:
        out.append(("cold / floor", 1.5, s["ratios"]["floor"]["cold"]))
    scale = result.get("scaling", {}).get("pipeline", [None])[0]
    if scale is not None:
        out.append((result["scaling_header"][0], 1.3, scale))
    if bk.get("noop") is not None:
        out.append(("no-op / BuildKit no-op", 0.1, bk["noop"]))
    if bk.get("change") is not None:
        out.append(("one change / BuildKit one change", 0.15, bk["change"]))
    if p.get("growth_over_unique") is not None:
        out.append(("store growth / unique layer bytes", 1.05, p["growth_over_unique"]))
    return out


LABELS = {
    "pipeline": "pipeline",
    "buildkit": "Docker BuildKit",
    "buildah": "buildah",
    "floor": "floor",
}


def prepare_base(work: Path) -> Path:
    """The busybox base as a docker-archive, made by pipeline itself."""
    store = work / "base-store"
    out = work / "busybox.docker.tar"
    remove_tree(store)
    harness.pipeline(store, "bootstrap", BASE_TAG)
    harness.pipeline(store, "export", BASE_TAG, "-o", str(out), "--format", "docker-archive")
    remove_tree(store)
    return out


@contextlib.contextmanager
def _terminate_on_signals() -> Iterator[None]:
    """SIGTERM/SIGHUP raise SystemExit so ``finally`` blocks stop dockerd."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.compare_peers", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--apps", default="40", help="comma-separated fleet sizes, e.g. 10,40")
    p.add_argument("--dep-sets", type=int, default=3)
    p.add_argument("--dep-mb", type=float, default=20.0)
    p.add_argument("--system-mb", type=float, default=4.0)
    p.add_argument("--files", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tools", default="pipeline,buildkit,buildah")
    p.add_argument("--no-floor", action="store_true")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="pipeline -j")
    p.add_argument("--peer-parallel", type=int, default=2, help="peer builds at a time")
    p.add_argument(
        "--docker-cli", default="/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
    )
    p.add_argument("--buildah-storage", choices=["overlay", "vfs"], default="overlay")
    p.add_argument("--buildah-isolation", choices=["chroot", "oci"], default="chroot")
    p.add_argument("--workdir", type=Path, default=None, help="default: a new dir in /var/tmp")
    p.add_argument("--keep", action="store_true", help="keep the work dir")
    p.add_argument("--out", type=Path, default=RESULTS / "latest", help="writes OUT.json, OUT.md")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        p.error("needs root (pipeline's sandbox, dockerd and buildah all mount)")
    sizes = [int(x) for x in args.apps.split(",") if x]
    names = [t for t in args.tools.split(",") if t]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="pipeline-bench-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    tools: list[Tool] = []
    result: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join(["python -m benchmarks.compare_peers", *(argv or sys.argv[1:])]),
        "repeats": args.repeats,
        "jobs": args.jobs,
        "peer_parallel": args.peer_parallel,
        "buildah": {"storage": args.buildah_storage, "isolation": args.buildah_isolation},
        "sizes": [],
        "loadavg_start": os.getloadavg(),
    }
    with _terminate_on_signals():
        try:
            for name in names:
                if name == "pipeline":
                    tools.append(PipelineTool(work, args.jobs))
                elif name == "buildkit":
                    tools.append(BuildKitTool(work, args.peer_parallel, args.docker_cli))
                elif name == "buildah":
                    tools.append(
                        BuildahTool(
                            work, args.peer_parallel, args.buildah_storage, args.buildah_isolation
                        )
                    )
                else:
                    p.error(f"unknown tool {name!r} (pipeline, buildkit, buildah)")
            floor = None if args.no_floor else Floor(work, args.jobs)
            result["machine"] = harness.machine_info(
                {
                    "pipeline": [sys.executable, "-m", "pipeline", "--version"],
                    "dockerd": ["dockerd", "--version"],
                    "docker": [args.docker_cli, "--version"],
                    "buildah": ["buildah", "--version"],
                    "busybox": ["busybox"],
                    "tar": ["tar", "--version"],
                }
            )
            log(f"work dir {work}; making the busybox base with pipeline")
            base_tar = prepare_base(work)
            for n in sizes:
                shape = Shape(
                    apps=n,
                    dep_sets=args.dep_sets,
                    dep_mb=args.dep_mb,
                    system_mb=args.system_mb,
                    files=args.files,
                )
                fleet_dir = work / f"fleet-{n}"
                remove_tree(fleet_dir)
                fleet = generate(fleet_dir, shape)
                log(f"fleet of {n} apps in {fleet_dir}")
                raw = measure_size(tools, floor, fleet, base_tar, args.repeats)
                result["sizes"].append(
                    {
                        "shape": asdict(shape),
                        "tool_order": [t.name for t in tools],
                        "raw": raw,
                        "summary": summarize(raw),
                    }
                )
                for t in tools:
                    t.close()
        finally:
            for t in tools:
                try:
                    t.close()
                except Exception as exc:
                    log(f"{t.label}: cleanup failed: {exc}")
            if not args.keep:
                remove_tree(work)
            else:
                log(f"kept {work}")
    result["loadavg_end"] = os.getloadavg()
    if len(result["sizes"]) > 1:
        first, *_, last = result["sizes"]
        header = f"cold({last['shape']['apps']}) / cold({first['shape']['apps']})"
        result["scaling_header"] = [header]
        result["scaling"] = {}
        for name in list(first["summary"]):
            a = first["summary"][name]
            b = last["summary"][name]
            if not isinstance(a, dict) or name == "ratios":
                continue
            ka = a.get("cold", a.get("seconds"))
            kb = b.get("cold", b.get("seconds"))
            result["scaling"][name] = [kb / ka if ka and kb else None]
    text = markdown(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    args.out.with_suffix(".md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
