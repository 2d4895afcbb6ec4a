"""X's post fitting: twitter-text's weighted length, posts that always fit 280, threads.

Pure functions; templates are rendered through a callable passed in, so
fitting can re-render as it shortens. X length is measured by
twitter-text-parser (or an upper bound of it), never by len().
"""

from __future__ import annotations

import dataclasses
import functools
import re
import unicodedata
from collections.abc import Callable
from typing import Any

from bot.errors import RenderError
from bot.render.posts import ELLIPSIS, PostFields, extract_urls_with_indices, finish, shorten

TWEET_MAX = 280


def parse_tweet(text: str) -> Any:
    """twitter-text's verdict on `text`.

    Imported on first use: twitter_text compiles its emoji regex at import
    (about 0.3 s), which commands that never fit a post (digest sending,
    status, feeds) should not pay at every start, nor a post the upper bound
    proves fits (bot.channels.twitter.twittertext).
    """
    from bot.channels.twitter.twittertext import tweet_parser

    return tweet_parser()(text)


def tweet_weight(text: str) -> int:
    """The weighted length X counts for `text` (URLs 23, emoji sequences 2, CJK 2)."""
    return int(parse_tweet(text).weightedLength)


def tweet_valid(text: str) -> bool:
    """Whether X accepts `text` as one post: 1..280 weighted, no invalid characters."""
    return bool(parse_tweet(text).valid)


def _char_weight(ch: str) -> int:
    cp = ord(ch)
    if cp in (0xA9, 0xAE):  # emoji by themselves, though in the light range
        return 2
    if cp <= 0x10FF or 0x2000 <= cp <= 0x200D or 0x2010 <= cp <= 0x201F or 0x2032 <= cp <= 0x2037:
        return 1
    return 2


_LINE_END = re.compile(r"\r\n|\r")

#: the characters _char_weight counts 2, counted by one regex at C speed rather than a Python loop per character
_HEAVY = re.compile("[^\u0000-\u10ff\u2000-\u200d\u2010-\u201f\u2032-\u2037]|[\u00a9\u00ae]")


def _span_weight(text: str) -> int:
    """sum(_char_weight(c) for c in text), computed by the regex engine (fitting asks many times a post)."""
    return len(text) + len(_HEAVY.findall(text))


#: twitter-text's own space characters: no URL it extracts holds one, and each may precede one
_SPACES = re.compile("([\t-\r \x85\xa0\u1680\u180e\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+)")
_INVALID = re.compile("[\ufeff\ufffe\uffff]")


@functools.lru_cache(maxsize=16384)
def _word_weight(word: str, before: str, after: str) -> int:
    """The weight of text without spaces: each URL twitter-text extracts 23, the rest by X's ranges.

    `before` and `after` are " " where a space surrounds the word in the text and
    "" at its ends: twitter-text reads a word's first character as the one
    before a URL at the very start of a text ("éa.co" alone: "a.co"), not after
    a space (" éa.co": "éa.co").
    """
    if "." not in word:  # twitter-text finds no URL without a dot
        return _span_weight(word)
    padded = before + word + after
    weight, pos = 0, len(before)
    for url in extract_urls_with_indices(padded):
        start, end = url["indices"]
        weight += _span_weight(padded[pos:start]) + 23
        pos = end
    return weight + _span_weight(padded[pos : len(before) + len(word)])


def estimated_weight(text: str) -> int:
    """An upper bound of tweet_weight(), without parse_tweet's emoji scan (milliseconds a call).

    The same counting as parse_tweet (NFC, line ends as LF, each URL of
    twitter-text's own extraction 23, every other code point by X's ranges),
    except that an emoji sequence counts 2 per code point where X counts 2 in
    all. Every emoji sequence holds a code point that weighs 2 here (© and ®
    are the only emoji in the light ranges, and are counted 2), so the bound
    only errs high; tests check it against parse_tweet over random text.

    Counted word by word, each word's weight remembered: fitting measures many
    cuts of the same words, and URL extraction is what costs. twitter-text's
    URLs hold no space and each of its spaces may come before one, so the
    words' URLs are the whole text's (a property test checks it).
    """
    text = _LINE_END.sub("\n", unicodedata.normalize("NFC", text))
    parts = _SPACES.split(text)
    spaces = (" ",) * (len(parts) - 1)
    return sum(map(_word_weight, parts, ("", *spaces), (*spaces, "")))


