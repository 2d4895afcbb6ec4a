"""Digest and confirmation e-mails, parsed back with the email package as a mail client would."""

from __future__ import annotations

import email
import re
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path

import lxml.html
import pytest
from conftest import make_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from bot.errors import RenderError
from bot.mail import Digest, DigestComposer, DigestItem, Email, RecipientRefused, confirmation_email
from bot.mail.base import smtp_data
from bot.mail.message import format_period
from bot.mail.tokens import signed_link
from bot.settings import Settings

NOW = datetime(2026, 11, 10, 8, 0, tzinfo=UTC)
START = datetime(2026, 11, 3, 0, 0, tzinfo=UTC)
END = datetime(2026, 11, 10, 0, 0, tzinfo=UTC)
READER = "reader@example.net"


def item(n: int, **kw: object) -> DigestItem:
    values: dict[str, object] = {
        "guid": f"https://www.shortscience.org/paper?bibtexKey=key{n}#alice",
        "title": f"Paper number {n}: attention in deep nets",
        "paper_authors": f"Ada Lovelace, Alan Turing {n}",
        "summary_author": f"summarist{n}",
        "teaser_text": (
            f"Teaser {n}. This paper shows that a long enough sentence wraps nicely in the plain-text part of the "
            f"digest.\n\nSecond paragraph {n}."
        ),
        "teaser_html": f"<p>Teaser {n}. <em>Emphasis</em> kept.</p><p>Second paragraph {n}.</p>",
        "link": f"https://www.shortscience.org/paper?bibtexKey=key{n}&a=1#alice",
        "paper_url": f"https://arxiv.org/abs/2601.0000{n}",
        "votes": 10 - n,
        "categories": ("cs.LG", "stat.ML"),
    }
    values.update(kw)
    return DigestItem(**values)  # type: ignore[arg-type]


def digest(*items: DigestItem, issue: int = 12) -> Digest:
    return Digest(issue=issue, period_start=START, period_end=END, items=items)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path,
        {
            "DIGEST_FROM": "ShortScience <digest@example.org>",
            "PUBLIC_BASE_URL": "https://bot.example.org",
            "SECRET_KEY": "test-secret-key-0123456789",
        },
    )


@pytest.fixture
def composer(settings: Settings) -> DigestComposer:
    return DigestComposer(settings)


def links(settings: Settings, address: str) -> tuple[str, str]:
    return signed_link(settings, "unsubscribe", address, now=NOW), signed_link(
        settings, "preferences", address, now=NOW
    ) + "&from=digest"


def send_to(
    composer: DigestComposer, settings: Settings, d: Digest, address: str = READER
) -> tuple[Email, EmailMessage, bytes]:
    unsubscribe, preferences = links(settings, address)
    out = composer.compose(d).for_recipient(address, unsubscribe, preferences, now=NOW)
    raw = out.as_bytes()
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return out, parsed, raw


def parts(msg: EmailMessage) -> tuple[str, str]:
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and html is not None
    # Bodies travel with CRLF; compare text with plain newlines.
    return plain.get_content().replace("\r\n", "\n"), html.get_content().replace("\r\n", "\n")


def raw_headers(raw: bytes) -> list[str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    return re.findall(r"^([!-9;-~]+):", head, flags=re.M)


# ---- structure and headers ----


def test_multipart_alternative_text_first_html_last(composer: DigestComposer, settings: Settings) -> None:
    _, msg, raw = send_to(composer, settings, digest(item(1), item(2)))
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in msg.iter_parts())
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only, as SMTP wants


