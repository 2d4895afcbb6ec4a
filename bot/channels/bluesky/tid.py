"""The record key of a post, chosen before the call: the same post always gets the same key.

A TID (https://atproto.com/specs/tid): 13 characters of base32-sortable
(``234567abcdefghijklmnopqrstuvwxyz``), a 64-bit number with the top bit 0:
53 bits of microseconds since the epoch, then a 10-bit clock id.

The lexicon of ``app.bsky.feed.post`` says its key is a ``tid``; the
reference PDS checks only that syntax (``prepare.ts``: ``isValidRecordKey``,
then the lexicon's key schema) and no distance from its own clock, so a
key whose time part is derived from the post is accepted. The time part
is a hash of the post within a window after 2023-01-01 (about 408 days
wide), the clock id a hash of the summary's guid: 55 bits of hash in all,
and a key found taken is still checked against the post (publisher).
"""

from __future__ import annotations

import hashlib
import re

from bot.records import Post

ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
#: the syntax the reference implementation checks (first character: top bit 0)
TID_PATTERN = re.compile(r"[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}")

#: 2023-01-01T00:00:00Z in microseconds: Bluesky was public by then, so keys look like real ones
_BASE_MICROS = 1_672_531_200 * 1_000_000
_WINDOW_BITS = 45


def tid(micros: int, clock_id: int) -> str:
    """The TID of a time (microseconds since the epoch, < 2**53) and a clock id (< 1024)."""
    if not 0 <= micros < 1 << 53 or not 0 <= clock_id < 1 << 10:
        raise ValueError(f"TID parts out of range: {micros}, {clock_id}")
    value = (micros << 10) | clock_id
    chars = []
    for _ in range(13):
        chars.append(ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def tid_parts(key: str) -> tuple[int, int]:
    """(microseconds, clock id) of a TID."""
    if not TID_PATTERN.fullmatch(key):
        raise ValueError(f"not a TID: {key!r}")
    value = 0
    for ch in key:
        value = (value << 5) | ALPHABET.index(ch)
    return value >> 10, value & 1023


def record_key(post: Post) -> str:
    """The key of `post`'s record: derived from the summary and the exact text, nothing else.

    The text is part of it because a summary announced again after an edit
    is a new post and must not find the old one as its proof; the text of
    one delivery is fixed at its first attempt, so its retries share a key.
    """
    guid = hashlib.sha256(post.summary_guid.encode("utf-8", "surrogatepass")).digest()
    whole = hashlib.sha256(
        b"\x00".join(p.encode("utf-8", "surrogatepass") for p in (post.summary_guid, post.text, post.link))
    ).digest()
    micros = _BASE_MICROS + (int.from_bytes(whole[:8], "big") >> (64 - _WINDOW_BITS))
    clock_id = int.from_bytes(guid[:2], "big") >> 6
    return tid(micros, clock_id)
