"""`digest send` pays only for what it uses: no Markdown, MathML or sanitiser library when the render cache holds
every summary, and no TLS certificates loaded for a plain SMTP connection (nor once per pool connection)."""

from __future__ import annotations

import ast
import shutil
import sqlite3
import ssl
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import REPO, make_settings
from hypothesis import given, settings
from hypothesis import strategies as st
from smtp_server import SmtpTestServer

from bot.digest.issues import _teaser
from bot.mail import Digest, DigestComposer, Email, MailerPool, SmtpMailer
from bot.mail.compiled import CompiledTemplates
from bot.mail.message import DIGEST_HTML, DIGEST_TEXT
from bot.render.posts import cut_sentences
from bot.render.teaser import teaser_source
from bot.settings import Settings, sample_feed_path

#: what rendering a summary loads (bot.render.text, bot.render.html): none of it is needed to read the cache
RENDERING = ["markdown_it", "mdit_py_plugins", "latex2mathml", "pylatexenc", "nh3", "bot.render.markdown"]
#: what asking arXiv loads: not needed when the store has every paper's details
ARXIV = ["httpx", "lxml"]

PROBE = (
    "import gc, runpy, sys\n"
    "sys.argv = ['bot', 'digest', 'send', '--now']\n"
    "try:\n    runpy.run_module('bot', run_name='__main__')\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
    f"print('LOADED', [m for m in {RENDERING + ARXIV!r} if m in sys.modules])\n"
    "print('COLLECTIONS', [g['collections'] for g in gc.get_stats()], 'FROZEN', gc.get_freeze_count())\n"
)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A data folder after a first run (summaries stored, feeds built: the render cache filled) and one confirmed
    subscriber; and the environment of the commands."""
    root = tmp_path_factory.mktemp("lean")
    env = {
        "BOT_DATA_DIR": str(root / "var"),
        "BOT_CONFIG": str(REPO / "config" / "bot.toml"),
        "BOT_DRY_RUN": "1",
        "SECRET_KEY": "lean-digest-test-key-0123456789abcdef",
        "PATH": "/usr/bin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for cmd in (["run", "--once", "--backfill", "3"], ["subscribers", "add", "reader@example.org", "--confirmed"]):
        subprocess.run([sys.executable, "-m", "bot", *cmd], env=env, cwd=root, check=True, capture_output=True)
    # The same feed, not as the bundled sample: paper details come from the arXiv client (the store's cache
    # holds them all, from the bundled details of the first run).
    shutil.copy(sample_feed_path(), root / "feed.xml")
    return root, {**env, "SHORTSCIENCE_FEED_URL": str(root / "feed.xml")}


def digest_send(root: Path, env: dict[str, str], data: Path) -> str:
    """`digest send --now` in a fresh interpreter on the data folder `data`: its output and the LOADED line."""
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**env, "BOT_DATA_DIR": str(data)},
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_digest_send_with_cached_renders_loads_no_renderer(published: tuple[Path, dict[str, str]]) -> None:
    root, env = published
    data = shutil.copytree(root / "var", root / "cached")
    with sqlite3.connect(data / "bot.sqlite3") as db:
        uncached = db.execute("SELECT COUNT(*) FROM summaries WHERE id NOT IN (SELECT summary_id FROM renders)")
        assert uncached.fetchone() == (0,)
    out = digest_send(root, env, data)
    assert "summaries, 1 recipient): 1 sent" in out
    assert "LOADED []" in out


def test_the_probe_sees_the_renderer_when_the_cache_lacks_the_summaries(
    published: tuple[Path, dict[str, str]],
) -> None:
    # The same command with the render cache emptied renders the teasers' text: the probe above can fail.
    root, env = published
    data = shutil.copytree(root / "var", root / "emptied")
    with sqlite3.connect(data / "bot.sqlite3") as db:
        db.execute("DELETE FROM renders")
    out = digest_send(root, env, data)
    assert "summaries, 1 recipient): 1 sent" in out
    assert "'markdown_it'" in out


def test_digest_send_has_the_collector_skip_what_its_imports_made(published: tuple[Path, dict[str, str]]) -> None:
    # Left alone, the collector walks the ~100,000 objects of the imports many times, once in a full
    # collection; frozen after the imports, they are never walked and no full collection happens.
    root, env = published
    out = digest_send(root, env, shutil.copytree(root / "var", root / "collected"))
    assert "1 sent" in out
    counts, frozen = out.split("COLLECTIONS ")[1].split(" FROZEN ")
    _young, _middle, full = ast.literal_eval(counts)
    assert int(frozen) > 50_000
    assert full == 0


def _settings(tmp_path: Path, url: str) -> Settings:
    return make_settings(tmp_path, {"SMTP_URL": url, "DIGEST_FROM": "digest@example.org", "SECRET_KEY": "k" * 32})


def test_plain_smtp_loads_no_tls_certificates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[ssl.SSLContext] = []
    real = ssl.create_default_context

    def counting(*args: object, **kwargs: object) -> ssl.SSLContext:
        made.append(real(*args, **kwargs))  # type: ignore[arg-type]
        return made[-1]

    monkeypatch.setattr(ssl, "create_default_context", counting)
    message = b"From: digest@example.org\r\nTo: a@example.net\r\nSubject: hello\r\n\r\nhello\r\n"
    with SmtpTestServer() as server:
        settings = _settings(tmp_path, server.url())
        pool = MailerPool([SmtpMailer(settings) for _ in range(4)])
        try:
            report = pool.send_all(
                [Email(to="a@example.net", message_id="<1@example.org>", data=message)], lambda e, exc: None
            )
        finally:
            pool.close()
        assert report.stopped is None and server.recipients() == ["a@example.net"]
    assert made == []


def test_tls_mailers_share_one_default_context(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "smtp://127.0.0.1:2525?starttls=1")
    first, second = SmtpMailer(settings), SmtpMailer(settings)
    assert isinstance(first.ssl_context, ssl.SSLContext)
    assert first.ssl_context is second.ssl_context


#: pieces of plain-text renderings: words, sentence ends, abbreviations, blank lines, code blocks, runs of spaces
PIECES = st.sampled_from(
    ["word", "Word", ". ", "e.g. ", " ", "   ", "\n", "\n\n", "\n\n    code", "!", "x" * 60, "A. "]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(PIECES, max_size=80).map("".join), st.integers(min_value=50, max_value=120))
def test_the_digest_teaser_reads_a_head_and_cuts_where_the_whole_text_would(text: str, limit: int) -> None:
    assert _teaser(text, limit) == cut_sentences(teaser_source(text), limit)


def test_a_second_composer_finds_the_digest_templates_compiled(tmp_path: Path) -> None:
    # Another process mailing the next digest: its environment loads the compiled templates.
    settings = make_settings(tmp_path, {"DIGEST_FROM": "digest@example.org"})
    start = datetime(2026, 11, 2, tzinfo=UTC)
    DigestComposer(settings).compose(Digest(1, start, start + timedelta(days=7), ()))
    env = DigestComposer(settings).env
    assert env.bytecode_cache is not None and env.loader is not None
    for name in (DIGEST_HTML, DIGEST_TEXT):
        source, filename, _ = env.loader.get_source(env, name)
        assert env.bytecode_cache.get_bucket(env, name, filename, source).code is not None, name


def test_a_cache_that_cannot_be_written_only_costs_a_compile(tmp_path: Path) -> None:
    composer = DigestComposer(make_settings(tmp_path, {"DIGEST_FROM": "digest@example.org"}))
    composer.env.bytecode_cache = CompiledTemplates(str(tmp_path / "no-such-folder"))
    start = datetime(2026, 11, 2, tzinfo=UTC)
    assert "#1" in composer.compose(Digest(1, start, start + timedelta(days=7), ())).subject
