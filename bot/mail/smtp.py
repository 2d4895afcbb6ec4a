"""SMTP delivery: one reused connection per ``SmtpMailer`` (bot.mail.pool runs several on threads).

smtplib errors are translated here and never leak upward: 4xx and dropped
connections are ``TransientMailError``, 5xx for a recipient ``RecipientRefused``,
a refused login, sender or TLS setup ``SenderRefused``. Error messages name the
host and the server's reply, never the URL or the password.

A dropped connection is retried on a fresh connection once, but only while the
message has not been handed over yet (before the final dot of DATA went out in
full): after that the server may have it, and sending again could mail the
recipient twice, so the error is ``MaybeDelivered`` and the caller decides.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from bot.errors import (
    AddressNotSupported,
    ConfigError,
    MaybeDelivered,
    RecipientRefused,
    SenderRefused,
    TransientMailError,
)
from bot.mail.base import Email, smtp_data
from bot.mail.message import sender
from bot.settings import Settings

_TRUE = ("1", "true", "yes", "on")


def ascii_address(address: str) -> str | None:
    """`address` with its domain in IDNA (punycode) form, for servers without SMTPUTF8; None when the
    part before the @ is not ASCII (no ASCII form exists for it)."""
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        return None
    if domain.isascii():
        return address
    from email_validator import EmailNotValidError, validate_email

    try:
        # The IDNA 2008 (UTS #46) form email-validator computed when the address came in.
        return validate_email(address, check_deliverability=False).ascii_email
    except EmailNotValidError:
        return None


def _replace_to_header(data: bytes, old: str, new: str) -> bytes:
    """The message with `old` replaced by `new` in its To header (the header block only)."""
    end = data.find(b"\r\n\r\n")
    head, body = (data, b"") if end < 0 else (data[: end + 2], data[end + 2 :])
    old_b, new_b = old.encode("utf-8"), new.encode("ascii")
    for prefix in (b"\r\nTo: ", b"\r\nTo: <"):
        at = head.find(prefix + old_b)
        if at >= 0:
            start = at + len(prefix)
            return head[:start] + new_b + head[start + len(old_b) :] + body
    if head.startswith(b"To: " + old_b):
        return b"To: " + new_b + head[4 + len(old_b) :] + body
    return data


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """SMTP_URL, parsed once. The password is kept out of repr."""

    host: str
    port: int
    #: "smtps": TLS from the first byte; "starttls": upgrade after EHLO; "plain": neither
    security: str
    user: str | None
    password: str | None
    timeout: float

    def __repr__(self) -> str:
        return f"SmtpConfig(host={self.host!r}, port={self.port}, security={self.security!r}, user={self.user!r})"

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def from_url(cls, url: str, *, timeout: float) -> SmtpConfig:
        """smtp://[user:pass@]host[:port][?starttls=1] or smtps://… (user and password URL-quoted)."""
        # Messages below never repeat the URL: it may hold the password.
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ConfigError("setting SMTP_URL is invalid: bad host or port") from None
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigError("setting SMTP_URL is invalid: expected smtp://[user:pass@]host[:port] or smtps://…")
        query = parse_qs(parts.query)
        unknown = set(query) - {"starttls"}
        if unknown:
            raise ConfigError(f"setting SMTP_URL is invalid: unknown option {sorted(unknown)[0]!r} (known: starttls)")
        starttls = query.get("starttls", ["0"])[-1].lower() in _TRUE
        if parts.scheme == "smtps":
            if starttls:
                raise ConfigError("setting SMTP_URL is invalid: smtps:// is TLS already; drop ?starttls=1")
            security, default_port = "smtps", 465
        elif starttls:
            security, default_port = "starttls", 587
        else:
            security, default_port = "plain", 25
        return cls(
            host=parts.hostname,
            port=port or default_port,
            security=security,
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            timeout=timeout,
        )


_DEFAULT_SSL: list[ssl.SSLContext] = []
_DEFAULT_SSL_LOCK = threading.Lock()


def _default_ssl_context() -> ssl.SSLContext:
    # One per process: an SSLContext is safe to share between threads, and each pool thread's
    # mailer would otherwise load the same certificates again.
    with _DEFAULT_SSL_LOCK:
        if not _DEFAULT_SSL:
            _DEFAULT_SSL.append(ssl.create_default_context())
        return _DEFAULT_SSL[0]


