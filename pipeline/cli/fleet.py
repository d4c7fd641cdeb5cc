"""Fleet commands: ``validate``, ``plan``, ``build-all`` and ``build``."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipeline.cli.common import build_options, cluster_options, spec_options, workspace

if TYPE_CHECKING:
    from pipeline.build.cluster import ClusterOptions
    from pipeline.build.executor import BuildResult
    from pipeline.build.workspace import Workspace
    from pipeline.graph import BuildGraph


@click.command()
@spec_options
@click.pass_context
def validate(ctx: click.Context, specs: Path, sets: Sequence[str]) -> None:
    """Check the specs: syntax, types, references, cycles."""
    fleet = workspace(ctx, specs, sets).load_fleet(cached=False)
    n_apps = sum(1 for d in fleet.images.values() if d.is_app)
    click.echo(f"{specs}: ok: {len(fleet.files)} files, {n_apps} apps, {len(fleet.images)} images")


@click.command()
@spec_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "dot", "mermaid"]),
    default="text",
    show_default=True,
)
@click.pass_context
def plan(ctx: click.Context, specs: Path, sets: Sequence[str], fmt: str) -> None:
    """Show the merged layer DAG and what is shared."""
    from pipeline import report
    from pipeline.build.volatile import volatile_keys

    ws = workspace(ctx, specs, sets)
    graph = ws.compile()
    volatile = volatile_keys(graph, ws.fleet)
    if fmt == "json":
        click.echo(json.dumps(report.plan_json(graph, volatile), indent=2, sort_keys=True))
    elif fmt == "dot":
        click.echo(report.plan_dot(graph))
    elif fmt == "mermaid":
        click.echo(report.plan_mermaid(graph))
    else:
        click.echo(report.plan_text(graph, volatile))


def _run_build(
    ctx: click.Context,
    specs: Path,
    sets: Sequence[str],
    names: Sequence[str] | None,
    jobs: int | None,
    progress: str,
    verbose: bool,
    json_report: Path | None,
    ca_bundle: Path | None,
    cache_from: str | None = None,
    cache_to: str | None = None,
    insecure: bool = False,
    update: bool = False,
    cluster: str | None = None,
    watch: bool = False,
) -> None:
    from pipeline.build.outputs import check
    from pipeline.errors import BuildFailed

    if json_report is not None:  # refuse before building, not after
        check(json_report, directory=False, replaceable=_report)
    on_cluster = None
    if cluster is not None:
        from pipeline.build.cluster import ClusterOptions, parse_cluster

        on_cluster = ClusterOptions(parse_cluster(cluster), jobs, insecure, verbose)
    once = builder(
        names, jobs, progress, verbose, json_report, ca_bundle, cache_from, cache_to, insecure
    )
    once_on = functools.partial(once, update=update, cluster=on_cluster)
    ws = workspace(ctx, specs, sets)
    graph, result = once_on(ws)
    if watch:
        watch_builds(specs, ws, graph, once_on)
    if result.failures:
        raise BuildFailed(result.failures)


def builder(
    names: Sequence[str] | None,
    jobs: int | None = None,
    progress: str = "auto",
    verbose: bool = False,
    json_report: Path | None = None,
    ca_bundle: Path | None = None,
    cache_from: str | None = None,
    cache_to: str | None = None,
    insecure: bool = False,
) -> Callable[..., tuple[BuildGraph, BuildResult]]:
    """A function that builds ``names`` (default: build-all's outputs) in a workspace
    and prints the summary: what ``build`` runs once and ``--watch`` runs again."""
    from pipeline import report
    from pipeline.build.executor import BuildOptions
    from pipeline.build.outputs import place

    def pulled(ref: str, digest: str) -> None:
        click.echo(f"pulled {ref} ({digest})", err=True)

    def once(
        ws: Workspace, update: bool = False, cluster: ClusterOptions | None = None
    ) -> tuple[BuildGraph, BuildResult]:
        ca = ws.ca_bundle(ca_bundle)
        targets = ws.select(names, partial=True) if names else list(ws.fleet.outputs())
        ws.ensure_registry_bases(update, insecure, ca, on_pull=pulled)
        graph = ws.compile(targets)
        options = BuildOptions(
            jobs=jobs or os.cpu_count() or 1,
            epoch=ws.epoch,
            ca_bundle=ca,
            **ws.remote_caches(cache_from, cache_to, insecure, ca),
        )
        reporter = report.make_reporter(progress, verbose, sys.stderr)
        result = ws.build(graph, targets, options, reporter, " ".join(sys.argv[1:]), cluster)
        click.echo(report.summary_text(graph, result))
        if json_report is not None:
            data = json.dumps(report.build_json(graph, result), indent=2) + "\n"
            place(
                json_report, lambda tmp: tmp.write_text(data), directory=False, replaceable=_report
            )
        return graph, result

    return once


def watch_builds(
    specs: Path,
    ws: Workspace,
    graph: BuildGraph,
    once: Callable[..., tuple[BuildGraph, BuildResult]],
    on_result: Callable[[BuildResult], None] | None = None,
) -> None:
    """``--watch``: rebuild on every change to the inputs of ``graph`` until Ctrl-C
    (see :mod:`pipeline.build.watch`); a failed rebuild is reported and watched on."""
    import time

    from pipeline.build.watch import Watcher, inputs_of, spec_changed
    from pipeline.errors import PipelineError, escape

    with Watcher() as watcher:
        inputs = inputs_of(ws.fleet, graph, specs)
        while True:
            watcher.watch(inputs)
            click.echo(f"watching {len(inputs.flat) + len(inputs.trees)} directories", err=True)
            changed = watcher.changes()
            started = time.monotonic()
            ws = ws.again(reload_specs=spec_changed(inputs, changed))
            try:
                graph, result = once(ws)
            except PipelineError as exc:
                click.echo(escape(str(exc)), err=True)
                continue
            for failure in result.failures:
                click.echo(escape(str(failure)), err=True)
            seconds = time.monotonic() - started
            for image in result.images.values():
                click.echo(f"watch: {image.id} {image.manifest} ({seconds:.3f} s)")
            if on_result is not None:
                on_result(result)
            inputs = inputs_of(ws.fleet, graph, specs)


def _report(path: Path) -> bool:
    """An earlier ``--json-report`` of ours (a JSON object with our top-level keys)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(value, dict) and {"totals", "images", "nodes"} <= value.keys()


@click.command("build-all")
@spec_options
@build_options
@cluster_options
@click.pass_context
def build_all(ctx: click.Context, /, specs: Path, sets: Sequence[str], **opts: Any) -> None:
    """Build every app (and every tagged image) of the fleet."""
    _run_build(ctx, specs, sets, None, **opts)


@click.command()
@click.argument("names", nargs=-1, required=True)
@spec_options
@build_options
@cluster_options
@click.option(
    "--watch",
    is_flag=True,
    help="After the build, rebuild whenever an input (spec, Dockerfile, COPY context) changes.",
)
@click.pass_context
def build(
    ctx: click.Context, /, names: Sequence[str], specs: Path, sets: Sequence[str], **opts: Any
) -> None:
    """Build the named apps, images or groups."""
    _run_build(ctx, specs, sets, names, **opts)
