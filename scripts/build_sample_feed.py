"""Build bot/data/sample-feed.xml from the seed pages, the way the site's rss-full.xml template writes it.

The seed pages (real ShortScience.org pages saved as text) flattened each summary onto one line. This
script restores the obvious Markdown structure (paragraphs, lists, headings, code and display-math
blocks) by inserting line breaks only: every edit is checked to change whitespace and nothing else.
Then it does what the site's PHP template does: strip every URL out of the text with the site's own
regex, HTML-escape with htmlspecialchars' rules, and write one <item> per summary.

The seeds do not show the summary's author, votes, BibTeX key or edit time: those are chosen below.

Usage: python scripts/build_sample_feed.py SEEDS_DIR [OUTPUT]
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

BASE = "https://www.shortscience.org"
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "bot" / "data" / "sample-feed.xml"

# The site's template: preg_replace('/\b(https?|ftp|file):\/\/[-A-Z0-9+&@#\/%?=~_|$!:,.;]*[A-Z0-9+&@#\/%=~_|$]/i', '',
# $text)
SITE_URL_RE = re.compile(r"\b(?:https?|ftp|file)://[-A-Z0-9+&@#/%?=~_|$!:,.;]*[A-Z0-9+&@#/%=~_|$]", re.IGNORECASE)


def squash(text: str) -> str:
    return " ".join(text.split())


def _tokens(anchor: str) -> str:
    """A regex matching the anchor with any run of whitespace between its words."""
    return r"\s+".join(re.escape(token) for token in anchor.split())


@dataclass(frozen=True)
class Edit:
    """One whitespace-only restoration: a regex that must match exactly once, and its replacement."""

    pattern: str
    replacement: str
    flags: int = 0

    def apply(self, text: str) -> str:
        matches = list(re.finditer(self.pattern, text, self.flags))
        if len(matches) != 1:
            raise SystemExit(f"edit {self.pattern!r} matched {len(matches)} times, expected once")
        m = matches[0]
        return text[: m.start()] + self.replacement + text[m.end() :]


def P(anchor: str) -> Edit:
    """A paragraph starts at the anchor."""
    return Edit(r"\s+(?=" + _tokens(anchor) + ")", "\n\n")


def L(anchor: str, indent: str = "") -> Edit:
    """A new line (list item) starts at the anchor."""
    return Edit(r"\s+(?=" + _tokens(anchor) + ")", "\n" + indent)


def H(heading: str) -> Edit:
    """The heading (or image, or bold run-in title) stands alone between blank lines."""
    return Edit(r"\s*" + _tokens(heading) + r"\s*", "\n\n" + heading + "\n\n")


def B(block: str) -> Edit:
    """A multi-line block (code) flattened onto one line: put its lines back."""
    return Edit(r"\s*" + _tokens(block) + r"\s*", "\n\n" + block + "\n\n")


def DM(prefix: str) -> Edit:
    r"""A display-math block ``$$ ... $$`` starting with prefix goes on its own lines (align rows too)."""

    class _DisplayMath(Edit):
        def apply(self, text: str) -> str:
            pattern = r"\s*\$\$\s+(" + _tokens(prefix) + r".*?)\s*\$\$\s*"
            matches = list(re.finditer(pattern, text, re.DOTALL))
            if len(matches) != 1:
                raise SystemExit(f"display math {prefix!r} matched {len(matches)} times, expected once")
            m = matches[0]
            body = m.group(1)
            body = re.sub(r"(\\begin\{align\*\})\s+", r"\1\n", body)
            body = re.sub(r"\s+(\\end\{align\*\})", r"\n\1", body)
            body = re.sub(r"(\\\\)\s+", r"\1\n", body)
            return text[: m.start()] + "\n\n$$\n" + body + "\n$$\n\n" + text[m.end() :]

    return _DisplayMath("", "")


@dataclass(frozen=True)
class Item:
    """What the feed says about one summary that the seed pages do not: chosen, plausible values."""

    title: str
    bibtex_key: str
    arxiv_id: str | None
    votes: int
    username: str | None  # None: posted anonymously
    display_name: str
    edited: datetime
    edits: tuple[Edit, ...]


def _at(day: int, month: int, hh: int, mm: int, ss: int) -> datetime:
    return datetime(2020, month, day, hh, mm, ss, tzinfo=UTC)


# Newest first, as the site lists them.
ITEMS: tuple[Item, ...] = (
    Item(
        "Group Normalization",
        "journals/corr/1803.08494",
        "1803.08494",
        5,
        "decodyng",
        "",
        _at(10, 11, 16, 5, 31),
        (
            P("On the whole, Batch Norm has been wildly successful"),
            P("One proposed alternative to Batch Norm"),
            P("A useful model I have for thinking"),
            P("Group Norm tries to find a balance point"),
            P("One confusing element of this paper"),
            P("The upshot of the Group Norm paper"),
        ),
    ),
    Item(
        "SUMO: Unbiased Estimation of Log Marginal Probability for Latent Variable Models",
        "conf/iclr/LuoBNZDAC20",
        None,
        7,
        "chinweihuang",
        "Chin-Wei Huang",
        _at(8, 11, 21, 47, 2),
        (
            P("Estimation of log-partition function has"),
            P("More generally, let $U(x)$"),
            DM(r"\log Z = \log \int e^{-U(x)}dx"),
            DM(r"\frac{1}{n}\sum_{i=1}^n"),
            DM(r"U(x_1,x_2)="),
            B(
                "```python\n"
                "def U(x):\n"
                "    x1 = x[:,0]\n"
                "    x2 = x[:,1]\n"
                "    d2 = x2 ** 2\n"
                "    return - np.log(np.exp(-((x1+2) ** 2 + d2)/2)/2 + np.exp(-((x1-2) ** 2 + d2)/8)/4/2)\n"
                "```"
            ),
            B(
                "```python\n"
                "xx = np.linspace(-5,5,200)\n"
                "yy = np.linspace(-5,5,200)\n"
                "X = np.meshgrid(xx,yy)\n"
                "X = np.concatenate([X[0][:,:,None], X[1][:,:,None]], 2).reshape(-1,2)\n"
                "unnormalized_density = np.exp(-U(X)).reshape(200,200)\n"
                "plt.imshow(unnormalized_density)\n"
                "plt.axis('off')\n"
                "```"
            ),
            P("https://i.imgur.com/CZSyIQp.png"),
            P("As a sanity check"),
            B(
                "```python\n"
                "N1, N2 = mvn([-2,0], 1), mvn([2,0], 4)\n"
                "density = (np.exp(N1.logpdf(X))/2 + np.exp(N2.logpdf(X))/2).reshape(200,200)\n"
                "plt.imshow(density)\n"
                "plt.axis('off')\n"
                "print(np.allclose(unnormalized_density / density - 2*np.pi, 0))\n"
                "```"
            ),
            P("https://i.imgur.com/g4inQxB.png"),
            P("Now if we estimate the log-partition"),
            B(
                "```python\n"
                "q = mvn([0,0],5)\n"
                "xs = q.rvs(10000*5)\n"
                "elbo = - U(xs) - q.logpdf(xs)\n"
                "plt.hist(elbo, range(-5,10))\n"
                'print("Estimate: %.4f / Ground true: %.4f" % (elbo.mean(), np.log(2*np.pi)))\n'
                'print("Empirical variance: %.4f" % elbo.var())\n'
                "```"
            ),
            P("`Empirical variance: 0.9921`"),
            P("https://i.imgur.com/vFzutuY.png"),
            P("The lower bound can be tightened"),
            DM(r"\log \int e^{-U(x)} dx \geq"),
            P("Now if we use this new estimator"),
            B(
                "```python\n"
                "k = 5\n"
                "xs = q.rvs(10000*k)\n"
                "elbo = - U(xs) - q.logpdf(xs)\n"
                "iwlb = elbo.reshape(10000,k)\n"
                "iwlb = np.log(np.exp(iwlb).mean(1))\n"
                "plt.hist(iwlb, range(-5,10))\n"
                'print("Estimate: %.4f / Ground true: %.4f" % (iwlb.mean(), np.log(2*np.pi)))\n'
                'print("Empirical variance: %.4f" % iwlb.var())\n'
                "```"
            ),
            P("`Empirical variance: 0.1544`"),
            P("https://i.imgur.com/sCcsQd4.png"),
            P("We see that both the bias"),
            P("Finally, we use the"),
            P(r"Let $\text{IWAE}_K"),
            DM(r"\text{SUMO} = \text{IWAE}_1 +"),
            DM(r"\begin{align*} \mathbb{E}[\text{SUMO}]"),
            DM(r"\begin{align*} \mathbb{E}_{K}"),
            P("> (N.B.) Some care"),
            P("A choice of $P(K)$ proposed"),
            P("Now putting things all together"),
            B(
                "```python\n"
                "count = 0\n"
                "bs = 10\n"
                "iwlb = list()\n"
                "while count <= 1000000:\n"
                "    u = np.random.rand(1)\n"
                "    k = np.ceil(u/(1-u)).astype(int)[0]\n"
                "    xs = q.rvs(bs*(k+1))\n"
                "    elbo = - U(xs) - q.logpdf(xs)\n"
                "    iwlb_ = elbo.reshape(bs, k+1)\n"
                "    iwlb_ = np.log(np.cumsum(np.exp(iwlb_), 1) / np.arange(1,k+2))\n"
                "    iwlb_ = iwlb_[:,0] + ((iwlb_[:,1:k+1] - iwlb_[:,0:k]) * np.arange(1,k+1)).sum(1)\n"
                "    count += bs * (k+1)\n"
                "    iwlb.append(iwlb_)\n"
                "iwlb = np.concatenate(iwlb)\n"
                "plt.hist(iwlb, range(-5,10))\n"
                'print("Estimate: %.4f / Ground true: %.4f" % (iwlb.mean(), np.log(2*np.pi)))\n'
                'print("Empirical variance: %.4f" % iwlb.var())\n'
                "```"
            ),
            P("`Empirical variance: 4.1794`"),
            P("https://i.imgur.com/04kPKo5.png"),
            P("Indeed the empirical average"),
            P("Note that I did not tune"),
            P("(Reposted, see more details"),
        ),
    ),
    Item(
        "Supervised Contrastive Learning",
        "journals/corr/2004.11362",
        "2004.11362",
        4,
        "decodyng",
        "",
        _at(6, 11, 2, 12, 40),
        (
            P("This paper investigates whether"),
            H("https://i.imgur.com/pzKXEkQ.png"),
            P("The authors investigate two versions"),
            H("https://i.imgur.com/X5F1DDV.png"),
            P("Overall, the authors show"),
            P("One interesting extension"),
        ),
    ),
    Item(
        "Identity Mappings in Deep Residual Networks",
        "conf/eccv/HeZRS16",
        "1603.05027",
        12,
        "abhshkdz",
        "Abhishek Das",
        _at(3, 11, 9, 30, 0),
        (
            P("Main contributions:"),
            P("- Identity skip connections"),
            L("- Scaling $(h(x)", "    "),
            L("- Gating ($1-g(x)$", "    "),
            L("- Gating (shortcut-only)", "    "),
            L("- 1x1 convolutional shortcut", "    "),
            L("- Experiments on activations."),
            L("- BN after addition", "    "),
            L("- ReLU before addition", "    "),
            L("- BN + ReLU pre-activation", "    "),
            H("## Strengths"),
            L("- Improved accuracies"),
            H("## Weaknesses / Notes"),
            L("- It seems like the degradation"),
        ),
    ),
    Item(
        "Mask R-CNN",
        "journals/corr/HeGDG17",
        "1703.06870",
        3,
        None,
        "",
        _at(31, 10, 18, 22, 9),
        (
            H("#### Methodology"),
            H("##### Major Changes and intutions"),
            H("**Mask prediction**"),
            H("**RoIAlign**"),
            H("**Backbone architecture**"),
            H("**Training Objective**"),
            H("![](https://i.imgur.com/snUq73Q.png)"),
            H("#### Observation"),
        ),
    ),
    Item(
        "What shapes feature representations? Exploring datasets, architectures, and training",
        "conf/nips/HermannL20",
        None,
        2,
        "decodyng",
        "",
        _at(28, 10, 14, 3, 55),
        (
            P("1. Trifeature:"),
            L("2. Navon:"),
            P("The first thing the authors investigate"),
            P("They find that decodability of color"),
            P("https://i.imgur.com/o45KHOM.png"),
            P("The authors also performed"),
            P("https://i.imgur.com/NFx0h8b.png"),
            P("Similarly, the network will choose"),
            P("The overall message"),
            P("There were a few other experiments"),
        ),
    ),
    Item(
        "Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift",
        "conf/icml/IoffeS15",
        None,
        9,
        "mnobrien",
        "Marie-Noëlle O'Brien",
        _at(26, 10, 11, 41, 17),
        (
            H("#### What is BN?"),
            H("#### What do we gain?"),
            H("#### What follows?"),
            H("#### Like"),
            L("* Makes training faster."),
            L("* Simple to implement."),
            L("* You can be less careful"),
            H("#### Dislike"),
            L("* This could reduce"),
            L("* Results on ensemble"),
        ),
    ),
    Item(
        "Meta-learners' learning dynamics are unlike learners'",
        "journals/corr/Rabinowitz19",
        None,
        3,
        "decodyng",
        "",
        _at(23, 10, 20, 8, 44),
        (
            P("It’s been demonstrated that meta-learned"),
            P("https://i.imgur.com/ceycq46.png"),
            P("In the first test, he looks"),
            P("When normal learners"),
            P("Similar analysis was performed"),
            P("The paper finds intuition"),
            P("A bit of a meta (heh) point"),
            P("(A side note: the paper"),
        ),
    ),
    Item(
        "Understanding deep learning requires rethinking generalization",
        "journals/corr/1611.03530",
        "1611.03530",
        21,
        "martinthoma",
        "Martin Thoma",
        _at(20, 10, 7, 55, 12),
        (
            H("## Key contributions"),
            L("* Deep neural networks fit random images"),
            L("* The authors give a construction"),
            H("## What I learned"),
            L("* We seem to have built"),
            H("## Funny"),
            P("> Note that this is not exactly simple"),
            H("## See also"),
        ),
    ),
    Item(
        "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks",
        "journals/corr/ZhuPIE17",
        "1703.10593",
        6,
        None,
        "",
        _at(16, 10, 13, 14, 26),
        (
            P("_Dataset:_"),
            P("_Code:_"),
            H("## Inner-workings:"),
            P("[![screen shot 2017-06-02 at 10 24 45 am]"),
            P("For the consistency los"),
            P("[![screen shot 2017-06-02 at 10 31 22 am]"),
            H("## Architecture:"),
            P("Training seems to employ"),
            H("## Results:"),
            P("[![screen shot 2017-06-02 at 10 26 29 am]"),
        ),
    ),
    Item(
        "Comparing Rewinding and Fine-tuning in Neural Network Pruning",
        "conf/iclr/RendaFC20",
        None,
        2,
        "decodyng",
        "",
        _at(13, 10, 17, 36, 3),
        (
            P("Given these two facts"),
            P("1. Weight rewinding"),
            L("2. Learning rate rewinding"),
            P("To me, this feels"),
            P("All in all, not a super"),
        ),
    ),
    Item(
        "Not All Unlabeled Data are Equal: Learning to Weight Data in Semi-supervised Learning",
        "conf/nips/RenYS20",
        None,
        2,
        "decodyng",
        "",
        _at(9, 10, 22, 50, 38),
        (
            P("The form of semi-supervised learning"),
            P("The premise of the authors argument"),
            P("To optimize example weights"),
            P("With this model, the authors achieve"),
            P("Overall, I find this paper"),
            P("- They don't seem to have"),
            L("- If the presumed need"),
            L("- Despite using techniques"),
            P("Given that, I think"),
        ),
    ),
    Item(
        "Pixel Recurrent Neural Networks",
        "journals/corr/OordKK16",
        "1601.06759",
        17,
        "hlarochelle",
        "Hugo Larochelle",
        _at(5, 10, 15, 2, 19),
        (
            P("So in this paper, by considering"),
            P("1. They propose Diagonal"),
            L("2. They demonstrate"),
            L("3. They show that"),
            L("4. They propose a multi-scale"),
            P("The experiments show that"),
        ),
    ),
    Item(
        "Deep Residual Learning for Image Recognition",
        "journals/corr/HeZRS15",
        "1512.03385",
        30,
        "martinthoma",
        "Martin Thoma",
        _at(1, 10, 10, 27, 50),
        (
            P("So the idea is to add"),
            P("Advantages:"),
            P("* Learning the identity becomes"),
            L("* Loss in information flow"),
            L("* No vanishing"),
            L("* Identities don't have"),
            H("## Evaluation"),
            P("* ImageNet ILSVRC 2015"),
            L("* CIFAR-10: 6.43%"),
            L("* MS COCO"),
            L("* PASCAL VOC 2007"),
            L("* PASCAL VOC 2012"),
            H("## See also"),
        ),
    ),
)


def read_seeds(seeds_dir: Path) -> dict[str, str]:
    """Title → summary text (one line in the seeds, ending " |"); a summary seen on two pages counts once."""
    found: dict[str, str] = {}
    for path in sorted(seeds_dir.glob("*.txt")):
        lines = path.read_text(encoding="utf-8").splitlines()
        title: str | None = None
        after_bar = False
        for i, line in enumerate(lines):
            if after_bar and line.strip() and not line.startswith("- "):
                title, after_bar = line.strip(), False
            if line.endswith(" |"):
                after_bar = True
            if line == "[link]":
                text = lines[i + 1]
                assert title and text.endswith(" |"), (path, i)
                text = text[: -len(" |")]
                if title in found and found[title] != text:
                    raise SystemExit(f"two different summaries of {title!r}: the table needs an entry per summary")
                found[title] = text
    return found


def restore(item: Item, seed_text: str) -> str:
    text = seed_text
    for edit in item.edits:
        text = edit.apply(text)
    text = text.strip()
    if squash(text) != squash(seed_text):
        raise SystemExit(f"restoring {item.title!r} changed more than whitespace")
    return text


def site_escape(text: str) -> str:
    """PHP 8 htmlspecialchars() with its default flags (ENT_QUOTES | ENT_SUBSTITUTE | ENT_HTML401)."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#039;")
    )