def test_headers(composer: DigestComposer, settings: Settings) -> None:
    out, msg, raw = send_to(composer, settings, digest(item(1)))
    unsubscribe, _ = links(settings, READER)
    assert msg["From"] == "ShortScience <digest@example.org>"
    assert msg["To"] == READER
    assert msg["Subject"] == "ShortScience weekly #12: 3–9 Nov 2026"
    assert parsedate_to_datetime(msg["Date"]) == NOW
    assert msg["Message-ID"] == out.message_id
    assert re.fullmatch(r"<[^<>@\s]+@example\.org>", out.message_id)
    assert msg["List-Id"] == "ShortScience weekly <shortscience-weekly.example.org>"
    assert msg["List-Unsubscribe"] == f"<{unsubscribe}>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # Providers read List-Unsubscribe raw: one plain line, no RFC 2047 encoded words.
    assert f"\r\nList-Unsubscribe: <{unsubscribe}>\r\n".encode() in raw
    assert sorted(raw_headers(raw)) == sorted(
        [
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "List-Id",
            "List-Unsubscribe",
            "List-Unsubscribe-Post",
            "MIME-Version",
            "Content-Type",
        ]
    )


def test_each_recipient_gets_its_own_message_id_and_links(composer: DigestComposer, settings: Settings) -> None:
    d = digest(item(1))
    a, msg_a, _ = send_to(composer, settings, d, "a@example.net")
    b, msg_b, _ = send_to(composer, settings, d, "b@example.net")
    assert a.message_id != b.message_id
    assert msg_a["List-Unsubscribe"] == f"<{links(settings, 'a@example.net')[0]}>"
    assert msg_b["List-Unsubscribe"] == f"<{links(settings, 'b@example.net')[0]}>"
    assert msg_a["To"] == "a@example.net" and msg_b["To"] == "b@example.net"


def test_visible_unsubscribe_link_in_both_parts(composer: DigestComposer, settings: Settings) -> None:
    _, msg, _ = send_to(composer, settings, digest(item(1)))
    unsubscribe, preferences = links(settings, READER)
    text, html = parts(msg)
    assert f"Unsubscribe: {unsubscribe}" in text
    assert f"preferences: {preferences}" in text
    doc = lxml.html.fromstring(html)
    assert [a.get("href") for a in doc.iter("a") if a.text_content().strip() == "Unsubscribe"] == [unsubscribe]
    # "&" in a link is escaped in the HTML source and comes back intact.
    assert preferences in [a.get("href") for a in doc.iter("a")]
    assert "&amp;from=digest" in html


# ---- HTML layout ----


def test_html_is_at_most_600px_wide_with_css_inlined(composer: DigestComposer, settings: Settings) -> None:
    _, msg, _ = send_to(composer, settings, digest(item(1), item(2)))
    _, html = parts(msg)
    doc = lxml.html.fromstring(html)
    assert doc.findall(".//style") == [] and doc.findall(".//link") == []
    container = doc.find_class("container")
    assert len(container) == 1
    assert re.search(r"max-width:\s*600px", container[0].get("style", ""))
    for element in doc.iter():
        for width in re.findall(r"(?<![-\w])(?:max-)?width:\s*(\d+)px", element.get("style") or ""):
            assert int(width) <= 600
    styled = [el for el in doc.iter() if el.get("style")]
    assert len(styled) > 10
    assert "margin: 0" in (doc.find("body").get("style") or "")
    assert doc.findall(".//img") == []  # readable without images: there are none


def test_each_item_in_order_in_both_parts(composer: DigestComposer, settings: Settings) -> None:
    items = (item(3), item(1, paper_url=None, votes=None, categories=()), item(2, votes=1))
    _, msg, _ = send_to(composer, settings, digest(*items))
    text, html = parts(msg)
    doc = lxml.html.fromstring(html)
    cells = doc.find_class("item")
    assert len(cells) == 3
    for cell, it in zip(cells, items, strict=True):
        title = cell.find_class("title")[0].find("a")
        assert title.text_content() == it.title and title.get("href") == it.link
        assert it.paper_authors in cell.text_content()
        assert f"Summary by {it.summary_author}" in cell.text_content()
        teaser = cell.find_class("teaser")[0]
        assert teaser.find(".//em") is not None  # teaser_html went in as HTML
        hrefs = [a.get("href") for a in cell.iter("a")]
        assert it.link in hrefs
        assert (it.paper_url in hrefs) if it.paper_url else all("arxiv" not in (h or "") for h in hrefs)
    assert "10 votes" not in html and "7 votes" in html and "1 vote ·" in html
    # Text part: just as complete, in the same order.
    positions = [text.index(f"{n}. {it.title}") for n, it in enumerate(items, start=1)]
    assert positions == sorted(positions)
    for it in items:
        assert it.paper_authors in text
        assert f"Summary by {it.summary_author}" in text
        assert f"Read the summary: {it.link}" in text
        assert it.teaser_text.split("\n\n")[1] in text
        if it.paper_url:
            assert f"Paper: {it.paper_url}" in text
    assert "arxiv.org/abs/2601.00001" not in text
    assert max(len(line) for line in text.splitlines() if "http" not in line) <= 78


