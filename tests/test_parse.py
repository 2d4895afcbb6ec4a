"""parse_feed: the site's own RSS (fast path), generic RSS/Atom (feedparser), JSON Feed, and bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from bot.errors import SourceError
from bot.sources.parse import parse_feed

BASE = "https://www.shortscience.org"


def site_item(
    user: str = "alice",
    key: str = "journals/corr/1803.08494",
    *,
    title: str = "Group Normalization",
    author: str | None = None,
    description: str = "A summary.",
    votes: str = "5",
    arxiv: str | None = "1803.08494",
    pub_date: str | None = "Tue, 10 Nov 2020 16:05:31 +0000",
    link: str | None = None,
    guid: str | None = None,
) -> str:
    url = f"{BASE}/paper?bibtexKey={key}#{user}"
    parts = ["<item>"]
    if arxiv is not None:
        parts.append(f"<shortscience:arxivid>{arxiv}</shortscience:arxivid>")
    parts += [
        f"<shortscience:bibtexkey>{key}</shortscience:bibtexkey>",
        f"<shortscience:votes>{votes}</shortscience:votes>",
        f"<title>{title}</title>",
        f"<author>{user if author is None else author}</author>",
        f"<description>{description}</description>",
        f"<link>{url if link is None else link}</link>",
        f"<guid>{url if guid is None else guid}</guid>",
    ]
    if pub_date is not None:
        parts.append(f"<pubDate>{pub_date}</pubDate>")
    parts.append("</item>")
    return "\n".join(parts)


def site_feed(*items: str, namespace: str = BASE, doctype: str = "") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        + doctype
        + f'<rss version="2.0" xmlns:shortscience="{namespace}">\n<channel>\n'
        "<title>ShortScience.org Latest Summaries</title>\n"
        f"<link>{BASE}</link>\n<description>ShortScience.org Latest Summaries</description>\n<ttl>60</ttl>\n"
        + "\n".join(items)
        + "\n</channel>\n</rss>\n"
    ).encode("utf-8")


# --- the site's own format ---------------------------------------------------------------------------


def test_site_item_maps_every_field() -> None:
    body = site_feed(
        site_item(
            "decodyng",
            author="Cody &amp; Wild",
            description=(
                "**Bold** &lt;b&gt;x&lt;/b&gt; $a &lt; b$ &amp;amp; &quot;q&quot; &#039;s&#039;&#13;&#10;next "
                "line\n\n$$\\sum_i x_i$$"
            ),
            votes="7",
            arxiv=" 1803.08494v2 ",
            pub_date="Tue, 10 Nov 2020 17:05:31 +0100",
        )
    )
    result = parse_feed(body, "site")
    assert result.problems == ()
    assert result.title == "ShortScience.org Latest Summaries"
    (summary,) = result.summaries
    url = f"{BASE}/paper?bibtexKey=journals/corr/1803.08494#decodyng"
    assert summary.guid == url
    assert summary.link == url
    assert summary.title == "Group Normalization"
    assert summary.author == "Cody & Wild"
    # Only the XML escaping is undone: the Markdown/LaTeX source stays as written, \r\n becomes \n.
    assert summary.text == "**Bold** <b>x</b> $a < b$ &amp; \"q\" 's'\nnext line\n\n$$\\sum_i x_i$$"
    assert summary.votes == 7
    assert summary.arxiv_id == "1803.08494"
    assert summary.bibtex_key == "journals/corr/1803.08494"
    assert summary.edited_at == datetime(2020, 11, 10, 16, 5, 31, tzinfo=UTC)
    assert summary.edited_at.tzinfo is UTC
    assert summary.categories == ()
    assert summary.content_hash


def test_site_title_escaped_twice_is_plain_text() -> None:
    body = site_feed(
        site_item("a", "k/1", title="Attention &amp;amp; Memory &amp; R&amp;D"),
        site_item("b", "k/2", title="Meta-learners&#039; dynamics &lt;2&gt;"),
    )
    titles = [s.title for s in parse_feed(body, "site").summaries]
    assert titles == ["Attention & Memory & R&D", "Meta-learners' dynamics <2>"]


def test_site_anonymous_and_missing_arxiv_id() -> None:
    body = site_feed(
        site_item("anon", "conf/eccv/HeZRS16", author="Anonymous", arxiv=None),
        site_item("bob", "k/2", author=""),
    )
    first, second = parse_feed(body, "site").summaries
    assert first.author == "Anonymous"
    assert first.guid.endswith("#anon")
    assert first.arxiv_id is None
    assert first.bibtex_key == "conf/eccv/HeZRS16"
    assert second.author == "Anonymous"


def test_site_bad_pub_date_is_a_problem_and_other_items_go_on() -> None:
    body = site_feed(
        site_item("a", "k/1", pub_date="yesterday at noon"),
        site_item("b", "k/2"),
        site_item("c", "k/3", pub_date=None),
    )
    result = parse_feed(body, "site")
    assert [s.guid for s in result.summaries] == [f"{BASE}/paper?bibtexKey=k/2#b"]
    assert len(result.problems) == 2
    assert result.problems[0].startswith(f"site: item {BASE}/paper?bibtexKey=k/1#a: ")
    assert "yesterday at noon" in result.problems[0]
    assert "pubDate" in result.problems[1]


def test_site_duplicate_guid_keeps_the_first() -> None:
    body = site_feed(
        site_item("a", "k/1", description="newest"),
        site_item("b", "k/2"),
        site_item("a", "k/1", description="older"),
    )
    result = parse_feed(body, "site")
    assert [s.text for s in result.summaries] == ["newest", "A summary."]
    (problem,) = result.problems
    assert problem.startswith(f"site: item {BASE}/paper?bibtexKey=k/1#a: ")
    assert "duplicate" in problem


def test_site_min_votes_drops_silently() -> None:
    body = site_feed(
        site_item("a", "k/1", votes="2"), site_item("b", "k/2", votes="5"), site_item("c", "k/3", votes="10")
    )
    result = parse_feed(body, "site", min_votes=5)
    assert [s.votes for s in result.summaries] == [5, 10]
    assert result.problems == ()
    assert len(parse_feed(body, "site").summaries) == 3


def test_site_invalid_items_are_problems() -> None:
    body = site_feed(
        site_item("a", "k/1", votes="many"),
        site_item("b", "k/2", link="javascript:alert(1)", guid="g-2"),
        site_item("c", "k/3", title=""),
        site_item("d", "k/4", guid=""),  # no guid: the link stands in
        site_item("e", "k/5", guid="", link=""),
    )
    result = parse_feed(body, "site")
    assert [s.guid for s in result.summaries] == [f"{BASE}/paper?bibtexKey=k/4#d"]
    assert len(result.problems) == 4
    assert "votes" in result.problems[0] and "'many'" in result.problems[0]
    assert result.problems[1].startswith("site: item g-2: link is not an http(s) URL")
    assert "title" in result.problems[2]
    assert result.problems[3].startswith("site: item (no guid): ")


def test_site_title_and_author_lose_line_breaks_and_control_characters() -> None:
    body = site_feed(
        site_item("a", "k/1", title="Deep&#13;&#10;Residual\nLearning\x0b for\tImages", author="Ann\r\n\x0bLee"),
    )
    (summary,) = parse_feed(body, "site").summaries
    assert summary.title == "Deep Residual Learning for Images"
    assert summary.author == "Ann Lee"
    assert "\x0b" not in summary.title


def test_site_namespace_variant_still_takes_the_site_path() -> None:
    # The site's template in its repository declares "http://www.shortscience.org/".
    body = site_feed(site_item("a", "k/1", votes="3"), namespace="http://www.shortscience.org/")
    (summary,) = parse_feed(body, "site").summaries
    assert summary.votes == 3
    assert summary.bibtex_key == "k/1"


def test_site_malformed_xml_raises_naming_the_source_and_place() -> None:
    body = site_feed(site_item("a", "k/1")).replace(b"</title>", b"</titl>", 1)
    with pytest.raises(SourceError) as info:
        parse_feed(body, "https://example.org/rss-full.xml")
    message = str(info.value)
    assert message.startswith("https://example.org/rss-full.xml: not well-formed XML at line ")
    assert "column" in message


@pytest.mark.timeout(20)
def test_external_entities_are_never_fetched() -> None:
    doctype = (
        '<!DOCTYPE rss [\n<!ENTITY xxe SYSTEM "file:///etc/passwd">\n<!ENTITY ext SYSTEM "http://127.0.0.1:9/x">\n]>\n'
    )
    body = site_feed(site_item("a", "k/1", title="T &ext;", description="x &xxe; y"), doctype=doctype)
    (summary,) = parse_feed(body, "site").summaries
    assert "root:" not in summary.text
    assert summary.text == "x &xxe; y"  # the reference stays literal text, never its target
    assert summary.title == "T &ext;"


@pytest.mark.timeout(20)
def test_billion_laughs_is_not_expanded() -> None:
    doctype = (
        "<!DOCTYPE rss [\n"
        '<!ENTITY lol "lol">\n'
        + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n' for i in range(1, 10))
        + "]>\n"
    )
    body = site_feed(site_item("a", "k/1", title="Laughs &lol9;"), doctype=doctype)
    try:
        result = parse_feed(body, "site")
    except SourceError as exc:
        # libxml2 (2.14 here) refuses the declarations outright: a clean error for the whole feed.
        assert str(exc).startswith("site: not well-formed XML")
        return
    if not result.summaries:
        # Or the item using the entities is refused alone (libxml2's amplification limit), as one problem.
        (problem,) = result.problems
        assert "k/1#a: not well-formed XML" in problem
        return
    (summary,) = result.summaries
    assert "lollol" not in summary.title


def test_unusable_feeds_raise() -> None:
    for body in (b"", b"  \n", b"<html><body><p>Not found</p></body></html>", b"this is not xml", b'{"hello": 1}'):
        with pytest.raises(SourceError) as info:
            parse_feed(body, "src")
        assert str(info.value).startswith("src: ")


def test_an_empty_channel_is_not_an_error() -> None:
    result = parse_feed(site_feed(), "site")
    assert result.summaries == () and result.problems == ()


# --- generic feeds -----------------------------------------------------------------------------------


def test_atom_feed() -> None:
    body = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Some Blog</title>
  <id>urn:feed</id>
  <updated>2021-03-04T05:06:07Z</updated>
  <author><name>Feed Author</name></author>
  <entry>
    <id>urn:entry:1</id>
    <title type="html">Graphs &amp;amp; &lt;i&gt;Trees&lt;/i&gt;</title>
    <link href="https://blog.example.org/1"/>
    <updated>2021-03-04T07:06:07+02:00</updated>
    <content type="html">&lt;p&gt;Hello &lt;a href="/rel"&gt;there&lt;/a&gt;&lt;/p&gt;</content>
    <category term="cs.LG"/><category term="graphs"/>
  </entry>
  <entry>
    <id>urn:entry:2</id>
    <title>Second</title>
    <author><name>Ann</name></author>
    <link href="https://blog.example.org/2"/>
    <published>2021-03-01T00:00:00Z</published>
    <summary>plain</summary>
  </entry>
  <entry>
    <id>urn:entry:3</id>
    <title>No date</title>
    <link href="https://blog.example.org/3"/>
  </entry>
</feed>"""
    result = parse_feed(body, "atom", content_type="application/atom+xml")
    assert result.title == "Some Blog"
    first, second = result.summaries
    assert first.guid == "urn:entry:1"
    assert first.title == "Graphs & Trees"
    assert first.author == "Feed Author"
    # Not sanitised and relative URLs not resolved here: rendering does both, once.
    assert first.text == '<p>Hello <a href="/rel">there</a></p>'
    assert first.link == "https://blog.example.org/1"
    assert first.edited_at == datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert first.categories == ("cs.LG", "graphs")
    assert first.votes is None and first.arxiv_id is None and first.bibtex_key is None
    assert second.author == "Ann"
    assert second.text == "plain"
    assert second.edited_at == datetime(2021, 3, 1, tzinfo=UTC)
    (problem,) = result.problems
    assert problem.startswith("atom: item urn:entry:3: ") and "date" in problem


