"""A local stand-in for the arXiv API (export.arxiv.org/api/query), for tests.

A threaded http.server on 127.0.0.1 that answers ``id_list`` queries with Atom
shaped like arXiv's, from a dict of fixture papers, and can be switched to
misbehave (503, a slow answer, a trickled body, a malformed body). Every
request's query string is kept in ``.requests``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit
from xml.sax.saxutils import escape, quoteattr

ARXIV_NS = "http://arxiv.org/schemas/atom"
OPENSEARCH_NS = "http://a9.com/-/spec/opensearch/1.1/"


@dataclass(frozen=True)
class FakePaper:
    """One paper as arXiv's API describes it."""

    #: the id with its latest version, as in the entry's <id>
    versioned_id: str
    #: the title as arXiv sends it (long ones wrapped with newline + two spaces)
    title: str
    authors: tuple[str, ...]
    #: first version, RFC 3339 (arXiv's <published>)
    published: str
    #: latest version, RFC 3339 (arXiv's <updated>)
    updated: str
    primary_category: str
    #: every <category>, primary included, in arXiv's order
    categories: tuple[str, ...]
    summary: str
    comment: str = ""

    @property
    def arxiv_id(self) -> str:
        return self.versioned_id.rsplit("v", 1)[0]


# Real papers; titles, authors, dates and categories as arXiv lists them
# (times of day and abstracts' wrapping are illustrative).
GROUP_NORMALIZATION = FakePaper(
    versioned_id="1803.08494v3",
    title="Group Normalization",
    authors=("Yuxin Wu", "Kaiming He"),
    published="2018-03-22T17:52:41Z",
    updated="2018-06-11T17:58:46Z",
    primary_category="cs.CV",
    categories=("cs.CV", "cs.LG"),
    summary=(
        "  Batch Normalization (BN) is a milestone technique in the development of deep\n"
        "learning, enabling various networks to train. However, normalizing along the\n"
        "batch dimension introduces problems --- BN's error increases rapidly when the\n"
        "batch size becomes smaller, caused by inaccurate batch statistics estimation.\n"
    ),
    comment="v3: Update trained detection models and beta/gamma initialization",
)
IDENTITY_MAPPINGS = FakePaper(
    versioned_id="1603.05027v3",
    title="Identity Mappings in Deep Residual Networks",
    authors=("Kaiming He", "Xiangyu Zhang", "Shaoqing Ren", "Jian Sun"),
    published="2016-03-16T17:59:24Z",
    updated="2016-07-25T20:35:11Z",
    primary_category="cs.CV",
    categories=("cs.CV",),
    summary=(
        "  Deep residual networks have emerged as a family of extremely deep\n"
        "architectures showing compelling accuracy and nice convergence behaviors. In\n"
        "this paper, we analyze the propagation formulations behind the residual\n"
        "building blocks, which suggest that the forward and backward signals can be\n"
        "directly propagated from one block to any other block, when using identity\n"
        "mappings as the skip connections and after-addition activation.\n"
    ),
    comment="ECCV 2016 camera-ready",
)
PIXEL_RNN = FakePaper(
    versioned_id="1601.06759v3",
    title="Pixel Recurrent Neural Networks",
    authors=("Aaron van den Oord", "Nal Kalchbrenner", "Koray Kavukcuoglu"),
    published="2016-01-25T18:58:09Z",
    updated="2016-08-19T14:14:49Z",
    primary_category="cs.CV",
    categories=("cs.CV", "cs.LG", "cs.NE"),
    summary=(
        "  Modeling the distribution of natural images is a landmark problem in\n"
        "unsupervised learning. This task requires an image model that is at once\n"
        "expressive, tractable and scalable.\n"
    ),
)
# An old-style id, and a title long enough for arXiv to wrap it.
LARGE_N_LIMIT = FakePaper(
    versioned_id="hep-th/9711200v3",
    title="The Large N Limit of Superconformal Field Theories and\n  Supergravity",
    authors=("Juan M. Maldacena",),
    published="1997-11-27T23:05:10Z",
    updated="1998-01-22T21:29:24Z",
    primary_category="hep-th",
    categories=("hep-th",),
    summary=(
        "  We show that the large N limit of certain conformal field theories in\nvarious dimensions include in "
        "their Hilbert space a sector describing supergravity.\n"
    ),
)

