"""Which characters no output keeps: the cleaner every rendering, post, feed and e-mail passes text through.

Apart from bot.render.markdown (which re-exports it) so that a one-line field (a digest's
titles and names, a post's) is cleaned without loading the Markdown parser.
"""

from __future__ import annotations

import re

# Characters XML 1.0 forbids (C0 controls but tab/newline, lone surrogates,
# U+FFFE/U+FFFF), plus CR (we use \n only), DEL and the C1 controls (allowed by
# XML but never meant as text), and U+FEFF, which X counts as an invalid character.
# Also the explicit bidi embeddings, overrides and isolates (U+202A-202E, U+2066-2069): one left
# open in an author name reverses the rest of its line on screen, the post's link included
# ("Summary by \u202eadmin: https://…" shows the URL backwards). Plain RTL text needs none of them.
# And the invisible format characters a reader cannot see but that change what is shown or
# matched: the direction marks LRM, RLM and ALM (U+200E, U+200F, U+061C), the zero-width space
# (U+200B, inside a word it hides the word from search), the Mongolian vowel separator and the
# invisible operators (U+2061-2064). ZWJ/ZWNJ stay: emoji sequences and Persian or Indic words need
# them. A zero-width space right after "@" is the posts' own mention guard (posts.no_mentions) and stays.
_BAD_CHARS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069\ufeff\ufffe\uffff"
    "\u200e\u200f\u061c\u180e\u2061-\u2064]"
)
# Apart, and only run when a U+200B is there: a look-behind alternation in the class's regex made
# every call test two branches at every position, and this runs on every fragment of every rendering.
_LOOSE_ZWSP = re.compile("(?<![@\uff20])\u200b")


def clean_chars(text: str) -> str:
    """The text with CRLF/CR made LF and every character invalid in XML 1.0 (or X posts), or invisible and harmful,
    removed.

    The one cleaner of every output: posts, plain and HTML renderings, feed titles and bodies, the digest.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\u200b" in text:
        # Before the class's characters go: the look-behind reads the text as given ("@\x00\u200b" loses both).
        text = _LOOSE_ZWSP.sub("", text)
    return _BAD_CHARS.sub("", text)
