"""Summary Markdown + LaTeX to plain text: math as Unicode, no markup, tags or entities left."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.records import Summary
from bot.render import Renderer
from bot.render.text import TextRenderer, teaser_source
from bot.settings import Settings


def summary(text: str) -> Summary:
    return Summary(
        guid="g",
        title="T",
        author="A",
        text=text,
        link="https://www.shortscience.org/p#a",
        edited_at=datetime(2024, 1, 1, tzinfo=UTC),
    )


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(Settings())


def text(renderer: Renderer, source: str) -> str:
    return renderer.text(summary(source))


def test_latex_becomes_unicode(renderer: Renderer) -> None:
    assert text(renderer, r"Embeddings in $\mathbb{R}^{128}$.") == "Embeddings in ℝ¹²⁸."
    assert text(renderer, r"$$\alpha + \beta$$") == "α + β"


def test_markdown_markers_removed(renderer: Renderer) -> None:
    out = text(renderer, "# Title\n\nSome **bold** and *em* and `code` and [link]() and ![]().\n\n## Sub\n\ntext")
    assert out == "Title\n\nSome bold and em and code and link and .\n\nSub\n\ntext"


def test_lists_keep_one_item_per_line(renderer: Renderer) -> None:
    out = text(renderer, "Points:\n\n- one\n- two\n\n1. first\n2. second")
    assert out == "Points:\n\n• one\n• two\n\n1. first\n2. second"


def test_html_and_entities_removed(renderer: Renderer) -> None:
    out = text(
        renderer, "a <b>bold</b> &amp; &lt;i&gt;x&lt;/i&gt; <script>alert(1)</script> z\n\n<div>block &copy;</div>"
    )
    assert "<" not in out and ">" not in out
    assert "&amp;" not in out and "&lt;" not in out
    assert "alert" not in out
    assert out.startswith("a bold & x z")
    assert out.endswith("block ©")


def test_whitespace_normalised(renderer: Renderer) -> None:
    out = text(renderer, "a   b\tc\r\nd\n\n\n\n e  ")
    assert out == "a b c d\n\ne"


def test_unmatched_dollar_and_stray_commands(renderer: Renderer) -> None:
    # The site's rss.xml cuts summaries at 500 characters, often inside math.
    out = text(renderer, r"We have **bold start and $\sum_{i} x_i + \alpha")
    assert "$" not in out and "\\" not in out and "**" not in out
    assert "∑" in out and "α" in out
    assert text(renderer, r"Prose with \alpha but no dollars") == "Prose with α but no dollars"


def test_missing_argument_leaves_no_placeholder(renderer: Renderer) -> None:
    assert "%s" not in text(renderer, r"x $\frac{$ y")


def test_currency_is_kept(renderer: Renderer) -> None:
    assert text(renderer, "It cost $5 to train.") == "It cost $5 to train."


def test_code_block_kept_indented_and_skipped_by_teaser(renderer: Renderer) -> None:
    out = text(renderer, "Intro.\n\n```\n# comment\nx = '$a$'\n```\n\nOutro.")
    assert out == "Intro.\n\n    # comment\n    x = '$a$'\n\nOutro."
    assert teaser_source(out) == "Intro. Outro."


def test_control_characters_removed(renderer: Renderer) -> None:
    out = text(renderer, "a\x00b\x1bc\ufeffd")
    assert out == "abcd"


# --------------------------------------------------------------- issue 14: no markup, true maths


def test_refused_links_keep_their_text_and_lose_their_target(renderer: Renderer) -> None:
    source = (
        "See [m1](javascript:alert(1)), [d](data:text/html,x), [v](vbscript:y) and [t][ref], [u][].\n\n[ref]: "
        "javascript:z"
    )
    assert text(renderer, source) == "See m1, d, v and t, u."


def test_unsupported_macros_keep_their_readable_argument(renderer: Renderer) -> None:
    out = text(
        renderer, r"$\href{https://e.example}{text} + \style{color:red}{x} + \class{c}{y} + \unicode{x41} + \html{z}$"
    )
    assert out == "text + x + y + A + z"
    assert text(renderer, r"See \href{https://e.example}{the paper}.") == "See the paper."


def test_scripts_become_unicode_or_are_grouped(renderer: Renderer) -> None:
    assert text(renderer, "$x^2$, $x_1$, $W^T$, $x_{t-1}$") == "x², x₁, Wᵀ, xₜ₋₁"
    assert text(renderer, r"$\mathbb{R}^{d_{model}}$") == "ℝ^(d_model)"
    assert text(renderer, r"$\sum_{i=1}^n x_i$") == "∑ᵢ₌₁ⁿ xᵢ"


def test_headings_and_list_markers_that_lost_their_line_break_are_breaks(renderer: Renderer) -> None:
    out = text(renderer, "Some text. #### Tasks * **Item**: one * **Other**: two")
    assert out == "Some text.\nTasks\n• Item: one\n• Other: two"
    assert "#" not in teaser_source(out) and "*" not in teaser_source(out)


def test_fractions_and_exponents_keep_their_grouping(renderer: Renderer) -> None:
    assert text(renderer, r"$\frac{1}{Z}p(x|z)p(z)$") == "(1/Z)·p(x|z)p(z)"
    assert text(renderer, r"$e^{-\frac{(x_1+2)^2 + x_2^2}{2}}$") == "e^(−((x₁+2)² + x₂²)/2)"
    assert text(renderer, r"$\sqrt{x+1} + \frac{a}{b}$") == "√(x+1) + a/b"


def test_citations_and_equation_housekeeping(renderer: Renderer) -> None:
    out = text(
        renderer,
        r"As \cite{journals/tnn/BengioSF94} shows, $$a = b \nonumber \label{eq:1} \tag{3} \notag$$ and "
        r"$\cite{a/B, c/D}$",
    )
    assert out == "As [BengioSF94] shows, a = b and [B, D]"


def test_invisible_direction_marks_removed(renderer: Renderer) -> None:
    assert text(renderer, "a\u200eb\u200fc\u061cd\u200be\u202ef\u2066g") == "abcdefg"
    # ZWJ is part of emoji sequences and of Persian words: it stays.
    assert text(renderer, "👩\u200d👩") == "👩\u200d👩"


def test_every_output_drops_invisible_marks_with_one_cleaner(renderer: Renderer) -> None:
    from bot.feeds.clean import clean_html, clean_line
    from bot.mail.message import one_line as mail_line
    from bot.render.posts import one_line as post_line

    marks = "\u200e\u200f\u061c\u200b\u202e\u2066"
    dirty = f"Gr{marks}oup Norm"
    assert post_line(dirty) == mail_line(dirty) == clean_line(dirty, limit=100) == "Group Norm"
    assert clean_html(f"<p>{dirty}</p>", "https://site.example") == "<p>Group Norm</p>"
    assert renderer.html(summary(dirty)) == "<p>Group Norm</p>"
    post = renderer.post(
        "twitter",
        Summary(
            guid="g",
            title=dirty,
            author=dirty,
            text=dirty,
            link="https://www.shortscience.org/p#a",
            edited_at=datetime(2024, 1, 1, tzinfo=UTC),
        ),
    )
    assert not any(m in post.text for m in marks), ascii(post.text)
    # The posts' own mention guard (a zero-width space after "@") survives the cleaning.
    assert "@\u200bname" in renderer.post("facebook", summary("Ask @name.")).text


def test_a_refused_target_without_its_opening_bracket_is_dropped() -> None:
    # Found by the property test: "](javascript:" alone is no link to the parser, so it stayed as text.
    r = TextRenderer()
    assert r.render("](javascript:") == "]"
    assert "javascript" not in r.render("see ](JavaScript:alert(1)) here").lower()
    assert r.render("[ok](https://example.org) and ](data:x)") == "ok and ]"


def test_a_refused_target_in_a_code_block_is_dropped_too() -> None:
    # Found by the property test: four spaces make "](javascript:" an indented code block.
    r = TextRenderer()
    assert "javascript" not in r.render("    ](javascript:").lower()
    assert "javascript" not in r.render("```\n[x](javascript:alert(1))\n```").lower()
    assert "print(1)" in r.render("    print(1)")
