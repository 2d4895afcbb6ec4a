"""Issue 13, the web process: proxy headers, the secret key, confirm tokens, form limits, security
headers, unusual addresses, HOST and SIGTERM. Pages through Starlette's TestClient with a real SMTP
server (aiosmtpd); the process itself as a real `python -m bot web`."""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import make_settings
from digest_util import MONDAY, Newsroom, digest_settings, sends
from env_util import clean_environ
from feeds_util import Item
from procs_util import wait_until
from smtp_server import SmtpTestServer, free_port
from starlette.exceptions import StarletteDeprecationWarning
from test_subscribe import Site, local

from bot.digest import send_digest
from bot.errors import ConfigError
from bot.mail.tokens import signed_link
from bot.subscribe import routes
from bot.web import create_app
from bot.webguard import SECURITY_HEADERS, client_address, redact_token, trusted_proxies

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

REPO = Path(__file__).resolve().parent.parent


def open_site(
    tmp_path: Path, db_url: str, server: SmtpTestServer, *, peer: str = "203.0.113.7", env: dict[str, str] | None = None
) -> Site:
    room = Newsroom.open(digest_settings(tmp_path, db_url, server, env=env), start=MONDAY)
    site = Site(room, server)
    site.client = TestClient(
        create_app(room.app.settings, extra_routes=routes(room.app)), follow_redirects=False, client=(peer, 40000)
    )
    return site


@pytest.fixture
def server() -> Iterator[SmtpTestServer]:
    with SmtpTestServer() as s:
        yield s


@pytest.fixture
def site(tmp_path: Path, db_url: str, server: SmtpTestServer) -> Iterator[Site]:
    s = open_site(tmp_path, db_url, server)
    yield s
    s.client.close()
    s.room.close()


def random_ip(rng: random.Random) -> str:
    return ".".join(str(rng.randrange(1, 255)) for _ in range(4))


# ---- 1. X-Forwarded-For only from trusted proxies ----


def test_forwarded_for_from_an_untrusted_peer_does_not_dodge_the_client_limit(site: Site) -> None:
    rng = random.Random(13)
    codes = [
        site.client.post(
            "/subscribe",
            data={"email": f"p{i}@example.org", "website": ""},
            headers={"X-Forwarded-For": random_ip(rng)},
        ).status_code
        for i in range(12)
    ]
    assert codes[:10] == [200] * 10  # digest.confirm_per_client = 10 an hour
    assert codes[10:] == [429, 429]


def test_behind_a_trusted_proxy_the_address_it_appended_is_the_client(
    tmp_path: Path, db_url: str, server: SmtpTestServer
) -> None:
    site = open_site(tmp_path, db_url, server, peer="10.1.2.3", env={"FORWARDED_ALLOW_IPS": "10.0.0.0/8, 192.0.2.1"})
    rng = random.Random(7)
    try:

        def ask(i: int, forwarded: str) -> int:
            return int(
                site.client.post(
                    "/subscribe",
                    data={"email": f"t{i}@example.org", "website": ""},
                    headers={"X-Forwarded-For": forwarded},
                ).status_code
            )

        # Heroku's router appends what it saw to what the client wrote: only the right end counts.
        codes = [ask(i, f"{random_ip(rng)}, 198.51.100.9") for i in range(11)]
        assert codes == [200] * 10 + [429]
        assert ask(20, "198.51.100.10") == 200  # another client has its own count
        assert ask(21, "198.51.100.10, 198.51.100.9") == 429  # a forged left part changes nothing
    finally:
        site.client.close()
        site.room.close()


def test_client_address_walks_from_the_right_past_trusted_proxies() -> None:
    trusted = trusted_proxies("10.0.0.0/8,2001:db8::/32")
    assert client_address("203.0.113.5", ["1.2.3.4"], trusted) == "203.0.113.5"  # untrusted peer: its header is ignored
    assert client_address("10.0.0.1", ["1.2.3.4, 198.51.100.9"], trusted) == "198.51.100.9"
    assert client_address("10.0.0.1", ["1.2.3.4, 198.51.100.9, 10.0.0.7"], trusted) == "198.51.100.9"
    assert client_address("10.0.0.1", ["1.2.3.4", "198.51.100.9"], trusted) == "198.51.100.9"  # two header lines
    assert client_address("2001:db8::1", ["198.51.100.9"], trusted) == "198.51.100.9"
    assert client_address("10.0.0.1", [], trusted) == "10.0.0.1"
    assert client_address("10.0.0.1", ["1.2.3.4"], trusted_proxies("")) == "10.0.0.1"  # nothing trusted: the default
    # "*" (Heroku: only the router reaches the dyno): the right-most entry, whatever the client wrote before it.
    anyone = trusted_proxies("*")
    assert client_address("172.16.5.5", ["6.6.6.6, 198.51.100.9"], anyone) == "198.51.100.9"
    assert client_address("172.16.5.5", [], anyone) == "172.16.5.5"


