"""The developer's loop, measured in one run beside Docker BuildKit (issue 19).

* edit loop: one source file of one app edited, then ``pipeline build APP`` and (after
  the same edit) ``docker build`` of that app on a private dockerd, A/B per edit, at
  each ``--apps`` size;
* watch: ``pipeline build APP --watch``, the time from writing the file to the new
  image's line (printed after the image is committed), median of ``--watch-edits``;
* build-all no-op and after one change at each ``--build-all`` size, with the peak RSS
  of the cold build and of ``plan`` (the largest single process);
* cold build-all of the smallest size against the critical-path floor of
  :mod:`benchmarks.compare_peers` (the unique RUN steps on ``--jobs`` workers, then
  tar + SHA-256 of every unique layer), A/B per repeat;
* start-up: ``pipeline --version`` and ``pipeline plan`` on a one-app fleet.

    python -m benchmarks.edit_loop --apps 40,1000 --build-all 40,300,1000

Writes ``--out`` .json and .md (default benchmarks/results/edit_loop). Needs root,
Debian's docker.io and busybox-static. The machine is shared: every figure is a
median, and the load average at the start and end is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import harness
from benchmarks.compare_peers import (
    BASE_TAG,
    BuildKitTool,
    Floor,
    PipelineTool,
    log,
    prepare_base,
    remove_tree,
)
from benchmarks.workload import Fleet, Shape, change_source, generate

RESULTS = Path(__file__).resolve().parent / "results"
APP_FILE = "mod_1.txt"


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def pipeline_build_one(store: Path, fleet: Fleet, app: str) -> float:
    run = harness.pipeline(store, "build", app, "--specs", str(fleet.specs), "--progress", "quiet")
    return run.seconds


def docker_build_one(bk: BuildKitTool, fleet: Fleet, app: str) -> float:
    started = time.perf_counter()
    bk.docker(
        "build", "--network", "none", "-q", "-t", f"bench/{app}",
        "-f", str(fleet.dockerfile(app)), str(fleet.context(app)),
    )  # fmt: skip
    return time.perf_counter() - started


def edit_loop(
    fleet: Fleet, store: Path, bk: BuildKitTool | None, edits: int, app: str
) -> dict[str, Any]:
    """A/B per edit: the same edit is rebuilt by pipeline, then by docker."""
    pipe: list[float] = []
    dock: list[float] = []
    if bk is not None:
        docker_build_one(bk, fleet, app)  # docker's cold build of the app, untimed
    for k in range(edits):
        change_source(fleet, app, revision=1000 + k)
        pipe.append(pipeline_build_one(store, fleet, app))
        if bk is not None:
            dock.append(docker_build_one(bk, fleet, app))
        log(
            f"edit {k + 1}: pipeline {pipe[-1]:.3f}s"
            + (f", docker {dock[-1]:.3f}s" if dock else "")
        )
    change_source(fleet, app, revision=0)
    return {"pipeline": pipe, "buildkit": dock}


def watch_loop(fleet: Fleet, store: Path, app: str, edits: int) -> list[float]:
    """Seconds from writing the file to the ``watch: app.APP`` line, per edit."""
    argv = harness.pipeline_argv(
        store, "build", app, "--specs", str(fleet.specs), "--progress", "quiet", "--watch"
    )
    proc = subprocess.Popen(
        argv, env=harness.pipeline_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, bufsize=1,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    out: list[float] = []
    try:
        while "watching" not in proc.stderr.readline():
            if proc.poll() is not None:
                raise RuntimeError("pipeline build --watch ended early")
        for k in range(edits):
            time.sleep(0.3)
            path = fleet.context(app) / APP_FILE
            text = path.read_text() + f"# watch edit {k}\n"
            started = time.perf_counter()
            path.write_text(text)
            while True:
                line = proc.stdout.readline()
                if not line:
                    raise RuntimeError("pipeline build --watch ended early")
                if line.startswith(f"watch: app.{app} "):
                    break
            out.append(time.perf_counter() - started)
            log(f"watch edit {k + 1}: {out[-1] * 1000:.1f} ms")
    finally:
        proc.terminate()
        proc.wait(30)
        change_source(fleet, app, revision=0)
    return out


def build_all_phases(fleet: Fleet, store: Path, jobs: int, rounds: int) -> dict[str, Any]:
    report = store.parent / f"report-{fleet.shape.apps}.json"
    cold, _ = harness.build_all(store, fleet.specs, report, jobs)
    plan = harness.pipeline(store, "plan", "--specs", str(fleet.specs))
    noop: list[float] = []
    change: list[float] = []
    noop_rss: list[int] = []
    for r in range(rounds):
        run, _ = harness.build_all(store, fleet.specs, report, jobs)
        noop.append(run.seconds)
        noop_rss.append(run.peak_rss)
        change_source(fleet, revision=2000 + r)
        run, _ = harness.build_all(store, fleet.specs, report, jobs)
        change.append(run.seconds)
        log(f"{fleet.shape.apps} apps: no-op {noop[-1]:.2f}s, one change {change[-1]:.2f}s")
    change_source(fleet, revision=0)
    return {
        "cold": cold.seconds,
        "cold_peak_rss": cold.peak_rss,
        "plan_seconds": plan.seconds,
        "plan_peak_rss": plan.peak_rss,
        "noop": noop,
        "change": change,
        "noop_peak_rss": max(noop_rss),
    }


def cold_vs_floor(
    fleet: Fleet, work: Path, base_tar: Path, jobs: int, repeats: int
) -> dict[str, Any]:
    tool = PipelineTool(work / "cold", jobs)
    floor = Floor(work / "floor", jobs)
    pipe: list[float] = []
    flo: list[float] = []
    for r in range(repeats):
        tool.reset(base_tar)
        started = time.perf_counter()
        tool.build(fleet)
        pipe.append(time.perf_counter() - started)
        floor.reset(base_tar)
        started = time.perf_counter()
        floor.build(fleet)
        flo.append(time.perf_counter() - started)
        floor.close()
        log(f"cold {r + 1}: pipeline {pipe[-1]:.2f}s, floor {flo[-1]:.2f}s")
    return {"pipeline": pipe, "floor": flo}


def startup(work: Path, base_tar: Path, runs: int) -> dict[str, Any]:
    one = generate(work / "one-app", Shape(apps=1, dep_sets=1, dep_mb=0, system_mb=0, files=1))
    store = work / "one-store"
    harness.pipeline(store, "import", str(base_tar), "--tag", BASE_TAG)
    script = Path(sys.executable).with_name("pipeline")
    out: dict[str, list[float]] = {"version": [], "version_module": [], "plan": []}
    env = harness.pipeline_env()
    for _ in range(runs):
        out["version"].append(harness.run_with_rusage([str(script), "--version"], env=env).seconds)
        out["version_module"].append(harness.pipeline(store, "--version").seconds)
        out["plan"].append(
            harness.run_with_rusage(
                [str(script), "--store", str(store), "plan", "--specs", str(one.specs)], env=env
            ).seconds
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.edit_loop", description=__doc__)
    p.add_argument("--apps", default="40,1000", help="edit-loop fleet sizes")
    p.add_argument("--build-all", default="40,300,1000", help="build-all fleet sizes")
    p.add_argument("--dep-sets", type=int, default=3)
    p.add_argument("--dep-mb", type=float, default=20.0)
    p.add_argument("--system-mb", type=float, default=4.0)
    p.add_argument("--files", type=int, default=5)
    p.add_argument("--edits", type=int, default=5, help="edit-loop A/B pairs per size")
    p.add_argument("--watch-edits", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3, help="no-op/one-change rounds per size")
    p.add_argument("--cold-repeats", type=int, default=3)
    p.add_argument("--startup-runs", type=int, default=10)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    p.add_argument("--docker-cli", default="/usr/bin/docker")
    p.add_argument("--out", type=Path, default=RESULTS / "edit_loop")
    args = p.parse_args(argv)
    edit_sizes = [int(x) for x in args.apps.split(",") if x]
    all_sizes = [int(x) for x in args.build_all.split(",") if x]
    work = Path(tempfile.mkdtemp(prefix="pipeline-edit-", dir="/var/tmp"))
    result: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join(["python -m benchmarks.edit_loop", *(argv or sys.argv[1:])]),
        "loadavg_start": os.getloadavg(),
        "machine": harness.machine_info(),
        "edit": {},
        "build_all": {},
    }
    bk: BuildKitTool | None = None
    # as .ci/setup does: bytecode for every module, also where PYTHONDONTWRITEBYTECODE is set
    package = Path(__file__).resolve().parent.parent / "pipeline"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    try:
        base_tar = prepare_base(work)
        result["startup"] = startup(work, base_tar, args.startup_runs)
        bk = BuildKitTool(work, 2, args.docker_cli)
        bk.reset(base_tar)
        fleets: dict[int, Fleet] = {}
        for n in sorted({*edit_sizes, *all_sizes}):
            shape = Shape(
                apps=n, dep_sets=args.dep_sets, dep_mb=args.dep_mb,
                system_mb=args.system_mb, files=args.files,
            )  # fmt: skip
            fleets[n] = generate(work / f"fleet-{n}", shape)
            result.setdefault("shapes", {})[str(n)] = asdict(shape)
            store = work / f"store-{n}"
            harness.pipeline(store, "import", str(base_tar), "--tag", BASE_TAG)
            if n in all_sizes:
                result["build_all"][str(n)] = build_all_phases(
                    fleets[n], store, args.jobs, args.rounds
                )
            else:
                harness.build_all(store, fleets[n].specs, work / "r.json", args.jobs)
            if n in edit_sizes:
                app = fleets[n].apps[len(fleets[n].apps) // 2]
                result["edit"][str(n)] = edit_loop(fleets[n], store, bk, args.edits, app)
                if n == min(edit_sizes):
                    result["watch"] = watch_loop(fleets[n], store, app, args.watch_edits)
            if n != max(edit_sizes + all_sizes):
                remove_tree(store)
        smallest = min(all_sizes)
        bk.close()
        bk = None
        result["cold_floor"] = cold_vs_floor(
            fleets[smallest], work, base_tar, args.jobs, args.cold_repeats
        )
    finally:
        if bk is not None:
            bk.close()
        remove_tree(work)
    result["loadavg_end"] = os.getloadavg()
    result["summary"] = summarize(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    text = markdown(result)
    args.out.with_suffix(".md").write_text(text + "\n")
    print(text)
    return 0


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    s: dict[str, Any] = {"edit": {}, "build_all": {}}
    for n, e in result["edit"].items():
        s["edit"][n] = {"pipeline": _median(e["pipeline"]), "buildkit": _median(e["buildkit"])}
    for n, b in result["build_all"].items():
        s["build_all"][n] = {
            "cold": b["cold"],
            "noop": _median(b["noop"]),
            "change": _median(b["change"]),
            "cold_peak_rss_mib": b["cold_peak_rss"] / (1 << 20),
            "noop_peak_rss_mib": b["noop_peak_rss"] / (1 << 20),
            "plan_peak_rss_mib": b["plan_peak_rss"] / (1 << 20),
        }
    if result.get("watch"):
        s["watch_median"] = _median(result["watch"])
    cf = result.get("cold_floor")
    if cf:
        s["cold_floor"] = {"pipeline": _median(cf["pipeline"]), "floor": _median(cf["floor"])}
    s["startup"] = {k: _median(v) for k, v in result.get("startup", {}).items()}
    return s


def checks(result: dict[str, Any]) -> list[tuple[str, float, float | None]]:
    """(target, limit, measured) for issue 19's done-when ratios."""
    s = result["summary"]
    edits = sorted(s["edit"], key=int)
    out: list[tuple[str, float, float | None]] = []

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    if edits:
        small, large = s["edit"][edits[0]], s["edit"][edits[-1]]
        out.append(
            (
                f"edit loop {edits[0]} apps / BuildKit",
                0.5,
                ratio(small["pipeline"], small["buildkit"]),
            )
        )
        if len(edits) > 1:
            out.append(
                (
                    f"edit loop {edits[-1]} / {edits[0]} apps",
                    1.2,
                    ratio(large["pipeline"], small["pipeline"]),
                )
            )
        if "watch_median" in s:
            out.append(
                (
                    "watch edit-to-image / BuildKit rebuild",
                    0.1,
                    ratio(s["watch_median"], small["buildkit"]),
                )
            )
    sizes = sorted(s["build_all"], key=int)
    if len(sizes) > 1:
        a, b = s["build_all"][sizes[0]], s["build_all"][sizes[-1]]
        out.append(
            (f"no-op build-all {sizes[-1]} / {sizes[0]} apps", 3.0, ratio(b["noop"], a["noop"]))
        )
    if "cold_floor" in s:
        cf = s["cold_floor"]
        out.append(
            (f"cold build-all {sizes[0]} apps / floor", 1.1, ratio(cf["pipeline"], cf["floor"]))
        )
    if sizes:
        big = s["build_all"][sizes[-1]]
        rss = max(big["cold_peak_rss_mib"], big["plan_peak_rss_mib"], big["noop_peak_rss_mib"])
        out.append((f"peak RSS MiB, {sizes[-1]} apps (plan, build)", 300.0, rss))
    return out


