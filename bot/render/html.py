"""Summary Markdown + LaTeX to a sanitised HTML fragment (feeds, e-mail, pages).

Math becomes MathML with the TeX kept as an annotation; links and images keep
only absolute http(s) URLs; nh3 has the last word on every tag and attribute.
No I/O, no templates.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote
from xml.etree.ElementTree import Element, SubElement, tostring

import nh3
from latex2mathml.converter import convert_to_element
from markdown_it.common.utils import escapeHtml
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

from bot.render.fastmath import fast_mathml
from bot.render.images import allowed_hosts, drop_empty_paragraphs, filter_images
from bot.render.markdown import (
    MAX_SOURCE_CHARS,
    absolute_url,
    bound_tags,
    clean_chars,
    make_markdown,
    math_within_bounds,
    resolve_links,
)
from bot.render.mathtext import PROSE_CITE, cite_text, tidy_tex
from bot.render.mathtokens import escape_text

MATHML_NS = "http://www.w3.org/1998/Math/MathML"

#: longest TeX we hand to latex2mathml; longer formulas stay source in <code>
MAX_TEX_CHARS = 4000

# Only the presentation MathML latex2mathml emits, plus semantics/annotation.
# annotation-xml is left out on purpose: it can switch the parser back to HTML.
_MATHML_ATTRIBUTES: dict[str, set[str]] = {
    "semantics": set(),
    "mrow": set(),
    "mi": {"mathvariant"},
    "mn": {"mathvariant"},
    "mo": {
        "accent",
        "fence",
        "form",
        "lspace",
        "maxsize",
        "minsize",
        "movablelimits",
        "rspace",
        "separator",
        "stretchy",
        "largeop",
        "symmetric",
    },
    "ms": set(),
    "mtext": {"mathvariant"},
    "mspace": {"width", "height", "depth", "linebreak"},
    "msup": set(),
    "msub": set(),
    "msubsup": set(),
    "mfrac": {"linethickness"},
    "msqrt": set(),
    "mroot": set(),
    "mover": {"accent"},
    "munder": {"accentunder"},
    "munderover": {"accent", "accentunder"},
    "mmultiscripts": set(),
    "mprescripts": set(),
    "mtable": {
        "columnlines",
        "columnspacing",
        "displaystyle",
        "rowlines",
        "rowspacing",
        "columnalign",
        "rowalign",
        "frame",
    },
    "mtr": set(),
    "mtd": {"columnalign", "columnspan", "rowspan"},
    "mstyle": {"displaystyle", "mathcolor", "mathsize", "scriptlevel", "mathvariant"},
    "menclose": {"notation"},
    "mpadded": {"width", "height", "depth", "lspace", "voffset"},
    "mphantom": set(),
    "merror": set(),
}

_HTML_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "dd", "del", "details", "div", "dl", "dt",
    "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li",
    "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strike", "strong", "sub", "summary", "sup",
    "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u", "ul", "var",
}  # fmt: skip

_HTML_ATTRIBUTES: dict[str, set[str]] = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "ol": {"start"},
    "td": {"style", "colspan", "rowspan"},
    "th": {"style", "colspan", "rowspan"},
    "code": {"class"},
    "abbr": {"title"},
}

# Removed with their content, not just unwrapped.
_DROP_WITH_CONTENT = {
    "script",
    "style",
    "iframe",
    "object",
    "embed",
    "noscript",
    "template",
    "textarea",
    "title",
    "svg",
    "select",
}

_CODE_CLASS = re.compile(r"(language-[A-Za-z0-9_+#.-]{1,40}|tex)")
_NUMERIC_REF = re.compile(r"&#(x[0-9A-Fa-f]{1,6}|[0-9]{1,7});")


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    # Classes come from Markdown code fences (language-x) and our TeX fallback only.
    if attr == "class":
        return value if _CODE_CLASS.fullmatch(value) else None
    return value


def make_cleaner(site_base_url: str) -> nh3.Cleaner:
    """The sanitiser: our tags and MathML, http(s) URLs only, relative URLs made absolute."""
    attributes = {**_HTML_ATTRIBUTES, **_MATHML_ATTRIBUTES}

    def relative(url: str) -> str | None:
        return absolute_url(url, site_base_url)

    return nh3.Cleaner(
        tags=_HTML_TAGS | set(_MATHML_ATTRIBUTES) | {"math", "annotation"},
        clean_content_tags=_DROP_WITH_CONTENT,
        attributes=attributes,
        attribute_filter=_attribute_filter,
        tag_attribute_values={
            "math": {"xmlns": {MATHML_NS}, "display": {"inline", "block"}},
            "annotation": {"encoding": {"application/x-tex"}},
        },
        filter_style_properties={"text-align"},
        url_schemes={"http", "https"},
        url_relative=relative,
        link_rel="nofollow noopener noreferrer",
        strip_comments=True,
    )


def _unescape_refs(el: Element) -> None:
    # latex2mathml stores symbols as "&#x0211D;" text and unescapes its whole
    # output string afterwards, which would also unescape the author's "<".
    # Decode only its numeric references, per node, and let ElementTree escape.
    for node in el.iter():
        if node.text and "&#" in node.text:
            node.text = _NUMERIC_REF.sub(lambda m: htmllib.unescape(m.group(0)), node.text)


def tex_to_mathml(tex: str, *, display: bool) -> str | None:
    """MathML for one formula with the TeX as annotation, or None when latex2mathml cannot convert it."""
    if len(tex) > MAX_TEX_CHARS:
        return None
    try:
        # Numbering and labels would show as letters; a citation as its key spelt out.
        tidy = tidy_tex(tex)
        # The common subset written directly: the same bytes for a fraction of the CPU.
        fast = fast_mathml(tidy, tex, display=display)
    except Exception:
        return None
    return fast if fast is not None else library_mathml(tidy, tex, display=display)


def library_mathml(tidy: str, tex: str, *, display: bool) -> str | None:
    """tex_to_mathml through latex2mathml: `tidy` (tidy_tex(tex)) converted, `tex` the annotation."""
    try:
        math = convert_to_element(tidy, display="block" if display else "inline")
    except Exception:
        # latex2mathml raises many unrelated types (and RecursionError on deep
        # nesting); every one of them means "show the source".
        return None
    _unescape_refs(math)
    children = list(math)
    for child in children:
        math.remove(child)
    semantics = SubElement(math, "semantics")
    if len(children) == 1:
        semantics.append(children[0])
    else:
        SubElement(semantics, "mrow").extend(children)
    annotation = SubElement(semantics, "annotation", {"encoding": "application/x-tex"})
    annotation.text = tex
    out: list[str] = []
    if not _write_xml(math, out):
        return tostring(math, encoding="unicode", short_empty_elements=False)
    return "".join(out)


_ATTRIBUTE_ESCAPES = (('"', "&quot;"), ("\r", "&#13;"), ("\n", "&#10;"), ("\t", "&#09;"))


def _escape_attribute(value: str) -> str:
    value = escape_text(value)
    for char, ref in _ATTRIBUTE_ESCAPES:
        if char in value:
            value = value.replace(char, ref)
    return value


def _write_xml(el: Element, out: list[str]) -> bool:
    """Append what tostring(el, encoding="unicode", short_empty_elements=False) gives; False (and out
    unusable) for an element it would write differently (a namespaced tag, a comment): the caller uses it then.

    ElementTree's writer first walks the whole tree for namespaces and goes through several layers per
    node; latex2mathml's trees hold none, and writing them was a fifth of the cost of converting a formula.
    """
    tag = el.tag
    if not isinstance(tag, str) or "{" in tag:
        return False
    out.append("<" + tag)
    for name, value in el.items():
        if not (isinstance(name, str) and isinstance(value, str)) or "{" in name:
            return False
        out.append(f' {name}="{_escape_attribute(value)}"')
    out.append(">")
    if el.text:
        out.append(escape_text(el.text))
    for child in el:
        if not _write_xml(child, out):
            return False
    out.append(f"</{tag}>")
    if el.tail:
        out.append(escape_text(el.tail))
    return True


def _tex_fallback(source: str) -> str:
    return f'<code class="tex">{htmllib.escape(source, quote=False)}</code>'


def _math_rule(display: bool, open_: str, close: str) -> Any:
    def render(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        tex = tokens[idx].content.strip()
        mathml = tex_to_mathml(tex, display=display) if env.get("convert_math", True) else None
        out = mathml if mathml is not None else _tex_fallback(f"{open_}{tex}{close}")
        if tokens[idx].block:
            return f"<p>{out}</p>\n" if mathml is None else f"{out}\n"
        return out

    return render


def _cite_rule(site_base_url: str) -> Any:
    """Text with ``\\cite{key}`` made a link to the paper's ShortScience page, "[Key]"."""
    base = site_base_url.rstrip("/")

    def render(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        content = tokens[idx].content
        if "\\" not in content:
            return escapeHtml(content)
        out, pos = [], 0
        for m in PROSE_CITE.finditer(content):
            out.append(escapeHtml(content[pos : m.start()]))
            keys = [k.strip() for k in m.group(1).split(",") if k.strip()]
            links = [
                f'<a href="{htmllib.escape(base + "/paper?bibtexKey=" + quote(k, safe="/:.-_"))}">'
                f"{htmllib.escape(cite_text(k))}</a>"
                for k in keys
            ]
            out.append(" ".join(links) or "[ref]")
            pos = m.end()
        out.append(escapeHtml(content[pos:]))
        return "".join(out)

    return render


class HtmlRenderer:
    """Markdown + LaTeX → sanitised HTML, with the parser and sanitiser built once."""

    def __init__(self, site_base_url: str, image_hosts: Sequence[str] = ()) -> None:
        self.site_base_url = site_base_url
        #: hosts images may be shown from (any other image becomes a link: no tracking pixels)
        self.image_hosts = allowed_hosts(image_hosts, site_base_url)
        self._md = make_markdown()
        for name, display, open_, close in (
            ("math_inline", False, "$", "$"),
            ("math_inline_double", True, "$$", "$$"),
            ("math_block", True, "$$", "$$"),
            ("math_block_label", True, "$$", "$$"),
        ):
            self._md.add_render_rule(name, _math_rule(display, open_, close))
        self._md.add_render_rule("text", _cite_rule(site_base_url))
        self._cleaner = make_cleaner(site_base_url)

    def render(self, source: str) -> str:
        """The sanitised HTML fragment of one summary's Markdown."""
        tokens = self._md.parse(bound_tags(clean_chars(source[:MAX_SOURCE_CHARS])), {})
        return self.render_tokens(tokens, convert_math=math_within_bounds(tokens))

    def render_tokens(self, tokens: list[Token], *, convert_math: bool) -> str:
        """The sanitised HTML of parsed Markdown (changes the tokens: links are resolved in place)."""
        env: dict[str, Any] = {"convert_math": convert_math}
        resolve_links(tokens, self.site_base_url)
        raw = self._md.renderer.render(tokens, self._md.options, env)
        clean = drop_empty_paragraphs(filter_images(self._cleaner.clean(raw), self.image_hosts))
        # html5ever writes U+00A0 as &nbsp;, an entity XML does not know.
        return clean_chars(clean.replace("&nbsp;", "&#160;")).strip()
