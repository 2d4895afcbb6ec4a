"""Digest sending benchmark (issue 6): `digest send` against plain smtplib, through the same SMTP sink.

An aiosmtpd sink runs in another process and counts messages (it keeps
none). First the floor: plain smtplib sending one pre-rendered digest message
(the same bytes as a real one) to N recipients, one after the other, over one
reused connection. Then `digest send --now` for N confirmed subscribers with
digest.connections = 1 and = 4, each in a fresh process on a fresh database
(built beforehand, not timed), so the peak RSS printed is the sending
process's own; with --scaling the 4-connection run is repeated with 2N
subscribers to show the RSS stays flat as N grows (subscribers are streamed).

The timed `digest send` is all of it: building the issue (one send row per
subscriber), claiming, the handing-over and sent commits, personalising each
message, SMTP. Prints `floor msgs_per_s=…`, `connections=1 msgs_per_s=…
ratio=…`, `connections=4 msgs_per_s=… ratio=…` (ratio = digest msgs/s ÷ floor
msgs/s; targets >= 0.7 and >= 1.5) and `peak_rss_mb …` (target <= 150), and for scale
what plain smtplib does over 4 connections with the same sink on the same machine.

The sink reads DATA in blocks instead of aiosmtpd's line-by-line reader (a
subclass of its SMTP class, commands unchanged): with the stock reader the
sink itself, at ~1 ms of CPU per message, is the bottleneck of every run and
the ratios would measure aiosmtpd, not the sender.

Usage: python benchmarks/digest.py [--subscribers N] [--database URL] [--no-scaling]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FROM = "ShortScience weekly <digest@example.org>"


# ---------------------------------------------------------------- the sink


def run_sink(data_delay: float = 0.0) -> None:
    """The SMTP sink (in its own process): prints its port, counts messages, answers 'count' on stdin.

    With `data_delay` (seconds) it answers the end of DATA (the message accepted, an e-mail's "post")
    that much later, as a remote server would; every other reply goes out at once."""
    import asyncio

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, syntax

    class Counter:
        n = 0

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            if data_delay:
                await asyncio.sleep(data_delay)
            Counter.n += 1
            return "250 OK: queued"

    class BlockDataSMTP(SMTP):
        @syntax("DATA")
        async def smtp_DATA(self, arg: str) -> None:
            assert self.envelope is not None
            if not self.envelope.rcpt_tos:
                await self.push("503 Error: need RCPT command")
                return
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            data = bytearray()
            while True:
                chunk = await self._reader.read(1 << 18)
                if not chunk:
                    return
                data += chunk
                # The client waits for our answer after the final dot, so it ends the buffer.
                if data.endswith(b"\r\n.\r\n") or data == b".\r\n":
                    break
            self.envelope.original_content = bytes(data)
            status = await self._call_handler_hook("DATA")
            self._set_post_data_state()
            await self.push(status)

    class SinkController(Controller):
        def factory(self) -> SMTP:
            return BlockDataSMTP(self.handler, **self.SMTP_kwargs)

        def _trigger_server(self) -> None:
            self.port = self.server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            super()._trigger_server()

    controller = SinkController(Counter(), hostname="127.0.0.1", port=0)
    controller.start()
    print(controller.port, flush=True)
    for line in sys.stdin:
        if line.strip() == "count":
            print(Counter.n, flush=True)
    controller.stop()


class Sink:
    """run_sink() as a process; `data_delay` > 0 (peers.py's stand-in latency) holds each end-of-DATA reply."""

    def __init__(self, data_delay: float = 0.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--sink", "--data-delay", str(data_delay)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def count(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# ---------------------------------------------------------------- the sender


def environment(data_dir: Path, port: int, connections: int, database: str | None) -> dict[str, str]:
    config = data_dir / "bot.toml"
    config.write_text(f"[arxiv]\nenabled = false\n\n[digest]\nconnections = {connections}\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TWITTER_", "FACEBOOK_", "BOT_", "SMTP_", "DATABASE_URL"))
    }
    env.update(
        BOT_DATA_DIR=str(data_dir / "var"),
        BOT_CONFIG=str(config),
        SMTP_URL=f"smtp://127.0.0.1:{port}",
        DIGEST_FROM=FROM,
        SECRET_KEY="benchmark-secret-key-0123456789",
        PUBLIC_BASE_URL="https://bot.example.org",
    )
    if database:
        env["DATABASE_URL"] = database
    return env


def child(args: argparse.Namespace) -> None:
    """`--setup`: a database with the sample feed's summaries and N confirmed subscribers.
    `--send`: one timed `digest send --now`; prints JSON (seconds, messages, peak RSS)."""
    from bot.app import build_app
    from bot.settings import load_settings

    app = build_app(load_settings(), arxiv=False)
    if args.setup:
        from bot.pipeline import poll

        poll(app, backfill=10)
        chunk = [(f"reader{i:07d}@example.net", ()) for i in range(args.subscribers)]
        for i in range(0, len(chunk), 1000):
            app.store.import_subscribers(chunk[i : i + 1000], now=app.clock(), confirmed=True, source="benchmark")
        # The floor sends exactly the bytes of one real message of this digest.
        from bot.digest import digest_items
        from bot.mail import Digest
        from bot.mail.tokens import signed_link

        news = app.store.summaries_first_seen_between(app.clock().replace(year=2000), app.clock())
        items = tuple(digest_items(app, news[: app.settings.digest.max_items]))
        now = app.clock()
        email = app.composer.compose(Digest(1, now, now, items)).for_recipient(
            "reader0000000@example.net",
            signed_link(app.settings, "unsubscribe", "reader0000000@example.net", now=now),
            signed_link(app.settings, "preferences", "reader0000000@example.net", now=now),
            now=now,
        )
        Path(args.message).write_bytes(email.as_bytes())
        app.close()
        return
    from bot.digest import send_digest

    start = time.perf_counter()
    out = send_digest(app, end_now=True)
    seconds = time.perf_counter() - start
    app.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": rss_mb, "report": out}))


def run_child(env: dict[str, str], *extra: str) -> dict[str, Any]:
    r = subprocess.run([sys.executable, __file__, *extra], env=env, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"child {' '.join(extra)} failed:\n{r.stdout}\n{r.stderr}")
    lines = r.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}


