"""Summary Markdown + LaTeX to readable plain text (posts, the text part of e-mails).

Markdown markers, HTML and entities go; math becomes Unicode with its grouping
kept (``$\\mathbb{R}^{128}$`` → ``ℝ¹²⁸``, see mathtext). Paragraphs are separated by one blank
line; code blocks are kept verbatim, each line indented by four spaces (the
only text that may keep ``$``, ``#`` or backslashes, and how the post teaser
recognises and skips them). No I/O.
"""

from __future__ import annotations

import html as htmllib
import logging
import re
from collections.abc import Callable

import nh3
from markdown_it.token import Token
from pylatexenc.latex2text import LatexNodes2Text

from bot.render.markdown import (
    MAX_SOURCE_CHARS,
    bound_tags,
    clean_chars,
    make_markdown,
    math_within_bounds,
    unescape_refs,
)
from bot.render.mathtext import MathTextError, prose_tex, strip_tex, tex_to_text
from bot.render.teaser import CODE_INDENT, SPACES
from bot.render.teaser import teaser_source as teaser_source  # its old home, where the channels import it

#: longest TeX handed to pylatexenc; longer formulas lose their markup instead
MAX_TEX_CHARS = 4000

_MACRO = re.compile(r"\\([A-Za-z]+|.)")
_TAG = re.compile(r"</?[A-Za-z][^<>]*>|<!--.*?-->|<![^<>]*>|<\?[^<>]*>", re.S)
_EMPHASIS_RUN = re.compile(r"\*\*+|__+")
_HEADING_MARK = re.compile(r"^#{1,6}(?=\s|$)\s*", re.M)
# A "$" that opens math the parser did not match (e.g. text cut at 500
# characters by the site's feed); currency ("$5") is kept.
_STRAY_DOLLARS = re.compile(r"\$+(?!\d)")
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")
# Markdown a parser left as text: links it refused (javascript:, data:, a reference without its
# definition) keep their words, and headings or list markers that lost their line break become one.
_LINK_LEFT = re.compile(r"\[([^\[\]\n]{1,500})\](?:\((?:[^()\s]|\([^()\s]*\)){0,2000}\)|\[[^\[\]\n]{0,200}\])")
# What is left of such a link when its "[" went elsewhere (another inline, code, maths, or never there).
_TARGET_LEFT = re.compile(r"\]\(\s*(?:javascript|data|vbscript):[^)\n]{0,2000}\)?", re.IGNORECASE)
_HEADING_LEFT = re.compile(r"(?:^|(?<=\s))#{1,6}(?=\s)")
_BULLET_LEFT = re.compile(r"(?:^|(?<=\s))\*(?=\s)")
_HIDDEN_OPEN = re.compile(r"<(script|style|iframe|textarea|title|noscript|template)\b[^>]*(?<!/)>", re.I)

_strip_html = nh3.Cleaner(
    tags=set(), clean_content_tags={"script", "style", "iframe", "object", "noscript", "template", "textarea", "title"}
)

# pylatexenc logs a warning for every macro it does not know; user text is full of them.
logging.getLogger("pylatexenc").setLevel(logging.ERROR)


