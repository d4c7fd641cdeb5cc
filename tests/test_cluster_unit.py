"""Pure parts of cluster builds: the --cluster address, task keys and priorities, and
the scheduling simulation of the benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks import cluster_sim
from pipeline.build.cluster import ClusterOptions, dask_key, heights, parse_cluster
from pipeline.build.cluster_worker import LayerStore
from pipeline.errors import UsageError
from pipeline.graph import BuildGraph, LayerNode


@pytest.mark.parametrize("text", ["local:1", "local:16", "tcp://10.0.0.5:8786", "tls://s:1"])
def test_cluster_addresses_accepted(text: str) -> None:
    assert parse_cluster(text) == text


@pytest.mark.parametrize("text", ["local:0", "local:", "local:x", "10.0.0.5:8786", "tcp://h"])
def test_cluster_addresses_refused_with_the_value(text: str) -> None:
    with pytest.raises(UsageError, match=f"--cluster {text}: expected local:N"):
        parse_cluster(text)


def test_local_workers() -> None:
    assert ClusterOptions("local:3").local_workers == 3
    assert ClusterOptions("tcp://h:1").local_workers == 0


def _graph() -> BuildGraph:
    """base -> a -> b -> c, and a -> d (keys are just names here)."""
    nodes = {
        "base": LayerNode("sha256:" + "0" * 64, "base", None, "FROM x"),
        "a": LayerNode("a", "run", "base", "RUN a"),
        "b": LayerNode("b", "run", "a", "RUN b"),
        "c": LayerNode("c", "copy", "b", "COPY c"),
        "d": LayerNode("d", "copy", "a", "COPY d"),
    }
    apps = {k: frozenset({"app.x"}) for k in nodes}
    return BuildGraph(nodes, apps, {})


def test_heights_are_the_longest_chain_below() -> None:
    graph = _graph()
    h = heights(graph, ["base", "a", "b", "c", "d"])
    assert h == {"base": 4, "a": 3, "b": 2, "c": 1, "d": 1}
    assert heights(graph, ["a", "d"]) == {"a": 2, "d": 1}  # only within the keys given


def test_dask_keys_name_the_node_and_the_layer_store() -> None:
    node = LayerNode("sha256:" + "ab" * 32, "run", None, "RUN x")
    here = LayerStore(repository="r.example/team/cache")
    key = dask_key(node, here)
    assert key.startswith("pipeline-run-" + "ab" * 32 + "-")
    assert dask_key(node, LayerStore(repository="r.example/team/cache")) == key
    assert dask_key(node, LayerStore(repository="r.example/other/cache")) != key
    assert dask_key(node, LayerStore(shared_store="/s")) != key


def test_simulation_respects_both_bounds() -> None:
    times = {"system": 0.3, "deps": 1.0, "copy": 0.05, "app_run": 1.0}
    for app_run in (False, True):
        nodes = cluster_sim.fleet_dag(200, 5, times, app_run)
        t1 = sum(n.seconds for n in nodes)
        t_inf = max(cluster_sim.critical_path(nodes).values())
        assert cluster_sim.simulate(nodes, 1) == pytest.approx(t1)
        for w in (2, 10, 100):
            span = cluster_sim.simulate(nodes, w)
            assert span >= t_inf - 1e-9
            assert span >= t1 / w - 1e-9
            assert span <= t1 / w + t_inf + 1e-9  # Graham's bound for list scheduling


def test_simulation_dispatch_is_serial() -> None:
    nodes = [cluster_sim.Node(f"n{i}", 0.0, ()) for i in range(100)]
    assert cluster_sim.simulate(nodes, 50, dispatch=0.01) == pytest.approx(1.0)


def test_records_of_the_cache_repository_decide_a_no_op_alone(tmp_path: Path) -> None:
    from pipeline.build import cluster_records as records
    from pipeline.build.push import blob_repositories
    from pipeline.store import Store

    class Images:  # the images "c" and "d": the chains base-a-b-c and base-a-d
        def __init__(self, graph: BuildGraph) -> None:
            self.graph = graph

        def closure(self, ids: list[str]) -> set[str]:
            return {"base", "a", *(["b", "c"] if "c" in ids else []), *ids}

        def node(self, key: str) -> LayerNode:
            return self.graph.node(key)

    graph: Any = Images(_graph())
    store = Store(tmp_path / "store")
    try:
        repo = "127.0.0.1:5000/team/cache"
        layer = {k: ("sha256:" + k * 64, 10) for k in "abcd"}
        records.remember(store, repo, {k: layer[k] for k in "abc"})
        assert records.recorded(store, repo, list("abcd")) == {k: layer[k] for k in "abc"}
        assert records.recorded(store, "127.0.0.1:5000/other/cache", list("abc")) == {}
        # each recorded layer is known to be in the repository, for a push to mount it
        assert blob_repositories(store, layer["a"][0]) == {repo}
        remote = repo
        # one node without a record: the repository is asked (the caches made as usual)
        assert records.recorded_caches(graph, store, ["c", "d"], True, None, remote) is None
        assert records.recorded_caches(graph, store, ["c"], True, None, remote) is not None
        records.remember(store, repo, {"d": layer["d"]})
        caches = records.recorded_caches(graph, store, ["c", "d"], True, remote, remote)
        assert caches is not None
        assert isinstance(caches["cache_to"], records.RecordedRepository)
        assert caches["cache_from"] is caches["cache_to"]
        assert str(caches["cache_to"].ref.repository) == "team/cache"
        # never for local:N, another cache-from, a tagged or unparsable name
        assert records.recorded_caches(graph, store, ["c"], False, None, remote) is None
        other = "127.0.0.1:5000/other/cache"
        assert records.recorded_caches(graph, store, ["c"], True, other, remote) is None
        assert records.recorded_caches(graph, store, ["c"], True, None, remote + ":t") is None
        assert records.recorded_caches(graph, store, ["c"], True, None, "Bad Name") is None
        # a malformed record is no record
        store.cache_put("cluster-entries", records._name(repo, "a"), b"{not json")
        assert "a" not in records.recorded(store, repo, ["a"])
    finally:
        store.close()
