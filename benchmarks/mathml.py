"""TeX → MathML benchmark (issue 17): CPU per formula, latex2mathml's path against today's tex_to_mathml.

Every formula of the bundled sample feed, as the renderer hands it over, is converted by
  old = html.library_mathml(tidy_tex(tex), tex)   (latex2mathml, what tex_to_mathml did before)
  new = html.tex_to_mathml(tex)                   (the fast path, latex2mathml for what it declines)
in alternating rounds in this one process (CPU time, process_time). Nothing is cached between
formulas, so the sample's repeats cost each time. Checks the two outputs are the same.

Prints the median CPU per formula of each, the share of formulas the fast path takes, and
`ratio=<old / new>` (target: >= 3).
Usage: python benchmarks/mathml.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.render.fastmath import fast_mathml  # noqa: E402
from bot.render.html import library_mathml, tex_to_mathml  # noqa: E402
from bot.render.markdown import MAX_SOURCE_CHARS, bound_tags, clean_chars, make_markdown  # noqa: E402
from bot.render.mathtext import tidy_tex  # noqa: E402
from bot.settings import sample_feed_path  # noqa: E402
from bot.sources.parse import parse_feed  # noqa: E402


def sample_formulas() -> list[tuple[str, bool]]:
    path = sample_feed_path()
    md = make_markdown()
    out: list[tuple[str, bool]] = []
    for summary in parse_feed(path.read_bytes(), str(path)).summaries:
        for token in md.parse(bound_tags(clean_chars(summary.text[:MAX_SOURCE_CHARS])), {}):
            for t in (token, *(token.children or ())):
                if t.type.startswith("math"):
                    out.append((t.content.strip(), t.type != "math_inline"))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15, help="rounds over all formulas per path (median shown)")
    args = parser.parse_args()

    formulas = sample_formulas()
    for tex, display in formulas:
        if library_mathml(tidy_tex(tex), tex, display=display) != tex_to_mathml(tex, display=display):
            print(f"outputs differ for {tex!r}", file=sys.stderr)
            return 1
    taken = sum(fast_mathml(tidy_tex(tex), tex, display=display) is not None for tex, display in formulas)

    old_t: list[float] = []
    new_t: list[float] = []
    for _ in range(args.rounds):
        t = time.process_time()
        for tex, display in formulas:
            library_mathml(tidy_tex(tex), tex, display=display)
        old_t.append((time.process_time() - t) / len(formulas))
        t = time.process_time()
        for tex, display in formulas:
            tex_to_mathml(tex, display=display)
        new_t.append((time.process_time() - t) / len(formulas))
    old, new = statistics.median(old_t), statistics.median(new_t)
    print(f"{len(formulas)} sample-feed formulas, fast path takes {taken} ({taken / len(formulas):.0%})")
    print(f"latex2mathml path {old * 1e6:.0f} us/formula, tex_to_mathml now {new * 1e6:.0f} us/formula (CPU)")
    print(f"ratio={old / new:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
