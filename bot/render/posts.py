"""What every channel's posts share: cleaned one-line fields, cuts at words and sentences, credits, hashtags.

Pure functions over the summary's plain text and paper details. Each
channel's own fitting (X's weighted length, threads) lives in its package
under bot/channels/.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from bot.records import PaperDetails
from bot.render.chars import clean_chars

ELLIPSIS = "…"
#: longest title, author and credit that reach any template (hostile feeds)
TITLE_MAX = 300
NAME_MAX = 120

_SPACE = re.compile(r"\s+")
# "@name" would notify that account; X's automation rules forbid unsolicited
# mentions. A zero-width space after "@" keeps the text and drops the mention.
_MENTION = re.compile(r"(?<![A-Za-z0-9_])([@＠])(?=[A-Za-z0-9_])")
_SENTENCE_END = re.compile(r"[.!?。！？](?:[\"'”’)\]]*)(?=\s|$)")
_ABBREVIATIONS = (
    "e.g.",
    "i.e.",
    "et al.",
    "etc.",
    "vs.",
    "Fig.",
    "fig.",
    "Eq.",
    "eq.",
    "cf.",
    "Sec.",
    "Dr.",
    "Mr.",
    "Ms.",
    "al.",
    "approx.",
    "resp.",
    "No.",
)
_TRAILING_PUNCT = " \t\n,;:-–—([{/\\"


# --------------------------------------------------------------------------- credits and hashtags


def paper_credit(details: PaperDetails | None) -> str:
    """'Wu', 'Wu & He' or 'Zhang et al.' from the paper's authors; '' without details."""
    if details is None:
        return ""
    names = [one_line(a) for a in details.authors]
    family = [n.split(" ")[-1] for n in names if n]
    if not family:
        return ""
    if len(family) == 1:
        return family[0]
    if len(family) == 2:
        return f"{family[0]} & {family[1]}"
    return f"{family[0]} et al."


@dataclass(frozen=True, slots=True)
class PostFields:
    """What goes into a post template (X, Mastodon, Bluesky), already cleaned; each channel's fitting shortens it."""

    title: str
    credit: str
    teaser: str
    author: str
    link: str
    hashtags: tuple[str, ...]

    def context(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "credit": self.credit,
            "teaser": self.teaser,
            "author": self.author,
            "link": self.link,
            "hashtags": list(self.hashtags),
        }


class _HasRender(Protocol):
    hashtags: Any
    fixed_hashtags: Any


def hashtags_for(categories: Sequence[str], settings: Any) -> list[str]:
    """The hashtags of a paper: mapped from its categories, then the fixed ones; no case-insensitive duplicates.

    `settings` is the whole Settings or just its RenderSettings.
    """
    render: _HasRender = getattr(settings, "render", settings)
    tags: list[str] = []
    seen: set[str] = set()
    mapped = [render.hashtags[c] for c in categories if c in render.hashtags]
    for tag in [*mapped, *render.fixed_hashtags]:
        key = tag.casefold()
        if key not in seen:
            seen.add(key)
            tags.append(tag)
    return tags


def paper_url(details: PaperDetails | None, arxiv_id: str | None) -> str | None:
    """The paper's arXiv page, when the paper is on arXiv."""
    ident = (details.arxiv_id if details else None) or arxiv_id
    if not ident or not re.fullmatch(r"[A-Za-z0-9./-]{1,64}", ident):
        return None
    return f"https://arxiv.org/abs/{ident}"


# --------------------------------------------------------------------------- text helpers


def one_line(text: str) -> str:
    """Clean, NFC, single-spaced text of a field that goes into a post."""
    return _SPACE.sub(" ", unicodedata.normalize("NFC", clean_chars(text))).strip()


def no_mentions(text: str) -> str:
    return _MENTION.sub("\\1\u200b", text)


def _joins_previous(ch: str, prev: str) -> bool:
    """Whether a cut between `prev` and `ch` would split a user-perceived character."""
    cp = ord(ch)
    if unicodedata.category(ch) in ("Mn", "Mc", "Me"):
        return True
    if cp == 0x200D or ord(prev) == 0x200D:  # zero-width joiner sequences
        return True
    if 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF:  # variation selectors
        return True
    if 0x1F3FB <= cp <= 0x1F3FF:  # skin tones
        return True
    return 0xE0020 <= cp <= 0xE007F  # tag sequences (subdivision flags)


