"""The fast TeX → MathML path gives latex2mathml's bytes exactly, and takes most real formulas.

Differential: every formula of the bundled sample feed, of the golden renders' annotations, of
the test files and the shared seed summaries (read as Markdown), and a generated corpus (random
combinations of the constructs the fast path knows and of ones it does not, hostile input
included, a fixed seed) goes through both paths; the fast one may decline (None) but never
differ. The share it takes of the sample feed's formulas is what makes the speed-up real.
"""

from __future__ import annotations

import html
import random
import re
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from latex2mathml.symbols_parser import SYMBOLS
from latex2mathml.tokenizer import tokenize
from latex2mathml.walker import walk

from bot.render import html as render_html
from bot.render import mathtokens
from bot.render.fastmath import fast_mathml
from bot.render.html import library_mathml, tex_to_mathml
from bot.render.markdown import MAX_SOURCE_CHARS, bound_tags, clean_chars, make_markdown
from bot.render.mathtext import tidy_tex
from bot.settings import sample_feed_path
from bot.sources.parse import parse_feed

TESTS = Path(__file__).parent
ROOT = TESTS.parent
#: the shared seed summaries, beside the checkout (CI) or the work tree
SEEDS = [p for p in (ROOT.parent / "shared" / "seeds", ROOT.parents[1] / "shared" / "seeds") if p.is_dir()]
#: least share of the sample feed's formulas the fast path must take (it takes all 65 today)
SAMPLE_SHARE = 0.95

Formula = tuple[str, bool]


def formulas_in(markdown: str) -> list[Formula]:
    """The (TeX, display) of every formula in a summary, as the renderer hands them to tex_to_mathml."""
    out: list[Formula] = []
    for token in make_markdown().parse(bound_tags(clean_chars(markdown[:MAX_SOURCE_CHARS])), {}):
        for t in (token, *(token.children or ())):
            if t.type.startswith("math"):
                out.append((t.content.strip(), t.type != "math_inline"))
    return out


def sample_formulas() -> list[Formula]:
    path = sample_feed_path()
    return [f for s in parse_feed(path.read_bytes(), str(path)).summaries for f in formulas_in(s.text)]


def harvested_formulas() -> list[Formula]:
    """Formulas of the test files, the shared seeds and the golden renders' annotations."""
    found: list[Formula] = []
    for path in sorted(TESTS.glob("*.py")) + [p for d in SEEDS for p in sorted(d.iterdir()) if p.is_file()]:
        found += formulas_in(path.read_text(encoding="utf-8", errors="replace"))
    for path in sorted((TESTS / "golden").glob("*.html")):
        for m in re.finditer(r"<annotation encoding=\"application/x-tex\">(.*?)</annotation>", path.read_text(), re.S):
            tex = html.unescape(m.group(1))
            found += [(tex, False), (tex, True)]
    return found


# Pieces for the generated corpus: what the fast path knows, and some of what it must decline.
_ATOMS = ["x", "y", "K", "2", "10", "3.14", ".5", "0.", r"\alpha", r"\theta", r"\Delta", r"\pi", r"\infty",
          r"\nabla", r"\partial", r"\in", r"\cdot", r"\leq", r"\geq", r"\approx", r"\sim", r"\propto", r"\to",
          r"\rightarrow", r"\Rightarrow", r"\sum", r"\prod", r"\int", r"\log", r"\exp", r"\sin", r"\max", r"\lim",
          r"\min", r"\argmax", r"\gcd", r"\det", r"\Pr", "+", "-", "=", "<", ">", "(", ")", "[", "]", "|", ",", ".",
          "!", "?", "/", "*", ":", ";", r"\{", r"\}", r"\|", "~", r"\,", r"\;", r"\:", r"\!", r"\quad", r"\qquad",
          r"\ ", r"\mathbb{R}", r"\mathbb{E}", r"\mathcal{K}", r"\mathrm{d}", r"\operatorname{KL}",
          r"\operatorname*{arg max}", r"\text{IWAE}", r"\text{a b}", r"\textbf{x < y & z}", r"\text{&#60;}",
          r"\text{5 cm}", r"\emph{e}", r"\ldots", r"\cdots", r"\dots", r"\prime", r"\lfloor", r"\rfloor", r"\S",
          r"\lt", r"\gt", r"\smallint", r"\surd", r"\ast", r"\times", r"\div", r"\pm", "α", "é", "≤", "&", '"', "'",
          "#", "@", r"\\", "%c\n", r"\not=", r"\foo", r"\mathds{1}", r"\over", r"\limits", r"\displaystyle",
          r"\mathbb{RR}", r"\color{red}", r"\hspace{1em}", "2em", r"\verb|x|", r"\,\!", r"\big(", r"\Bigr]",
          r"\biggl\{", r"\big{", r"\textstyle", r"\scriptstyle", r"\large", r"\nolimits", r"\arg", r"\top",
          r"\mid", r"\\[", r"\%", r"\#", r"\_", r"\$", r"\&", "\\\n", r"\begin{cases}", r"\rm",
          r"\mbox{a b}", r"\hbox{if $x$}", r"\hbox{a b}", r"\hbox{}", r"\mbox{}", r"\mbox x", r"\left<",
          r"\right\}", r"\big\langle"]  # fmt: skip
