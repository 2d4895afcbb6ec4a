"""A Bluesky post, pure: the text fitted to 300 graphemes, and the record with facets and a link card.

Bluesky counts extended grapheme clusters (``regex``'s ``\\X``), and also
refuses more than 3,000 UTF-8 bytes. Fitting drops hashtags from the end,
then shortens the teaser, then the title, always at a Unicode word boundary
(UAX #29, so a CJK text may be cut between ideographs, never inside a word
or a grapheme) and with "…"; the link is never cut. Links and hashtags
are marked by facets, whose byte ranges the network needs: without them a
URL is plain text. No I/O here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import regex

from bot.channels.bluesky.render import BYTES_MAX, GRAPHEMES_MAX, NAME, TEMPLATE
from bot.errors import RenderError
from bot.records import PaperDetails, Post, Summary
from bot.render.posts import (
    NAME_MAX,
    TITLE_MAX,
    PostFields,
    cut_at,
    cut_words,
    finish,
    first_image,
    hashtags_for,
    one_line,
    paper_credit,
)
from bot.render.text import teaser_source

if TYPE_CHECKING:
    from bot.channels.bluesky.settings import BlueskySettings
    from bot.render import RenderedPost
    from bot.render.templates import Templates
    from bot.settings import RenderSettings

COLLECTION = "app.bsky.feed.post"
#: the link card's description, in characters (the app shows two or three lines)
CARD_DESCRIPTION_MAX = 300
#: Bluesky's own limits of one hashtag (without "#")
TAG_GRAPHEMES_MAX = 64
TAG_BYTES_MAX = 640

_GRAPHEME = regex.compile(r"\X")
#: graphemes looked at beyond a scan's limit, so the boundaries near it see their context
_SLACK = 16
_WORD_BOUNDARY = regex.compile(r"(?w)\b")
# A hashtag as the Bluesky app finds one: "#" after a space or the start, up to the next space;
# trailing punctuation is not part of it, and a tag of digits only is none.
_TAG = regex.compile(r"(?<!\S)[#＃](\S+)")
_TRAILING_PUNCT = regex.compile(r"\p{P}+$")


def graphemes(text: str) -> int:
    """How many characters Bluesky counts: extended grapheme clusters."""
    return len(_GRAPHEME.findall(text))


def fits(text: str) -> bool:
    """Whether Bluesky accepts `text` as a post's text."""
    return bool(text) and len(text.encode("utf-8")) <= BYTES_MAX and graphemes(text) <= GRAPHEMES_MAX


def problems(text: str) -> list[str]:
    """What Bluesky would refuse in `text` (for `preview` and post_warnings); empty when it fits."""
    if fits(text):
        return []
    return [
        f"post is not a valid Bluesky post ({graphemes(text)}/{GRAPHEMES_MAX} graphemes, "
        f"{len(text.encode('utf-8'))}/{BYTES_MAX} bytes)"
    ]


def word_cut(text: str, ok: Callable[[str], bool], *, scan: int | None = None) -> str:
    """The longest head of `text` cut at a word boundary (with "…") for which ok() holds; '' if none.

    `text` whole when it is ok. The boundaries are UAX #29's, which never
    fall inside a grapheme. `scan`: only the first that many graphemes
    (and a few more) are looked at, for long texts of which only a head can be ok.
    """
    if ok(text):
        return text
    head = text
    if scan is not None:
        head = text[: _head_end(text, scan + _SLACK)]
    cuts = sorted({m.start() for m in _WORD_BOUNDARY.finditer(head)} - {0, len(head)})
    # ok() holds for short heads and fails for long ones: search for the last that holds.
    lo, hi, best = 0, len(cuts) - 1, ""
    while lo <= hi:
        mid = (lo + hi) // 2
        short = cut_at(text, cuts[mid])
        if short and ok(short):
            best, lo = short, mid + 1
        else:
            hi = mid - 1
    return best


def _head_end(text: str, count: int) -> int:
    """The index after the first `count` graphemes of `text`."""
    end = 0
    for n, m in enumerate(_GRAPHEME.finditer(text)):
        if n == count:
            break
        end = m.end()
    return end


def fit_post(render: Callable[[PostFields], str], fields: PostFields) -> tuple[str, PostFields, list[str]]:
    """Render, giving way until the post fits: hashtags (from the end), then teaser, title, credit, author.

    Returns the text, the fields used and what gave way. Raises RenderError
    when even the link and the template's own text do not fit.
    """
    warnings: list[str] = []

    def text_of(f: PostFields) -> str:
        return finish(render(f))

    f = fields
    dropped: list[str] = []
    while f.hashtags and not fits(text_of(f)):
        dropped.insert(0, f.hashtags[-1])
        f = dataclasses.replace(f, hashtags=f.hashtags[:-1])
    if dropped:
        warnings.append("hashtags dropped: " + " ".join(dropped))
    for name in ("teaser", "title", "credit", "author"):
        if fits(text_of(f)):
            break
        value = getattr(f, name)

        def ok(candidate: str, name: str = name, f: PostFields = f) -> bool:
            return fits(text_of(_with(f, name, candidate)))

        short = word_cut(value, ok)
        warnings.append(f"{name} {'shortened' if short else 'dropped'} to fit {GRAPHEMES_MAX} graphemes")
        f = _with(f, name, short)
    text = text_of(f)
    if not fits(text):
        raise RenderError(
            f"Bluesky post for {fields.link} cannot fit {GRAPHEMES_MAX} graphemes / {BYTES_MAX} bytes "
            f"({graphemes(text)} graphemes with everything else removed): shorten the template's fixed text"
        )
    return text, f, warnings


