"""SMTP transport against a real aiosmtpd server: reuse, faults, AUTH, the pool; and the outbox mailer."""

from __future__ import annotations

import email
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email import policy
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import make_settings
from smtp_server import SmtpTestServer, free_port, self_signed_tls

from bot.errors import ConfigError, MailError, PermanentMailError, TransientMailError
from bot.mail import (
    Digest,
    DigestComposer,
    DigestItem,
    Email,
    MailerPool,
    NotSent,
    OutboxMailer,
    RecipientRefused,
    RecordingMailer,
    SenderRefused,
    SmtpMailer,
    make_mailer,
)
from bot.mail.base import AddressNotSupported, MaybeDelivered
from bot.mail.smtp import SmtpConfig, ascii_address
from bot.settings import Settings

NOW = datetime(2026, 11, 10, 8, 0, tzinfo=UTC)
FROM = "digest@example.org"


@pytest.fixture
def server() -> Iterator[SmtpTestServer]:
    with SmtpTestServer() as s:
        yield s


def settings_for(tmp_path: Path, smtp_url: str, **env: str) -> Settings:
    return make_settings(
        tmp_path,
        {"SMTP_URL": smtp_url, "DIGEST_FROM": f"ShortScience <{FROM}>", "SECRET_KEY": "k" * 20, **env},
        digest={"smtp_timeout_seconds": 5.0},
    )


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[Callable[..., SmtpMailer]]:
    """Builds SmtpMailers for a URL and closes them all after the test (no socket left open)."""
    made: list[SmtpMailer] = []

    def build(url: str, **env: str) -> SmtpMailer:
        mailer = SmtpMailer(settings_for(tmp_path, url, **env))
        made.append(mailer)
        return mailer

    yield build
    for mailer in made:
        mailer.close()


@pytest.fixture
def composer(tmp_path: Path) -> DigestComposer:
    settings = make_settings(tmp_path, {"DIGEST_FROM": f"ShortScience <{FROM}>"})
    return DigestComposer(settings)


def make_emails(composer: DigestComposer, addresses: list[str]) -> list[Email]:
    item = DigestItem(
        guid="g1",
        title="A paper",
        paper_authors="A. Author",
        summary_author="bob",
        teaser_text="Teaser.\n.\n.. a line that starts with a dot",
        teaser_html="<p>Teaser.</p>",
        link="https://www.shortscience.org/paper?bibtexKey=k1",
        paper_url=None,
        votes=3,
        categories=(),
    )
    composed = composer.compose(Digest(issue=1, period_start=NOW, period_end=NOW, items=(item,)))
    return [
        composed.for_recipient(
            a, f"https://bot.example.org/unsubscribe?token={i}", "https://bot.example.org/preferences?token=p", now=NOW
        )
        for i, a in enumerate(addresses)
    ]


def ids(server: SmtpTestServer) -> list[str]:
    return [str(email.message_from_bytes(m.data, policy=policy.default)["Message-ID"]) for m in server.messages]


# ---- plain sending ----


def test_sends_and_reuses_one_connection(
    tmp_path: Path, smtp: Callable[..., SmtpMailer], server: SmtpTestServer, composer: DigestComposer
) -> None:
    mailer = smtp(server.url())
    emails = make_emails(composer, [f"r{i}@example.net" for i in range(5)])
    for e in emails:
        mailer.send(e)
    mailer.close()
    assert server.connections == 1
    assert [m.rcpt_tos for m in server.messages] == [(e.to,) for e in emails]
    assert {m.mail_from for m in server.messages} == {FROM}
    assert ids(server) == [e.message_id for e in emails]
    # What arrived is the message, byte for byte (dot-stuffing undone by the server).
    received = email.message_from_bytes(server.messages[0].data, policy=policy.default)
    assert ".. a line that starts with a dot" in received.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert server.messages[0].data.rstrip(b"\r\n") == emails[0].as_bytes().rstrip(b"\r\n")


