"""The distribution overhead: the peer-comparison fleet built locally (``-j 2``) and on
Dask clusters on this machine, cold and no-op, alternating; then the scheduling
simulation of a 1,000-app fleet from the step times measured here.

Modes, each timed as the real CLI in a child process (interpreter start included):

* ``local``: ``build-all -j 2``;
* ``local:2``: ``build-all --cluster local:2 -j 1`` (two one-thread worker processes
  started by the build, sharing its store; their start and shutdown are part of the
  time);
* ``tcp``: ``build-all --cluster tcp://... --cache-to REG/REPO`` on a standing ``dask
  scheduler`` and two ``dask worker`` processes of one thread each (2 slots in all, as
  ``-j 2``), each with its own store, sharing layers through a ``docker-registry`` on
  127.0.0.1. Before each cold round the workers restart on
  empty stores and the build uses a new cache repository (untimed).

Every cold round starts from a store holding only the busybox base. Medians over
``--repeats``; every sample in the JSON.

    python -m benchmarks.cluster_bench --repeats 3

Needs root, Debian's docker-registry and busybox-static.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import cluster_sim, harness
from benchmarks.workload import Shape, generate

RESULTS = Path(__file__).resolve().parent / "results"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def fresh_store(store: Path, base_tar: Path) -> None:
    shutil.rmtree(store, ignore_errors=True)
    harness.pipeline(store, "import", str(base_tar), "--tag", "busybox:latest")
    subprocess.run(["sync"], check=False)


def timed_build(
    store: Path, specs: Path, report: Path, *extra: str
) -> tuple[float, float, dict[str, Any]]:
    """(wall seconds, CPU seconds of the client process and what it reaped, report)."""
    args = ["build-all", "--specs", str(specs), "--progress", "quiet", "--json-report", str(report)]
    run = harness.pipeline(store, *args, *extra, cwd=specs.parent)
    data = json.loads(report.read_text())
    return run.seconds, run.cpu_seconds, data


def dispatch_seconds(address: str, n: int = 2000) -> float:
    """Seconds of scheduler time per trivial task: n no-op tasks on the cluster."""
    from distributed import Client

    with Client(address, set_as_default=False) as client:
        client.gather(client.map(int, range(100), pure=False))  # warm up
        started = time.perf_counter()
        client.gather(client.map(int, range(n), pure=False))
        return (time.perf_counter() - started) / n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cluster_bench")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--apps", type=int, default=40)
    p.add_argument("--out", type=Path, default=RESULTS / "cluster.json")
    p.add_argument("--sim-apps", type=int, default=1000)
    p.add_argument("--sim-dep-sets", type=int, default=10)
    args = p.parse_args(argv)

    sys.path.insert(0, str(harness.REPO))
    from tests.test_cluster import Cluster
    from tests.test_registry_support import start_registry

    work = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    shape = Shape(apps=args.apps, dep_sets=3, dep_mb=20, system_mb=4, files=5)
    fleet = generate(work / "fleet", shape, dockerfiles=False)
    base_tar = work / "busybox.tar"
    from pipeline.build import bases

    bases.busybox_rootfs_tar(base_tar)
    registry = start_registry(work / "registry")
    (work / "dask").mkdir()
    cluster = Cluster(work / "dask")
    samples: dict[str, dict[str, list[float]]] = {}
    reports: dict[str, Any] = {}
    load = [os.getloadavg()[0]]
    try:
        cluster.start(0)
        store = work / "store"
        for rep in range(args.repeats):
            modes = ["local", "local:2", "tcp"]
            modes = modes[rep % 3 :] + modes[: rep % 3]
            for mode in modes:
                fresh_store(store, base_tar)
                extra: list[str] = ["-j", "2"]
                if mode == "local:2":
                    extra = ["--cluster", "local:2", "-j", "1"]
                elif mode == "tcp":
                    for proc in cluster.workers.values():
                        proc.terminate()
                        proc.wait(10)
                    shutil.rmtree(cluster.root / "stores", ignore_errors=True)
                    cluster.workers.clear()
                    for i in range(2):
                        cluster.start_worker(f"w{i}", nthreads=1)
                    cluster.wait_for(set(cluster.workers))
                    repo = f"{registry.host}/bench{rep}/cache"
                    extra = ["--cluster", cluster.address, "--cache-to", repo]
                cold, _, report = timed_build(
                    store, fleet.specs, work / f"{mode}-cold.json", *extra
                )
                noop, noop_cpu, _ = timed_build(
                    store, fleet.specs, work / f"{mode}-noop.json", *extra
                )
                assert report["totals"]["built"] == report["totals"]["unique_nodes"], report
                s = samples.setdefault(mode, {"cold": [], "noop": [], "noop_cpu": []})
                s["cold"].append(cold)
                s["noop"].append(noop)
                s["noop_cpu"].append(noop_cpu)
                reports.setdefault(mode, []).append(report)
                log(
                    f"round {rep} {mode}: cold {cold:.2f} s, no-op {noop:.2f} s"
                    f" ({noop_cpu:.2f} s CPU)"
                )
        dispatch = dispatch_seconds(cluster.address)
    finally:
        load.append(os.getloadavg()[0])
        cluster.stop()
        registry.stop()
    medians = {m: {k: statistics.median(v) for k, v in s.items()} for m, s in samples.items()}
    tcp_times = [cluster_sim.step_times(r) for r in reports["tcp"]]
    times = {k: statistics.median(t[k] for t in tcp_times) for k in ("system", "deps", "copy")}
    times["app_run"] = times["deps"]
    sims = [
        cluster_sim.table(args.sim_apps, args.sim_dep_sets, times, dispatch),
        cluster_sim.table(args.sim_apps, args.sim_dep_sets, times, dispatch, app_run=True),
    ]
    out = {
        "machine": harness.machine_info(),
        "load_average": load,
        "shape": shape.__dict__,
        "samples": samples,
        "medians": medians,
        "ratios": {
            m: {k: medians[m][k] / medians["local"][k] for k in ("cold", "noop")} for m in medians
        },
        "dispatch_seconds": dispatch,
        "simulation": sims,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(render(out))
    print(json.dumps({"medians": medians, "ratios": out["ratios"], "dispatch": dispatch}, indent=2))
    for sim in sims:
        print(json.dumps({k: v for k, v in sim.items() if k != "times"}, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0


def render(out: dict[str, Any]) -> str:
    """The Markdown tables of a run (every figure from ``out``)."""
    med, ratio, samples = out["medians"], out["ratios"], out["samples"]
    n = len(samples["local"]["cold"])
    la = out["load_average"]
    lines = [
        f"Medians of {n} rounds (modes alternating); load average (1 min) {la[0]:.2f} at the"
        f" start, {la[1]:.2f} at the end.",
        "",
        "| mode | cold | no-op | cold / local | no-op / local | per-round cold ratio |"
        " cold samples |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    names = {
        "local": "local `-j 2`",
        "local:2": "`--cluster local:2 -j 1`",
        "tcp": "`--cluster tcp://` (2 workers, own stores, registry)",
    }
    for mode in ("local", "local:2", "tcp"):
        cold = ", ".join(f"{x:.2f}" for x in samples[mode]["cold"])
        paired = statistics.median(
            a / b for a, b in zip(samples[mode]["cold"], samples["local"]["cold"], strict=True)
        )
        lines.append(
            f"| {names[mode]} | {med[mode]['cold']:.2f} s | {med[mode]['noop']:.2f} s"
            f" | {ratio[mode]['cold']:.2f}x | {ratio[mode]['noop']:.2f}x | {paired:.2f}x"
            f" | {cold} |"
        )
    lines += [
        "",
        "No-op CPU time (user + system of the client process; the no-op starts no worker"
        " and, on a machine shared with other work, is steadier than its wall time): "
        + ", ".join(
            f"{names[m]} {statistics.median(samples[m]['noop_cpu']):.2f} s"
            for m in ("local", "local:2", "tcp")
            if samples[m].get("noop_cpu")
        )
        + ".",
        "",
        f"Scheduler dispatch: {out['dispatch_seconds'] * 1000:.2f} ms per trivial task.",
        "",
    ]
    for sim in out["simulation"]:
        t = sim["times"]
        what = "with a per-app RUN step" if sim["app_run"] else "the workload's shape"
        lines += [
            f"Simulation, {sim['apps']} apps on {sim['dep_sets']} dependency sets, {what}"
            f" ({sim['nodes']} nodes; system {t['system']:.2f} s, dependency set"
            f" {t['deps']:.2f} s, COPY {t['copy']:.3f} s"
            + (f", app RUN {t['app_run']:.2f} s" if sim["app_run"] else "")
            + f"): total work {sim['total_work']:.1f} s, critical path"
            f" {sim['critical_path']:.2f} s, so at most {sim['bound']:.0f}x.",
            "",
            "| workers | makespan | speedup |",
            "| ---: | ---: | ---: |",
        ]
        for row in sim["rows"]:
            lines.append(f"| {row['workers']} | {row['makespan']:.2f} s | {row['speedup']:.1f}x |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