def _with(f: PostFields, name: str, value: str) -> PostFields:
    changes: dict[str, Any] = {name: value}
    return dataclasses.replace(f, **changes)


def render_post(
    templates: Templates,
    summary: Summary,
    details: PaperDetails | None,
    plain: str,
    *,
    channel: BlueskySettings,
    render: RenderSettings,
) -> RenderedPost:
    """The Bluesky post of a summary: `plain` is its plain text (the renderer's, maybe cached)."""
    from bot.render import RenderedPost

    link = one_line(summary.link)
    if not link:
        raise RenderError(f"summary {summary.guid!r} has no link to post")

    def field(value: str, limit: int) -> str:
        # The summary's link only ever appears where the template puts it (whole, and faceted).
        return word_cut(one_line(value.replace(link, "")), lambda t: len(t) <= limit, scan=limit)

    prose = one_line(teaser_source(plain).replace(link, ""))
    categories = [*(details.categories if details else ()), *summary.categories]
    fields = PostFields(
        title=field(summary.title, TITLE_MAX),
        credit=field(paper_credit(details), NAME_MAX),
        teaser=word_cut(prose, lambda t: graphemes(t) <= channel.teaser_chars, scan=channel.teaser_chars),
        author=field(summary.author, NAME_MAX) or "Anonymous",
        link=link,
        hashtags=tuple(hashtags_for(categories, render)),
    )
    context = {"summary": summary, "details": details}

    def render_text(f: PostFields) -> str:
        return templates.render(TEMPLATE, {**context, **f.context()})

    text, _, warnings = fit_post(render_text, fields)
    image = first_image(summary.text, render.image_hosts) if channel.images else None
    post = Post(channel=NAME, summary_guid=summary.guid, text=text, link=link, image_url=image)
    return RenderedPost(post, tuple(warnings))


# --------------------------------------------------------------------------- the record


def _byte_range(text: str, start: int, end: int) -> dict[str, int]:
    head = len(text[:start].encode("utf-8"))
    return {"byteStart": head, "byteEnd": head + len(text[start:end].encode("utf-8"))}


def facets(text: str, link: str) -> list[dict[str, Any]]:
    """The link (each whole occurrence of `link`) and hashtag facets of `text`, in text order."""
    found: list[tuple[int, dict[str, Any]]] = []
    if link:
        for m in regex.finditer(r"(?<!\S)" + regex.escape(link) + r"(?!\S)", text):
            feature = {"$type": "app.bsky.richtext.facet#link", "uri": link}
            found.append((m.start(), {"index": _byte_range(text, m.start(), m.end()), "features": [feature]}))
    for m in _TAG.finditer(text):
        tag = _TRAILING_PUNCT.sub("", m.group(1))
        if (
            not tag
            or tag.isdigit()
            or tag == link
            or graphemes(tag) > TAG_GRAPHEMES_MAX
            or len(tag.encode("utf-8")) > TAG_BYTES_MAX
        ):
            continue
        end = m.start(1) + len(tag)
        feature = {"$type": "app.bsky.richtext.facet#tag", "tag": tag}
        found.append((m.start(), {"index": _byte_range(text, m.start(), end), "features": [feature]}))
    return [facet for _, facet in sorted(found, key=lambda pair: pair[0])]


def card(text: str, link: str) -> tuple[str, str]:
    """The link card's title and description, read back from the post's text.

    The first line is the title; the description is the other lines but
    the link's and the hashtags' (the teaser), or the link's line without
    the link when there is no teaser.
    """
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    title = lines[0] if lines else link
    rest = [ln for ln in lines[1:] if link not in ln and not all(w.startswith(("#", "＃")) for w in ln.split())]
    if not rest:
        rest = [ln.replace(link, "").strip().rstrip(":").strip() for ln in lines[1:] if link in ln]
    description = cut_words(" ".join(r for r in rest if r), CARD_DESCRIPTION_MAX)
    return title, description


def created_at(now: datetime) -> str:
    """An atproto datetime: UTC, milliseconds, "Z"."""
    now = now.astimezone(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def record(post: Post, *, langs: Sequence[str], now: datetime, thumb: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``app.bsky.feed.post`` record of `post`: text, facets, link card, langs, createdAt."""
    title, description = card(post.text, post.link)
    external: dict[str, Any] = {"uri": post.link, "title": title, "description": description}
    if thumb is not None:
        external["thumb"] = thumb
    out: dict[str, Any] = {
        "$type": COLLECTION,
        "text": post.text,
        "createdAt": created_at(now),
        "langs": list(langs),
        "embed": {"$type": "app.bsky.embed.external", "external": external},
    }
    found = facets(post.text, post.link)
    if found:
        out["facets"] = found
    return out
