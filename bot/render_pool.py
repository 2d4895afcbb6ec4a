"""Rendering many summaries on every core: a process pool for a build with many renders to make.

A first feeds build after a large first poll renders every stored summary (Markdown,
MathML, plain text: milliseconds of pure-Python CPU each). The workers only render, a
pure function of the summary's text and two render settings, and hand back
``(html, text)``; the parent keeps the render cache and writes the files, so the
output is the same byte for byte as a build in one process. Started on first need
and stopped with the build: a rebuild after a few new summaries never starts it.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from bot.errors import RenderError
from bot.records import Summary
from bot.settings import Settings

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor
    from multiprocessing.context import BaseContext

    from bot.render import Renderer

# multiprocessing and concurrent.futures load when a pool starts: every build makes a RenderPool,
# and most (a few new summaries) never start it.

log = logging.getLogger(__name__)

#: fewest renders one call hands to the pool; fewer are rendered in the calling process
MIN_BATCH = 40
#: most summaries in one chunk sent to a worker (small enough to share a 100-entry archive page out evenly)
CHUNK_MAX = 16
#: chunks one file's renderings are cut into, per worker: even shares without many round trips. At most two
#: files' renderings are in flight (the one being filled, the next one prefetched): memory stays flat.
CHUNKS_PER_WORKER = 2

# The worker process's renderer, built once by _start_worker.
_renderer: Renderer | None = None


def _start_worker(site_base_url: str, image_hosts: tuple[str, ...]) -> None:
    # Only what html_and_text reads is sent: Settings holds mapping proxies, which spawn cannot pickle.
    global _renderer
    from bot.render import Renderer
    from bot.settings import with_overrides

    _renderer = Renderer(with_overrides(Settings(), "render", site_base_url=site_base_url, image_hosts=image_hosts))


def _render_chunk(summaries: Sequence[Summary]) -> list[tuple[str, str]]:
    assert _renderer is not None, "the pool's initializer builds the renderer"
    return [_renderer.html_and_text(s) for s in summaries]


def _cancel(ahead: dict[Summary, tuple[Future[list[tuple[str, str]]], int]], keep: Sequence[Summary]) -> None:
    # Prefetched chunks no summary in `keep` is in: not started yet, they never will be.
    wanted = {id(ahead[s][0]) for s in keep if s in ahead}
    for future, _ in ahead.values():
        if id(future) not in wanted:
            future.cancel()


def pool_context() -> BaseContext:
    """fork where the platform has it and no other thread runs (a fork copies their held locks, and newer Pythons
    warn about it), else spawn."""
    import multiprocessing

    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


class RenderPool:
    """Summaries → (html, text) in worker processes; a context manager that stops them on exit."""

    def __init__(self, settings: Settings, *, min_batch: int = MIN_BATCH, start_method: str | None = None) -> None:
        #: worker processes: render.workers, 0 meaning one per CPU core; fewer than 2 means no pool
        self.workers = settings.render.workers or os.cpu_count() or 1
        self.min_batch = max(1, min_batch)
        #: summaries rendered by the workers so far, and how many of them a prefetch() had started (tests)
        self.rendered = 0
        self.prefetched = 0
        self._args = (settings.render.site_base_url, tuple(settings.render.image_hosts))
        #: "fork", "spawn" or "forkserver"; None: pool_context() chooses when the pool starts
        self.start_method = start_method
        self._executor: ProcessPoolExecutor | None = None
        # What prefetch() sent: the summary's chunk and place in it (one file's entries at most).
        self._ahead: dict[Summary, tuple[Future[list[tuple[str, str]]], int]] = {}

    def __enter__(self) -> RenderPool:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._ahead = {}
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def takes(self, count: int) -> bool:
        """Whether `count` renderings asked for at once go to the workers."""
        return self.workers >= 2 and count >= self.min_batch

    def prefetch(self, summaries: Sequence[Summary]) -> None:
        """Start rendering these now (when there are enough for the pool); a next render() of them takes the results.

        Replaces what an earlier prefetch left untaken: at most one file's renderings wait in memory.
        """
        _cancel(self._ahead, keep=())
        self._ahead = self._submit(summaries) if self.takes(len(summaries)) else {}

    def render(self, summaries: Sequence[Summary]) -> list[tuple[str, str]] | None:
        """The summaries' (html, text), in order; None when there are too few for the pool (render them yourself)."""
        ahead, self._ahead = self._ahead, {}
        _cancel(ahead, keep=summaries)
        rest = [s for s in summaries if s not in ahead]
        if len(rest) == len(summaries) and not self.takes(len(rest)):
            return None
        from concurrent.futures.process import BrokenProcessPool

        try:
            ahead.update(self._submit(rest))
            out = [ahead[s][0].result()[ahead[s][1]] for s in summaries]
        except BrokenProcessPool as exc:
            # A worker died (killed, out of memory): the build fails like any render error and is retried.
            self.close()
            raise RenderError(f"a render worker process died: {exc}") from None
        self.rendered += len(out)
        self.prefetched += len(summaries) - len(rest)
        return out

    def _submit(self, summaries: Sequence[Summary]) -> dict[Summary, tuple[Future[list[tuple[str, str]]], int]]:
        """Each summary's chunk, sent to the workers, and its place in the chunk."""
        if not summaries:
            return {}
        executor = self._start()
        size = max(1, min(CHUNK_MAX, math.ceil(len(summaries) / (self.workers * CHUNKS_PER_WORKER))))
        placed: dict[Summary, tuple[Future[list[tuple[str, str]]], int]] = {}
        for start in range(0, len(summaries), size):
            chunk = summaries[start : start + size]
            future = executor.submit(_render_chunk, chunk)
            for i, s in enumerate(chunk):
                placed[s] = (future, i)
        return placed

    def _start(self) -> ProcessPoolExecutor:
        if self._executor is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            context = multiprocessing.get_context(self.start_method) if self.start_method else pool_context()
            log.debug("rendering in %d %s worker processes", self.workers, context.get_start_method())
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=context, initializer=_start_worker, initargs=self._args
            )
        return self._executor