def test_close_then_send_reconnects(
    tmp_path: Path, smtp: Callable[..., SmtpMailer], server: SmtpTestServer, composer: DigestComposer
) -> None:
    mailer = smtp(server.url())
    a, b = make_emails(composer, ["a@example.net", "b@example.net"])
    mailer.send(a)
    mailer.close()
    mailer.send(b)
    mailer.close()
    assert server.connections == 2
    assert server.recipients() == ["a@example.net", "b@example.net"]


def test_make_mailer_picks_smtp_only_when_configured(tmp_path: Path, server: SmtpTestServer) -> None:
    assert isinstance(make_mailer(settings_for(tmp_path, server.url())), SmtpMailer)
    assert isinstance(make_mailer(make_settings(tmp_path)), OutboxMailer)
    assert isinstance(make_mailer(settings_for(tmp_path, server.url(), BOT_DRY_RUN="1")), OutboxMailer)


def test_live_smtp_needs_a_sender_address(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, {"SMTP_URL": "smtp://127.0.0.1:2525", "SECRET_KEY": "k" * 20})
    with pytest.raises(ConfigError, match="DIGEST_FROM"):
        make_mailer(settings)


# ---- faults ----


def test_451_is_transient_and_the_next_message_goes_through(
    tmp_path: Path, smtp: Callable[..., SmtpMailer], server: SmtpTestServer, composer: DigestComposer
) -> None:
    server.fail_rcpt("busy@example.net", "451", times=1)
    mailer = smtp(server.url())
    busy, ok = make_emails(composer, ["busy@example.net", "ok@example.net"])
    with pytest.raises(TransientMailError, match="451"):
        mailer.send(busy)
    mailer.send(ok)
    mailer.send(busy)  # later retry succeeds
    assert server.recipients() == ["ok@example.net", "busy@example.net"]
    assert server.connections == 1  # RSET kept the connection usable


def test_451_at_end_of_data_is_transient(
    tmp_path: Path, smtp: Callable[..., SmtpMailer], server: SmtpTestServer, composer: DigestComposer
) -> None:
    server.fail_message(1, "451")
    mailer = smtp(server.url())
    a, b = make_emails(composer, ["a@example.net", "b@example.net"])
    with pytest.raises(TransientMailError, match="451"):
        mailer.send(a)
    mailer.send(b)
    assert server.recipients() == ["b@example.net"]


@pytest.mark.parametrize("where", ["rcpt", "data"])
def test_421_is_transient_and_the_next_message_goes_through(
    tmp_path: Path, smtp: Callable[..., SmtpMailer], server: SmtpTestServer, composer: DigestComposer, where: str
) -> None:
    if where == "rcpt":
        server.fail_rcpt("a@example.net", "421", times=1)
    else:
        server.fail_message(1, "421")
    mailer = smtp(server.url())
    a, b = make_emails(composer, ["a@example.net", "b@example.net"])
    with pytest.raises(TransientMailError, match="421"):
        mailer.send(a)
    mailer.send(b)
    assert server.recipients() == ["b@example.net"]
    assert server.connections == 2  # the server hung up; we opened a new connection


def test_550_is_permanent_for_that_recipient_only(
    tmp_path: Path, smtp: Callable[..., SmtpMailer], server: SmtpTestServer, composer: DigestComposer
) -> None:
    server.fail_rcpt("gone@example.net", "550")
    mailer = smtp(server.url())
    before, gone, after = make_emails(composer, ["before@example.net", "gone@example.net", "after@example.net"])
    mailer.send(before)
    with pytest.raises(RecipientRefused, match="550") as info:
        mailer.send(gone)
    assert isinstance(info.value, PermanentMailError) and info.value.code == 550
    mailer.send(after)
    assert server.recipients() == ["before@example.net", "after@example.net"]
    assert server.connections == 1


def test_550_at_end_of_data_is_permanent(
    tmp_path: Path, smtp: Callable[..., SmtpMailer], server: SmtpTestServer, composer: DigestComposer
) -> None:
    server.fail_message(1, "550")
    mailer = smtp(server.url())
    a, b = make_emails(composer, ["a@example.net", "b@example.net"])
    with pytest.raises(RecipientRefused):
        mailer.send(a)
    mailer.send(b)
    assert server.recipients() == ["b@example.net"]


