"""The prose of a plain-text rendering (bot.render.text's format), read without loading its parsers.

The digest reads teasers from the render cache's text: it should not import markdown-it,
pylatexenc and nh3 for a few string operations.
"""

from __future__ import annotations

import re

#: how bot.render.text indents each line of a code block (the only text kept verbatim)
CODE_INDENT = "    "

#: a run of spaces and tabs (newlines kept): collapsed to one space, here and by bot.render.text
SPACES = re.compile(r"[^\S\n]+")


def teaser_source(text: str) -> str:
    """The prose of a plain-text rendering as one line: code blocks (indented) left out."""
    paragraphs = [p for p in text.split("\n\n") if p and not p.startswith(CODE_INDENT)]
    return SPACES.sub(" ", " ".join(p.replace("\n", " ") for p in paragraphs)).strip()
