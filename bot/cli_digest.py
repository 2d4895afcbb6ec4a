"""`python -m bot digest …` and `python -m bot subscribers …`: the weekly digest's commands.

Registered on the command group of bot/cli.py, which imports this module once its group exists.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

import click

from bot.cli import CONTEXT, Ctx, _progress, command, main


@main.group(context_settings=CONTEXT)
def digest() -> None:
    """The weekly e-mail digest."""


@digest.command("send", context_settings=CONTEXT)
@click.option("--now", "now_", is_flag=True, help="The period ends now instead of at the scheduled time.")
@command
def digest_send(ctx: Ctx, now_: bool) -> None:
    """Send the digest of the period (sending a period again mails nobody twice)."""
    with _no_collection_while_importing():
        from bot.digest.sending import send_digest

        ctx.require_signing_key()
    click.echo(send_digest(ctx.app, end_now=now_, progress=_progress("sending digest")))


@contextmanager
def _no_collection_while_importing() -> Iterator[None]:
    # Importing the store, the mail layer and the settings allocates some 100,000 objects that all
    # live as long as the process; the collector would walk them again and again for nothing (about
    # a tenth of the command's time). They are then frozen (never walked again: gc.freeze), and
    # collection is back on before the work whose garbage it should collect.
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_on:
            gc.enable()


@digest.command("preview", context_settings=CONTEXT)
@click.option(
    "--out", default=None, metavar="DIR", help="Folder for digest-preview.html and .txt (default: $BOT_DATA_DIR)."
)
@command
def digest_preview(ctx: Ctx, out: str | None) -> None:
    """Write the HTML and text of the next digest to files."""
    from bot.digest.issues import preview_digest

    ctx.require_signing_key()
    click.echo(preview_digest(ctx.app, out_dir=out))


@main.group(context_settings=CONTEXT)
def subscribers() -> None:
    """Digest subscribers."""


@subscribers.command("add", context_settings=CONTEXT)
@click.argument("email")
@click.option("--confirmed", is_flag=True, help="Skip the confirmation e-mail (you have their consent).")
@click.option(
    "--category", "categories", multiple=True, metavar="CAT", help="Only summaries in this category (repeatable)."
)
@command
def subscribers_add(ctx: Ctx, email: str, confirmed: bool, categories: tuple[str, ...]) -> None:
    """Add a subscriber (sends a confirmation e-mail unless --confirmed)."""
    from bot.digest.subscribers import add_subscriber

    if not confirmed:  # mails a signed confirmation link
        ctx.require_signing_key()
    click.echo(add_subscriber(ctx.app, email, confirmed=confirmed, categories=categories, source="cli"))


@subscribers.command("remove", context_settings=CONTEXT)
@click.argument("email")
@command
def subscribers_remove(ctx: Ctx, email: str) -> None:
    """Unsubscribe an address (it is never mailed again)."""
    from bot.digest.subscribers import remove_subscriber

    click.echo(remove_subscriber(ctx.app, email))


@subscribers.command("list", context_settings=CONTEXT)
@click.option(
    "--state", type=click.Choice(["pending", "confirmed", "unsubscribed", "bounced"]), help="Only this state."
)
@command
def subscribers_list(ctx: Ctx, state: str | None) -> None:
    """List subscribers with their states."""
    from bot.digest.subscribers import list_subscribers

    for line in list_subscribers(ctx.app, state=state):
        click.echo(line)


@subscribers.command("import", context_settings=CONTEXT)
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--confirmed", is_flag=True, help="The list's consent is already confirmed.")
@command
def subscribers_import(ctx: Ctx, file: str, confirmed: bool) -> None:
    """Import addresses from a CSV file (column 'email', optional 'categories')."""
    from bot.digest.subscribers import import_subscribers

    if not confirmed:  # mails signed confirmation links
        ctx.require_signing_key()
    click.echo(import_subscribers(ctx.app, file, confirmed=confirmed))
