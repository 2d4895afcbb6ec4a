"""Feed dates: published is the earliest time known of a summary, updated its latest edit (issue 14, point 6).

A first poll finds summaries written long before: their feed dates are the
source's (the item's pubDate), not the poll's time. A summary that appears in a
later poll is published when the bot saw it appear, or at its pubDate if earlier.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import FakeClock
from feeds_util import Item, items, site_feed
from lxml import etree

from bot.decide import entry_dates, first_published
from bot.jobs import build_feeds
from bot.pipeline import poll
from bot.settings import Settings, sample_feed_path

ATOM = "{http://www.w3.org/2005/Atom}"


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def feed_dates(public: Path) -> dict[str, dict[str, tuple[datetime, datetime | None]]]:
    """format → guid → (published, updated) as the three main feeds say them (RSS has no updated)."""
    atom = etree.parse(str(public / "feed.atom")).getroot()
    rss = etree.parse(str(public / "feed.rss")).getroot()
    doc = json.loads((public / "feed.json").read_text(encoding="utf-8"))
    return {
        "atom": {
            e.findtext(f"{ATOM}id"): (
                _iso(e.findtext(f"{ATOM}published") or ""),
                _iso(e.findtext(f"{ATOM}updated") or ""),
            )
            for e in atom.iter(f"{ATOM}entry")
        },
        "rss": {
            i.findtext("guid"): (parsedate_to_datetime(i.findtext("pubDate") or ""), None) for i in rss.iter("item")
        },
        "json": {i["id"]: (_iso(i["date_published"]), _iso(i["date_modified"])) for i in doc["items"]},
    }


def sample_pub_dates() -> dict[str, datetime]:
    root = etree.parse(str(sample_feed_path())).getroot()
    return {i.findtext("guid") or "": parsedate_to_datetime(i.findtext("pubDate") or "") for i in root.iter("item")}


@pytest.mark.parametrize("backfill", [0, 3])
def test_first_poll_of_the_sample_dates_entries_by_their_pub_date(
    make_app: Any, settings: Settings, clock: FakeClock, backfill: int
) -> None:
    app, _ = make_app(sample_feed_path().read_bytes(), settings=settings)
    poll(app, backfill=backfill)
    build_feeds(app)
    expected = sample_pub_dates()
    assert len(expected) == 14 and len(set(expected.values())) == 14
    found = feed_dates(settings.public_dir)
    for kind in ("atom", "rss", "json"):
        assert found[kind] == {g: (d, None if kind == "rss" else d) for g, d in expected.items()}, kind
    # The W3C validator's "Two entries with the same value for atom:updated": none share one.
    updated = [u for _, u in found["atom"].values()]
    assert len(set(updated)) == len(updated)


def test_a_summary_seen_appearing_is_published_when_it_appeared_or_at_its_earlier_pub_date(
    make_app: Any, settings: Settings, clock: FakeClock
) -> None:
    feed = items(3)  # dated 2026-10-01, before the clock
    app, source = make_app(site_feed(feed), settings=settings)
    poll(app)
    clock.advance(hours=2)
    appeared = clock.now
    # One whose pubDate lies after the poll that finds it (the site's clock runs ahead), one dated earlier.
    ahead = Item(key="journals/corr/2611.00001", title="Ahead", edited=appeared + timedelta(minutes=5))
    # ...and one that shows up late with a date older than the summaries already seen
    # (the site lists a summary only once it has 2 votes).
    late = Item(key="journals/corr/2611.00002", title="Late", edited=datetime(2026, 9, 1, tzinfo=UTC))
    source.body = site_feed([ahead, late, *feed])
    poll(app)
    clock.advance(days=1)
    edited = dataclasses.replace(ahead, text="An edited summary.", edited=clock.now)
    source.body = site_feed([edited, late, *feed])
    poll(app)
    build_feeds(app)
    atom = feed_dates(settings.public_dir)["atom"]
    assert atom[ahead.guid] == (appeared, clock.now)
    assert atom[late.guid] == (late.edited, late.edited)
    assert atom[feed[0].guid] == (feed[0].edited, feed[0].edited)
    # The feed lists by discovery, so the late one lands on the open archive page, not in a full one.
    assert list(atom) == [ahead.guid, late.guid, *(it.guid for it in feed)]
    archive = etree.parse(str(settings.public_dir / "archive" / "1.atom")).getroot()
    assert [e.findtext(f"{ATOM}id") for e in archive.iter(f"{ATOM}entry")] == [
        *(it.guid for it in reversed(feed)),
        late.guid,
        ahead.guid,
    ]


def test_entry_dates_never_put_updated_before_published() -> None:
    t = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    assert first_published(t, t - timedelta(hours=1)) == t - timedelta(hours=1)
    assert entry_dates(t, t - timedelta(days=1), t - timedelta(hours=1)) == (t, t)
    # A row from before migration 0002 (no published_at): derived the same way.
    assert entry_dates(None, t, t - timedelta(days=2)) == (t - timedelta(days=2), t - timedelta(days=2))


def test_migration_0002_dates_existing_summaries(db_url: str, tmp_path: Path) -> None:
    """Rows written before the column existed get the earliest of their first version's date and first sight; old
    renders go."""
    from alembic import command
    from alembic.config import Config

    from bot.store import _MIGRATIONS, make_engine, migrate

    engine = make_engine(db_url)
    seen = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    try:
        with engine.begin() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(_MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
        from bot.store.schema import UtcDateTime

        when = sa.bindparam("when", type_=UtcDateTime())
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO sources (id, url, failures, items_seen) VALUES (1, 'feed', 0, 0)"))
            for sid, first_version, first_seen in (
                (1, seen - timedelta(days=30), seen),
                (2, seen + timedelta(minutes=3), seen),
            ):
                conn.execute(
                    sa.text(
                        "INSERT INTO summaries (id, source_id, guid, title, author, text, link, categories, "
                        "content_hash,"
                        " version, edited_at, first_seen_at, changed_at, backfilled)"
                        " VALUES (:id, 1, :guid, 't', 'a', 'x', 'l', '[]', 'h', 2, :edited, :seen, :seen, false)"
                    ).bindparams(
                        sa.bindparam("edited", type_=UtcDateTime()), sa.bindparam("seen", type_=UtcDateTime())
                    ),
                    {"id": sid, "guid": f"g{sid}", "edited": seen + timedelta(days=1), "seen": first_seen},
                )
                for version, edited in ((1, first_version), (2, seen + timedelta(days=1))):
                    conn.execute(
                        sa.text(
                            "INSERT INTO summary_versions (summary_id, version, title, author, text, "
                            "content_hash, edited_at, seen_at)"
                            " VALUES (:sid, :version, 't', 'a', 'x', 'h', :when, :when)"
                        ).bindparams(when),
                        {"sid": sid, "version": version, "when": edited},
                    )
            conn.execute(
                sa.text(
                    "INSERT INTO renders (summary_id, content_hash, html, text, rendered_at) VALUES (1, 'h', "
                    "'<p></p>', 'alt', :when)"
                ).bindparams(when),
                {"when": seen},
            )
        assert migrate(engine)
        with engine.connect() as conn:
            rows = dict(
                conn.execute(
                    sa.select(sa.column("id"), sa.column("published_at", UtcDateTime())).select_from(
                        sa.table("summaries")
                    )
                ).all()
            )
            renders = conn.execute(sa.text("SELECT COUNT(*) FROM renders")).scalar()
    finally:
        engine.dispose()
    assert rows == {1: seen - timedelta(days=30), 2: seen}
    # Made by an older renderer: rendered again on next use.
    assert renders == 0