def _char_cuts(text: str) -> list[int]:
    """Every index where `text` may be cut without splitting a grapheme (approximately)."""
    cuts: list[int] = []
    regional = 0  # regional indicators seen in a row: flags are pairs
    for i in range(1, len(text)):
        ch, prev = text[i], text[i - 1]
        regional = regional + 1 if 0x1F1E6 <= ord(prev) <= 0x1F1FF else 0
        if 0x1F1E6 <= ord(ch) <= 0x1F1FF and regional % 2 == 1:
            continue
        if not _joins_previous(ch, prev):
            cuts.append(i)
    return cuts


def _word_cuts(text: str) -> list[int]:
    return [i for i in range(1, len(text)) if text[i].isspace() and not text[i - 1].isspace()]


def cut_at(text: str, index: int) -> str:
    """`text` cut at `index` with an ellipsis, or whole when `index` is its end; '' when nothing is left."""
    if index >= len(text):
        return text
    head = text[:index].rstrip(_TRAILING_PUNCT)
    return head + ELLIPSIS if head else ""


def _largest(cuts: list[int], ok: Callable[[int], bool]) -> int | None:
    """The largest cut for which ok() holds, by binary search (ok is nearly monotone; each answer is checked)."""
    lo, hi, best = 0, len(cuts) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        if ok(cuts[mid]):
            best = cuts[mid]
            lo = mid + 1
        else:
            hi = mid - 1
    return best


def shorten(text: str, fits: Callable[[str], bool]) -> tuple[str, int]:
    """The longest cut of `text` (at a word boundary, else between characters) that fits.

    Returns the shortened text (ending with '…' when cut) and the index in
    `text` where it was cut; ('', 0) when no cut fits.
    """
    if fits(text):
        return text, len(text)

    def ok(i: int) -> bool:
        return fits(cut_at(text, i))

    best = _largest(_word_cuts(text), ok)
    # One long word (CJK, a URL-like run): a word cut would lose too much.
    if best is None or best < len(text) // 3:
        by_char = _largest(_char_cuts(text), ok)
        if by_char is not None and (best is None or by_char > best + 20):
            best = by_char
    if best is None:
        return "", 0
    return cut_at(text, best), best


def cut_words(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters (the ellipsis included), at a word boundary when there is one."""
    if len(text) <= limit:
        return text
    # Only the head can survive; scanning all of a 30k-character summary for cuts is waste.
    return shorten(text[: limit + 1] + " ", lambda t: len(t) <= limit)[0]


def cut_sentences(text: str, limit: int) -> str:
    """`text` cut after the last full sentence within `limit` characters; a word cut with '…' if none."""
    if len(text) <= limit:
        return text
    best = 0
    for m in _SENTENCE_END.finditer(text, 0, limit + 1):
        end = m.end()
        if end > limit:
            break
        before = text[: m.start() + 1]
        if before.endswith(_ABBREVIATIONS) or re.search(r"(?:^|\s)[A-Z]\.$", before):
            continue  # "et al." or an initial is not the end of a sentence
        best = end
    if best >= limit // 3:
        return text[:best].rstrip()
    return cut_words(text, limit)


def finish(text: str, *, limit: int | None = None) -> str:
    """A post's final text: LF only, no trailing spaces, at most one blank line in a row, NFC."""
    text = unicodedata.normalize("NFC", clean_chars(text))
    lines = [ln.rstrip() for ln in text.split("\n")]
    out = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if limit is not None and len(out) > limit:
        out = cut_words(out, limit)
    return out


def first_image(markdown: str, hosts: Iterable[str]) -> str | None:
    """The first Markdown image whose absolute http(s) URL is on one of `hosts`."""
    allowed = {h.lower() for h in hosts}
    for m in re.finditer(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?", markdown):
        url = m.group(1)
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and (parts.hostname or "").lower() in allowed:
            return url
    return None


def extract_urls_with_indices(text: str) -> list[dict[str, Any]]:
    """twitter-text's URL extraction, shared by the channels that count a URL as a fixed weight.

    Imported on first use, without twitter_text's emoji table (bot.channels.twitter.twittertext): commands that
    never fit a post should not pay for its regexes at every start, nor posts that fit for the emoji's.
    """
    from bot.channels.twitter.twittertext import url_extractor

    return list(url_extractor()(text))
