"""feedparser's own test corpora for the tests: fetched from PyPI at test time, cached, served over HTTP.

The corpora ship in feedparser's source distribution only. They are downloaded
with pip (the installed version), unpacked under tests/artifacts/ (gitignored)
and reused by later runs; nothing of them is committed. ``CorpusServer`` serves
each file with the HTTP headers its own ``Header:`` comment lines ask for, the
way feedparser's test runner does, and compressed files with their
Content-Encoding.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import feedparser

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

#: the folders of feedparser's tests/ that hold ill-formed, encoding, entity and compressed feeds
FOLDERS = ("illformed", "encoding", "entities", "compression")
#: feedparser's sanitiser tests: hostile HTML (scripts, handlers, javascript: URLs, CSS expressions) in entries
SANITIZE = "wellformed/sanitize"

_HEADER = re.compile(rb"^Header:\s+([^:\r\n]+):([^\r\n]+)$", re.MULTILINE)


class CorpusUnavailable(Exception):
    """The source distribution could not be downloaded or unpacked (offline, PyPI down)."""


def corpus_root(folders: tuple[str, ...] = (*FOLDERS, SANITIZE)) -> Path:
    """feedparser's tests/ folder of the installed version, downloaded once; raises CorpusUnavailable."""
    version = feedparser.__version__
    root = ARTIFACTS / f"feedparser-{version}"
    if (root / ".complete").exists() and all((root / "tests" / folder).is_dir() for folder in folders):
        return root / "tests"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ARTIFACTS, prefix=".download-") as tmp:
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        try:
            run = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-binary",
                    ":all:",
                    "--no-deps",
                    "-q",
                    "-d",
                    tmp,
                    f"feedparser=={version}",
                ],
                capture_output=True,
                text=True,
                timeout=180,
                env=env,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CorpusUnavailable(f"pip download feedparser=={version} failed: {exc}") from None
        archives = sorted(Path(tmp).glob("feedparser-*.tar.gz"))
        if run.returncode != 0 or not archives:
            last = (run.stderr.strip().splitlines() or ["no archive"])[-1]
            raise CorpusUnavailable(f"pip download feedparser=={version} failed: {last}")
        unpacked = Path(tmp) / "unpacked"
        prefixes = tuple(f"feedparser-{version}/tests/{folder}/" for folder in folders)
        try:
            with tarfile.open(archives[0]) as tar:
                members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith(prefixes)]
                # filter="data": no absolute paths, no links out of the folder, no device files.
                tar.extractall(unpacked, members=members, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise CorpusUnavailable(f"unpacking {archives[0].name} failed: {exc}") from None
        if not members:
            raise CorpusUnavailable(f"{archives[0].name} holds no tests/ folder")
        (unpacked / f"feedparser-{version}" / ".complete").write_text(f"{len(members)} files\n")
        if root.exists():  # an earlier run stopped half-way
            shutil.rmtree(root)
        os.replace(unpacked / f"feedparser-{version}", root)
    return root / "tests"


@dataclass(frozen=True)
class CorpusFile:
    """One feed of the corpus as it will be served."""

    #: folder/name, also the URL path
    name: str
    body: bytes
    #: the headers its comment lines ask for (Content-Type lower-cased as content-type)
    headers: dict[str, str]

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")

    def decoded(self) -> bytes | None:
        """The body as an HTTP client sees it after Content-Encoding; None when it cannot be decoded."""
        encoding = self.headers.get("content-encoding")
        try:
            if encoding == "gzip":
                return gzip.decompress(self.body)
            if encoding == "deflate":
                try:
                    return zlib.decompress(self.body)
                except zlib.error:  # raw deflate without the zlib header: clients accept it too
                    return zlib.decompress(self.body, -zlib.MAX_WBITS)
        except (OSError, EOFError, zlib.error):
            return None
        return self.body

    def with_decoded(self, body: bytes) -> CorpusFile:
        """A copy whose decoded body is `body` (encoded again as this one is)."""
        encoding = self.headers.get("content-encoding")
        if encoding == "gzip":
            body = gzip.compress(body)
        elif encoding == "deflate":
            body = zlib.compress(body)
        return CorpusFile(self.name, body, self.headers)


def corpus_files(tests_dir: Path, folders: tuple[str, ...] = FOLDERS) -> list[CorpusFile]:
    out = []
    for folder in folders:
        for path in sorted((tests_dir / folder).rglob("*")):
            if not path.is_file():
                continue
            body = path.read_bytes()
            name = path.relative_to(tests_dir).as_posix()
            if folder == "compression":
                encoding = "gzip" if path.suffix == ".gz" else "deflate"
                headers = {"content-type": "application/xml", "content-encoding": encoding}
            else:
                headers = {
                    k.decode("latin-1").strip().lower(): v.decode("latin-1").strip() for k, v in _HEADER.findall(body)
                }
                headers.pop("status", None)  # none in these folders; redirects are not what is tested here
            out.append(CorpusFile(name, body, headers))
    return out


class CorpusServer:
    """Serves CorpusFiles on 127.0.0.1 at /<folder>/<name>, with their own headers."""

    def __init__(self, files: list[CorpusFile]) -> None:
        self.files = {"/" + f.name: f for f in files}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: without this, Nagle's algorithm and
            # the client's delayed ACK hold every answer back for 40 ms.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                found = outer.files.get(self.path)
                if found is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                for name, value in found.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(found.body)))
                self.end_headers()
                self.wfile.write(found.body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, file: CorpusFile) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{file.name}"

    def __enter__(self) -> CorpusServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