class SmtpMailer:
    """Sends through one SMTP connection, opened on first use and reused until it fails or is closed.

    Safe to call from several threads (calls take turns); use a MailerPool for parallel sending.
    """

    live = True

    def __init__(self, settings: Settings, *, ssl_context: ssl.SSLContext | None = None) -> None:
        if not settings.env.smtp_url:
            raise ConfigError("setting SMTP_URL is not set; e-mails go to the outbox instead (make_mailer)")
        if not settings.env.digest_from:
            # Real mail from a made-up sender fails SPF/DMARC and lands in spam.
            raise ConfigError("setting DIGEST_FROM is required when SMTP_URL is set: the address digests are sent from")
        self.config = SmtpConfig.from_url(settings.env.smtp_url, timeout=settings.digest.smtp_timeout_seconds)
        _, self.envelope_from = sender(settings)
        # EHLO with our own domain: the default (socket.getfqdn) can hang on DNS.
        self.local_hostname = self.envelope_from.rpartition("@")[2] or "localhost"
        self._ssl_context = ssl_context
        self._conn: smtplib.SMTP | None = None
        #: the sender for a server without SMTPUTF8 (None: it has no ASCII form)
        self.envelope_from_ascii = ascii_address(self.envelope_from)
        self._lock = threading.Lock()
        #: connections opened so far (logs, tests)
        self.connections_opened = 0

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The given context, else the process's default one: made on first need (loading the system's CA
        certificates costs ~25 ms), never for a plain connection, and shared by every mailer of a pool."""
        if self._ssl_context is None:
            self._ssl_context = _default_ssl_context()
        return self._ssl_context

    # ---- connection ----

    def _redact(self, text: str) -> str:
        password = self.config.password
        return text.replace(password, "***") if password and len(password) >= 3 else text

    def _reply(self, code: int, reply: bytes | str) -> str:
        text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
        return self._redact(f"{code} {' '.join(text.split())}")

    def _connect(self) -> smtplib.SMTP:
        cfg = self.config
        conn: smtplib.SMTP | None = None
        try:
            if cfg.security == "smtps":
                conn = smtplib.SMTP_SSL(
                    cfg.host,
                    cfg.port,
                    local_hostname=self.local_hostname,
                    timeout=cfg.timeout,
                    context=self.ssl_context,
                )
            else:
                conn = smtplib.SMTP(cfg.host, cfg.port, local_hostname=self.local_hostname, timeout=cfg.timeout)
            conn.ehlo_or_helo_if_needed()
            if cfg.security == "starttls":
                conn.starttls(context=self.ssl_context)
                conn.ehlo()
            if cfg.user is not None:
                conn.login(cfg.user, cfg.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            self._discard(conn)
            raise SenderRefused(
                f"SMTP {cfg.where}: login refused: {self._reply(exc.smtp_code, exc.smtp_error)}", code=exc.smtp_code
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            self._discard(conn)
            raise SenderRefused(f"SMTP {cfg.where}: {self._redact(str(exc))}") from None
        except UnicodeEncodeError:
            # smtplib's AUTH encodes user and password as ASCII.
            self._discard(conn)
            raise SenderRefused(
                f"SMTP {cfg.where}: login impossible: the user name or password in SMTP_URL is not ASCII"
            ) from None
        except smtplib.SMTPResponseException as exc:  # bad banner, HELO or STARTTLS answer
            self._discard(conn)
            message = f"SMTP {cfg.where}: connection refused: {self._reply(exc.smtp_code, exc.smtp_error)}"
            if exc.smtp_code >= 500:
                raise SenderRefused(message, code=exc.smtp_code) from None
            raise TransientMailError(message) from None
        except ssl.SSLCertVerificationError as exc:
            self._discard(conn)
            raise SenderRefused(f"SMTP {cfg.where}: TLS certificate not accepted: {exc.verify_message}") from None
        except (OSError, smtplib.SMTPException) as exc:
            self._discard(conn)
            raise TransientMailError(
                f"SMTP {cfg.where}: cannot connect: {self._redact(str(exc)) or type(exc).__name__}"
            ) from None
        self.connections_opened += 1
        return conn

    @staticmethod
    def _discard(conn: smtplib.SMTP | None) -> None:
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _drop(self) -> None:
        self._discard(self._conn)
        self._conn = None

    def _reset(self) -> None:
        """After a refusal mid-transaction: RSET so the connection can carry the next message, or drop it."""
        if self._conn is None:
            return
        try:
            code, _ = self._conn.rset()
        except (OSError, smtplib.SMTPException):
            code = 0
        if code != 250:
            self._drop()

    # ---- sending ----

    def send(self, email: Email) -> None:
        data = email.wire if email.wire is not None else smtp_data(email.as_bytes())
        utf8 = not (email.to.isascii() and self.envelope_from.isascii())
        with self._lock:
            for attempt in (1, 2):
                fresh = self._conn is None
                if fresh:
                    self._conn = self._connect()
                try:
                    self._transaction(email.to, data, utf8=utf8)
                    return
                except _Dropped as dropped:
                    self._drop()
                    if not dropped.before_handover:
                        raise MaybeDelivered(f"SMTP {self.config.where}: {email.to}: {dropped}") from None
                    # Nothing was handed over: a connection that went stale between
                    # messages is worth exactly one new try.
                    if not fresh and attempt == 1:
                        continue
                    raise TransientMailError(f"SMTP {self.config.where}: {email.to}: {dropped}") from None

    def _transaction(self, to: str, data: bytes, *, utf8: bool) -> None:
        conn = self._conn
        assert conn is not None
        where = f"SMTP {self.config.where}: {to}"
        stage = "MAIL FROM"
        try:
            if utf8 and not conn.has_extn("smtputf8"):
                to, data = self._ascii_envelope(to, data, where)
                utf8 = False
            # Both addresses are plain addr-specs checked where they came in (DIGEST_FROM,
            # check_address), so the commands are written directly: smtplib's mail() and
            # rcpt() would parse each address again, a good part of a message's CPU.
            conn.command_encoding = "utf-8" if utf8 else "ascii"
            envelope_from = self.envelope_from if utf8 else self.envelope_from_ascii
            conn.putcmd("mail", f"FROM:<{envelope_from}>" + (" SMTPUTF8 BODY=8BITMIME" if utf8 else ""))
            code, reply = conn.getreply()
            if code != 250:
                self._refused(where, stage, code, reply)
            stage = "RCPT TO"
            conn.putcmd("rcpt", f"TO:<{to}>")
            code, reply = conn.getreply()
            if code not in (250, 251):
                self._refused(where, stage, code, reply)
            stage = "DATA"
            code, reply = conn.docmd("DATA")
            if code != 354:
                self._refused(where, stage, code, reply)
            stage = "the message"
            # One write with the final dot at its end: if it fails, the dot did not go
            # out in full, so the server cannot have accepted the message.
            conn.send(data)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _Dropped(f"connection lost at {stage}: {exc}", before_handover=True) from None
        try:
            code, reply = conn.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _Dropped(
                f"connection lost after the message was sent, before the server answered (it may have it): {exc}",
                before_handover=False,
            ) from None
        if code != 250:
            self._refused(where, "end of DATA", code, reply)

    def _ascii_envelope(self, to: str, data: bytes, where: str) -> tuple[str, bytes]:
        """Both addresses in their ASCII form (IDNA domains), for a server without SMTPUTF8, and the
        message with its To header to match; AddressNotSupported / SenderRefused if one has none."""
        if self.envelope_from_ascii is None:
            raise SenderRefused(
                f"{where}: the sender address {self.envelope_from!r} is not ASCII and the server lacks SMTPUTF8"
            )
        to_ascii = ascii_address(to)
        if to_ascii is None:
            raise AddressNotSupported(f"{where}: the part before the @ is not ASCII and the server lacks SMTPUTF8")
        return to_ascii, _replace_to_header(data, to, to_ascii)

    def _refused(self, where: str, stage: str, code: int, reply: bytes) -> None:
        message = f"{where}: {stage} refused: {self._reply(code, reply)}"
        if code == 421:
            # "Service not available, closing channel": the server is hanging up.
            self._drop()
            raise TransientMailError(message)
        self._reset()
        if 400 <= code < 500:
            raise TransientMailError(message)
        if code >= 500 and stage == "MAIL FROM":
            raise SenderRefused(message, code=code)
        if code >= 500:
            raise RecipientRefused(message, code=code)
        raise TransientMailError(f"{where}: {stage}: unexpected reply {self._reply(code, reply)}")

    def check(self) -> str:
        with self._lock:
            if self._conn is None:
                self._conn = self._connect()
            try:
                code, reply = self._conn.noop()
            except (smtplib.SMTPServerDisconnected, OSError) as exc:
                self._drop()
                raise TransientMailError(f"SMTP {self.config.where}: connection lost: {exc}") from None
        if code != 250:
            raise TransientMailError(f"SMTP {self.config.where}: NOOP refused: {self._reply(code, reply)}")
        login = f", logged in as {self.config.user}" if self.config.user else ""
        return f"ok: SMTP {self.config.where} ({self.config.security}{login}), sending as {self.envelope_from}"

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.quit()
                self._drop()


class _Dropped(Exception):
    """The connection died during a transaction (internal: becomes TransientMailError)."""

    def __init__(self, message: str, *, before_handover: bool) -> None:
        super().__init__(message)
        self.before_handover = before_handover