def site_escape_xml1(text: str) -> str:
    """htmlspecialchars(..., ENT_QUOTES | ENT_DISALLOWED | ENT_XML1), used for display names."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&apos;")
    )


def render_item(item: Item, text: str) -> str:
    fragment = item.username or "anon"
    if item.username is None:
        author = "Anonymous"
    elif item.display_name:
        author = site_escape_xml1(item.display_name)
    else:
        author = item.username  # the template writes a bare username unescaped
    url = f"{BASE}/paper?bibtexKey={item.bibtex_key}#{fragment}"
    lines = ["<item>"]
    if item.arxiv_id:
        lines.append(f"<shortscience:arxivid>{item.arxiv_id}</shortscience:arxivid>")
    lines += [
        f"<shortscience:bibtexkey>{item.bibtex_key}</shortscience:bibtexkey>",
        f"<shortscience:votes>{item.votes}</shortscience:votes>",
        f"<title>{site_escape(item.title)}</title>",
        f"<author>{author}</author>",
        f"<description>{site_escape(SITE_URL_RE.sub('', text))}</description>",
        f"<link>{url}</link>",
        f"<guid>{url}</guid>",
        f"<pubDate>{format_datetime(item.edited)}</pubDate>",
        "</item>",
    ]
    return "\n".join(lines)


def build(seeds_dir: Path) -> str:
    seeds = read_seeds(seeds_dir)
    titles = [item.title for item in ITEMS]
    if sorted(seeds) != sorted(titles):
        raise SystemExit(f"seed titles and table differ: {set(seeds) ^ set(titles)}")
    dates = [item.edited for item in ITEMS]
    assert dates == sorted(dates, reverse=True) and len(set(dates)) == len(dates), (
        "pubDates must be distinct, newest first"
    )
    head = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<rss version="2.0" xmlns:shortscience="{BASE}">',
        "<channel>",
        "<title>ShortScience.org Latest Summaries</title>",
        f"<link>{BASE}</link>",
        "<description>ShortScience.org Latest Summaries</description>",
        "<ttl>60</ttl>",
        f"<lastBuildDate>{format_datetime(datetime(2020, 11, 10, 17, 0, 0, tzinfo=UTC))}</lastBuildDate>",
    ]
    items = [render_item(item, restore(item, seeds[item.title])) for item in ITEMS]
    return "\n".join([*head, *items, "</channel>", "</rss>", ""])


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    output = Path(argv[2]) if len(argv) == 3 else DEFAULT_OUTPUT
    output.write_text(build(Path(argv[1])), encoding="utf-8")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