def test_dropped_mid_data_reconnects_without_duplicates(
    tmp_path: Path, smtp: Callable[..., SmtpMailer], server: SmtpTestServer, composer: DigestComposer
) -> None:
    server.fail_message(2, "drop")
    mailer = smtp(server.url())
    a, b, c = make_emails(composer, ["a@example.net", "b@example.net", "c@example.net"])
    mailer.send(a)
    with pytest.raises(TransientMailError, match="connection lost"):
        mailer.send(b)
    mailer.send(c)  # on a new connection
    mailer.send(b)  # the caller's retry
    assert sorted(server.recipients()) == ["a@example.net", "b@example.net", "c@example.net"]
    assert Counter(ids(server)) == Counter({a.message_id: 1, b.message_id: 1, c.message_id: 1})
    assert server.connections == 2


def test_reply_lost_after_data_is_not_resent(
    tmp_path: Path, smtp: Callable[..., SmtpMailer], server: SmtpTestServer, composer: DigestComposer
) -> None:
    # The server kept the message but hung up before answering: resending on our
    # own would mail the reader twice, so the mailer reports it and moves on.
    server.fail_message(1, "accept_then_drop")
    mailer = smtp(server.url())
    a, b = make_emails(composer, ["a@example.net", "b@example.net"])
    with pytest.raises(MaybeDelivered, match="before the server answered"):
        mailer.send(a)
    mailer.send(b)
    assert server.recipients() == ["a@example.net", "b@example.net"]  # a exactly once


def test_stale_connection_is_replaced_once(
    tmp_path: Path, smtp: Callable[..., SmtpMailer], server: SmtpTestServer, composer: DigestComposer
) -> None:
    server.close_after(1)  # like a server dropping an idle client
    mailer = smtp(server.url())
    a, b = make_emails(composer, ["a@example.net", "b@example.net"])
    mailer.send(a)
    mailer.send(b)  # no error: nothing was handed over on the dead connection
    assert server.recipients() == ["a@example.net", "b@example.net"]
    assert server.connections == 2


def test_non_ascii_address_goes_out_with_smtputf8(
    tmp_path: Path, smtp: Callable[..., SmtpMailer], server: SmtpTestServer, composer: DigestComposer
) -> None:
    (e,) = make_emails(composer, ["jürgen@exämple.org"])
    smtp(server.url()).send(e)
    assert server.recipients() == ["jürgen@exämple.org"]
    received = email.message_from_bytes(server.messages[0].data, policy=policy.default)
    assert received["To"] == "jürgen@exämple.org"


def test_non_ascii_local_part_without_smtputf8_is_not_supported(
    tmp_path: Path, smtp: Callable[..., SmtpMailer], composer: DigestComposer
) -> None:
    with SmtpTestServer(smtputf8=False) as server:
        mailer = smtp(server.url())
        u, a = make_emails(composer, ["jürgen@exämple.org", "a@example.net"])
        # Not a RecipientRefused: the server said nothing about the mailbox, so it is no bounce.
        with pytest.raises(AddressNotSupported, match="SMTPUTF8") as caught:
            mailer.send(u)
        assert not isinstance(caught.value, RecipientRefused)
        mailer.send(a)
        assert server.recipients() == ["a@example.net"]


def test_idn_domain_goes_as_punycode_without_smtputf8(
    tmp_path: Path, smtp: Callable[..., SmtpMailer], composer: DigestComposer
) -> None:
    with SmtpTestServer(smtputf8=False) as server:
        mailer = smtp(server.url())
        (sent,) = make_emails(composer, ["leser@bücher.example"])
        mailer.send(sent)
        assert server.recipients() == ["leser@xn--bcher-kva.example"]
        received = email.message_from_bytes(server.messages[0].data, policy=policy.default)
        assert received["To"] == "leser@xn--bcher-kva.example"  # the header matches the envelope
        assert received["Message-ID"] == sent.message_id


def test_idn_domain_stays_unicode_with_smtputf8(
    tmp_path: Path, smtp: Callable[..., SmtpMailer], composer: DigestComposer
) -> None:
    with SmtpTestServer(smtputf8=True) as server:
        mailer = smtp(server.url())
        (sent,) = make_emails(composer, ["leser@bücher.example"])
        mailer.send(sent)
        assert server.recipients() == ["leser@bücher.example"]