class TextRenderer:
    """Markdown + LaTeX → plain text, with the parser and LaTeX converter built once."""

    def __init__(self) -> None:
        self._md = make_markdown()
        self._latex = LatexNodes2Text(math_mode="text", strict_latex_spaces="based-on-source", keep_comments=False)

    # ------------------------------------------------------------------ math

    def tex(self, tex: str) -> str:
        """One formula as readable Unicode, never with a backslash command left."""
        tex = tex[:MAX_TEX_CHARS]
        try:
            out = tex_to_text(tex)
        except (MathTextError, RecursionError):
            out = strip_tex(tex)
        out = _STRAY_DOLLARS.sub("", self._no_macros(out))
        out = _EMPHASIS_RUN.sub(lambda m: m.group(0)[0], out)  # "**" would read as Markdown
        # "a<b>c" is math, not a tag: a space keeps it from reading as one.
        return _TAG_START.sub("< ", out)

    def cheap_tex(self, tex: str) -> str:
        """A formula with its markup dropped, not converted: past MAX_MATH_SPANS a summary gets only this."""
        return _TAG_START.sub("< ", _STRAY_DOLLARS.sub("", strip_tex(tex[:MAX_TEX_CHARS])))

    def _no_macros(self, text: str) -> str:
        # Whatever pylatexenc leaves (or prose that uses \alpha without $) loses its backslash.
        if "\\" not in text:
            return text
        return _MACRO.sub(self._macro_text, text).replace("\\", "")

    def _macro_text(self, m: re.Match[str]) -> str:
        name = m.group(1)
        if not name.isalpha():
            return name if not name.isspace() else " "
        try:
            converted = self._latex.latex_to_text("\\" + name)
        except Exception:
            converted = ""
        converted = converted.replace("\\", "")
        return converted if converted.strip() else name

    # ------------------------------------------------------------------ prose

    def _prose(self, text: str) -> str:
        # Each pattern only where its character is: this runs on every text fragment of every summary, and a
        # look-behind alternation tries two branches at every position even when there is nothing to find.
        text = _html_to_text(text)
        if "**" in text or "__" in text:
            text = _EMPHASIS_RUN.sub("", text)
        if "[" in text:
            text = _LINK_LEFT.sub(r"\1", text)
        if "#" in text:
            text = _HEADING_LEFT.sub("\n", text)
        if "*" in text:
            text = _BULLET_LEFT.sub("\n•", text)
        if "$" in text:
            text = self._stray_math(text)
        return self._no_macros(prose_tex(text))

    def _stray_math(self, text: str) -> str:
        # An unmatched "$": treat what follows as TeX, the way the site's MathJax would.
        start = _STRAY_DOLLARS.search(text)
        if start is None:
            return text
        head, rest = text[: start.start()], text[start.end() :]
        return head + self.tex(_STRAY_DOLLARS.sub("", rest))

    def _inline(self, children: list[Token], tex: Callable[[str], str]) -> str:
        parts: list[str] = []
        hidden = ""  # inside inline <script>/<style>: its text is not prose
        for child in children:
            t = child.type
            if hidden:
                if t == "html_inline" and child.content.lower().startswith(f"</{hidden}"):
                    hidden = ""
                continue
            if t == "text":
                parts.append(self._prose(child.content))
            elif t == "code_inline":
                # Kept verbatim (backslashes and all) but tags still go: plain text carries none.
                parts.append(_html_to_text(child.content))
            elif t in ("math_inline", "math_inline_double"):
                parts.append(tex(child.content))
            elif t in ("softbreak",):
                parts.append(" ")
            elif t == "hardbreak":
                parts.append("\n")
            elif t == "image":
                # Dropped, alt text too: plain text has no image for it to describe, and alt texts
                # are mostly file names ("screen shot 2017-06-02 at 10 24 45 am").
                continue
            elif t == "html_inline":
                opened = _HIDDEN_OPEN.match(child.content)
                if opened:
                    hidden = opened.group(1).lower()
        return "".join(parts)

    # ---------------------------------------------------------------- blocks

    def parse(self, source: str) -> list[Token]:
        """One summary's Markdown parsed, bounded and cleaned as every rendering of it is."""
        return self._md.parse(bound_tags(clean_chars(source[:MAX_SOURCE_CHARS])), {})

    def render(self, source: str) -> str:
        """The plain text of one summary's Markdown."""
        tokens = self.parse(source)
        return self.render_tokens(tokens, convert_math=math_within_bounds(tokens))

    def render_tokens(self, tokens: list[Token], *, convert_math: bool) -> str:
        """The plain text of parsed Markdown (read only: the HTML renderer may use the same tokens after)."""
        tex = self.tex if convert_math else self.cheap_tex
        blocks: list[str] = []
        counters: list[int | None] = []
        pending_marker = ""
        list_run = False  # the last block is a list item a following item may join
        for token in tokens:
            t = token.type
            if t == "bullet_list_open":
                counters.append(None)
            elif t == "ordered_list_open":
                counters.append(int(token.attrGet("start") or 1))
            elif t in ("bullet_list_close", "ordered_list_close"):
                counters.pop()
                list_run = bool(counters)
            elif t == "list_item_open":
                n = counters[-1] if counters else None
                indent = "  " * (len(counters) - 1)
                pending_marker = f"{indent}• " if n is None else f"{indent}{n}. "
                if counters and n is not None:
                    counters[-1] = n + 1
            elif t == "list_item_close":
                pending_marker = ""
            elif t == "inline":
                line = _collapse(self._inline(token.children or [], tex))
                if line:
                    if pending_marker and list_run and blocks:
                        # Items of one list stay on consecutive lines.
                        blocks[-1] += "\n" + pending_marker + line
                    else:
                        blocks.append(pending_marker + line)
                    list_run = bool(counters)
                    pending_marker = ""
            elif t in ("fence", "code_block"):
                code = token.content.rstrip("\n")
                if code.strip():
                    lines = [(CODE_INDENT + ln.replace("\t", "    ")).rstrip() for ln in code.split("\n")]
                    blocks.append("\n".join(lines))
                    list_run = False
            elif t in ("math_block", "math_block_label"):
                formula = _collapse(tex(token.content))
                if formula:
                    blocks.append(pending_marker + formula)
                    pending_marker = ""
                    list_run = False
            elif t == "html_block":
                stripped = _collapse(self._prose(token.content))
                if stripped:
                    blocks.append(stripped)
                    list_run = False
        finals = (_final(b) for b in blocks)
        out = "\n\n".join(b for b in finals if b).strip("\n")
        # A refused link target goes wherever it was left (prose, code, maths): plain text is what posts are
        # made of, and no reader's client should be handed a script URL to make clickable.
        return _TARGET_LEFT.sub("]", out) if "](" in out else out


def _collapse(text: str) -> str:
    """Whitespace runs made one space, line by line; blank lines removed."""
    # One pass over the whole text: the runs never hold a newline, so this is the same as line by line.
    lines = [ln.strip() for ln in SPACES.sub(" ", text).split("\n")]
    return "\n".join(ln for ln in lines if ln)


def _html_to_text(text: str) -> str:
    # Tags and entities out, until none is left: "&lt;b&gt;" must not come back as "<b>".
    # Each pass that changes anything makes the text shorter; the bound is a seatbelt.
    for _ in range(50):
        before = text
        if "<" in text:
            text = htmllib.unescape(_strip_html.clean(text)) if _TAG.search(text) else text
            text = _TAG.sub("", text)
        text = unescape_refs(text)
        if text == before:
            break
    if "<" in text:  # every tag pattern starts with one
        text = _TAG.sub("", text)
    return clean_chars(text)


def _final(block: str) -> str:
    if block.startswith(CODE_INDENT):
        return block
    return _HEADING_MARK.sub("", block).strip()
