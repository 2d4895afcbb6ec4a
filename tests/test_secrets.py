"""Every secret set to a marker value through a full run with failures: no marker anywhere it could show
(issue 7, reliability test 6).

`python -m bot` processes run with every secret the settings declare (SECRET_KEY
and each channel's secret variables, read from the registry) and the passwords
inside SMTP_URL and DATABASE_URL set to markers (the passwords with characters
that must be URL-quoted, so both spellings are looked for). X answers 401, the
Graph API 500 to posts and 190 to `check`, Mastodon 401; the Bluesky PDS takes
the app password, so the session it hands out (kept in the database) is looked
for too; all are unreachable for a second `check`, the SMTP server refuses the login, the feed
answers 500, the database is unreachable or its URL broken (SMTP_URL too). No
marker may appear in any output line (text and JSON logs at DEBUG,
`status`, `check`, error messages), in what the store keeps, or in any file
the bot writes. The stand-ins must have received the markers: proof that they
really went through the run.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
import sqlalchemy as sa
from conftest import REPO
from env_util import clean_environ
from fake_bluesky import FakeBluesky
from fake_graph import FakeGraph, html_error
from fake_mastodon import FakeMastodon
from fake_x import FakeX
from feeds_util import items, site_feed
from http_util import Reply, ScriptedServer
from smtp_server import SmtpTestServer

from bot.settings import secret_fields

SMTP_USER = "digest-sender"
SMTP_PASSWORD = "mk/Smtp:P@ss#0x2a"  # needs quoting in a URL: both spellings must stay hidden
DB_PASSWORD = "mk/Db:P@ss?0x4c"
#: the shape some networks' clients expect of a value (an X access token starts with the user id)
SHAPES = {
    "TWITTER_ACCESS_TOKEN": "1-{}",
    "FACEBOOK_PAGE_ACCESS_TOKEN": "EAA{}",
    # The settings refuse a password hash that is not Argon2-shaped.
    "OPERATOR_PASSWORD_HASH": "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ${}",
}


def marker(name: str) -> str:
    """A value nobody could mistake: 'mkMastodonAccessToken0x…', shaped as its client expects."""
    core = "mk" + name.title().replace("_", "") + f"0x{zlib.crc32(name.encode()):08x}"
    return SHAPES.get(name, "{}").format(core)


#: every secret, read from the settings (the registry's channels' secret variables), each set to a marker
MARKERS = {name.upper(): marker(name.upper()) for name in secret_fields()}
#: the live tokens a network handed the bot (Bluesky's stored session): as secret as the markers
SESSION_TOKENS: dict[str, str] = {}


def forms() -> dict[str, str]:
    """Every spelling of every secret that must never show: as set, URL-quoted, and as SMTP AUTH sends it."""
    out = {name: value for name, value in {**MARKERS, **SESSION_TOKENS}.items()}
    for name, password in (("SMTP password", SMTP_PASSWORD), ("DATABASE password", DB_PASSWORD)):
        out[name] = password
        out[f"{name}, URL-quoted"] = quote(password, safe="")
        out[f"{name}, base64"] = base64.b64encode(password.encode()).decode()
    out["SMTP AUTH PLAIN"] = base64.b64encode(f"\0{SMTP_USER}\0{SMTP_PASSWORD}".encode()).decode()
    # The distinctive middle of each marker too, in case a message cuts or re-encodes its ends.
    out.update({f"{name} (core)": value[2:-4] for name, value in {**MARKERS, **SESSION_TOKENS}.items()})
    return out


def leaks(text: str) -> list[str]:
    return [name for name, value in forms().items() if value in text]


def with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user = parts.username or "postgres"
    host = parts.hostname or ""
    netloc = f"{user}:{quote(password, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class Runs:
    """Runs `python -m bot` with a base environment; keeps every output for the final check."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.outputs: list[tuple[str, str]] = []
        self.count = 0

    def __call__(self, *args: str, expect: int | None = 0, **env: str) -> str:
        # Alternate the log format, so both text and JSON lines go through the failure paths.
        fmt = "json" if self.count % 2 else "text"
        self.count += 1
        argv = [sys.executable, "-m", "bot", "--log-level", "DEBUG", "--log-format", fmt, *args]
        run = subprocess.run(argv, env={**self.env, **env}, capture_output=True, text=True, timeout=120, cwd=REPO)
        output = run.stdout + run.stderr
        self.outputs.append((" ".join(args) + f" ({fmt})", output))
        if expect is not None:
            assert run.returncode == expect, f"{' '.join(args)} exited {run.returncode}:\n{output}"
        return output


