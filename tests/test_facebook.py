"""The Facebook Page publisher: real facebook-sdk against the local Graph stand-in (tests/fake_graph.py)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fake_graph import FakeGraph, graph_error, html_error, posted_then_dropped
from fake_x import Fault, png

from bot.channels.base import Publisher
from bot.channels.facebook.publisher import FacebookPublisher
from bot.channels.facebook.settings import FacebookSettings
from bot.errors import AuthPublishError, ConfigError, PermanentPublishError, PublishError, TransientPublishError
from bot.records import Post, Published
from bot.settings import Env, RenderSettings, Settings

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
PAGE = "123456789"
TOKEN = "EAAG-SECRETMARKER-page-token"
LINK = "https://www.shortscience.org/paper?bibtexKey=journals/corr/1803.08494#joecohen"
TEXT = (
    "Group Normalization (Wu & He, 2018)\n\nBN's error grows quickly as the batch shrinks; GN divides channels "
    "into groups instead."
)


@pytest.fixture
def fake() -> Iterator[FakeGraph]:
    with FakeGraph(page_id=PAGE, access_token=TOKEN) as server:
        assert isinstance(server, FakeGraph)
        yield server


def settings_for(
    graph_url: str, *, token: str = TOKEN, page_id: str = PAGE, version: str = "v26.0", **facebook: Any
) -> Settings:
    env = Env(
        facebook_page_id=page_id,
        facebook_page_access_token=token,
        facebook_graph_version=version,
        facebook_graph_url=graph_url + "/",
    )
    facebook.setdefault("timeout_seconds", 5.0)
    return Settings(
        env=env,
        facebook=FacebookSettings(**facebook),
        render=RenderSettings(image_hosts=("127.0.0.1",), image_timeout_seconds=5.0),
    )


def publisher(fake: FakeGraph, **kwargs: Any) -> FacebookPublisher:
    return FacebookPublisher(settings_for(fake.url, **kwargs), now=lambda: NOW)


def post(text: str = TEXT, *, link: str = LINK, image_url: str | None = None) -> Post:
    return Post(channel="facebook", summary_guid=link, text=text, link=link, image_url=image_url)


# ---- posting ----


def test_is_a_live_publisher(fake: FakeGraph) -> None:
    p = publisher(fake)
    assert isinstance(p, Publisher)
    assert (p.channel, p.live) == ("facebook", True)


def test_publish_posts_message_and_link_to_the_page_feed(fake: FakeGraph) -> None:
    published = publisher(fake).publish(post())

    [made] = fake.posts
    assert published == Published(post_id=made["id"], url=f"https://www.facebook.com/{made['id']}")
    assert made["id"].startswith(f"{PAGE}_")
    [request] = fake.requests_to("POST", f"/v26.0/{PAGE}/feed")
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.form() == {"message": TEXT, "link": LINK, "access_token": TOKEN}


def test_the_configured_version_is_in_the_path(fake: FakeGraph) -> None:
    publisher(fake, version="v25.0").publish(post())
    assert [r.path for r in fake.requests] == [f"/v25.0/{PAGE}/feed"]
    assert fake.posts[0]["version"] == "v25.0"


def test_the_library_global_host_is_left_alone(fake: FakeGraph) -> None:
    import facebook

    publisher(fake).publish(post())
    assert facebook.FACEBOOK_GRAPH_URL == "https://graph.facebook.com/"


def test_a_bad_version_or_page_id_is_a_config_error(fake: FakeGraph) -> None:
    with pytest.raises(ConfigError, match="FACEBOOK_GRAPH_VERSION"):
        publisher(fake, version="26.0")
    with pytest.raises(ConfigError, match="FACEBOOK_PAGE_ID"):
        publisher(fake, page_id="123/feed")


# ---- errors ----

ERROR_CASES = [
    # (code, subcode, is_transient, expected class, duplicate)
    (190, 460, False, AuthPublishError, False),
    (102, None, False, AuthPublishError, False),
    (368, 1390008, False, AuthPublishError, False),
    (10, None, False, AuthPublishError, False),
    (200, None, False, AuthPublishError, False),
    (4, None, True, TransientPublishError, False),
    (17, None, True, TransientPublishError, False),
    (32, None, True, TransientPublishError, False),
    (341, None, False, TransientPublishError, False),
    (613, None, False, TransientPublishError, False),
    (80001, None, False, TransientPublishError, False),
    (1, None, False, TransientPublishError, False),
    (2, None, True, TransientPublishError, False),
    (100, None, True, TransientPublishError, False),
    (506, None, False, PermanentPublishError, True),
    (1609005, None, False, PermanentPublishError, False),
    (100, None, False, PermanentPublishError, False),
    (324, None, False, PermanentPublishError, False),
]


@pytest.mark.parametrize(("code", "subcode", "is_transient", "expected", "duplicate"), ERROR_CASES)
def test_graph_errors_are_classified(
    fake: FakeGraph, code: int, subcode: int | None, is_transient: bool, expected: type[PublishError], duplicate: bool
) -> None:
    fake.fail(graph_error(code, f"(#{code}) something", subcode=subcode, is_transient=is_transient))
    with pytest.raises(PublishError) as caught:
        publisher(fake).publish(post())
    assert type(caught.value) is expected
    assert (caught.value.status, caught.value.code) == (400, code)
    assert getattr(caught.value, "duplicate", False) is duplicate
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert fake.posts == []


def test_expired_token_says_what_to_renew(fake: FakeGraph) -> None:
    with pytest.raises(AuthPublishError) as caught:
        publisher(fake, token="EAAG-revoked").publish(post())
    assert caught.value.code == 190
    assert "renew FACEBOOK_PAGE_ACCESS_TOKEN" in str(caught.value)


def test_throttling_honours_the_business_use_case_header(fake: FakeGraph) -> None:
    usage = {
        PAGE: [
            {
                "type": "pages",
                "call_count": 100,
                "total_cputime": 20,
                "total_time": 30,
                "estimated_time_to_regain_access": 17,
            }
        ]
    }
    fake.fail(
        graph_error(
            80001,
            "There have been too many calls to this Page account.",
            headers={"X-Business-Use-Case-Usage": json.dumps(usage)},
        )
    )
    with pytest.raises(TransientPublishError) as caught:
        publisher(fake).publish(post())
    assert caught.value.retry_at == NOW + timedelta(minutes=17)


def test_throttling_without_a_hint_leaves_the_time_to_backoff(fake: FakeGraph) -> None:
    fake.fail(graph_error(4, "(#4) Application request limit reached", is_transient=True))
    with pytest.raises(TransientPublishError) as caught:
        publisher(fake).publish(post())
    assert caught.value.retry_at is None


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_without_graph_json_is_transient(fake: FakeGraph, status: int) -> None:
    fake.fail(html_error(status))
    with pytest.raises(TransientPublishError) as caught:
        publisher(fake).publish(post())
    assert (caught.value.status, caught.value.code) == (status, None)


def test_5xx_with_graph_json_is_transient(fake: FakeGraph) -> None:
    fake.fail(graph_error(1, "An unknown error occurred", status=500))
    with pytest.raises(TransientPublishError) as caught:
        publisher(fake).publish(post())
    assert (caught.value.status, caught.value.code) == (500, 1)


def test_4xx_without_graph_json_is_permanent(fake: FakeGraph) -> None:
    fake.fail(html_error(404))
    with pytest.raises(PermanentPublishError) as caught:
        publisher(fake).publish(post())
    assert caught.value.status == 404


def test_connection_refused_is_transient(fake: FakeGraph) -> None:
    url = fake.url
    fake.stop()
    with pytest.raises(TransientPublishError) as caught:
        FacebookPublisher(settings_for(url), now=lambda: NOW).publish(post())
    assert "unreachable" in str(caught.value)
    assert caught.value.status is None
    # Nothing left this machine: retried as a fresh post, no reconciliation needed.
    assert caught.value.maybe_sent is False and "nothing was sent" in str(caught.value)


def test_a_slow_answer_times_out_as_transient(fake: FakeGraph) -> None:
    fake.fail(Fault(status=200, body={"id": "x"}, path="/", delay=1.0))
    with pytest.raises(TransientPublishError) as caught:
        publisher(fake, timeout_seconds=0.2).publish(post())
    assert "timed out" in str(caught.value)
    assert caught.value.maybe_sent is True  # the request was out: the next attempt reconciles


# ---- reconciliation ----


def test_reconcile_finds_a_post_that_went_out_before_the_crash(fake: FakeGraph) -> None:
    fake.fail(posted_then_dropped())
    p = publisher(fake)
    with pytest.raises(TransientPublishError):
        p.publish(post())
    fake.add_post("Someone else's post", "https://example.org/other")

    proof = p.reconcile(post())

    assert proof == Published(
        post_id=fake.posts[0]["id"], url=f"https://www.facebook.com/{PAGE}/posts/{fake.posts[0]['id'].split('_')[1]}"
    )
    assert len(fake.posts) == 2  # nothing new was posted
    [listing] = fake.requests_to("GET", f"/v26.0/{PAGE}/posts")
    assert listing.query["fields"] == ["id,message,permalink_url,created_time,attachments{url,unshimmed_url}"]
    assert listing.query["limit"] == ["25"]
    assert listing.query["access_token"] == [TOKEN]


def test_reconcile_matches_the_link_inside_a_message(fake: FakeGraph) -> None:
    fake.add_post(f"{TEXT}\n\n{LINK}")  # a photo post carries the link in its caption
    proof = publisher(fake).reconcile(post())
    assert proof is not None and proof.post_id == fake.posts[0]["id"]


def test_reconcile_returns_none_when_the_post_is_not_there(fake: FakeGraph) -> None:
    fake.add_post("Another summary", "https://www.shortscience.org/paper?bibtexKey=other#anon")
    assert publisher(fake).reconcile(post()) is None
    assert len(fake.posts) == 1


def test_reconcile_with_a_dead_token_pauses(fake: FakeGraph) -> None:
    with pytest.raises(AuthPublishError):
        publisher(fake, token="EAAG-revoked").reconcile(post())


# ---- check ----


def test_check_names_the_page(fake: FakeGraph) -> None:
    assert publisher(fake).check() == "ok: Page 'ShortScience'"
    [request] = fake.requests_to("GET", f"/v26.0/{PAGE}")
    assert request.query["fields"] == ["name,id"]


def test_check_with_a_dead_token(fake: FakeGraph) -> None:
    with pytest.raises(AuthPublishError, match="renew FACEBOOK_PAGE_ACCESS_TOKEN"):
        publisher(fake, token="EAAG-revoked").check()


def test_check_with_a_wrong_page_id(fake: FakeGraph) -> None:
    with pytest.raises(AuthPublishError, match="wrong FACEBOOK_PAGE_ID"):
        publisher(fake, page_id="987").check()


def test_check_with_a_missing_permission(fake: FakeGraph) -> None:
    fake.fail(
        graph_error(200, "(#200) The user hasn't authorized the application to perform this action", method="GET")
    )
    with pytest.raises(AuthPublishError, match="missing permission pages_manage_posts"):
        publisher(fake).check()


# ---- images ----


def test_an_image_makes_a_photo_post_with_the_text_and_link_as_caption(fake: FakeGraph) -> None:
    fake.files["/img/figure.png"] = (200, "image/png", png())
    image_url = f"{fake.url}/img/figure.png"

    published = publisher(fake, images=True).publish(post(image_url=image_url))

    [made] = fake.posts
    assert (made["kind"], published.post_id) == ("photo", made["id"])
    [request] = fake.requests_to("POST", f"/v26.0/{PAGE}/photos")
    assert request.form() == {"url": image_url, "caption": f"{TEXT}\n\n{LINK}", "access_token": TOKEN}
    assert fake.requests_to("POST", f"/v26.0/{PAGE}/feed") == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong host", "not in render.image_hosts"),
        ("too big", "image_max_bytes"),
        ("not an image", "not a PNG, JPEG or GIF"),
        ("server error", "HTTP 500"),
        ("graph refuses the image", "code 324"),
    ],
)
def test_a_failed_image_falls_back_to_the_link_post(
    fake: FakeGraph, caplog: pytest.LogCaptureFixture, case: str, expected: str
) -> None:
    fake.files["/img/figure.png"] = (200, "image/png", png(40, 40))
    fake.files["/img/page.png"] = (200, "image/png", b"<html>not an image</html>")
    fake.files["/img/broken.png"] = (500, "text/plain", b"oops")
    url = {
        "wrong host": f"http://localhost:{fake.port}/img/figure.png",
        "too big": f"{fake.url}/img/figure.png",
        "not an image": f"{fake.url}/img/page.png",
        "server error": f"{fake.url}/img/broken.png",
        "graph refuses the image": f"{fake.url}/img/figure.png",
    }[case]
    if case == "graph refuses the image":
        fake.fail(graph_error(324, "(#324) Missing or invalid image file", path=f"/v26.0/{PAGE}/photos"))
    settings = settings_for(fake.url, images=True)
    if case == "too big":
        settings = dataclasses.replace(settings, render=dataclasses.replace(settings.render, image_max_bytes=100))

    published = FacebookPublisher(settings, now=lambda: NOW).publish(post(image_url=url))

    [made] = fake.posts
    assert (made["kind"], made["message"], made["link"]) == ("link", TEXT, LINK)
    assert published.post_id == made["id"]
    assert expected in caplog.text


def test_a_photo_post_that_may_have_gone_out_is_not_followed_by_a_link_post(fake: FakeGraph) -> None:
    fake.files["/img/figure.png"] = (200, "image/png", png())
    fake.fail(posted_then_dropped(path=f"/v26.0/{PAGE}/photos"))
    p = publisher(fake, images=True)
    with pytest.raises(TransientPublishError):
        p.publish(post(image_url=f"{fake.url}/img/figure.png"))
    assert [m["kind"] for m in fake.posts] == ["photo"]
    # ... and reconciliation finds it by the link in its caption.
    proof = p.reconcile(post(image_url=f"{fake.url}/img/figure.png"))
    assert proof is not None and proof.post_id == fake.posts[0]["id"]


# ---- secrets ----


def test_no_secret_in_any_error_or_log(fake: FakeGraph, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="bot")
    caplog.set_level(logging.INFO)
    errors: list[PublishError] = []
    p = publisher(fake, images=True)
    fake.files["/img/broken.png"] = (500, "text/plain", b"oops")
    faults = [
        graph_error(190, f"Error validating access token {TOKEN}", subcode=463),  # Graph echoing the token
        graph_error(4, "(#4) Application request limit reached", is_transient=True),
        graph_error(100, "Invalid parameter", method="GET"),
        graph_error(506, "Duplicate status message"),
        html_error(502),
    ]
    for fault in faults:
        fake.fail(fault)
        for call in (
            lambda: p.publish(post(image_url=f"{fake.url}/img/broken.png")),
            p.check,
            lambda: p.reconcile(post()),
        ):
            try:
                call()
            except PublishError as exc:
                errors.append(exc)
        fake.reset()
    slow = FacebookPublisher(settings_for(fake.url, timeout_seconds=0.2), now=lambda: NOW)
    fake.fail(Fault(status=200, body={"data": []}, method="GET", path="/", delay=1.0))
    with pytest.raises(TransientPublishError) as caught:
        slow.reconcile(post())
    errors.append(caught.value)
    url = fake.url
    fake.stop()
    for call in (
        FacebookPublisher(settings_for(url), now=lambda: NOW).check,
        lambda: FacebookPublisher(settings_for(url), now=lambda: NOW).publish(post()),
    ):
        try:
            call()
        except PublishError as exc:
            errors.append(exc)

    assert len(errors) >= 8
    for error in errors:
        assert "SECRETMARKER" not in str(error), error
        assert "SECRETMARKER" not in repr(error.args)
    for record in caplog.records:
        assert "SECRETMARKER" not in record.getMessage(), record.name


def test_the_sdk_import_warning_is_silenced_narrowly() -> None:
    """facebook-sdk's invalid escape warns when its source is compiled; importing us must not."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "PYTHONPYCACHEPREFIX": cache}  # force a fresh compile of facebook-sdk
        ours = subprocess.run(
            [sys.executable, "-W", "error", "-c", "import bot.channels.facebook.publisher"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert ours.returncode == 0, ours.stderr
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "PYTHONPYCACHEPREFIX": cache}
        bare = subprocess.run(
            [sys.executable, "-W", "error", "-c", "import facebook"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert bare.returncode != 0 and "invalid escape sequence" in bare.stderr  # the warning is real
