"""The Bluesky channel against a local PDS stand-in, with the real atproto client; and its post's properties."""

from __future__ import annotations

import logging
import socket
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import regex
from fake_bluesky import FakeBluesky, held_after_create, invalid_request, rate_limited, server_error
from fake_x import Fault, png
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.channels.bluesky.post import (
    BYTES_MAX,
    GRAPHEMES_MAX,
    facets,
    graphemes,
    problems,
    render_post,
    word_cut,
)
from bot.channels.bluesky.publisher import BlueskyPublisher, make_publisher
from bot.channels.bluesky.settings import BlueskySettings, check_settings
from bot.channels.bluesky.tid import TID_PATTERN, record_key, tid, tid_parts
from bot.channels.bluesky.vault import MemoryVault
from bot.errors import AuthPublishError, ConfigError, PermanentPublishError, TransientPublishError
from bot.records import PaperDetails, Post, Summary
from bot.render.templates import Templates
from bot.settings import RenderSettings

LINK = "https://www.shortscience.org/paper?bibtexKey=journals/corr/HeZRS15#joseph"
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def a_post(n: int = 1, *, text: str | None = None) -> Post:
    link = f"{LINK}{n}"
    body = (
        text
        or f"Deep Residual Learning {n} (He et al.)\n\nResidual blocks make 152 layers trainable.\n\nSummary by "
        f"Joseph: {link}\n#ComputerVision #MachineLearning"
    )
    return Post(channel="bluesky", summary_guid=f"guid-{n}", text=body, link=link)


@pytest.fixture
def pds() -> Any:
    with FakeBluesky() as fake:
        yield fake


def publisher(pds: FakeBluesky, vault: MemoryVault | None = None, **kw: Any) -> BlueskyPublisher:
    return BlueskyPublisher(
        service_url=pds.url,
        handle=pds.handle,
        app_password=kw.pop("app_password", pds.password),
        vault=vault if vault is not None else MemoryVault(),
        now=lambda: NOW,
        **kw,
    )


def creates(pds: FakeBluesky) -> list[Any]:
    return pds.requests_to("POST", "/xrpc/com.atproto.repo.createRecord")


def decode(text: str, facet: dict[str, Any]) -> str:
    raw = text.encode("utf-8")
    return raw[facet["index"]["byteStart"] : facet["index"]["byteEnd"]].decode("utf-8")


# ------------------------------------------------------------------ the request


def test_publish_sends_the_record_under_its_key_with_facets_card_and_langs(pds: FakeBluesky) -> None:
    post = a_post(
        text="Résumé 👨‍👩‍👧 深度 (He)\n\nWhy residuals help.\n\nSummary by José: " + LINK + "\n#ComputerVision #AI"
    )
    post = Post(channel="bluesky", summary_guid="g", text=post.text, link=LINK)
    published = publisher(pds, langs=("en", "de")).publish(post)

    (request,) = creates(pds)
    session = pds.requests_to("POST", "/xrpc/com.atproto.server.createSession")
    assert len(session) == 1
    assert request.headers["authorization"] == "Bearer " + pds.issued[0]["accessJwt"]
    body = request.json()
    key = record_key(post)
    assert body["rkey"] == key and TID_PATTERN.fullmatch(key)
    assert body["repo"] == pds.did and body["collection"] == "app.bsky.feed.post"
    rec = body["record"]
    assert rec["text"] == post.text
    assert rec["langs"] == ["en", "de"]
    assert rec["createdAt"] == "2026-11-02T09:00:00.000Z"
    external = rec["embed"]["external"]
    assert rec["embed"]["$type"] == "app.bsky.embed.external"
    assert external["uri"] == LINK
    assert external["title"] == "Résumé 👨‍👩‍👧 深度 (He)"
    assert external["description"] == "Why residuals help."
    spans = [(decode(post.text, f), f["features"][0]) for f in rec["facets"]]
    assert spans == [
        (LINK, {"$type": "app.bsky.richtext.facet#link", "uri": LINK}),
        ("#ComputerVision", {"$type": "app.bsky.richtext.facet#tag", "tag": "ComputerVision"}),
        ("#AI", {"$type": "app.bsky.richtext.facet#tag", "tag": "AI"}),
    ]
    # Byte offsets, not character offsets: the emoji and CJK before the link are multi-byte.
    assert rec["facets"][0]["index"]["byteStart"] == len(post.text[: post.text.index(LINK)].encode())
    assert published.post_id == f"at://{pds.did}/app.bsky.feed.post/{key}"
    assert published.url == f"https://bsky.app/profile/{pds.did}/post/{key}"


