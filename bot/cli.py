"""`python -m bot`: the command line. Parses arguments, builds the app, prints what happened.

Heavy modules are imported inside the commands so `--help` stays fast.
Exit codes: 0 ok, 1 a failure (one line on stderr), 2 bad settings or arguments.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from bot.app import App
    from bot.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Ctx:
    """What the group's options leave for the commands."""

    def __init__(self, config: str | None, log_level: str | None, log_format: str | None) -> None:
        self.config = config
        self.log_level = log_level
        self.log_format = log_format
        self._settings: Settings | None = None
        self._app: App | None = None
        self.redact: Callable[[str], str] = lambda s: s

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from bot.logs import setup_logging
            from bot.settings import load_settings

            settings = load_settings(config_path=self.config)
            redactor = setup_logging(
                self.log_level or settings.log.level, self.log_format or settings.log.format, settings.secrets()
            )
            self.redact = redactor.redact
            self._settings = settings
            if settings.env.bot_dev:
                import logging

                logging.getLogger("bot").warning(
                    "BOT_DEV=1: DEVELOPMENT MODE. Without SECRET_KEY, subscription links are signed with a public "
                    "key and anyone can forge them. Never set BOT_DEV on a server."
                )
        return self._settings

    def require_signing_key(self) -> None:
        """Exit 2 with one line unless subscription tokens can be signed (SECRET_KEY, or BOT_DEV=1)."""
        from bot.mail.tokens import require_signing_key

        require_signing_key(self.settings)

    def without_keyless_digest(self) -> None:
        """`run`, `worker`, `dispatch`: a digest is mailed with signed links, so with live mail a missing
        SECRET_KEY stops the command at start; without live mail (outbox only) the digest is left off."""
        from bot.errors import ConfigError
        from bot.mail.tokens import require_signing_key
        from bot.settings import with_overrides

        settings = self.settings
        if not settings.digest.enabled:
            return
        if settings.env.smtp_url and not settings.env.bot_dry_run:
            require_signing_key(settings)
            return
        try:
            require_signing_key(settings)
        except ConfigError:
            import logging

            logging.getLogger("bot").warning("the weekly digest is off: SECRET_KEY is not set (or set BOT_DEV=1)")
            self._settings = with_overrides(settings, "digest", enabled=False)

    @property
    def app(self) -> App:
        if self._app is None:
            from bot.app import build_app

            self._app = build_app(self.settings)
        return self._app

    def close(self) -> None:
        if self._app is not None:
            self._app.close()


def command(f: F) -> F:
    """Run a command with the shared error handling: BotError → one line on stderr."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context().find_object(Ctx)
        assert ctx is not None
        from bot.errors import BotError

        try:
            return f(ctx, *args, **kwargs)
        except BotError as exc:
            click.echo(f"error: {ctx.redact(str(exc))}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        finally:
            ctx.close()

    return wrapper  # type: ignore[return-value]


class UsageLine(click.ClickException):
    """A usage error shown as every other error: one line `error: …` on stderr, exit 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _one_line(exc: click.UsageError) -> UsageLine:
    where = exc.ctx.command_path if exc.ctx is not None else "python -m bot"
    return UsageLine(f"{exc.format_message().rstrip('.')} (see `{where} --help`)")