def test_ascii_address_forms() -> None:
    assert ascii_address("a@example.org") == "a@example.org"
    assert ascii_address("a@bücher.example") == "a@xn--bcher-kva.example"
    assert ascii_address("jürgen@example.org") is None


def test_unreachable_server_is_transient(
    tmp_path: Path, smtp: Callable[..., SmtpMailer], composer: DigestComposer
) -> None:
    mailer = smtp(f"smtp://127.0.0.1:{free_port()}")
    (a,) = make_emails(composer, ["a@example.net"])
    with pytest.raises(TransientMailError, match="cannot connect"):
        mailer.send(a)


# ---- AUTH ----


def test_auth_with_user_and_password_from_the_url(
    tmp_path: Path, smtp: Callable[..., SmtpMailer], composer: DigestComposer
) -> None:
    password = "p@ss:w%rd/1 x"
    with SmtpTestServer(user="bot@example.org", password=password) as server:
        url = server.url(user=quote("bot@example.org", safe=""), password=quote(password, safe=""))
        mailer = smtp(url)
        (a,) = make_emails(composer, ["a@example.net"])
        mailer.send(a)
        assert server.recipients() == ["a@example.net"]
        assert server.auth_attempts == [(server.auth_attempts[0][0], True)]
        assert "bot@example.org" in mailer.check() and password not in mailer.check()
        mailer.close()


def test_wrong_password_is_sender_refused_and_never_shown(
    tmp_path: Path, smtp: Callable[..., SmtpMailer], composer: DigestComposer
) -> None:
    with SmtpTestServer(user="bot", password="right-password") as server:
        mailer = smtp(server.url(user="bot", password="wrong-password"))
        (a,) = make_emails(composer, ["a@example.net"])
        with pytest.raises(SenderRefused) as info:
            mailer.send(a)
        assert "535" in str(info.value)
        assert "wrong-password" not in str(info.value)
        assert "wrong-password" not in repr(mailer.config)
        assert not isinstance(info.value, PermanentMailError)  # not the recipient's fault
        assert server.messages == []


def test_non_ascii_password_is_refused_cleanly(
    tmp_path: Path, smtp: Callable[..., SmtpMailer], composer: DigestComposer
) -> None:
    with SmtpTestServer(user="bot", password="pässwörd") as server:
        mailer = smtp(server.url(user="bot", password=quote("pässwörd")))
        (a,) = make_emails(composer, ["a@example.net"])
        with pytest.raises(SenderRefused, match="not ASCII") as info:
            mailer.send(a)
        assert "pässwörd" not in str(info.value)


@pytest.mark.parametrize("mode", ["starttls", "smtps"])
def test_tls_with_auth(tmp_path: Path, composer: DigestComposer, mode: str) -> None:
    server_ctx, client_ctx = self_signed_tls(str(tmp_path))
    with SmtpTestServer(
        user="bot", password="secret-pw", tls_context=server_ctx, implicit_tls=mode == "smtps"
    ) as server:
        url = server.url(user="bot", password="secret-pw", starttls=mode == "starttls")
        mailer = SmtpMailer(settings_for(tmp_path, url), ssl_context=client_ctx)
        try:
            (a,) = make_emails(composer, ["a@example.net"])
            mailer.send(a)
            assert f"({mode}, logged in as bot)" in mailer.check()
        finally:
            mailer.close()
        assert server.recipients() == ["a@example.net"]
        # Without trusting the test certificate, the connection is refused, not retried forever.
        strict = SmtpMailer(settings_for(tmp_path, url))
        with pytest.raises(SenderRefused, match="certificate"):
            strict.send(a)
        assert server.recipients() == ["a@example.net"]