def test_card_thumbnail_is_uploaded_as_a_blob(pds: FakeBluesky) -> None:
    image = png(2, 2)
    asked: list[str] = []

    def fetch(url: str) -> tuple[bytes, str]:
        asked.append(url)
        return image, "image/png"

    post = Post(
        channel="bluesky",
        summary_guid="g",
        text=a_post().text,
        link=a_post().link,
        image_url="https://i.imgur.com/x.png",
    )
    publisher(pds, fetch_image=fetch).publish(post)

    (upload,) = pds.requests_to("POST", "/xrpc/com.atproto.repo.uploadBlob")
    assert asked == ["https://i.imgur.com/x.png"]
    assert upload.body == image and upload.headers["content-type"] == "image/png"
    thumb = creates(pds)[0].json()["record"]["embed"]["external"]["thumb"]
    (cid,) = pds.blobs
    assert thumb == {"$type": "blob", "ref": {"$link": cid}, "mimeType": "image/png", "size": len(image)}


def test_a_failed_image_does_not_stop_the_post(pds: FakeBluesky) -> None:
    pds.fail(server_error(500, nsid="com.atproto.repo.uploadBlob"))
    post = Post(
        channel="bluesky",
        summary_guid="g",
        text=a_post().text,
        link=a_post().link,
        image_url="https://i.imgur.com/x.png",
    )
    publisher(pds, fetch_image=lambda url: (png(), "image/png")).publish(post)
    assert "thumb" not in creates(pds)[0].json()["record"]["embed"]["external"]


# ------------------------------------------------------------------ sessions


def test_posts_reuse_one_session_across_posts_and_processes(pds: FakeBluesky) -> None:
    vault = MemoryVault()
    first = publisher(pds, vault)
    for n in range(5):
        first.publish(a_post(n))
    assert pds.sessions_created == 1
    assert vault.session is not None and vault.saves == 1

    # A new process with the same vault logs in no more.
    second = publisher(pds, vault)
    for n in range(5, 8):
        second.publish(a_post(n))
    assert pds.sessions_created == 1
    assert len(pds.records) == 8


def test_an_expired_access_token_is_refreshed_not_logged_in_again(pds: FakeBluesky) -> None:
    vault = MemoryVault()
    pub = publisher(pds, vault)
    pub.publish(a_post(1))
    before = vault.session
    pds.expire_access()

    pub.publish(a_post(2))

    assert pds.refreshes == 1 and pds.sessions_created == 1
    assert len(pds.records) == 2
    refresh = pds.requests_to("POST", "/xrpc/com.atproto.server.refreshSession")[0]
    assert refresh.headers["authorization"] == "Bearer " + pds.issued[0]["refreshJwt"]
    assert creates(pds)[-1].headers["authorization"] == "Bearer " + pds.issued[1]["accessJwt"]
    assert vault.session != before and vault.saves == 2  # the rotated tokens are kept
    assert pds.issued[1]["refreshJwt"] in (vault.session or "")


def test_the_sdk_refreshes_a_token_whose_own_expiry_has_come(pds: FakeBluesky) -> None:
    pds.access_ttl = -60  # issued already expired: the client sees it from the JWT and refreshes first
    vault = MemoryVault()
    publisher(pds, vault).publish(a_post(1))
    assert pds.sessions_created == 1 and pds.refreshes >= 1
    assert len(pds.records) == 1


def test_login_again_when_the_refresh_token_is_refused(pds: FakeBluesky) -> None:
    vault = MemoryVault()
    pub = publisher(pds, vault)
    pub.publish(a_post(1))
    pds.expire_access()
    pds.revoke_refresh()

    pub.publish(a_post(2))

    assert pds.sessions_created == 2
    assert len(pds.records) == 2


def test_a_saved_session_of_another_account_or_garbage_is_not_used(pds: FakeBluesky) -> None:
    publisher(pds, MemoryVault("not a session")).publish(a_post(1))
    publisher(pds, MemoryVault("other.handle:::did:plc:x:::a:::b:::http://x")).publish(a_post(2))
    assert pds.sessions_created == 2


