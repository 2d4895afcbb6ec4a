"""Digest and confirmation e-mails: records, templates, CSS inlining, MIME assembly.

A digest is rendered once (HTML with CSS inlined, and text) with random
placeholders where the recipient's links go, and its MIME skeleton (the shared
headers, the part headers, the boundaries) is built once by the email package.
Both parts are quoted-printable encoded once too, with holes for the links
(that byte layout, and its SMTP form, live in ``bot.mail.wire``).
Each recipient's message is then their headers, the quoted-printable encoding
of their two links (binascii, in C) and a join of bytes, done twice: the
message, and its SMTP form from pieces whose dots were stuffed once. Never a
template render, never a MIME assembly. Summary text never reaches a header: headers are
built from settings and our own values only. Pure: no I/O beyond reading
templates, and time comes in as ``now``.
"""

from __future__ import annotations

import html
import re
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import css_inline
import jinja2

from bot.errors import ConfigError, RenderError
from bot.mail.base import HEADERS_POLICY, Email, RecipientRefused, flatten
from bot.mail.compiled import compiled_templates
from bot.mail.wire import (
    _HTML_PREFERENCES,
    _HTML_UNSUBSCRIBE,
    _NEEDS_ESCAPE,
    _PERSONAL,
    _TEXT_PREFERENCES,
    _TEXT_UNSUBSCRIBE,
    _boundary,
    _crlf,
    _date_header,
    _EncodedBody,
    _Layout,
    _link,
    _Skeleton,
)
from bot.render.posts import one_line
from bot.render.templates import make_environment, template_dirs
from bot.settings import Settings
from bot.wording import category_label

DIGEST_HTML = "digest.html.j2"
DIGEST_TEXT = "digest.txt.j2"
CONFIRM_HTML = "confirm.html.j2"
CONFIRM_TEXT = "confirm.txt.j2"
CSS = "digest.css"

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# An address we put in To and the envelope: one addr-spec, nothing that could split
# it into two addresses or open a comment or a new header line.
_ADDRESS = re.compile(r"[^\s@,;:<>()\[\]\\\"]+@[^\s@,;:<>()\[\]\\\"]+")
_HEADER_URL = re.compile(r"https?://[^\s<>\"]+")
_MESSAGE_ID = re.compile(r"<[!-;=?-~]+@[A-Za-z0-9.-]+>")


@dataclass(frozen=True, slots=True)
class DigestItem:
    """One summary in a digest, already rendered."""

    #: the summary's guid (identity; not shown)
    guid: str
    #: the paper's title, plain text
    title: str
    #: the paper's authors, one plain-text line ("" when unknown)
    paper_authors: str
    #: the summary author's display name
    summary_author: str
    #: the teaser as plain text (may hold paragraphs separated by blank lines)
    teaser_text: str
    #: the teaser as sanitised HTML (trusted: inserted without escaping)
    teaser_html: str
    #: the summary's page
    link: str
    #: the paper itself (arXiv abstract page, ...), when known
    paper_url: str | None
    #: the site's vote count, when known
    votes: int | None
    #: categories (arXiv or the source's), primary first
    categories: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Digest:
    """One issue of the digest: what it covers and its summaries, in the order shown."""

    #: the issue number (1, 2, ...)
    issue: int
    #: start of the period covered (inclusive, timezone-aware)
    period_start: datetime
    #: end of the period covered (exclusive, timezone-aware)
    period_end: datetime
    #: the summaries, already ordered (the lead orders by votes, then date)
    items: tuple[DigestItem, ...]


def format_period(start: datetime, end: datetime, tz: ZoneInfo) -> str:
    """'3–9 Nov 2026', '28 Oct – 3 Nov 2026' or '29 Dec 2025 – 4 Jan 2026'.

    `end` is exclusive, so a period ending at midnight shows the day before.
    """
    s = start.astimezone(tz)
    e = (end - timedelta(microseconds=1) if end > start else end).astimezone(tz)

    def day(d: datetime, *, year: bool) -> str:
        return f"{d.day} {_MONTHS[d.month - 1]}" + (f" {d.year}" if year else "")

    if s.date() == e.date():
        return day(e, year=True)
    if (s.year, s.month) == (e.year, e.month):
        return f"{s.day}–{day(e, year=True)}"
    if s.year == e.year:
        return f"{day(s, year=False)} – {day(e, year=True)}"
    return f"{day(s, year=True)} – {day(e, year=True)}"


