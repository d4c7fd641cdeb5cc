"""Builds on a Dask cluster, with real parts on loopback: a ``dask scheduler`` and three
``dask worker`` processes started here (each with its own store, ``PIPELINE_STORE``),
Debian's ``docker-registry`` as the shared layer store, the busybox base pushed to it.

How builds are counted: every RUN step of these fleets appends its name to a log in a
cache mount as its last act, so each worker store's ``cache/runs/log`` lists the
steps that ran to the end there; and a worker records every node it builds in its own
store's build history. Neither is produced by the client's report.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli, make_cli
from tests.test_registry_support import Registry, free_port, start_registry

pytestmark = [pytest.mark.slow, pytest.mark.root]

DASK = str(Path(sys.executable).parent / "dask")


# -- the cluster ---------------------------------------------------------------------------


@dataclass
class Cluster:
    root: Path
    port: int = 0
    scheduler: subprocess.Popen[bytes] | None = None
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)  # name -> proc
    addresses: dict[str, str] = field(default_factory=dict)  # name -> tcp address
    client: Any = None

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def store(self, name: str) -> Path:
        return self.root / "stores" / name

    def start(self, n_workers: int) -> Cluster:
        from distributed import Client

        self.port = free_port()
        log = open(self.root / "scheduler.log", "wb")  # noqa: SIM115
        # as docs/distributed.md advises: steal every 100 ms, not every second
        env = dict(os.environ, DASK_DISTRIBUTED__SCHEDULER__WORK_STEALING_INTERVAL="100ms")
        self.scheduler = subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        deadline = time.monotonic() + 30
        while True:
            try:
                self.client = Client(self.address, timeout=2, set_as_default=False)
                break
            except OSError:
                if time.monotonic() > deadline or self.scheduler.poll() is not None:
                    raise RuntimeError((self.root / "scheduler.log").read_text()[-2000:]) from None
                time.sleep(0.2)
        for i in range(n_workers):
            self.start_worker(f"w{i}")
        self.wait_for(set(self.workers))
        return self

    def start_worker(self, name: str, nthreads: int = 2) -> None:
        port = free_port()
        store = self.store(name)
        store.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PIPELINE_STORE=str(store))
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115
        self.workers[name] = subprocess.Popen(
            [
                DASK,
                "worker",
                self.address,
                "--no-nanny",
                "--nthreads",
                str(nthreads),
                "--name",
                name,
                "--host",
                "127.0.0.1",
                "--worker-port",
                str(port),
                "--no-dashboard",
                "--local-directory",
                str(self.root / f"{name}-scratch"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        self.addresses[name] = f"tcp://127.0.0.1:{port}"

    def wait_for(self, names: set[str], timeout: float = 60) -> None:
        wanted = {self.addresses[n] for n in names}
        deadline = time.monotonic() + timeout
        while not wanted <= set(self.client.scheduler_info()["workers"]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers {sorted(names)} did not join the scheduler")
            time.sleep(0.2)

    def ensure_workers(self) -> None:
        """Restart any worker a test killed."""
        dead = [n for n, p in self.workers.items() if p.poll() is not None]
        for name in dead:
            self.start_worker(name)
        if dead:
            self.wait_for(set(dead))

    def running(self, seconds: int) -> str | None:
        """The worker whose process tree runs a step's ``sleep SECONDS``, if any."""
        pids = {p.pid: n for n, p in self.workers.items() if p.poll() is None}
        for pid in _sleeping(seconds):
            while pid > 1:
                if pid in pids:
                    return pids[pid]
                pid = _parent(pid)
        return None

    def processing(self) -> dict[str, list[str]]:
        return {a: list(keys) for a, keys in self.client.processing().items() if keys}

    def scheduler_tasks(self) -> list[str]:
        return list(
            self.client.run_on_scheduler(
                lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks]
            )
        )

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        procs = [p for p in [*self.workers.values(), self.scheduler] if p is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 5
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    # what the workers did, from their own stores
    def runs(self, names: Sequence[str] | None = None) -> Counter[str]:
        """RUN steps that ran to their end, over every (or the named) worker stores."""
        out: Counter[str] = Counter()
        for name in self.workers if names is None else names:
            log = self.store(name) / "cache" / "runs" / "log"
            if log.exists():
                out.update(log.read_text().split())
        return out

    def built(self) -> Counter[str]:
        """Cache keys each worker recorded as built by it, over every worker store."""
        out: Counter[str] = Counter()
        for name in self.workers:
            db = self.store(name) / "index.db"
            if not db.exists():
                continue
            con = sqlite3.connect(db)
            try:
                rows = con.execute("SELECT key FROM build_nodes WHERE outcome='built'").fetchall()
            except sqlite3.OperationalError:
                rows = []
            finally:
                con.close()
            out.update(k for (k,) in rows)
        return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield c.start(3)
    finally:
        c.stop()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("cluster-registry"))
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def base_ref(
    registry: Registry, busybox_tar: Path, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """busybox, pushed to the registry: the fleets' base (a fresh client needs nothing
    in its store)."""
    seed = tmp_path_factory.mktemp("seed")
    cli = make_cli(seed / "store", seed)
    cli("import", str(busybox_tar), "--tag", "busybox:latest")
    ref = f"{registry.host}/lib/busybox:1"
    cli("push", "busybox:latest", "--to", ref)
    return ref


@pytest.fixture
def workers(cluster: Cluster) -> Cluster:
    cluster.ensure_workers()
    return cluster


# -- fleets --------------------------------------------------------------------------------


def write_fleet(
    root: Path,
    base: str,
    tag: str,
    apps: Sequence[str],
    slow: int = 0,
    dep_sets: int = 2,
    slow_all: bool = False,
) -> Path:
    """A fleet on ``base``: a shared RUN step, ``dep_sets`` RUN steps on it (the first,
    or with ``slow_all`` each, sleeping ``slow`` seconds), one app per name copying its
    own source. Each RUN step logs ``<name>-<tag>`` to the ``runs`` cache mount as its
    last act."""
    specs = root / "specs"
    specs.mkdir(parents=True)

    def run(name: str, command: str) -> str:
        return (
            "  run {\n"
            f'    command = "{command} && echo {name}-{tag} >> /runs/log"\n'
            '    mount {\n      type   = "cache"\n      target = "/runs"\n      id     = "runs"\n'
            "    }\n  }\n"
        )

    text = [f'image "base" {{\n  from = "{base}"\n']
    text.append(run("base", f"mkdir -p /opt/sys && echo {tag} > /opt/sys/id"))
    text.append("}\n")
    for k in range(dep_sets):
        nap = f"sleep {slow} && " if (k == 0 or slow_all) and slow else ""
        command = f"{nap}mkdir -p /opt/deps && seq 1 {2000 * (k + 1)} > /opt/deps/set-{k}"
        text.append(f'image "deps_{k}" {{\n  from = image.base\n{run(f"deps{k}", command)}}}\n')
    for i, app in enumerate(apps):
        src = specs / "apps" / app
        src.mkdir(parents=True)
        (src / "main.sh").write_text(f"#!/bin/sh\necho {app} {tag}\n")
        (src / "data.txt").write_text(f"{app}\n" * 100)
        text.append(
            f'app "{app}" {{\n  from = image.deps_{i % dep_sets}\n  source = "apps/{app}"\n'
            f'  workdir = "/srv"\n  env = {{ APP = "{app}" }}\n}}\n'
        )
    (specs / "fleet.hcl").write_text("\n".join(text))
    return specs


def cluster_args(cluster: Cluster, registry: Registry, repo: str) -> list[str]:
    return ["--cluster", cluster.address, "--cache-to", f"{registry.host}/{repo}"]


def build(cli: Cli, specs: Path, report: Path, *extra: str) -> dict[str, Any]:
    cli("build-all", "--specs", str(specs), "--progress", "plain", "--json-report", str(report),
        *extra)  # fmt: skip
    return dict(json.loads(report.read_text()))


def manifests(report: dict[str, Any]) -> dict[str, str]:
    return {k: v["manifest"] for k, v in report["images"].items()}


def client_argv(store: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    if not store.exists():  # a store given by PIPELINE_STORE must exist (or --init)
        store.mkdir(mode=0o700, parents=True)
    env = dict(os.environ, PIPELINE_STORE=str(store))
    return [sys.executable, "-m", "pipeline", *args], env


APPS = tuple(f"svc{i}" for i in range(6))


@pytest.fixture(scope="module")
def six_apps(
    cluster: Cluster, registry: Registry, base_ref: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The 6-app fleet built once locally and once on the cluster."""
    cluster.ensure_workers()
    root = tmp_path_factory.mktemp("six")
    specs = write_fleet(root, base_ref, "six", APPS, slow=1, dep_sets=3, slow_all=True)
    local_cli = make_cli(root / "local-store", root)
    local = build(local_cli, specs, root / "local.json")
    client_cli = make_cli(root / "client-store", root)
    before = cluster.built()
    report = build(
        client_cli, specs, root / "cluster.json", *cluster_args(cluster, registry, "six/cache")
    )
    return {
        "root": root,
        "specs": specs,
        "local": local,
        "cluster": report,
        "built": cluster.built() - before,
        "cli": client_cli,
    }


# -- the tests -----------------------------------------------------------------------------


def test_six_apps_build_on_the_cluster_as_locally(
    six_apps: dict[str, Any], cluster: Cluster
) -> None:
    report = six_apps["cluster"]
    assert report["totals"]["failed"] == 0
    assert manifests(report) == manifests(six_apps["local"])
    assert len(report["images"]) == len(APPS)
    keys = {n["key"] for n in report["nodes"]}
    assert len(keys) == 1 + 3 + len(APPS)  # base step, 3 dependency sets, one COPY per app
    assert all(n["outcome"] == "built" for n in report["nodes"])
    # every node built exactly once across the workers, by the workers' own records
    assert six_apps["built"] == Counter(keys)
    assert {k: v for k, v in cluster.runs().items() if k.endswith("-six")} == {
        "base-six": 1,
        "deps0-six": 1,
        "deps1-six": 1,
        "deps2-six": 1,
    }
    workers_used = {n["worker"] for n in report["nodes"]}
    assert workers_used <= set(cluster.addresses.values())
    assert len(workers_used) >= 2, workers_used


def test_noop_over_the_cluster_settles_everything_from_the_registry(
    six_apps: dict[str, Any], workers: Cluster, registry: Registry, tmp_path: Path
) -> None:
    before = workers.built()
    started = time.monotonic()
    report = build(six_apps["cli"], six_apps["specs"], tmp_path / "noop.json",
                   *cluster_args(workers, registry, "six/cache"))  # fmt: skip
    seconds = time.monotonic() - started
    assert report["totals"]["built"] == 0
    assert manifests(report) == manifests(six_apps["local"])
    assert workers.built() == before
    assert seconds < 5, seconds


def test_fresh_client_with_an_empty_store_gets_every_image_without_building(
    six_apps: dict[str, Any], workers: Cluster, registry: Registry, tmp_path: Path
) -> None:
    store = tmp_path / "empty-store"
    cli = make_cli(store, tmp_path)
    before = workers.built()
    report = build(cli, six_apps["specs"], tmp_path / "fresh.json",
                   *cluster_args(workers, registry, "six/cache"))  # fmt: skip
    assert manifests(report) == manifests(six_apps["local"])
    assert {n["outcome"] for n in report["nodes"]} == {"cached"}
    assert workers.built() == before
    # only configs and manifests came to the client: its layers are the base's alone
    images = cli("images").stdout
    assert all(f"app.{a}" in images for a in APPS)
    base_layers = {p.name for p in (store / "layers").iterdir()}
    assert len(base_layers) == 1


def test_one_changed_source_rebuilds_one_node_on_the_cluster(
    six_apps: dict[str, Any], workers: Cluster, registry: Registry, tmp_path: Path
) -> None:
    specs = tmp_path / "specs"
    shutil.copytree(six_apps["specs"], specs)
    (specs / "apps" / "svc3" / "data.txt").write_text("changed\n")
    before = workers.built()
    report = build(six_apps["cli"], specs, tmp_path / "one.json",
                   *cluster_args(workers, registry, "six/cache"))  # fmt: skip
    outcomes = Counter(n["outcome"] for n in report["nodes"])
    assert outcomes == {"cached": 9, "built": 1}, outcomes
    changed = next(n for n in report["nodes"] if n["outcome"] == "built")
    assert changed["apps"] == ["app.svc3"] and changed["worker"]
    assert workers.built() - before == Counter({changed["key"]: 1})
    old = manifests(six_apps["local"])
    new = manifests(report)
    assert {a for a in old if old[a] != new[a]} == {"app.svc3"}


def test_a_worker_killed_mid_step_loses_only_that_step(
    workers: Cluster, registry: Registry, base_ref: str, tmp_path: Path
) -> None:
    specs = write_fleet(tmp_path, base_ref, "kill", APPS[:4], slow=6, dep_sets=2)
    argv, env = client_argv(
        tmp_path / "store",
        "build-all", "--specs", str(specs), "--progress", "plain",
        "--json-report", str(tmp_path / "r.json"),
        *cluster_args(workers, registry, "kill/cache"),
    )  # fmt: skip
    client = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline:
        victim = workers.running(6)
        time.sleep(0.1)
    assert victim is not None, "the slow step never started"
    os.kill(workers.workers[victim].pid, signal.SIGKILL)
    workers.workers[victim].wait(10)
    _, err = client.communicate(timeout=180)
    assert client.returncode == 0, err.decode()[-3000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["totals"]["failed"] == 0 and len(report["images"]) == 4
    # the killed step never reached its end; it ran once more, to its end. Other work in
    # progress on the dead worker (its other thread) may be redone; nothing that a
    # surviving worker finished is.
    runs = cluster_runs_of(workers, "kill")
    survivors = [n for n in workers.workers if n != victim]
    on_survivors = {k: v for k, v in workers.runs(survivors).items() if k.endswith("-kill")}
    assert runs["deps0-kill"] == 1 and on_survivors["deps0-kill"] == 1
    assert set(runs) == {"base-kill", "deps0-kill", "deps1-kill"}
    assert all(v <= 1 for v in on_survivors.values()), on_survivors
    # the killed worker committed nothing for the step it was running
    from pipeline.store import Store

    slow_key = next(n["key"] for n in report["nodes"] if "sleep 6" in n["label"])
    killed = Store(workers.store(victim))  # opening it removes the dead worker's debris
    assert killed.lookup(slow_key) is None
    assert list((workers.store(victim) / "tmp").iterdir()) == []
    killed.close()
    # nothing half-pushed is visible: every entry's blobs are whole. A push the dead worker
    # had in flight can leave its upload session open (a SIGKILL gives it no chance to
    # cancel; the registry expires such sessions); at most one per thread of that worker.
    uploads = registry.root / "data/docker/registry/v2/repositories/kill/cache/_uploads"
    left = list(uploads.iterdir()) if uploads.exists() else []
    assert len(left) <= 2, left  # start_worker gives each worker 2 threads
    _check_entries(registry, "kill/cache", {n["key"] for n in report["nodes"]})


def cluster_runs_of(cluster: Cluster, tag: str) -> dict[str, int]:
    return {k: v for k, v in cluster.runs().items() if k.endswith(f"-{tag}")}


def _check_entries(registry: Registry, repo: str, keys: set[str]) -> None:
    """Every cache entry of ``keys`` is whole: manifest, config and layer blob fetched and
    verified by the registry client (digest and size)."""
    from pipeline.build.cache import RegistryCache
    from pipeline.registry.client import Registries

    registries = Registries()
    try:
        cache = RegistryCache(registries, f"{registry.host}/{repo}")
        for key in keys:
            hit = cache.lookup(key)
            assert hit is not None, key
            data = cache.client.get_blob_bytes(
                repo, hit.layer["digest"], hit.layer["size"], 1 << 30
            )
            assert len(data) == hit.layer["size"]
    finally:
        registries.close()


def test_two_clients_at_once_build_each_shared_node_once(
    workers: Cluster, registry: Registry, base_ref: str, tmp_path: Path
) -> None:
    procs = []
    for side, apps in (("a", ("a0", "a1", "a2")), ("b", ("b0", "b1", "b2"))):
        specs = write_fleet(tmp_path / side, base_ref, "two", apps, slow=3, dep_sets=2)
        argv, env = client_argv(
            tmp_path / side / "store",
            "build-all", "--specs", str(specs), "--progress", "plain",
            "--json-report", str(tmp_path / side / "r.json"),
            *cluster_args(workers, registry, "two/cache"),
        )  # fmt: skip
        procs.append(subprocess.Popen(argv, env=env, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err.decode()[-3000:]
    reports = [json.loads((tmp_path / s / "r.json").read_text()) for s in "ab"]
    shared = {n["key"] for n in reports[0]["nodes"]} & {n["key"] for n in reports[1]["nodes"]}
    assert len(shared) == 3  # the base step and both dependency sets
    built = workers.built()
    assert all(built[k] == 1 for k in shared), {k: built[k] for k in shared}
    assert cluster_runs_of(workers, "two") == {"base-two": 1, "deps0-two": 1, "deps1-two": 1}


def test_ctrl_c_on_the_client_cancels_its_tasks_on_the_cluster(
    workers: Cluster, registry: Registry, base_ref: str, tmp_path: Path
) -> None:
    specs = write_fleet(tmp_path, base_ref, "stop", ("s0", "s1"), slow=67, dep_sets=1)
    argv, env = client_argv(
        tmp_path / "store",
        "build-all", "--specs", str(specs), "--progress", "plain",
        *cluster_args(workers, registry, "stop/cache"),
    )  # fmt: skip
    client = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not _sleeping(67) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _sleeping(67), "the long step never started"
    client.send_signal(signal.SIGINT)
    _, err = client.communicate(timeout=30)
    assert client.returncode == 130, err.decode()[-2000:]
    deadline = time.monotonic() + 15
    while (_sleeping(67) or workers.scheduler_tasks()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _sleeping(67), "the step kept running on its worker"
    assert workers.scheduler_tasks() == []
    assert "deps0-stop" not in workers.runs()


def _sleeping(seconds: int) -> list[int]:
    """Pids of the ``sleep SECONDS`` processes on this machine (the steps' marker)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[:2] == [b"sleep", str(seconds).encode()]:
                found.append(int(proc.name))
    return found


def _parent(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def test_cluster_option_is_checked_before_building(cli: Cli) -> None:
    proc = cli("build-all", "--cluster", "nowhere", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("--cluster nowhere: expected local:N")
