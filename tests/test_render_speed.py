"""The fast paths of rendering (issue 17) give exactly what the general ones gave.

clean_chars no longer runs one regex with a look-behind alternation, and MathML is written
without ElementTree's generic writer: both must keep their output to the character.
"""

from __future__ import annotations

import re
from xml.etree.ElementTree import Element, SubElement, tostring

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.render import html as html_module
from bot.render.markdown import clean_chars

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The cleaner as it was: one pass, the look-behind read against the text as given.
_REFERENCE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069\ufeff\ufffe\uffff"
    "\u200e\u200f\u061c\u180e\u2061-\u2064]|(?<![@\uff20])\u200b"
)


def reference_clean(text: str) -> str:
    return _REFERENCE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


# Every character the cleaner treats specially, and their neighbours, mixed with plain text.
_SPECIAL = (
    "\x00\x08\t\n\x0b\r\x1f \x7f\x9f\xa0@\uff20\u200b\u200c\u200d\u200e\u202a\u2066\u2061\ufeff\ufffe\uffff\ud800a√"
)


@FAST
@given(st.text(alphabet=st.sampled_from(_SPECIAL), max_size=40) | st.text(max_size=40))
def test_clean_chars_keeps_its_semantics(text: str) -> None:
    assert clean_chars(text) == reference_clean(text)


def test_clean_chars_reads_the_look_behind_before_removing() -> None:
    # "@", a control character, then U+200B: the space is not right after "@" in what was given.
    assert clean_chars("@\x00\u200bx") == reference_clean("@\x00\u200bx") == "@x"
    assert clean_chars("@\u200b\u200bx\r\n\u200b") == "@\u200bx\n"
    assert clean_chars("\uff20\u200b") == "\uff20\u200b"


_PIECES = [r"\frac{a}{b}", r"\mathbb{R}", "^", "_", "{", "}", "x", "2", "<", ">", "&", '"', r"\text{a & \"b\" <c>}",
           r"\left(", r"\right)", r"\sqrt[3]{y}", r"\quad", r"\begin{matrix}a&b\\c&d\end{matrix}", r"\hat{x}",
           r"\overset{!}{=}", r"\alpha", r"\operatorname{softmax}", r"\color{red}{x}", r"\mathrm{d}",
           r"\\", " "]  # fmt: skip
_TEX = st.lists(st.sampled_from(_PIECES), max_size=12).map("".join)


@FAST
@given(_TEX, st.booleans())
def test_mathml_is_written_as_elementtree_writes_it(tex: str, display: bool) -> None:
    from latex2mathml.converter import convert_to_element

    try:
        math = convert_to_element(tex, display="block" if display else "inline")
    except Exception:
        return
    out: list[str] = []
    assert html_module._write_xml(math, out)
    assert "".join(out) == tostring(math, encoding="unicode", short_empty_elements=False)


def test_mathml_writer_escapes_attributes_and_tails_like_elementtree() -> None:
    root = Element("math", {"xmlns": "http://www.w3.org/1998/Math/MathML", "alt": 'a"b\r\n\t<&>'})
    child = SubElement(root, "mi")
    child.text = "<&>"
    child.tail = "t&"
    SubElement(root, "mspace", {"width": "1em"})
    out: list[str] = []
    assert html_module._write_xml(root, out)
    assert "".join(out) == tostring(root, encoding="unicode", short_empty_elements=False)


def test_mathml_writer_hands_namespaced_trees_back() -> None:
    root = Element("{http://www.w3.org/1998/Math/MathML}math")
    assert not html_module._write_xml(root, [])


_WHITESPACE = " \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u2028\u2029\u3000ab#*"


@FAST
@given(st.text(alphabet=st.sampled_from(_WHITESPACE), max_size=40) | st.text(max_size=40))
def test_collapsing_whitespace_at_once_is_collapsing_it_line_by_line(text: str) -> None:
    from bot.render.teaser import SPACES
    from bot.render.text import _collapse

    lines = [SPACES.sub(" ", ln).strip() for ln in text.split("\n")]
    assert _collapse(text) == "\n".join(ln for ln in lines if ln)
