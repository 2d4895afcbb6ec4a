"""clean_html's shortcut (no relative href/src found: no per-link callback) gives what the full pass gives.

The feed writer's last pass makes relative href/src absolute. It now first searches for a value
that could be relative and returns the HTML as it is when there is none; these tests compare it
with the full pass (the code before the shortcut, kept here) on crafted and generated HTML.
"""

from __future__ import annotations

import random
import re
from urllib.parse import urljoin

import pytest

from bot.feeds.clean import clean_html, strip_xml_invalid
from bot.render.markdown import clean_chars

BASE = "https://www.shortscience.org/paper?bibtexKey=x"
_URL_ATTR = re.compile(r"""(\s(?:href|src)=)(["'])([^"']*)\2""", re.IGNORECASE)
_ABSOLUTE = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|#)")


def full_pass(html: str, base: str) -> str:
    """clean_html as it was: a callback for every href/src."""
    html = clean_chars(strip_xml_invalid(html))

    def absolute(match: re.Match[str]) -> str:
        url = match.group(3)
        if _ABSOLUTE.match(url.strip()):
            return match.group(0)
        return f"{match.group(1)}{match.group(2)}{urljoin(base, url.strip())}{match.group(2)}"

    return _URL_ATTR.sub(absolute, html)


CASES = [
    '<p><a href="https://arxiv.org/abs/1">x</a> <img src="https://i.example/a.png"></p>',
    '<p><a href="/relative/path">rel</a><img src="img.png"></p>',
    '<a href="">empty</a>',
    '<a href="#top">fragment</a>',
    '<a href=" https://spaced.example/">leading space</a>',
    "<a href=' mailto:x@example.com'>single quotes</a>",
    '<a HREF="relative">upper case</a>',
    "<a href=\"http://a/ href='rel'\">a relative one inside another value</a>",
    '<a href="ſcheme:x">long s</a>',
    '<a href="\u212aelvin:x">Kelvin sign</a>',
    '<a hreſ="rel">long s in the name</a>',
    '<a href="\u00a0rel">no-break space</a>',
    '<p>href="rel" without a space before it</p>',
    '<a\thref="rel">tab</a>',
]


@pytest.mark.parametrize("html", CASES)
def test_crafted_html_is_cleaned_as_by_the_full_pass(html: str) -> None:
    assert clean_html(html, BASE) == full_pass(html, BASE)


def test_relative_links_are_still_made_absolute() -> None:
    out = clean_html('<p><a href="/relative/path">rel</a></p>', BASE)
    assert 'href="https://www.shortscience.org/relative/path"' in out


def test_generated_html_is_cleaned_as_by_the_full_pass() -> None:
    parts = [
        " href=", " src=", " HREF=", " Src=", "href=", '"', "'", "http:", "https://x.example/", "#",
        "mailto:", "ſ", "\u212a", " ", "\u00a0", "\t", "rel", "a/b", "<a", ">", "</a>", "x", "=", ":",
        "1", "+", "\x00", "\u202e",
    ]  # fmt: skip
    rng = random.Random(20261206)
    for _ in range(4000):
        html = "".join(rng.choice(parts) for _ in range(rng.randint(1, 14)))
        assert clean_html(html, BASE) == full_pass(html, BASE), html
