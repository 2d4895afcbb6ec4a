"""Every setting of the bot, declared once: name, default, type and one line of help.

Non-secret settings come from ``config/bot.toml`` (or ``$BOT_CONFIG``);
deployment values and secrets from the environment (``.env`` loaded if
present). Both are validated here, once, into one frozen ``Settings`` object;
a bad value raises ``ConfigError`` naming the setting, the value and what was
expected. Nothing else in the bot reads the environment or the settings file.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, get_origin, get_type_hints
from urllib.parse import unquote, urlsplit

from bot.errors import ConfigError

if TYPE_CHECKING:
    from bot.channels.spec import Channel, EnvVar


def _s(default: Any, help: str, *, choices: tuple[str, ...] = (), minimum: float | None = None) -> Any:
    """Declare one setting: its default and its one line of help."""
    meta = {"help": help, "choices": choices, "minimum": minimum}
    if isinstance(default, (dict, list, tuple)):
        frozen = tuple(default) if isinstance(default, list) else default
        return field(default_factory=lambda: frozen, metadata=meta)
    return field(default=default, metadata=meta)


DEFAULT_HASHTAGS = {
    "cs.LG": "#MachineLearning",
    "stat.ML": "#MachineLearning",
    "cs.CV": "#ComputerVision",
    "cs.CL": "#NLProc",
    "cs.AI": "#AI",
    "cs.NE": "#NeuralNetworks",
    "cs.RO": "#Robotics",
    "q-bio.NC": "#Neuroscience",
}


@dataclass(frozen=True)
class SourceSettings:
    """[source]: how the feed is polled and read."""

    poll_interval_minutes: int = _s(15, "Minutes between two polls of the feed.", minimum=1)
    poll_jitter_seconds: int = _s(
        30, "Random delay added to each poll, so many bots do not hit the site at once.", minimum=0
    )
    timeout_seconds: float = _s(20.0, "Connect and read timeout of one feed download, in seconds.", minimum=0.1)
    download_deadline_seconds: float = _s(
        60.0,
        "Longest one whole feed download may take, in seconds (timeout_seconds bounds each read); past it the "
        "poll fails and is retried.",
        minimum=0.1,
    )
    max_bytes: int = _s(50_000_000, "Largest feed body accepted, in bytes; a larger one is an error.", minimum=1024)
    min_votes: int = _s(0, "Summaries with fewer votes than this are ignored (the site already drops <= 1).", minimum=0)
    max_new_per_poll: int = _s(
        20,
        "Flood guard: most new summaries one later poll queues for the social channels (the newest); the rest "
        "are held, in the feeds but not posted, until `release` (0: no limit).",
        minimum=0,
    )
    backfill: int = _s(
        0, "How many of the newest items the first poll of a source publishes (the rest are marked seen).", minimum=0
    )
    on_edit: str = _s(
        "update",
        "What an edited summary does: 'update' its feed entry only, or 'republish' it on every channel.",
        choices=("update", "republish"),
    )
    backoff_base_seconds: int = _s(60, "First wait after a failed poll; doubles with each further failure.", minimum=1)
    backoff_max_seconds: int = _s(6 * 3600, "Longest wait between polls after repeated failures.", minimum=1)
    user_agent: str = _s(
        "ShortScienceFeedBot/0.1 (+https://www.shortscience.org)", "User-Agent header sent to the feed's server."
    )


@dataclass(frozen=True)
class DispatchSettings:
    """[dispatch]: how the outbox is drained."""

    interval_seconds: int = _s(10, "Seconds between two dispatch passes of the scheduler.", minimum=1)
    max_attempts: int = _s(8, "Transient failures after which a delivery is given up as 'dead'.", minimum=1)
    backoff_base_seconds: int = _s(
        30, "First retry wait after a transient failure; doubles with each attempt (with jitter).", minimum=1
    )
    backoff_max_seconds: int = _s(3 * 3600, "Longest retry wait after transient failures.", minimum=1)
    batch_size: int = _s(50, "Most deliveries one dispatch pass claims at a time.", minimum=1)
    lease_seconds: int = _s(
        300, "How long a worker's claim on a delivery lasts before it counts as abandoned.", minimum=10
    )


@dataclass(frozen=True)
class DatabaseSettings:
    """[database]: connections to the database."""

    pool_size: int = _s(
        5,
        "PostgreSQL connections one process keeps open, and as many more it may open at a peak (SQLite: unused).",
        minimum=1,
    )


@dataclass(frozen=True)
class ChannelSettings:
    """[channels.<name>]: what every social channel has; each channel's package subclasses it (bot/channels/)."""

    enabled: bool = _s(True, "Whether new summaries are queued for this channel.")
    min_interval_minutes: int = _s(0, "Least minutes between two posts on this channel (0: no pacing).", minimum=0)
    daily_cap: int = _s(0, "Most posts per UTC day on this channel (0: no cap).", minimum=0)
    monthly_cap: int = _s(0, "Most posts per UTC calendar month on this channel (0: no cap).", minimum=0)
    price_per_post: float = _s(
        0.0, "Estimated cost of one post, in USD, for the month's cost shown by `status`.", minimum=0
    )
    republish_on_edit: bool = _s(
        False, "Post again when a summary is edited (overrides source.on_edit for this channel)."
    )
    images: bool = _s(False, "Attach the summary's first image (from an allowed host) to the post.")