def test_bad_password_pauses_the_channel_with_a_clear_reason_and_no_secret(
    pds: FakeBluesky, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthPublishError) as info:
        publisher(pds, app_password="wrong-pass-word-9876").publish(a_post())
    message = str(info.value)
    assert "BLUESKY_APP_PASSWORD" in message and "Invalid identifier or password" in message
    assert info.value.status == 401
    assert "wrong-pass-word-9876" not in message + caplog.text
    assert creates(pds) == []


def test_no_session_token_or_password_reaches_the_log(pds: FakeBluesky, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    vault = MemoryVault()
    pub = publisher(pds, vault)
    pub.publish(a_post(1))
    pds.expire_access()
    pub.publish(a_post(2))
    assert vault.session is not None
    for secret in (pds.password, *vault.session.split(":::")[2:4]):
        assert secret not in caplog.text


# ------------------------------------------------------------------ exactly once


def test_a_key_already_taken_by_this_post_is_proof(pds: FakeBluesky) -> None:
    post = a_post()
    first = publisher(pds).publish(post)
    again = publisher(pds).publish(post)  # the retry of a delivery whose answer was lost

    assert again.post_id == first.post_id
    assert len(pds.records) == 1
    assert [r.path for r in pds.requests[-2:]] == [
        "/xrpc/com.atproto.repo.createRecord",
        "/xrpc/com.atproto.repo.getRecord",
    ]


def test_a_post_made_before_a_5xx_is_found_under_its_key(pds: FakeBluesky) -> None:
    pds.fail(
        Fault(
            status=503,
            body={"error": "InternalServerError", "message": "x"},
            path="/xrpc/com.atproto.repo.createRecord",
            after_effect=True,
        )
    )
    published = publisher(pds).publish(a_post())
    assert published.post_id.endswith(record_key(a_post()))
    assert len(pds.records) == 1


def test_a_key_held_by_another_post_is_never_proof(pds: FakeBluesky) -> None:
    post = a_post()
    pds.records[record_key(post)] = {
        "uri": "at://x/app.bsky.feed.post/k",
        "cid": "bafyreiother",
        "value": {"text": "someone else", "createdAt": "x"},
    }
    with pytest.raises(PermanentPublishError, match="holds a different post"):
        publisher(pds).reconcile(post)


def test_reconcile_finds_the_post_without_posting(pds: FakeBluesky) -> None:
    post = a_post()
    first = publisher(pds).publish(post)
    pds.requests.clear()

    found = publisher(pds).reconcile(post, since=NOW)

    assert found is not None and found.post_id == first.post_id
    assert creates(pds) == []
    assert len(pds.records) == 1


def test_reconcile_posts_once_what_never_went_out(pds: FakeBluesky) -> None:
    post = a_post()
    published = publisher(pds).reconcile(post, since=NOW)
    assert published is not None
    assert len(creates(pds)) == 1 and list(pds.records) == [record_key(post)]


def test_an_answer_that_never_comes_is_settled_by_the_record_under_the_key(pds: FakeBluesky) -> None:
    pds.fail(held_after_create())  # made, then the answer is held: the worker times out (or dies) here
    post = a_post()
    published = publisher(pds, timeout=0.5).publish(post)
    pds.release()
    assert published.post_id.endswith(record_key(post))
    found = publisher(pds).reconcile(post)  # and after a crash, the next worker finds the same
    assert found == published and len(pds.records) == 1


def test_a_timeout_without_the_record_may_have_gone_out(pds: FakeBluesky) -> None:
    pds.fail(Fault(status=503, delay=1.0, path="/xrpc/com.atproto.repo.createRecord"))
    with pytest.raises(TransientPublishError) as info:
        publisher(pds, timeout=0.3).publish(a_post())
    assert info.value.maybe_sent and "timed out" in str(info.value)
    assert pds.records == {}


def test_record_keys_are_valid_tids_fixed_by_the_post() -> None:
    key = record_key(a_post(1))
    assert TID_PATTERN.fullmatch(key) and len(key) == 13
    assert record_key(a_post(1)) == key
    assert record_key(a_post(2)) != key
    edited = Post(channel="bluesky", summary_guid="guid-1", text=a_post(1).text + " (edited)", link=a_post(1).link)
    assert record_key(edited) != key  # an edit announced again is a new post, not the old one's proof
    micros, clock = tid_parts(key)
    assert tid(micros, clock) == key
    assert (
        datetime(2023, 1, 1, tzinfo=UTC).timestamp() * 1e6
        <= micros
        < datetime(2024, 3, 1, tzinfo=UTC).timestamp() * 1e6
    )
    assert tid(0, 0) == "2222222222222" and tid((1 << 53) - 1, 1023) == "bzzzzzzzzzzzz"  # the top bit stays 0


# ------------------------------------------------------------------ errors


def test_rate_limit_waits_until_the_reset_time(pds: FakeBluesky) -> None:
    reset = int(time.time()) + 900
    pds.fail(rate_limited(reset))
    with pytest.raises(TransientPublishError) as info:
        publisher(pds).publish(a_post())
    assert info.value.status == 429
    assert info.value.retry_at == datetime.fromtimestamp(reset, UTC)
    assert pds.requests_to("GET", "/xrpc/com.atproto.repo.getRecord") == []


def test_a_rate_limited_login_waits_too(pds: FakeBluesky) -> None:
    reset = int(time.time()) + 300
    pds.fail(rate_limited(reset, nsid="com.atproto.server.createSession"))
    with pytest.raises(TransientPublishError) as info:
        publisher(pds).publish(a_post())
    assert info.value.retry_at == datetime.fromtimestamp(reset, UTC)
    assert creates(pds) == []


def test_a_5xx_without_the_record_is_transient(pds: FakeBluesky) -> None:
    pds.fail(server_error(503))
    with pytest.raises(TransientPublishError) as info:
        publisher(pds).publish(a_post())
    assert info.value.status == 503
    assert len(pds.requests_to("GET", "/xrpc/com.atproto.repo.getRecord")) == 1  # looked, not there
    assert pds.records == {}


def test_a_validation_error_is_permanent(pds: FakeBluesky) -> None:
    pds.fail(invalid_request())
    with pytest.raises(PermanentPublishError) as info:
        publisher(pds).publish(a_post())
    assert info.value.status == 400 and "InvalidRequest" in str(info.value) and "300 graphemes" in str(info.value)


def test_a_refused_connection_never_left() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pub = BlueskyPublisher(
        service_url=f"http://127.0.0.1:{port}", handle="a.test", app_password="pass-word-1234", vault=MemoryVault()
    )
    with pytest.raises(TransientPublishError) as info:
        pub.publish(a_post())
    assert not info.value.maybe_sent and "nothing was sent" in str(info.value)


def test_a_session_refused_after_renewal_pauses_the_channel(pds: FakeBluesky) -> None:
    pds.fail(
        Fault(
            status=401,
            body={"error": "AuthenticationRequired", "message": "Account has been taken down"},
            path="/xrpc/com.atproto.repo.createRecord",
        ),
        times=2,
    )
    with pytest.raises(AuthPublishError, match="BLUESKY_HANDLE"):
        publisher(pds).publish(a_post())
    assert pds.refreshes == 1 and pds.sessions_created == 1  # renewed once, refused again: no login loop
    assert len(creates(pds)) == 2


# ------------------------------------------------------------------ check


def test_check_resolves_the_handle_and_names_the_account(pds: FakeBluesky) -> None:
    assert publisher(pds).check() == "ok: ShortScience (@shortscience.test)"
    assert pds.requests_to("GET", "/xrpc/com.atproto.identity.resolveHandle")[0].query["handle"] == [
        "shortscience.test"
    ]
    assert pds.requests_to("GET", "/xrpc/app.bsky.actor.getProfile")[0].query["actor"] == [pds.did]


def test_check_with_bad_credentials_is_an_auth_error(pds: FakeBluesky) -> None:
    with pytest.raises(AuthPublishError):
        publisher(pds, app_password="nope-nope-nope").check()


def test_make_publisher_reads_the_settings_it_will_be_wired_to(pds: FakeBluesky) -> None:
    from types import SimpleNamespace

    env = SimpleNamespace(bluesky_service_url=pds.url, bluesky_handle=pds.handle, bluesky_app_password=pds.password)
    pub = make_publisher(
        SimpleNamespace(env=env, bluesky=BlueskySettings(langs=("fr",))), vault=MemoryVault(), now=lambda: NOW
    )
    pub.publish(a_post())
    assert creates(pds)[0].json()["record"]["langs"] == ["fr"]


def test_langs_setting_is_checked() -> None:
    check_settings(BlueskySettings(langs=("en", "pt-BR")))
    with pytest.raises(ConfigError, match="1 to 3"):
        check_settings(BlueskySettings(langs=("en", "de", "fr", "it")))
    with pytest.raises(ConfigError, match="BCP 47"):
        check_settings(BlueskySettings(langs=("english!",)))


# ------------------------------------------------------------------ the post's properties

FRAGMENTS = [
    "👨\u200d👩\u200d👧\u200d👦",  # one grapheme of seven code points
    "🏳\ufe0f\u200d🌈",
    "🇩🇪🇫🇷",
    "e\u0301\u0302",  # combining marks
    "深度学习模型",
    "שלום עולם",  # RTL
    "مرحبا بالعالم",
    "\u200f\u202e",
    "한국어 텍스트",
    " ",
    "word ",
    "#notatag",
    "https://example.org/x ",
]
texts = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(min_size=0, max_size=40)), max_size=40).map("".join)
tags = st.text(alphabet=st.characters(blacklist_categories=("Z", "Cc", "Cs", "P")), min_size=1, max_size=20).map(
    lambda t: "#" + t
)