def test_a_bad_forwarded_allow_ips_stops_the_bot_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"FORWARDED_ALLOW_IPS.*'proxy\.example'"):
        make_settings(tmp_path, {"FORWARDED_ALLOW_IPS": "10.0.0.1, proxy.example"})


# ---- 3. confirm tokens bound to the subscription; no token in the access log ----


def test_a_confirm_link_from_before_an_unsubscribe_does_not_subscribe_again(site: Site) -> None:
    store = site.room.app.store
    assert site.subscribe("reader@example.org").status_code == 200
    old_link = site.confirmation_link("reader@example.org")
    assert site.confirm(old_link).status_code == 200
    site.room.clock.advance(minutes=5)
    store.unsubscribe("reader@example.org", now=site.room.clock())
    again = site.client.post(local(old_link))
    assert again.status_code == 400 and "no longer valid" in again.text
    sub = store.subscriber("reader@example.org")
    assert sub is not None and sub.state.value == "unsubscribed"
    # The owner asking again gets a link that works, once more.
    site.room.clock.advance(minutes=5)
    assert site.subscribe("reader@example.org").status_code == 200
    new_link = site.confirmation_link("reader@example.org")
    assert new_link != old_link
    assert site.confirm(new_link).status_code == 200
    sub = store.subscriber("reader@example.org")
    assert sub is not None and sub.state.value == "confirmed"
    # Unsubscribe and preferences links stay long-lived.
    site.room.clock.advance(days=400)
    assert (
        site.get(signed_link(site.room.app.settings, "preferences", "reader@example.org", now=MONDAY)).status_code
        == 200
    )


def test_token_values_are_redacted_from_access_log_lines() -> None:
    line = redact_token('127.0.0.1:5 - "GET /confirm?token=eyJh.c2ln.YXR1&x=1 HTTP/1.1" 200')
    assert "eyJh" not in line and "token=[redacted]&x=1" in line
    assert redact_token("/unsubscribe?a=1&TOKEN=abc") == "/unsubscribe?a=1&TOKEN=[redacted]"


# ---- 4. too many form fields ----


