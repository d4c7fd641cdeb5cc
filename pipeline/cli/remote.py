"""Registry commands (``push``, ``pull``) and the registry hooks of the build commands.

Light at import time: ``pipeline.cli`` imports this module for every command, so the
HTTP stack (httpx, via ``pipeline.registry``) is imported only when a registry is used.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from pipeline.errors import SpecError, UsageError


def _epoch() -> int:
    return int(os.environ.get("SOURCE_DATE_EPOCH", "0") or 0)


def _registries(insecure: bool, ca_bundle: Path | None) -> Any:
    from pipeline.build.executor import default_ca_bundle
    from pipeline.registry.client import Registries

    return Registries(insecure=insecure, ca_bundle=ca_bundle or default_ca_bundle(os.environ))


def _store(ctx: click.Context) -> Any:
    from pipeline.store import Store

    return Store(ctx.obj.store_path)


def registry_options(fn: Any) -> Any:
    fn = click.option(
        "--ca-bundle",
        type=click.Path(path_type=Path, exists=True, dir_okay=False),
        default=None,
        help="CA bundle to verify registries with (default: PIPELINE_CA_BUNDLE, PIP_CERT, "
        "SSL_CERT_FILE or REQUESTS_CA_BUNDLE from the environment, else the system's).",
    )(fn)
    fn = click.option(
        "--insecure",
        is_flag=True,
        help="Allow plain HTTP to registries that are not on loopback (127.0.0.1 and "
        "localhost always use plain HTTP).",
    )(fn)
    return fn


def _stored_name(store: Any, name: str) -> str:
    for candidate in (name, f"app.{name}", f"image.{name}"):
        if store.resolve(candidate) is not None:
            return candidate
    from pipeline.errors import did_you_mean

    choices = sorted({n.removeprefix("app.").removeprefix("image.") for n, _, _ in store.names()})
    hint = did_you_mean(name, choices)
    more = f' (did you mean "{hint}"?)' if hint else ""
    raise UsageError(f"{name}: no such image in the store ({store.root}){more}")


def _public_tags(store: Any, name: str) -> list[str]:
    """The names (tags) that point at the same manifest as ``name``, ids excluded."""
    digest = store.resolve(name)
    return sorted(
        n
        for n, d, _ in store.names()
        if d == digest and not n.startswith(("app.", "image.")) and "@" not in n
    )


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
    from pipeline.report import human_bytes

    store = _store(ctx)
    if not apps and not all_:
        raise UsageError("push: name the apps to push, or give --all")
    if to is not None and (all_ or len(apps) != 1):
        raise UsageError("push --to: give exactly one app")
    names = [_stored_name(store, a) for a in apps]
    if all_:
        for n, _, _ in store.names():
            wanted = n.startswith("app.") or (n.startswith("image.") and _public_tags(store, n))
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
        tags = _public_tags(store, name)
        if not tags:
            if all_ and name not in [_stored_name(store, a) for a in apps]:
                click.echo(f"{name}: no tags; skipped (push it with --to)", err=True)
                continue
            raise UsageError(
                f"{name}: has no tags to push to; add tags in its spec or give --to "
                "REGISTRY/REPO:TAG"
            )
        refs = [Reference.parse(t) for t in tags]
        plan.append((name, [r.with_tag(r.tag or "latest") for r in refs]))
    registries = _registries(insecure, ca_bundle)
    try:
        for host in sorted({r.registry for _, refs in plan for r in refs}):
            registries.client(host).ping()
        pusher = BlobPusher(registries, store, compress)  # type: ignore[arg-type]
        for name, refs in plan:
            results = push_image(store, registries, name, refs, compress, _epoch(), pusher)  # type: ignore[arg-type]
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
    from pipeline.report import human_bytes

    parsed = Reference.parse(ref)
    arch = None
    if platform_ is not None:
        os_name, _, arch = platform_.partition("/")
        if os_name != "linux" or not arch:
            raise UsageError(f"--platform {platform_}: expected linux/ARCH")
    store = _store(ctx)
    registries = _registries(insecure, ca_bundle)
    try:
        registries.client(parsed.registry).ping()
        result = pull_image(store, registries, parsed, tag or ref, arch, _epoch())
    finally:
        registries.close()
    note = "" if result.same_digest else "; layers re-keyed to the store's tar form"
    click.echo(
        f"{result.name}: {result.local_digest} (from {parsed.repo}@{result.remote_digest}; "
        f"{result.fetched} layers fetched ({human_bytes(result.bytes_fetched)}), "
        f"{result.present} already in the store{note})"
    )


def remote_build_options(
    cache_from: str | None, cache_to: str | None, insecure: bool, ca_bundle: Path | None
) -> dict[str, Any]:
    """The ``executor.BuildOptions`` keyword arguments for ``--cache-from/--cache-to``."""
    if cache_from is None and cache_to is None:
        return {"cache_from": None, "cache_to": None}
    from pipeline.build.cache import RegistryCache

    registries = _registries(insecure, ca_bundle)
    caches: dict[str, Any] = {}
    for option, value in (("cache_from", cache_from), ("cache_to", cache_to)):
        caches[option] = RegistryCache(registries, value, epoch=_epoch()) if value else None
    for cache in {id(c): c for c in caches.values() if c is not None}.values():
        registries.client(cache.ref.registry).ping()
    return caches


def ensure_registry_bases(
    fleet: Any,
    store: Any,
    specs_dir: Path,
    update: bool,
    insecure: bool,
    ca_bundle: Path | None = None,
) -> None:
    """Pull the fleet's ``host:port/name:tag`` bases the store lacks and pin their
    digests in ``specs_dir/pipeline.lock`` (pinned digests are used unless ``update``).
    No network when every base is pinned and in the store."""
    refs: dict[str, Any] = {}
    for image in fleet.images.values():
        base = image.base
        if base.kind == "registry" and base.ref not in refs:
            refs[base.ref] = (image, base)
    if not refs:
        return
    from pipeline.build.lock import LOCK_FILE, ensure_bases
    from pipeline.registry.reference import Reference

    for text, (image, base) in refs.items():
        try:
            Reference.parse(text)
        except UsageError as exc:
            raise SpecError(base.loc, str(exc), f'{image.kind} "{image.name}"') from None
    registries = _registries(insecure, ca_bundle)
    try:
        for r in ensure_bases(refs, store, registries, specs_dir / LOCK_FILE, update, _epoch()):
            if r.pulled:
                click.echo(f"pulled {r.ref} ({r.digest})", err=True)
    finally:
        registries.close()