#: the fixture papers by version-less id
PAPERS: dict[str, FakePaper] = {
    p.arxiv_id: p for p in (GROUP_NORMALIZATION, IDENTITY_MAPPINGS, PIXEL_RNN, LARGE_N_LIMIT)
}


def _paper_entry(paper: FakePaper, requested_version: str | None) -> str:
    vid = f"{paper.arxiv_id}{requested_version}" if requested_version else paper.versioned_id
    authors = "".join(f"    <author>\n      <name>{escape(a)}</name>\n    </author>\n" for a in paper.authors)
    comment = (
        f'    <arxiv:comment xmlns:arxiv="{ARXIV_NS}">{escape(paper.comment)}</arxiv:comment>\n'
        if paper.comment
        else ""
    )
    categories = "".join(
        f'    <category term={quoteattr(c)} scheme="http://arxiv.org/schemas/atom"/>\n' for c in paper.categories
    )
    return (
        "  <entry>\n"
        f"    <id>http://arxiv.org/abs/{vid}</id>\n"
        f"    <updated>{paper.updated}</updated>\n"
        f"    <published>{paper.published}</published>\n"
        f"    <title>{escape(paper.title)}</title>\n"
        f"    <summary>{escape(paper.summary)}</summary>\n"
        f"{authors}{comment}"
        f'    <link href="http://arxiv.org/abs/{vid}" rel="alternate" type="text/html"/>\n'
        f'    <link title="pdf" href="http://arxiv.org/pdf/{vid}" rel="related" type="application/pdf"/>\n'
        f'    <arxiv:primary_category xmlns:arxiv="{ARXIV_NS}" term={quoteattr(paper.primary_category)} scheme="http://arxiv.org/schemas/atom"/>\n'
        f"{categories}"
        "  </entry>\n"
    )


def _error_entry(raw_id: str) -> str:
    # arXiv's own wording for an id it cannot place (its error entries carry an author too).
    slug = "incorrect_id_format_for_" + raw_id
    return (
        "  <entry>\n"
        f"    <id>http://arxiv.org/api/errors#{escape(slug)}</id>\n"
        "    <title>Error</title>\n"
        f"    <summary>incorrect id format for {escape(raw_id)}</summary>\n"
        "    <updated>2024-05-06T00:00:00-04:00</updated>\n"
        f'    <link href="http://arxiv.org/api/errors#{escape(slug)}" rel="alternate" type="text/html"/>\n'
        "    <author>\n      <name>arXiv api core</name>\n    </author>\n"
        "  </entry>\n"
    )


# What arXiv has been seen to send for a well-formed id it does not have: an entry without an id.
_GHOST_ENTRY = "  <entry>\n    <updated>2024-05-06T00:00:00-04:00</updated>\n    <title/>\n    <summary/>\n  </entry>\n"