_UNARY = [r"\sqrt", r"\hat", r"\bar", r"\tilde", r"\vec", r"\dot", r"\ddot", r"\overline", r"\underline",
          r"\widehat", r"\widetilde", r"\mathbf", r"\mathcal", r"\mathbb", r"\mathrm", r"\mathit", r"\mathsf",
          r"\mathtt", r"\mathfrak", r"\boldsymbol", r"\bm", r"\overbrace", r"\underbrace", r"\mathring", r"\boxed",
          r"\phantom", r"\cancel"]  # fmt: skip
_TWO = [r"\frac", r"\tfrac", r"\dfrac", r"\binom", r"\dbinom", r"\tbinom", r"\overset", r"\underset",
        r"\stackrel", r"\cfrac", r"\frac12", r"\frac 1"]  # fmt: skip
_FENCES = ["(", ")", "[", "]", "|", ".", r"\{", r"\}", r"\|", r"\langle", r"\rangle", r"\lfloor", r"\rceil", "/", "<"]


def _gen(rng: random.Random, depth: int) -> str:
    if depth <= 0 or rng.random() < 0.3:
        return rng.choice(_ATOMS)
    sub = lambda: _gen(rng, depth - 1)  # noqa: E731
    pick = rng.randrange(16)
    if pick == 0:
        return "{" + sub() + sub() + "}"
    if pick in (1, 2):
        return sub() + rng.choice(["^", "_"]) + rng.choice(["{" + sub() + "}", rng.choice(_ATOMS), "2"])
    if pick == 3:
        return sub() + "_{" + sub() + "}^{" + sub() + "}"
    if pick == 4:
        return sub() + "^" + rng.choice(_ATOMS) + "_" + rng.choice(_ATOMS)
    if pick == 5:
        return sub() + rng.choice(["'", "''", "'''", "''''", "'''''", "''''''", "''^2", "'^2", "_i'", "'_i", "^{a}'"])
    if pick == 6:
        return r"\frac{" + sub() + "}{" + sub() + "}"
    if pick == 7:
        two = rng.choice(_TWO)
        return two + rng.choice(["{" + sub() + "}", rng.choice(_ATOMS)]) + rng.choice(["{" + sub() + "}", "x"])
    if pick == 8:
        return rng.choice(_UNARY) + rng.choice(["{" + sub() + "}", " " + rng.choice(_ATOMS), "{}"])
    if pick == 9:
        return r"\left" + rng.choice(_FENCES) + " " + sub() + r" \right" + rng.choice(_FENCES)
    if pick == 10:
        return r"\sqrt[" + sub() + "]{" + sub() + "}"
    if pick == 11:
        return sub() + " " + sub()
    if pick == 12:
        return rng.choice([r"\sum", r"\prod", r"\int", r"\lim", r"\gcd"]) + "_{" + sub() + "}^" + rng.choice(_ATOMS)
    if pick == 13:
        return sub() + rng.choice(["+", "=", r"\leq", "&", r"\\"]) + sub()
    if pick == 14:
        return rng.choice(["{", "}", "^", "_", r"\left(", r"\right)", r"\text{", "\\", "$", "<b>", "]]>"]) + sub()
    return sub() + sub()


