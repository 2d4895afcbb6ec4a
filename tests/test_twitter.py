"""The X publisher: real tweepy against the local X stand-in (tests/fake_x.py)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import tweepy
from fake_x import (
    DUPLICATE_DETAIL,
    FakeX,
    Fault,
    bad_request,
    duplicate,
    png,
    posted_then_dropped,
    rate_limited,
    read_only_app,
    server_error,
    unauthorized,
)

from bot.channels.base import Publisher
from bot.channels.twitter.publisher import UNKNOWN_POST_ID, TwitterPublisher
from bot.channels.twitter.settings import TwitterSettings
from bot.errors import AuthPublishError, PermanentPublishError, PublishError, TransientPublishError
from bot.records import Post, Published
from bot.settings import Env, RenderSettings, Settings

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
KEY, KEY_SECRET, TOKEN, TOKEN_SECRET = (
    "ck-SECRETMARKER-1",
    "cs-SECRETMARKER-2",
    "at-SECRETMARKER-3",
    "as-SECRETMARKER-4",
)
LINK = "https://www.shortscience.org/paper?bibtexKey=journals/corr/1803.08494#joecohen"
TEXT = f"Group Normalization: BN's error grows as batches shrink; GN does not. {LINK} #ComputerVision"


@pytest.fixture
def fake() -> Iterator[FakeX]:
    with FakeX(consumer_key=KEY, access_token=TOKEN) as server:
        assert isinstance(server, FakeX)
        yield server


def settings_for(base_url: str, *, token: str = TOKEN, **twitter: Any) -> Settings:
    env = Env(
        twitter_api_key=KEY,
        twitter_api_secret=KEY_SECRET,
        twitter_access_token=token,
        twitter_access_token_secret=TOKEN_SECRET,
        twitter_api_base_url=base_url,
    )
    twitter.setdefault("timeout_seconds", 5.0)
    return Settings(
        env=env,
        twitter=TwitterSettings(**twitter),
        render=RenderSettings(image_hosts=("127.0.0.1",), image_timeout_seconds=5.0),
    )


def publisher(fake: FakeX, **twitter: Any) -> TwitterPublisher:
    return TwitterPublisher(settings_for(fake.url, **twitter), now=lambda: NOW)


def post(text: str = TEXT, *, replies: tuple[str, ...] = (), image_url: str | None = None) -> Post:
    return Post(channel="twitter", summary_guid=LINK, text=text, link=LINK, replies=replies, image_url=image_url)


# ---- posting ----


def test_is_a_live_publisher(fake: FakeX) -> None:
    p = publisher(fake)
    assert isinstance(p, Publisher)
    assert (p.channel, p.live) == ("twitter", True)


def test_publish_sends_signed_json_to_the_configured_host(fake: FakeX) -> None:
    published = publisher(fake).publish(post())

    assert [p["text"] for p in fake.posts] == [TEXT]
    assert published == Published(post_id=fake.posts[0]["id"], url=f"https://x.com/i/web/status/{fake.posts[0]['id']}")
    [request] = fake.requests_to("POST", "/2/tweets")
    assert request.json() == {"text": TEXT}
    assert request.headers["content-type"] == "application/json"
    auth = request.headers["authorization"]
    assert auth.startswith("OAuth ")
    assert "oauth_signature=" in auth
    assert f'oauth_consumer_key="{KEY}"' in auth
    assert f'oauth_token="{TOKEN}"' in auth
    assert 'oauth_signature_method="HMAC-SHA1"' in auth


def test_the_tweepy_host_is_rewritten_only_on_our_session(fake: FakeX) -> None:
    publisher(fake).publish(post())
    # A client of our own, made afterwards, still points at X itself: nothing was patched.
    other = tweepy.Client(consumer_key="a", consumer_secret="b", access_token="c", access_token_secret="d")
    assert other.session.get_adapter("https://api.twitter.com/2/tweets").__class__.__name__ == "HTTPAdapter"


def test_a_thread_is_a_reply_chain(fake: FakeX) -> None:
    published = publisher(fake).publish(
        post(replies=("2/3 GN divides channels into groups.", "3/3 It matches BN at batch 32."))
    )

    first, second, third = fake.posts
    assert published.post_id == first["id"]
    assert published.reply_ids == (second["id"], third["id"])
    bodies = [r.json() for r in fake.requests_to("POST", "/2/tweets")]
    assert bodies[0] == {"text": TEXT}
    assert bodies[1] == {"text": "2/3 GN divides channels into groups.", "reply": {"in_reply_to_tweet_id": first["id"]}}
    assert bodies[2] == {"text": "3/3 It matches BN at batch 32.", "reply": {"in_reply_to_tweet_id": second["id"]}}


def test_a_failed_reply_never_undoes_the_first_post(fake: FakeX, caplog: pytest.LogCaptureFixture) -> None:
    fake.fail(dataclasses.replace(server_error(503), skip=1))
    published = publisher(fake).publish(post(replies=("2/3 first reply", "3/3 second reply")))

    assert [p["text"] for p in fake.posts] == [TEXT]
    assert published == Published(post_id=fake.posts[0]["id"], url=published.url, reply_ids=())
    assert "stopped at reply 1 of 2" in caplog.text


# ---- errors ----


def test_429_is_transient_with_the_reset_time(fake: FakeX) -> None:
    fake.fail(rate_limited(reset=2_000_000_000))
    with pytest.raises(TransientPublishError) as caught:
        publisher(fake).publish(post())
    assert caught.value.status == 429
    assert caught.value.retry_at == datetime.fromtimestamp(2_000_000_000, UTC)
    assert fake.posts == []


def test_403_duplicate_is_permanent_and_marked_duplicate(fake: FakeX) -> None:
    fake.fail(duplicate())
    with pytest.raises(PermanentPublishError) as caught:
        publisher(fake).publish(post())
    assert (caught.value.status, caught.value.duplicate) == (403, True)
    assert DUPLICATE_DETAIL in str(caught.value)


def test_identical_text_twice_is_refused_as_duplicate(fake: FakeX) -> None:
    p = publisher(fake)
    p.publish(post())
    with pytest.raises(PermanentPublishError) as caught:
        p.publish(post())
    assert caught.value.duplicate
    assert len(fake.posts) == 1


def test_401_pauses_the_channel_with_what_to_renew(fake: FakeX) -> None:
    fake.fail(unauthorized())
    with pytest.raises(AuthPublishError) as caught:
        publisher(fake).publish(post())
    assert caught.value.status == 401
    assert "TWITTER_ACCESS_TOKEN" in str(caught.value)


def test_wrong_credentials_are_refused_with_401(fake: FakeX) -> None:
    p = TwitterPublisher(settings_for(fake.url, token="at-someone-else"), now=lambda: NOW)
    with pytest.raises(AuthPublishError) as caught:
        p.publish(post())
    assert caught.value.status == 401
    assert fake.posts == []


def test_403_for_a_read_only_app_is_auth(fake: FakeX) -> None:
    fake.fail(read_only_app())
    with pytest.raises(AuthPublishError) as caught:
        publisher(fake).publish(post())
    assert caught.value.status == 403
    assert "Read and Write" in str(caught.value)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_transient(fake: FakeX, status: int) -> None:
    fake.fail(server_error(status))
    with pytest.raises(TransientPublishError) as caught:
        publisher(fake).publish(post())
    assert caught.value.status == status
    assert caught.value.retry_at is None


def test_503_with_retry_after_gives_the_retry_time(fake: FakeX) -> None:
    fake.fail(server_error(503, headers={"Retry-After": "120"}))
    with pytest.raises(TransientPublishError) as caught:
        publisher(fake).publish(post())
    assert caught.value.retry_at == NOW + timedelta(seconds=120)


def test_400_is_permanent(fake: FakeX) -> None:
    fake.fail(bad_request())
    with pytest.raises(PermanentPublishError) as caught:
        publisher(fake).publish(post())
    assert (caught.value.status, caught.value.duplicate) == (400, False)


def test_connection_refused_is_transient(fake: FakeX) -> None:
    url = fake.url
    fake.stop()
    with pytest.raises(TransientPublishError) as caught:
        TwitterPublisher(settings_for(url), now=lambda: NOW).publish(post())
    assert caught.value.status is None
    assert "unreachable" in str(caught.value)
    # Nothing left this machine: retried as a fresh post, no reconciliation needed.
    assert caught.value.maybe_sent is False and "nothing was sent" in str(caught.value)


def test_a_slow_answer_times_out_as_transient(fake: FakeX) -> None:
    fake.fail(Fault(status=201, body={"data": {"id": "1", "text": TEXT}}, delay=1.0))
    with pytest.raises(TransientPublishError) as caught:
        publisher(fake, timeout_seconds=0.2).publish(post())
    assert "timed out" in str(caught.value)
    assert caught.value.maybe_sent is True  # the request was out: the next attempt reconciles


def test_errors_are_translated_at_the_edge(fake: FakeX) -> None:
    for fault in (rate_limited(1), duplicate(), unauthorized(), server_error(503), bad_request()):
        fake.fail(fault)
        with pytest.raises(PublishError) as caught:
            publisher(fake).publish(post(f"{TEXT} {fault.status}"))
        assert not isinstance(caught.value, tweepy.TweepyException)
        # The foreign exception is neither the cause nor shown as context.
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
        assert caught.value.status == fault.status


# ---- reconciliation ----


def test_reconcile_finds_the_post_on_the_timeline_by_its_link_and_sends_nothing(fake: FakeX) -> None:
    fake.fail(posted_then_dropped())
    p = publisher(fake)
    queued = datetime.now(UTC) - timedelta(minutes=1)
    with pytest.raises(TransientPublishError):
        p.publish(post())
    other = publisher(fake).publish(post("Another summary, posted later https://example.org/x"))

    proof = p.reconcile(post(), since=queued)

    assert proof == Published(post_id=fake.posts[0]["id"], url=f"https://x.com/i/web/status/{fake.posts[0]['id']}")
    assert proof.post_id != other.post_id
    # The proof is the read-back: the text is never sent a second time.
    assert len(fake.requests_to("POST", "/2/tweets")) == 2 and len(fake.posts) == 2
    [timeline] = fake.requests_to("GET", "/2/users/1/tweets")
    assert timeline.query["max_results"] == ["100"]
    assert timeline.query["start_time"] == [(queued - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")]
    assert "entities" in timeline.query["tweet.fields"][0].split(",")


def test_reconcile_sends_a_post_the_timeline_shows_absent(fake: FakeX) -> None:
    fake.fail(Fault(status=503, drop=True))  # dropped before X did anything
    p = publisher(fake)
    queued = datetime.now(UTC) - timedelta(minutes=1)
    with pytest.raises(TransientPublishError):
        p.publish(post())
    publisher(fake).publish(post("Another summary https://example.org/x"))

    proof = p.reconcile(post(), since=queued)

    assert proof is not None
    assert [x["text"] for x in fake.posts] == ["Another summary https://example.org/x", TEXT]
    assert proof.post_id == fake.posts[1]["id"]


def test_reconcile_without_proof_either_way_sends_nothing_and_waits_for_the_operator(fake: FakeX) -> None:
    fake.fail(Fault(status=503, drop=True))
    p = publisher(fake)
    with pytest.raises(TransientPublishError):
        p.publish(post())
    # No queue time: the read cannot show the post absent.
    assert p.reconcile(post()) is None
    # Reading back to the queue time would take more pages than a reconciliation reads.
    fake.posts.extend(
        {"id": str(10**18 + i), "text": f"post {i}", "in_reply_to_tweet_id": None, "media_ids": []} for i in range(1001)
    )
    assert p.reconcile(post(), since=datetime.now(UTC) - timedelta(minutes=1)) is None
    assert len(fake.requests_to("GET", "/2/users/1/tweets")) == 1 + 10
    assert len(fake.requests_to("POST", "/2/tweets")) == 1 and not [x for x in fake.posts if x["text"] == TEXT]


def test_reconcile_resend_fallback_takes_duplicate_content_as_proof(fake: FakeX) -> None:
    fake.fail(posted_then_dropped())
    p = publisher(fake, reconcile_resend=True)
    with pytest.raises(TransientPublishError):
        p.publish(post())
    assert len(fake.posts) == 1  # it did go out

    proof = p.reconcile(post())

    assert proof == Published(post_id=UNKNOWN_POST_ID)
    assert len(fake.posts) == 1
    assert [r.json() for r in fake.requests_to("POST", "/2/tweets")] == [{"text": TEXT}, {"text": TEXT}]
    assert not fake.requests_to("GET", "/2/users/1/tweets")


def test_reconcile_resend_fallback_reads_the_timeline_for_the_real_id(fake: FakeX) -> None:
    fake.fail(posted_then_dropped())
    p = publisher(fake, reconcile_resend=True, reconcile_read=True)
    with pytest.raises(TransientPublishError):
        p.publish(post())
    other = publisher(fake).publish(post("Another summary, posted later https://example.org/x"))

    proof = p.reconcile(post())

    assert proof is not None
    assert proof.post_id == fake.posts[0]["id"] != other.post_id
    [timeline] = fake.requests_to("GET", "/2/users/1/tweets")
    assert timeline.query["max_results"] == ["20"]
    assert len(fake.posts) == 2


def test_reconcile_resend_fallback_sends_a_post_that_never_went_out(fake: FakeX) -> None:
    fake.fail(Fault(status=503, drop=True))  # dropped before X did anything
    p = publisher(fake, reconcile_resend=True)
    with pytest.raises(TransientPublishError):
        p.publish(post())
    assert fake.posts == []

    proof = p.reconcile(post())

    assert proof is not None
    assert [p_["id"] for p_ in fake.posts] == [proof.post_id]


def test_reconcile_matches_text_that_x_escaped_and_shortened(fake: FakeX) -> None:
    text = f"Q&A <on> GN: groups > batches {LINK}"
    fake.fail(posted_then_dropped())
    p = publisher(fake, reconcile_read=True)
    with pytest.raises(TransientPublishError):
        p.publish(post(text))
    proof = p.reconcile(post(text))
    assert proof is not None and proof.post_id == fake.posts[0]["id"]


def test_reconcile_completes_a_thread_whose_first_post_went_out(fake: FakeX) -> None:
    replies = ("2/3 reply one", "3/3 reply two")
    fake.fail(posted_then_dropped())
    p = publisher(fake, reconcile_read=True)
    with pytest.raises(TransientPublishError):
        p.publish(post(replies=replies))

    proof = p.reconcile(post(replies=replies))

    first, second, third = fake.posts
    assert proof == Published(
        post_id=first["id"], url=proof.url if proof else None, reply_ids=(second["id"], third["id"])
    )
    assert (second["in_reply_to_tweet_id"], third["in_reply_to_tweet_id"]) == (first["id"], second["id"])


def test_reconcile_continues_a_thread_after_the_replies_that_went_out(fake: FakeX) -> None:
    # The process died after the first post and one reply: both are on X, the last reply is not.
    p = publisher(fake, reconcile_read=True)
    first = p.publish(post())
    fake.posts.append(
        {"id": "1900000000000009999", "text": "2/3 reply one", "in_reply_to_tweet_id": first.post_id, "media_ids": []}
    )

    proof = p.reconcile(post(replies=("2/3 reply one", "3/3 reply two")))

    assert [x["text"] for x in fake.posts] == [TEXT, "2/3 reply one", "3/3 reply two"]
    assert fake.posts[2]["in_reply_to_tweet_id"] == "1900000000000009999"
    assert proof is not None
    assert (proof.post_id, proof.reply_ids) == (first.post_id, ("1900000000000009999", fake.posts[2]["id"]))


def test_reconcile_raises_what_publish_would(fake: FakeX) -> None:
    fake.fail(unauthorized(method="GET", path="/2/users/me"))
    with pytest.raises(AuthPublishError):
        publisher(fake).reconcile(post(), since=datetime.now(UTC))
    fake.fail(dataclasses.replace(server_error(503, path="/2/users/1/tweets"), method="GET"))
    with pytest.raises(TransientPublishError):
        publisher(fake).reconcile(post(), since=datetime.now(UTC))
    fake.fail(unauthorized())
    with pytest.raises(AuthPublishError):
        publisher(fake, reconcile_resend=True).reconcile(post())
    fake.fail(server_error(503))
    with pytest.raises(TransientPublishError):
        publisher(fake, reconcile_resend=True).reconcile(post())
    assert fake.posts == []


# ---- check ----


def test_check_names_the_account(fake: FakeX) -> None:
    assert publisher(fake).check() == "ok: @shortscience"
    [me] = fake.requests_to("GET", "/2/users/me")
    assert me.headers["authorization"].startswith("OAuth ")


def test_check_with_bad_credentials_says_what_to_renew(fake: FakeX) -> None:
    p = TwitterPublisher(settings_for(fake.url, token="at-revoked"), now=lambda: NOW)
    with pytest.raises(AuthPublishError) as caught:
        p.check()
    assert "X rejected the credentials (401): renew TWITTER_ACCESS_TOKEN / TWITTER_ACCESS_TOKEN_SECRET" in str(
        caught.value
    )


def test_check_when_x_is_down_is_transient(fake: FakeX) -> None:
    fake.fail(Fault(status=503, method="GET", path="/2/users/me"))
    with pytest.raises(TransientPublishError):
        publisher(fake).check()


# ---- images ----


def test_an_image_from_an_allowed_host_is_uploaded_and_attached(fake: FakeX) -> None:
    image = png(2, 2)
    fake.files["/img/figure.png"] = (200, "image/png", image)

    publisher(fake, images=True).publish(post(image_url=f"{fake.url}/img/figure.png"))

    [upload] = fake.requests_to("POST", "/2/media/upload")
    assert upload.headers["authorization"].startswith("OAuth ")
    assert "oauth_signature=" in upload.headers["authorization"]
    assert upload.parts()["media"] == image
    assert upload.form()["media_category"] == "tweet_image"
    [media] = fake.media
    assert fake.posts[0]["media_ids"] == [media["id"]]
    assert fake.requests_to("POST", "/2/tweets")[0].json() == {"text": TEXT, "media": {"media_ids": [media["id"]]}}


def test_images_are_off_by_default(fake: FakeX) -> None:
    fake.files["/img/figure.png"] = (200, "image/png", png())
    publisher(fake).publish(post(image_url=f"{fake.url}/img/figure.png"))
    assert fake.requests_to("POST", "/2/media/upload") == []
    assert fake.requests_to("GET", "/img/figure.png") == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong host", "not in render.image_hosts"),
        ("too big", "image_max_bytes"),
        ("not an image", "not a PNG, JPEG or GIF"),
        ("server error", "HTTP 500"),
        ("upload refused", "refused the image upload (400)"),
    ],
)
def test_a_failed_image_never_stops_the_text_post(
    fake: FakeX, caplog: pytest.LogCaptureFixture, case: str, expected: str
) -> None:
    fake.files["/img/figure.png"] = (200, "image/png", png(40, 40))
    fake.files["/img/page.png"] = (200, "image/png", b"<html>not an image</html>")
    fake.files["/img/broken.png"] = (500, "text/plain", b"oops")
    url = {
        "wrong host": f"http://localhost:{fake.port}/img/figure.png",
        "too big": f"{fake.url}/img/figure.png",
        "not an image": f"{fake.url}/img/page.png",
        "server error": f"{fake.url}/img/broken.png",
        "upload refused": f"{fake.url}/img/figure.png",
    }[case]
    if case == "upload refused":
        fake.fail(Fault(status=400, body={"title": "Invalid Request", "status": 400}, path="/2/media/upload"))
    settings = settings_for(fake.url, images=True)
    if case == "too big":
        settings = dataclasses.replace(settings, render=dataclasses.replace(settings.render, image_max_bytes=100))

    published = TwitterPublisher(settings, now=lambda: NOW).publish(post(image_url=url))

    assert [p["text"] for p in fake.posts] == [TEXT]
    assert fake.posts[0]["media_ids"] == []
    assert published.post_id == fake.posts[0]["id"]
    assert expected in caplog.text


# ---- secrets ----


def test_no_secret_in_any_error_or_log(fake: FakeX, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="bot")
    caplog.set_level(logging.INFO)
    p = publisher(fake, images=True, reconcile_read=True)
    errors: list[PublishError] = []
    fake.files["/img/broken.png"] = (500, "text/plain", b"oops")
    for fault in (
        unauthorized(),
        rate_limited(1),
        duplicate(),
        server_error(503),
        bad_request(),
        read_only_app(),
        posted_then_dropped(),
    ):
        fake.fail(fault)
        try:
            p.publish(post(image_url=f"{fake.url}/img/broken.png"))
        except PublishError as exc:
            errors.append(exc)
    fake.fail(Fault(status=401, method="GET", path="/2/users/me", body={"title": "Unauthorized", "status": 401}))
    try:
        p.check()
    except PublishError as exc:
        errors.append(exc)
    p.reconcile(post(replies=("2/2 reply",)))
    url = fake.url
    fake.stop()
    try:
        TwitterPublisher(settings_for(url), now=lambda: NOW).publish(post())
    except PublishError as exc:
        errors.append(exc)

    assert len(errors) == 9
    for error in errors:
        assert "SECRETMARKER" not in str(error)
        assert "SECRETMARKER" not in repr(error.args)
    for record in caplog.records:
        assert "SECRETMARKER" not in record.getMessage(), record.name


# ---- the stand-in as a process (for crash tests that kill the bot mid-post) ----


def test_the_stand_in_runs_as_a_process() -> None:
    import json
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    def call(url: str, data: bytes | None = None) -> Any:
        with urllib.request.urlopen(
            urllib.request.Request(url, data=data, method="POST" if data else "GET"), timeout=5
        ) as answer:
            return json.load(answer)

    script = Path(__file__).with_name("fake_x.py")
    command = [sys.executable, str(script), "--port", "0", "--consumer-key", KEY, "--access-token", TOKEN]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            base = f"http://127.0.0.1:{int(process.stdout.readline())}"
            call(f"{base}/_fake/faults", json.dumps({"after_effect": True, "drop": True}).encode())

            p = TwitterPublisher(settings_for(base), now=lambda: NOW)
            with pytest.raises(TransientPublishError):
                p.publish(post())
            posted = call(f"{base}/_fake/posts")
            assert [x["text"] for x in posted] == [TEXT]
            proof = p.reconcile(post(), since=datetime.now(UTC) - timedelta(minutes=1))
            assert proof is not None and proof.post_id == posted[0]["id"]

            made = call(f"{base}/_fake/requests")
            assert [(r["method"], r["path"]) for r in made] == [
                ("POST", "/2/tweets"),
                ("GET", "/2/users/me"),
                ("GET", "/2/users/1/tweets"),
            ]
        finally:
            process.terminate()
            process.wait(timeout=5)