def sender(settings: Settings) -> tuple[str, str]:
    """The From header and its bare address, from DIGEST_FROM.

    Unset DIGEST_FROM falls back to ``<list slug>@<host of PUBLIC_BASE_URL>``
    (fine for the outbox; the SMTP mailer's `check` should flag it).
    """
    raw = one_line(settings.env.digest_from)
    list_name = one_line(settings.digest.list_name)
    if not raw:
        host = urlsplit(settings.env.public_base_url).hostname or "localhost"
        address = f"{_slug(list_name) or 'digest'}@{host}"
        return f"{list_name} <{address}>", address
    _name, address = parseaddr(raw)
    if not _ADDRESS.fullmatch(address or ""):
        raise ConfigError(
            f"setting DIGEST_FROM = {raw!r} is invalid: expected an address like 'Name <digest@example.org>'"
        )
    return raw, address


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def list_id(settings: Settings) -> str:
    """The List-Id header (RFC 2919): 'ShortScience weekly <shortscience-weekly.example.org>'."""
    _, address = sender(settings)
    domain = address.rpartition("@")[2]
    name = one_line(settings.digest.list_name)
    return f"{name} <{_slug(name) or 'digest'}.{domain}>"


def check_address(address: str) -> str:
    """The address if it is one plain addr-spec; RecipientRefused otherwise (never reaches a header)."""
    if not _ADDRESS.fullmatch(address) or len(address) > 320:
        raise RecipientRefused(f"not a usable e-mail address: {address!r}")
    return address


def _check_url(url: str, what: str) -> str:
    if not _HEADER_URL.fullmatch(url):
        raise ValueError(f"{what} must be an absolute http(s) URL without spaces, got {url!r}")
    return url


def _assemble(
    *,
    from_header: str,
    to: str | None,
    subject: str,
    now: datetime | None,
    message_id: str | None,
    text: str,
    html_body: str,
    extra: tuple[tuple[str, str], ...] = (),
    boundary: str | None = None,
) -> EmailMessage:
    """multipart/alternative with the text part first and the HTML part last.

    `to`, `now` and `message_id` may be None when building a digest's skeleton:
    those headers are then added per recipient. `boundary`: the MIME boundary
    (default: random).
    """
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = from_header
    if to is not None:
        msg["To"] = to
    msg["Subject"] = subject
    if now is not None:
        msg["Date"] = format_datetime(now)
    if message_id is not None:
        msg["Message-ID"] = message_id
    for name, value in extra:
        msg[name] = value
    # Quoted-printable keeps both parts 7-bit and readable, and skips the
    # library's per-message sniffing between QP and base64.
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html_body, subtype="html", charset="utf-8", cte="quoted-printable")
    for part in msg.iter_parts():
        del part["MIME-Version"]  # add_alternative copies it into the part; it belongs at the top only
    if boundary is not None:
        msg.set_boundary(boundary)
    # The parts are encoded now, with 76-character lines; from here on the policy
    # only governs header folding (see HEADERS_POLICY).
    msg.policy = HEADERS_POLICY
    return msg


def digest_message_id(issue: int, subscriber_id: int, nonce: str, domain: str) -> str:
    """The Message-ID of one digest issue for one subscriber: the same every time it is (re)sent.

    A re-send after a crash thus carries the Message-ID of the copy that may
    already be out, which mailbox providers deduplicate on. `nonce` is drawn
    once per digest, so a fresh database never reuses an old issue's ids.
    """
    return f"<digest{issue}.{subscriber_id}.{nonce}@{domain}>"


@dataclass(frozen=True, slots=True)
class ComposedDigest:
    """A digest rendered once; ``for_recipient`` only fills in who it goes to."""

    subject: str
    #: the rendered parts with placeholders where each recipient's links go
    text: str
    html: str
    from_header: str
    list_id: str
    domain: str
    issue: int
    #: placeholder strings (random per composition, so summary text cannot forge them)
    unsubscribe_mark: str
    preferences_mark: str
    #: the message's bytes, shared by every recipient, with holes for their headers and links
    layout: _Layout

    def for_recipient(
        self,
        address: str,
        unsubscribe_url: str,
        preferences_url: str,
        *,
        now: datetime,
        message_id: str | None = None,
    ) -> Email:
        """This digest for one subscriber: To, Date, Message-ID, List-Unsubscribe and the visible links.

        `message_id` should be digest_message_id(...) so a re-send is the same
        message; without it a random one is made (previews, tests).
        """
        check_address(address)
        _check_url(unsubscribe_url, "unsubscribe_url")
        _check_url(preferences_url, "preferences_url")
        if message_id is None:
            message_id = make_msgid(idstring=f"digest{self.issue}", domain=self.domain)
        elif not _MESSAGE_ID.fullmatch(message_id):
            raise ValueError(f"message_id must look like <local@domain>, got {message_id!r}")
        # Our own values only, each checked above to be one line without specials;
        # a non-ASCII address goes out as UTF-8 (the mailer then asks for SMTPUTF8).
        personal = (
            f"To: {address}\r\n"
            f"Date: {_date_header(now)}\r\n"
            f"Message-ID: {message_id}\r\n"
            f"List-Unsubscribe: <{unsubscribe_url}>\r\n"
        ).encode()
        unsubscribe, preferences = _link(unsubscribe_url), _link(preferences_url)
        data, wire = self.layout.fill(
            (
                personal,
                unsubscribe,
                preferences,
                # Our signed links hold nothing HTML escapes: the same bytes then.
                _link(html.escape(unsubscribe_url)) if _NEEDS_ESCAPE.search(unsubscribe_url) else unsubscribe,
                _link(html.escape(preferences_url)) if _NEEDS_ESCAPE.search(preferences_url) else preferences,
            )
        )
        return Email(to=address, message_id=message_id, data=data, wire=wire)


