"""twitter-text loaded in parts (bot.channels.twitter.twittertext): fitting a post that the upper bound proves fits
loads no emoji table, and the parts behave as the whole package does, in either order."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO

#: what twitter_text's package `__init__` loads and URL extraction does not need
EMOJI = ["twitter_text.regexp.emoji", "twitter_text.extract_emojis", "twitter_text.parse_tweet", "pkg_resources"]

TEXTS = [
    "see https://a.com/x and b.org, (c.co) ok",
    "éa.co alone www.example.com/path?q=1#f",
    "hi 😷 https://example.com 日本語 example.com中国語",
]


def _probe(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.splitlines()
    return out


def test_fitting_a_short_post_loads_no_emoji_table() -> None:
    code = (
        "import sys\n"
        "from bot.channels.twitter.fitting import fit_tweet\n"
        "from bot.render.posts import PostFields\n"
        "fields = PostFields(title='A paper', link='https://www.shortscience.org/paper?bibtexKey=x', teaser='Short.',"
        " author='Ann', credit='', hashtags=('ML',))\n"
        "text, _, _ = fit_tweet(lambda f: f.title + ' ' + f.link + ' ' + f.teaser, fields)\n"
        "print(text)\n"
        f"print([m for m in {EMOJI!r} if m in sys.modules])\n"
        "print('twitter_text' in sys.modules)\n"
    )
    text, loaded, package = _probe(code)
    assert text == "A paper https://www.shortscience.org/paper?bibtexKey=x Short."
    assert loaded == "[]"
    # The bare stand-in for the package was taken out again: a later `import twitter_text` gets the real one.
    assert package == "False"


def test_the_parts_answer_as_the_whole_package_in_either_order() -> None:
    for first in ("urls", "parse"):
        code = (
            "from bot.channels.twitter.twittertext import tweet_parser, url_extractor\n"
            + ("url_extractor()\n" if first == "urls" else "tweet_parser()\n")
            + "import twitter_text\n"
            f"for t in {TEXTS!r}:\n"
            "    assert url_extractor()(t) == twitter_text.extract_urls_with_indices(t), t\n"
            "    assert tweet_parser()(t) == twitter_text.parse_tweet(t), t\n"
            "assert twitter_text.parse_tweet is tweet_parser()\n"
            "print('ok')\n"
        )
        assert _probe(code) == ["ok"]
