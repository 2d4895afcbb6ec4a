"""Mastodon posts (statuses) that always fit the instance's limit: pure functions, no I/O.

Mastodon (``StatusLengthValidator``) counts the content warning plus the
text, where every URL its extractor finds counts as
``characters_reserved_per_url`` (23) and ``@user@domain`` as ``@user``, in
grapheme clusters. We count an upper bound of that: code points (never fewer
than grapheme clusters), mentions in full, and a URL as 23 only where the
whole word is one plain http(s) URL; any other word that may hold a URL
counts its length plus 23 per URL it may hold. A post that fits our count
fits Mastodon's; it only wastes room for text heavy in emoji sequences or
combining marks.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.channels.mastodon.render import DEFAULT_MAX_CHARACTERS, DEFAULT_URL_CHARACTERS, NAME, TEMPLATE
from bot.channels.mastodon.settings import MastodonSettings
from bot.channels.spec import RenderedPost
from bot.errors import RenderError
from bot.records import PaperDetails, Post, Summary
from bot.render.posts import (
    NAME_MAX,
    TITLE_MAX,
    PostFields,
    cut_at,
    cut_words,
    extract_urls_with_indices,
    finish,
    first_image,
    hashtags_for,
    no_mentions,
    one_line,
    paper_credit,
    paper_url,
    shorten,
)
from bot.render.templates import Templates
from bot.render.text import teaser_source
from bot.settings import RenderSettings

CHANNEL = NAME

_WORDS = re.compile(r"(\s+)")
# Where a URL Mastodon's extractor finds can begin: it needs a protocol (any of its
# schemes end in "://"), or is an xmpp: / magnet: URI.
_URL_START = re.compile(r"[a-z][a-z0-9+.-]*://|xmpp:|magnet:", re.IGNORECASE)
# A plain URL whose extent nobody disputes: Mastodon and twitter-text both take all of it.
_PLAIN_URL = re.compile(
    r"https?://[A-Za-z0-9.-]+\.[A-Za-z]{2,}(?::\d+)?(?:/[A-Za-z0-9._~!$&'*+,;=:@%/?#-]*[A-Za-z0-9/=_~#-])?",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class StatusLimits:
    """What the instance allows in one status (``configuration.statuses`` of ``GET /api/v2/instance``)."""

    #: most characters of content warning + text, as Mastodon counts
    max_characters: int = DEFAULT_MAX_CHARACTERS
    #: what each URL counts, whatever its length
    characters_reserved_per_url: int = DEFAULT_URL_CHARACTERS


DEFAULT_LIMITS = StatusLimits()


def limits_from_instance(instance: Any) -> StatusLimits:
    """The limits an instance's ``/api/v2/instance`` answer gives; the defaults for what it leaves out."""
    statuses = _get(_get(instance, "configuration"), "statuses")
    most = _get(statuses, "max_characters")
    per_url = _get(statuses, "characters_reserved_per_url")
    return StatusLimits(
        max_characters=most
        if isinstance(most, int) and not isinstance(most, bool) and most > 0
        else DEFAULT_MAX_CHARACTERS,
        characters_reserved_per_url=(
            per_url
            if isinstance(per_url, int) and not isinstance(per_url, bool) and per_url >= 0
            else DEFAULT_URL_CHARACTERS
        ),
    )


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else None


def status_length(text: str, *, spoiler_text: str = "", url_characters: int = DEFAULT_URL_CHARACTERS) -> int:
    """An upper bound of the length Mastodon counts for a status with this text and content warning."""
    # Mastodon strips the text before it counts it; the content warning counts as it is, no URL rule.
    total = len(spoiler_text)
    for part in _WORDS.split(text.strip()):
        total += _word_length(part, url_characters)
    return total


def _word_length(word: str, url_characters: int) -> int:
    starts = len(_URL_START.findall(word))
    if not starts:
        return len(word)
    if starts == 1 and _is_plain_url(word):
        return url_characters
    # Unsure where Mastodon's URLs in this word begin and end: each may add up to a
    # whole URL's room on top of the characters it covers.
    return len(word) + starts * url_characters


def _is_plain_url(word: str) -> bool:
    """Whether `word` is one URL that Mastodon's extractor takes whole (twitter-text's, with a protocol)."""
    if not _PLAIN_URL.fullmatch(word):
        return False
    found = extract_urls_with_indices(word)
    return len(found) == 1 and list(found[0]["indices"]) == [0, len(word)]


# --------------------------------------------------------------------------- fitting