class BotGroup(click.Group):
    """The top-level group: click's three-line usage errors become one `error:` line (docs/operations.md)."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise  # no command at all: the help text is the answer
        except click.UsageError as exc:
            raise _one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        # Unknown commands and a subcommand's bad arguments are raised in here.
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _one_line(exc) from None


@click.group(cls=BotGroup, context_settings=CONTEXT)
@click.option("--config", metavar="PATH", help="Settings file (default: $BOT_CONFIG or config/bot.toml).")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Override log.level.",
)
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), help="Override log.format: text lines or JSON lines."
)
@click.version_option(package_name="shortscience-feed-bot", prog_name="shortscience-bot")
@click.pass_context
def main(ctx: click.Context, config: str | None, log_level: str | None, log_format: str | None) -> None:
    """ShortScience feed bot: polls ShortScience.org's feed and publishes each new summary
    to X, a Facebook Page, RSS/Atom/JSON feeds and a weekly e-mail digest.

    Settings: config/bot.toml (or $BOT_CONFIG) and environment variables (a .env file is read).
    Without credentials every channel is dry-run and writes to $BOT_DATA_DIR/outbox.
    """
    ctx.obj = Ctx(config, log_level.upper() if log_level else None, log_format)


# ---------------------------------------------------------------- the main job


@main.command(context_settings=CONTEXT)
@click.option("--once", is_flag=True, help="One poll + dispatch + feeds build, then exit.")
@click.option(
    "--backfill",
    type=click.IntRange(min=0),
    metavar="N",
    help="With --once: on a first poll, publish the N newest items.",
)
@command
def run(ctx: Ctx, once: bool, backfill: int | None) -> None:
    """Run the scheduler: poll, dispatch, feeds, weekly digest."""
    from bot.scheduler import run_once, run_scheduler

    if not once:  # --once sends no digest: the quick start needs no key
        ctx.without_keyless_digest()
    if once:
        from bot.app import utc_now
        from bot.idle import run_once_idle

        # Nothing to do (SQLite, feed unchanged, nothing due): said without building the app.
        idle, fetched = run_once_idle(ctx.settings, clock=utc_now)
        if idle is not None:
            click.echo(idle)
            return
        if fetched is not None:
            from bot.app import build_app

            ctx._app = build_app(ctx.settings, source=fetched)
        summary = run_once(ctx.app, backfill=backfill, progress=_progress("storing summaries"))
        click.echo(summary)
    else:
        run_scheduler(ctx.app)


@main.command(context_settings=CONTEXT)
@click.option(
    "--backfill",
    type=click.IntRange(min=0),
    metavar="N",
    help="On a source's first poll, publish the N newest items (default: source.backfill).",
)
@command
def poll(ctx: Ctx, backfill: int | None) -> None:
    """Poll the feed once and queue new summaries."""
    from bot.pipeline import poll as do_poll

    report = do_poll(ctx.app, backfill=backfill, progress=_progress("storing summaries"))
    click.echo(report.describe())


@main.command(context_settings=CONTEXT)
@command
def dispatch(ctx: Ctx) -> None:
    """Publish what is due, then exit."""
    from bot.scheduler import dispatch_job, where_things_went

    ctx.without_keyless_digest()
    click.echo(dispatch_job(ctx.app))
    for line in where_things_went(ctx.app)[:-1]:
        click.echo("  " + line)


@main.command(context_settings=CONTEXT)
@command
def worker(ctx: Ctx) -> None:
    """Drain the outbox continuously (run any number)."""
    from bot.scheduler import run_worker

    ctx.without_keyless_digest()
    run_worker(ctx.app)


@main.group(context_settings=CONTEXT)
def feeds() -> None:
    """RSS / Atom / JSON feeds."""


@feeds.command("build", context_settings=CONTEXT)
@click.option("--force", is_flag=True, help="Re-serialise every file (after changing a template or the renderer).")
@command
def feeds_build(ctx: Ctx, force: bool) -> None:
    """Write feed.rss, feed.atom, feed.json, category feeds and the archive."""
    from bot.jobs import build_feeds

    click.echo(build_feeds(ctx.app, force=force))


@main.command(context_settings=CONTEXT)
@command
def web(ctx: Ctx) -> None:
    """Serve the feeds and subscription pages (HOST, PORT; needs SECRET_KEY)."""
    from bot.jobs import serve_web

    serve_web(ctx.app)  # refuses to start (exit 2) without SECRET_KEY or BOT_DEV=1


# ------------------------------------------------------------------- operators


@main.command(context_settings=CONTEXT)
@command
def status(ctx: Ctx) -> None:
    """Sources, channels, costs and deliveries that need you."""
    from bot.status import render_status

    click.echo(ctx.redact(render_status(ctx.app)))


@main.command(context_settings=CONTEXT)
@click.argument("delivery_id", type=int)
@command
def retry(ctx: Ctx, delivery_id: int) -> None:
    """Queue an uncertain, failed or dead delivery again."""
    d = ctx.app.store.operator_retry(delivery_id, now=ctx.app.clock())
    click.echo(f"delivery {d.id} ({d.channel}, {d.guid}) is pending again")


@main.command(context_settings=CONTEXT)
@click.argument("delivery_id", type=int)
@command
def skip(ctx: Ctx, delivery_id: int) -> None:
    """Close a delivery without publishing it."""
    d = ctx.app.store.operator_skip(delivery_id, now=ctx.app.clock())
    click.echo(f"delivery {d.id} ({d.channel}, {d.guid}) skipped")


@main.command(context_settings=CONTEXT)
@click.option("--source", metavar="URL", help="Only summaries of this source (as `status` names it).")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Only the N newest held summaries.")
@click.option("--discard", is_flag=True, help="Never post them: stop holding them without queueing anything.")
@command
def release(ctx: Ctx, source: str | None, limit: int | None, discard: bool) -> None:
    """Queue the summaries the flood guard held (or --discard them)."""
    from bot.channels import enabled_channels

    app = ctx.app
    channels = enabled_channels(app.settings)
    done = app.store.release_held(now=app.clock(), channels=channels, source=source, limit=limit, discard=discard)
    what = (
        "discarded (never posted)"
        if discard
        else f"released: {done.deliveries} deliveries queued on {', '.join(channels) or 'no channel'}"
    )
    click.echo(f"{done.summaries} held summaries {what}; {done.still_held} still held")


@main.command(context_settings=CONTEXT)
@command
def check(ctx: Ctx) -> None:
    """Check the database and each channel's credentials."""
    from bot.status import run_check

    ok, lines = run_check(ctx.app)
    for line in lines:
        click.echo(ctx.redact(line))
    if not ok:
        sys.exit(1)


