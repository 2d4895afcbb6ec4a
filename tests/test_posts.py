"""Channel posts, credits, hashtags and templates: X fitting and threads, Facebook, overrides, errors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from twitter_text import parse_tweet

from bot.channels.twitter.fitting import tweet_weight
from bot.errors import ConfigError, RenderError
from bot.records import PaperDetails, Summary
from bot.render import Renderer, hashtags_for, paper_credit, post_warnings
from bot.render.posts import cut_sentences
from bot.settings import Settings, with_overrides

LINK = "https://www.shortscience.org/paper?bibtexKey=journals/corr/1803.08494#decodyng"
LONG = " ".join(f"Sentence number {i} explains one more idea of the paper in plain words." for i in range(60))


def summary(text: str = LONG, *, title: str = "Group Normalization", author: str = "decodyng") -> Summary:
    return Summary(
        guid=LINK,
        title=title,
        author=author,
        text=text,
        link=LINK,
        edited_at=datetime(2024, 1, 1, tzinfo=UTC),
        arxiv_id="1803.08494",
    )


def details(*authors: str, categories: tuple[str, ...] = ("cs.CV", "cs.LG")) -> PaperDetails:
    return PaperDetails("1803.08494", "Group Normalization", tuple(authors), None, categories)


def settings(**render: object) -> Settings:
    return with_overrides(Settings(), "render", **render) if render else Settings()


# ------------------------------------------------------------------ credits and hashtags


def test_paper_credit() -> None:
    assert paper_credit(None) == ""
    assert paper_credit(details()) == ""
    assert paper_credit(details("Yuxin Wu")) == "Wu"
    assert paper_credit(details("Yuxin Wu", "Kaiming He")) == "Wu & He"
    assert paper_credit(details("Chiyuan Zhang", "Samy Bengio", "Moritz Hardt")) == "Zhang et al."


def test_hashtags_mapped_fixed_and_deduplicated() -> None:
    s = settings(fixed_hashtags=("#ShortScience", "#machinelearning"))
    tags = hashtags_for(["cs.CV", "cs.LG", "stat.ML", "math.XX"], s)
    assert tags == ["#ComputerVision", "#MachineLearning", "#ShortScience"]
    assert hashtags_for(["cs.CV"], s.render) == ["#ComputerVision", "#ShortScience", "#machinelearning"]


# ------------------------------------------------------------------ X posts


def test_tweet_layout_and_validity() -> None:
    r = Renderer(settings(fixed_hashtags=("#ShortScience",)))
    post = r.post("twitter", summary(), details("Yuxin Wu", "Kaiming He"))
    assert post.channel == "twitter" and post.link == LINK and post.summary_guid == LINK
    assert post.text.startswith("Group Normalization (Wu & He)\n\nSentence number 0")
    assert post.text.count(LINK) == 1
    assert post.text.endswith("#ComputerVision #MachineLearning #ShortScience")
    assert parse_tweet(post.text).valid
    assert "\r" not in post.text
    assert post.replies == ()


def test_tweet_teaser_shortened_at_word_boundary_with_warning() -> None:
    r = Renderer(settings(tweet_teaser_chars=1000))
    rendered = r.render_post("twitter", summary(), None)
    teaser = rendered.post.text.split("\n\n")[1]
    assert teaser.endswith("…")
    assert teaser[:-1] in LONG and LONG[len(teaser) - 1] == " "  # cut before a space, not inside a word
    assert "teaser shortened to fit 280 weighted characters" in rendered.warnings
    assert post_warnings(rendered.post) == list(rendered.warnings)


def test_hashtags_dropped_from_the_end_after_the_teaser() -> None:
    many = tuple(f"#Tag{i:02d}Longer" for i in range(30))
    rendered = Renderer(settings(fixed_hashtags=many)).render_post("twitter", summary(title="A " * 60), None)
    text = rendered.post.text
    assert parse_tweet(text).valid
    assert "#Tag00Longer" in text and "#Tag29Longer" not in text
    assert "A " * 59 in text  # the title is untouched while hashtags can go
    assert "teaser dropped to fit 280 weighted characters" in rendered.warnings
    assert any(w.startswith("hashtags dropped: ") and w.endswith("#Tag29Longer") for w in rendered.warnings)


def test_huge_title_shortened_last_and_link_kept() -> None:
    rendered = Renderer(settings(fixed_hashtags=("#A",))).render_post("twitter", summary(title="Title " * 200), None)
    text = rendered.post.text
    assert parse_tweet(text).valid
    assert text.startswith("Title Title") and "…" in text.split("\n")[0]
    assert "title shortened to fit 280 weighted characters" in rendered.warnings
    assert text.count(LINK) == 1


def test_cjk_and_emoji_weigh_double() -> None:
    assert tweet_weight("日本語") == 6
    assert tweet_weight("👩‍👩‍👧‍👦🇩🇪") == 4
    assert tweet_weight(LINK) == 23
    r = Renderer(settings())
    post = r.post("twitter", summary("研究" * 400 + " 👩‍👩‍👧‍👦" * 50), None)
    assert parse_tweet(post.text).valid
    assert tweet_weight(post.text) > 250  # it fills the space, it does not give up


def test_mentions_are_defused() -> None:
    post = Renderer(settings()).post("twitter", summary("Thanks @elonmusk and @jack for nothing."), None)
    assert "@elonmusk" not in post.text and "@\u200belonmusk" in post.text


def test_thread_replies_numbered_and_each_valid() -> None:
    s = with_overrides(Settings(), "twitter", thread=True, thread_max_replies=3)
    rendered = Renderer(s).render_post("twitter", summary(), None)
    post = rendered.post
    assert len(post.replies) == 3
    for k, reply in enumerate(post.replies, start=2):
        assert reply.startswith(f"{k}/4 …")
        assert parse_tweet(reply).valid
    assert parse_tweet(post.text).valid
    assert "thread cut after 3 replies" in rendered.warnings
    # The replies carry on where the first post stopped.
    first_teaser = post.text.split("\n\n")[1].rstrip("…")
    assert LONG.startswith(first_teaser)
    assert LONG[len(first_teaser) :].strip().startswith(post.replies[0][len("2/4 …") :].split(" ")[0])


def test_short_summary_makes_no_thread() -> None:
    s = with_overrides(Settings(), "twitter", thread=True)
    post = Renderer(s).post("twitter", summary("Short and sweet."), None)
    assert post.replies == ()
    assert "Short and sweet." in post.text


# ------------------------------------------------------------------ Facebook


def test_facebook_post_cut_at_sentence_with_link_field() -> None:
    s = with_overrides(Settings(), "facebook", teaser_chars=200)
    post = Renderer(s).post("facebook", summary(), details("Yuxin Wu", "Kaiming He"))
    lines = post.text.split("\n")
    assert lines[0] == "Group Normalization"
    assert lines[1] == "by Yuxin Wu and Kaiming He"
    teaser = post.text.split("\n\n")[1]
    assert teaser.endswith("plain words.") and len(teaser) <= 200
    assert post.text.endswith(f"Summary by decodyng: {LINK}")
    assert post.link == LINK


def test_cut_sentences_skips_abbreviations() -> None:
    text = "We follow Wu et al. in this. The rest is long " + "word " * 40
    assert cut_sentences(text, 60) == "We follow Wu et al. in this."


def test_unknown_channel_is_a_render_error() -> None:
    with pytest.raises(RenderError, match="myspace"):
        Renderer(settings()).post("myspace", summary())


# ------------------------------------------------------------------ templates


def test_operator_template_overrides_ours(tmp_path: Path) -> None:
    (tmp_path / "tweet.txt.j2").write_text("New: {{ title }} {{ link }}\n", encoding="utf-8")
    r = Renderer(settings(templates_dir=str(tmp_path)))
    assert r.post("twitter", summary()).text == f"New: Group Normalization {LINK}"
    # Files the operator did not override still come from ours.
    assert r.post("facebook", summary()).text.startswith("Group Normalization\n\n")


def test_template_undefined_variable_names_template_line_variable(tmp_path: Path) -> None:
    (tmp_path / "tweet.txt.j2").write_text("{{ title }}\n{{ link }}\n{{ no_such_thing }}\n", encoding="utf-8")
    r = Renderer(settings(templates_dir=str(tmp_path)))
    with pytest.raises(RenderError) as info:
        r.post("twitter", summary())
    message = str(info.value)
    assert "tweet.txt.j2" in message and "line 3" in message and "no_such_thing" in message


def test_template_syntax_error_names_template_and_line(tmp_path: Path) -> None:
    (tmp_path / "facebook.txt.j2").write_text("{{ title }}\n\n{% if teaser %}\n{{ teaser }\n", encoding="utf-8")
    r = Renderer(settings(templates_dir=str(tmp_path)))
    with pytest.raises(RenderError) as info:
        r.post("facebook", summary())
    message = str(info.value)
    assert "facebook.txt.j2" in message and "line 4" in message


def test_template_whose_fixed_text_is_too_long_is_a_render_error(tmp_path: Path) -> None:
    (tmp_path / "tweet.txt.j2").write_text("x" * 300 + " {{ link }}", encoding="utf-8")
    with pytest.raises(RenderError, match="280"):
        Renderer(settings(templates_dir=str(tmp_path))).post("twitter", summary())


def test_missing_operator_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"render\.templates_dir"):
        Renderer(settings(templates_dir=str(tmp_path / "nope")))


def test_feed_entry_html_escapes_and_links() -> None:
    r = Renderer(settings())
    s = summary("Some *text*.", title="<b>Title</b> & co", author="<i>me</i>")
    out = r.feed_entry_html(s, details("Yuxin Wu", "Kaiming He"))
    assert "<p>Some <em>text</em>.</p>" in out
    assert "&lt;b&gt;Title&lt;/b&gt; &amp; co" in out and "&lt;i&gt;me&lt;/i&gt;" in out
    assert 'href="https://arxiv.org/abs/1803.08494"' in out
    assert f'href="{LINK.replace("&", "&amp;")}"' in out
    assert "by Yuxin Wu and Kaiming He" in out
    assert r.feed_entry_html(s, None, html="<p>cached</p>").count("<p>cached</p>") == 1
