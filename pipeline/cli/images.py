"""Commands on what the store holds: ``images``, ``history``, ``inspect``, ``export``,
``import``, ``du``, ``prune``, ``tag``, ``rmi``, ``untag`` and ``bootstrap``."""

from __future__ import annotations

import fnmatch
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from pipeline.build.workspace import Workspace
from pipeline.cli.common import workspace
from pipeline.errors import UsageError
from pipeline.storerecords import Pruned

F = TypeVar("F", bound=Callable[..., Any])


def fleet_option(fn: F) -> F:
    """``--specs`` for store commands: the current fleet (default: ``./specs``)."""
    return click.option(
        "--specs",
        type=click.Path(path_type=Path),
        default=None,
        help="The current fleet's specs directory or file (default: ./specs when it exists).",
    )(fn)


def ago(when: float | None, now: float | None = None) -> str:
    """``when`` (Unix seconds) as docker shows it: ``5 minutes ago``; ``-`` when unknown."""
    if when is None:
        return "-"
    seconds = max(0, int((time.time() if now is None else now) - when))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return f"{seconds} second{'s' if seconds != 1 else ''} ago"


@click.command()
@click.argument("pattern", required=False)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.pass_context
def images(ctx: click.Context, pattern: str | None, fmt: str) -> None:
    """List the images in the store; PATTERN (a shell-style glob such as 'acme/*' or
    '*web*') keeps the names it matches."""
    from pipeline import names
    from pipeline.build.images import load_image
    from pipeline.digest import short
    from pipeline.report import human_bytes

    store = workspace(ctx).store
    rows: list[dict[str, Any]] = []
    for name, digest, updated in store.names():
        if pattern and not fnmatch.fnmatchcase(name, pattern):
            continue
        image = load_image(store, name)
        found = names.split_id(name)
        rows.append(
            {
                "name": name,
                "fleet": found[0] if found else None,
                "manifest": digest,
                "layers": len(image.layers),
                "size": sum(s for _, s in image.layers),
                "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(updated)),
            }
        )
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'NAME':<40} {'MANIFEST':<14} {'LAYERS':>6} {'SIZE':>10}")
    for r in rows:
        size = human_bytes(r["size"])
        click.echo(f"{r['name']:<40} {short(str(r['manifest'])):<14} {r['layers']:>6} {size:>10}")


@click.command()
@click.argument("name")
@click.option("--no-trunc", is_flag=True, help="Do not shorten the CREATED BY column.")
@fleet_option
@click.pass_context
def history(ctx: click.Context, name: str, no_trunc: bool, specs: Path | None) -> None:
    """Show an image's layers: when each came into the store, what made it, its size,
    which other apps share it (the same whatever name the image is asked by)."""
    from pipeline.digest import short
    from pipeline.report import human_bytes

    ws = workspace(ctx, specs)
    image = ws.image(name)
    store = ws.store
    users = ws.layer_users(exclude_manifest=image.manifest_digest)
    made = store.blob_path(image.manifest_digest).stat().st_mtime
    layers = list(image.layers)
    rows = []
    for h in image.history:
        created_by = str(h.get("created_by", ""))
        if h.get("empty_layer"):
            rows.append(("<config>", ago(made), created_by, "0 B", ""))
            continue
        diff_id, size = layers.pop(0) if layers else ("?", 0)
        sharers = sorted(users.get(diff_id, ()))
        shared = ", ".join(sharers[:3]) + (f", +{len(sharers) - 3}" if len(sharers) > 3 else "")
        when = ago(store.layer_created(diff_id)) if diff_id != "?" else "-"
        rows.append((short(diff_id), when, created_by, human_bytes(size), shared or "-"))
    click.echo(f"{'LAYER':<13} {'CREATED':<15} {'SIZE':>10}  {'SHARED WITH':<28} CREATED BY")
    for layer, when, created_by, shown_size, shared in reversed(rows):
        if not no_trunc and len(created_by) > 60:
            created_by = created_by[:59] + "…"
        click.echo(f"{layer:<13} {when:<15} {shown_size:>10}  {shared:<28} {created_by}")


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
    "--format",
    "fmt",
    type=click.Choice(["oci", "oci-archive", "docker-archive"]),
    default=None,
    help="Default: oci-archive when OUTPUT ends in .tar, else an OCI layout directory.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace OUTPUT if it is a file or a layout pipeline wrote (never another directory).",
)
@click.pass_context
def export(ctx: click.Context, name: str, output: Path, fmt: str | None, force: bool) -> None:
    """Write an image as an OCI layout, an OCI archive or a docker-archive. OUTPUT must
    not exist (or be an empty directory, for a layout); nothing there is ever replaced
    without --force."""
    from pipeline.build.images import export_image

    fmt = fmt or ("oci-archive" if output.name.endswith(".tar") else "oci")
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
    saved = usage.naive_bytes - usage.unique_bytes
    click.echo(
        f"layers: {human_bytes(usage.naive_bytes)} summed over apps, "
        f"{human_bytes(usage.unique_bytes)} unique (sharing saves {human_bytes(saved)}); "
        f"store files: {human_bytes(usage.on_disk)}"
    )