def test_smtp_url_parsing() -> None:
    cfg = SmtpConfig.from_url("smtp://us%40er:p%3Ass@mail.example.org?starttls=1", timeout=3)
    assert (cfg.host, cfg.port, cfg.security, cfg.user, cfg.password) == (
        "mail.example.org",
        587,
        "starttls",
        "us@er",
        "p:ss",
    )
    assert SmtpConfig.from_url("smtps://mail.example.org", timeout=3).port == 465
    assert SmtpConfig.from_url("smtp://mail.example.org", timeout=3).port == 25
    for bad in ("smtp://mail.example.org?tls=1", "smtps://mail.example.org?starttls=1", "http://x"):
        with pytest.raises(ConfigError) as info:
            SmtpConfig.from_url(bad, timeout=3)
        assert "example" not in str(info.value)  # the URL (and any password in it) is never echoed


# ---- the pool ----


def test_pool_sends_200_messages_over_4_connections_each_exactly_once(
    tmp_path: Path, server: SmtpTestServer, composer: DigestComposer
) -> None:
    settings = settings_for(tmp_path, server.url())
    pool = MailerPool([SmtpMailer(settings) for _ in range(4)])
    addresses = [f"r{i:03d}@example.net" for i in range(200)]
    emails = make_emails(composer, addresses)
    taken = 0
    caller = threading.get_ident()
    results: list[tuple[str, Exception | None]] = []

    def stream() -> Iterator[Email]:
        nonlocal taken
        for e in emails:
            taken += 1
            # Streamed: never far ahead of what was reported.
            assert taken - len(results) <= pool.queue_size + len(pool.mailers) + 1
            yield e

    def on_result(e: Email, exc: Exception | None) -> None:
        assert threading.get_ident() == caller  # reported in the caller's thread
        results.append((e.to, exc))

    report = pool.send_all(stream(), on_result)
    pool.close()
    assert report.sent == 200 and report.transient == report.permanent == report.not_sent == 0
    assert sorted(to for to, exc in results if exc is None) == addresses
    assert Counter(server.recipients()) == Counter({a: 1 for a in addresses})
    # Connections are reused: one per mailer at most, and they did work side by side.
    assert 1 < server.connections <= 4
    assert len({m.connection for m in server.messages}) == server.connections


def test_pool_reports_failures_per_recipient(
    tmp_path: Path, smtp: Callable[..., SmtpMailer], server: SmtpTestServer, composer: DigestComposer
) -> None:
    server.fail_rcpt("gone@example.net", "550")
    server.fail_rcpt("busy@example.net", "451")
    pool = MailerPool([smtp(server.url()) for _ in range(2)])
    addresses = ["a@example.net", "gone@example.net", "b@example.net", "busy@example.net", "c@example.net"]
    results: dict[str, Exception | None] = {}
    report = pool.send_all(make_emails(composer, addresses), lambda e, exc: results.__setitem__(e.to, exc))
    pool.close()
    assert (report.sent, report.transient, report.permanent) == (3, 1, 1)
    assert isinstance(results["gone@example.net"], RecipientRefused)
    assert isinstance(results["busy@example.net"], TransientMailError)
    assert sorted(server.recipients()) == ["a@example.net", "b@example.net", "c@example.net"]


def test_pool_stops_when_the_server_refuses_us(composer: DigestComposer) -> None:
    refused = SenderRefused("SMTP: login refused: 535")
    mailers = [RecordingMailer(fail={f"r{i}@example.net": refused for i in range(100)}) for _ in range(2)]
    pool = MailerPool(mailers)
    results: list[Exception | None] = []
    taken = 0

    def stream() -> Iterator[Email]:
        nonlocal taken
        for e in make_emails(composer, [f"r{i}@example.net" for i in range(100)]):
            taken += 1
            yield e

    report = pool.send_all(stream(), lambda e, exc: results.append(exc))
    assert report.stopped is not None and "535" in report.stopped
    assert taken < 100  # the rest of the stream was left unread
    assert len(results) == taken  # every e-mail taken was reported
    assert all(isinstance(r, SenderRefused | NotSent) for r in results)


def test_pool_stop_event_finishes_what_is_in_hand(composer: DigestComposer) -> None:
    mailer = RecordingMailer()
    pool = MailerPool([mailer])
    stop = threading.Event()
    results: list[tuple[str, Exception | None]] = []

    def on_result(e: Email, exc: Exception | None) -> None:
        results.append((e.to, exc))
        if len(results) == 3:
            stop.set()  # as a SIGTERM handler would

    report = pool.send_all(make_emails(composer, [f"r{i}@example.net" for i in range(50)]), on_result, stop=stop)
    assert report.stopped == "stopped on request"
    sent = [to for to, exc in results if exc is None]
    assert sent == mailer.recipients  # reported as sent exactly when handed over
    assert all(isinstance(exc, NotSent) for _, exc in results if exc is not None)
    assert len(results) < 50


