"""The operator console in a real browser (Debian's chromium through Playwright).

Screenshots of every page go to tests/artifacts/ (admin-login.png, admin-overview.png,
admin-attention.png, admin-confirm.png, admin-summary.png, admin-digest.png, admin-charts.png,
admin-charts-90.png, admin-audit.png, admin-overview-phone.png);
the overview's is copied to docs/console-overview.png for docs/operations.md.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from admin_util import PASSWORD, console_app, console_settings, delivery_state, troubled_room
from browser_util import ARTIFACTS, MARKS, chromium, served
from click.testing import CliRunner
from conftest import REPO
from digest_util import FROM, SECRET, Newsroom

from bot.records import DeliveryState

pytestmark = MARKS


class Live:
    def __init__(self, url: str, room: Newsroom, marks: dict[str, int], db: Path) -> None:
        self.url, self.room, self.marks, self.db = url, room, marks, db


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    rooms: list[tuple[Newsroom, dict[str, int]]] = []
    db = tmp_path / "bot.sqlite3"

    def make(url: str) -> Any:
        settings = console_settings(
            tmp_path, f"sqlite:///{db}", env={"PUBLIC_BASE_URL": url}, admin_failures_per_client=3
        )
        rooms.append(troubled_room(settings))
        return console_app(rooms[0][0])

    try:
        with served(make) as url:
            yield Live(url, rooms[0][0], rooms[0][1], db)
    finally:
        for room, _ in rooms:
            room.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def shot(page: Any, name: str) -> Path:
    path = ARTIFACTS / f"admin-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(page: Any, live: Live, password: str = PASSWORD) -> None:
    page.goto(live.url + "/admin/login")
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("button[type=submit]")
    page.wait_for_load_state()


def cli(db: Path, *args: str) -> str:
    """The CLI itself (`python -m bot …`'s click group), on another copy of the database."""
    from bot.cli import main

    env = {
        "DATABASE_URL": f"sqlite:///{db}",
        "BOT_CONFIG": str(REPO / "config" / "bot.toml"),
        "SECRET_KEY": SECRET,
        "DIGEST_FROM": FROM,
        "BOT_DATA_DIR": str(db.parent / "cli-var"),
    }
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_console_pages_and_actions_in_chromium(live: Live, browser: Any, tmp_path: Path) -> None:
    # A copy of the database as it is now: the CLI acts on it, the console on the original.
    twin = tmp_path / "twin.sqlite3"
    with sqlite3.connect(live.db) as src, sqlite3.connect(twin) as dst:
        src.backup(dst)
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(live.url + "/admin")
    assert page.url.endswith("/admin/login")
    shot(page, "login")
    log_in(page, live, "not the password")
    assert "Wrong password." in page.content()
    log_in(page, live)
    assert page.url == live.url + "/admin" and "Overview" in page.title()
    shutil.copyfile(shot(page, "overview"), REPO / "docs" / "console-overview.png")

    with page.expect_navigation():
        page.click("text=Needs attention")
    shot(page, "attention")
    failed, dead = live.marks["failed"], live.marks["dead"]
    for action, delivery_id in (("retry", failed), ("skip", dead)):
        row = page.locator(f"#delivery-{delivery_id}")
        row.locator(f"form:has(input[value={action}]) input[type=checkbox]").check()
        with page.expect_navigation():
            row.locator(f"form:has(input[value={action}]) button").click()
        assert "Done" in page.title(), page.content()
        page.goto(live.url + "/admin/attention")
    # Without the box ticked (the browser's `required` bypassed), the action is only asked about.
    page.evaluate("document.querySelectorAll('input[name=confirm]').forEach(e => e.required = false)")
    with page.expect_navigation():
        page.locator(f"#delivery-{live.marks['uncertain']} form:has(input[value=skip]) button").click()
    assert "Confirm" in page.title()
    shot(page, "confirm")
    assert live.room.app.store.delivery(live.marks["uncertain"]).state is DeliveryState.UNCERTAIN

    # The console changed the deliveries exactly as `retry ID` and `skip ID` change them.
    cli(twin, "retry", str(failed))
    cli(twin, "skip", str(dead))
    for delivery_id in (failed, dead):
        assert delivery_state(f"sqlite:///{live.db}", delivery_id) == delivery_state(f"sqlite:///{twin}", delivery_id)
    assert live.room.app.store.delivery(failed).state is DeliveryState.PENDING
    assert live.room.app.store.delivery(dead).state is DeliveryState.SKIPPED

    for name, path in (
        ("summary", "/admin/summary/1"),
        ("digest", "/admin/digest?q=nobody@example.org"),
        ("charts", "/admin/charts"),
        ("charts-90", "/admin/charts?days=90"),
        ("audit", "/admin/audit"),
    ):
        page.goto(live.url + path)
        assert page.title().endswith("ShortScience bot"), path
        shot(page, name)
    audit = page.content()
    assert "login_failed" in audit and "retry" in audit and f"delivery {dead}" in audit

    page.set_viewport_size({"width": 390, "height": 800})  # a phone
    page.goto(live.url + "/admin")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # wide tables scroll inside their box
    shot(page, "overview-phone")

    with page.expect_navigation():
        page.click("text=Log out")
    assert page.url.endswith("/admin/login")
    page.goto(live.url + "/admin")
    assert page.url.endswith("/admin/login")


def test_a_cross_site_post_is_refused(live: Live, browser: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    log_in(page, live)
    target = live.marks["failed"]
    form = (
        f'<form method="post" action="{live.url}/admin/act"><input name="action" value="skip">'
        f'<input name="target" value="{target}"><input name="confirm" value="yes"><button>go</button></form>'
    )
    # A form on a page elsewhere (no origin): SameSite=Strict keeps the session cookie home.
    page.goto("about:blank")
    page.set_content(form)
    with page.expect_navigation():
        page.click("button")
    assert page.url.endswith("/admin/login")
    # The same form inside the console's own origin, with the cookie: refused for want of the token.
    page.goto(live.url + "/admin")
    page.set_content(form)
    with page.expect_navigation():
        page.click("button")
    assert "expired or was sent from elsewhere" in page.content()
    # The same POST with the cookie, straight from the browser's request context: refused on the token.
    answer = context.request.post(
        live.url + "/admin/act", form={"action": "skip", "target": str(target), "confirm": "yes"}
    )
    assert answer.status == 403
    assert live.room.app.store.delivery(target).state is DeliveryState.FAILED
    context.close()


def test_lockout_after_repeated_failures(live: Live, browser: Any) -> None:
    page = browser.new_page()
    for _ in range(3):
        log_in(page, live, "guess")
        assert "Wrong password." in page.content()
    log_in(page, live)
    assert "Too many failed logins" in page.content() and page.url.endswith("/admin/login")


def test_session_expiry(live: Live, browser: Any) -> None:
    page = browser.new_page()
    log_in(page, live)
    assert page.url == live.url + "/admin"
    live.room.clock.advance(minutes=61)  # web.admin_session_minutes is 60
    page.goto(live.url + "/admin/attention")
    assert page.url.endswith("/admin/login")
