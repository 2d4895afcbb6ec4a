"""The Mastodon channel: the real Mastodon.py client against a local stand-in (tests/fake_mastodon.py), and fitting."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import FakeClock
from fake_mastodon import (
    FakeMastodon,
    Fault,
    held,
    mastodon_length,
    rate_limited,
    server_error,
    unauthorized,
    unprocessable,
)
from fake_x import png
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.channels.base import Publisher
from bot.channels.images import image_fetcher as bound_image_fetcher
from bot.channels.mastodon.post import (
    StatusLimits,
    fit_status,
    limits_from_instance,
    mastodon_post,
    status_length,
)
from bot.channels.mastodon.publisher import MastodonPublisher, alt_text, idempotency_key
from bot.channels.mastodon.settings import ENV, LIVE_NEEDS, MastodonSettings
from bot.errors import AuthPublishError, PermanentPublishError, RenderError, TransientPublishError
from bot.records import PaperDetails, Post, Summary
from bot.render.posts import PostFields as StatusFields
from bot.render.templates import Templates
from bot.settings import RenderSettings, Settings

TOKEN = "mastodon-access-token-123"
LINK = "https://www.shortscience.org/paper?bibtexKey=journals/corr/1803.08494#decodyng"
TEXT = (
    "Group Normalization (Wu & He)\n\nBatch norm's error grows as batches shrink.\n\nSummary by decodyng: "
    f"{LINK}\n\n#MachineLearning"
)
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeMastodon]:
    with FakeMastodon(token=TOKEN, clock=clock) as server:
        assert isinstance(server, FakeMastodon)
        yield server


def publisher(fake: FakeMastodon, clock: FakeClock, **kw: Any) -> MastodonPublisher:
    kw.setdefault("timeout", 5.0)
    kw.setdefault("language", "en")
    return MastodonPublisher(api_base_url=fake.url, access_token=kw.pop("token", TOKEN), now=clock, **kw)


def post(text: str = TEXT, *, image_url: str | None = None) -> Post:
    return Post(channel="mastodon", summary_guid=LINK, text=text, link=LINK, image_url=image_url)


# ---- posting ----


def test_is_a_live_publisher(fake: FakeMastodon, clock: FakeClock) -> None:
    p = publisher(fake, clock)
    assert isinstance(p, Publisher)
    assert (p.channel, p.live) == ("mastodon", True)


def test_publish_sends_the_exact_request(fake: FakeMastodon, clock: FakeClock) -> None:
    p = publisher(fake, clock, visibility="unlisted", language="en", spoiler_text="Paper summary")
    result = p.publish(post())
    [sent] = fake.requests_to("POST", "/api/v1/statuses")
    assert sent.headers["authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["idempotency-key"] == hashlib.sha256(f"mastodon\0{LINK}\0{TEXT}".encode()).hexdigest()
    form = sent.form()
    assert form["status"] == TEXT
    assert (form["visibility"], form["language"], form["spoiler_text"]) == ("unlisted", "en", "Paper summary")
    assert "media_ids[]" not in form and "media_ids" not in form
    [status] = fake.statuses
    assert result.post_id == status["id"]
    assert result.url == status["url"]


def test_two_publishes_of_one_post_make_one_status(fake: FakeMastodon, clock: FakeClock) -> None:
    p = publisher(fake, clock)
    first = p.publish(post())
    clock.advance(minutes=30)
    second = p.publish(post())
    assert first == second
    assert len(fake.statuses) == 1
    keys = {r.headers["idempotency-key"] for r in fake.requests_to("POST", "/api/v1/statuses")}
    assert keys == {idempotency_key(post())}
    # Another text (an edited summary republished) is another status.
    p.publish(post(TEXT + " #AI"))
    assert len(fake.statuses) == 2


def test_a_retry_after_a_lost_answer_gets_the_original_status(fake: FakeMastodon, clock: FakeClock) -> None:
    fake.fail(Fault(path="/api/v1/statuses", after_effect=True, drop=True))
    p = publisher(fake, clock)
    with pytest.raises(TransientPublishError) as info:
        p.publish(post())
    assert info.value.maybe_sent
    assert len(fake.statuses) == 1
    again = p.publish(post())
    assert again.post_id == fake.statuses[0]["id"]
    assert len(fake.statuses) == 1


def test_the_key_holds_for_the_servers_window_only(fake: FakeMastodon, clock: FakeClock) -> None:
    # Why reconciliation reads back first and resends only within 55 minutes.
    p = publisher(fake, clock)
    p.publish(post())
    clock.advance(minutes=61)
    p.publish(post())
    assert len(fake.statuses) == 2


def test_a_held_answer_leaves_the_status_made_while_the_client_waits(fake: FakeMastodon, clock: FakeClock) -> None:
    fake.fail(held())
    outcome: list[object] = []
    worker = threading.Thread(target=lambda: outcome.append(publisher(fake, clock).publish(post())))
    worker.start()
    for _ in range(500):
        if fake.held:
            break
        time.sleep(0.01)
    assert fake.held == 1 and len(fake.statuses) == 1 and outcome == []
    fake.release()
    worker.join(10)
    assert outcome and getattr(outcome[0], "post_id", None) == fake.statuses[0]["id"]


def test_the_stand_in_refuses_a_status_over_the_limit_as_mastodon_does(fake: FakeMastodon, clock: FakeClock) -> None:
    text = "x" * 480 + " " + LINK  # 480 + 1 + 23 as Mastodon counts: 504
    with pytest.raises(PermanentPublishError, match="Text character limit of 500 exceeded"):
        publisher(fake, clock).publish(post(text))
    publisher(fake, clock).publish(post("x" * 476 + " " + LINK))
    assert len(fake.statuses) == 1


def test_the_stand_in_runs_as_a_process() -> None:
    script = Path(__file__).with_name("fake_mastodon.py")
    proc = subprocess.Popen(
        [sys.executable, str(script), "--port", "0", "--token", TOKEN], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        base = f"http://127.0.0.1:{port}"
        p = MastodonPublisher(api_base_url=base, access_token=TOKEN, timeout=5.0)
        published = p.publish(post())
        posts = httpx.get(f"{base}/_fake/posts", timeout=5.0).json()
        assert [s["id"] for s in posts] == [published.post_id]
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


# ---- errors ----


def test_rate_limit_waits_until_the_servers_reset_time(fake: FakeMastodon, clock: FakeClock) -> None:
    reset = datetime(2026, 11, 2, 9, 5, 30, tzinfo=UTC)
    fake.fail(rate_limited(reset))
    with pytest.raises(TransientPublishError) as info:
        publisher(fake, clock).publish(post())
    assert info.value.status == 429
    assert info.value.retry_at == reset
    assert fake.statuses == []


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_transient(fake: FakeMastodon, clock: FakeClock, status: int) -> None:
    fake.fail(server_error(status))
    with pytest.raises(TransientPublishError) as info:
        publisher(fake, clock).publish(post())
    assert info.value.status == status
    assert not info.value.maybe_sent


def test_a_timeout_may_have_sent_the_post(fake: FakeMastodon, clock: FakeClock) -> None:
    fake.fail(Fault(path="/api/v1/statuses", after_effect=True, delay=2.0, status=200, body={}))
    with pytest.raises(TransientPublishError) as info:
        publisher(fake, clock, timeout=0.3).publish(post())
    assert info.value.maybe_sent
    assert "timed out" in str(info.value)


def test_a_refused_connection_never_sent_anything(clock: FakeClock) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = MastodonPublisher(api_base_url=f"http://127.0.0.1:{port}", access_token=TOKEN, timeout=2.0, now=clock)
    with pytest.raises(TransientPublishError) as info:
        p.publish(post())
    assert not info.value.maybe_sent
    assert "nothing was sent" in str(info.value)


def test_a_rejected_token_pauses_the_channel(fake: FakeMastodon, clock: FakeClock) -> None:
    with pytest.raises(AuthPublishError) as info:
        publisher(fake, clock, token="wrong-token-456").publish(post())
    assert info.value.status == 401
    assert "MASTODON_ACCESS_TOKEN" in str(info.value)
    fake.fail(unauthorized())
    with pytest.raises(AuthPublishError):
        publisher(fake, clock).publish(post())


def test_forbidden_pauses_the_channel(fake: FakeMastodon, clock: FakeClock) -> None:
    fake.fail(Fault(status=403, body={"error": "This action is not allowed"}, path="/api/v1/statuses"))
    with pytest.raises(AuthPublishError) as info:
        publisher(fake, clock).publish(post())
    assert info.value.status == 403


def test_unprocessable_fails_with_the_servers_message(fake: FakeMastodon, clock: FakeClock) -> None:
    fake.fail(unprocessable("Validation failed: Text character limit of 500 exceeded"))
    with pytest.raises(PermanentPublishError) as info:
        publisher(fake, clock).publish(post())
    assert info.value.status == 422
    assert "Text character limit of 500 exceeded" in str(info.value)


def test_the_token_never_appears_in_errors(fake: FakeMastodon, clock: FakeClock) -> None:
    fake.fail(Fault(status=422, body={"error": f"bad token {TOKEN}"}, path="/api/v1/statuses"))
    with pytest.raises(PermanentPublishError) as info:
        publisher(fake, clock).publish(post())
    assert TOKEN not in str(info.value)


# ---- reconciliation ----


def test_reconcile_finds_the_status_by_its_link(fake: FakeMastodon, clock: FakeClock) -> None:
    since = clock.now
    clock.advance(minutes=1)
    mine = fake.add_status(TEXT)
    # Newer statuses push it to the second page.
    for n in range(45):
        clock.advance(seconds=10)
        fake.add_status(f"another post {n}")
    clock.advance(hours=3)
    found = publisher(fake, clock).reconcile(post(), since=since)
    assert found is not None and found.post_id == mine["id"]
    assert fake.requests_to("POST", "/api/v1/statuses") == []
    pages = fake.requests_to("GET", f"/api/v1/accounts/{fake.account['id']}/statuses")
    assert [r.query.get("max_id") for r in pages] == [None, [mine_page_end(fake, 40)]]


def test_reconcile_without_the_status_and_past_the_keys_window_waits_for_the_operator(
    fake: FakeMastodon, clock: FakeClock
) -> None:
    since = clock.now
    fake.add_status("something else")
    clock.advance(hours=2)
    assert publisher(fake, clock).reconcile(post(), since=since) is None
    assert fake.requests_to("POST", "/api/v1/statuses") == []


def test_reconcile_within_the_keys_window_sends_under_the_same_key(fake: FakeMastodon, clock: FakeClock) -> None:
    since = clock.now
    p = publisher(fake, clock)
    clock.advance(minutes=10)
    first = p.reconcile(post(), since=since)
    assert first is not None and len(fake.statuses) == 1
    [sent] = fake.requests_to("POST", "/api/v1/statuses")
    assert sent.headers["idempotency-key"] == idempotency_key(post())


def test_reconcile_after_a_held_answer_finds_the_status_and_posts_nothing(fake: FakeMastodon, clock: FakeClock) -> None:
    since = clock.now
    fake.fail(Fault(path="/api/v1/statuses", after_effect=True, drop=True))
    with pytest.raises(TransientPublishError):
        publisher(fake, clock).publish(post())
    clock.advance(minutes=5)
    found = publisher(fake, clock).reconcile(post(), since=since)
    assert found is not None and found.post_id == fake.statuses[0]["id"]
    assert len(fake.requests_to("POST", "/api/v1/statuses")) == 1


def test_reconcile_ignores_an_earlier_status_of_the_same_summary(fake: FakeMastodon, clock: FakeClock) -> None:
    # The summary was posted before; an edit republished it, and that delivery crashed.
    earlier = fake.add_status(TEXT.replace("grows", "grew"))
    clock.advance(days=2)
    since = clock.now
    clock.advance(hours=2)
    assert publisher(fake, clock).reconcile(post(), since=since) is None
    clock.advance(hours=-1, minutes=-50)
    resent = publisher(fake, clock).reconcile(post(), since=since)
    assert resent is not None and resent.post_id != earlier["id"]
    assert len(fake.statuses) == 2


def test_reconcile_that_cannot_read_back_to_since_proves_nothing(fake: FakeMastodon, clock: FakeClock) -> None:
    since = clock.now
    for n in range(25 * 40 + 5):
        fake.add_status(f"post {n}")
    assert publisher(fake, clock).reconcile(post(), since=since) is None
    assert fake.requests_to("POST", "/api/v1/statuses") == []


def mine_page_end(fake: FakeMastodon, size: int) -> str:
    """The id of the last status of the first page (newest first): where the second page starts."""
    return sorted((s["id"] for s in fake.statuses), key=int, reverse=True)[size - 1]


# ---- check ----


def test_check_names_the_account(fake: FakeMastodon, clock: FakeClock) -> None:
    assert publisher(fake, clock).check() == "ok: @shortscience"
    [call] = fake.requests_to("GET", "/api/v1/accounts/verify_credentials")
    assert call.headers["authorization"] == f"Bearer {TOKEN}"


def test_check_with_a_bad_token_is_an_auth_error(fake: FakeMastodon, clock: FakeClock) -> None:
    with pytest.raises(AuthPublishError):
        publisher(fake, clock, token="not-the-token").check()


# ---- images ----


def image_fetcher(fake: FakeMastodon) -> Any:
    return bound_image_fetcher(Settings(render=RenderSettings(image_hosts=("127.0.0.1",), image_timeout_seconds=5.0)))


def test_built_from_settings(fake: FakeMastodon, clock: FakeClock) -> None:
    channel = MastodonSettings(visibility="unlisted", language="de", spoiler_text="CW", images=True)
    settings = Settings(render=RenderSettings(image_hosts=("127.0.0.1",)))
    p = MastodonPublisher.from_settings(channel, settings, api_base_url=fake.url, access_token=TOKEN, now=clock)
    fake.files["/img/figure.png"] = (200, "image/png", png())
    p.publish(post(image_url=f"{fake.url}/img/figure.png"))
    form = fake.requests_to("POST", "/api/v1/statuses")[0].form()
    assert (form["visibility"], form["language"], form["spoiler_text"]) == ("unlisted", "de", "CW")
    assert len(fake.media) == 1


def test_an_image_is_uploaded_with_alt_text_and_attached(fake: FakeMastodon, clock: FakeClock) -> None:
    image = png(2, 2)
    fake.files["/img/figure.png"] = (200, "image/png", image)
    the_post = post(image_url=f"{fake.url}/img/figure.png")
    publisher(fake, clock, fetch_image=image_fetcher(fake)).publish(the_post)
    [upload] = fake.requests_to("POST", "/api/v2/media")
    parts = upload.parts()
    assert parts["file"] == image
    assert (
        parts["description"].decode()
        == alt_text(the_post)
        == "Figure from the summary of: Group Normalization (Wu & He)"
    )
    [media] = fake.media
    [sent] = fake.requests_to("POST", "/api/v1/statuses")
    assert sent.form()["media_ids[]"] == media["id"]
    assert fake.statuses[0]["media_attachments"][0]["id"] == media["id"]


def test_an_image_still_processing_is_waited_for(fake: FakeMastodon, clock: FakeClock) -> None:
    fake.process_polls = 2
    fake.files["/img/figure.png"] = (200, "image/png", png())
    naps: list[float] = []
    p = publisher(fake, clock, fetch_image=image_fetcher(fake), sleep=naps.append)
    p.publish(post(image_url=f"{fake.url}/img/figure.png"))
    assert len(fake.requests_to("GET", f"/api/v1/media/{fake.media[0]['id']}")) == 2
    assert fake.statuses[0]["media_attachments"][0]["url"]


def test_a_refused_image_leaves_a_post_without_it(fake: FakeMastodon, clock: FakeClock) -> None:
    fake.files["/img/page.png"] = (200, "image/png", b"<html>not an image</html>")
    publisher(fake, clock, fetch_image=image_fetcher(fake)).publish(post(image_url=f"{fake.url}/img/page.png"))
    assert fake.media == []
    assert fake.statuses[0]["media_attachments"] == []


# ---- the instance's limit ----


def test_the_instance_limit_is_read_once(fake: FakeMastodon, clock: FakeClock) -> None:
    fake.max_characters = 1000
    p = publisher(fake, clock)
    assert p.limits() == StatusLimits(max_characters=1000, characters_reserved_per_url=23)
    assert p.limits().max_characters == 1000
    assert len([r for r in fake.requests if r.path.rstrip("/") == "/api/v2/instance"]) == 1


def test_an_instance_that_does_not_say_gets_500(fake: FakeMastodon, clock: FakeClock) -> None:
    fake.max_characters = None
    assert publisher(fake, clock).limits() == StatusLimits(500, 23)
    assert limits_from_instance({"configuration": {"statuses": {"max_characters": "many"}}}) == StatusLimits(500, 23)


def test_a_failed_limit_read_is_not_cached(fake: FakeMastodon, clock: FakeClock) -> None:
    fake.max_characters = 700
    fake.fail(server_error(503, path="/api/v2/instance", method="GET"))
    p = publisher(fake, clock)
    assert p.limits().max_characters == 500
    assert p.limits().max_characters == 700


# ---- counting and fitting ----


def test_counting_as_mastodon_counts() -> None:
    assert status_length(f"Read {LINK}") == 5 + 23
    assert status_length("see http://a.co") == 4 + 23  # a short URL counts 23 too
    assert status_length("abc", spoiler_text="CW: maths") == 3 + 9
    assert status_length("  padded \n") == 6
    # Where the extent of URLs is unsure, never less than Mastodon's count.
    for text in ("x http://a.co,http://b.co", "(https://example.com/a).", "gemini://x.org/ ipfs://abc"):
        assert status_length(text) >= mastodon_length(text)


def summary(*, title: str = "Group Normalization", text: str = "Batch norm's error grows. " * 10) -> Summary:
    return Summary(
        guid=LINK, title=title, author="decodyng", text=text, link=LINK, edited_at=START, arxiv_id="1803.08494"
    )


DETAILS = PaperDetails(
    arxiv_id="1803.08494",
    title="Group Normalization",
    authors=("Yuxin Wu", "Kaiming He"),
    published=None,
    categories=("cs.CV", "cs.LG", "cs.AI"),
)


def test_a_post_has_title_teaser_credit_link_and_hashtags() -> None:
    plain = "Batch norm's error grows as batches shrink. Group norm does not."
    rendered = mastodon_post(
        Templates(), summary(), DETAILS, plain, settings=MastodonSettings(), render=RenderSettings()
    )
    assert rendered.post.channel == "mastodon"
    assert rendered.post.text == (
        "Group Normalization (Wu & He)\n\n"
        f"{plain}\n\n"
        f"Summary by decodyng: {LINK}\n\n"
        "#ComputerVision #MachineLearning #AI"
    )
    assert rendered.post.link == LINK
    assert rendered.warnings == ()


def test_fitting_drops_hashtags_first_then_cuts_the_teaser_between_words() -> None:
    plain = "word " * 200
    tight = StatusLimits(max_characters=160)
    rendered = mastodon_post(
        Templates(), summary(), DETAILS, plain, settings=MastodonSettings(), render=RenderSettings(), limits=tight
    )
    text = rendered.post.text
    assert not {"#ComputerVision", "#MachineLearning", "#AI"} & set(text.split())
    assert rendered.warnings[0] == "hashtags dropped: #ComputerVision #MachineLearning #AI"
    assert "teaser shortened to fit 160 characters" in rendered.warnings
    assert status_length(text) <= 160
    assert LINK in text.split()
    teaser = text.split("\n\n")[1]
    assert teaser.endswith("word…")


def test_a_long_word_is_dropped_whole_rather_than_cut() -> None:
    plain = "Intro " + "x" * 300 + " outro"
    tight = StatusLimits(max_characters=250)
    rendered = mastodon_post(
        Templates(), summary(), None, plain, settings=MastodonSettings(), render=RenderSettings(), limits=tight
    )
    assert rendered.post.text.split("\n\n")[1] == "Intro…"
    # Also where the teaser is first cut to teaser_chars (300).
    roomy = mastodon_post(Templates(), summary(), None, plain, settings=MastodonSettings(), render=RenderSettings())
    assert roomy.post.text.split("\n\n")[1] == "Intro…"


def test_the_content_warning_counts_towards_the_limit() -> None:
    plain = "word " * 200
    with_cw = MastodonSettings(spoiler_text="Long content warning " * 3)
    tight = StatusLimits(max_characters=200)
    rendered = mastodon_post(
        Templates(), summary(), None, plain, settings=with_cw, render=RenderSettings(), limits=tight
    )
    assert status_length(rendered.post.text) > 200 - len(with_cw.spoiler_text) - 10
    assert status_length(rendered.post.text, spoiler_text=with_cw.spoiler_text) <= 200
    assert mastodon_length(rendered.post.text, with_cw.spoiler_text) <= 200


def test_a_post_that_cannot_fit_is_a_render_error() -> None:
    fields = StatusFields(title="T", credit="", teaser="", author="a", link=LINK, hashtags=())
    with pytest.raises(RenderError, match="cannot fit 20 characters"):
        fit_status(
            lambda f: f"A fixed text far longer than twenty characters {f.link}", fields, limits=StatusLimits(20)
        )


def test_the_channel_declares_its_variables() -> None:
    assert [(v.name, v.secret) for v in ENV] == [("MASTODON_API_BASE_URL", False), ("MASTODON_ACCESS_TOKEN", True)]
    assert LIVE_NEEDS == ("MASTODON_API_BASE_URL", "MASTODON_ACCESS_TOKEN")
    assert MastodonSettings().price_per_post == 0
    assert MastodonSettings().visibility == "public"


# Emoji ZWJ sequences, combining marks, CJK, right-to-left scripts, URL look-alikes and mentions.
PIECES = st.sampled_from(
    [
        "👩\u200d👩\u200d👧\u200d👦",
        "🏳️\u200d🌈",
        "👍🏽",
        "🇩🇪",
        "e\u0301\u0301",
        "Z\u0335\u0321\u0327",
        "漢字",
        "日本語の文章",
        "مرحبا",
        "שלום",
        "\u202eevil\u202c",
        "http://a.co",
        "https://x.org/a,http://y.org",
        "gemini://z.org",
        "@someone@mastodon.social",
        "word",
        " ",
        "\n",
        ".",
        "…",
        "#tag",
    ]
)
TEXTS = st.lists(st.one_of(PIECES, st.text(max_size=30)), max_size=60).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    title=TEXTS,
    teaser=TEXTS,
    spoiler=st.sampled_from(["", "CW", "Spoiler: 🧪 maths " * 4]),
    limit=st.sampled_from([500, 300, 200]),
)
def test_every_fitted_post_fits_as_mastodon_counts(title: str, teaser: str, spoiler: str, limit: int) -> None:
    s = summary(title=title or "Untitled")
    try:
        rendered = mastodon_post(
            Templates(),
            s,
            DETAILS,
            teaser,
            settings=MastodonSettings(spoiler_text=spoiler),
            render=RenderSettings(),
            limits=StatusLimits(max_characters=limit),
        )
    except RenderError:
        # Only when the fixed text, the link and the warning alone do not fit.
        assert status_length(f"Summary by decodyng: {LINK}", spoiler_text=spoiler) > limit - 10
        return
    text = rendered.post.text
    assert mastodon_length(text, spoiler) <= status_length(text, spoiler_text=spoiler) <= limit
    assert LINK in text.split()