def test_generic_rss2_feed() -> None:
    body = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>arXiv-ish</title><link>https://example.org</link><description>d</description>
<item>
  <title>A Paper on X &amp; Y</title>
  <link>https://arxiv.org/abs/2004.11362v3</link>
  <description>Abstract &lt;b&gt;here&lt;/b&gt;</description>
  <author>jdoe@example.org (Jane Doe)</author>
  <category>cs.CV</category>
  <pubDate>Wed, 04 Mar 2021 10:00:00 GMT</pubDate>
</item>
<item>
  <title>Mailed</title>
  <guid isPermaLink="false">item-2</guid>
  <link>https://example.org/2</link>
  <author>someone@example.org</author>
  <pubDate>Tue, 03 Mar 2021 10:00:00 +0000</pubDate>
</item>
</channel></rss>"""
    result = parse_feed(body, "rss", content_type="application/rss+xml")
    assert result.problems == ()
    first, second = result.summaries
    assert first.guid == "https://arxiv.org/abs/2004.11362v3"  # no guid: the link stands in
    assert first.title == "A Paper on X & Y"
    assert first.author == "Jane Doe"
    assert first.text == "Abstract <b>here</b>"
    assert first.categories == ("cs.CV",)
    assert first.arxiv_id == "2004.11362"
    assert first.edited_at == datetime(2021, 3, 4, 10, 0, tzinfo=UTC)
    assert second.guid == "item-2"
    assert second.author == "Anonymous"  # an e-mail address is not a display name
    assert second.text == ""


def test_json_feed_1_1() -> None:
    document = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "JSON Summaries",
        "authors": [{"name": "Feed Person"}],
        "items": [
            {
                "id": "j1",
                "url": "https://example.org/j1",
                "title": "Line\r\nbreak\u000b title",
                "content_html": "<p>$x^2$</p>\r\n",
                "date_modified": "2021-05-06T07:08:09Z",
                "date_published": "2020-01-01T00:00:00Z",
                "authors": [{"name": "Item Person"}],
                "tags": ["cs.LG", "stat.ML"],
            },
            {
                "id": 2,
                "url": "https://example.org/j2",
                "title": "Text only",
                "content_text": "plain",
                "date_published": "2021-05-01T00:00:00+02:00",
            },
            {"id": "j3", "url": "https://example.org/j3", "title": "No date", "content_text": "x"},
            "not an object",
        ],
    }
    body = json.dumps(document).encode()
    result = parse_feed(body, "json", content_type="application/feed+json")
    assert result.title == "JSON Summaries"
    first, second = result.summaries
    assert first.guid == "j1"
    assert first.title == "Line break title"
    assert first.author == "Item Person"
    assert first.text == "<p>$x^2$</p>\n"
    assert first.edited_at == datetime(2021, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert first.categories == ("cs.LG", "stat.ML")
    assert second.guid == "2"
    assert second.author == "Feed Person"
    assert second.text == "plain"
    assert second.edited_at == datetime(2021, 4, 30, 22, 0, tzinfo=UTC)
    assert len(result.problems) == 2
    assert result.problems[0].startswith("json: item j3: ")
    assert result.problems[1].startswith("json: item #4: ")


def test_json_feed_detected_without_content_type_and_bad_json_raises() -> None:
    body = b'  {"version": "https://jsonfeed.org/version/1", "items": []}'
    assert parse_feed(body, "json").summaries == ()
    with pytest.raises(SourceError, match=r"^json: not valid JSON at line 1"):
        parse_feed(b'{"version": ', "json")


def test_iso_8859_1_rss_feed() -> None:
    body = (
        b'<?xml version="1.0" encoding="ISO-8859-1"?>\n'
        b'<rss version="2.0"><channel><title>Caf\xe9</title><link>http://example.org/</link><description>d</description>'
        b"<item><title>R\xe9sum\xe9 na\xefve</title><link>http://example.org/1</link><guid>http://example.org/1</guid>"
        b"<description>Gr\xfc\xdfe \xb5</description><pubDate>Mon, 01 Mar 2021 12:00:00 +0000</pubDate></item>"
        b"</channel></rss>"
    )
    result = parse_feed(body, "latin1", content_type="text/xml")
    (summary,) = result.summaries
    assert result.title == "Café"
    assert summary.title == "Résumé naïve"
    assert summary.text == "Grüße µ"


def test_generic_feed_not_well_formed_still_yields_its_entries() -> None:
    body = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Loose</title>
<item><title>Fine</title><link>https://example.org/1</link><description>Q & A</description>
<pubDate>Mon, 01 Mar 2021 12:00:00 +0000</pubDate></item>
</channel></rss>"""
    (summary,) = parse_feed(body, "loose").summaries
    assert summary.title == "Fine"
    assert summary.link == "https://example.org/1"
