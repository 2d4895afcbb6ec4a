"""The arXiv client against a local fake of the arXiv API (tests/fake_arxiv.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fake_arxiv import GROUP_NORMALIZATION, IDENTITY_MAPPINGS, PAPERS, PIXEL_RNN, FakeArxiv, render_feed

from bot.arxiv import ArxivClient, ArxivError, normalise_arxiv_id, parse_arxiv_atom
from bot.errors import SourceError
from bot.records import PaperDetails
from bot.settings import Settings, with_overrides


class FakeClock:
    """A monotonic clock that only moves when slept on (or by `tick` per reading)."""

    def __init__(self, tick: float = 0.0) -> None:
        self.now = 1000.0
        self.tick = tick
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        self.now += self.tick
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_settings(url: str, **arxiv: Any) -> Settings:
    arxiv.setdefault("min_interval_seconds", 0.0)
    arxiv.setdefault("wait_seconds", 5.0)
    return with_overrides(Settings(), "arxiv", api_url=url, **arxiv)


@pytest.fixture
def fake() -> Iterator[FakeArxiv]:
    with FakeArxiv() as server:
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def client_for(fake: FakeArxiv, clock: FakeClock, **arxiv: Any) -> ArxivClient:
    return ArxivClient(make_settings(fake.url, **arxiv), clock=clock, sleep=clock.sleep)


# ---- fetching and mapping ----


def test_fetch_maps_fields(fake: FakeArxiv, clock: FakeClock) -> None:
    with client_for(fake, clock) as client:
        found = client.fetch(["1803.08494", "1603.05027", "1601.06759"])

    assert found == {
        "1803.08494": PaperDetails(
            arxiv_id="1803.08494",
            title="Group Normalization",
            authors=("Yuxin Wu", "Kaiming He"),
            published=datetime(2018, 3, 22, 17, 52, 41, tzinfo=UTC),
            categories=("cs.CV", "cs.LG"),
        ),
        "1603.05027": PaperDetails(
            arxiv_id="1603.05027",
            title="Identity Mappings in Deep Residual Networks",
            authors=("Kaiming He", "Xiangyu Zhang", "Shaoqing Ren", "Jian Sun"),
            published=datetime(2016, 3, 16, 17, 59, 24, tzinfo=UTC),
            categories=("cs.CV",),
        ),
        "1601.06759": PaperDetails(
            arxiv_id="1601.06759",
            title="Pixel Recurrent Neural Networks",
            authors=("Aaron van den Oord", "Nal Kalchbrenner", "Koray Kavukcuoglu"),
            published=datetime(2016, 1, 25, 18, 58, 9, tzinfo=UTC),
            categories=("cs.CV", "cs.LG", "cs.NE"),
        ),
    }
    assert found["1803.08494"].year == 2018
    # One request for all three, asking for exactly as many results.
    assert fake.id_lists() == [["1803.08494", "1603.05027", "1601.06759"]]
    assert "max_results=3" in fake.requests[0]


def test_fetch_normalises_ids_and_asks_each_once(fake: FakeArxiv, clock: FakeClock) -> None:
    with client_for(fake, clock) as client:
        found = client.fetch(["arXiv:1803.08494v2", "https://arxiv.org/abs/1803.08494v3", "hep-th/9711200v1"])

    assert set(found) == {"1803.08494", "hep-th/9711200"}
    # Versions are stripped before asking; the old-style id's slash stays literal.
    assert fake.id_lists() == [["1803.08494", "hep-th/9711200"]]
    assert "id_list=1803.08494,hep-th/9711200" in fake.requests[0]
    maldacena = found["hep-th/9711200"]
    assert maldacena.title == "The Large N Limit of Superconformal Field Theories and Supergravity"
    assert maldacena.authors == ("Juan M. Maldacena",)
    assert maldacena.categories == ("hep-th",)


def test_junk_ids_are_never_sent(fake: FakeArxiv, clock: FakeClock) -> None:
    with client_for(fake, clock) as client:
        # One malformed id makes arXiv reject a whole batch, so junk must stay home.
        assert set(client.fetch(["not an id", "1603.05027", ""])) == {"1603.05027"}
        assert client.fetch(["junk", "1899.00001"]) == {}
    assert fake.id_lists() == [["1603.05027"]]


def test_unknown_id_is_absent_not_an_error(fake: FakeArxiv, clock: FakeClock) -> None:
    with client_for(fake, clock) as client:
        found = client.fetch(["1803.08494", "1712.99999"])
    assert set(found) == {"1803.08494"}


def test_idless_entry_for_unknown_id_is_absent(fake: FakeArxiv, clock: FakeClock) -> None:
    fake.ghost_unknown = True
    with client_for(fake, clock) as client:
        found = client.fetch(["1712.99999", "1601.06759"])
    assert set(found) == {"1601.06759"}


# ---- batching and spacing ----


def test_ids_are_batched(fake: FakeArxiv, clock: FakeClock) -> None:
    ids = ["1803.08494", "1603.05027", "1601.06759", "hep-th/9711200", "1712.99999"]
    with client_for(fake, clock, batch_size=2) as client:
        found = client.fetch(ids)

    assert set(found) == {"1803.08494", "1603.05027", "1601.06759", "hep-th/9711200"}
    assert fake.id_lists() == [ids[0:2], ids[2:4], ids[4:5]]
    assert ["max_results=2" in q for q in fake.requests] == [True, True, False]
    assert "max_results=1" in fake.requests[2]


def test_requests_are_spaced_by_min_interval(fake: FakeArxiv, clock: FakeClock) -> None:
    ids = ["1803.08494", "1603.05027", "1601.06759", "hep-th/9711200", "1712.99999"]
    with client_for(fake, clock, batch_size=2, min_interval_seconds=3.0, wait_seconds=60.0) as client:
        client.fetch(ids)
        assert clock.sleeps == [3.0, 3.0]  # none before the first request, 3 s before each other

        # The spacing holds across calls: 1 s later, the next request waits 2 s more.
        clock.now += 1.0
        client.fetch(["1803.08494"])
        assert clock.sleeps == [3.0, 3.0, 2.0]

        # Long enough after the last request: no wait at all.
        clock.now += 5.0
        client.fetch(["1603.05027"])
        assert clock.sleeps == [3.0, 3.0, 2.0]
    assert len(fake.requests) == 5


def test_spacing_past_the_deadline_fails_fast_and_keeps_earlier_batches(fake: FakeArxiv, clock: FakeClock) -> None:
    with client_for(fake, clock, batch_size=1, min_interval_seconds=3.0, wait_seconds=2.0) as client:
        with pytest.raises(ArxivError) as caught:
            client.fetch(["1803.08494", "1603.05027"])
    assert clock.sleeps == []  # it did not sleep into a wait it could not finish
    assert len(fake.requests) == 1
    assert set(caught.value.found) == {"1803.08494"}
    assert "arXiv" in str(caught.value) and "min_interval_seconds" in str(caught.value)


# ---- failures ----


def assert_clean(exc: BaseException) -> None:
    """Our error, saying arXiv, with no httpx exception chained for a traceback."""
    assert isinstance(exc, SourceError)
    assert "arXiv" in str(exc)
    assert exc.__cause__ is None and exc.__suppress_context__


def test_503_is_a_source_error(fake: FakeArxiv, clock: FakeClock) -> None:
    fake.status = 503
    with client_for(fake, clock) as client, pytest.raises(SourceError) as caught:
        client.fetch(["1803.08494"])
    assert_clean(caught.value)
    assert "HTTP 503" in str(caught.value)


def test_400_reports_arxivs_reason(fake: FakeArxiv, clock: FakeClock) -> None:
    fake.status = 400
    with client_for(fake, clock) as client, pytest.raises(SourceError) as caught:
        client.fetch(["1803.08494"])
    assert_clean(caught.value)
    assert "HTTP 400" in str(caught.value) and "incorrect id format for 1803.08494" in str(caught.value)


def test_slow_server_times_out_within_the_wait(fake: FakeArxiv) -> None:
    fake.delay = 20.0  # far beyond the wait; stop() cuts it short
    client = ArxivClient(make_settings(fake.url, wait_seconds=0.5))
    started = time.monotonic()
    with client, pytest.raises(SourceError) as caught:
        client.fetch(["1803.08494"])
    # A coarse bound: it gave up on its own wait, not the server's 20 s.
    assert time.monotonic() - started < 10.0
    assert_clean(caught.value)
    assert "did not answer within 0.5 s" in str(caught.value)


def test_trickling_server_hits_the_overall_deadline(fake: FakeArxiv) -> None:
    # Every piece arrives well within httpx's read timeout; only the overall
    # deadline (read on the injected clock, 0.2 s per reading) stops it.
    fake.trickle = 0.02
    clock = FakeClock(tick=0.2)
    with client_for(fake, clock, wait_seconds=1.0) as client, pytest.raises(SourceError) as caught:
        client.fetch(["1803.08494", "1603.05027", "1601.06759"])
    assert_clean(caught.value)
    assert "did not answer within 1 s" in str(caught.value)


def test_malformed_body_is_a_source_error(fake: FakeArxiv, clock: FakeClock) -> None:
    fake.malformed = True
    with client_for(fake, clock) as client, pytest.raises(SourceError) as caught:
        client.fetch(["1803.08494"])
    assert_clean(caught.value)
    assert "not well-formed XML" in str(caught.value)


def test_html_page_with_200_is_a_source_error(fake: FakeArxiv, clock: FakeClock) -> None:
    fake.raw_body = b"<html><body>We are down for maintenance</body></html>"
    with client_for(fake, clock) as client, pytest.raises(SourceError) as caught:
        client.fetch(["1803.08494"])
    assert "not an Atom feed" in str(caught.value)


def test_oversized_answer_is_refused(fake: FakeArxiv, clock: FakeClock) -> None:
    with client_for(fake, clock, max_bytes=1024) as client, pytest.raises(SourceError) as caught:
        client.fetch(["1803.08494", "1603.05027", "1601.06759"])
    assert "larger than 1024 bytes" in str(caught.value)


def test_connection_refused_is_a_source_error(clock: FakeClock) -> None:
    server = FakeArxiv().start()
    url = server.url
    server.stop()
    client = ArxivClient(make_settings(url), clock=clock, sleep=clock.sleep)
    with client, pytest.raises(SourceError) as caught:
        client.fetch(["1803.08494"])
    assert_clean(caught.value)
    assert "arXiv request failed" in str(caught.value)


def test_a_client_passed_in_stays_open(fake: FakeArxiv, clock: FakeClock) -> None:
    with httpx.Client() as http:
        arxiv = ArxivClient(make_settings(fake.url), client=http, clock=clock, sleep=clock.sleep)
        assert set(arxiv.fetch(["1601.06759"])) == {"1601.06759"}
        arxiv.close()
        assert not http.is_closed
    assert "ShortScienceFeedBot" in fake.user_agents[0]


# ---- parsing ----


def test_parse_puts_primary_category_first_once() -> None:
    paper = replace(PIXEL_RNN, primary_category="cs.LG", categories=("cs.CV", "cs.LG", "cs.NE", "cs.CV"))
    details = parse_arxiv_atom(render_feed(["1601.06759"], {"1601.06759": paper}))
    assert details["1601.06759"].categories == ("cs.LG", "cs.CV", "cs.NE")


def test_parse_keys_by_id_without_version() -> None:
    body = render_feed(["1803.08494v2", "1603.05027"])
    assert set(parse_arxiv_atom(body)) == {"1803.08494", "1603.05027"}
    assert b"<id>http://arxiv.org/abs/1803.08494v2</id>" in body


def test_parse_error_entries_only_is_empty() -> None:
    assert parse_arxiv_atom(render_feed(["1712.99999"], {})) == {}


def test_parse_refuses_entities_and_doctype(tmp_path: Any) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    body = (
        f'<?xml version="1.0"?><!DOCTYPE feed [<!ENTITY x SYSTEM "file://{secret}">]>'
        '<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>http://arxiv.org/abs/1803.08494v1</id>'
        "<title>&x;</title></entry></feed>"
    ).encode()
    with pytest.raises(SourceError) as caught:
        parse_arxiv_atom(body)
    assert "TOP-SECRET" not in str(caught.value)


def test_parse_fixture_papers_round_trip() -> None:
    details = parse_arxiv_atom(render_feed(list(PAPERS)))
    assert {k: (d.title, d.authors) for k, d in details.items()} == {
        p.arxiv_id: (" ".join(p.title.split()), p.authors) for p in PAPERS.values()
    }
    assert details[GROUP_NORMALIZATION.arxiv_id].published == datetime(2018, 3, 22, 17, 52, 41, tzinfo=UTC)
    assert details[IDENTITY_MAPPINGS.arxiv_id].categories == ("cs.CV",)


# ---- ids and URLs ----


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1803.08494", "1803.08494"),
        ("1803.08494v3", "1803.08494"),
        ("arXiv:1803.08494v2", "1803.08494"),
        ("ARXIV:1803.08494", "1803.08494"),
        ("  1803.08494\n", "1803.08494"),
        ("https://arxiv.org/abs/1803.08494v3", "1803.08494"),
        ("http://arxiv.org/pdf/1803.08494v1.pdf", "1803.08494"),
        ("http://export.arxiv.org/abs/2101.00001", "2101.00001"),
        ("0704.0001", "0704.0001"),
        ("2312.12345v10", "2312.12345"),
        ("hep-th/9901001", "hep-th/9901001"),
        ("hep-th/9901001v2", "hep-th/9901001"),
        ("arXiv:cond-mat/0102536v1", "cond-mat/0102536"),
        ("math.GT/0309136", "math/0309136"),
        ("HEP-TH/9901001", "hep-th/9901001"),
        ("http://arxiv.org/abs/hep-th/9711200v3", "hep-th/9711200"),
        ("", None),
        ("junk", None),
        ("1813.08494", None),  # no month 13
        ("1803.084", None),
        ("1803.084945", None),
        ("1803.08494v", None),
        ("hep-th/99010", None),
        ("http://example.com/abs/1803.08494", None),
        ("1803.08494,1603.05027", None),
        ("1803.08494; DROP TABLE papers", None),
        ("http://arxiv.org/api/errors#incorrect_id_format_for_x", None),
    ],
)
def test_normalise_arxiv_id(raw: str, expected: str | None) -> None:
    assert normalise_arxiv_id(raw) == expected


def test_paper_url() -> None:
    from bot.records import PaperDetails
    from bot.render.posts import paper_url

    assert paper_url(None, "1803.08494") == "https://arxiv.org/abs/1803.08494"
    assert paper_url(None, "hep-th/9901001") == "https://arxiv.org/abs/hep-th/9901001"
    assert (
        paper_url(PaperDetails("1803.08494", "T", (), None, ()), "1803.08494v2") == "https://arxiv.org/abs/1803.08494"
    )
    assert paper_url(None, None) is None
    assert paper_url(None, 'x" onclick="y') is None  # an id that is not one never reaches a link