@click.command()
@click.option(
    "--all",
    "all_",
    is_flag=True,
    help="Also drop every name the current fleet neither makes nor uses as a base.",
)
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@fleet_option
@click.pass_context
def prune(ctx: click.Context, all_: bool, dry_run: bool, specs: Path | None) -> None:
    """Remove the layers and blobs no image name reaches, listing each (waits for
    running builds)."""
    ws = workspace(ctx, specs)
    drop: list[str] = []
    if all_:
        if ws.current_fleet is None:
            raise UsageError(
                "prune --all: no current fleet (no ./specs; give --specs): it keeps the "
                "names the current fleet makes and uses and drops the others"
            )
        owned = ws.owned_names()
        drop = [n for n, _, _ in ws.store.names() if n not in owned]
    _removed(ws.store.prune(drop, dry_run=dry_run), dry_run)


def _removed(result: Pruned, dry_run: bool) -> None:
    from pipeline.digest import short
    from pipeline.report import human_bytes

    verb = "would remove" if dry_run else "removed"
    for name in result.names:
        click.echo(f"{'would untag' if dry_run else 'untagged'}: {name}")
    for diff_id, size, made_by in result.layers:
        what = f"  {made_by[:60]}" if made_by else ""
        click.echo(f"{verb} layer {short(diff_id)} {human_bytes(size):>10}{what}")
    names = f"{_n(len(result.names), 'name')}, " if result.names else ""
    click.echo(
        f"{verb} {names}{_n(len(result.layers), 'layer')}, {_n(result.blobs, 'blob')}, "
        f"{human_bytes(result.freed)}"
    )


def _n(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


@click.command()
@click.argument("src")
@click.argument("new")
@click.pass_context
def tag(ctx: click.Context, src: str, new: str) -> None:
    """Give the image SRC (a name, an app of the current fleet, FLEET/APP) the name NEW
    as well, e.g. registry.example.com/team/web:1.2."""
    from pipeline import names

    ws = workspace(ctx)
    stored = ws.stored_name(src)
    names.check_new_name(new)
    digest = ws.store.resolve(stored)
    assert digest is not None
    ws.store.tag(new, digest)
    click.echo(f"{new}: {digest}")


@click.command()
@click.argument("names_", metavar="NAME...", nargs=-1, required=True)
@click.option(
    "-f", "--force", is_flag=True, help="Also remove names the current fleet makes or uses."
)
@click.option(
    "--no-prune", is_flag=True, help="Only remove the names; keep the layers they reached."
)
@fleet_option
@click.pass_context
def rmi(
    ctx: click.Context, names_: tuple[str, ...], force: bool, no_prune: bool, specs: Path | None
) -> None:
    """Remove image names, then the layers and blobs only they reached (as docker rmi
    does). A name an app of the current fleet owns (its id, its tags, its base) is
    refused unless --force."""
    ws = workspace(ctx, specs)
    stored = _removable(ws, names_, force)
    if no_prune:
        for name in stored:
            ws.store.drop_name(name)
            click.echo(f"untagged: {name}")
        return
    _removed(ws.store.prune(stored, only_dropped=True), False)


@click.command()
@click.argument("names_", metavar="NAME...", nargs=-1, required=True)
@click.option(
    "-f", "--force", is_flag=True, help="Also remove names the current fleet makes or uses."
)
@fleet_option
@click.pass_context
def untag(ctx: click.Context, names_: tuple[str, ...], force: bool, specs: Path | None) -> None:
    """Remove image names only (``rmi --no-prune``); ``prune`` frees what they reached."""
    ws = workspace(ctx, specs)
    for name in _removable(ws, names_, force):
        ws.store.drop_name(name)
        click.echo(f"untagged: {name}")


def _removable(ws: Workspace, given: tuple[str, ...], force: bool) -> list[str]:
    """The stored names ``given`` means; UsageError for one the current fleet makes
    or uses (unless ``force``)."""
    stored = list(dict.fromkeys(ws.stored_name(n) for n in given))
    owned = ws.owned_names() if not force else set()
    for name in stored:
        if name in owned:
            raise UsageError(
                f"{name}: the current fleet ({ws.current_fleet}) makes or uses it; "
                "remove it with --force"
            )
    return stored


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
