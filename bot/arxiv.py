"""The arXiv API client: paper details (title, authors, date, categories) for arXiv ids.

It owns talking to arXiv politely (batched ids, one request per
``min_interval_seconds``, a hard deadline) and parsing its Atom answers. It
never touches the store: caching details and deciding to publish without them
are the pipeline's business.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlencode

from bot.errors import ArxivError, SourceError
from bot.records import PaperDetails
from bot.settings import Settings

if TYPE_CHECKING:
    # Loaded when a request goes out (~110 ms): a digest or feeds build whose papers are all in the store's
    # cache builds a client and never asks arXiv.
    import httpx
    from lxml import etree

ATOM = "http://www.w3.org/2005/Atom"
ARXIV = "http://arxiv.org/schemas/atom"
_NS = {"atom": ATOM, "arxiv": ARXIV}

# New-style ids (April 2007 on): YYMM.NNNN, five digits from 2015; optional version.
_NEW_ID = re.compile(r"(?P<id>\d{2}(?:0[1-9]|1[0-2])\.\d{4,5})(?:v\d+)?")
# Old-style ids: archive[.SUBJECT-CLASS]/YYMMNNN. The subject class is not part of
# the paper's identity (arXiv answers math.GT/0309136 as math/0309136), so it is dropped.
_OLD_ID = re.compile(
    r"(?P<archive>[a-z]+(?:-[a-z]+)*)(?:\.[a-z][a-z-]*)?/(?P<num>\d{2}(?:0[1-9]|1[0-2])\d{3})(?:v\d+)?",
    re.IGNORECASE,
)
# What people paste around an id: "arXiv:", an abs/pdf URL, a ".pdf" suffix.
_PREFIX = re.compile(r"^(?:arxiv:|(?:https?://)?(?:[a-z0-9-]+\.)*arxiv\.org/(?:abs|pdf)/)", re.IGNORECASE)

# arXiv reports a bad request as an <entry> whose <id> points into its error docs.
_ERROR_ID_MARK = "arxiv.org/api/errors"


class PaperSource(Protocol):
    """Where paper details come from: the arXiv API, or the details bundled with the sample feed."""

    def fetch(self, ids: Sequence[str]) -> dict[str, PaperDetails]:
        """Details of the papers `ids` name, by normalised id; unknown ids are absent. SourceError on failure."""
        ...

    def close(self) -> None: ...


def normalise_arxiv_id(raw: str) -> str | None:
    """The canonical, version-less arXiv id in `raw`, or None if it is not one.

    "arXiv:1803.08494v2" → "1803.08494"; "https://arxiv.org/abs/hep-th/9901001v1"
    → "hep-th/9901001"; "math.GT/0309136" → "math/0309136".
    """
    text = _PREFIX.sub("", raw.strip())
    if text.lower().endswith(".pdf"):
        text = text[: -len(".pdf")]
    new = _NEW_ID.fullmatch(text)
    if new:
        return new.group("id")
    old = _OLD_ID.fullmatch(text)
    if old:
        return f"{old.group('archive').lower()}/{old.group('num')}"
    return None


def _parser() -> etree.XMLParser:
    from lxml import etree

    # Untrusted bytes from the network: no entities, no DTD, no network, no huge trees.
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
    )


def _text(element: etree._Element | None) -> str:
    """An element's text with arXiv's line wrapping (newline + two spaces) folded."""
    if element is None:
        return ""
    return " ".join("".join(element.itertext()).split())


def _parse_time(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _read_feed(body: bytes) -> etree._Element:
    """The root <feed> of an arXiv answer; SourceError if it is not one."""
    from lxml import etree

    try:
        tree = etree.fromstring(body, parser=_parser()).getroottree()
    except etree.XMLSyntaxError as exc:
        raise SourceError(f"arXiv answer is not well-formed XML: {exc}") from None
    # arXiv never sends a DOCTYPE; one means a proxy page or a hostile body.
    if tree.docinfo.doctype:
        raise SourceError("arXiv answer has a DOCTYPE; refusing to read it")
    root = tree.getroot()
    if root.tag != f"{{{ATOM}}}feed":
        raise SourceError(f"arXiv answer is not an Atom feed (root element {etree.QName(root).localname!r})")
    return root


def parse_arxiv_atom(body: bytes) -> dict[str, PaperDetails]:
    """The papers in an arXiv API answer, by normalised id.

    Error entries (an unknown or badly formed id) and the id-less entries
    arXiv has been seen to return for unknown ids are left out: those ids are
    "not found". A body that is not an Atom feed raises SourceError.
    """
    root = _read_feed(body)
    papers: dict[str, PaperDetails] = {}
    for entry in root.iterfind("atom:entry", _NS):
        raw_id = _text(entry.find("atom:id", _NS))
        if not raw_id or _ERROR_ID_MARK in raw_id:
            continue
        arxiv_id = normalise_arxiv_id(raw_id)
        title = _text(entry.find("atom:title", _NS))
        if arxiv_id is None or not title:
            continue
        authors = tuple(
            name for name in (_text(a.find("atom:name", _NS)) for a in entry.iterfind("atom:author", _NS)) if name
        )
        categories: list[str] = []
        primary = entry.find("arxiv:primary_category", _NS)
        terms = [primary.get("term", "")] if primary is not None else []
        terms += [c.get("term", "") for c in entry.iterfind("atom:category", _NS)]
        for term in terms:
            term = term.strip()
            if term and term not in categories:
                categories.append(term)
        papers[arxiv_id] = PaperDetails(
            arxiv_id=arxiv_id,
            title=title,
            authors=authors,
            published=_parse_time(_text(entry.find("atom:published", _NS))),
            categories=tuple(categories),
        )
    return papers


def _error_summary(body: bytes) -> str | None:
    """The text of arXiv's error entry in a rejected request's body, if it has one."""
    try:
        root = _read_feed(body)
    except SourceError:
        return None
    for entry in root.iterfind("atom:entry", _NS):
        if _ERROR_ID_MARK in _text(entry.find("atom:id", _NS)):
            return _text(entry.find("atom:summary", _NS)) or None
    return None


def _chunks(ids: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


class ArxivClient:
    """Asks the arXiv API for paper details, at most one request per interval.

    Not thread-safe: one client per thread (the spacing is per client, so a
    process should share one client across its fetches).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings.arxiv
        # The feed bot identifies itself the same way to every server it polls.
        self._headers = {"User-Agent": settings.source.user_agent, "Accept": "application/atom+xml"}
        self._own_client = client is None
        self._client = client  # made on the first request when None
        self._clock = clock
        self._sleep = sleep
        #: when (on `clock`) the last request went out, for the spacing arXiv asks for
        self._last_request: float | None = None

    def __enter__(self) -> ArxivClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client if this object made it (a client passed in is the caller's)."""
        if self._own_client and self._client is not None:
            self._client.close()

    def _http(self) -> httpx.Client:
        if self._client is None:
            import httpx

            self._client = httpx.Client(follow_redirects=True)
        return self._client

    def fetch(self, ids: Sequence[str]) -> dict[str, PaperDetails]:
        """Details of the papers `ids` name, by normalised id; ids arXiv does not know are absent.

        Ids that are not arXiv ids are never sent (one bad id makes arXiv
        reject the whole batch) and come back absent. The whole call, pauses
        between batches included, ends within about ``wait_seconds``; past it,
        or on any transport or format failure, raises ArxivError (a SourceError).
        """
        wanted = list(dict.fromkeys(n for n in (normalise_arxiv_id(i) for i in ids) if n is not None))
        if not wanted:
            return {}
        deadline = self._clock() + self._settings.wait_seconds
        found: dict[str, PaperDetails] = {}
        for batch in _chunks(wanted, self._settings.batch_size):
            try:
                body = self._request(batch, deadline)
                papers = parse_arxiv_atom(body)
            except SourceError as exc:
                raise ArxivError(str(exc), found=dict(found)) from None
            # Only what was asked: arXiv may answer another version's or a stray entry.
            found.update({i: papers[i] for i in batch if i in papers})
        return found

    def _wait_turn(self, deadline: float) -> None:
        """Sleep until arXiv's minimum interval since our last request has passed."""
        if self._last_request is None:
            return
        now = self._clock()
        gap = self._last_request + self._settings.min_interval_seconds - now
        if gap <= 0:
            return
        if now + gap >= deadline:
            raise SourceError(
                f"arXiv request not sent: the next slot (in {gap:.1f} s, arxiv.min_interval_seconds) "
                f"is past the {self._settings.wait_seconds:g} s wait (arxiv.wait_seconds)"
            )
        self._sleep(gap)

    def _query_url(self, batch: Sequence[str]) -> str:
        # Commas and slashes stay literal, as in arXiv's own examples.
        query = urlencode({"id_list": ",".join(batch), "max_results": len(batch)}, safe=",/")
        base = self._settings.api_url
        return f"{base}{'&' if '?' in base else '?'}{query}"

    def _request(self, batch: Sequence[str], deadline: float) -> bytes:
        """One GET for one batch, bounded by `deadline` as a whole (not only per read)."""
        self._wait_turn(deadline)
        remaining = deadline - self._clock()
        wait = self._settings.wait_seconds
        timed_out = f"arXiv did not answer within {wait:g} s (arxiv.wait_seconds)"
        if remaining <= 0:
            raise SourceError(timed_out)
        self._last_request = self._clock()
        client = self._http()
        import httpx  # loaded by _http

        try:
            with client.stream(
                "GET", self._query_url(batch), headers=self._headers, timeout=httpx.Timeout(remaining)
            ) as response:
                body = self._read_body(response, deadline, timed_out)
                status = response.status_code
        except httpx.TimeoutException:
            raise SourceError(timed_out) from None
        except httpx.HTTPError as exc:
            raise SourceError(f"arXiv request failed: {type(exc).__name__}: {exc}") from None
        except httpx.InvalidURL as exc:
            raise SourceError(f"arXiv request failed: bad arxiv.api_url {self._settings.api_url!r}: {exc}") from None
        if status != 200:
            reason = _error_summary(body) if 400 <= status < 500 else None
            raise SourceError(
                f"arXiv answered HTTP {status} for {len(batch)} id(s)" + (f": {reason}" if reason else "")
            )
        return body

    def _read_body(self, response: httpx.Response, deadline: float, timed_out: str) -> bytes:
        # httpx's read timeout restarts with every chunk; a server that trickles
        # bytes would outlast it, so the deadline is checked between chunks too.
        limit = self._settings.max_bytes
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise SourceError(f"arXiv answer is larger than {limit} bytes (arxiv.max_bytes)")
            if self._clock() > deadline:
                raise SourceError(timed_out)
            chunks.append(chunk)
        return b"".join(chunks)


def bundled_papers_path() -> Path:
    """The paper details of the bundled sample feed's papers (bot/data/sample-papers.json)."""
    return Path(__file__).parent / "data" / "sample-papers.json"


class BundledPapers:
    """Paper details read from a JSON file instead of arXiv: the bundled sample feed's papers.

    The quick start polls the bundled sample; answering its papers from a file
    keeps it offline and its posts the same on every machine. Ids the file does
    not hold are "not found", as arXiv would answer an unknown id.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or bundled_papers_path()
        raw = json.loads(self.path.read_text(encoding="utf-8"))["papers"]
        self._papers = {
            key: PaperDetails(
                arxiv_id=key,
                title=v["title"],
                authors=tuple(v["authors"]),
                published=_parse_time(v.get("published", "")),
                categories=tuple(v["categories"]),
            )
            for key, v in raw.items()
        }

    def fetch(self, ids: Sequence[str]) -> dict[str, PaperDetails]:
        wanted = (normalise_arxiv_id(i) for i in ids)
        return {i: self._papers[i] for i in wanted if i is not None and i in self._papers}

    def close(self) -> None:
        """Nothing to close: kept for the PaperSource interface."""
