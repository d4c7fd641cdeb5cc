"""Commands on what the store holds: ``images``, ``history``, ``inspect``, ``export``,
``import``, ``du``, ``prune`` and ``bootstrap``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from pipeline.cli.common import workspace


@click.command()
@click.pass_context
def images(ctx: click.Context) -> None:
    """List the images in the store."""
    from pipeline.build.images import load_image
    from pipeline.digest import short
    from pipeline.report import human_bytes

    store = workspace(ctx).store
    click.echo(f"{'NAME':<40} {'MANIFEST':<14} {'LAYERS':>6} {'SIZE':>10}")
    for name, digest, _ in store.names():
        image = load_image(store, name)
        size = sum(s for _, s in image.layers)
        click.echo(f"{name:<40} {short(digest):<14} {len(image.layers):>6} {human_bytes(size):>10}")


@click.command()
@click.argument("name")
@click.option("--no-trunc", is_flag=True, help="Do not shorten the CREATED BY column.")
@click.pass_context
def history(ctx: click.Context, name: str, no_trunc: bool) -> None:
    """Show an image's layers: what made each, its size, which other apps share it."""
    from pipeline.digest import short
    from pipeline.report import human_bytes

    ws = workspace(ctx)
    image = ws.image(name)
    users = ws.layer_users(exclude=image.name)
    layers = list(image.layers)
    rows = []
    for h in image.history:
        created_by = str(h.get("created_by", ""))
        if h.get("comment") and not no_trunc:  # a package layer: which package
            created_by = str(h["comment"])
        if h.get("empty_layer"):
            rows.append(("<config>", created_by, "0 B", ""))
            continue
        diff_id, size = layers.pop(0) if layers else ("?", 0)
        sharers = sorted(users.get(diff_id, ()))
        shared = ", ".join(sharers[:3]) + (f", +{len(sharers) - 3}" if len(sharers) > 3 else "")
        rows.append((short(diff_id), created_by, human_bytes(size), shared or "-"))
    click.echo(f"{'LAYER':<13} {'SIZE':>10}  {'SHARED WITH':<28} CREATED BY")
    for layer, created_by, shown_size, shared in reversed(rows):
        if not no_trunc and len(created_by) > 70:
            created_by = created_by[:69] + "…"
        click.echo(f"{layer:<13} {shown_size:>10}  {shared:<28} {created_by}")


@click.command()
@click.argument("name")
@click.pass_context
def inspect(ctx: click.Context, name: str) -> None:
    """Print an image's manifest digest, config and layers as JSON."""
    image = workspace(ctx).image(name)
    out = {
        "name": image.name,
        "manifest": image.manifest_digest,
        "config_digest": image.config_digest,
        "config": image.config,
        "layers": [{"diff_id": d, "size": s} for d, s in image.layers],
    }
    click.echo(json.dumps(out, indent=2))


@click.command()
@click.argument("name")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
@click.option(
    "--format", "fmt", type=click.Choice(["oci", "oci-archive", "docker-archive"]), default="oci"
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace OUTPUT if it is a file or a layout pipeline wrote (never another directory).",
)
@click.pass_context
def export(ctx: click.Context, name: str, output: Path, fmt: str, force: bool) -> None:
    """Write an image as an OCI layout, an OCI archive or a docker-archive. OUTPUT must
    not exist (or be an empty directory, for a layout); nothing there is ever replaced
    without --force."""
    from pipeline.build.images import export_image

    ws = workspace(ctx)
    image = ws.image(name)
    digest = export_image(ws.store, image.name, output, fmt, ws.epoch, force)  # type: ignore[arg-type]
    click.echo(f"{output}: {fmt} {digest}")


@click.command("import")
@click.argument("path", type=click.Path(path_type=Path, exists=True))
@click.option("--tag", "tag", required=True, help="Name to store it under, e.g. debian:bookworm")
@click.pass_context
def import_(ctx: click.Context, path: Path, tag: str) -> None:
    """Import an OCI layout/archive, docker-archive or rootfs tarball as a base image."""
    from pipeline.build.images import import_image

    ws = workspace(ctx)
    digest, notes = import_image(ws.store, path, tag)
    for note in notes:
        click.echo(f"{path}: note: {note}", err=True)
    click.echo(f"{tag}: {digest}")


@click.command()
@click.pass_context
def du(ctx: click.Context) -> None:
    """Disk use: unique bytes in the store vs the sum of every app's layers."""
    from pipeline.build.images import disk_usage
    from pipeline.report import human_bytes

    usage = disk_usage(workspace(ctx).store)
    click.echo(f"{'APP':<32} {'SHARED':>10} {'EXCLUSIVE':>10}")
    for name, shared, exclusive in usage.per_image:
        click.echo(f"{name:<32} {human_bytes(shared):>10} {human_bytes(exclusive):>10}")
    if usage.packages:
        click.echo(f"\n{'PIP PACKAGE LAYER':<40} {'SIZE':>10} {'APPS':>5} {'SAVES':>10}")
        for label, size, apps in usage.packages:
            saves = human_bytes(size * (apps - 1))
            click.echo(f"{label:<40} {human_bytes(size):>10} {apps:>5} {saves:>10}")
    saved = usage.naive_bytes - usage.unique_bytes
    click.echo(
        f"layers: {human_bytes(usage.naive_bytes)} summed over apps, "
        f"{human_bytes(usage.unique_bytes)} unique (sharing saves {human_bytes(saved)}); "
        f"store files: {human_bytes(usage.on_disk)}"
    )


@click.command()
@click.pass_context
def prune(ctx: click.Context) -> None:
    """Remove layers and blobs that no image name reaches (waits for running builds)."""
    from pipeline.report import human_bytes

    layers, blobs, freed = workspace(ctx).store.prune()
    click.echo(f"removed {layers} layers, {blobs} blobs, {human_bytes(freed)}")


@click.command()
@click.argument("name")
@click.option("--include", default="", help="Extra Debian packages, comma-separated (debian only).")
@click.pass_context
def bootstrap(ctx: click.Context, name: str, include: str) -> None:
    """Make a base image locally and import it under NAME: `debian:SUITE` (mmdebstrap,
    about a minute) or `busybox:TAG` (from Debian's busybox-static)."""
    from pipeline.build.bootstrap import rootfs_tar
    from pipeline.build.images import import_image

    ws = workspace(ctx)
    store, epoch = ws.store, ws.epoch
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