def summary(title: str, author: str, link: str) -> Summary:
    return Summary(guid="g", title=title, author=author, text="x", link=link, edited_at=NOW)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    title=texts,
    teaser=texts,
    author=texts,
    hashtags=st.lists(tags, max_size=6),
    path=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_/", max_size=120),
    teaser_chars=st.integers(min_value=0, max_value=400),
)
def test_every_post_fits_and_its_facets_cover_exactly_link_and_tags(
    title: str, teaser: str, author: str, hashtags: list[str], path: str, teaser_chars: int
) -> None:
    link = "https://www.shortscience.org/" + path
    render = RenderSettings(hashtags={f"c{i}": t for i, t in enumerate(hashtags)})
    details = PaperDetails("1512.03385", "t", (author,), None, tuple(f"c{i}" for i in range(len(hashtags))))
    rendered = render_post(
        TEMPLATES,
        summary(title, author, link),
        details,
        teaser,
        channel=BlueskySettings(teaser_chars=teaser_chars),
        render=render,
    )
    text = rendered.post.text
    assert graphemes(text) <= GRAPHEMES_MAX and len(text.encode("utf-8")) <= BYTES_MAX
    found = facets(text, link)
    kinds = [f["features"][0]["$type"] for f in found]
    assert kinds.count("app.bsky.richtext.facet#link") >= 1  # the link is there, whole
    for facet in found:
        feature = facet["features"][0]
        span = decode(text, facet)
        if feature["$type"].endswith("#link"):
            assert span == feature["uri"] == link
        else:
            assert span == "#" + feature["tag"]
    starts = [f["index"]["byteStart"] for f in found]
    assert starts == sorted(starts)


