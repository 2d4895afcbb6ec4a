"""The digest and the subscription pages in a real browser (Debian's chromium through Playwright).

Screenshots are kept in tests/artifacts/ (digest.png, subscribe.png, subscribe-sent.png, confirm.png,
unsubscribe.png, unsubscribe-done.png) for a human to look at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from browser_util import ARTIFACTS, MARKS, chromium, served
from digest_util import MONDAY, Newsroom, digest_settings, parse, parts
from feeds_util import Item
from smtp_server import SmtpTestServer

from bot.digest import digest_items
from bot.mail import Digest
from bot.mail.tokens import signed_link
from bot.subscribe import routes
from bot.web import create_app

pytestmark = MARKS


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[str, Newsroom, SmtpTestServer]]:
    """The web app on a real port (uvicorn), its SMTP server, and the newsroom behind both (SQLite)."""
    rooms: list[Newsroom] = []
    with SmtpTestServer() as server:

        def make(url: str) -> Any:
            settings = digest_settings(
                tmp_path, f"sqlite:///{tmp_path / 'bot.sqlite3'}", server, env={"PUBLIC_BASE_URL": url}
            )
            rooms.append(Newsroom.open(settings, start=MONDAY))
            return create_app(settings, extra_routes=routes(rooms[0].app))

        try:
            with served(make) as url:
                yield url, rooms[0], server
        finally:
            for room in rooms:
                room.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def test_digest_html_in_chromium(tmp_path: Path, browser: Any) -> None:
    room = Newsroom.open(digest_settings(tmp_path, f"sqlite:///{tmp_path / 'bot.sqlite3'}"), start=MONDAY)
    room.papers({"1803.08494": ("cs.CV", "cs.LG")})
    room.publish(
        [
            Item(
                key="journals/corr/1803.08494",
                title="Group Normalization",
                votes=12,
                arxiv="1803.08494",
                text=(
                    "Batch norm fails with small batches. **Group norm** divides channels into groups: $\\mu_i = "
                    "\\frac{1}{m}\\sum x_k$."
                ),
            ),
            Item(
                key="conf/nips/VaswaniSPUJGKP17",
                title="Attention Is All You Need",
                author="Jürgen",
                votes=30,
                text="A transformer uses attention only. " * 12,
            ),
        ]
    )
    summaries = room.app.store.latest_summaries()
    items = tuple(digest_items(room.app, summaries))
    d = Digest(issue=7, period_start=MONDAY - timedelta(days=7), period_end=MONDAY, items=items)
    address = "reader@example.org"
    email = room.app.composer.compose(d).for_recipient(
        address,
        signed_link(room.app.settings, "unsubscribe", address),
        signed_link(room.app.settings, "preferences", address),
        now=MONDAY,
    )
    _, html = parts(email.message)
    room.close()
    page = browser.new_page(viewport={"width": 1024, "height": 800}, java_script_enabled=False)
    page.route("**/*", lambda route: route.abort())  # nothing may load from elsewhere: readable without images
    page.set_content(html)
    width = page.eval_on_selector("table.container", "t => t.getBoundingClientRect().width")
    assert 300 < width <= 600
    assert page.locator("text=Unsubscribe").first.is_visible()
    assert page.locator("h2.title").all_inner_texts() == [s.summary.title for s in summaries]
    assert page.eval_on_selector_all("img", "imgs => imgs.length") == 0
    page.screenshot(path=str(ARTIFACTS / "digest.png"), full_page=True)
    # A phone: the 600px column shrinks with it.
    page.set_viewport_size({"width": 375, "height": 800})
    assert page.eval_on_selector("table.container", "t => t.getBoundingClientRect().width") <= 375


def test_subscribe_confirm_unsubscribe_pages_in_chromium(
    live: tuple[str, Newsroom, SmtpTestServer], browser: Any
) -> None:
    url, room, server = live
    page = browser.new_page(viewport={"width": 900, "height": 900})
    response = page.goto(f"{url}/subscribe")
    assert response is not None and response.status == 200
    honeypot = page.locator("input[name=website]").bounding_box()
    assert honeypot is not None and honeypot["x"] + honeypot["width"] < 0  # off-screen for people
    page.fill("input[name=email]", "reader@example.org")
    page.check("input[name=category][value='cs.CV']")
    page.screenshot(path=str(ARTIFACTS / "subscribe.png"), full_page=True)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Check your inbox"
    page.screenshot(path=str(ARTIFACTS / "subscribe-sent.png"), full_page=True)

    text, _ = parts(parse(server.messages[0]))
    link = re.search(r"^(http://127\.0\.0\.1:\d+/confirm\?token=\S+)$", text, re.M)
    assert link
    page.goto(link.group(1))
    assert page.locator("h1").inner_text() == "Confirm your subscription"
    page.screenshot(path=str(ARTIFACTS / "confirm-ask.png"), full_page=True)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "You are subscribed"
    page.screenshot(path=str(ARTIFACTS / "confirm.png"), full_page=True)
    sub = room.app.store.subscriber("reader@example.org")
    assert sub is not None and sub.state.value == "confirmed" and sub.categories == ("cs.CV",)

    page.click("text=Unsubscribe")
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Unsubscribe from ShortScience weekly?"
    page.screenshot(path=str(ARTIFACTS / "unsubscribe.png"), full_page=True)
    with page.expect_response(lambda r: "/unsubscribe" in r.url and r.request.method == "POST") as answer:
        page.click("button[type=submit]")
    assert answer.value.status == 200
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "You are unsubscribed"
    page.screenshot(path=str(ARTIFACTS / "unsubscribe-done.png"), full_page=True)
    assert page.context.cookies() == []
    sub = room.app.store.subscriber("reader@example.org")
    assert sub is not None and sub.state.value == "unsubscribed"