@pytest.fixture
def stand_ins() -> Iterator[tuple[FakeX, FakeGraph, SmtpTestServer, ScriptedServer]]:
    # Each stand-in expects other credentials than the markers: every call is refused.
    with (
        FakeX(consumer_key="the-real-key", access_token="the-real-token") as x,
        FakeGraph(page_id="424242", access_token="the-real-page-token") as graph,
        SmtpTestServer(user=SMTP_USER, password="the-real-password") as smtp,
        ScriptedServer(
            default=Reply(500, b"<html>Internal Server Error</html>", {"Content-Type": "text/html"})
        ) as feed,
    ):
        yield x, graph, smtp, feed  # type: ignore[misc]


@pytest.fixture
def social() -> Iterator[tuple[FakeMastodon, FakeBluesky]]:
    # Mastodon refuses the marker token; the PDS takes the marker app password, so the bot
    # logs in and keeps a session (live tokens) in the database: those must not show either.
    with (
        FakeMastodon(token="the-real-mastodon-token") as mastodon,
        FakeBluesky(handle="shortscience.test", password=MARKERS["BLUESKY_APP_PASSWORD"]) as pds,
    ):
        yield mastodon, pds  # type: ignore[misc]


@pytest.mark.slow
def test_no_secret_shows_anywhere_through_a_run_full_of_failures(
    db_url: str,
    tmp_path: Path,
    stand_ins: tuple[FakeX, FakeGraph, SmtpTestServer, ScriptedServer],
    social: tuple[FakeMastodon, FakeBluesky],
) -> None:
    x, graph, smtp, failing_feed = stand_ins
    mastodon, pds = social
    SESSION_TOKENS.clear()
    graph.fail(html_error(500, path="/"), times=2)  # the two posts of the first dispatch
    feed = tmp_path / "feed.xml"
    feed.write_bytes(site_feed(items(3)))
    config = tmp_path / "bot.toml"
    config.write_text("[arxiv]\nenabled = false\n")  # no real network from tests
    database_url = with_password(db_url, DB_PASSWORD) if db_url.startswith("postgresql") else db_url
    env = clean_environ()
    env.update(
        MARKERS,
        BOT_DATA_DIR=str(tmp_path / "var"),
        BOT_CONFIG=str(config),
        DATABASE_URL=database_url,
        SHORTSCIENCE_FEED_URL=str(feed),
        TWITTER_API_BASE_URL=x.url,
        FACEBOOK_GRAPH_URL=graph.url + "/",
        FACEBOOK_PAGE_ID="424242",
        MASTODON_API_BASE_URL=mastodon.url,
        BLUESKY_HANDLE=pds.handle,
        BLUESKY_SERVICE_URL=pds.url,
        SMTP_URL=smtp.url(user=SMTP_USER, password=quote(SMTP_PASSWORD, safe="")),
        DIGEST_FROM="ShortScience weekly <digest@example.org>",
        PUBLIC_BASE_URL="https://bot.example.org",
    )
    bot = Runs(env)
    closed = "http://127.0.0.1:9"  # nothing listens there: connection refused

    bot("subscribers", "add", "reader@example.org", "--confirmed")
    bot("poll", "--backfill", "2")
    dispatched = bot("dispatch")  # X: 401 → the channel pauses; Graph: 500 → retried later
    bot("check", expect=1)  # both refuse the credentials (X 401, Graph 190)
    bot(
        "check",
        expect=1,
        TWITTER_API_BASE_URL=closed,
        FACEBOOK_GRAPH_URL=closed + "/",
        MASTODON_API_BASE_URL=closed,
        BLUESKY_SERVICE_URL=closed,
    )
    mailed = bot("digest", "send", "--now", expect=None)  # the SMTP server refuses the login
    bot("poll", expect=1, SHORTSCIENCE_FEED_URL=failing_feed.url + "/feed.xml")
    bot("run", "--once", expect=1, SHORTSCIENCE_FEED_URL=failing_feed.url + "/feed.xml")
    status = bot("status")
    # The database unreachable, or its URL broken, with the password in it.
    password = quote(DB_PASSWORD, safe="")
    bot("status", expect=1, DATABASE_URL=f"postgresql://bot:{password}@127.0.0.1:9/bot")
    for broken in (
        f"postgresql://bot:{password}@127.0.0.1:notaport/bot",
        f"postgresql://bot:{password}@[::1/bot",
        f"mysql://bot:{password}@localhost/bot",
    ):
        assert "DATABASE_URL is invalid" in bot("status", expect=2, DATABASE_URL=broken)
    assert "SMTP_URL is invalid" in bot(
        "status", expect=2, SMTP_URL=f"smtp://{SMTP_USER}:{quote(SMTP_PASSWORD, safe='')}@"
    )

    # The run did fail where it was meant to, and the markers did reach the stand-ins.
    assert "PAUSED: X rejected the credentials (401)" in status and "last error" in status
    assert "(facebook) will be retried" in dispatched and "500" in dispatched
    assert graph.faults == []  # both 500s were served
    assert {
        "MASTODON_ACCESS_TOKEN",
        "BLUESKY_APP_PASSWORD",
        "TWITTER_API_KEY",
        "FACEBOOK_PAGE_ACCESS_TOKEN",
        "SECRET_KEY",
    } <= set(MARKERS)
    assert any(MARKERS["TWITTER_API_KEY"] in r.headers.get("authorization", "") for r in x.requests)
    assert any(
        MARKERS["FACEBOOK_PAGE_ACCESS_TOKEN"] in (r.body.decode("latin-1") + str(r.query)) for r in graph.requests
    )
    assert smtp.auth_attempts and not any(ok for _, ok in smtp.auth_attempts) and "535" in mailed
    assert failing_feed.requests
    assert "PAUSED: Mastodon API refused (401)" in status
    assert any(
        r.headers.get("authorization") == "Bearer " + MARKERS["MASTODON_ACCESS_TOKEN"] for r in mastodon.requests
    )
    assert pds.sessions_created == 1 and len(pds.records) == 2  # one login; the session was taken up again after
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT channel FROM channel_sessions")).scalars().all() == ["bluesky"]
    finally:
        engine.dispose()
    tokens = [token for pair in pds.issued for token in pair.values()]
    SESSION_TOKENS.update({f"Bluesky session token {i}": token for i, token in enumerate(tokens)})

    # DEBUG shows the bot's own lines, not every block rule markdown-it tries.
    assert not any("markdown_it" in output for _, output in bot.outputs)
    found = {name: leaks(output) for name, output in bot.outputs if leaks(output)}
    assert found == {}, {name: (found[name], next(o for n, o in bot.outputs if n == name)[:3000]) for name in found}
    assert leaks(dump_database(database_url)) == []
    for path in (tmp_path / "var").rglob("*"):
        if path.is_file() and not path.name.startswith("bot.sqlite3"):
            assert leaks(path.read_text(encoding="utf-8", errors="replace")) == [], path


