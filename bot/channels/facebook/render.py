"""A Facebook Page post from a summary: title, the paper's authors, a teaser cut at a sentence, the link."""

from __future__ import annotations

from bot.channels.facebook.settings import FacebookSettings
from bot.channels.spec import PostContext, RenderedPost
from bot.records import Post
from bot.render.posts import cut_sentences, cut_words, finish, no_mentions, one_line

NAME = "facebook"
TEMPLATE = "facebook.txt.j2"
#: Facebook rejects longer messages
FACEBOOK_MAX = 63_206


def render(ctx: PostContext) -> RenderedPost:
    """The post's text; the link also goes in the post's link field (Post.link), for the preview card."""
    fb = ctx.settings.channel(NAME)
    assert isinstance(fb, FacebookSettings)
    prose = no_mentions(one_line(ctx.teaser_source))
    teaser = cut_sentences(prose, fb.teaser_chars)
    warnings: list[str] = []
    text = finish(ctx.render(TEMPLATE, teaser=teaser))
    if len(text) > FACEBOOK_MAX:
        text = cut_words(text, FACEBOOK_MAX)
        warnings.append(f"post cut to Facebook's {FACEBOOK_MAX} characters")
    post = Post(
        channel=NAME,
        summary_guid=ctx.summary.guid,
        text=text,
        link=ctx.link,
        image_url=ctx.image_url,
    )
    return RenderedPost(post, tuple(warnings))