@main.command(context_settings=CONTEXT)
@click.option("--latest", "which", flag_value="latest", default=True, help="The newest stored summary (default).")
@click.option("--summary", "guid", metavar="GUID", help="The stored summary with this guid.")
@click.option("--feed", metavar="PATH_OR_URL", help="Read this feed instead of the store (nothing is stored).")
@click.option("--limit", default=1, type=click.IntRange(min=1), show_default=True, help="How many summaries to show.")
@command
def preview(ctx: Ctx, which: str, guid: str | None, feed: str | None, limit: int) -> None:
    """Show what each channel would post (stores nothing).

    Prints each channel's rendering with its weighted length and warnings,
    without storing or publishing anything.
    """
    from bot.status import render_preview

    click.echo(render_preview(ctx.app, guid=guid, feed=feed, limit=limit))


@main.group(context_settings=CONTEXT)
def operator() -> None:
    """The operator console (/admin)."""


@operator.command("hash-password", context_settings=CONTEXT)
def operator_hash_password() -> None:
    """Read a password (twice, without echo; or one line from stdin) and print its Argon2 hash for
    OPERATOR_PASSWORD_HASH."""
    import getpass

    from bot.admin.auth import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("console password: ")
        if getpass.getpass("again: ") != password:
            click.echo("error: the two passwords differ; nothing printed", err=True)
            sys.exit(1)
    else:  # a script: the first line of stdin, without its line break
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        click.echo("error: the password is empty; nothing printed", err=True)
        sys.exit(1)
    click.echo(hash_password(password))


@main.group(context_settings=CONTEXT)
def db() -> None:
    """Database schema."""


@db.command("upgrade", context_settings=CONTEXT)
@command
def db_upgrade(ctx: Ctx) -> None:
    """Create or migrate the database schema to the newest version."""
    from bot.store import make_engine, migrate

    engine = make_engine(ctx.settings.database_url)
    try:
        applied = migrate(engine)
    finally:
        engine.dispose()
    click.echo("database upgraded" if applied else "database already up to date")


# ---------------------------------------------------------------- helpers


def _progress(label: str) -> Callable[[int, int], None] | None:
    """A progress bar on a terminal; plain log lines (from the job) otherwise."""
    if not sys.stderr.isatty():
        return None
    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            if total < 50:
                return
            bar = click.progressbar(length=total, label=label, file=sys.stderr)
            bar.__enter__()
            state["bar"] = bar
            state["done"] = 0
        bar.update(done - state["done"])
        state["done"] = done
        if done >= total:
            bar.__exit__(None, None, None)

    return update


# The digest's and the subscribers' commands live in bot/cli_digest.py; importing it registers them.
from bot import cli_digest  # noqa: E402, F401

if __name__ == "__main__":  # pragma: no cover
    main()