@dataclass(frozen=True)
class RenderSettings:
    """[render]: how summaries become HTML, text and posts."""

    site_base_url: str = _s(
        "https://www.shortscience.org", "Base URL relative links and images in summaries are made absolute against."
    )
    templates_dir: str = _s("", "A folder of your own templates; each file there overrides ours of the same name.")
    tweet_teaser_chars: int = _s(
        200, "Longest teaser of an X post before fitting to 280 weighted characters.", minimum=0
    )
    hashtags: Mapping[str, str] = _s(
        DEFAULT_HASHTAGS, 'Map of arXiv category to hashtag, e.g. cs.LG = "#MachineLearning".'
    )
    fixed_hashtags: tuple[str, ...] = _s((), 'Hashtags added to every X post, e.g. ["#ShortScience"].')
    image_hosts: tuple[str, ...] = _s(
        ("i.imgur.com",),
        "Hosts images may come from: attached to posts, shown in feeds (the site itself too; others become links).",
    )
    image_max_bytes: int = _s(5_000_000, "Largest image attached, in bytes.", minimum=1)
    image_timeout_seconds: float = _s(
        10.0, "Seconds allowed for each step of fetching an image to attach (connect, each read).", minimum=0.1
    )


@dataclass(frozen=True)
class ArxivSettings:
    """[arxiv]: paper details from the arXiv API."""

    enabled: bool = _s(True, "Fetch authors, year and categories of arXiv papers.")
    api_url: str = _s("https://export.arxiv.org/api/query", "The arXiv API endpoint.")
    min_interval_seconds: float = _s(3.0, "Least seconds between two arXiv requests (arXiv asks for 3).", minimum=0)
    wait_seconds: float = _s(10.0, "Longest a post waits for paper details before going out without them.", minimum=0)
    batch_size: int = _s(50, "arXiv ids asked for in one request.", minimum=1)
    max_bytes: int = _s(
        5_000_000, "Largest arXiv API answer accepted, in bytes; a larger one is an error.", minimum=1024
    )


@dataclass(frozen=True)
class FeedSettings:
    """[feeds]: the RSS, Atom and JSON feeds the bot writes."""

    size: int = _s(50, "Summaries in the main feeds (newest first).", minimum=1)
    title: str = _s("ShortScience.org summaries", "Title of the feeds.")
    description: str = _s(
        "Community-written summaries of research papers, from ShortScience.org.", "Description of the feeds."
    )
    language: str = _s("en", "Language of the feeds (RFC 5646 tag).")
    websub_hub: str = _s("", "URL of a WebSub hub to advertise and ping after each rebuild (empty: none).")
    archive_page_size: int = _s(100, "Summaries per RFC 5005 archive page.", minimum=1)
    categories: bool = _s(True, "Write a feed per category under category/.")