def render_feed(
    id_list: Sequence[str],
    papers: Mapping[str, FakePaper] = PAPERS,
    *,
    ghost_unknown: bool = False,
    max_results: int = 10,
) -> bytes:
    """The Atom document arXiv would send for `id_list` (unknown ids as error or ghost entries)."""
    entries = []
    for raw in id_list:
        base, sep, version = raw.rpartition("v")
        if not (sep and version.isdigit() and base in papers):
            base, version = raw, ""
        paper = papers.get(base)
        if paper is not None:
            entries.append(_paper_entry(paper, f"v{version}" if version else None))
        else:
            entries.append(_GHOST_ENTRY if ghost_unknown else _error_entry(raw))
    ids = ",".join(id_list)
    query = f"search_query=&id_list={ids}&start=0&max_results={max_results}"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<feed xmlns="http://www.w3.org/2005/Atom">\n'
        f'  <link href="http://arxiv.org/api/query?{quote(query, safe="")}" rel="self" type="application/atom+xml"/>\n'
        f'  <title type="html">ArXiv Query: {escape(query)}</title>\n'
        "  <id>http://arxiv.org/api/Qd7a2kqmhzHa9cX2V4Xc2vJQG1E</id>\n"
        "  <updated>2024-05-06T00:00:00-04:00</updated>\n"
        f'  <opensearch:totalResults xmlns:opensearch="{OPENSEARCH_NS}">{len(entries)}</opensearch:totalResults>\n'
        f'  <opensearch:startIndex xmlns:opensearch="{OPENSEARCH_NS}">0</opensearch:startIndex>\n'
        f'  <opensearch:itemsPerPage xmlns:opensearch="{OPENSEARCH_NS}">{max_results}</opensearch:itemsPerPage>\n'
        + "".join(entries)
        + "</feed>\n"
    ).encode("utf-8")


class FakeArxiv:
    """The fake server. Set the switches before (or between) requests.

    ``status``: answer this HTTP status (4xx with arXiv's error feed, 5xx with
    an HTML page); ``delay``: seconds to wait before answering; ``trickle``:
    seconds between 64-byte pieces of the body; ``malformed``: send a cut-off
    feed; ``raw_body``: send these bytes as the 200 body; ``ghost_unknown``:
    answer unknown ids with id-less entries instead of error entries.
    """

    def __init__(self, papers: Mapping[str, FakePaper] = PAPERS) -> None:
        self.papers = dict(papers)
        self.status = 200
        self.delay = 0.0
        self.trickle = 0.0
        self.malformed = False
        self.raw_body: bytes | None = None
        self.ghost_unknown = False
        #: the query string of every request, in order
        self.requests: list[str] = []
        #: the User-Agent header of every request, in order
        self.user_agents: list[str] = []
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The API endpoint to put in settings.arxiv.api_url."""
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/api/query"

    def id_lists(self) -> list[list[str]]:
        """The id_list of each request, split on commas."""
        out = []
        for query in self.requests:
            values = parse_qs(query).get("id_list", [""])
            out.append(values[0].split(",") if values[0] else [])
        return out

    def start(self) -> FakeArxiv:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                try:
                    fake._answer(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test): nothing to tell it

        self._stopping.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-arxiv", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a delay or trickle
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeArxiv:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        if parts.path != "/api/query":
            self._send(handler, 404, b"not found", "text/plain")
            return
        self.requests.append(parts.query)
        self.user_agents.append(handler.headers.get("User-Agent", ""))
        query = parse_qs(parts.query)
        id_list = [i for i in query.get("id_list", [""])[0].split(",") if i]
        max_results = int(query.get("max_results", ["10"])[0])
        if self.delay and self._stopping.wait(self.delay):
            return
        if self.status >= 500:
            page = b"<html><head><title>503 Service Unavailable</title></head><body>Service Unavailable</body></html>"
            self._send(handler, self.status, page, "text/html", {"Retry-After": "30"})
            return
        if self.status >= 400:
            body = render_feed(id_list[:1] or [""], {}, max_results=max_results)
            self._send(handler, self.status, body, "application/atom+xml; charset=utf-8")
            return
        if self.raw_body is not None:
            body = self.raw_body
        else:
            body = render_feed(id_list, self.papers, ghost_unknown=self.ghost_unknown, max_results=max_results)
            if self.malformed:
                body = body[: len(body) // 2]
        self._send(handler, self.status, body, "application/atom+xml; charset=utf-8")

    def _send(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        if not self.trickle:
            handler.wfile.write(body)
            return
        for start in range(0, len(body), 64):
            handler.wfile.write(body[start : start + 64])
            handler.wfile.flush()
            if self._stopping.wait(self.trickle):
                return
