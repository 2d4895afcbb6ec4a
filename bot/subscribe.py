"""The subscription pages of the web process: /subscribe, /confirm, /unsubscribe, /preferences.

``routes(app)`` gives Starlette routes for ``bot.web.create_app``. Handlers
parse and answer; the store and the mailer are reached through
``anyio.to_thread`` (both block). Pages set no cookie and never redirect: an
RFC 8058 one-click POST to /unsubscribe unsubscribes at once and answers 200,
also for an address already gone. /subscribe answers the same page whether
the address is new or known, so it cannot be used to probe the list.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from bot.decide import DigestSchedule
from bot.digest.addresses import validate_address
from bot.digest.subscribers import send_confirmation
from bot.errors import AddressTooLong, MailError, SubscriberError
from bot.mail.tokens import (
    PATHS,
    InvalidToken,
    make_token,
    max_age,
    read_token,
    read_versioned_token,
    subscription_version,
)
from bot.records import SubscriberState
from bot.render.templates import make_environment
from bot.wording import category_label

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)

#: largest form body read (an address and a few categories need far less)
MAX_FORM_BYTES = 16_384
#: most fields a form may have (ours have an address, a honeypot and the categories)
MAX_FORM_FIELDS = 100

#: the subscription pages: nothing cached (links carry tokens); the security headers
#: every page gets come from bot.webguard.SecurityHeaders
HEADERS = {"Cache-Control": "no-store"}


class _BadForm(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _form(request: Request) -> dict[str, list[str]]:
    """An application/x-www-form-urlencoded body, size-limited (our forms send nothing else)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("", "application/x-www-form-urlencoded"):
        raise _BadForm(415, "the form must be sent as application/x-www-form-urlencoded")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise _BadForm(413, "the form is too large")
    try:
        text = body.decode("utf-8")
        # errors="strict": a percent-escaped byte that is not UTF-8 must not become U+FFFD.
        return parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise _BadForm(400, "the form is not valid UTF-8: please type the address again") from None
    except ValueError:  # parse_qs: more than max_num_fields
        raise _BadForm(400, "the form has too many fields") from None