def markdown(result: dict[str, Any]) -> str:
    s = result["summary"]
    m = result["machine"]
    lines = [
        "# The edit loop, watch, build-all scaling and start-up (issue 19)",
        "",
        f"Run {result['started']} on {m['nproc']} CPUs ({m['cpu']}), shared with other"
        f" sessions: load average (1 min) {result['loadavg_start'][0]:.2f} at the start,"
        f" {result['loadavg_end'][0]:.2f} at the end. Medians; A/B pairs where two tools"
        " are compared.",
        "",
        "| edit loop: one file of one app edited, that app rebuilt"
        " | pipeline build APP | docker build (BuildKit) |",
        "| --- | ---: | ---: |",
    ]
    for n, e in sorted(s["edit"].items(), key=lambda kv: int(kv[0])):
        lines.append(f"| {n} apps | {_s(e['pipeline'])} | {_s(e['buildkit'])} |")
    if "watch_median" in s:
        lines += [
            "",
            "`build APP --watch`, file written to image committed: median"
            f" {s['watch_median'] * 1000:.1f} ms of {len(result['watch'])} edits"
            f" (min {min(result['watch']) * 1000:.1f}, max {max(result['watch']) * 1000:.1f}).",
        ]
    lines += [
        "",
        "| build-all | cold | no-op | one change | peak RSS cold / no-op / plan |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for n, b in sorted(s["build_all"].items(), key=lambda kv: int(kv[0])):
        lines.append(
            f"| {n} apps | {_s(b['cold'])} | {_s(b['noop'])} | {_s(b['change'])} |"
            f" {b['cold_peak_rss_mib']:.0f} / {b['noop_peak_rss_mib']:.0f}"
            f" / {b['plan_peak_rss_mib']:.0f} MiB |"
        )
    if "cold_floor" in s:
        cf = s["cold_floor"]
        lines += [
            "",
            f"Cold build-all vs the critical-path floor: pipeline {_s(cf['pipeline'])},"
            f" floor {_s(cf['floor'])}.",
        ]
    st = s.get("startup", {})
    if st:
        lines += [
            "",
            f"Start-up: `pipeline --version` {_s(st.get('version'))} (console script),"
            f" {_s(st.get('version_module'))} (`python -m pipeline`); `pipeline plan` on a"
            f" one-app fleet {_s(st.get('plan'))}.",
        ]
    lines += ["", "| done when | limit | measured | |", "| --- | ---: | ---: | --- |"]
    for what, limit, value in checks(result):
        verdict = (
            "—"
            if value is None
            else ("met" if value <= limit else f"missed by {value / limit:.2f}x")
        )
        shown = "—" if value is None else f"{value:.3f}"
        lines.append(f"| {what} | {limit:g} | {shown} | {verdict} |")
    return "\n".join(lines)


def _s(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f} s"


if __name__ == "__main__":
    sys.exit(main())
