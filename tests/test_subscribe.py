"""The subscription pages through Starlette's TestClient, with a real SMTP server (aiosmtpd) and the test
databases: double opt-in, the neutral answer, rate limits, confirm, RFC 8058 one-click unsubscribe,
preferences, and the whole loop from the form to a digest that skips the address."""

from __future__ import annotations

import html
import re
import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from digest_util import BASE, MONDAY, Newsroom, by_recipient, digest_settings, parse, parts
from feeds_util import Item
from lxml import html as lxml_html
from smtp_server import SmtpTestServer
from starlette.exceptions import StarletteDeprecationWarning

from bot.digest import send_digest
from bot.mail.tokens import make_token, signed_link
from bot.subscribe import routes
from bot.web import create_app

with warnings.catch_warnings():
    # Starlette 1.x asks for the `httpx2` package for its TestClient; httpx still works.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient


@pytest.fixture
def server() -> Iterator[SmtpTestServer]:
    with SmtpTestServer() as s:
        yield s


class Site:
    """The web app of one Newsroom, and the mail its SMTP server got."""

    def __init__(self, room: Newsroom, server: SmtpTestServer) -> None:
        self.room = room
        self.server = server
        self.client = TestClient(create_app(room.app.settings, extra_routes=routes(room.app)), follow_redirects=False)

    def subscribe(self, address: str, *categories: str, **extra: str) -> Any:
        return self.client.post(
            "/subscribe", data={"email": address, "category": list(categories), "website": "", **extra}
        )

    def confirmation_link(self, address: str, index: int = -1) -> str:
        mails = [parse(m) for m in self.server.messages if address in m.rcpt_tos]
        text, _ = parts(mails[index])
        found = re.search(r"^(https://bot\.example\.org/confirm\?token=\S+)$", text, re.M)
        assert found, text
        return found.group(1)

    def get(self, url: str) -> Any:
        return self.client.get(local(url))

    def confirm(self, link: str) -> Any:
        """Follow a confirmation link as a person does: open it, then press its one button."""
        page = self.get(link)
        if page.status_code != 200 or "You are subscribed" in page.text:
            return page
        assert "Confirm your subscription" in page.text, page.text
        action = re.search(r'<form method="post" action="([^"]+)"', page.text)
        assert action, page.text
        return self.client.post(html.unescape(action.group(1)))

    def mails_to(self, address: str) -> int:
        return sum(address in m.rcpt_tos for m in self.server.messages)


def local(url: str) -> str:
    parts_ = urlsplit(url)
    assert f"{parts_.scheme}://{parts_.netloc}" == BASE
    return f"{parts_.path}?{parts_.query}"


@pytest.fixture
def site(tmp_path: Path, db_url: str, server: SmtpTestServer) -> Iterator[Site]:
    room = Newsroom.open(digest_settings(tmp_path, db_url, server, confirm_per_client=6), start=MONDAY)
    s = Site(room, server)
    yield s
    s.client.close()
    room.close()


def text_of(response: Any) -> str:
    return " ".join(lxml_html.fromstring(response.text).text_content().split())


def test_the_form(site: Site) -> None:
    r = site.client.get("/subscribe")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    doc = lxml_html.fromstring(r.text)
    assert doc.xpath("//form[@method='post']/@action") == ["/subscribe"]
    assert doc.xpath("//input[@type='email']/@name") == ["email"]
    honeypot = doc.xpath("//input[@name='website']")[0]
    assert honeypot.get("tabindex") == "-1" and "hp" in honeypot.getparent().get("class")
    assert doc.xpath("//input[@name='category']/@value")[:3] == ["cs.LG", "stat.ML", "cs.CV"]
    # People read names; the form still sends the codes.
    labels = [" ".join(label.text_content().split()) for label in doc.find_class("choice")]
    assert labels[:3] == [
        "Machine Learning (cs.LG)",
        "Machine Learning (stat.ML)",
        "Computer Vision and Pattern Recognition (cs.CV)",
    ]
    assert "Neurons and Cognition (q-bio.NC)" in labels
    assert r.headers["cache-control"] == "no-store" and r.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert "set-cookie" not in r.headers


def test_subscribe_then_confirm_with_the_emailed_link(site: Site) -> None:
    r = site.subscribe("Reader@Example.org", "cs.CV", "not-offered")
    assert r.status_code == 200 and "Check your inbox" in r.text and "Reader@example.org" in r.text
    assert site.mails_to("Reader@example.org") == 1
    mail = parse(site.server.messages[0])
    assert mail["Subject"] == "Confirm your subscription to ShortScience weekly"
    sub = site.room.app.store.subscriber("reader@example.org")
    assert sub is not None and sub.state.value == "pending"
    confirmed = site.confirm(site.confirmation_link("Reader@example.org"))
    assert confirmed.status_code == 200 and "You are subscribed" in confirmed.text
    assert "with summaries in Computer Vision and Pattern Recognition (cs.CV)" in text_of(confirmed)
    sub = site.room.app.store.subscriber("reader@example.org")
    assert sub is not None and sub.state.value == "confirmed" and sub.categories == ("cs.CV",)
    assert sub.consent_source == "web"
    # Following the link again is harmless: it says so, without a button.
    assert site.confirm(site.confirmation_link("Reader@example.org")).status_code == 200