class Pages:
    """The four pages, with the app's store, mailer, clock and settings."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.settings = app.settings
        # Pages keep their whitespace as written, and an edited template shows without a restart.
        self.env = make_environment(
            app.settings.render.templates_dir,
            trim_blocks=False,
            auto_reload=True,
            filters={"category_label": category_label},
        )
        d = app.settings.digest
        self.schedule = DigestSchedule.parse(d.day_of_week, d.time, d.timezone)

    # ---- rendering ----

    def page(self, template: str, status: int = 200, /, **context: Any) -> Response:
        common = {
            "list_name": self.settings.digest.list_name,
            "site_url": self.settings.render.site_base_url,
            # Links within the site are relative: they work whatever host the proxy in front shows.
            "subscribe_url": "/subscribe",
            "ttl_hours": self.settings.digest.confirm_ttl_hours,
        }
        body = self.env.get_template(template).render(**common, **context)
        return HTMLResponse(body, status_code=status, headers=HEADERS)

    def _choices(self, chosen: Sequence[str]) -> list[tuple[str, bool]]:
        offered = list(dict.fromkeys((*self.settings.digest.categories, *chosen)))
        picked = {c.casefold() for c in chosen}
        return [(name, name.casefold() in picked) for name in offered]

    def _picked(self, form: Mapping[str, list[str]], allowed: Sequence[str]) -> tuple[str, ...]:
        # Only categories offered on the page (or already held) can be chosen.
        known = {c.casefold(): c for c in (*self.settings.digest.categories, *allowed)}
        return tuple(dict.fromkeys(known[v.casefold()] for v in form.get("category", []) if v.casefold() in known))

    def _links(self, address: str) -> dict[str, Any]:
        now = self.app.clock()
        return {
            f"{purpose}_url": (
                f"{PATHS[purpose]}?token={quote(make_token(self.settings, purpose, address, now=now), safe='')}"
            )
            for purpose in ("preferences", "unsubscribe")
        }

    async def _run(self, fn: Callable[[], Response]) -> Response:
        return await anyio.to_thread.run_sync(fn)

    # ---- /subscribe ----

    async def subscribe(self, request: Request) -> Response:
        if request.method != "POST":
            return self.page("page_subscribe.html.j2", state="form", address="", error="", categories=self._choices(()))
        try:
            form = await _form(request)
        except _BadForm as exc:
            return self.page(
                "page_subscribe.html.j2",
                exc.status,
                state="form",
                address="",
                error=str(exc),
                categories=self._choices(()),
            )
        raw = (form.get("email") or [""])[0]
        wanted = self._picked(form, ())
        if (form.get("website") or [""])[0].strip():
            # The honeypot: a bot filled the hidden field. Same answer, nothing sent.
            log.info("subscribe: honeypot filled; ignored")
            return self.page("page_subscribe.html.j2", state="sent", address=raw.strip()[:320])
        try:
            address = validate_address(raw)
        except SubscriberError as exc:
            error = "That does not look like an e-mail address. Please check it."
            if isinstance(exc, AddressTooLong):
                error = f"That address is too long to be mailed: {exc.reason}."
            return self.page(
                "page_subscribe.html.j2",
                400,
                state="form",
                address=raw.strip()[:320],
                error=error,
                categories=self._choices(wanted),
            )
        client = request.client.host if request.client else "unknown"
        return await self._run(lambda: self._request(address, wanted, client))

    def _request(self, address: str, wanted: tuple[str, ...], client: str) -> Response:
        store = self.app.store
        now = self.app.clock()
        d = self.settings.digest
        if not store.rate_limit(
            f"confirm-client:{client}", now=now, window=timedelta(hours=1), limit=d.confirm_per_client
        ):
            return self.page("page_subscribe.html.j2", 429, state="limited")
        subscriber = store.request_subscription(address, categories=wanted, now=now, source="web")
        # Over the per-address limit the page is the same; only the e-mail is left out,
        # so nobody can flood an inbox (or learn from the answer that the address is known).
        if store.rate_limit(
            f"confirm-address:{address.casefold()}", now=now, window=timedelta(days=1), limit=d.confirm_per_address
        ):
            try:
                send_confirmation(self.app, subscriber)
            except MailError as exc:
                log.error("subscribe: confirmation e-mail not sent: %s", exc)
                return self.page("page_subscribe.html.j2", 503, state="mail_failed")
        else:
            log.info("subscribe: confirmation e-mails to one address over the daily limit; none sent")
        return self.page("page_subscribe.html.j2", state="sent", address=address)

    # ---- /confirm ----

    async def confirm(self, request: Request) -> Response:
        token = request.query_params.get("token", "")
        # GET only shows a button; the POST confirms. Mail scanners and link
        # previews fetch every link of a message: a GET that confirmed would let
        # them confirm an address someone else typed into the form, which is
        # what double opt-in exists to prevent.
        post = request.method == "POST"
        return await self._run(lambda: self._confirm(token, post=post))

    def _confirm(self, token: str, *, post: bool) -> Response:
        now = self.app.clock()
        try:
            address, version = read_versioned_token(
                self.settings, "confirm", token, max_age=max_age(self.settings, "confirm"), now=now
            )
        except InvalidToken as exc:
            return self.page("page_confirm.html.j2", 400, state="expired" if exc.expired else "invalid")
        store = self.app.store
        subscriber = store.subscriber(address)
        if subscriber is None:
            return self.page("page_confirm.html.j2", 400, state="unknown")
        if version != subscription_version(subscriber):
            # Mailed before the address unsubscribed (or bounced): that consent was withdrawn since.
            return self.page("page_confirm.html.j2", 400, state="superseded")
        if post:
            subscriber = store.confirm_subscriber(address, now=now, source="web")
            if subscriber is None:
                return self.page("page_confirm.html.j2", 400, state="unknown")
        if not post and (
            subscriber.state is not SubscriberState.CONFIRMED or subscriber.requested_categories is not None
        ):
            return self.page(
                "page_confirm.html.j2",
                state="ask",
                address=subscriber.address,
                action_url=f"/confirm?token={quote(token, safe='')}",
            )
        if post:
            log.info("subscriber %d confirmed", subscriber.id)
        return self.page(
            "page_confirm.html.j2",
            state="confirmed",
            address=subscriber.address,
            categories=subscriber.categories,
            next_issue=(
                f"{self.schedule.following(now).astimezone(self.schedule.tz):%A %d %B %Y, %H:%M} "
                f"({self.schedule.tz.key})"
            ),
            **self._links(subscriber.address),
        )

    # ---- /unsubscribe ----

    async def unsubscribe(self, request: Request) -> Response:
        token = request.query_params.get("token", "")
        # RFC 8058: the POST itself is the consent; its body (List-Unsubscribe=One-Click,
        # urlencoded or multipart) is not needed, so it is not parsed.
        post = request.method == "POST"
        return await self._run(lambda: self._unsubscribe(token, post=post))

    def _unsubscribe(self, token: str, *, post: bool) -> Response:
        try:
            address = read_token(self.settings, "unsubscribe", token, max_age=None)
        except InvalidToken:
            return self.page("page_unsubscribe.html.j2", 400, state="invalid")
        if not post:
            return self.page(
                "page_unsubscribe.html.j2",
                state="ask",
                address=address,
                action_url=f"/unsubscribe?token={quote(token, safe='')}",
                **self._links(address),
            )
        subscriber = self.app.store.unsubscribe(address, now=self.app.clock())
        if subscriber is not None:
            log.info("subscriber %d unsubscribed (%s)", subscriber.id, subscriber.state.value)
        return self.page("page_unsubscribe.html.j2", state="done", address=address)

    # ---- /preferences ----

    async def preferences(self, request: Request) -> Response:
        token = request.query_params.get("token", "")
        form: dict[str, list[str]] | None = None
        if request.method == "POST":
            try:
                form = await _form(request)
            except _BadForm:
                return self.page("page_preferences.html.j2", 400, state="invalid")
        return await self._run(lambda: self._preferences(token, form))

    def _preferences(self, token: str, form: dict[str, list[str]] | None) -> Response:
        try:
            address = read_token(self.settings, "preferences", token, max_age=None)
        except InvalidToken:
            return self.page("page_preferences.html.j2", 400, state="invalid")
        store = self.app.store
        subscriber = store.subscriber(address)
        if subscriber is None:
            return self.page("page_preferences.html.j2", 400, state="unknown")
        state = "form"
        if form is not None:
            chosen = self._picked(form, subscriber.categories)
            subscriber = store.set_categories(address, chosen, now=self.app.clock()) or subscriber
            state = "saved"
        return self.page(
            "page_preferences.html.j2",
            state=state,
            address=subscriber.address,
            chosen=subscriber.categories,
            categories=self._choices(subscriber.categories),
            subscriber_state=subscriber.state.value,
            action_url=f"/preferences?token={quote(token, safe='')}",
            **self._links(subscriber.address),
        )


def routes(app: App) -> list[BaseRoute]:
    """The subscription pages, for bot.web.create_app(extra_routes=...)."""
    pages = Pages(app)
    return [
        Route("/subscribe", pages.subscribe, methods=["GET", "POST"]),
        Route("/confirm", pages.confirm, methods=["GET", "POST"]),
        Route("/unsubscribe", pages.unsubscribe, methods=["GET", "POST"]),
        Route("/preferences", pages.preferences, methods=["GET", "POST"]),
    ]
