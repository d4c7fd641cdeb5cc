"""Benchmarks for pipeline: a deterministic fleet generator (``workload``), the
pytest-benchmark suite (``test_bench_*``) and a side-by-side run against Docker
BuildKit and buildah (``compare_peers``). See docs/benchmarks.md."""
