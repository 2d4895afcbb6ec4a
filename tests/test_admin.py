"""The operator console in process (Starlette's TestClient): off without OPERATOR_PASSWORD_HASH, login and its
limits, sessions, CSRF, no caching, the audit log, the actions, and `operator hash-password`."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from admin_util import PASSWORD, console_app, console_settings, password_hash, troubled_room
from conftest import REPO
from digest_util import Newsroom
from starlette.exceptions import StarletteDeprecationWarning

from bot.admin import auth
from bot.records import DeliveryState

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

#: every page of the console a logged-in operator can open
PAGES = [
    "/admin",
    "/admin/attention",
    "/admin/summary/1",
    "/admin/digest",
    "/admin/digest?q=someone@example.org",
    "/admin/digest/preview",
    "/admin/charts",
    "/admin/charts?days=90",
    "/admin/audit",
]
HTTP = {"PUBLIC_BASE_URL": "http://testserver"}  # TestClient speaks http: a Secure cookie would not come back


@pytest.fixture
def room(tmp_path: Path, db_url: str) -> Iterator[tuple[Newsroom, dict[str, int]]]:
    room, marks = troubled_room(console_settings(tmp_path, db_url, env=HTTP))
    yield room, marks
    room.close()


def client_for(room: Newsroom) -> TestClient:
    return TestClient(console_app(room), follow_redirects=False)


def login(client: TestClient, password: str = PASSWORD) -> Any:
    return client.post("/admin/login", data={"password": password})


def csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def test_without_a_password_hash_every_admin_url_is_404(tmp_path: Path, db_url: str) -> None:
    room, _ = troubled_room(console_settings(tmp_path, db_url, enabled=False))
    # Even a feed file that happens to lie under admin/ in the public folder is not served there.
    stray = room.app.settings.public_dir / "admin" / "feed.rss"
    stray.parent.mkdir(parents=True)
    stray.write_text("<rss/>")
    try:
        client = client_for(room)
        for path in [*PAGES, "/admin/login", "/admin/", "/admin/feed.rss", "/admin/act", "/admin/logout"]:
            for method in ("GET", "POST"):
                answer = client.request(method, path, data={"password": PASSWORD} if method == "POST" else None)
                assert answer.status_code == 404, (method, path, answer.status_code)
    finally:
        room.close()


def test_pages_need_a_login_and_are_never_cached(room: tuple[Newsroom, dict[str, int]]) -> None:
    client = client_for(room[0])
    for path in PAGES:
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/admin/login", path
        assert answer.headers["cache-control"] == "no-store"
    assert login(client).status_code == 303
    for path in [*PAGES, "/admin/login", "/admin/nothing-here"]:
        answer = client.get(path)
        assert answer.headers["cache-control"] == "no-store", path
        assert answer.headers["x-content-type-options"] == "nosniff", path
        assert answer.status_code == (404 if path.endswith("nothing-here") else 200), path
    assert "frame-ancestors 'none'" in client.get("/admin").headers["content-security-policy"]
    preview = client.get("/admin/digest/preview")
    assert (
        "sandbox" in preview.headers["content-security-policy"] and preview.headers["x-frame-options"] == "SAMEORIGIN"
    )
    assert '<iframe src="/admin/digest/preview" sandbox=""' in client.get("/admin/digest").text


def test_login_sets_a_strict_cookie_and_every_login_is_audited(room: tuple[Newsroom, dict[str, int]]) -> None:
    r, _ = room
    client = client_for(r)
    assert login(client, "wrong").status_code == 401
    answer = login(client)
    cookie = answer.headers["set-cookie"]
    for part in ("HttpOnly", "SameSite=Strict", "Path=/admin", "Max-Age=3600"):
        assert part in cookie
    assert "Secure" not in cookie  # PUBLIC_BASE_URL is http here
    actions = [(e.action, e.client) for e in r.app.store.audit_entries()]
    assert actions == [("login", "testclient"), ("login_failed", "testclient")]
    assert r.app.store.audit_entries()[0].target.startswith("session ")


def test_the_cookie_is_secure_behind_https(tmp_path: Path, db_url: str) -> None:
    settings = console_settings(tmp_path, db_url)
    value, _ = auth.new_session_cookie(settings, now=Newsroom.open(settings).clock())
    assert "; Secure" in auth.cookie_header(settings, value, max_age=60)


def test_lockout_per_client_then_per_account(tmp_path: Path, db_url: str) -> None:
    room, _ = troubled_room(
        console_settings(
            tmp_path,
            db_url,
            env={**HTTP, "FORWARDED_ALLOW_IPS": "*"},
            admin_failures_per_client=2,
            admin_failures_per_account=3,
            admin_lockout_minutes=10,
        )
    )
    try:
        client = client_for(room)

        def attempt(ip: str, password: str = "wrong") -> int:
            return int(
                client.post("/admin/login", data={"password": password}, headers={"X-Forwarded-For": ip}).status_code
            )

        assert [attempt("203.0.113.1"), attempt("203.0.113.1")] == [401, 401]
        assert attempt("203.0.113.1", PASSWORD) == 429  # locked: even the right password is not tried
        assert attempt("198.51.100.7") == 401  # another client still may: third failure for the account
        assert attempt("192.0.2.9", PASSWORD) == 429  # the account is locked for everyone
        assert [attempt("192.0.2.9") for _ in range(5)] == [429] * 5  # refused again: one audit line a minute
        room.clock.advance(minutes=11)
        assert attempt("203.0.113.1", PASSWORD) == 303
        refused = [e for e in room.app.store.audit_entries() if e.action == "login_refused"]
        assert [e.client for e in refused] == ["192.0.2.9", "203.0.113.1"] and "account" in refused[0].detail
    finally:
        room.close()


def test_an_expired_or_forged_session_is_sent_to_the_login(room: tuple[Newsroom, dict[str, int]]) -> None:
    r, _ = room
    client = client_for(r)
    login(client)
    assert client.get("/admin").status_code == 200
    r.clock.advance(minutes=61)
    assert client.get("/admin").headers.get("location") == "/admin/login"
    forged = TestClient(console_app(r), follow_redirects=False, cookies={auth.SESSION_COOKIE: "abc.def.ghi"})
    assert forged.get("/admin").status_code == 303


def test_actions_need_the_csrf_token_and_a_confirmation(room: tuple[Newsroom, dict[str, int]]) -> None:
    r, marks = room
    client = client_for(r)
    login(client)
    token = csrf(client.get("/admin/attention").text)
    target = str(marks["failed"])
    assert client.post("/admin/act", data={"action": "retry", "target": target, "confirm": "yes"}).status_code == 403
    assert (
        client.post(
            "/admin/act", data={"action": "retry", "target": target, "confirm": "yes", "csrf": token + "x"}
        ).status_code
        == 403
    )
    assert r.app.store.delivery(marks["failed"]).state is DeliveryState.FAILED
    asked = client.post("/admin/act", data={"action": "retry", "target": target, "csrf": token})
    assert asked.status_code == 200 and "Confirm" in asked.text and 'name="confirm" value="yes"' in asked.text
    assert r.app.store.delivery(marks["failed"]).state is DeliveryState.FAILED
    done = client.post("/admin/act", data={"action": "retry", "target": target, "csrf": token, "confirm": "yes"})
    assert done.status_code == 200 and "queued again" in done.text
    assert r.app.store.delivery(marks["failed"]).state is DeliveryState.PENDING
    entries = r.app.store.audit_entries()
    assert (entries[0].action, entries[0].target, entries[0].client) == ("retry", f"delivery {target}", "testclient")
    assert entries[1].action == "csrf_refused"
    assert "retry" in client.get("/admin/audit").text


def test_pause_and_resume_a_channel(room: tuple[Newsroom, dict[str, int]]) -> None:
    from bot.channels import CHANNELS

    r, _ = room
    client = client_for(r)
    login(client)
    token = csrf(client.get("/admin").text)
    channel = CHANNELS[0]
    client.post("/admin/act", data={"action": "pause", "target": channel, "csrf": token, "confirm": "yes"})
    assert channel in r.app.store.paused_channels()
    assert "failing since" in client.get("/admin").text
    client.post("/admin/act", data={"action": "resume", "target": channel, "csrf": token, "confirm": "yes"})
    assert channel not in r.app.store.paused_channels()
    bad = client.post(
        "/admin/act", data={"action": "pause", "target": "no-such-channel", "csrf": token, "confirm": "yes"}
    )
    assert bad.status_code == 400
    assert [e.action for e in r.app.store.audit_entries()[:2]] == ["resume", "pause"]


def test_logout_ends_the_session(room: tuple[Newsroom, dict[str, int]]) -> None:
    r, _ = room
    client = client_for(r)
    login(client)
    copied = client.cookies[auth.SESSION_COOKIE]
    token = csrf(client.get("/admin").text)
    out = client.post("/admin/logout", data={"csrf": token})
    assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
    assert client.get("/admin").status_code == 303
    # A copy of the cookie kept from before (a stolen one, say) dies with the logout too.
    kept = TestClient(console_app(r), follow_redirects=False, cookies={auth.SESSION_COOKIE: copied})
    assert kept.get("/admin").status_code == 303
    logout, login_ = r.app.store.audit_entries()[:2]
    assert logout.action == "logout" and login_.action == "login" and logout.target == login_.target


def test_pages_show_what_status_shows(room: tuple[Newsroom, dict[str, int]]) -> None:
    r, marks = room
    r.subscribe("reader@example.org")
    r.subscribe("other@example.org", state="pending")
    client = client_for(r)
    login(client)
    overview = client.get("/admin").text
    assert "confirmed 1" in overview and "pending 1" in overview  # the digest section of `status`
    assert "reachable" in overview and "SECRET_KEY</td><td>set" in overview
    attention = client.get("/admin/attention").text
    for state, delivery_id in marks.items():
        assert f'id="delivery-{delivery_id}"' in attention and state in attention
    assert "duplicate content" in attention and "HTTP 503" in attention
    summary = client.get("/admin/summary/1").text
    assert "Self-attention &lt;b&gt;replaces&lt;/b&gt;" in summary  # the source text, escaped
    assert "weighted length" in summary or "/280" in summary
    assert client.get("/admin/summary/999").status_code == 404
    digest = client.get("/admin/digest?q=READER@example.org").text
    assert "reader@example.org" in digest and "other@example.org" not in digest
    assert "other@example.org" in client.get("/admin/digest?q=oth").text
    assert "at least 3 characters" in client.get("/admin/digest?q=o").text
    r.clock.advance(hours=1)  # the summaries a poll saw before now are the next issue's
    assert "Attention &lt;Is&gt; All You Need" in client.get("/admin/digest/preview").text
    assert "#1: 2 summaries first seen" in client.get("/admin/digest").text


def test_the_login_lock_decision() -> None:
    from datetime import UTC, datetime

    from conftest import make_settings

    settings = make_settings(Path("/nonexistent"), web={"admin_failures_per_client": 3, "admin_lockout_minutes": 10})
    now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    fails = [now - timedelta(minutes=m) for m in (9, 5, 1)]
    locked = auth.login_lockout(fails, fails, settings, now=now)
    assert locked is not None and locked.scope == "client" and locked.until == now + timedelta(minutes=1)
    assert auth.login_lockout(fails[1:], fails[1:], settings, now=now) is None
    assert auth.login_lockout(fails, fails, settings, now=now + timedelta(minutes=2)) is None


def test_hash_password_from_stdin_and_refusals() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bot", "operator", "hash-password"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    printed = run.stdout.strip()
    assert printed.startswith("$argon2id$") and PASSWORD not in run.stdout + run.stderr
    assert auth.password_matches(printed, PASSWORD) and not auth.password_matches(printed, PASSWORD + "!")
    empty = subprocess.run(
        [sys.executable, "-m", "bot", "operator", "hash-password"],
        input="",
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert empty.returncode == 1 and empty.stdout == "" and "empty" in empty.stderr


def test_a_hash_that_is_not_argon2_is_refused_at_start(tmp_path: Path) -> None:
    from conftest import make_settings

    from bot.errors import ConfigError

    with pytest.raises(ConfigError, match="OPERATOR_PASSWORD_HASH is invalid") as info:
        make_settings(tmp_path, {"OPERATOR_PASSWORD_HASH": "my-plain-password"})
    assert "my-plain-password" not in str(info.value)
    assert make_settings(tmp_path, {"OPERATOR_PASSWORD_HASH": password_hash()}).env.operator_password_hash


def test_past_issues_show_their_figures(room: tuple[Newsroom, dict[str, int]]) -> None:
    from bot.digest import send_digest

    r, _ = room
    r.subscribe("reader@example.org")
    r.subscribe("second@example.org")
    r.clock.advance(hours=1)
    send_digest(r.app, end_now=True)  # to the outbox: no SMTP_URL
    client = client_for(r)
    login(client)
    page = client.get("/admin/digest").text
    assert "digest #1 (" in page and "2 recipients" in page and "2 sent, 0 failed" in page
    assert "#2: " in page  # the next one


def test_the_summary_page_links_the_published_post(room: tuple[Newsroom, dict[str, int]]) -> None:
    from bot.records import Published

    r, marks = room
    store = r.app.store
    sent = next(d for d in store.deliveries(limit=10) if d.id not in marks.values())
    store.mark_sent(
        sent.id,
        Published(post_id="1790000000000000001", url="https://social.example/status/1790000000000000001"),
        now=r.clock(),
    )
    client = client_for(r)
    login(client)
    page = client.get(f"/admin/summary/{sent.summary_id}").text
    assert (
        '<a href="https://social.example/status/1790000000000000001" rel="noreferrer">1790000000000000001</a>' in page
    )


def _on_a_terminal(*answers: str) -> tuple[int, str]:
    """`operator hash-password` on a pseudo-terminal, typing `answers` at its prompts; (exit code, what the terminal
    showed)."""
    import os
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal is its controlling tty, as for a person at a shell
        os.chdir(REPO)
        os.execv(sys.executable, [sys.executable, "-m", "bot", "operator", "hash-password"])
    shown = b""
    pending = list(answers)
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
        if pending and shown.rstrip().endswith(b":"):
            os.write(fd, pending.pop(0).encode() + b"\n")
            shown += b"<typed>"
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode("utf-8", "replace")


def test_hash_password_on_a_terminal_asks_twice_without_echo() -> None:
    code, shown = _on_a_terminal(PASSWORD, PASSWORD)
    assert code == 0, shown
    assert "console password:" in shown and "again:" in shown and PASSWORD not in shown  # no echo
    printed = re.search(r"\$argon2id\$\S+", shown)
    assert printed and auth.password_matches(printed.group(0), PASSWORD)
    code, shown = _on_a_terminal(PASSWORD, PASSWORD + "x")
    assert code == 1 and "differ" in shown and "$argon2" not in shown


def test_the_charts_page_shows_the_four_charts_over_30_or_90_days(room: tuple[Newsroom, dict[str, int]]) -> None:
    from lxml import html as lxml_html

    r, _ = room
    client = client_for(r)
    login(client)
    for query, days in (("", 30), ("?days=90", 90), ("?days=100000", 30)):
        page = client.get("/admin/charts" + query)
        assert page.status_code == 200 and f"the last {days} days" in page.text
        doc = lxml_html.fromstring(page.text)
        charts = doc.xpath("//section[@class='chart']")
        assert len(charts) == 4 and all(c.xpath(".//*[local-name()='svg']") for c in charts)
        assert "<script" not in page.text
