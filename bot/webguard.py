"""What stands between the internet and the web app: who the client is, the security headers, the access log.

Two small ASGI steps (``bot.web.create_app`` puts them around every route), a filter for
uvicorn's access log (added by ``bot.jobs.serve_web``) and the pure decisions behind them.
They own no route and touch nothing in the store.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: every response, HTML pages first of all: no sniffing, no framing, no referrer (token
#: URLs must not leak), nothing loaded from elsewhere (inline styles only)
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """FORWARDED_ALLOW_IPS, parsed: whose X-Forwarded-For is believed."""

    #: the proxies' addresses
    networks: tuple[Network, ...] = ()
    #: "*": every peer is a proxy (a host reachable only through its router, as on Heroku);
    #: the hops inside X-Forwarded-For are still judged by `networks` alone
    any_peer: bool = False

    def trusts_peer(self, host: str) -> bool:
        return self.any_peer or self.trusts_hop(host)

    def trusts_hop(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)


def trusted_proxies(setting: str) -> TrustedProxies:
    """FORWARDED_ALLOW_IPS ("10.0.0.1, 10.1.0.0/16", or "*") parsed; ConfigError naming a bad entry."""
    networks = []
    any_peer = False
    for entry in (e.strip() for e in setting.split(",")):
        if not entry:
            continue
        if entry == "*":
            any_peer = True
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ConfigError(
                f"setting FORWARDED_ALLOW_IPS = {setting!r} is invalid: {entry!r} is not an IP address, a "
                "CIDR network or *"
            ) from None
    return TrustedProxies(tuple(networks), any_peer)


def client_address(peer: str, forwarded_for: Iterable[str], trusted: TrustedProxies) -> str:
    """The client's address: the socket's peer, unless that peer is a trusted proxy.

    A proxy such as Heroku's router appends the address it saw to whatever
    X-Forwarded-For the client sent, so only the right-hand end can be believed:
    walk from the right past trusted proxies and take the first other address.
    The leftmost entries are whatever the client chose to write.
    """
    if not trusted.trusts_peer(peer):
        return peer
    hops = [h.strip() for value in forwarded_for for h in value.split(",")]
    hops = [h for h in hops if h]
    for hop in reversed(hops):
        if not trusted.trusts_hop(hop):
            return hop
    return hops[0] if hops else peer  # every hop is a trusted proxy: the farthest one


class ProxyHeaders:
    """Sets the ASGI scope's client from X-Forwarded-For, believed only from trusted proxies."""

    def __init__(self, app: ASGIApp, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope.get("client"):
            peer = scope["client"][0]
            values = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"]
            host = client_address(peer, values, self.trusted)
            if host != peer:
                scope = dict(scope, client=(host, 0))
                proto = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-proto"]
                if proto and proto[-1].split(",")[-1].strip() in ("http", "https"):
                    scope["scheme"] = proto[-1].split(",")[-1].strip()
        await self.app(scope, receive, send)


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response that does not set its own value: one place for all pages."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [
                    (k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS if k.lower().encode() not in present
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


_TOKEN = re.compile(r"(?i)([?&]token=)[^&#\s]*")


def redact_token(text: str) -> str:
    """A URL with the value of every token= parameter replaced: log lines must not hold working links."""
    return _TOKEN.sub(r"\1[redacted]", text)


class TokenRedactingFilter(logging.Filter):
    """For uvicorn's access log: its arguments are (client, method, path with query, HTTP version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_token(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact_token(record.msg)
        return True
