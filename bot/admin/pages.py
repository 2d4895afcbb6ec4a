"""The operator console's routes: login, the pages, and the actions (retry, skip, pause, resume).

Handlers read the request and answer; the store is reached through
``anyio.to_thread`` (it blocks). Every page is server-rendered and works
without JavaScript; every POST but the login carries the session's CSRF token;
every action asks for a confirmation and lands in the audit log, as does every
login. Nothing here is cached (``Cache-Control: no-store``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from bot.admin import auth, views
from bot.channels import CHANNELS
from bot.errors import StoreError
from bot.render.templates import make_environment
from bot.status import _when
from bot.subscribe import _BadForm, _form
from bot.wording import plural

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)

#: every console response: never stored by a browser or a proxy
NO_STORE = {"Cache-Control": "no-store"}
#: the console's pages: the site's policy, plus frames from itself (the digest preview)
CONSOLE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; frame-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
#: the digest preview, shown in a sandboxed frame of the console: no script, nothing from elsewhere
PREVIEW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; "
    "frame-ancestors 'self'; base-uri 'none'; sandbox"
)

#: the actions, what they act on, and how the confirmation asks
ACTIONS = {
    "retry": ("delivery", "Queue delivery #{target} again"),
    "skip": ("delivery", "Close delivery #{target} without publishing it"),
    "pause": ("channel", "Pause channel {target}: nothing is posted there until resumed"),
    "resume": ("channel", "Resume channel {target}"),
}


def _client(request: Request) -> str:
    # bot.webguard.ProxyHeaders has already applied the FORWARDED_ALLOW_IPS rule.
    return request.client.host if request.client else "unknown"


def _same_origin(request: Request) -> bool:
    """False for a browser's POST from another site (the login form has no CSRF token to stop it).

    Browsers say where a request comes from in Sec-Fetch-Site; under the site's
    `Referrer-Policy: no-referrer` their Origin is "null" even for our own forms,
    so Origin counts only when it names a site, and must then be this one.
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return True
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