@dataclass(frozen=True)
class DigestSettings:
    """[digest]: the weekly e-mail digest."""

    enabled: bool = _s(True, "Send the weekly digest from the scheduler.")
    day_of_week: str = _s("mon", "Day the digest goes out.", choices=("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
    time: str = _s("08:00", "Time of day (HH:MM) the digest goes out.")
    timezone: str = _s("UTC", "Time zone of day_of_week and time (IANA name).")
    skip_empty: bool = _s(True, "Send nothing when no summary is new since the last digest.")
    connections: int = _s(4, "SMTP connections used in parallel to send a digest.", minimum=1)
    smtp_timeout_seconds: float = _s(30.0, "Connect and reply timeout of the SMTP server, in seconds.", minimum=1)
    bounce_after: int = _s(3, "Permanent (5xx) failures after which an address is marked bounced.", minimum=1)
    list_name: str = _s("ShortScience weekly", "Name of the list, in the subject and List-Id.")
    confirm_ttl_hours: int = _s(72, "Hours a confirmation link stays valid.", minimum=1)
    max_items: int = _s(30, "Most summaries in one digest.", minimum=1)
    teaser_chars: int = _s(400, "Longest teaser of a summary in the digest, cut at a sentence boundary.", minimum=50)
    categories: tuple[str, ...] = _s(
        tuple(DEFAULT_HASHTAGS),
        "Categories readers can pick on /subscribe and /preferences (none picked: every summary).",
    )
    retry_base_seconds: int = _s(
        300,
        "First wait before sending again to an address that got a 4xx or a dropped connection; doubles each time.",
        minimum=1,
    )
    retry_max_seconds: int = _s(6 * 3600, "Longest wait between two tries to one address.", minimum=1)
    max_attempts: int = _s(8, "Tries to one address for one issue before it is given up as failed.", minimum=1)
    confirm_per_address: int = _s(
        3,
        "Confirmation e-mails /subscribe sends to one address per day (more asks get the same page, no e-mail).",
        minimum=1,
    )
    confirm_per_client: int = _s(
        10, "Confirmation e-mails one client IP may ask for per hour (more get 429).", minimum=1
    )


@dataclass(frozen=True)
class WebSettings:
    """[web]: the web process."""

    stale_after_minutes: int = _s(180, "/healthz answers 503 when the last good poll is older than this.", minimum=1)
    feed_max_age_seconds: int = _s(300, "Cache-Control max-age of the served feed files, in seconds.", minimum=0)
    feeds_refresh_seconds: int = _s(
        60,
        "Seconds between two rebuilds by the web process of its own copy of the feeds from the database (for "
        "hosts where web and worker do not share a disk; 0: never).",
        minimum=0,
    )
    admin_session_minutes: int = _s(
        60,
        "Minutes an operator console login lasts (the console exists only when OPERATOR_PASSWORD_HASH is set).",
        minimum=1,
    )
    admin_lockout_minutes: int = _s(
        15, "Minutes the console refuses logins after too many failures (per client and for the account).", minimum=1
    )
    admin_failures_per_client: int = _s(
        5, "Failed console logins from one client address that lock it out for admin_lockout_minutes.", minimum=1
    )
    admin_failures_per_account: int = _s(
        20, "Failed console logins from anywhere that lock the operator account for admin_lockout_minutes.", minimum=1
    )


@dataclass(frozen=True)
class LogSettings:
    """[log]: logging."""

    level: str = _s("INFO", "Log level.", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    format: str = _s("text", "Log line format.", choices=("text", "json"))


@dataclass(frozen=True, init=False)
class Env:
    """Deployment values and secrets, from the environment (the names are a contract: see docs/architecture.md).

    Field names are the lower-cased variable names.
    """

    bot_config: str = _s("config/bot.toml", "Settings file.")
    database_url: str = _s(
        "", "SQLAlchemy URL, sqlite:///… or postgresql://… (default: SQLite file under BOT_DATA_DIR)."
    )
    bot_data_dir: str = _s("./var", "Local state: database, outbox, public feeds.")
    shortscience_feed_url: str = _s(
        "", "The feed to poll (http(s):// URL or file path; default: the bundled sample feed)."
    )
    bot_dry_run: bool = _s(False, "1: every channel writes to the outbox dir instead of its network.")
    bot_outbox_dir: str = _s("", "Where dry-run posts and e-mails go (default: $BOT_DATA_DIR/outbox).")
    bot_public_dir: str = _s("", "Where feeds are written (default: $BOT_DATA_DIR/public).")
    public_base_url: str = _s(
        "http://localhost:8000", "Absolute base URL of the web process (feed self links, unsubscribe links)."
    )
    secret_key: str = _s(
        "", "Signs subscription tokens; required by web, digest and subscriber commands (unless BOT_DEV=1)."
    )
    bot_dev: bool = _s(
        False, "1: development mode: without SECRET_KEY, tokens use a public development key (never in production)."
    )
    port: int = _s(8000, "Web process port.", minimum=1)
    host: str = _s("0.0.0.0", "Address the web process binds (127.0.0.1: only this machine).")
    forwarded_allow_ips: str = _s(
        "",
        "Proxies whose X-Forwarded-For is believed: IPs/CIDRs, comma-separated, or * (every peer is the "
        "router, as on Heroku); none: the socket's peer is the client.",
    )
    smtp_url: str = _s(
        "", "smtp://user:pass@host:port (smtps:// for TLS, ?starttls=1); unset: e-mails go to the outbox."
    )
    digest_from: str = _s("", "Digest sender address.")
    operator_password_hash: str = _s(
        "", "Argon2 hash of the operator console's password (`python -m bot operator hash-password`); unset: no /admin."
    )
    #: the channels' own variables (declared by each channel: bot/channels/), by field name
    #: (the variable's name lower-cased); read as attributes: ``env.<channel>_api_key``
    channel_vars: Mapping[str, str] = field(default_factory=dict)

    def __init__(self, **values: Any) -> None:
        """Core values by field name; a channel's variables by theirs (unset ones at their defaults)."""
        declared = {v.field: v for v in channel_env_vars()}
        own = {f.name for f in fields(Env)}
        chan = dict(values.pop("channel_vars", {}))
        for name in [n for n in values if n not in own]:
            if name not in declared:
                raise TypeError(f"Env() got an unexpected keyword argument {name!r}")
            chan[name] = values.pop(name)
        for f in fields(Env):
            if f.name == "channel_vars":
                continue
            if f.name in values:
                value = values[f.name]
            else:
                factory: Any = f.default_factory
                value = f.default if factory is dataclasses.MISSING else factory()
            object.__setattr__(self, f.name, value)
        full = {name: chan.get(name, var.default) for name, var in declared.items()}
        object.__setattr__(self, "channel_vars", MappingProxyType(full))

    def __getattr__(self, name: str) -> str:
        # Only called for names that are not fields: a channel's variable.
        try:
            return self.__dict__["channel_vars"][name]
        except KeyError:
            raise AttributeError(f"Env has no variable {name!r}") from None


#: core variables whose values never appear in logs, status or errors (channels declare theirs)
CORE_SECRET_FIELDS = ("secret_key", "operator_password_hash")


@dataclass(frozen=True, init=False)
class Settings:
    """All settings: the file's sections and the environment."""

    source: SourceSettings = field(default_factory=SourceSettings)
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    render: RenderSettings = field(default_factory=RenderSettings)
    arxiv: ArxivSettings = field(default_factory=ArxivSettings)
    feeds: FeedSettings = field(default_factory=FeedSettings)
    digest: DigestSettings = field(default_factory=DigestSettings)
    web: WebSettings = field(default_factory=WebSettings)
    log: LogSettings = field(default_factory=LogSettings)
    env: Env = field(default_factory=Env)
    #: each channel's [channels.<name>] section, in the registry's order; also read as ``settings.<name>``
    channels: Mapping[str, ChannelSettings] = field(default_factory=dict)

    def __init__(self, **sections: Any) -> None:
        """Sections by name (source=…, env=…); a channel's section by the channel's name (<channel>=…)."""
        registry = _registry()
        own = {f.name for f in fields(Settings)}
        chan = dict(sections.pop("channels", {}))
        for name in [n for n in sections if n not in own]:
            if name not in registry:
                raise TypeError(f"Settings() got an unexpected keyword argument {name!r}")
            chan[name] = sections.pop(name)
        for f in fields(Settings):
            if f.name != "channels":
                factory: Any = f.default_factory
                object.__setattr__(self, f.name, sections[f.name] if f.name in sections else factory())
        full: dict[str, ChannelSettings] = {}
        for name, spec in registry.items():
            value = chan.pop(name, None) or spec.settings()
            if not isinstance(value, spec.settings):
                raise TypeError(
                    f"settings of channel {name!r} must be a {spec.settings.__name__}, not {type(value).__name__}"
                )
            full[name] = value
        if chan:
            raise TypeError(f"unknown channel {next(iter(chan))!r}; expected one of {', '.join(registry)}")
        object.__setattr__(self, "channels", MappingProxyType(full))

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are not fields: a channel's section, typed by its package.
        try:
            return self.__dict__["channels"][name]
        except KeyError:
            raise AttributeError(f"Settings has no section {name!r}") from None

    # ---- derived values (one place, so every command agrees) ----

    @property
    def data_dir(self) -> Path:
        return Path(self.env.bot_data_dir)

    @property
    def database_url(self) -> str:
        url = self.env.database_url
        if not url:
            return f"sqlite:///{(self.data_dir / 'bot.sqlite3').resolve()}"
        # Hosts hand out postgres:// (Heroku) which SQLAlchemy no longer accepts.
        if url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url[len("postgres://") :]
        elif url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        return url

    @property
    def outbox_dir(self) -> Path:
        return Path(self.env.bot_outbox_dir) if self.env.bot_outbox_dir else self.data_dir / "outbox"

    @property
    def public_dir(self) -> Path:
        return Path(self.env.bot_public_dir) if self.env.bot_public_dir else self.data_dir / "public"

    @property
    def feed_url(self) -> str:
        return self.env.shortscience_feed_url or str(sample_feed_path())

    @property
    def polls_bundled_sample(self) -> bool:
        """Whether the source is the bundled sample feed (its paper details are bundled too: no arXiv)."""
        url = self.env.shortscience_feed_url.removeprefix("file://")
        return not url or Path(url).resolve() == sample_feed_path().resolve()

    def channel(self, name: str) -> ChannelSettings:
        try:
            return self.channels[name]
        except KeyError:
            raise ConfigError(f"unknown channel {name!r}; expected one of {', '.join(self.channels)}") from None

    def secrets(self) -> tuple[str, ...]:
        """Every secret value that is set, so logs and messages can redact them."""
        values = [getattr(self.env, name) for name in secret_fields()]
        for url in (self.env.smtp_url, self.env.database_url):
            password = urlsplit(url).password if url else None
            if password:
                # As written in the URL and as the server gets it ("p%40ss" and "p@ss").
                values += [password, unquote(password)]
        return tuple(v for v in values if v and len(v) >= 4)


def _registry() -> Mapping[str, Channel]:
    """The channel registry (bot/channels/), imported on first use: its packages import this module."""
    from bot.channels import REGISTRY

    return REGISTRY


def channel_env_vars() -> list[EnvVar]:
    """Every channel's environment variables (EnvVar), in the registry's order."""
    return [var for spec in _registry().values() for var in spec.env]


def secret_fields() -> tuple[str, ...]:
    """The fields of Env whose values never appear in logs, status or errors."""
    return (*CORE_SECRET_FIELDS, *(v.field for v in channel_env_vars() if v.secret))


def sections() -> dict[str, type]:
    """The settings-file sections and the dataclass of each; channels' from the registry, after [database]."""
    out: dict[str, type] = {}
    for name, cls in _SECTIONS.items():
        out[name] = cls
        if name == "database":
            out.update({spec.section: spec.settings for spec in _registry().values()})
    return out


def _section_attr(section: str) -> str:
    """The Settings attribute of a section: [channels.<name>] is settings.channels[<name>] (also settings.<name>)."""
    return section.removeprefix("channels.")


def __getattr__(name: str) -> tuple[str, ...]:
    # The names other modules imported when channels were fixed: now read from the registry.
    if name == "CHANNELS":
        return tuple(_registry())
    if name == "SECRET_FIELDS":
        return secret_fields()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: the settings-file sections that are not channels, and the dataclass of each
_SECTIONS: dict[str, type] = {
    "source": SourceSettings,
    "dispatch": DispatchSettings,
    "database": DatabaseSettings,
    "render": RenderSettings,
    "arxiv": ArxivSettings,
    "feeds": FeedSettings,
    "digest": DigestSettings,
    "web": WebSettings,
    "log": LogSettings,
}


def sample_feed_path() -> Path:
    """The bundled sample feed: 15 real summaries in the site's rss-full.xml format."""
    return Path(__file__).parent / "data" / "sample-feed.xml"


def iter_settings() -> list[tuple[str, dataclasses.Field[Any]]]:
    """Every setting as (dotted name, field): file settings, then variables."""
    out: list[tuple[str, dataclasses.Field[Any]]] = []
    for section, cls in sections().items():
        for f in fields(cls):
            out.append((f"{section}.{f.name}", f))
    for name, (f, _) in _env_declarations().items():
        out.append((name.upper(), f))
    return out


def _env_declarations() -> dict[str, tuple[dataclasses.Field[Any], Any]]:
    """Every variable as field name → (its declaration, its type): Env's own, then the channels'."""
    hints = get_type_hints(Env)
    out = {f.name: (f, hints[f.name]) for f in fields(Env) if f.name != "channel_vars"}
    for var in channel_env_vars():
        out[var.field] = (_s(var.default, var.help), str)
    return out


def _convert(where: str, f: dataclasses.Field[Any], hint: Any, raw: Any, *, from_env: bool) -> Any:
    """Check and convert one raw value; raise ConfigError naming `where`."""

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"setting {where} = {raw!r} is invalid: expected {expected}")

    origin = get_origin(hint)
    if hint is bool:
        if isinstance(raw, bool):
            value: Any = raw
        elif (
            from_env
            and isinstance(raw, str)
            and raw.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off", "")
        ):
            value = raw.strip().lower() in ("1", "true", "yes", "on")
        else:
            raise bad("true or false" + (" (1 or 0)" if from_env else ""))
    elif hint is int:
        if isinstance(raw, bool):
            raise bad("an integer")
        if isinstance(raw, int):
            value = raw
        elif from_env and isinstance(raw, str):
            try:
                value = int(raw.strip())
            except ValueError:
                raise bad("an integer") from None
        else:
            raise bad("an integer")
    elif hint is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise bad("a number")
        try:
            value = float(raw)
        except ValueError:
            raise bad("a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise bad("a finite number")
    elif hint is str:
        if not isinstance(raw, str):
            raise bad("a string")
        value = raw
    elif origin is tuple:
        if not isinstance(raw, (list, tuple)) or not all(isinstance(x, str) for x in raw):
            raise bad("a list of strings")
        value = tuple(raw)
    elif origin is Mapping or hint is Mapping:
        if not isinstance(raw, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
            raise bad("a table of string values")
        value = dict(raw)
    else:  # pragma: no cover - a declaration error, caught by the tests
        raise TypeError(f"unsupported setting type {hint!r} for {where}")
    minimum = f.metadata.get("minimum")
    if minimum is not None and value < minimum:
        raise bad(f"a value >= {minimum:g}")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise bad("one of " + ", ".join(repr(c) for c in choices))
    return value


def _build(cls: type, section: str, raw: Mapping[str, Any], *, from_env: bool = False) -> Any:
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(f"unknown setting {section}.{key}; expected one of: {', '.join(sorted(known))}")
    values = {}
    for name, value in raw.items():
        values[name] = _convert(
            f"{section}.{name}" if not from_env else name.upper(), known[name], hints[name], value, from_env=from_env
        )
    return cls(**values)


def _check_semantics(s: Settings) -> None:
    """Checks that need more than one value or a parser."""
    from bot.webguard import trusted_proxies

    trusted_proxies(s.env.forwarded_allow_ips)  # ConfigError naming a bad entry, at start-up
    urls = ["public_base_url", *(v.field for v in channel_env_vars() if v.url)]
    for name in (*urls, "smtp_url", "database_url"):
        try:
            _ = urlsplit(getattr(s.env, name)).port  # parses host and port: "[::1" or ":notaport" raise here
        except ValueError:
            # No value in the message: SMTP_URL and DATABASE_URL may carry a password.
            raise ConfigError(f"setting {name.upper()} is invalid: bad host or port") from None
    for name in urls:
        value = getattr(s.env, name)
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"setting {name.upper()} = {value!r} is invalid: expected an absolute http(s) URL")
    if s.env.smtp_url:
        parts = urlsplit(s.env.smtp_url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            # Never echo the URL: it may carry a password.
            raise ConfigError("setting SMTP_URL is invalid: expected smtp://[user:pass@]host[:port] or smtps://…")
    if s.env.operator_password_hash and not s.env.operator_password_hash.startswith("$argon2"):
        # Never echo it: a password pasted by mistake must not reach the logs.
        raise ConfigError(
            "setting OPERATOR_PASSWORD_HASH is invalid: expected an Argon2 hash "
            "(make one with `python -m bot operator hash-password`)"
        )
    url = s.env.database_url
    if url and not (url.startswith(("sqlite:", "postgres://", "postgresql:", "postgresql+psycopg:"))):
        raise ConfigError("setting DATABASE_URL is invalid: expected sqlite:///path or postgresql://…")
    folder = _sqlite_folder(url)
    if folder is not None and not folder.is_dir():
        # Refused rather than created: a typo in the path would otherwise start an empty database.
        raise ConfigError(
            f"setting DATABASE_URL is invalid: the folder {str(folder)!r} of its SQLite file does not exist "
            "(create it first)"
        )
    hh, _, mm = s.digest.time.partition(":")
    if not (hh.isdigit() and mm.isdigit() and 0 <= int(hh) < 24 and 0 <= int(mm) < 60):
        raise ConfigError(f"setting digest.time = {s.digest.time!r} is invalid: expected HH:MM")
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(s.digest.timezone)
    except Exception:
        raise ConfigError(
            f"setting digest.timezone = {s.digest.timezone!r} is invalid: expected an IANA time zone such as "
            "'UTC' or 'Europe/Berlin'"
        ) from None
    for category, tag in s.render.hashtags.items():
        if not tag.startswith("#") or len(tag) < 2 or any(c.isspace() for c in tag):
            raise ConfigError(
                f"setting render.hashtags.{category} = {tag!r} is invalid: expected a hashtag like '#MachineLearning'"
            )
    for tag in s.render.fixed_hashtags:
        if not tag.startswith("#") or len(tag) < 2 or any(c.isspace() for c in tag):
            raise ConfigError(
                f"setting render.fixed_hashtags = {tag!r} is invalid: expected hashtags like '#ShortScience'"
            )


def _sqlite_folder(url: str) -> Path | None:
    """The folder an explicit sqlite:///path URL puts its file in (None: not SQLite, in memory, or a file: URI)."""
    if not url.startswith("sqlite") or ":///" not in url:
        return None
    path = url.split(":///", 1)[1].split("?", 1)[0]
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(path).parent


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    config_path: str | Path | None = None,
    load_dotenv: bool = True,
) -> Settings:
    """Read the settings file and the environment into one Settings object.

    `environ` defaults to ``os.environ`` (with ``.env`` merged in, without
    overriding what is already set); tests pass their own mapping.
    """
    if environ is None:
        if load_dotenv:
            from dotenv import dotenv_values

            # .env fills in what the real environment leaves unset.
            merged = {k: v for k, v in dotenv_values(".env").items() if v is not None}
            merged.update(os.environ)
            environ = merged
        else:
            environ = dict(os.environ)

    declared = _env_declarations()
    env_raw = {f.lower(): v for f, v in environ.items() if f.lower() in declared and f.isupper() and v != ""}
    env = Env(**{name: _convert(name.upper(), *declared[name], raw, from_env=True) for name, raw in env_raw.items()})

    path = Path(config_path or env.bot_config)
    file_raw: dict[str, Any] = {}
    if path.exists():
        try:
            file_raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"settings file {path}: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"settings file {path} cannot be read: {exc}") from None
    elif config_path is not None:
        # Name what the operator typed: the command's option, not the variable it overrides.
        raise ConfigError(f"option --config {str(path)!r} is invalid: no such file")
    elif "BOT_CONFIG" in environ:
        raise ConfigError(f"setting BOT_CONFIG = {str(path)!r} is invalid: no such file")

    known = sections()
    values: dict[str, Any] = {}
    channels = file_raw.pop("channels", {})
    if not isinstance(channels, dict):
        raise ConfigError(f"settings file {path}: [channels] must be a table of channel tables")
    for name, table in channels.items():
        file_raw[f"channels.{name}"] = table
    for key, table in file_raw.items():
        if key not in known:
            raise ConfigError(
                f"settings file {path}: unknown section [{key}]; expected one of: "
                f"{', '.join('[' + s + ']' for s in known)}"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"settings file {path}: [{key}] must be a table")
        values[_section_attr(key)] = _build(known[key], key, table)

    settings = Settings(env=env, **values)
    _check_semantics(settings)
    return settings


def describe_settings() -> str:
    """Every setting with default and help, as Markdown table rows (for docs/settings.md and --help)."""
    lines = []
    for name, f in iter_settings():
        default: Any = f.default
        factory: Any = f.default_factory
        if default is dataclasses.MISSING and factory is not dataclasses.MISSING:
            default = factory()
        if isinstance(default, Mapping):
            default = ", ".join(f"{k} = {v}" for k, v in default.items())
        elif isinstance(default, tuple):
            default = ", ".join(default) or "(none)"
        lines.append(f"| `{name}` | {default!s} | {f.metadata['help']} |")
    return "\n".join(lines)


def with_overrides(settings: Settings, section: str, **values: Any) -> Settings:
    """A copy of `settings` with some values of one section replaced (tests, CLI flags)."""
    attr = _section_attr(section)
    if attr in settings.channels:
        changed = dataclasses.replace(settings.channels[attr], **values)
        return dataclasses.replace(settings, channels={**settings.channels, attr: changed})
    current = getattr(settings, attr)
    return dataclasses.replace(settings, **{attr: dataclasses.replace(current, **values)})


def example_toml() -> str:
    """A settings file with every setting commented out at its default (config/bot.toml is made from it)."""
    import json

    out = [
        "# ShortScience feed bot settings. Every setting is listed at its default, commented out;",
        "# uncomment and change what you need. Secrets and deployment values are environment",
        "# variables (see README.md), never this file.",
    ]
    for section, cls in sections().items():
        out.append("")
        out.append(f"[{section}]")
        for f in fields(cls):
            default: Any = f.default
            factory: Any = f.default_factory
            if default is dataclasses.MISSING and factory is not dataclasses.MISSING:
                default = factory()
            out.append(f"# {f.metadata['help']}")
            if isinstance(default, Mapping):
                inline = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in default.items())
                out.append(f"# {f.name} = {{ {inline} }}")
            elif isinstance(default, bool):
                out.append(f"# {f.name} = {'true' if default else 'false'}")
            elif isinstance(default, tuple):
                out.append(f"# {f.name} = {json.dumps(list(default))}")
            else:
                out.append(f"# {f.name} = {json.dumps(default)}")
    return "\n".join(out) + "\n"