def test_pool_propagates_a_failing_callback(composer: DigestComposer) -> None:
    pool = MailerPool([RecordingMailer(), RecordingMailer()])
    calls = 0

    def on_result(e: Email, exc: Exception | None) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("database is gone")

    with pytest.raises(RuntimeError, match="database is gone"):
        pool.send_all(make_emails(composer, [f"r{i}@example.net" for i in range(20)]), on_result)
    assert calls == 1  # never called again after it failed


def test_pool_reports_what_was_taken_when_the_stream_fails(composer: DigestComposer) -> None:
    mailer = RecordingMailer()
    pool = MailerPool([mailer])
    emails = make_emails(composer, [f"r{i}@example.net" for i in range(5)])

    def stream() -> Iterator[Email]:
        yield from emails
        raise LookupError("store failed")

    results: dict[str, Exception | None] = {}
    with pytest.raises(LookupError):
        pool.send_all(stream(), lambda e, exc: results.__setitem__(e.to, exc))
    assert sorted(results) == sorted(e.to for e in emails)  # every e-mail taken is reported...
    assert sorted(to for to, exc in results.items() if exc is None) == sorted(mailer.recipients)  # ...truthfully
    assert all(isinstance(exc, NotSent) for exc in results.values() if exc is not None)


class Notes:
    """A Handover that writes down what it is told (and when), and can withdraw chosen messages."""

    def __init__(self, server: SmtpTestServer | None = None, withdraw: frozenset[str] = frozenset()) -> None:
        self.server = server
        self.withdraw = withdraw
        self.lock = threading.Lock()
        #: (what, recipient, messages at the server then); what: "going" or the outcome
        self.log: list[tuple[str, str, int]] = []
        self.threads: set[int] = set()

    def note(self, done: tuple[Email, Exception | None] | None, going: Email | None) -> bool:
        with self.lock:
            seen = len(self.server.messages) if self.server else 0
            self.threads.add(threading.get_ident())
            if done is not None:
                self.log.append(("sent" if done[1] is None else type(done[1]).__name__, done[0].to, seen))
            if going is not None:
                self.log.append(("going", going.to, seen))
        return going is None or going.to not in self.withdraw


def test_pool_notes_each_message_before_it_goes_and_its_outcome_with_the_next(
    tmp_path: Path, server: SmtpTestServer, composer: DigestComposer
) -> None:
    server.fail_rcpt("gone@example.net", "550")
    settings = settings_for(tmp_path, server.url())
    pool = MailerPool([SmtpMailer(settings) for _ in range(2)])
    notes = Notes(server, withdraw=frozenset({"taken@example.net"}))
    addresses = ["a@example.net", "gone@example.net", "taken@example.net", "b@example.net"]
    results: dict[str, Exception | None] = {}
    reported_after_noted: list[bool] = []

    def on_result(e: Email, exc: Exception | None) -> None:
        results[e.to] = exc
        with notes.lock:
            reported_after_noted.append(
                any(to == e.to and what != "going" for what, to, _ in notes.log) or isinstance(exc, NotSent)
            )

    report = pool.send_all(make_emails(composer, addresses), on_result, handover=notes)
    pool.close()
    assert (report.sent, report.permanent, report.not_sent) == (2, 1, 1)
    by_address: dict[str, list[tuple[str, int]]] = {}
    for what, to, seen in notes.log:
        by_address.setdefault(to, []).append((what, seen))
    for to in ("a@example.net", "b@example.net"):
        (going, at_start), (outcome, at_end) = by_address[to]
        assert (going, outcome) == ("going", "sent")
        # Noted as going before the server had it; noted done after it had it.
        assert to not in [r for m in server.messages[:at_start] for r in m.rcpt_tos]
        assert to in [r for m in server.messages[:at_end] for r in m.rcpt_tos]
    assert [w for w, _ in by_address["gone@example.net"]] == ["going", "RecipientRefused"]
    # Withdrawn: never sent, and reported as such.
    assert [w for w, _ in by_address["taken@example.net"]] == ["going"]
    assert isinstance(results["taken@example.net"], NotSent)
    assert sorted(server.recipients()) == ["a@example.net", "b@example.net"]
    assert all(reported_after_noted)  # an outcome is reported only once it is on record
    assert threading.get_ident() not in notes.threads  # the notes are made in the workers' threads


