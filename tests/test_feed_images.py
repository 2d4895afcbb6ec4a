"""Images in what readers get: only from allowed hosts, no alt text in plain text, no empty paragraph (issue 14, points
5 and 7)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import FakeClock
from feeds_util import Item, site_feed
from lxml import etree

from bot.jobs import build_feeds
from bot.pipeline import poll
from bot.records import Summary
from bot.render import Renderer
from bot.render.images import allowed_hosts, drop_empty_paragraphs, filter_images
from bot.settings import Settings, sample_feed_path, with_overrides

SITE = "https://www.shortscience.org"
ATOM = "{http://www.w3.org/2005/Atom}"
CONTENT = "{http://purl.org/rss/1.0/modules/content/}encoded"
PIXEL = "https://tracker.example/p.gif?u=42"


def summary(text: str) -> Summary:
    return Summary(
        guid=f"{SITE}/paper?bibtexKey=x#u",
        title="A paper",
        author="Someone",
        text=text,
        link=f"{SITE}/paper?bibtexKey=x#u",
        edited_at=datetime(2024, 1, 1, tzinfo=UTC),
    )


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(with_overrides(Settings(), "render", site_base_url=SITE, image_hosts=("i.imgur.com",)))


def img_sources(html: str) -> list[str]:
    return re.findall(r'<img[^>]*\ssrc="([^"]*)"', html)


# ---- point 5: images only from allowed hosts ----


def test_images_from_allowed_hosts_and_the_site_are_kept(renderer: Renderer) -> None:
    out = renderer.html(
        summary("![fig](https://i.imgur.com/a.png) ![own](/static/fig.png) ![up](https://I.IMGUR.com/b.png)")
    )
    assert img_sources(out) == ["https://i.imgur.com/a.png", f"{SITE}/static/fig.png", "https://I.IMGUR.com/b.png"]


@pytest.mark.parametrize(
    "markdown",
    [
        f"Text ![pixel]({PIXEL}) more.",
        f'Text <img src="{PIXEL}" alt="pixel" width="1" height="1"> more.',
        f'<div>\n<img src="{PIXEL}" alt="pixel">\n</div>\n',
        f"![pixel][ref]\n\n[ref]: {PIXEL}",
        # A look-alike host: only the exact name is allowed.
        "Text ![pixel](https://i.imgur.com.tracker.example/p.gif) more.",
    ],
)
def test_an_image_from_another_host_becomes_a_link_labelled_with_its_alt_text(
    renderer: Renderer, markdown: str
) -> None:
    out = renderer.html(summary(markdown))
    assert "<img" not in out
    link = re.search(r'<a href="([^"]*)" rel="nofollow noopener noreferrer">([^<]*)</a>', out)
    assert link is not None, out
    assert link.group(1).startswith("https://") and "i.imgur.com/" not in link.group(1)
    assert link.group(2) == "pixel"


def test_an_image_inside_a_link_keeps_only_its_alt_text(renderer: Renderer) -> None:
    out = renderer.html(summary(f"[![pixel]({PIXEL})](https://example.org/page) and ![]({PIXEL})"))
    assert "<img" not in out and "tracker.example" in out  # the second one, linked as "image"
    assert '<a href="https://example.org/page" rel="nofollow noopener noreferrer">pixel</a>' in out
    assert f'<a href="{PIXEL.replace("&", "&amp;")}" rel="nofollow noopener noreferrer">image</a>' in out


def test_filter_images_escapes_what_it_writes() -> None:
    hosts = allowed_hosts(["i.imgur.com"], SITE)
    assert hosts == {"i.imgur.com", "www.shortscience.org"}
    out = filter_images('<p><img src="https://x.example/a?b=1&amp;c=&quot;2" alt="&lt;b&gt; &quot;q&quot;"></p>', hosts)
    assert (
        out
        == '<p><a href="https://x.example/a?b=1&amp;c=&quot;2" rel="nofollow noopener noreferrer">&lt;b&gt; "q"</a></p>'
    )


# ---- point 7: no alt text in plain text, no empty paragraph ----


def test_alt_text_stays_out_of_plain_text(renderer: Renderer) -> None:
    text = renderer.text(
        summary("Before.\n\n![screen shot 2017-06-02 at 10 24 45 am]()\n\nAfter ![fig](https://i.imgur.com/a.png) end.")
    )
    assert text == "Before.\n\nAfter end."


def test_a_removed_image_leaves_no_empty_paragraph(renderer: Renderer) -> None:
    out = renderer.html(summary("Before.\n\n![screen shot 2017-06-02 at 10 24 45 am]()\n\n![]()\n\nAfter."))
    assert out == "<p>Before.</p>\n<p>After.</p>"
    assert drop_empty_paragraphs("<p>a</p>\n<p> <br> </p>\n<p>b</p>") == "<p>a</p>\n<p>b</p>"


# ---- what reaches the feeds ----


def entries(settings: Settings) -> dict[str, dict[str, str]]:
    """guid → the content and teaser of its entry in each main feed."""
    public = settings.public_dir
    out: dict[str, dict[str, str]] = {}
    for e in etree.parse(str(public / "feed.atom")).getroot().iter(f"{ATOM}entry"):
        out.setdefault(e.findtext(f"{ATOM}id") or "", {}).update(
            atom=e.findtext(f"{ATOM}content") or "", atom_summary=e.findtext(f"{ATOM}summary") or ""
        )
    for i in etree.parse(str(public / "feed.rss")).getroot().iter("item"):
        out[i.findtext("guid") or ""].update(
            rss=i.findtext(CONTENT) or "", rss_description=i.findtext("description") or ""
        )
    for j in json.loads((public / "feed.json").read_text(encoding="utf-8"))["items"]:
        out[j["id"]].update(json=j["content_html"], json_summary=j["summary"])
    return out


def test_no_tracking_pixel_and_no_alt_text_reach_a_feed(make_app: Any, settings: Settings, clock: FakeClock) -> None:
    text = f"Intro.\n\n![pixel]({PIXEL})\n\n![screen shot 2017-06-02 at 10 24 45 am]()\n\n![fig](https://i.imgur.com/a.png)\n\nEnd."
    item = Item(key="journals/corr/2610.00001", text=text)
    app, _ = make_app(site_feed([item]), settings=settings)
    poll(app, backfill=1)
    build_feeds(app)
    entry = entries(settings)[item.guid]
    for kind in ("atom", "rss", "json"):
        assert img_sources(entry[kind]) == ["https://i.imgur.com/a.png"], kind
        assert "<p></p>" not in entry[kind] and "screen shot" not in entry[kind]
    for kind in ("atom_summary", "rss_description", "json_summary"):
        assert "screen shot" not in entry[kind] and "pixel" not in entry[kind], (kind, entry[kind])


def test_the_sample_feeds_carry_no_alt_text_and_no_empty_paragraph(
    make_app: Any, settings: Settings, clock: FakeClock
) -> None:
    app, _ = make_app(sample_feed_path().read_bytes(), settings=settings)
    poll(app, backfill=3)
    build_feeds(app)
    found = entries(settings)
    assert len(found) == 14
    for guid, entry in found.items():
        assert not any("screen shot" in v for v in entry.values()), guid
        assert not any(re.search(r"<p>\s*</p>", v) for v in entry.values()), guid
