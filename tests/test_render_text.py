"""Summary Markdown + LaTeX to plain text: math as Unicode, no markup, tags or entities left."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.records import Summary
from bot.render import Renderer
from bot.render.text import teaser_source
from bot.settings import Settings


def summary(text: str) -> Summary:
    return Summary(guid="g", title="T", author="A", text=text, link="https://www.shortscience.org/p#a", edited_at=datetime(2024, 1, 1, tzinfo=UTC))


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(Settings())


def text(renderer: Renderer, source: str) -> str:
    return renderer.text(summary(source))


def test_latex_becomes_unicode(renderer: Renderer) -> None:
    assert text(renderer, r"Embeddings in $\mathbb{R}^{128}$.") == "Embeddings in ℝ^128."
    assert text(renderer, r"$$\alpha + \beta$$") == "α + β"


def test_markdown_markers_removed(renderer: Renderer) -> None:
    out = text(renderer, "# Title\n\nSome **bold** and *em* and `code` and [link]() and ![]().\n\n## Sub\n\ntext")
    assert out == "Title\n\nSome bold and em and code and link and .\n\nSub\n\ntext"


def test_lists_keep_one_item_per_line(renderer: Renderer) -> None:
    out = text(renderer, "Points:\n\n- one\n- two\n\n1. first\n2. second")
    assert out == "Points:\n\n• one\n• two\n\n1. first\n2. second"


def test_html_and_entities_removed(renderer: Renderer) -> None:
    out = text(renderer, "a <b>bold</b> &amp; &lt;i&gt;x&lt;/i&gt; <script>alert(1)</script> z\n\n<div>block &copy;</div>")
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
