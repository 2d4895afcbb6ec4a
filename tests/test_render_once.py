"""Rendering HTML and text from one parse (what the render cache keeps) gives exactly what the two renderings give
apart."""

from __future__ import annotations

import dataclasses

import pytest

from bot.render import Renderer
from bot.settings import Settings, sample_feed_path
from bot.sources.parse import parse_feed

SAMPLE = parse_feed(sample_feed_path().read_bytes(), "sample").summaries
EXTRA = [
    "See [the paper](/paper?bibtexKey=x) and ![a pixel](https://tracker.example/p.gif), [bad](javascript:alert(1)).",
    "Inline $x^2$ and display $$\\frac{1}{Z}p(x)$$ with \\cite{journals/tnn/BengioSF94}.",
    "Many formulas: " + " ".join(f"$x_{i}$" for i in range(1200)),
    "[ref]: https://example.org\n\nA [reference link][ref] and <b>raw</b> <script>x</script> HTML.\n\n1. "
    "one\n2. two\n\n```\ncode\n```",
]


@pytest.mark.parametrize("text", [s.text for s in SAMPLE] + EXTRA)
def test_html_and_text_from_one_parse_equal_the_two_renderings(text: str) -> None:
    renderer = Renderer(Settings())
    summary = dataclasses.replace(SAMPLE[0], text=text)
    assert renderer.html_and_text(summary) == (renderer.html(summary), renderer.text(summary))
