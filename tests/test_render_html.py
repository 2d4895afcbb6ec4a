"""Summary Markdown + LaTeX to sanitised HTML: math, links, images, code, hostile input, XML safety."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from xml.etree import ElementTree

import pytest

from bot.records import Summary
from bot.render import Renderer
from bot.render.html import tex_to_mathml
from bot.settings import Settings, with_overrides


def summary(text: str) -> Summary:
    return Summary(
        guid="https://www.shortscience.org/paper?bibtexKey=x#u",
        title="A paper",
        author="Someone",
        text=text,
        link="https://www.shortscience.org/paper?bibtexKey=x#u",
        edited_at=datetime(2024, 1, 1, tzinfo=UTC),
    )


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(with_overrides(Settings(), "render", site_base_url="https://site.example"))


def html(renderer: Renderer, text: str) -> str:
    return renderer.html(summary(text))


def test_inline_math_becomes_mathml_with_tex_annotation(renderer: Renderer) -> None:
    out = html(renderer, r"Vectors in $\mathbb{R}^{128}$ here.")
    assert '<math xmlns="http://www.w3.org/1998/Math/MathML" display="inline">' in out
    assert "<msup><mi>ℝ</mi>" in out
    assert '<annotation encoding="application/x-tex">\\mathbb{R}^{128}</annotation>' in out
    assert "$" not in out


def test_display_math_is_block(renderer: Renderer) -> None:
    out = html(renderer, "Before\n\n$$\n\\frac{a}{b}\n$$\n\nAfter")
    assert 'display="block"' in out
    assert "<mfrac>" in out


def test_math_with_less_than_stays_escaped(renderer: Renderer) -> None:
    out = html(renderer, r"$a<b$ and $\text{<script>x}$")
    assert "<mo>&lt;</mo>" in out
    assert "<script" not in out


def test_failing_latex_falls_back_to_code(renderer: Renderer) -> None:
    out = html(renderer, r"Broken $\frac{$ and $\left( x$ formula")
    assert '<code class="tex">$\\frac{$</code>' in out
    assert '<code class="tex">$\\left( x$</code>' in out
    assert tex_to_mathml(r"\frac{", display=False) is None


def test_empty_link_renders_its_text(renderer: Renderer) -> None:
    out = html(renderer, "See the [paper]() for details.")
    assert out == "<p>See the paper for details.</p>"


def test_empty_image_is_dropped(renderer: Renderer) -> None:
    out = html(renderer, "Look: ![]() ![chart]() done")
    assert "<img" not in out
    assert "Look:" in out and "done" in out


def test_relative_link_and_image_made_absolute(renderer: Renderer) -> None:
    out = html(renderer, "[page](/paper?bibtexKey=k) ![fig](/static/fig.png)")
    assert '<a href="https://site.example/paper?bibtexKey=k"' in out
    assert '<img src="https://site.example/static/fig.png" alt="fig">' in out


def test_absolute_https_link_kept(renderer: Renderer) -> None:
    out = html(renderer, "[arXiv](https://arxiv.org/abs/1803.08494)")
    assert 'href="https://arxiv.org/abs/1803.08494"' in out
    assert 'rel="nofollow noopener noreferrer"' in out


def test_code_block_kept_escaped(renderer: Renderer) -> None:
    out = html(renderer, "```python\nif a < b and c:\n    print('$x$')\n```")
    assert "<pre><code class=\"language-python\">if a &lt; b and c:\n    print('$x$')\n</code></pre>" in out
    assert "<math" not in out


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        '<a href="javascript:alert(1)">x</a>',
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "![x](data:image/png;base64,AAAA)",
        '<a href="data:text/html,<script>alert(1)</script>">x</a>',
        "<iframe src=https://evil.example></iframe>",
        "<style>body{display:none}</style>",
        '<div style="position:fixed" onmouseover="x()">hi</div>',
        "<svg><script>alert(1)</script></svg>",
        '<math><mi xlink:href="javascript:alert(1)">x</mi></math>',
        '<math><annotation-xml encoding="text/html"><img src=x onerror=alert(1)></annotation-xml></math>',
        "<a href='&#106;avascript:alert(1)'>x</a>",
    ],
)
def test_hostile_html_is_neutralised(renderer: Renderer, hostile: str) -> None:
    out = html(renderer, f"Text {hostile} end").lower()
    assert "<script" not in out
    # As text "javascript:" is harmless; as a URL it must not survive.
    assert not re.search(r"(href|src)\s*=\s*[\"']?\s*(javascript|data):", out)
    assert "onerror" not in out and "onmouseover" not in out
    assert "<iframe" not in out and "<style" not in out and "style=" not in out


def test_output_is_valid_inside_xml(renderer: Renderer) -> None:
    out = html(renderer, "Bad \x00\x01\x1b chars \ufffe\uffff &#1; and\r\nCRLF &nbsp; $x^2$ ![i](/a.png)")
    assert not any(ord(c) < 32 and c not in "\t\n" for c in out)
    assert "\ufffe" not in out and "\uffff" not in out
    # XML knows no &nbsp;: the fragment must parse as XML text once void elements are closed.
    xml = out.replace('alt="i">', 'alt="i"/>')
    ElementTree.fromstring(f"<root>{xml}</root>")


def test_bad_latex_never_raises(renderer: Renderer) -> None:
    for tex in [r"\begin{x}", "}{", r"\left(", "^" * 50, "{" * 500, r"\newcommand{\x}{\x}\x", "\\" * 9]:
        out = html(renderer, f"a ${tex}$ b")
        assert "a" in out


# --------------------------------------------------------------- issue 14 point 4, issue 13 point 11


def _visible(mathml: str) -> str:
    """The text a reader sees in MathML: everything but the TeX annotation."""
    return re.sub(r"<[^>]+>", "", re.sub(r"<annotation.*?</annotation>", "", mathml, flags=re.S))


def test_citation_links_to_the_papers_page(renderer: Renderer) -> None:
    out = html(renderer, r"As shown by \cite{journals/tnn/BengioSF94}, gradients vanish.")
    assert (
        '<a href="https://site.example/paper?bibtexKey=journals/tnn/BengioSF94" rel="nofollow noopener '
        'noreferrer">[BengioSF94]</a>' in out
    )
    assert "\\cite" not in out and "{journals" not in out


def test_equation_housekeeping_is_not_shown(renderer: Renderer) -> None:
    out = html(renderer, r"$$a = b \nonumber \label{eq:x} \tag{3} \notag \cite{conf/x/Key20}$$")
    seen = _visible(out)
    assert seen.replace(" ", "") == "a=b[Key20]", seen
    assert "<math" in out


def test_refused_link_keeps_only_its_text(renderer: Renderer) -> None:
    out = html(renderer, "[m1](javascript:alert(1)) and [d](data:text/html,x)")
    assert out == "<p>m1 and d</p>"


def test_too_many_formulas_are_shown_as_source_still_sanitised(renderer: Renderer) -> None:
    from bot.render.markdown import MAX_MATH_SPANS

    out = html(renderer, " ".join(["$x^2$"] * (MAX_MATH_SPANS + 1)) + " <script>alert(1)</script>")
    assert "<math" not in out and out.count('<code class="tex">$x^2$</code>') == MAX_MATH_SPANS + 1
    assert "<script" not in out and "alert" not in out
    within = html(renderer, " ".join(["$x^2$"] * MAX_MATH_SPANS))
    assert within.count("<math") == MAX_MATH_SPANS
    # The plain text takes the same cheap path: markup dropped, not converted (no "x²").
    plain = renderer.text(summary(" ".join(["$x^2$"] * (MAX_MATH_SPANS + 1))))
    assert plain == " ".join(["x2"] * (MAX_MATH_SPANS + 1))


def test_too_much_tex_is_shown_as_source(renderer: Renderer) -> None:
    from bot.render.markdown import MAX_MATH_CHARS

    formula = "x^{" + "{" * 50 + "y" + "}" * 50 + "}"
    count = MAX_MATH_CHARS // len(formula) + 1
    out = html(renderer, " ".join([f"${formula}$"] * count))
    assert "<math" not in out and out.count('<code class="tex">') == count
    assert "<math" in html(renderer, " ".join([f"${formula}$"] * (count - 1)))


def test_too_many_tags_are_removed_before_sanitising(renderer: Renderer) -> None:
    from bot.render.markdown import MAX_TAGS

    nested = "<div>" * (MAX_TAGS + 1) + "deep <script>alert(1)</script> <img src=x onerror=alert(2)>"
    out = html(renderer, nested + " a<b")
    # The tags are gone (a script's words stay as harmless text), a lone "<" stays text.
    assert out == "<p>deep alert(1)  a&lt;b</p>"
    assert renderer.text(summary(nested)).startswith("deep")