def floor(port: int, message: bytes, n: int, *, connections: int = 1) -> float:
    """msgs/s of plain smtplib: one pre-rendered message, n recipients, over `connections` reused
    connections (one thread each; 1 is the floor, 4 shows what this machine and sink allow)."""
    sender = "digest@example.org"

    def run(first: int, count: int) -> None:
        conn = smtplib.SMTP("127.0.0.1", port, local_hostname="example.org")
        conn.ehlo()
        for i in range(first, first + count):
            conn.sendmail(sender, [f"reader{i:07d}@example.net"], message)
        conn.quit()

    share = n // connections
    threads = [threading.Thread(target=run, args=(k * share, share)) for k in range(connections)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return share * connections / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=20_000, help="confirmed subscribers (default 20000)")
    ap.add_argument(
        "--database", help="a PostgreSQL URL to use (an empty database per run is made in it); default: SQLite files"
    )
    ap.add_argument("--no-scaling", action="store_true", help="skip the 2N run that shows RSS is flat as N grows")
    ap.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data-delay", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--setup", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--send", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--message", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sink:
        run_sink(args.data_delay)
        return
    if args.setup or args.send:
        child(args)
        return

    n = args.subscribers
    sink = Sink()
    made_dbs: list[str] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:

            def prepare(name: str, subscribers: int, connections: int) -> dict[str, str]:
                data_dir = Path(tmp) / name
                data_dir.mkdir()
                database = None
                if args.database:
                    database = _fresh_pg(args.database, name)
                    made_dbs.append(database)
                env = environment(data_dir, sink.port, connections, database)
                run_child(env, "--setup", "--subscribers", str(subscribers), "--message", str(data_dir / "message.eml"))
                return env

            runs = [("c1", n, 1), ("c4", n, 4)] + ([] if args.no_scaling else [("c4x2", 2 * n, 4)])
            envs = {name: prepare(name, subs, conns) for name, subs, conns in runs}
            message = (Path(tmp) / "c1" / "message.eml").read_bytes()
            print(
                f"subscribers={n} message_bytes={len(message)} database={'postgresql' if args.database else 'sqlite'}"
            )

            before = sink.count()
            floor_rate = floor(sink.port, message, n)
            assert sink.count() - before == n
            print(f"floor (plain smtplib, 1 connection, one pre-rendered message) msgs_per_s={floor_rate:.0f}")

            ceiling = floor(sink.port, message, n, connections=4)

            rss: list[str] = []
            for name, subs, conns in runs:
                before = sink.count()
                result = run_child(envs[name], "--send")
                got = sink.count() - before
                if got != subs:
                    raise SystemExit(
                        f"{name}: the sink got {got} messages for {subs} subscribers:\n{result.get('report')}"
                    )
                rate = subs / result["seconds"]
                label = f"connections={conns}" + (f" subscribers={subs}" if subs != n else "")
                if subs == n:
                    print(f"{label} msgs_per_s={rate:.0f} ratio={rate / floor_rate:.2f}")
                rss.append(f"connections={conns} subscribers={subs}: {result['peak_rss_mb']:.0f}")
            print("peak_rss_mb (sending process) " + "; ".join(rss))
            print(
                f"for scale: plain smtplib over 4 connections on threads msgs_per_s={ceiling:.0f} "
                f"ratio={ceiling / floor_rate:.2f} (what this machine and sink allow, with no records kept)"
            )
    finally:
        sink.close()
        for url in made_dbs:
            _drop_pg(args.database, url)


def _fresh_pg(admin_url: str, name: str) -> str:
    import uuid

    import sqlalchemy as sa

    db = f"bench_digest_{name}_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + db


def _drop_pg(admin_url: str, url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    engine.dispose()


if __name__ == "__main__":
    main()