def test_text_part_wraps_teasers_keeping_paragraphs(composer: DigestComposer, settings: Settings) -> None:
    _, msg, _ = send_to(composer, settings, digest(item(1)))
    text, _ = parts(msg)
    block = text[text.index("   Teaser 1.") : text.index("Read the summary")]
    assert "\n\n   Second paragraph 1." in block
    assert all(line.startswith("   ") or not line for line in block.splitlines())


def test_everything_is_escaped_except_the_sanitised_teaser(composer: DigestComposer, settings: Settings) -> None:
    hostile = item(
        1,
        title='<script>alert(1)</script> & "quotes"',
        paper_authors="<img src=x onerror=alert(1)>",
        summary_author="<b>bold</b>",
        link='https://www.shortscience.org/paper?bibtexKey=k"onmouseover="alert(1)',
    )
    _, msg, _ = send_to(composer, settings, digest(hostile))
    text, html = parts(msg)
    doc = lxml.html.fromstring(html)
    assert doc.findall(".//script") == [] and doc.findall(".//img") == [] and doc.findall(".//b") == []
    assert all(a.get("onmouseover") is None for a in doc.iter("a"))
    assert hostile.title in doc.text_content()
    assert "<script>alert(1)</script>" in text  # the text part is plain text: shown as written
    assert doc.find_class("teaser")[0].find(".//em") is not None


# ---- hostile and non-ASCII content ----


def test_no_header_can_be_injected_through_summary_text(composer: DigestComposer, settings: Settings) -> None:
    evil = "Title\r\nBcc: victim@example.com\r\nX-Injected: yes"
    d = digest(
        item(
            1,
            title=evil,
            paper_authors=evil,
            summary_author="Eve\nBcc: x@y",
            teaser_text=evil,
            link="https://www.shortscience.org/p",
        )
    )
    _, msg, raw = send_to(composer, settings, d)
    assert msg["Bcc"] is None and msg["X-Injected"] is None
    assert "Bcc" not in raw_headers(raw) and "X-Injected" not in raw_headers(raw)
    for part in msg.iter_parts():
        assert part["Bcc"] is None and part["X-Injected"] is None
    text, _ = parts(msg)
    assert "Title Bcc: victim@example.com X-Injected: yes" in text  # one line, as the title it is
    assert msg["Subject"] == "ShortScience weekly #12: 3–9 Nov 2026"


@pytest.mark.parametrize(
    "address", ["a@example.org\r\nBcc: x@y", "a@example.org, b@example.org", "no-at-sign", "<a@example.org>", ""]
)
def test_bad_recipient_address_is_refused(composer: DigestComposer, settings: Settings, address: str) -> None:
    composed = composer.compose(digest(item(1)))
    with pytest.raises(RecipientRefused):
        composed.for_recipient(
            address,
            "https://bot.example.org/unsubscribe?token=x",
            "https://bot.example.org/preferences?token=x",
            now=NOW,
        )


def test_bad_link_is_refused(composer: DigestComposer) -> None:
    composed = composer.compose(digest(item(1)))
    with pytest.raises(ValueError):
        composed.for_recipient(
            READER, "https://bot.example.org/u?t=x\r\nBcc: y@z", "https://bot.example.org/p", now=NOW
        )