def dump_database(url: str) -> str:
    """Every value of every table, as text."""
    engine = sa.create_engine(url)
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        out = []
        with engine.connect() as conn:
            for table in meta.sorted_tables:
                out += [repr(tuple(row)) for row in conn.execute(sa.select(table))]
        return "\n".join(out)
    finally:
        engine.dispose()


def test_url_passwords_are_redacted_in_both_spellings() -> None:
    """As written in the URL ("%40") and as sent to the server ("@"): a message may quote either."""
    from bot.logs import RedactingFilter
    from bot.settings import load_settings

    settings = load_settings(
        {
            "BOT_CONFIG": str(REPO / "config" / "bot.toml"),
            "SMTP_URL": f"smtp://{SMTP_USER}:{quote(SMTP_PASSWORD, safe='')}@127.0.0.1:2525",
            "DIGEST_FROM": "digest@example.org",
            "DATABASE_URL": f"postgresql://bot:{quote(DB_PASSWORD, safe='')}@127.0.0.1/bot",
            **MARKERS,
        }
    )
    redact = RedactingFilter(settings.secrets()).redact
    for secret in (
        SMTP_PASSWORD,
        quote(SMTP_PASSWORD, safe=""),
        DB_PASSWORD,
        quote(DB_PASSWORD, safe=""),
        *MARKERS.values(),
    ):
        assert redact(f"login refused for {secret}!") == "login refused for ***!"