def test_the_byte_limit_binds_where_graphemes_are_long() -> None:
    family = "👨\u200d👩\u200d👧\u200d👦"  # one grapheme, 25 bytes
    teaser = family * 250  # a word boundary between any two
    rendered = render_post(
        TEMPLATES,
        summary("Families", "A", LINK),
        None,
        teaser,
        channel=BlueskySettings(teaser_chars=400),
        render=RenderSettings(),
    )
    text = rendered.post.text
    assert graphemes(text) < GRAPHEMES_MAX  # the graphemes would have allowed more
    assert BYTES_MAX - 30 <= len(text.encode("utf-8")) <= BYTES_MAX
    assert text.endswith(LINK) and "teaser shortened to fit 300 graphemes" in rendered.warnings
    assert problems(text) == []
    assert problems(text + family * 20) == [
        f"post is not a valid Bluesky post ({graphemes(text) + 20}/300 graphemes, "
        f"{len(text.encode()) + 500}/3000 bytes)"
    ]


@settings(max_examples=200, deadline=None)
@given(text=texts, limit=st.integers(min_value=0, max_value=400))
def test_word_cuts_never_split_a_grapheme(text: str, limit: int) -> None:
    # A byte limit: the longest head that fits would end inside a grapheme if cuts could fall there.
    cut = word_cut(text, lambda t: len(t.encode("utf-8")) <= limit, scan=limit)
    assert len(cut.encode("utf-8")) <= limit
    if cut and cut != text:
        assert cut.endswith("…")
        head = regex.findall(r"\X", cut[:-1])
        assert head == regex.findall(r"\X", text)[: len(head)]


TEMPLATES = Templates()