def test_non_ascii_is_encoded_correctly(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        {
            "DIGEST_FROM": "Kurzwissenschaft Ü <digest@example.org>",
            "PUBLIC_BASE_URL": "https://bot.example.org",
            "SECRET_KEY": "message-test-secret-key-0123",
        },
        digest={"list_name": "Wöchentlich"},
    )
    title = "Über Aufmerksamkeit — 注意力 is all you need 🧠"
    _, msg, raw = send_to(
        DigestComposer(settings), settings, digest(item(1, title=title, summary_author="Jürgen Schmidhüber"))
    )
    assert raw.isascii()  # 7-bit clean: headers as encoded words, bodies quoted-printable
    assert msg["Subject"] == "Wöchentlich #12: 3–9 Nov 2026"
    assert msg["From"].addresses[0].display_name == "Kurzwissenschaft Ü"
    assert msg["List-Id"] == "Wöchentlich <w-chentlich.example.org>"
    text, html = parts(msg)
    assert title in text and "Jürgen Schmidhüber" in text
    assert title in lxml.html.fromstring(html).text_content()


# ---- rendering happens once ----


def test_compose_renders_once_and_for_recipient_only_substitutes(composer: DigestComposer, settings: Settings) -> None:
    d = digest(item(1), item(2))
    composed = composer.compose(d)
    assert composer.renders == 2  # the HTML and the text template, once each
    messages = [send_to(composer, settings, d, f"r{i}@example.net")[1] for i in range(50)]
    assert composer.renders == 2
    assert composer.compose(d) is composed  # the same content again: no new render

    # Two recipients' parts differ by their links and nothing else.
    text0, html0 = parts(messages[0])
    text1, html1 = parts(messages[1])
    u0, p0 = links(settings, "r0@example.net")
    u1, p1 = links(settings, "r1@example.net")
    assert text0.replace(u0, u1).replace(p0, p1) == text1
    esc = lambda s: s.replace("&", "&amp;")  # noqa: E731
    assert html0.replace(esc(u0), esc(u1)).replace(esc(p0), esc(p1)) == html1
    assert u0 not in text1 and esc(u0) not in html1

    composer.compose(digest(item(3)))
    assert composer.renders == 4  # different content: rendered once more


# ---- the SMTP form made with the message ----


def test_a_digest_message_carries_its_smtp_form_with_dots_stuffed(composer: DigestComposer, settings: Settings) -> None:
    # A line of the teaser that starts with a dot, and a link whose quoted-printable
    # soft break falls just before a dot (a link starts a line: its 76th character
    # starts the next one).
    link = "https://bot.example.org/u/" + "a" * 49 + ".b"
    assert link[75] == "." and "=" not in link
    d = digest(item(1, teaser_text=".hidden?\n..two dots\nplain"))
    out = composer.compose(d).for_recipient(READER, link, "https://bot.example.org/preferences?token=p", now=NOW)
    assert out.wire is not None
    assert out.wire == smtp_data(out.data)
    assert b"\r\n..b=\r\n" in out.wire or b"\r\n..b\r\n" in out.wire  # the link's dot line, stuffed
    assert out.wire.count(b"\r\n..") > out.data.count(b"\r\n..")


LINE_BITS = st.sampled_from(
    [".", "..", "\n", "\n.", "\r\n.", "\r", " ", "a", "word.", "é", "=", "-" * 70, "x" * 75 + "."]
)


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    teaser=st.lists(LINE_BITS, max_size=40).map("".join),
    title=st.lists(LINE_BITS, max_size=10).map("".join),
    token=st.text(alphabet="ab.-_", min_size=0, max_size=200),
)
def test_the_smtp_form_is_what_the_mailer_would_make_of_the_message(
    composer: DigestComposer, teaser: str, title: str, token: str
) -> None:
    d = digest(item(1, teaser_text=teaser, title=title or "t", teaser_html=f"<p>{teaser}</p>"))
    out = composer.compose(d).for_recipient(
        READER,
        f"https://bot.example.org/unsubscribe?token={token}",
        f"https://bot.example.org/preferences?t={token}.",
        now=NOW,
    )
    assert out.wire is not None
    assert out.wire == smtp_data(out.data)