def test_no_secret_shows_on_any_console_page(db_url: str, tmp_path: Path) -> None:
    """Every page of the operator console, with every secret set to a marker: credentials read "set", never their
    value."""
    import re
    import warnings

    from admin_util import PASSWORD, console_app, console_settings, password_hash, troubled_room
    from starlette.exceptions import StarletteDeprecationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from starlette.testclient import TestClient

    database_url = with_password(db_url, DB_PASSWORD) if db_url.startswith("postgresql") else db_url
    # The console needs a hash its password matches: the real one stands in for the marker (and is looked for too).
    env = {
        **{k: v for k, v in MARKERS.items() if k != "OPERATOR_PASSWORD_HASH"},
        "FACEBOOK_PAGE_ID": "424242",
        "PUBLIC_BASE_URL": "http://testserver",
        "SMTP_URL": f"smtp://{SMTP_USER}:{quote(SMTP_PASSWORD, safe='')}@127.0.0.1:9",
    }
    room, _ = troubled_room(console_settings(tmp_path, database_url, env=env))
    try:
        client = TestClient(console_app(room), follow_redirects=False)
        pages = {"/admin/login": client.get("/admin/login").text}
        assert client.post("/admin/login", data={"password": PASSWORD}).status_code == 303
        for path in (
            "/admin",
            "/admin/attention",
            "/admin/summary/1",
            "/admin/summary/2",
            "/admin/digest",
            "/admin/digest?q=reader@example.org",
            "/admin/digest/preview",
            "/admin/charts",
            "/admin/audit",
        ):
            answer = client.get(path)
            assert answer.status_code == 200, path
            pages[path] = answer.text
        token = re.search(r'name="csrf" value="([^"]+)"', pages["/admin"])
        assert token
        pages["confirm"] = client.post(
            "/admin/act", data={"action": "skip", "target": "1", "csrf": token.group(1)}
        ).text
        pages["done"] = client.post(
            "/admin/act", data={"action": "skip", "target": "1", "csrf": token.group(1), "confirm": "yes"}
        ).text
        assert "live" in pages["/admin"] and "SMTP_URL</td><td>set" in pages["/admin"]  # the credentials are in use
        hidden = {**forms(), "OPERATOR_PASSWORD_HASH": password_hash(), "console password": PASSWORD}
        found = {path: [name for name, value in hidden.items() if value in text] for path, text in pages.items()}
        assert {path: names for path, names in found.items() if names} == {}
    finally:
        room.close()