def test_opening_the_confirmation_link_alone_confirms_nothing(site: Site) -> None:
    # What a mail scanner or a link preview does: fetch the link, press nothing.
    site.subscribe("scanned@example.org")
    link = site.confirmation_link("scanned@example.org")
    for _ in range(3):
        page = site.get(link)
        assert page.status_code == 200 and "Yes, subscribe me" in page.text
    sub = site.room.app.store.subscriber("scanned@example.org")
    assert sub is not None and sub.state.value == "pending"
    assert "You are subscribed" in site.confirm(link).text
    sub = site.room.app.store.subscriber("scanned@example.org")
    assert sub is not None and sub.state.value == "confirmed"


def test_new_and_known_addresses_get_the_same_answer(site: Site) -> None:
    site.room.subscribe("known@example.org", categories=["cs.LG"])
    new = site.subscribe("new@example.org", "cs.CV")
    known = site.subscribe("known@example.org", "cs.CV")
    assert (new.status_code, known.status_code) == (200, 200)
    assert new.text.replace("new@example.org", "X") == known.text.replace("known@example.org", "X")
    assert sorted(h for h in new.headers if h != "content-length") == sorted(
        h for h in known.headers if h != "content-length"
    )
    # The known subscriber's categories change only if they follow their link.
    sub = site.room.app.store.subscriber("known@example.org")
    assert sub is not None and sub.categories == ("cs.LG",) and sub.state.value == "confirmed"
    site.confirm(site.confirmation_link("known@example.org"))
    sub = site.room.app.store.subscriber("known@example.org")
    assert sub is not None and sub.categories == ("cs.CV",)


