"""A real SMTP server for tests (aiosmtpd on 127.0.0.1, a free port) that can be told to misbehave.

    with SmtpTestServer() as server:
        server.fail_rcpt("bad@example.org", "550")        # every RCPT to that address
        server.fail_message(3, "drop")                    # the 3rd DATA: hang up without answering
        ... SMTP_URL = server.url ...
        assert [m.rcpt_tos for m in server.messages] == ...

Faults: "421" (answer 421 and close the connection), "451" (temporary failure),
"550" (mailbox unavailable), "drop" (close during DATA, message not kept),
"accept_then_drop" (keep the message, then close without answering: the
client cannot know it went through), "hold" (keep the message and never
answer, until ``release()`` or the client hangs up: a client killed meanwhile
died between handing the message over and hearing back). ``close_after(n)`` hangs up right after
accepting the n-th message, as a server closing an idle connection would.
Optional AUTH PLAIN/LOGIN with one user and password. ``connections`` counts
client connections (the controller's own start-up probe excluded).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

FAULT_REPLIES = {
    "421": "421 4.3.2 Service not available, closing transmission channel",
    "451": "451 4.3.0 Requested action aborted: try again later",
    "550": "550 5.1.1 Mailbox unavailable",
}
FAULTS = (*FAULT_REPLIES, "drop", "accept_then_drop", "hold")


@dataclass(frozen=True)
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    #: which client connection carried it (1, 2, ...)
    connection: int


@dataclass
class _State:
    messages: list[Received] = field(default_factory=list)
    connections: int = 0
    data_commands: int = 0
    rcpt_faults: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    message_faults: dict[int, str] = field(default_factory=dict)
    close_after: set[int] = field(default_factory=set)
    auth_attempts: list[tuple[str, bool]] = field(default_factory=list)
    held: int = 0


class _Handler:
    def __init__(self, owner: SmtpTestServer) -> None:
        self.owner = owner

    async def _hang_up(self, server: SMTP, reply: str | None) -> None:
        if reply is not None:
            await server.push(reply)
        assert server.transport is not None
        server.transport.close()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        with self.owner.lock:
            fault = self.owner.state.rcpt_faults.get(address)
            if fault is not None:
                kind, times = fault
                if times is not None:
                    if times <= 1:
                        del self.owner.state.rcpt_faults[address]
                    else:
                        self.owner.state.rcpt_faults[address] = (kind, times - 1)
        if fault is not None:
            kind = fault[0]
            if kind == "421":
                await self._hang_up(server, FAULT_REPLIES["421"])
                return "421 closing"  # not seen: the transport is closed
            return FAULT_REPLIES[kind]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.owner.lock:
            state = self.owner.state
            state.data_commands += 1
            n = state.data_commands
            fault = state.message_faults.pop(n, None)
            connection = getattr(server, "connection_number", 0)
            received = Received(
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=bytes(envelope.original_content or b""),
                connection=connection,
            )
            if fault in (None, "accept_then_drop", "hold"):
                state.messages.append(received)
            close = n in state.close_after
        if fault == "421":
            await self._hang_up(server, FAULT_REPLIES["421"])
            return "421 closing"
        if fault in ("451", "550"):
            return FAULT_REPLIES[fault]
        if fault in ("drop", "accept_then_drop"):
            await self._hang_up(server, None)
            return "250 never seen"
        if fault == "hold":
            with self.owner.lock:
                self.owner.state.held += 1
            while not self.owner.released.is_set():
                if server.transport is None or server.transport.is_closing():
                    return "250 never seen"
                await asyncio.sleep(0.02)
        if close:
            await self._hang_up(server, "250 OK: queued")
            return "250 never seen"
        delay = self.owner.answer_delay
        if delay:
            # The message is kept already: a client that dies now cannot know it went through.
            await asyncio.sleep(delay)
        return "250 OK: queued"


class _CountingSMTP(SMTP):
    def __init__(self, owner: SmtpTestServer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner = owner

    def _create_session(self) -> Session:
        # Called per connection, and again after STARTTLS on the same one.
        if self._original_transport is None:
            with self.owner.lock:
                self.owner.state.connections += 1
                self.connection_number = self.owner.state.connections
        return super()._create_session()


class _Controller(Controller):
    def __init__(self, owner: SmtpTestServer, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, hostname="127.0.0.1", port=0, server_hostname="localhost", **kwargs)
        self.owner = owner

    def factory(self) -> SMTP:
        return _CountingSMTP(self.owner, self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        # aiosmtpd probes self.port; with port 0 the real one is known only now.
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        super()._trigger_server()


class SmtpTestServer:
    """A threaded aiosmtpd server with fault injection; use as a context manager."""

    def __init__(
        self,
        *,
        user: str | None = None,
        password: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        smtputf8: bool = True,
    ) -> None:
        """`user`/`password` turn on AUTH; `tls_context` offers STARTTLS, or with implicit_tls=True serves smtps."""
        self.lock = threading.Lock()
        self.state = _State()
        #: set by release(): held messages get their answer
        self.released = threading.Event()
        #: seconds each accepted message waits for its 250 (a slow server; the message is kept first)
        self.answer_delay = 0.0
        self.user = user
        self.password = password
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8}
        if user is not None:
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        if tls_context is not None and implicit_tls:
            kwargs["ssl_context"] = tls_context
        elif tls_context is not None:
            kwargs.update(tls_context=tls_context, require_starttls=False)
        self.implicit_tls = implicit_tls
        self.controller = _Controller(self, _Handler(self), **kwargs)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.user
            and auth_data.password.decode() == self.password
        )
        with self.lock:
            self.state.auth_attempts.append((mechanism, ok))
        # handled=False: let aiosmtpd answer 535 itself (True means "I already replied").
        return AuthResult(success=ok, handled=False)

    # ---- lifecycle ----

    def start(self) -> SmtpTestServer:
        self.controller.start()
        with self.lock:
            # The controller's own start-up probe is not a client.
            self.state.connections = 0
        return self

    def stop(self) -> None:
        self.released.set()
        self.controller.stop()

    def __enter__(self) -> SmtpTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- where ----

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def url(self, *, user: str | None = None, password: str | None = None, starttls: bool = False) -> str:
        """An SMTP_URL for this server (credentials URL-quoted by the caller if needed)."""
        scheme = "smtps" if self.implicit_tls else "smtp"
        auth = f"{user}:{password}@" if user is not None else ""
        return f"{scheme}://{auth}{self.host}:{self.port}" + ("?starttls=1" if starttls else "")

    # ---- faults ----

    def fail_rcpt(self, address: str, fault: str, *, times: int | None = None) -> None:
        """Answer RCPT TO:<address> with fault "421", "451" or "550" (`times` times, or always)."""
        if fault not in FAULT_REPLIES:
            raise ValueError(f"RCPT fault must be one of {list(FAULT_REPLIES)}")
        with self.lock:
            self.state.rcpt_faults[address] = (fault, times)

    def fail_message(self, n: int, fault: str) -> None:
        """Misbehave at the end of the n-th DATA (1-based, counted over all connections)."""
        if fault not in FAULTS:
            raise ValueError(f"message fault must be one of {list(FAULTS)}")
        with self.lock:
            self.state.message_faults[n] = fault

    def release(self) -> None:
        """Answer the messages held by a "hold" fault."""
        self.released.set()

    @property
    def held(self) -> int:
        """How many messages a "hold" fault is holding (or held)."""
        with self.lock:
            return self.state.held

    def close_after(self, n: int) -> None:
        """Accept the n-th message, then close the connection (a server dropping an idle client)."""
        with self.lock:
            self.state.close_after.add(n)

    # ---- what happened ----

    @property
    def messages(self) -> list[Received]:
        with self.lock:
            return list(self.state.messages)

    @property
    def connections(self) -> int:
        with self.lock:
            return self.state.connections

    @property
    def auth_attempts(self) -> list[tuple[str, bool]]:
        with self.lock:
            return list(self.state.auth_attempts)

    def recipients(self) -> list[str]:
        return [r for m in self.messages for r in m.rcpt_tos]


def free_port() -> int:
    """A port nobody listens on (for connection-refused tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed_tls(tmp_dir: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting it) for 127.0.0.1, made with `cryptography`.

    Skips the calling test when `cryptography` is not installed (it is not one of our dependencies).
    """
    import datetime as dt
    import ipaddress
    from pathlib import Path

    pytest.importorskip(
        "cryptography", reason="STARTTLS/smtps tests need the cryptography package for a test certificate"
    )
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = Path(tmp_dir) / "cert.pem", Path(tmp_dir) / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cafile=str(cert_path))
    return server, client


@pytest.fixture
def smtp_server() -> Iterator[SmtpTestServer]:
    """A plain SMTP test server, stopped after the test (import this fixture into a test module)."""
    with SmtpTestServer() as server:
        yield server
