"""The command line: a thin composition root over the spec loader, compiler, store
and executor. Every PipelineError becomes one line on stderr and its exit status."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from pipeline.errors import PipelineError, UnsafePathError, UsageError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Ctx:
    store_path: Path


def _store(ctx: click.Context) -> Any:
    from pipeline.store import Store

    return Store(ctx.obj.store_path)


def _overrides(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--set {pair!r}: expected NAME=VALUE")
        out[name] = value
    return out


def spec_options(fn: F) -> F:
    fn = click.option(
        "--set",
        "sets",
        multiple=True,
        metavar="NAME=VALUE",
        help="Override a spec variable (repeatable).",
    )(fn)
    fn = click.option(
        "--specs",
        type=click.Path(path_type=Path),
        default=Path("specs"),
        show_default=True,
        help="Directory of *.hcl spec files.",
    )(fn)
    return fn


@dataclass(frozen=True)
class _ParseCache:
    """hcl.ParseCache over the store: parsed spec files keyed by their content."""

    store: Any

    def get(self, key: str) -> bytes | None:
        return self.store.cache_get("parsed-specs", key)  # type: ignore[no-any-return]

    def put(self, key: str, data: bytes) -> None:
        self.store.cache_put("parsed-specs", key, data)


def _load(specs: Path, sets: Sequence[str], store: Any = None) -> Any:
    from pipeline.spec.loader import load_fleet

    if not specs.is_dir():
        raise UsageError(f"{specs}: no such specs directory")
    cache = _ParseCache(store) if store is not None else None
    return load_fleet(specs, _overrides(sets), os.environ, parse_cache=cache)


def _compile(fleet: Any, store: Any, outputs: Sequence[str] | None = None) -> Any:
    from pipeline.build.images import resolve_bases
    from pipeline.fs.context import ContextError
    from pipeline.fs.contexthash import ContextHasher
    from pipeline.graph import compile_fleet

    hasher = ContextHasher(store.root / "context-cache.json")

    def copy_digest(copy: Any) -> str:
        try:
            return hasher.digest(Path(copy.context), copy.sources, copy.ignore)
        except ContextError as exc:
            raise exc.at(copy.loc) from None
        except UnsafePathError as exc:
            where = f"{copy.loc}: " if copy.loc else ""
            raise UnsafePathError(
                f"{where}COPY context {exc.where}", exc.path, exc.reason
            ) from None

    graph = compile_fleet(fleet, resolve_bases(fleet, store), copy_digest, outputs)
    hasher.save()
    return graph


def _select(fleet: Any, names: Sequence[str]) -> list[str]:
    """App names, ids or group names -> ImageDef ids, in the order given."""
    from pipeline.errors import did_you_mean

    out: list[str] = []
    for name in names:
        if name in fleet.groups:
            ids = list(fleet.groups[name])
        elif name in fleet.images:
            ids = [name]
        elif f"app.{name}" in fleet.images:
            ids = [f"app.{name}"]
        elif f"image.{name}" in fleet.images:
            ids = [f"image.{name}"]
        else:
            choices = [i.split(".", 1)[1] for i in fleet.images] + list(fleet.groups)
            hint = did_you_mean(name, choices)
            more = f' (did you mean "{hint}"?)' if hint else ""
            raise UsageError(f"{name}: no such app, image or group in the specs{more}")
        out.extend(i for i in ids if i not in out)
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--store",
    type=click.Path(path_type=Path),
    envvar="PIPELINE_STORE",
    default=None,
    help="Store directory (default: $PIPELINE_STORE or ~/.cache/pipeline).",
)
@click.version_option(package_name="pipeline")
@click.pass_context
def main(ctx: click.Context, store: Path | None) -> None:
    """Build a fleet of container images from declarative HCL specs, without a daemon."""
    from pipeline.store import default_store_path

    ctx.obj = Ctx(store or default_store_path())


@main.command()
@spec_options
def validate(specs: Path, sets: Sequence[str]) -> None:
    """Check the specs: syntax, types, references, cycles."""
    fleet = _load(specs, sets)
    n_apps = sum(1 for d in fleet.images.values() if d.is_app)
    click.echo(f"{specs}: ok: {len(fleet.files)} files, {n_apps} apps, {len(fleet.images)} images")


@main.command()
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

    store = _store(ctx)
    fleet = _load(specs, sets, store)
    graph = _compile(fleet, store)
    if fmt == "json":
        click.echo(json.dumps(report.plan_json(graph), indent=2, sort_keys=True))
    elif fmt == "dot":
        click.echo(report.plan_dot(graph))
    elif fmt == "mermaid":
        click.echo(report.plan_mermaid(graph))
    else:
        click.echo(report.plan_text(graph))


def build_options(fn: F) -> F:
    fn = click.option(
        "--progress",
        type=click.Choice(["auto", "plain", "rich", "quiet"]),
        default="auto",
        show_default=True,
    )(fn)
    fn = click.option(
        "-j", "--jobs", type=int, default=None, help="Parallel steps (default: CPUs)."
    )(fn)
    fn = click.option("-v", "--verbose", is_flag=True, help="Stream step output (plain progress).")(
        fn
    )
    fn = click.option(
        "--ca-bundle",
        type=click.Path(path_type=Path, exists=True, dir_okay=False),
        default=None,
        help="CA bundle mounted read-only into RUN steps (default: PIPELINE_CA_BUNDLE, "
        "PIP_CERT, SSL_CERT_FILE or REQUESTS_CA_BUNDLE from the environment).",
    )(fn)
    fn = click.option(
        "--json-report",
        type=click.Path(path_type=Path),
        default=None,
        help="Also write the build's totals and per-node outcomes as JSON here.",
    )(fn)
    fn = click.option(
        "--cache-from", metavar="REGISTRY/REPO", help="Fetch layers from this remote cache."
    )(fn)
    fn = click.option(
        "--cache-to", metavar="REGISTRY/REPO", help="Publish layers to this remote cache."
    )(fn)
    fn = click.option(
        "--insecure", is_flag=True, help="Allow plain HTTP to non-loopback registries."
    )(fn)
    fn = click.option(
        "--update", is_flag=True, help="Re-resolve registry bases and rewrite pipeline.lock."
    )(fn)
    return fn


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
) -> None:
    from pipeline import report
    from pipeline.build import executor
    from pipeline.cli.remote import ensure_registry_bases, remote_build_options
    from pipeline.errors import BuildFailed

    store = _store(ctx)
    fleet = _load(specs, sets, store)
    ca_bundle = ca_bundle or executor.default_ca_bundle(os.environ)
    ensure_registry_bases(fleet, store, specs, update, insecure, ca_bundle)
    targets = _select(fleet, names) if names else list(fleet.outputs())
    graph = _compile(fleet, store, targets)
    rep: Any
    if progress == "quiet":
        rep = executor.NullReporter()
    elif progress == "rich" or (progress == "auto" and sys.stderr.isatty() and not verbose):
        from rich.console import Console

        rep = report.RichReporter(Console(stderr=True))
    else:
        rep = report.PlainReporter(sys.stderr, verbose)
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0") or 0)
    opts = executor.BuildOptions(
        jobs=jobs or os.cpu_count() or 1,
        epoch=epoch,
        ca_bundle=ca_bundle,
        **remote_build_options(cache_from, cache_to, insecure, ca_bundle),
    )
    build_id = store.begin_build(" ".join(sys.argv[1:]))
    try:
        result = executor.build(graph, store, targets, opts, rep)
    except BaseException as exc:
        store.end_build(build_id, "error", {"error": f"{type(exc).__name__}: {exc}"})
        raise
    totals = report.build_totals(graph, result)
    store.end_build(build_id, "failed" if result.failures else "ok", totals)
    for key, node_result in result.nodes.items():
        node = graph.node(key)
        if node.kind != "base":
            store.record_node(
                build_id,
                key,
                node.label,
                ",".join(sorted(graph.apps_of(key))),
                node_result.outcome,
                node_result.seconds,
                node_result.layers[-1] if node_result.layers else None,
            )
    click.echo(report.summary_text(graph, result))
    if json_report is not None:
        json_report.write_text(json.dumps(report.build_json(graph, result), indent=2))
    if result.failures:
        raise BuildFailed(result.failures)


@main.command("build-all")
@spec_options
@build_options
@click.pass_context
def build_all(ctx: click.Context, specs: Path, sets: Sequence[str], **opts: Any) -> None:
    """Build every app (and every tagged image) of the fleet."""
    _run_build(ctx, specs, sets, None, **opts)


@main.command()
@click.argument("names", nargs=-1, required=True)
@spec_options
@build_options
@click.pass_context
def build(
    ctx: click.Context, names: Sequence[str], specs: Path, sets: Sequence[str], **opts: Any
) -> None:
    """Build the named apps, images or groups."""
    _run_build(ctx, specs, sets, names, **opts)


@main.command()
@click.pass_context
def images(ctx: click.Context) -> None:
    """List the images in the store."""
    from pipeline.build.images import load_image
    from pipeline.digest import short
    from pipeline.report import human_bytes

    store = _store(ctx)
    rows = store.names()
    click.echo(f"{'NAME':<40} {'MANIFEST':<14} {'LAYERS':>6} {'SIZE':>10}")
    for name, digest, _ in rows:
        image = load_image(store, name)
        size = sum(s for _, s in image.layers)
        click.echo(f"{name:<40} {short(digest):<14} {len(image.layers):>6} {human_bytes(size):>10}")


def _image_name(name: str) -> str:
    return name if "." in name.split(":")[0] or ":" in name or "@" in name else f"app.{name}"


def _lookup(store: Any, name: str) -> Any:
    from pipeline.build.images import load_image

    if store.resolve(name) is None and store.resolve(_image_name(name)) is not None:
        name = _image_name(name)
    return load_image(store, name)


@main.command()
@click.argument("name")
@click.option("--no-trunc", is_flag=True, help="Do not shorten the CREATED BY column.")
@click.pass_context
def history(ctx: click.Context, name: str, no_trunc: bool) -> None:
    """Show an image's layers: what made each, its size, which other apps share it."""
    from pipeline.digest import short
    from pipeline.report import human_bytes

    store = _store(ctx)
    image = _lookup(store, name)
    users: dict[str, set[str]] = {}
    for other, _, _ in store.names():
        if other.startswith("app.") and other != image.name:
            for diff_id, _ in _lookup(store, other).layers:
                users.setdefault(diff_id, set()).add(other.removeprefix("app."))
    layers = list(image.layers)
    rows = []
    for h in image.history:
        created_by = str(h.get("created_by", ""))
        if h.get("empty_layer"):
            rows.append(("<config>", created_by, "0 B", ""))
            continue
        diff_id, size = layers.pop(0) if layers else ("?", 0)
        sharers = sorted(users.get(diff_id, ()))
        shared = ", ".join(sharers[:3]) + (f", +{len(sharers) - 3}" if len(sharers) > 3 else "")
        rows.append((short(diff_id), created_by, human_bytes(size), shared or "-"))
    click.echo(f"{'LAYER':<13} {'SIZE':>10}  {'SHARED WITH':<28} CREATED BY")
    for layer, created_by, size, shared in reversed(rows):
        if not no_trunc and len(created_by) > 70:
            created_by = created_by[:69] + "…"
        click.echo(f"{layer:<13} {size:>10}  {shared:<28} {created_by}")