_ENVIRONMENTS = ["align*", "align*", "pmatrix", "bmatrix", "Bmatrix", "vmatrix", "Vmatrix", "matrix", "cases",
                 "array", "aligned", "smallmatrix"]  # fmt: skip


def _table(rng: random.Random) -> str:
    name = rng.choice(_ENVIRONMENTS)
    rows = [" & ".join(_gen(rng, 2) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 4))]
    ending = rng.choice(["", r" \\", r"\\ ", " &"])
    table = rf"\begin{{{name}}}" + " \\\\\n".join(rows) + ending + rf"\end{{{name}}}"
    return rng.choice(["", "x = ", r"\left(", "{"]) + table + rng.choice(["", " x", "^2", r"\right)", "}"])


def generated_formulas(count: int = 3000, seed: int = 1729) -> list[Formula]:
    rng = random.Random(seed)
    out: list[Formula] = []
    for i in range(count):
        tex = _table(rng) if i % 8 == 0 else _gen(rng, rng.randint(1, 5))
        out.append((tex, rng.random() < 0.5))
    return out


def hostile_formulas() -> list[Formula]:
    texts = ["{", "}", "x}", "{x", "x^", "^x", "_x", "x^^y", "x__y", "x^a^b", "x_a_b", "x''", "x'''", "'",
             r"\left(", r"\right)", r"\left( x", r"x \right)", r"\left( x \right", r"\frac{a}", r"\frac",
             r"\sqrt", r"\sqrt{}", r"\text", r"\text{", r"\text{}", r"\hat", r"\mathbf", r"\mathbf{}",
             "{" * 45 + "x" + "}" * 45, "{" * 300 + "x" + "}" * 300, r"\sqrt{" * 60 + "x" + "}" * 60,
             r"\hat" * 500 + "x", "x^{" * 50 + "y" + "}" * 50, "x+" * 1900 + "y", "x" * 3999,
             "<script>alert(1)</script>", "a < b & c > d", '"quoted" \'single\'', "&amp; &#60; &#x3c; &lt;",
             r"\text{&#0; &#x110000; &#xD800; &#128;}", "\x00\x01\x1f", "\u202e x \u200b y", "𝔼 ℝ 😀",
             r"\begin{align*}\end{align*}", r"\begin{align*} x", r"\end{align*}", r"\begin{align*}{rl} x\end{align*}",
             r"\begin{align*}[x] y\end{align*}", r"\begin{align*} \begin{align*} x \end{align*} \end{align*}",
             r"x \begin{align*} a & b \end{align*}", r"{\begin{align*} a \end{align*}}", "x & y", r"x \\ y",
             r"\label{eq:1} x \nonumber", r"x \cite{journals/corr/Foo15}", "% only a comment", "x % comment",
             r"\mathbb{R}^{d_{model}}", r"\operatorname{arg\,max}_x", r"\operatorname", r"\left\langle x \right.",
             r"\sum\limits_{i}^{n}", r"\displaystyle \sum_i", r"\verbatim", r"\endash", " ", ""]  # fmt: skip
    return [(t, d) for t in texts for d in (False, True)]


def _reference(tex: str, display: bool) -> str | None:
    """What tex_to_mathml gave before the fast path: latex2mathml's path for every formula."""
    if len(tex) > render_html.MAX_TEX_CHARS:
        return None
    return library_mathml(tidy_tex(tex), tex, display=display)


def _check(corpus: list[Formula]) -> int:
    """Fast equals latex2mathml wherever the fast path answers; tex_to_mathml equals it everywhere."""
    taken = 0
    for tex, display in corpus:
        expected = _reference(tex, display)
        fast = fast_mathml(tidy_tex(tex), tex, display=display)
        if fast is not None:
            taken += 1
            assert fast == expected, f"fast path differs for {tex!r} (display={display})"
        assert tex_to_mathml(tex, display=display) == expected, tex
    return taken