class Console:
    """The pages, with the app's store, clock and settings."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.settings = app.settings
        self.env = make_environment(app.settings.render.templates_dir)

    # ---- answering ----

    def page(self, template: str, status: int = 200, /, *, session: auth.Session | None, **context: Any) -> Response:
        now = self.app.clock()
        body = self.env.get_template(template).render(
            csrf=auth.csrf_token(self.settings, session) if session else "",
            logged_in=session is not None,
            when=lambda at: _when(at, now),
            plural=plural,
            here=template.removeprefix("admin_").split(".")[0],
            **context,
        )
        return HTMLResponse(body, status_code=status, headers={**NO_STORE, "Content-Security-Policy": CONSOLE_CSP})

    @staticmethod
    def redirect(to: str, *, cookie: str | None = None) -> Response:
        headers = dict(NO_STORE, Location=to)
        response = Response(status_code=303, headers=headers)
        if cookie is not None:
            response.headers["Set-Cookie"] = cookie
        return response

    async def session(self, request: Request) -> auth.Session | None:
        """The request's session: signed, not expired, and not logged out (a copied cookie dies with the logout)."""
        session = auth.read_session(self.settings, request.cookies.get(auth.SESSION_COOKIE, ""), now=self.app.clock())
        if session is None:
            return None
        ended = await anyio.to_thread.run_sync(lambda: self.app.store.audited("logout", auth.session_label(session)))
        return None if ended else session

    async def guarded(self, request: Request, render: Callable[[auth.Session], Response]) -> Response:
        """A page for a logged-in operator; the login page otherwise."""
        session = await self.session(request)
        if session is None:
            return self.redirect("/admin/login")
        return await anyio.to_thread.run_sync(lambda: render(session))

    # ---- login, logout ----

    async def login(self, request: Request) -> Response:
        if request.method != "POST":
            return self.page("admin_login.html.j2", session=None, error="")
        if not _same_origin(request):
            return PlainTextResponse("cross-site form refused", status_code=403, headers=NO_STORE)
        try:
            password = (await _form(request)).get("password", [""])[0]
        except _BadForm as exc:
            return self.page("admin_login.html.j2", exc.status, session=None, error=str(exc))
        client = _client(request)
        return await anyio.to_thread.run_sync(lambda: self._login(password, client))

    def _login(self, password: str, client: str) -> Response:
        store = self.app.store
        now = self.app.clock()
        since = now - timedelta(minutes=self.settings.web.admin_lockout_minutes)
        locked = auth.login_lockout(
            store.login_failures(since=since, client=client), store.login_failures(since=since), self.settings, now=now
        )
        if locked is not None:
            # One line a minute per client: a script hammering a locked login must not fill the table.
            if store.rate_limit(f"console-refused:{client}", now=now, window=timedelta(minutes=1), limit=1):
                store.audit(
                    "login_refused",
                    now=now,
                    target=auth.ACCOUNT,
                    client=client,
                    detail=f"locked ({locked.scope}) until {locked.until:%H:%M:%S} UTC",
                )
            return self.page(
                "admin_login.html.j2",
                429,
                session=None,
                error=f"Too many failed logins. Try again after {locked.until:%H:%M} UTC.",
            )
        if not auth.password_matches(self.settings.env.operator_password_hash, password):
            store.audit("login_failed", now=now, target=auth.ACCOUNT, client=client)
            log.warning("operator console: failed login from %s", client)
            return self.page("admin_login.html.j2", 401, session=None, error="Wrong password.")
        value, session = auth.new_session_cookie(self.settings, now=now)
        store.audit("login", now=now, target=auth.session_label(session), client=client)
        log.info("operator console: login from %s", client)
        return self.redirect(
            "/admin",
            cookie=auth.cookie_header(self.settings, value, max_age=self.settings.web.admin_session_minutes * 60),
        )

    async def logout(self, request: Request) -> Response:
        checked = await self.checked_form(request)
        if isinstance(checked, Response):
            return checked
        label = auth.session_label(checked[0])
        client = _client(request)
        await anyio.to_thread.run_sync(
            lambda: self.app.store.audit("logout", now=self.app.clock(), target=label, client=client)
        )
        return self.redirect("/admin/login", cookie=auth.cookie_header(self.settings, "", max_age=0))

    async def checked_form(self, request: Request) -> tuple[auth.Session, dict[str, list[str]]] | Response:
        """The session and form of a POST, or the answer refusing it (no session, no or a wrong CSRF token)."""
        session = await self.session(request)
        if session is None:
            return self.redirect("/admin/login")
        try:
            form = await _form(request)
        except _BadForm as exc:
            return PlainTextResponse(str(exc), status_code=exc.status, headers=NO_STORE)
        if not _same_origin(request) or not auth.csrf_ok(self.settings, session, form.get("csrf", [""])[0]):
            client = _client(request)
            await anyio.to_thread.run_sync(
                lambda: self.app.store.audit(
                    "csrf_refused", now=self.app.clock(), target=request.url.path, client=client
                )
            )
            return PlainTextResponse(
                "this form has expired or was sent from elsewhere: reload the page", status_code=403, headers=NO_STORE
            )
        return session, form

    # ---- pages ----

    async def overview(self, request: Request) -> Response:
        return await self.guarded(
            request, lambda s: self.page("admin_overview.html.j2", session=s, o=views.overview(self.app))
        )

    async def attention(self, request: Request) -> Response:
        def render(s: auth.Session) -> Response:
            rows, channels = views.attention(self.app)
            return self.page("admin_attention.html.j2", session=s, rows=rows, channels=channels)

        return await self.guarded(request, render)

    async def summary(self, request: Request) -> Response:
        summary_id = request.path_params["summary_id"]

        def render(s: auth.Session) -> Response:
            data = views.summary_page(self.app, summary_id)
            if data is None:
                return self.page(
                    "admin_message.html.j2", 404, session=s, title="Not found", message=f"No summary #{summary_id}."
                )
            return self.page("admin_summary.html.j2", session=s, p=data)

        return await self.guarded(request, render)

    async def digest(self, request: Request) -> Response:
        query = request.query_params.get("q", "")
        return await self.guarded(
            request, lambda s: self.page("admin_digest.html.j2", session=s, d=views.digest_page(self.app, query))
        )

    async def digest_preview(self, request: Request) -> Response:
        def render(s: auth.Session) -> Response:
            headers = {**NO_STORE, "Content-Security-Policy": PREVIEW_CSP, "X-Frame-Options": "SAMEORIGIN"}
            return HTMLResponse(views.preview_html(self.app), headers=headers)

        return await self.guarded(request, render)

    async def charts(self, request: Request) -> Response:
        # Only the two windows the page offers: a free number of days would be a query as big as asked.
        days = 90 if request.query_params.get("days") == "90" else 30

        def render(s: auth.Session) -> Response:
            from bot.charts import console_charts

            return self.page(
                "admin_charts.html.j2",
                session=s,
                days=days,
                charts=console_charts(self.app.store, self.app.clock(), days),
            )

        return await self.guarded(request, render)

    async def audit(self, request: Request) -> Response:
        return await self.guarded(
            request, lambda s: self.page("admin_audit.html.j2", session=s, entries=views.audit_log(self.app))
        )

    # ---- actions ----

    async def act(self, request: Request) -> Response:
        checked = await self.checked_form(request)
        if isinstance(checked, Response):
            return checked
        session, form = checked
        action = form.get("action", [""])[0]
        target = form.get("target", [""])[0].strip()
        confirmed = form.get("confirm", [""])[0] == "yes"
        client = _client(request)
        return await anyio.to_thread.run_sync(lambda: self._act(session, action, target, confirmed, client))

    def _act(self, session: auth.Session, action: str, target: str, confirmed: bool, client: str) -> Response:
        kind, question = ACTIONS.get(action, ("", ""))
        valid = (kind == "delivery" and target.isdigit()) or (kind == "channel" and target in CHANNELS)
        if not valid:
            return self.page(
                "admin_message.html.j2",
                400,
                session=session,
                title="Unknown action",
                message="That action or what it acts on is not known.",
            )
        if not confirmed:
            # No JavaScript needed: without the ticked box the action is only asked about.
            return self.page(
                "admin_confirm.html.j2",
                session=session,
                action=action,
                target=target,
                question=question.format(target=target),
            )
        now = self.app.clock()
        try:
            done = self._apply(action, target, now)
        except StoreError as exc:
            self.app.store.audit(action, now=now, target=f"{kind} {target}", client=client, detail=f"refused: {exc}")
            return self.page("admin_message.html.j2", 409, session=session, title="Not done", message=str(exc))
        self.app.store.audit(action, now=now, target=f"{kind} {target}", client=client, detail=done)
        log.info("operator console: %s %s %s from %s: %s", action, kind, target, client, done)
        return self.page("admin_message.html.j2", session=session, title="Done", message=done)

    def _apply(self, action: str, target: str, now: datetime) -> str:
        """The CLI's own store calls (`retry ID`, `skip ID`, the pause the dispatcher sets and `check` lifts)."""
        store = self.app.store
        if action == "retry":
            d = store.operator_retry(int(target), now=now)
            return f"delivery {d.id} ({d.channel}, {d.guid}) queued again"
        if action == "skip":
            d = store.operator_skip(int(target), now=now)
            return f"delivery {d.id} ({d.channel}, {d.guid}) skipped"
        if action == "pause":
            store.pause_channel(target, "paused by the operator in the console", now=now)
            return f"channel {target} paused"
        if not store.resume_channel(target):
            raise StoreError(f"channel {target} is not paused")
        return f"channel {target} resumed"