@main.command()
@click.argument("name")
@click.pass_context
def inspect(ctx: click.Context, name: str) -> None:
    """Print an image's manifest digest, config and layers as JSON."""
    store = _store(ctx)
    image = _lookup(store, name)
    out = {
        "name": image.name,
        "manifest": image.manifest_digest,
        "config_digest": image.config_digest,
        "config": image.config,
        "layers": [{"diff_id": d, "size": s} for d, s in image.layers],
    }
    click.echo(json.dumps(out, indent=2))


@main.command()
@click.argument("name")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
@click.option(
    "--format", "fmt", type=click.Choice(["oci", "oci-archive", "docker-archive"]), default="oci"
)
@click.pass_context
def export(ctx: click.Context, name: str, output: Path, fmt: str) -> None:
    """Write an image as an OCI layout, an OCI archive or a docker-archive."""
    from pipeline.build.images import export_image

    store = _store(ctx)
    image = _lookup(store, name)
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0") or 0)
    digest = export_image(store, image.name, output, fmt, epoch)  # type: ignore[arg-type]
    click.echo(f"{output}: {fmt} {digest}")


@main.command("import")
@click.argument("path", type=click.Path(path_type=Path, exists=True))
@click.option("--tag", "tag", required=True, help="Name to store it under, e.g. debian:bookworm")
@click.pass_context
def import_(ctx: click.Context, path: Path, tag: str) -> None:
    """Import an OCI layout/archive, docker-archive or rootfs tarball as a base image."""
    from pipeline.build.images import import_image

    store = _store(ctx)
    digest, notes = import_image(store, path, tag)
    for note in notes:
        click.echo(f"{path}: note: {note}", err=True)
    click.echo(f"{tag}: {digest}")