def _roughly_valid(text: str) -> bool:
    """Valid for X, proven with the upper bound (parse_tweet's invalid characters: U+FEFF, U+FFFE, U+FFFF)."""
    return 0 < estimated_weight(text) <= TWEET_MAX and not _INVALID.search(text)


def fit_tweet(render: Callable[[PostFields], str], fields: PostFields) -> tuple[str, PostFields, list[str]]:
    """Render, shortening until X accepts the post: teaser, then hashtags (from the end), then title, credit, author.

    The link is never cut. Returns the text, the fields used and warnings.
    Raises RenderError when the template's fixed text alone is too long.
    """
    # Fit with the upper bound: a post it accepts is valid, without parse_tweet's milliseconds.
    text, used, warnings = _fit(render, fields, _roughly_valid)
    valid = _roughly_valid(text)
    if not valid:  # only when even the bound could not fit: the exact count may still
        text, used, warnings = _fit(render, fields, tweet_valid)
        valid = tweet_valid(text)
    if not valid:
        raise RenderError(
            f"X post for {fields.link} cannot fit {TWEET_MAX} weighted characters "
            f"(weight {tweet_weight(text)} with teaser, title and hashtags removed): shorten the template's fixed text"
        )
    return text, used, warnings


def _fit(
    render: Callable[[PostFields], str], fields: PostFields, accepts: Callable[[str], bool]
) -> tuple[str, PostFields, list[str]]:
    warnings: list[str] = []

    def text_of(f: PostFields) -> str:
        return finish(render(f))

    def valid(f: PostFields) -> bool:
        return accepts(text_of(f))

    if valid(fields):
        return text_of(fields), fields, warnings

    def shrink(name: str, f: PostFields) -> PostFields:
        value = getattr(f, name)
        if not value:
            return f
        short, _ = shorten(value, lambda t: valid(_replace(f, name, t)))
        warnings.append(
            f"{name} shortened to fit {TWEET_MAX} weighted characters"
            if short
            else f"{name} dropped to fit {TWEET_MAX} weighted characters"
        )
        return _replace(f, name, short)

    f = shrink("teaser", fields)
    if not valid(f) and f.hashtags:
        tags = list(f.hashtags)
        dropped: list[str] = []
        while tags and not valid(f):
            dropped.insert(0, tags.pop())
            f = _replace(f, "hashtags", tuple(tags))
        warnings.append("hashtags dropped: " + " ".join(dropped))
    for name in ("title", "credit", "author"):
        if valid(f):
            break
        f = shrink(name, f)
    return text_of(f), f, warnings


def _replace(f: PostFields, name: str, value: Any) -> PostFields:
    return dataclasses.replace(f, **{name: value})


def thread_replies(rest: str, max_replies: int) -> tuple[tuple[str, ...], list[str]]:
    """The teaser's continuation as numbered replies ('2/4 …text'), each a valid X post."""
    rest = rest.strip()
    if not rest or max_replies < 1:
        return (), []
    widest = max_replies + 1
    label = f"{widest}/{widest} {ELLIPSIS}"
    # Enough text for every reply, with room: each reply holds at most 280 characters.
    rest = rest[: (max_replies + 1) * TWEET_MAX]
    chunks: list[str] = []
    warnings: list[str] = []
    while rest and len(chunks) < max_replies:
        chunk, used = shorten(rest, lambda t: _roughly_valid(label + t))
        if not tweet_valid(label + chunk):
            chunk, used = shorten(rest, lambda t: tweet_valid(label + t))
        if not chunk:
            break
        chunks.append(chunk)
        rest = rest[used:].strip() if used < len(rest) else ""
        if rest and len(chunks) == max_replies:
            warnings.append(f"thread cut after {max_replies} replies")
    total = len(chunks) + 1
    replies = tuple(finish(f"{k}/{total} {ELLIPSIS}{chunk}") for k, chunk in enumerate(chunks, start=2))
    for reply in replies:
        if not tweet_valid(reply):  # pragma: no cover - the labels only get shorter
            raise RenderError(f"thread reply does not fit {TWEET_MAX} weighted characters: {reply[:40]!r}")
    return replies, warnings
