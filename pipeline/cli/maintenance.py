"""Commands that look after the store itself: ``fsck``."""

from __future__ import annotations

import click

from pipeline.cli.common import Ctx


@click.command()
@click.option(
    "--repair",
    is_flag=True,
    help="Drop what is damaged and rebuild the index from what verifies "
    "(refused while a build uses the store).",
)
@click.pass_context
def fsck(ctx: click.Context, repair: bool) -> None:
    """Check the store: every blob against its digest, every layer against its diff_id,
    the index against both. Exit status 1 when something is damaged (and not repaired)."""
    from pipeline.build.fsck import fsck as check_store
    from pipeline.errors import escape

    obj = ctx.find_object(Ctx)
    assert obj is not None
    report = check_store(obj.store_path, repair)
    for finding in report.findings:
        click.echo(escape(str(finding)))
    for line in report.repaired:
        click.echo(escape(f"repaired: {line}"))
    click.echo(report.summary())
    if not report.ok and not report.repaired:
        ctx.exit(1)