def fit_status(
    render: Callable[[PostFields], str],
    fields: PostFields,
    *,
    limits: StatusLimits = DEFAULT_LIMITS,
    spoiler_text: str = "",
) -> tuple[str, PostFields, list[str]]:
    """Render, giving way until the status fits: hashtags (from the end), then the teaser, then the title.

    Then credit and author, if it must. The link is never cut, and text is cut
    between words (with …). Returns the text, the fields used and warnings.
    Raises RenderError when the template's fixed text, the link and the
    content warning alone do not fit.
    """
    most = limits.max_characters
    warnings: list[str] = []

    def text_of(f: PostFields) -> str:
        return finish(render(f))

    def fits(f: PostFields) -> bool:
        return (
            status_length(text_of(f), spoiler_text=spoiler_text, url_characters=limits.characters_reserved_per_url)
            <= most
        )

    f = fields
    if f.hashtags and not fits(f):
        tags = list(f.hashtags)
        dropped: list[str] = []
        while tags and not fits(f):
            dropped.insert(0, tags.pop())
            f = dataclasses.replace(f, hashtags=tuple(tags))
        warnings.append("hashtags dropped: " + " ".join(dropped))
    for name in ("teaser", "title", "credit", "author"):
        if getattr(f, name) and not fits(f):
            f = _shrink(f, name, fits)
            warnings.append(f"{name} {'shortened' if getattr(f, name) else 'dropped'} to fit {most} characters")
    text = text_of(f)
    if not fits(f):
        length = status_length(text, spoiler_text=spoiler_text, url_characters=limits.characters_reserved_per_url)
        raise RenderError(
            f"Mastodon post for {fields.link} cannot fit {most} characters ({length} with teaser, title and hashtags"
            " removed): shorten the template's fixed text or the content warning"
        )
    return text, f, warnings


def _shrink(f: PostFields, name: str, fits: Callable[[PostFields], bool]) -> PostFields:
    """`f` with field `name` cut (between words, with …) to the longest that fits, or emptied."""

    def with_value(value: str) -> PostFields:
        changes: dict[str, Any] = {name: value}
        return dataclasses.replace(f, **changes)

    return with_value(_cut_between_words(getattr(f, name), lambda t: fits(with_value(t))))


def _teaser(prose: str, most: int) -> str:
    """The summary's prose cut to `most` characters between words (only its head can survive: no need to scan the
    rest)."""
    if len(prose) <= most:
        return prose
    return _cut_between_words(prose[: most + 1], lambda t: len(t) <= most)


def _cut_between_words(text: str, fits: Callable[[str], bool]) -> str:
    """The longest cut of `text` at a space (with …) that fits; only a text without one that fits is cut between
    characters."""
    if fits(text):
        return text
    cuts = [i for i in range(1, len(text)) if text[i].isspace() and not text[i - 1].isspace()]
    lo, hi, best = 0, len(cuts) - 1, None
    while lo <= hi:  # fits() is monotone enough in the cut: a shorter text counts less
        mid = (lo + hi) // 2
        if fits(cut_at(text, cuts[mid])):
            best, lo = cuts[mid], mid + 1
        else:
            hi = mid - 1
    if best is not None:
        return cut_at(text, best)
    # One run without spaces (CJK, say): between characters (never inside a grapheme), as X posts do.
    return shorten(text, fits)[0]


# --------------------------------------------------------------------------- the post of a summary


def mastodon_post(
    templates: Templates,
    summary: Summary,
    details: PaperDetails | None,
    plain: str,
    *,
    settings: MastodonSettings,
    render: RenderSettings,
    limits: StatusLimits = DEFAULT_LIMITS,
) -> RenderedPost:
    """The status for `summary` (`plain`: its plain-text rendering), fitted to `limits`, with warnings."""
    # Here, not at the top: the registry imports this package while bot.render is still loading.
    from bot.render import authors_line

    link = one_line(summary.link)
    if not link:
        raise RenderError(f"summary {summary.guid!r} has no link to post")

    def field(value: str, most: int) -> str:
        # The summary's link only ever appears where the template puts it; "@name" would notify.
        return no_mentions(cut_words(one_line(value.replace(link, "")), most))

    categories = [*(details.categories if details else ()), *summary.categories]
    prose = no_mentions(one_line(teaser_source(plain).replace(link, "")))
    fields = PostFields(
        title=field(summary.title, TITLE_MAX),
        credit=field(paper_credit(details), NAME_MAX),
        teaser=_teaser(prose, settings.teaser_chars),
        author=field(summary.author, NAME_MAX) or "Anonymous",
        link=link,
        hashtags=tuple(hashtags_for(categories, render)),
    )
    context = {
        "authors": field(authors_line(details), TITLE_MAX),
        "summary": summary,
        "details": details,
        "paper_url": paper_url(details, summary.arxiv_id),
    }

    def rendered(f: PostFields) -> str:
        return templates.render(TEMPLATE, {**context, **f.context()})

    text, _, warnings = fit_status(rendered, fields, limits=limits, spoiler_text=settings.spoiler_text)
    post = Post(
        channel=CHANNEL,
        summary_guid=summary.guid,
        text=text,
        link=link,
        image_url=first_image(summary.text, render.image_hosts) if settings.images else None,
    )
    return RenderedPost(post, tuple(warnings))