def test_more_than_100_form_fields_is_400_without_a_traceback(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    site.room.subscribe("reader@example.org")
    body = "email=x%40example.org&" + "&".join(f"category=c{i}" for i in range(120))
    headers = {"content-type": "application/x-www-form-urlencoded"}
    prefs = signed_link(site.room.app.settings, "preferences", "reader@example.org")
    with caplog.at_level(logging.INFO):
        assert site.client.post("/subscribe", content=body, headers=headers).status_code == 400
        assert site.client.post(local(prefs), content=body, headers=headers).status_code == 400
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert site.server.messages == []


# ---- 5. one set of security headers on every page ----


@pytest.mark.parametrize("path", ["/", "/subscribe", "/no-such-page", "/confirm?token=x"])
def test_every_page_has_the_security_headers(site: Site, path: str) -> None:
    r = site.client.get(path)
    for name, value in SECURITY_HEADERS:
        assert r.headers.get(name) == value, (path, name)
    assert r.headers.get_list("content-security-policy") == [dict(SECURITY_HEADERS)["Content-Security-Policy"]]


# ---- 6. unusual addresses ----


def test_invalid_utf8_in_the_form_is_refused_not_replaced(site: Site) -> None:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    for body in (b"email=j%FCrgen%40example.org&website=", b"email=j\xfcrgen@example.org&website="):
        r = site.client.post("/subscribe", content=body, headers=headers)
        assert r.status_code == 400 and "not valid UTF-8" in r.text, body
    assert "\ufffd" not in "".join(s["address"] for s in sends(site.room.app))
    assert site.server.messages == []


def test_over_long_addresses_are_refused_with_a_clear_message(site: Site) -> None:
    r = site.subscribe("a" * 65 + "@example.org")
    assert r.status_code == 400 and "longer than 64" in r.text
    r = site.subscribe("x@" + "a" * 64 + ".example.org")
    assert r.status_code == 400 and "after the @ is too long" in r.text
    r = site.subscribe("x@" + ".".join(["a" * 60] * 5))
    assert r.status_code == 400 and "after the @ is too long" in r.text
    assert site.subscribe("a" * 64 + "@example.org").status_code == 200
    assert site.server.recipients() == ["a" * 64 + "@example.org"]


def test_an_idn_address_is_mailed_in_ascii_form_by_a_server_without_smtputf8(tmp_path: Path, db_url: str) -> None:
    with SmtpTestServer(smtputf8=False) as server:
        site = open_site(tmp_path, db_url, server)
        try:
            assert site.subscribe("leser@bücher.example").status_code == 200
            assert server.recipients() == ["leser@xn--bcher-kva.example"]
        finally:
            site.client.close()
            site.room.close()


def test_a_local_part_the_server_cannot_take_fails_without_counting_as_a_bounce(tmp_path: Path, db_url: str) -> None:
    with SmtpTestServer(smtputf8=False) as server:
        room = Newsroom.open(digest_settings(tmp_path, db_url, server, bounce_after=1), start=MONDAY)
        try:
            room.subscribe("jürgen@example.org")
            room.subscribe("ok@bücher.example")
            room.publish([Item(key="k1", title="Paper one")], at=MONDAY + timedelta(days=1))
            room.clock.now = MONDAY + timedelta(days=7)
            send_digest(room.app)
            assert server.recipients() == ["ok@xn--bcher-kva.example"]
            rows = {s["address"]: s for s in sends(room.app)}
            assert rows["jürgen@example.org"]["state"] == "failed"
            sub = room.app.store.subscriber("jürgen@example.org")
            # bounce_after = 1: one refusal would have made it bounced
            assert sub is not None and sub.state.value == "confirmed" and sub.permanent_failures == 0
        finally:
            room.close()


# ---- 2 and 13: the process itself ----


def web_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = clean_environ()
    env.update(BOT_DATA_DIR=str(tmp_path / "var"), BOT_CONFIG=str(REPO / "config" / "bot.toml"), **extra)
    return env


def bot(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "extra", [{}, {"BOT_DRY_RUN": "1"}, {"SMTP_URL": "smtp://127.0.0.1:2525", "DIGEST_FROM": "d@example.org"}]
)
def test_web_refuses_to_start_without_a_secret_key(tmp_path: Path, extra: dict[str, str]) -> None:
    r = bot(web_env(tmp_path, PORT=str(free_port()), **extra), "web")
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "SECRET_KEY is required" in errors[0]
    assert "Uvicorn running" not in r.stderr


def test_token_commands_refuse_without_a_key_and_the_quick_start_needs_none(tmp_path: Path) -> None:
    env = web_env(tmp_path)
    for args in (["digest", "send"], ["digest", "preview"], ["subscribers", "add", "a@example.org"]):
        r = bot(env, *args)
        assert r.returncode == 2 and r.stderr.strip().startswith("error: setting SECRET_KEY is required"), (
            args,
            r.stderr,
        )
    r = bot(env, "run", "--once", "--backfill", "1")
    assert r.returncode == 0, r.stderr
    # Development mode: says so loudly, and works.
    r = bot(web_env(tmp_path, BOT_DEV="1"), "subscribers", "add", "b@example.org")
    assert r.returncode == 0, r.stderr
    assert "DEVELOPMENT MODE" in r.stderr


def _open(request: str | urllib.request.Request) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


@contextlib.contextmanager
def web_process(tmp_path: Path, host: str, **extra: str) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """A real `python -m bot web` (development mode) on host:a free port; yields it, its base URL and its log."""
    port = free_port()
    log = tmp_path / "web.log"
    env = web_env(tmp_path, HOST=host, PORT=str(port), BOT_DEV="1", **extra)
    with log.open("w") as out:
        p = subprocess.Popen(
            [sys.executable, "-m", "bot", "web"], env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until(lambda: "Uvicorn running" in log.read_text() or p.poll() is not None, timeout=60, why=log.read_text)
        assert p.poll() is None, log.read_text()
        yield p, f"http://{host}:{port}", log
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_the_web_process_ignores_forwarded_for_from_an_untrusted_peer(tmp_path: Path) -> None:
    rng = random.Random(1)
    with web_process(tmp_path, "127.0.0.1") as (_, base, log):
        codes = []
        for i in range(12):
            body = f"email=x{i}%40example.org&website=".encode()
            request = urllib.request.Request(
                f"{base}/subscribe", data=body, method="POST", headers={"X-Forwarded-For": random_ip(rng)}
            )
            codes.append(_open(request)[0])
    assert codes == [200] * 10 + [429, 429], log.read_text()[-2000:]


def test_web_binds_host_redacts_tokens_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    with web_process(tmp_path, "127.0.0.2") as (p, base, log):
        assert "DEVELOPMENT MODE" in log.read_text()
        assert _open(f"{base}/healthz")[0] in (200, 503)
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=2):
            pass  # HOST=127.0.0.2: nothing listens on 127.0.0.1
        assert _open(f"{base}/unsubscribe?token=SeCrEtToKeN.abc.def")[0] == 400
        wait_until(lambda: "/unsubscribe?token=" in log.read_text(), timeout=10, why=log.read_text)
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0, log.read_text()
    text = log.read_text()
    assert "SeCrEtToKeN" not in text and "/unsubscribe?token=[redacted]" in text