@main.command()
@click.pass_context
def du(ctx: click.Context) -> None:
    """Disk use: unique bytes in the store vs the sum of every app's layers."""
    from pipeline.build.images import disk_usage
    from pipeline.report import human_bytes

    usage = disk_usage(_store(ctx))
    click.echo(f"{'APP':<32} {'SHARED':>10} {'EXCLUSIVE':>10}")
    for name, shared, exclusive in usage.per_image:
        click.echo(f"{name:<32} {human_bytes(shared):>10} {human_bytes(exclusive):>10}")
    saved = usage.naive_bytes - usage.unique_bytes
    click.echo(
        f"layers: {human_bytes(usage.naive_bytes)} summed over apps, "
        f"{human_bytes(usage.unique_bytes)} unique (sharing saves {human_bytes(saved)}); "
        f"store files: {human_bytes(usage.on_disk)}"
    )


@main.command()
@click.pass_context
def prune(ctx: click.Context) -> None:
    """Remove layers and blobs that no image name reaches (waits for running builds)."""
    from pipeline.report import human_bytes

    layers, blobs, freed = _store(ctx).prune()
    click.echo(f"removed {layers} layers, {blobs} blobs, {human_bytes(freed)}")


@main.command()
@click.argument("name")
@click.option("--include", default="", help="Extra Debian packages, comma-separated (debian only).")
@click.pass_context
def bootstrap(ctx: click.Context, name: str, include: str) -> None:
    """Make a base image locally and import it under NAME: `debian:SUITE` (mmdebstrap,
    about a minute) or `busybox:TAG` (from Debian's busybox-static)."""
    import time

    from pipeline.build.bootstrap import rootfs_tar
    from pipeline.build.images import import_image

    store = _store(ctx)
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0") or 0)
    started = time.monotonic()
    with store.staging() as staging:
        tar = staging.path / "rootfs.tar"
        packages = [p for p in include.split(",") if p]
        rootfs_tar(name, tar, packages, epoch)
        created_by = f"pipeline bootstrap {name}" + (f" --include {include}" if include else "")
        digest, notes = import_image(store, tar, name, epoch, created_by)
    for note in notes:
        click.echo(f"{name}: note: {note}", err=True)
    click.echo(f"{name}: {digest} ({time.monotonic() - started:.1f}s)")


