"""An X post from a summary: the template fitted into 280 weighted characters, and a thread when asked for."""

from __future__ import annotations

from bot.channels.spec import PostContext, RenderedPost
from bot.channels.twitter.fitting import TWEET_MAX, fit_tweet, thread_replies, tweet_valid, tweet_weight
from bot.channels.twitter.settings import TwitterSettings
from bot.errors import RenderError
from bot.records import Post
from bot.render.posts import PostFields, cut_words, no_mentions, one_line

NAME = "twitter"
TEMPLATE = "tweet.txt.j2"


def render(ctx: PostContext) -> RenderedPost:
    """The post: title (credit), teaser, author and link, hashtags; shortened until X accepts it."""
    if not ctx.link:
        raise RenderError(f"summary {ctx.summary.guid!r} has no link to post")
    prose = no_mentions(one_line(ctx.teaser_source.replace(ctx.link, "")))
    teaser = cut_words(prose, ctx.settings.render.tweet_teaser_chars)
    fields = PostFields(
        title=ctx.title,
        credit=ctx.credit,
        teaser=teaser,
        author=ctx.author,
        link=ctx.link,
        hashtags=ctx.hashtags,
    )

    def render_fields(f: PostFields) -> str:
        return ctx.render(TEMPLATE, **f.context())

    text, used, warnings = fit_tweet(render_fields, fields)
    replies: tuple[str, ...] = ()
    tw = ctx.settings.channel(NAME)
    assert isinstance(tw, TwitterSettings)
    if tw.thread:
        # The first post's teaser may come out whole or cut; the replies carry on from there.
        first = used.teaser[:-1] if used.teaser.endswith("…") and used.teaser != prose else used.teaser
        rest = prose[len(first) :] if prose.startswith(first) else ""
        replies, more = thread_replies(rest, tw.thread_max_replies)
        warnings.extend(more)
    post = Post(
        channel=NAME,
        summary_guid=ctx.summary.guid,
        text=text,
        link=ctx.link,
        replies=replies,
        image_url=ctx.image_url,
    )
    return RenderedPost(post, tuple(warnings))


def check_post(post: Post) -> list[str]:
    """A post X would refuse (an operator's template can make one; fitting never does)."""
    return [
        f"post is not a valid X post (weight {tweet_weight(text)}/{TWEET_MAX})"
        for text in (post.text, *post.replies)
        if not tweet_valid(text)
    ]
