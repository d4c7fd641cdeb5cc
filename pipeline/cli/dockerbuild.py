"""``pipeline build``: fleet names, or one build context with docker build's options.

The rule (also in the README and ``pipeline build --help``): the arguments are one
build context when any of docker's options is given (``-t``, ``-f``, ``--target``,
``--build-arg``, ``-o``, ``--no-cache``, ``--pull``, ``-q``, ``--network``) or when
the one argument is ``.``, ``..`` or contains a ``/``; otherwise they name apps,
images or groups of the fleet in ``--specs`` (default ``./specs``). A bare word is
always a fleet name, even if a directory of that name exists (``./web`` is the
directory).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from pipeline.cli.common import build_options, cluster_options, spec_options, workspace
from pipeline.errors import UsageError

PROGRESS = {"auto": "auto", "plain": "plain", "tty": "rich", "rich": "rich", "quiet": "quiet"}
DOCKER_OPTIONS = (
    "tags",
    "file",
    "target",
    "build_args",
    "outputs",
    "no_cache",
    "pull",
    "quiet",
    "network",
)
FLEET_ONLY = {"specs": "--specs", "sets": "--set", "update": "--update", "cluster": "--cluster"}


def docker_options(fn: Any) -> Any:
    options = [
        click.option(
            "-t",
            "--tag",
            "tags",
            multiple=True,
            metavar="NAME[:TAG]",
            help="Name the image (repeatable).",
        ),
        click.option(
            "-f",
            "--file",
            "file",
            metavar="DOCKERFILE",
            help="The Dockerfile (default CONTEXT/Dockerfile; - reads standard input).",
        ),
        click.option("--target", metavar="STAGE", help="Build this stage of the Dockerfile."),
        click.option(
            "--build-arg",
            "build_args",
            multiple=True,
            metavar="NAME=VALUE",
            help="Set a build argument (repeatable).",
        ),
        click.option(
            "-o",
            "--output",
            "outputs",
            multiple=True,
            metavar="type=...,dest=...",
            help="Also write the image: type=local|tar|oci|docker|registry (as docker buildx).",
        ),
        click.option("--no-cache", is_flag=True, help="Build every step again."),
        click.option(
            "--pull",
            type=click.Choice(["missing", "always", "never", "true", "false", "newer"]),
            is_flag=False,
            flag_value="always",
            default=None,
            help="Bases: missing (default: the store first, then the registry), "
            "always (pull registry bases again), never.",
        ),
        click.option("-q", "--quiet", is_flag=True, help="Print only the image's digest."),
        click.option(
            "--network",
            type=click.Choice(["default", "none"]),
            default=None,
            help="The network of RUN steps.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.command()
@click.argument("names", nargs=-1, required=True, metavar="NAME...|CONTEXT")
@spec_options
@build_options
@cluster_options
@docker_options
@click.pass_context
def build(ctx: click.Context, /, names: Sequence[str], **opts: Any) -> None:
    """Build the named apps, images or groups of the fleet, or one build context as
    `docker build` does: `pipeline build -t user/image .`

    The arguments are a context when -t, -f, --target, --build-arg, -o, --no-cache,
    --pull, -q or --network is given, or when the one argument is ., .. or contains a
    /; otherwise they are fleet names (write ./web for a directory named web)."""
    docker = {k: opts.pop(k) for k in DOCKER_OPTIONS}
    given = [k for k, v in docker.items() if v not in (None, False, ())]
    paths = [n for n in names if _is_path(n)]
    if not given and not paths:
        from pipeline.cli.fleet import run_build

        specs, sets = opts.pop("specs"), opts.pop("sets")
        _hint_missing_specs(specs, names)
        run_build(ctx, specs, sets, names, **opts)
        return
    if len(names) != 1:
        shown = " ".join(names)
        raise UsageError(
            f"build {shown}: give one context path, or fleet names without docker's options"
        )
    for key, flag in FLEET_ONLY.items():
        source = ctx.get_parameter_source(key)
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            raise UsageError(f"{flag} applies to fleet names, not to a context ({names[0]})")
    _build_context(ctx, names[0], docker, opts)


def _is_path(arg: str) -> bool:
    from pipeline.build.contextbuild import is_context_path

    return is_context_path(arg)


def _hint_missing_specs(specs: Path, names: Sequence[str]) -> None:
    if specs.is_dir() or len(names) != 1 or not Path(names[0]).exists():
        return
    raise UsageError(
        f"{specs}: no such specs directory (to build the directory {names[0]} as a "
        f"context, write ./{names[0]})"
    )


def _build_context(
    ctx: click.Context, path: str, docker: dict[str, Any], opts: dict[str, Any]
) -> None:
    from pipeline import report
    from pipeline.build import contextbuild
    from pipeline.build.executor import BuildOptions
    from pipeline.build.workspace import parse_overrides
    from pipeline.cli.fleet import check_json_report, write_json_report
    from pipeline.errors import BuildFailed

    json_report: Path | None = opts["json_report"]
    if json_report is not None:
        check_json_report(json_report)
    cwd = Path.cwd()
    inline = sys.stdin.read() if docker["file"] == "-" else None
    req = contextbuild.ContextRequest(
        path=path,
        dockerfile=docker["file"],
        inline=inline,
        tags=tuple(docker["tags"]),
        target=docker["target"],
        build_args=tuple(parse_overrides(docker["build_args"], "--build-arg").items()),
        outputs=tuple(docker["outputs"]),
        no_cache=docker["no_cache"],
        network=docker["network"],
    )
    low, dockerfile = contextbuild.lower(req, cwd)
    for warning in low.warnings:
        click.echo(f"warning: {warning}", err=True)
    ws = workspace(ctx)
    vars(ws)["fleet"] = contextbuild.fleet_of(low)  # the workspace's fleet is this one app
    insecure, ca_bundle = opts["insecure"], ws.ca_bundle(opts["ca_bundle"])
    policy = contextbuild.PULL_POLICIES[docker["pull"] or "missing"]
    _pull_bases(ws, low.images, policy, insecure, ca_bundle)
    graph = ws.compile([low.app_id])
    rebuild = graph.closure([low.app_id]) if low.no_cache else set()
    options = BuildOptions(
        jobs=opts["jobs"] or os.cpu_count() or 1,
        epoch=ws.epoch,
        ca_bundle=ca_bundle,
        rebuild=frozenset(rebuild),
        **ws.remote_caches(opts["cache_from"], opts["cache_to"], insecure, ca_bundle),
    )
    quiet = docker["quiet"]
    progress = "quiet" if quiet else PROGRESS.get(opts["progress"], opts["progress"])
    reporter = report.make_reporter(progress, opts["verbose"], sys.stderr)
    result = ws.build(graph, [low.app_id], options, reporter, " ".join(sys.argv[1:]))
    text = inline if dockerfile is None else dockerfile.read_text(errors="replace")
    if not quiet:
        click.echo(_steps_text(ws.store, low.images, graph, result, text or ""))
        click.echo(report.summary_text(graph, result).splitlines()[-1])
    if json_report is not None:
        write_json_report(json_report, graph, result)
    if result.failures:
        raise BuildFailed(result.failures)
    image = result.images[low.app_id]
    _write_outputs(ws, low, cwd, insecure, ca_bundle)
    if quiet:
        click.echo(image.manifest)
        return
    click.echo(f"Successfully built {image.manifest} ({low.app_id.removeprefix('app.')})")
    for name in image.names[1:]:
        click.echo(f"Successfully tagged {name}")


def _pull_bases(
    ws: Any, images: Sequence[Any], policy: str, insecure: bool, ca_bundle: Path | None
) -> None:
    from pipeline.build import contextbuild

    registries = None

    def pull(ref: str) -> str:
        nonlocal registries
        from pipeline.build.pull import pull_image
        from pipeline.registry.reference import Reference

        if registries is None:
            registries = ws.registries(insecure, ca_bundle)
        result = pull_image(ws.store, registries, Reference.parse(ref), ref, epoch=ws.epoch)
        click.echo(f"pulled {ref} ({result.remote_digest})", err=True)
        return str(result.local_digest)

    try:
        contextbuild.ensure_bases(ws.store, images, policy, pull)
    finally:
        if registries is not None:
            registries.close()


def _write_outputs(ws: Any, low: Any, cwd: Path, insecure: bool, ca_bundle: Path | None) -> None:
    if not low.exports:
        return
    from pipeline.build.bakeoutputs import write_outputs

    registries = None

    def push(image_id: str, names: Sequence[str]) -> list[str]:
        nonlocal registries
        from pipeline.build.push import push_image
        from pipeline.registry.reference import Reference

        if registries is None:
            registries = ws.registries(insecure, ca_bundle)
        refs = [Reference.parse(n) for n in names]
        refs = [r.with_tag(r.tag or "latest") for r in refs]
        pushed = push_image(ws.store, registries, image_id, refs, "none", ws.epoch)
        return [r.target for r in pushed]

    try:
        for done in write_outputs(ws.store, [low], ws.epoch, cwd, push, dict(os.environ)):
            click.echo(f"output: {done.kind} {done.where}")
    finally:
        if registries is not None:
            registries.close()


def _steps_text(store: Any, images: Sequence[Any], graph: Any, result: Any, text: str) -> str:
    """Every instruction and what became of it, in Dockerfile order."""
    from pipeline.build.contextbuild import step_rows
    from pipeline.digest import short
    from pipeline.report import human_bytes

    plans = {i: p.nodes for i, p in graph.images.items()}
    results = {}
    for key, r in result.nodes.items():
        top = r.layers[-1] if r.layers else ""
        size = r.size or (store.layer_size(top) if top and store.has_layer(top) else 0)
        results[key] = (r.outcome, r.seconds, size, top)
    rows = step_rows(images, plans, results, text)
    width = max(4, len(f"{len(rows)}/{len(rows)}"))
    out = [f"{'STEP':<{width}}  {'RESULT':<7} {'LAYER':<12} {'SIZE':>10} {'TIME':>6}  INSTRUCTION"]
    for row in rows:
        layered = row.outcome in ("built", "cached", "pulled")
        size = human_bytes(row.size) if layered else ""
        secs = f"{row.seconds:.1f}s" if row.outcome == "built" else ""
        layer = short(row.layer) if layered and row.layer else ""
        instruction = row.text if len(row.text) <= 100 else row.text[:99] + "…"
        step = f"{row.number}/{row.total}"
        out.append(
            f"{step:<{width}}  {row.outcome:<7} {layer:<12} {size:>10} {secs:>6}  {instruction}"
        )
    return "\n".join(out)
