"""An oracle for the hostile-input tests: what in an HTML fragment a browser or mail reader could run.

Independent of the bot's sanitiser on purpose: a deny list of active elements,
event-handler attributes, script-capable URL schemes and CSS that runs code.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

#: elements that run, embed, submit or restyle: none may survive sanitising
ACTIVE_TAGS = frozenset({
    "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "form", "input", "button",
    "textarea", "select", "base", "meta", "link", "svg", "noscript", "template", "xml", "import", "portal",
    "marquee", "bgsound", "isindex", "keygen", "dialog",
})  # fmt: skip
_URL_ATTRS = frozenset(
    {
        "href",
        "src",
        "action",
        "formaction",
        "background",
        "poster",
        "srcset",
        "lowsrc",
        "dynsrc",
        "xlink:href",
        "data",
        "codebase",
        "cite",
        "longdesc",
        "usemap",
        "profile",
        "manifest",
    }
)
_SAFE_SCHEME = re.compile(r"^(?:https?:|mailto:|#)", re.IGNORECASE)
_INVISIBLE = re.compile(r"[\x00-\x20\x7f]+")
_CSS_CODE = re.compile(r"expression\s*\(|url\s*\(|javascript:|behavior\s*:|-moz-binding|@import", re.IGNORECASE)


class _Walker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ACTIVE_TAGS:
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            value = value or ""
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=…>")
            elif name in _URL_ATTRS and value and not _SAFE_SCHEME.match(_INVISIBLE.sub("", value)):
                self.found.append(f"<{tag} {name}={value[:60]!r}>")
            elif name == "style" and _CSS_CODE.search(value):
                self.found.append(f"<{tag} style={value[:60]!r}>")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


def active_content(html: str) -> list[str]:
    """What in `html` could run script, load an active resource or restyle the page; [] when inert."""
    walker = _Walker()
    walker.feed(html)
    walker.close()
    return walker.found