@main.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.option("-p", "--publish", multiple=True, metavar="[ADDR:]HOST_PORT:PORT")
@click.option("-e", "--env", "envs", multiple=True, metavar="NAME=VALUE")
@click.option("--network", type=click.Choice(["default", "none"]), default="default")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run_(
    ctx: click.Context,
    name: str,
    publish: Sequence[str],
    envs: Sequence[str],
    network: str,
    command: Sequence[str],
) -> None:
    """Run an image's entrypoint in the sandbox (host network, so a server is reachable;
    -p forwards another host port to it). A throwaway upper dir: nothing of the run is
    kept. Ctrl-C / SIGTERM stop it; everything is unmounted. Exits with its status."""
    from pipeline.oci.config import ImageConfig
    from pipeline.sandbox import linux as sandbox
    from pipeline.sandbox.portforward import Forwarder, PortMap

    store = _store(ctx)
    image = _lookup(store, name)
    config = ImageConfig.from_oci(image.config.get("config") or {})
    env = dict(config.env)
    env.update(_overrides(envs))
    argv = [*(config.entrypoint or ()), *(command or config.cmd or ())]
    if not argv:
        raise UsageError(f"{name}: the image has no entrypoint or cmd; give a command after --")
    maps = [PortMap.parse(p) for p in publish]
    spec = sandbox.RunSpec(
        argv=tuple(argv),
        env=tuple(env.items()),
        workdir=config.workdir or "/",
        user=config.user,
        network=network,
        hostname=name.removeprefix("app.").split(":")[0][:63] or "pipeline",
    )
    forwarders = []
    with store.gc_lock(), store.staging() as staging:
        upper, work = staging.path / "upper", staging.path / "work"
        upper.mkdir()
        work.mkdir()
        lowers = [store.layer_path(d) for d, _ in reversed(image.layers)]
        try:
            forwarders = [Forwarder(m) for m in maps]
            code = sandbox.run_interactive(lowers, upper, work, spec)
        finally:
            for f in forwarders:
                f.close()
    sys.exit(code)


from pipeline.cli.remote import pull, push  # noqa: E402

main.add_command(push)
main.add_command(pull)


def run() -> None:
    """Entry point with one-line errors instead of tracebacks."""
    try:
        main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except PipelineError as exc:
        click.echo(str(exc), err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    run()
