"""Property tests: whatever the public writes, posts stay valid and HTML/text stay clean."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from urllib.parse import urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twitter_text import parse_tweet

from bot.records import PaperDetails, Summary
from bot.render import Renderer
from bot.render.text import teaser_source
from bot.settings import DEFAULT_HASHTAGS, Settings, with_overrides

LINK = "https://www.shortscience.org/paper?bibtexKey=journals/corr/1803.08494#decodyng"
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

RENDERER = Renderer(with_overrides(Settings(), "render", fixed_hashtags=("#ShortScience", "#AI")))
THREADS = Renderer(with_overrides(Settings(), "twitter", thread=True, thread_max_replies=3))

LATEX = [
    r"$\mathbb{R}^{128}$",
    r"$$\sum_{i=1}^n x_i$$",
    r"$\frac{a}{b}$",
    r"$\alpha_t + \beta$",
    r"$\frac{$",
    r"$\left( x$",
    r"$\begin{align} a &= b \\ c &= d \end{align}$",
    r"$\text{<b>}$",
    r"$x<y>z$",
    "$",
    "$$",
    r"\alpha",
    r"$\unknown{x}$",
    r"$\\$",
    r"$\$$",
    "$a$b$c",
    r"$\mathcal{L}(\theta)$",
    r"$\hat{y}$",
]
MARKDOWN = [
    "# Heading",
    "## Sub",
    "**bold**",
    "*em*",
    "__u__",
    "**unclosed",
    "- item",
    "1. first",
    "> quote",
    "[paper]()",
    "![]()",
    "![fig](/a.png)",
    "[rel](/x)",
    "`code`",
    "\n\n",
    "\n",
    "  ",
    "---",
    "| a | b |\n|---|---|\n| 1 | 2 |",
    "&amp;",
    "&lt;b&gt;",
    "&#x3c;script&#x3e;",
    "&nbsp;",
    "\\*",
]
HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    "[x](javascript:alert(1))",
    "<svg onload=alert(1)>",
    "<iframe src=//e.example>",
    "\r\n",
    "\r",
    "\x00",
    "\x1b",
    '<div style="x" onclick="y">z</div>',
    "<style>*{}</style>",
    "<a href='&#106;avascript:x'>j</a>",
    "@elonmusk",
    "＠jack",
    LINK,
    "https://t.co/x",
    "\ufeff",
    "\u200d",
    "<!-- c -->",
    "<math><mi>x</mi></math>",
    "[m1](javascript:alert(1))",
    "[d](data:text/html,x)",
    "[t][ref]",
    "\n\n[ref]: vbscript:x\n\n",
    "#### Tasks * **Item**:",
    r"\href{javascript:x}{t}",
    r"$\style{color:red}{x}$",
    r"\cite{journals/tnn/BengioSF94}",
    r"$\label{a} \nonumber$",
    "\u200e",
    "\u200f",
    "\u061c",
    "\u200b",
]
UNICODE = [
    "研究は重要です",
    "한국어 문장",
    "👩‍👩‍👧‍👦",
    "🇩🇪🇫🇷",
    "🏴󠁧󠁢󠁳󠁣󠁴󠁿",
    "👍🏽",
    "é",
    "e\u0301",
    "ﬁ",
    "\u2028",
    "x" * 300,
    "Supercalifragilistic" * 20,
    "…",
    "“quoted”",
]
PROSE = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="`~"), max_size=80)
FRAGMENT = st.one_of(
    PROSE, st.sampled_from(LATEX), st.sampled_from(MARKDOWN), st.sampled_from(HOSTILE), st.sampled_from(UNICODE)
)
TEXT = st.lists(FRAGMENT, max_size=25).map(" ".join)
NAME = st.one_of(
    st.text(max_size=40), st.sampled_from(["Anonymous", "Marie-Noëlle O'Brien", "<b>x</b>", "李雷", "x" * 500])
)


def summary(text: str, title: str = "Title", author: str = "A") -> Summary:
    return Summary(
        guid=LINK, title=title, author=author, text=text, link=LINK, edited_at=datetime(2024, 1, 1, tzinfo=UTC)
    )


@st.composite
def details(draw: st.DrawFn) -> PaperDetails | None:
    if draw(st.booleans()):
        return None
    authors = tuple(draw(st.lists(NAME, max_size=6)))
    categories = tuple(draw(st.lists(st.sampled_from([*DEFAULT_HASHTAGS, "math.OC"]), max_size=5)))
    return PaperDetails("1803.08494", "T", authors, None, categories)


@FAST
@given(text=TEXT, title=st.one_of(NAME, TEXT), author=NAME, paper=details(), thread=st.booleans())
def test_x_post_always_valid_with_link_once(
    text: str, title: str, author: str, paper: PaperDetails | None, thread: bool
) -> None:
    renderer = THREADS if thread else RENDERER
    post = renderer.post("twitter", summary(text, title, author), paper)
    for one in (post.text, *post.replies):
        assert parse_tweet(one).valid, one
        assert "\r" not in one
    assert post.text.count(LINK) == 1
    assert post.link == LINK
    assert not any(LINK in reply for reply in post.replies)
    assert len(post.replies) <= 3


@FAST
@given(text=TEXT, title=st.one_of(NAME, TEXT), paper=details())
def test_facebook_post_carries_the_link(text: str, title: str, paper: PaperDetails | None) -> None:
    post = RENDERER.post("facebook", summary(text, title), paper)
    assert post.link == LINK
    assert "\r" not in post.text
    assert post.text.endswith(LINK)


class _Attributes(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "iframe", "object", "embed", "svg"):
            self.problems.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on") or name == "style":
                self.problems.append(f"{tag} {name}")
            if name in ("href", "src") and urlsplit((value or "").strip()).scheme not in ("http", "https"):
                self.problems.append(f"{tag} {name}={value!r}")


_XML_INVALID = re.compile("[\x00-\x08\x0b-\x1f\ufffe\uffff\ud800-\udfff]")


URLISH = [
    "a.co",
    "x.com/y",
    "https://e.org/" + "p" * 60,
    "t.co",
    "www.example.org",
    "1.2.3.4",
    "a@b.co",
    "ftp://f.org",
    "e.g.",
    "…co",
]
EMOJI = ["©", "®", "©\ufe0f", "#\ufe0f\u20e3", "1\u20e3", "‼", "™", "👩‍👩‍👧‍👦", "🇩🇪", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "👍🏽", "☺\ufe0f", "\u200d"]
WEIGHED = st.lists(
    st.one_of(
        PROSE,
        st.sampled_from(URLISH),
        st.sampled_from(EMOJI),
        st.sampled_from(UNICODE),
        st.sampled_from(["\r\n", "\r", "\n"]),
    ),
    max_size=30,
).map("".join)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=WEIGHED)
def test_the_fast_weight_never_counts_below_x(text: str) -> None:
    # Fitting trusts it: a post whose bound fits 280 is sent without asking twitter-text.
    from bot.channels.twitter.fitting import estimated_weight

    assert estimated_weight(text) >= parse_tweet(text).weightedLength


SPACED = st.lists(
    st.one_of(
        st.sampled_from(URLISH),
        st.sampled_from(["(", ")", "-", "_", "/", ".", "@", "#", "$", "a", "é", "中", "https://", "\u202a"]),
        st.sampled_from([" ", "\t", "\n", "\u3000", "\u00a0", "\u2009", "\u180e", "\u1680"]),
    ),
    max_size=25,
).map("".join)


@settings(max_examples=1000, deadline=None)
@given(text=SPACED)
def test_weighing_word_by_word_finds_the_urls_of_the_whole_text(text: str) -> None:
    # The fast weight extracts URLs per word (and remembers each word): the same
    # URLs must come out as twitter-text finds in the whole text.
    import unicodedata

    from twitter_text import extract_urls_with_indices

    from bot.channels.twitter.fitting import _span_weight, estimated_weight

    whole = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    weight, pos = 0, 0
    for url in extract_urls_with_indices(whole):
        start, end = url["indices"]
        weight += _span_weight(whole[pos:start]) + 23
        pos = end
    assert estimated_weight(text) == weight + _span_weight(whole[pos:])


@FAST
@given(text=TEXT)
def test_html_never_carries_scripts_handlers_or_bad_urls(text: str) -> None:
    out = RENDERER.html(summary(text))
    assert "<script" not in out.lower()
    checker = _Attributes()
    checker.feed(out)
    checker.close()
    assert checker.problems == []
    assert not _XML_INVALID.search(out)
    assert "&nbsp;" not in out


_TAG = re.compile(r"<(/?[A-Za-z]|!|\?)[^<>]*>")
_MACRO = re.compile(r"\\[A-Za-z]+")
_ENTITY = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[A-Za-z]+\d*);")


@FAST
@given(text=TEXT)
def test_plain_text_has_no_markup_math_or_entities(text: str) -> None:
    out = RENDERER.text(summary(text))
    assert not _XML_INVALID.search(out) and "\r" not in out
    prose = teaser_source(out)  # code blocks are the one place text stays verbatim
    assert not _TAG.search(prose), prose
    assert not _MACRO.search(prose), prose
    assert not re.search(r"\$(?!\d)", prose), prose  # a currency "$5" may stay
    assert not _ENTITY.search(prose), prose
    assert "**" not in prose
    assert not re.search(r"(^|\n)#{1,6}\s", out), out
    assert not re.search(
        r"\]\((?:javascript|data|vbscript):|\\cite|\\href|\\nonumber|<cit\.>|[\u200e\u200f\u061c]", out
    ), out
    assert not re.search(r"(?<![@＠])\u200b", out), ascii(out)