def test_sample_feed_formulas_are_identical_and_mostly_fast() -> None:
    corpus = sample_formulas()
    assert len(corpus) >= 60
    taken = _check(corpus)
    assert taken >= SAMPLE_SHARE * len(corpus), f"fast path took {taken} of {len(corpus)} sample formulas"


def test_harvested_formulas_are_identical() -> None:
    corpus = harvested_formulas()
    assert len(corpus) >= 100
    assert _check(corpus) >= len(corpus) // 2


def test_generated_formulas_are_identical() -> None:
    corpus = generated_formulas()
    taken = _check(corpus)
    # The generator mixes in what the fast path declines; it must still exercise the path a lot.
    assert taken >= len(corpus) // 4, f"fast path took only {taken} of {len(corpus)} generated formulas"


def test_hostile_formulas_are_identical() -> None:
    _check(hostile_formulas())


@pytest.mark.parametrize(
    ("tex", "display"),
    [
        (r"\sum_{k=1}^K x_k", True),  # limits above and below: only at the top of a display formula
        (r"\sum_{k=1}^K x_k", False),
        (r"{\sum_{k=1}^K} x_k", True),
        (r"\left(\sum_{k=1}^K\right)", True),
        (r"\begin{align*} \sum_{k=1}^K &= \mathbb{E}\left[x\right] \\ &= 1 \\ \end{align*}", True),
        (r"\mathbf{x}'^2_i + \mathcal{KL}(q \| p) + \text{a  b}", False),
        (r"\arg\max_\theta \sqrt[3]{x} + \sqrt[n+1]{y} + \dfrac{a}{b} + \tfrac12", True),
        (r"\binom{n}{k} + \tbinom{n}{k}^2 + \dbinom{n}{k} + \overset{!}{=} + \underbrace{a+b}_{n}", False),
        (r"x \displaystyle \sum_i \left( \textstyle y \right) \large z", True),
        (r"\begin{pmatrix} a & b \\ c & d \end{pmatrix}^T \begin{cases} 1 & x > 0 \\ 0 \end{cases}", True),
        (r"\sum\limits_{i=1}^n \int\nolimits_0^1 \big( x \Big] \biggl\{", False),
    ],
)
def test_known_quirks_are_identical_and_fast(tex: str, display: bool) -> None:
    fast = fast_mathml(tidy_tex(tex), tex, display=display)
    assert fast is not None
    assert fast == _reference(tex, display)


def test_tokens_are_latex2mathmls() -> None:
    for tex, _ in sample_formulas() + generated_formulas(500, seed=7) + hostile_formulas():
        tidy = tidy_tex(tex)
        try:
            mine = mathtokens.tokens(tidy)
        except Exception:  # outside the subset: the fast path declines before parsing
            continue
        assert mine == list(tokenize(tidy)), tex


def test_symbol_decoding_and_references_match_the_library_path() -> None:
    # _symbol() writes chr(code) where the library path decodes "&#x{code};" with html.unescape.
    assert all(chr(int(code, 16)) == html.unescape(f"&#x{code};") for code in SYMBOLS.values())
    assert mathtokens._NUMERIC_REF.pattern == render_html._NUMERIC_REF.pattern


def _walk_calls(corpus: list[Formula]) -> int:
    """How many formulas tex_to_mathml sent through latex2mathml's walker (observed, nothing replaced)."""
    target = walk.__code__
    calls = 0

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call" and frame.f_code is target:
            calls += 1

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        for tex, display in corpus:
            tex_to_mathml(tex, display=display)
    finally:
        sys.setprofile(previous)
    return calls


def test_tex_to_mathml_takes_the_fast_path() -> None:
    corpus = sample_formulas()
    assert _walk_calls(corpus) <= (1 - SAMPLE_SHARE) * len(corpus)
    # ...and the observation works: what the fast path declines does reach the walker.
    assert _walk_calls([(r"\color{red} x", False), (r"\begin{array}{cc} a \end{array}", True)]) == 2
