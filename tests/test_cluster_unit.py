"""Pure parts of cluster builds: the --cluster address, task keys and priorities, and
the scheduling simulation of the benchmarks."""

from __future__ import annotations

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
