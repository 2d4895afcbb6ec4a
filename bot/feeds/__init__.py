"""The feeds the bot writes: RSS 2.0, Atom 1.0 and JSON Feed 1.1, per category, and an RFC 5005 archive.

Input is plain, already-rendered data (:class:`FeedEntry`); the builder never
renders and never touches the store. ``build_feeds`` writes the files,
``ping_websub`` tells a hub which of them changed.
"""

from bot.feeds.build import MANIFEST, FeedFile, build_feeds, plan_feeds, stale_entries, write_atomic
from bot.feeds.model import BuildReport, FeedEntry
from bot.feeds.serialize import FragmentCache
from bot.feeds.websub import ping_websub

__all__ = [
    "MANIFEST",
    "BuildReport",
    "FeedEntry",
    "FeedFile",
    "FragmentCache",
    "build_feeds",
    "ping_websub",
    "plan_feeds",
    "stale_entries",
    "write_atomic",
]