def test_honeypot_invalid_address_and_bad_bodies(site: Site) -> None:
    trapped = site.subscribe("bot@example.org", website="http://spam.example")
    assert trapped.status_code == 200 and "Check your inbox" in trapped.text
    assert site.room.app.store.subscriber("bot@example.org") is None and site.server.messages == []
    bad = site.subscribe("<script>alert(1)</script>")
    assert bad.status_code == 400 and "does not look like an e-mail address" in bad.text
    assert "<script>alert" not in bad.text and "&lt;script&gt;" in bad.text
    assert (
        site.client.post("/subscribe", content=b"{}", headers={"content-type": "application/json"}).status_code == 415
    )
    too_big = site.client.post(
        "/subscribe", content=b"email=" + b"a" * 20000, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert too_big.status_code == 413
    assert site.server.messages == []


def test_confirmation_emails_are_rate_limited_per_address_and_per_client(site: Site) -> None:
    for _ in range(3):
        assert site.subscribe("flood@example.org").status_code == 200
    fourth = site.subscribe("flood@example.org")
    assert fourth.status_code == 200 and "Check your inbox" in fourth.text  # the same page...
    assert site.mails_to("flood@example.org") == 3  # ...but no fourth e-mail
    # Per client (confirm_per_client = 6 here): this client has asked 4 times; two more, then 429.
    assert site.subscribe("a@example.org").status_code == 200
    assert site.subscribe("b@example.org").status_code == 200
    limited = site.subscribe("c@example.org")
    assert limited.status_code == 429 and "Too many requests" in limited.text
    assert site.mails_to("c@example.org") == 0
    # A day later the address may be mailed again (and the client's hour is over).
    site.room.clock.advance(days=1, minutes=1)
    assert site.subscribe("flood@example.org").status_code == 200
    assert site.mails_to("flood@example.org") == 4


def test_confirm_links_expire_and_cannot_be_forged(site: Site) -> None:
    site.subscribe("late@example.org")
    link = site.confirmation_link("late@example.org")
    site.room.clock.advance(hours=73)
    expired = site.get(link)
    assert expired.status_code == 400 and "This link has expired" in expired.text
    token = link.split("token=")[1]
    assert "not valid" in site.client.get(f"/confirm?token={token[:-2]}xx").text
    assert site.client.get("/confirm").status_code == 400
    other = make_token(site.room.app.settings, "unsubscribe", "late@example.org")
    assert site.client.get(f"/confirm?token={other}").status_code == 400
    sub = site.room.app.store.subscriber("late@example.org")
    assert sub is not None and sub.state.value == "pending"


def test_one_click_unsubscribe(site: Site) -> None:
    site.room.subscribe("reader@example.org")
    link = signed_link(site.room.app.settings, "unsubscribe", "reader@example.org")
    page = site.get(link)
    assert page.status_code == 200
    doc = lxml_html.fromstring(page.text)
    forms = doc.xpath("//form")
    assert len(forms) == 1 and forms[0].get("method") == "post" and forms[0].get("action") == local(link)
    assert doc.xpath("//form//button/text()") == ["Unsubscribe"]
    sub = site.room.app.store.subscriber("reader@example.org")
    assert sub is not None and sub.state.value == "confirmed"  # a GET (a link scanner) changes nothing

    # What a mailbox provider sends (RFC 8058): POST, this body, no cookies; no redirect, no second step.
    r = site.client.post(
        local(link),
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200 and "You are unsubscribed" in r.text
    assert "set-cookie" not in r.headers and "location" not in r.headers
    sub = site.room.app.store.subscriber("reader@example.org")
    assert sub is not None and sub.state.value == "unsubscribed"
    # Idempotent, whatever the body's encoding, and 2xx for an address already gone or never there.
    assert site.client.post(local(link), files={"List-Unsubscribe": (None, "One-Click")}).status_code == 200
    stranger = signed_link(site.room.app.settings, "unsubscribe", "stranger@example.org")
    assert site.client.post(local(stranger), content=b"List-Unsubscribe=One-Click").status_code == 200
    assert site.client.post("/unsubscribe?token=forged", content=b"List-Unsubscribe=One-Click").status_code == 400


def test_preferences(site: Site) -> None:
    site.room.subscribe("reader@example.org", categories=["cs.LG"])
    link = signed_link(site.room.app.settings, "preferences", "reader@example.org")
    page = site.get(link)
    doc = lxml_html.fromstring(page.text)
    assert doc.xpath("//input[@name='category' and @checked]/@value") == ["cs.LG"]
    saved = site.client.post(local(link), data={"category": ["cs.CV", "stat.ML", "made-up"]})
    assert saved.status_code == 200 and "Saved." in saved.text
    sub = site.room.app.store.subscriber("reader@example.org")
    assert sub is not None and sub.categories == ("cs.CV", "stat.ML")
    assert site.client.post(local(link), data={}).status_code == 200
    sub = site.room.app.store.subscriber("reader@example.org")
    assert sub is not None and sub.categories == ()  # nothing ticked: everything
    assert site.client.get("/preferences?token=forged").status_code == 400


def test_only_the_subscriber_brings_an_address_back(site: Site) -> None:
    site.room.subscribe("back@example.org", state="unsubscribed")
    r = site.subscribe("back@example.org")
    assert r.status_code == 200 and "Check your inbox" in r.text
    sub = site.room.app.store.subscriber("back@example.org")
    assert sub is not None and sub.state.value == "unsubscribed"  # asking is not confirming
    site.confirm(site.confirmation_link("back@example.org"))
    sub = site.room.app.store.subscriber("back@example.org")
    assert sub is not None and sub.state.value == "confirmed"


def test_the_whole_loop_from_the_form_to_a_digest_that_skips_the_address(site: Site, server: SmtpTestServer) -> None:
    room = site.room
    room.subscribe("stays@example.org")
    # subscribe → confirmation e-mail at the SMTP server → follow its link → confirmed
    assert site.subscribe("reader@example.org").status_code == 200
    assert site.confirm(site.confirmation_link("reader@example.org")).status_code == 200
    # → a digest reaches them
    room.publish([Item(key="k1", title="Paper one")], at=MONDAY + timedelta(days=1))
    room.clock.now = MONDAY + timedelta(days=7)
    assert "2 sent" in send_digest(room.app)
    digest = by_recipient(server)["reader@example.org"][-1]
    assert digest["Subject"].startswith("ShortScience weekly #1")
    # → a one-click POST to its List-Unsubscribe URL, as the mailbox provider makes it
    url = re.fullmatch(r"<(\S+)>", digest["List-Unsubscribe"])
    assert url and digest["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    r = site.client.post(
        local(url.group(1)),
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200
    # → the next digest skips that address
    room.publish([Item(key="k1", title="Paper one"), Item(key="k2", title="Paper two")], at=MONDAY + timedelta(days=8))
    room.clock.now = MONDAY + timedelta(days=14)
    assert "1 sent" in send_digest(room.app)
    got = by_recipient(server)
    assert len(got["reader@example.org"]) == 2  # the confirmation and the first digest, nothing after
    assert [m["Subject"] for m in got["stays@example.org"]] == [
        "ShortScience weekly #1: 2–9 Nov 2026",
        "ShortScience weekly #2: 9–16 Nov 2026",
    ]