async def _not_found(request: Request) -> Response:
    return PlainTextResponse("Not Found", status_code=404, headers=NO_STORE)


def routes(app: App) -> list[BaseRoute]:
    """The console's routes for bot.web.create_app(extra_routes=...); without OPERATOR_PASSWORD_HASH every /admin URL
    is 404."""
    anything = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
    gone: list[BaseRoute] = [
        Route("/admin", _not_found, methods=anything),
        Route("/admin/{rest:path}", _not_found, methods=anything),
    ]
    if not app.settings.env.operator_password_hash:
        return gone
    c = Console(app)
    return [
        Route("/admin", c.overview, methods=["GET", "HEAD"]),
        Route("/admin/login", c.login, methods=["GET", "POST"]),
        Route("/admin/logout", c.logout, methods=["POST"]),
        Route("/admin/attention", c.attention, methods=["GET", "HEAD"]),
        Route("/admin/act", c.act, methods=["POST"]),
        Route("/admin/summary/{summary_id:int}", c.summary, methods=["GET", "HEAD"]),
        Route("/admin/digest", c.digest, methods=["GET", "HEAD"]),
        Route("/admin/digest/preview", c.digest_preview, methods=["GET", "HEAD"]),
        Route("/admin/charts", c.charts, methods=["GET", "HEAD"]),
        Route("/admin/audit", c.audit, methods=["GET", "HEAD"]),
        *gone,
    ]