def test_pool_surfaces_a_failing_note_and_sends_nothing_unnoted(composer: DigestComposer) -> None:
    class Broken(Notes):
        def note(self, done: tuple[Email, Exception | None] | None, going: Email | None) -> bool:
            if going is not None and going.to == "r3@example.net":
                raise RuntimeError("database is gone")
            return super().note(done, going)

    mailer = RecordingMailer()
    notes = Broken()
    with pytest.raises(RuntimeError, match="database is gone"):
        MailerPool([mailer]).send_all(make_emails(composer, [f"r{i}@example.net" for i in range(10)]), handover=notes)
    noted = {to for what, to, _ in notes.log if what == "going"}
    assert set(mailer.recipients) <= noted and "r3@example.net" not in mailer.recipients
    assert mailer.recipients == ["r0@example.net", "r1@example.net", "r2@example.net"]


def test_a_digest_message_is_the_same_bytes_whoever_builds_it(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, {"DIGEST_FROM": f"ShortScience <{FROM}>"})
    item = DigestItem(
        guid="g",
        title="T",
        paper_authors="",
        summary_author="a",
        teaser_text="x",
        teaser_html="<p>x</p>",
        link="https://www.shortscience.org/p",
        paper_url=None,
        votes=1,
        categories=(),
    )
    digest = Digest(issue=3, period_start=NOW, period_end=NOW, items=(item,))
    made = [
        DigestComposer(settings)
        .compose(digest)
        .for_recipient(
            "r@example.net",
            "https://bot.example.org/unsubscribe?token=t",
            "https://bot.example.org/preferences?token=p",
            now=NOW,
            message_id="<digest3.7.abc@example.org>",
        )
        for _ in range(2)  # two composers: as two processes would
    ]
    assert made[0].as_bytes() == made[1].as_bytes()
    assert made[0].message["Message-ID"] == "<digest3.7.abc@example.org>"


# ---- outbox ----


def test_outbox_writes_one_eml_per_message(tmp_path: Path, composer: DigestComposer) -> None:
    settings = make_settings(tmp_path, {"BOT_OUTBOX_DIR": str(tmp_path / "out")})
    mailer = make_mailer(settings)
    assert isinstance(mailer, OutboxMailer) and not mailer.live
    emails = make_emails(composer, ["a@example.net", "b@example.net"])
    for e in emails:
        mailer.send(e)
    files = sorted((tmp_path / "out" / "email").glob("*.eml"))
    assert len(files) == 2
    by_id = {}
    for f in files:
        assert "/" not in f.name and not f.name.startswith(".")
        raw = f.read_bytes()
        assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
        msg = email.message_from_bytes(raw, policy=policy.default)
        by_id[str(msg["Message-ID"])] = str(msg["To"])
    assert by_id == {e.message_id: e.to for e in emails}
    assert mailer.path_for(emails[0]).exists()


def test_outbox_write_failure_is_transient(tmp_path: Path, composer: DigestComposer) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    mailer = OutboxMailer(directory=blocker / "email")
    (a,) = make_emails(composer, ["a@example.net"])
    with pytest.raises(TransientMailError, match="outbox"):
        mailer.send(a)


def test_recording_mailer_is_a_mailer(composer: DigestComposer) -> None:
    from bot.mail import Mailer

    fake = RecordingMailer(fail={"x@example.net": RecipientRefused("550")})
    assert isinstance(fake, Mailer)
    a, x = make_emails(composer, ["a@example.net", "x@example.net"])
    fake.send(a)
    with pytest.raises(MailError):
        fake.send(x)
    assert fake.recipients == ["a@example.net"]
