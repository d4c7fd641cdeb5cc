"""``pipeline bake``: build the targets of docker-bake files, as ``docker buildx bake``
does, on the merged DAG of the store."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from pipeline.cli.common import registry_options, workspace

PROGRESS = {
    "auto": "auto",
    "tty": "rich",
    "rich": "rich",
    "plain": "plain",
    "quiet": "quiet",
    "none": "quiet",
}


@click.command()
@click.argument("names", nargs=-1, metavar="[TARGET|GROUP...]")
@click.option(
    "-f",
    "--file",
    "files",
    multiple=True,
    metavar="FILE",
    help="A bake file (repeatable; - reads standard input).",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="PATTERN.KEY=VALUE",
    help="Override a target attribute (repeatable).",
)
@click.option(
    "--var", "variables", multiple=True, metavar="NAME=VALUE", help="Set a variable (repeatable)."
)
@click.option(
    "--print",
    "print_",
    is_flag=True,
    help="Print the resolved definition as bake's JSON; build nothing.",
)
@click.option("--push", is_flag=True, help="Shorthand for --set=*.push=true.")
@click.option(
    "--load", is_flag=True, help="Shorthand for --set=*.load=true (docker load of each image)."
)
@click.option("--no-cache", is_flag=True, help="Build every step again.")
@click.option("--pull", is_flag=True, help="Resolve registry bases again.")
@click.option("--progress", type=click.Choice(sorted(PROGRESS)), default="auto", show_default=True)
@click.option("-j", "--jobs", type=int, default=None, help="Parallel steps (default: CPUs).")
@click.option("-v", "--verbose", is_flag=True, help="Stream step output (plain progress).")
@registry_options
@click.pass_context
def bake(
    ctx: click.Context,
    names: Sequence[str],
    files: Sequence[str],
    sets: Sequence[str],
    variables: Sequence[str],
    print_: bool,
    push: bool,
    load: bool,
    no_cache: bool,
    pull: bool,
    progress: str,
    jobs: int | None,
    verbose: bool,
    insecure: bool,
    ca_bundle: Path | None,
) -> None:
    """Build targets and groups of docker-bake.hcl / .json files (default: the group or
    target "default"), with bake's file lookup, variables, --set and outputs."""
    from pipeline.build.workspace import parse_overrides
    from pipeline.spec.bakefile import find_files
    from pipeline.spec.bakeproject import load_bake, load_definition

    cwd = Path.cwd()
    environ = dict(os.environ)
    stdin = sys.stdin.read() if "-" in files else None
    bake_files = find_files(files, cwd, environ, stdin)
    overrides = list(sets)
    for flag, key in ((push, "push"), (load, "load"), (no_cache, "no-cache"), (pull, "pull")):
        if flag:
            overrides.append(f"*.{key}=true")
    cli_vars = parse_overrides(variables, "--var")
    if print_:
        definition = load_definition(bake_files, names, overrides, environ, cli_vars)
        click.echo(definition.print_json())
        return
    project = load_bake(bake_files, names, overrides, environ, cli_vars, cwd)
    for warning in project.warnings:
        click.echo(f"warning: {warning}", err=True)
    for low in project.lowered.values():
        if low.volatile_args or low.volatile_all:
            what = ", ".join(k for k, _ in low.volatile_args) or "its Dockerfile"
            click.echo(
                f'note: target "{low.name}": {what} change on every run (timestamp/uuid); '
                "the steps that see them are rebuilt each time",
                err=True,
            )
    _build(ctx, project, cwd, environ, progress, jobs, verbose, insecure, ca_bundle)


def _build(
    ctx: click.Context,
    project: object,
    cwd: Path,
    environ: dict[str, str],
    progress: str,
    jobs: int | None,
    verbose: bool,
    insecure: bool,
    ca_bundle: Path | None,
) -> None:
    from pipeline import report
    from pipeline.build.bakeoutputs import write_outputs
    from pipeline.build.executor import BuildOptions
    from pipeline.errors import BuildFailed, PipelineError
    from pipeline.spec.bakeproject import BakeProject

    assert isinstance(project, BakeProject)
    ws = workspace(ctx, cwd)
    vars(ws)["fleet"] = project.fleet  # the workspace's fleet is the bake project's
    ca_bundle = ws.ca_bundle(ca_bundle)
    lowered = [project.lowered[n] for n in project.definition.requested if n in project.lowered]
    linked = [project.lowered[n] for n in project.definition.linked]

    def pulled(ref: str, digest: str) -> None:
        click.echo(f"pulled {ref} ({digest})", err=True)

    update = any(low.pull for low in (*lowered, *linked))
    ws.ensure_registry_bases(update, insecure, ca_bundle, on_pull=pulled)
    targets = list(project.outputs)
    graph = ws.compile(targets)
    rebuild: set[str] = set()
    for low in (*lowered, *linked):
        if low.no_cache:
            rebuild |= graph.closure([low.app_id])
        for stage in low.no_cache_stages:
            image = project.fleet.images[stage]
            below = graph.closure([image.base.ref]) if image.base.kind == "block" else set()
            rebuild |= set(graph.images[stage].nodes) - below
    froms = list(dict.fromkeys(_repository(r) for low in lowered for r in low.cache_from))
    tos = list(dict.fromkeys(_repository(r) for low in lowered for r in low.cache_to))
    for what, refs in (("cache-from", froms), ("cache-to", tos)):
        if len(refs) > 1:
            click.echo(f"warning: several {what} repositories; using {refs[0]}", err=True)
    caches = ws.remote_caches(None, tos[0] if tos else None, insecure, ca_bundle)
    if froms:  # as with BuildKit, a cache that cannot be read is a warning, not an error
        try:
            found = ws.remote_caches(froms[0], None, insecure, ca_bundle)
            caches["cache_from"] = found["cache_from"]
        except PipelineError as exc:
            click.echo(f"warning: cache-from {froms[0]} is not used: {exc}", err=True)
    options = BuildOptions(
        jobs=jobs or os.cpu_count() or 1,
        epoch=ws.epoch,
        ca_bundle=ca_bundle,
        rebuild=frozenset(rebuild),
        **caches,
    )
    reporter = report.make_reporter(PROGRESS[progress], verbose, sys.stderr)
    result = ws.build(graph, targets, options, reporter, " ".join(["bake", *sys.argv[2:]]))
    click.echo(report.end_text(graph, result, PROGRESS[progress]))
    if result.failures:
        raise BuildFailed(result.failures, logs_shown=True)
    registries = None

    def push(image_id: str, names: Sequence[str]) -> list[str]:
        nonlocal registries
        from pipeline.build.push import push_image
        from pipeline.registry.reference import Reference

        if registries is None:
            registries = ws.registries(insecure, ca_bundle)
        refs = [Reference.parse(n) for n in names]
        refs = [r.with_tag(r.tag or "latest") for r in refs]
        return [
            r.target for r in push_image(ws.store, registries, image_id, refs, "none", ws.epoch)
        ]

    try:
        for done in write_outputs(ws.store, lowered, ws.epoch, cwd, push, environ):
            click.echo(f"{done.target}: {done.kind} {done.where}")
    finally:
        if registries is not None:
            registries.close()


def _repository(ref: str) -> str:
    """A cache ``ref`` (``host/repo:tag``) as the repository our registry cache uses
    (one tag per layer key, so bake's tag is dropped)."""
    head, _, last = ref.rpartition("/")
    name = last.split("@", 1)[0].split(":", 1)[0]
    return f"{head}/{name}" if head else name