def _meta(item: DigestItem) -> str:
    """'Summary by Jane Doe · 12 votes · Machine Learning (cs.LG), …' (plain text; templates escape it)."""
    parts = [f"Summary by {one_line(item.summary_author) or 'Anonymous'}"]
    if item.votes is not None:
        parts.append(f"{item.votes} vote" if item.votes == 1 else f"{item.votes} votes")
    if item.categories:
        parts.append(", ".join(category_label(c) for c in item.categories))
    return " · ".join(parts)


def _item_context(item: DigestItem) -> dict[str, Any]:
    """One digest item as its templates see it (names and titles on one line)."""
    return {
        "guid": item.guid,
        "title": one_line(item.title),
        "paper_authors": one_line(item.paper_authors),
        "summary_author": one_line(item.summary_author),
        "teaser_text": item.teaser_text.replace("\r\n", "\n").replace("\r", "\n").strip(),
        "teaser_html": item.teaser_html,
        "link": item.link,
        "paper_url": item.paper_url,
        "votes": item.votes,
        "categories": item.categories,
        "meta": _meta(item),
    }


class DigestComposer:
    """Renders digests and confirmation e-mails; the Jinja environment and CSS inliner are built once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tz = ZoneInfo(settings.digest.timezone)
        self.from_header, address = sender(settings)
        self.domain = address.rpartition("@")[2]
        self.list_id = list_id(settings)
        self.list_name = one_line(settings.digest.list_name)
        # A mail body ends with its newline; an edited template shows in the next digest without a restart.
        self.env = make_environment(settings.render.templates_dir, keep_trailing_newline=True, auto_reload=True)
        self.env.bytecode_cache = compiled_templates()
        try:
            css, _, _ = self.env.loader.get_source(self.env, CSS)  # type: ignore[union-attr]
        except jinja2.TemplateNotFound:
            raise RenderError(
                f"template {CSS}: not found in {', '.join(map(str, template_dirs(settings.render.templates_dir)))}"
            ) from None
        self.inliner = css_inline.CSSInliner(
            extra_css=css,
            load_remote_stylesheets=False,
            keep_style_tags=False,
            keep_link_tags=False,
        )
        #: how many templates were rendered so far (each digest costs two, whatever the recipients)
        self.renders = 0
        self._cache: OrderedDict[Digest, ComposedDigest] = OrderedDict()
        self._lock = threading.Lock()

    # ---- rendering ----

    def _render(self, name: str, **context: Any) -> str:
        try:
            template = self.env.get_template(name)
            out = template.render(**context)
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(f"template {exc.name or name}: line {exc.lineno}: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise RenderError(f"template {name}: {exc}") from None
        self.renders += 1
        return out

    def _inline(self, name: str, document: str) -> str:
        try:
            return str(self.inliner.inline(document))
        except Exception as exc:  # css_inline raises its own InlineError / ValueError
            raise RenderError(f"template {name}: CSS inlining failed: {exc}") from None

    def _common(self) -> dict[str, Any]:
        return {
            "list_name": self.list_name,
            "site_url": self.settings.render.site_base_url,
            "public_base_url": self.settings.env.public_base_url,
        }

    def subject(self, digest: Digest) -> str:
        return f"{self.list_name} #{digest.issue}: {format_period(digest.period_start, digest.period_end, self.tz)}"

    def compose(self, digest: Digest) -> ComposedDigest:
        """Render the digest once (HTML with CSS inlined, and text); the same digest again is a cache hit."""
        with self._lock:
            cached = self._cache.get(digest)
            if cached is not None:
                self._cache.move_to_end(digest)
                return cached
            composed = self._compose(digest)
            self._cache[digest] = composed
            while len(self._cache) > 16:
                self._cache.popitem(last=False)
            return composed

    def _compose(self, digest: Digest) -> ComposedDigest:
        nonce = secrets.token_hex(12)
        unsubscribe_mark = f"ssunsubscribe{nonce}"
        preferences_mark = f"sspreferences{nonce}"
        subject = self.subject(digest)
        context = {
            **self._common(),
            "digest": digest,
            "issue": digest.issue,
            "period": format_period(digest.period_start, digest.period_end, self.tz),
            "subject": subject,
            "items": [_item_context(item) for item in digest.items],
            "unsubscribe_url": unsubscribe_mark,
            "preferences_url": preferences_mark,
        }
        text, html_body = self._digest_bodies(context, unsubscribe_mark)
        marks = (unsubscribe_mark, preferences_mark)
        skeleton = self._digest_skeleton(subject, text, html_body, marks, nonce)
        return ComposedDigest(
            subject=subject,
            text=text,
            html=html_body,
            from_header=self.from_header,
            list_id=self.list_id,
            domain=self.domain,
            issue=digest.issue,
            unsubscribe_mark=unsubscribe_mark,
            preferences_mark=preferences_mark,
            layout=_Layout.build(
                [
                    skeleton.first,
                    _PERSONAL,
                    skeleton.head,
                    *_EncodedBody.encode(_crlf(text), marks).segments((_TEXT_UNSUBSCRIBE, _TEXT_PREFERENCES)),
                    skeleton.middle,
                    *_EncodedBody.encode(_crlf(html_body), marks).segments((_HTML_UNSUBSCRIBE, _HTML_PREFERENCES)),
                    skeleton.tail,
                ]
            ),
        )

    def _digest_bodies(self, context: dict[str, Any], unsubscribe_mark: str) -> tuple[str, str]:
        """The digest's text and HTML (CSS inlined), each checked to show the unsubscribe link."""
        text = self._render(DIGEST_TEXT, **context)
        html_body = self._inline(DIGEST_HTML, self._render(DIGEST_HTML, **context))
        for name, body in ((DIGEST_TEXT, text), (DIGEST_HTML, html_body)):
            # Bulk-sender rules want a visible unsubscribe link: a template override must keep it.
            if unsubscribe_mark not in body:
                raise RenderError(f"template {name}: it must show unsubscribe_url (a visible unsubscribe link)")
        return text, html_body

    def _digest_skeleton(
        self, subject: str, text: str, html_body: str, marks: tuple[str, str], nonce: str
    ) -> _Skeleton:
        """The digest message without its recipient's parts, split around the two bodies."""
        text_mark, html_mark = f"sstextpart{nonce}", f"sshtmlpart{nonce}"
        return _Skeleton.build(
            _assemble(
                from_header=self.from_header,
                to=None,
                subject=subject,
                now=None,
                message_id=None,
                text=text_mark,
                html_body=html_mark,
                extra=(
                    ("List-Id", self.list_id),
                    # RFC 8058 one-click: mailbox providers POST this body to List-Unsubscribe.
                    ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
                ),
                # From the content, not random: another process (a re-send after a crash)
                # then builds byte for byte the same message.
                boundary=_boundary(subject, text, html_body, marks),
            ),
            text_mark,
            html_mark,
        )

    def confirmation(self, address: str, confirm_url: str, *, now: datetime) -> Email:
        """The double opt-in message with the confirmation link."""
        check_address(address)
        _check_url(confirm_url, "confirm_url")
        context = {
            **self._common(),
            "address": address,
            "confirm_url": confirm_url,
            "ttl_hours": self.settings.digest.confirm_ttl_hours,
        }
        text = self._render(CONFIRM_TEXT, **context)
        html_body = self._inline(CONFIRM_HTML, self._render(CONFIRM_HTML, **context))
        message_id = make_msgid(idstring="confirm", domain=self.domain)
        message = _assemble(
            from_header=self.from_header,
            to=address,
            subject=f"Confirm your subscription to {self.list_name}",
            now=now,
            message_id=message_id,
            text=text,
            html_body=html_body,
            extra=(("List-Id", self.list_id), ("Auto-Submitted", "auto-generated")),
        )
        return Email(to=address, message_id=message_id, data=flatten(message))


def confirmation_email(settings: Settings, address: str, confirm_url: str, *, now: datetime) -> Email:
    """The double opt-in message (builds a composer; keep one around to send many)."""
    return DigestComposer(settings).confirmation(address, confirm_url, now=now)
