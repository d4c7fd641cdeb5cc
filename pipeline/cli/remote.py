"""Registry commands: ``push`` and ``pull``.

Light at import time: the HTTP stack (httpx, via ``pipeline.registry``) is imported
only when a registry is used.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from pipeline.cli.common import registry_options, workspace
from pipeline.errors import UsageError


@click.command()
@click.argument("apps", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Push every app (and tagged image) in the store.")
@click.option(
    "--to",
    "to",
    metavar="REGISTRY/REPO[:TAG]",
    default=None,
    help="Push the one APP here instead of to its tags.",
)
@click.option(
    "--compress",
    type=click.Choice(["none", "gzip"]),
    default="none",
    show_default=True,
    help="Layer blobs as the uncompressed tar (digest = diff_id) or gzip.",
)
@registry_options
@click.pass_context
def push(
    ctx: click.Context,
    apps: Sequence[str],
    all_: bool,
    to: str | None,
    compress: str,
    insecure: bool,
    ca_bundle: Path | None,
) -> None:
    """Push apps to a registry: every tag of each app (tags name their registry, e.g.
    registry.example.com:5000/team/web:1.2), or one app to --to."""
    from pipeline.build.push import BlobPusher, push_image
    from pipeline.registry.reference import Reference
    from pipeline.report import human_bytes, transfers

    ws = workspace(ctx)
    store = ws.store
    if not apps and not all_:
        raise UsageError("push: name the apps to push, or give --all")
    if to is not None and (all_ or len(apps) != 1):
        raise UsageError("push --to: give exactly one app")
    named = [ws.stored_name(a) for a in apps]
    names = list(named)
    if all_:
        for n, _, _ in store.names():
            wanted = n.startswith("app.") or (n.startswith("image.") and ws.public_tags(n))
            if wanted and n not in names:
                names.append(n)
    plan: list[tuple[str, list[Any]]] = []
    for name in names:
        if to is not None:
            ref = Reference.parse(to)
            if ref.digest:
                raise UsageError(f"push --to {to}: give a tag, not a digest")
            plan.append((name, [ref.with_tag(ref.tag or "latest")]))
            continue
        tags = ws.public_tags(name)
        if not tags:
            if all_ and name not in named:
                click.echo(f"{name}: no tags; skipped (push it with --to)", err=True)
                continue
            raise UsageError(
                f"{name}: has no tags to push to; add tags in its spec or give --to "
                "REGISTRY/REPO:TAG"
            )
        refs = [Reference.parse(t) for t in tags]
        plan.append((name, [r.with_tag(r.tag or "latest") for r in refs]))
    registries = ws.registries(insecure, ca_bundle)
    try:
        for host in sorted({r.registry for _, refs in plan for r in refs}):
            registries.client(host).ping()
        pusher = BlobPusher(registries, store, compress)  # type: ignore[arg-type]
        for name, refs in plan:
            with transfers(sys.stderr) as progress:
                results = push_image(
                    store,
                    registries,
                    name,
                    refs,
                    compress,  # type: ignore[arg-type]
                    ws.epoch,
                    pusher,
                    progress,
                )
            for r in results:
                s = r.stats
                click.echo(
                    f"{r.target}: {r.digest} ({r.layers} layers; blobs: {s.uploaded} uploaded"
                    f" ({human_bytes(s.bytes_sent)}), {s.mounted} mounted, "
                    f"{s.present} already there)"
                )
    finally:
        registries.close()


@click.command()
@click.argument("ref")
@click.option("--tag", "tag", default=None, help="Store it under this name (default: REF).")
@click.option(
    "--platform",
    "platform_",
    default=None,
    metavar="linux/ARCH",
    help="The image to take from a multi-platform index (default: linux/<this machine>).",
)
@registry_options
@click.pass_context
def pull(
    ctx: click.Context,
    ref: str,
    tag: str | None,
    platform_: str | None,
    insecure: bool,
    ca_bundle: Path | None,
) -> None:
    """Pull an image from a registry into the store (every blob verified)."""
    from pipeline.build.pull import pull_image
    from pipeline.registry.reference import Reference
    from pipeline.report import human_bytes, transfers

    parsed = Reference.parse(ref)
    arch = None
    if platform_ is not None:
        os_name, _, arch = platform_.partition("/")
        if os_name != "linux" or not arch:
            raise UsageError(f"--platform {platform_}: expected linux/ARCH")
    ws = workspace(ctx)
    registries = ws.registries(insecure, ca_bundle)
    try:
        registries.client(parsed.registry).ping()
        with transfers(sys.stderr) as progress:
            result = pull_image(ws.store, registries, parsed, tag or ref, arch, ws.epoch, progress)
    finally:
        registries.close()
    note = "" if result.same_digest else "; layers re-keyed to the store's tar form"
    click.echo(
        f"{result.name}: {result.local_digest} (from {parsed.repo}@{result.remote_digest}; "
        f"{result.fetched} layers fetched ({human_bytes(result.bytes_fetched)}), "
        f"{result.present} already in the store{note})"
    )
