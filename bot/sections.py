"""The settings file's sections: each setting declared once, with its default, type and one line of help.

Plain frozen dataclasses, one per ``[section]`` of ``config/bot.toml``, and ``ChannelSettings``, which each
channel's section subclasses. Reading and checking values is bot/settings.py's; import these from there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


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
    lanes: int = _s(
        2,
        "Posts one dispatch pass has on the network at once, on live channels without pacing or caps whose "
        "client allows it (docs/channels.md lists them); posts of one burst may then appear slightly out of "
        "order. 1: one at a time, in queue order.",
        minimum=1,
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
    workers: int = _s(
        0,
        "Processes that render summaries when a feeds build has many to render (0: one per CPU core; 1: no pool).",
        minimum=0,
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