def test_template_override_must_keep_the_unsubscribe_link(tmp_path: Path, settings: Settings) -> None:
    overrides = tmp_path / "mytemplates"
    overrides.mkdir()
    (overrides / "digest.txt.j2").write_text("{{ list_name }}: {% for item in items %}{{ item.title }}{% endfor %}\n")
    custom = make_settings(tmp_path, {"DIGEST_FROM": "d@example.org"}, render={"templates_dir": str(overrides)})
    with pytest.raises(RenderError, match=r"digest\.txt\.j2.*unsubscribe"):
        DigestComposer(custom).compose(digest(item(1)))


def test_template_errors_name_the_template_and_line(tmp_path: Path) -> None:
    overrides = tmp_path / "mytemplates"
    overrides.mkdir()
    (overrides / "digest.txt.j2").write_text("line one\n{% for x in %}\n")
    custom = make_settings(tmp_path, {"DIGEST_FROM": "d@example.org"}, render={"templates_dir": str(overrides)})
    with pytest.raises(RenderError, match=r"digest\.txt\.j2: line 2"):
        DigestComposer(custom).compose(digest(item(1)))
    (overrides / "digest.txt.j2").write_text("{{ no_such_name }}\n")
    with pytest.raises(RenderError, match=r"digest\.txt\.j2.*no_such_name"):
        DigestComposer(custom).compose(digest(item(1)))


def test_empty_digest(composer: DigestComposer, settings: Settings) -> None:
    _, msg, _ = send_to(composer, settings, digest())
    text, html = parts(msg)
    assert "No new summaries" in text and "No new summaries" in html


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (datetime(2026, 11, 3, tzinfo=UTC), datetime(2026, 11, 10, tzinfo=UTC), "3–9 Nov 2026"),
        (datetime(2026, 11, 2, 8, tzinfo=UTC), datetime(2026, 11, 9, 8, tzinfo=UTC), "2–9 Nov 2026"),
        (datetime(2026, 10, 28, tzinfo=UTC), datetime(2026, 11, 4, tzinfo=UTC), "28 Oct – 3 Nov 2026"),
        (datetime(2025, 12, 29, tzinfo=UTC), datetime(2026, 1, 5, tzinfo=UTC), "29 Dec 2025 – 4 Jan 2026"),
        (datetime(2026, 11, 3, 1, tzinfo=UTC), datetime(2026, 11, 3, 5, tzinfo=UTC), "3 Nov 2026"),
    ],
)
def test_format_period(start: datetime, end: datetime, expected: str) -> None:
    from zoneinfo import ZoneInfo

    assert format_period(start, end, ZoneInfo("UTC")) == expected


def test_period_is_shown_in_the_digest_time_zone(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, {"DIGEST_FROM": "d@example.org"}, digest={"timezone": "America/New_York"})
    # Midnight UTC on 3 Nov is still 2 Nov in New York.
    assert DigestComposer(settings).subject(digest()) == "ShortScience weekly #12: 2–9 Nov 2026"


def test_sender_falls_back_to_the_public_host(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, {"PUBLIC_BASE_URL": "https://bot.example.org", "SECRET_KEY": "message-test-secret-key-0123"}
    )
    _, msg, _ = send_to(DigestComposer(settings), settings, digest(item(1)))
    assert msg["From"] == "ShortScience weekly <shortscience-weekly@bot.example.org>"
    assert msg["Message-ID"].endswith("@bot.example.org>")


# ---- confirmation ----


def test_confirmation_email(settings: Settings) -> None:
    url = signed_link(settings, "confirm", READER, now=NOW)
    out = confirmation_email(settings, READER, url, now=NOW)
    raw = out.as_bytes()
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["To"] == READER and msg["From"] == "ShortScience <digest@example.org>"
    assert msg["Subject"] == "Confirm your subscription to ShortScience weekly"
    assert msg["Message-ID"] == out.message_id
    assert msg["List-Unsubscribe"] is None  # not subscribed yet
    text, html = parts(msg)
    assert url in text and "72 hours" in text
    doc = lxml.html.fromstring(html)
    assert url in [a.get("href") for a in doc.iter("a")]
    assert doc.findall(".//style") == [] and re.search(r"max-width:\s*600px", html)
