"""Build every feed file from the stored summaries: decide what each file holds, write only what changed.

``plan_feeds`` is pure (entries and settings in, one ``FeedFile`` per file out);
``build_feeds`` serialises the files whose entries changed since the last build
(a fingerprint per file in a small manifest), writes the ones whose bytes differ
atomically and deletes files that no longer belong. It never touches the store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from bot.errors import RenderError
from bot.feeds.clean import safe_names
from bot.feeds.model import BuildReport, FeedEntry
from bot.feeds.serialize import DOCUMENTS, FORMAT_VERSION, FeedMeta, FragmentCache, clean_categories
from bot.settings import Settings
from bot.wording import category_label

#: the manifest of the last build: fingerprint of each file written (a dotfile: the web process never serves it)
MANIFEST = ".feeds-manifest.json"

#: the three formats of a feed and their file suffixes
FORMATS = ("rss", "atom", "json")


@dataclass(frozen=True, slots=True)
class FeedFile:
    """One file to write: which entries, in which format, with which feed-level data."""

    #: path relative to the output folder, posix ("feed.rss", "category/cs.LG.atom", "archive/3.atom")
    path: str
    #: "rss", "atom" or "json"
    kind: str
    #: feed-level data
    meta: FeedMeta
    #: the entries, in document order
    entries: tuple[FeedEntry, ...]
    #: whether a change is worth a WebSub ping (main and category feeds; archive pages are not subscribed to)
    hub_topic: bool
    #: each entry's id, dates, categories and paper link, pickled (shared by a feed's three formats)
    identity: bytes = b""

    def fingerprint(self) -> str:
        """Cheap identity of the file's contents: feed data plus each entry's id, last edit, categories, paper link.

        An edit moves `updated`, so an entry's text need not be hashed; a new
        renderer or template needs ``force=True`` (``feeds build --force``).
        Pickle is used for speed: equal data may rarely pickle differently (a
        needless re-serialisation), different data never pickles the same.
        """
        meta = tuple(getattr(self.meta, name) for name in self.meta.__slots__)
        payload = pickle.dumps((FORMAT_VERSION, self.path, self.kind, meta), protocol=5)
        return hashlib.sha256(payload + self.identity).hexdigest()


def _url(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path


def _newest_first(entries: Iterable[FeedEntry]) -> list[FeedEntry]:
    # Newest by first-seen time, so an edit updates an entry in place instead
    # of bumping it to the top, and a summary that shows up late with an old
    # date lands on the open archive page, never in a full one. Entries seen by
    # one poll go by date; the guid breaks ties deterministically.
    return sorted(entries, key=lambda e: (e.first_seen or e.published, e.published, e.guid), reverse=True)


def _unique(entries: Iterable[FeedEntry]) -> list[FeedEntry]:
    """One entry per guid: the most recently edited, whatever the input order."""
    entries = list(entries)
    by_guid = {e.guid: e for e in entries}
    if len(by_guid) == len(entries):
        return entries
    by_guid = {}
    for e in entries:
        seen = by_guid.get(e.guid)
        if seen is None or (e.updated, e.content_html, e.title) > (seen.updated, seen.content_html, seen.title):
            by_guid[e.guid] = e
    return list(by_guid.values())


# long: main feeds, category feeds and archive pages are planned from one sorted listing, in order
def plan_feeds(entries: Iterable[FeedEntry], settings: Settings) -> list[FeedFile]:
    """Every file of a build: main feeds, one feed per category, the RFC 5005 archive."""
    fs = settings.feeds
    base = settings.env.public_base_url
    home = base.rstrip("/") + "/"
    newest = _newest_first(_unique(entries))
    files: list[FeedFile] = []
    # Floats and strings pickle fast, datetimes do not; computed once per entry,
    # though an entry sits in several files (main, categories, archive). The
    # first-seen time never changes for a guid, and published moves only with
    # an edit (which moves updated), so both are left out.
    ident = [(e.guid, e.updated.timestamp(), e.categories, e.paper_url) for e in newest]

    def feed(
        stem: str,
        title: str,
        description: str,
        chosen: Sequence[FeedEntry],
        idents: list[Any],
        *,
        prev_archive: str = "",
    ) -> None:
        atom_url = _url(base, f"{stem}.atom")
        shared = pickle.dumps(idents, protocol=5)
        for kind in FORMATS:
            meta = FeedMeta(
                title=title,
                description=description,
                feed_id=atom_url,
                self_url=_url(base, f"{stem}.{kind}"),
                home_url=home,
                language=fs.language,
                hub=fs.websub_hub,
                prev_archive=prev_archive if kind == "atom" else "",
            )
            files.append(FeedFile(f"{stem}.{kind}", kind, meta, tuple(chosen), hub_topic=True, identity=shared))

    # RFC 5005 archive: oldest first, fixed-size pages; the last page is the open
    # one. There is always an open page (possibly empty), so a full page's
    # next-archive link never has to change when the next summary arrives.
    oldest, oldest_ident = newest[::-1], ident[::-1]
    size = fs.archive_page_size
    pages = len(oldest) // size + 1
    main_atom = _url(base, "feed.atom")
    feed(
        "feed",
        fs.title,
        fs.description,
        newest[: fs.size],
        ident[: fs.size],
        prev_archive=_url(base, f"archive/{pages}.atom"),
    )

    if fs.categories:
        # Every category with a summary gets a feed of its newest `size` summaries.
        by_category: dict[str, tuple[list[FeedEntry], list[Any]]] = {}
        for e, i in zip(newest, ident, strict=True):
            for category in clean_categories(e.categories):
                found = by_category.get(category)
                if found is None:
                    found = by_category[category] = ([], [])
                chosen, idents = found
                if len(chosen) < fs.size:
                    chosen.append(e)
                    idents.append(i)
        stems = safe_names(set(by_category))
        for category in sorted(by_category):
            chosen, idents = by_category[category]
            label = category_label(category)  # what a feed reader shows: the name, with the code
            feed(
                f"category/{stems[category]}",
                f"{fs.title}: {label}",
                f"{fs.description} Category {label}.",
                chosen,
                idents,
            )

    for page in range(1, pages + 1):
        meta = FeedMeta(
            title=f"{fs.title} (archive, page {page})",
            description=fs.description,
            feed_id=main_atom,
            self_url=_url(base, f"archive/{page}.atom"),
            home_url=home,
            language=fs.language,
            current=main_atom,
            prev_archive=_url(base, f"archive/{page - 1}.atom") if page > 1 else "",
            next_archive=_url(base, f"archive/{page + 1}.atom") if page < pages else "",
            archive=True,
        )
        chunk = tuple(oldest[(page - 1) * size : page * size])
        chunk_ident = pickle.dumps(oldest_ident[(page - 1) * size : page * size], protocol=5)
        files.append(FeedFile(f"archive/{page}.atom", "atom", meta, chunk, hub_topic=False, identity=chunk_ident))
    return files


def _next_to_write(
    files: Sequence[FeedFile], prints: Sequence[str], start: int, old_manifest: dict[str, str], out: Path
) -> FeedFile | None:
    """The first file from `start` on that the build will write (not unchanged since the last build)."""
    for at in range(start, len(files)):
        if old_manifest.get(files[at].path) != prints[at] or not (out / files[at].path).is_file():
            return files[at]
    return None


def render_file(file: FeedFile, cache: FragmentCache) -> bytes:
    """The bytes of one file."""
    fragments = [cache.fragment(file.kind, e) for e in file.entries]
    cleaned = [cache.clean(e) for e in file.entries]
    return DOCUMENTS[file.kind](file.meta, cleaned, fragments)


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            # No fsync: feeds are derived data, and `feeds build --force` rewrites
            # them all; an fsync per file would cost more than building it.
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _read_manifest(out_dir: Path) -> dict[str, str]:
    try:
        data = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
        files = data.get("files", {}) if data.get("version") == FORMAT_VERSION else {}
        return {str(k): str(v) for k, v in files.items()}
    except (OSError, ValueError, AttributeError):
        # A missing or damaged manifest only costs one full rebuild.
        return {}


def _inside(out_dir: Path, rel: str) -> Path | None:
    """The file of a manifest path, if it is a plain path inside out_dir (the manifest is data, not trusted)."""
    parts = PurePosixPath(rel).parts
    if not parts or any(p in ("", ".", "..") or p.startswith(".") for p in parts) or PurePosixPath(rel).is_absolute():
        return None
    return out_dir.joinpath(*parts)


def stale_entries(
    entries: Iterable[FeedEntry], settings: Settings, *, out_dir: Path | None = None, force: bool = False
) -> set[str]:
    """The guids of the entries that sit in a file the next build must serialise.

    Only those need their content; the caller may leave the others' content
    empty (fingerprints do not look at content), so a rebuild after one new
    summary loads and renders a few dozen entries, not the whole store.
    """
    out = Path(out_dir) if out_dir is not None else settings.public_dir
    old_manifest = {} if force else _read_manifest(out)
    need: set[str] = set()
    for file in plan_feeds(entries, settings):
        if force or old_manifest.get(file.path) != file.fingerprint() or not (out / file.path).is_file():
            need.update(e.guid for e in file.entries)
    return need


# long: the write loop keeps the build lock, the fragment cache and the counts together
def build_feeds(
    entries: Iterable[FeedEntry],
    settings: Settings,
    *,
    out_dir: Path | None = None,
    cache: FragmentCache | None = None,
    force: bool = False,
    fill: Callable[[Sequence[FeedEntry]], Sequence[FeedEntry]] | None = None,
    ahead: Callable[[Sequence[FeedEntry]], None] | None = None,
) -> BuildReport:
    """Write feed.rss|atom|json, category/<name>.*, archive/<n>.atom; return what changed.

    `entries` are all stored summaries in any order. Pass the same `cache` to
    every build of a long-lived process so unchanged entries are not serialised
    again; `force` re-serialises every file (after a renderer or template change).
    `fill`: the entries may come without content; fill(entries) gives them theirs, one
    file at a time, just before the file is serialised (memory stays flat in the
    number of entries: a full archive page is dropped once written).
    `ahead`: told, before a file is serialised, which entries the next file to write will ask `fill` for,
    so their content can be made meanwhile (on other cores).
    """
    out = Path(out_dir) if out_dir is not None else settings.public_dir
    cache = cache if cache is not None else FragmentCache()
    files = plan_feeds(entries, settings)
    old_manifest = {} if force else _read_manifest(out)
    manifest: dict[str, str] = {}
    changed: list[str] = []
    topics: list[str] = []
    removed: list[str] = []
    unchanged = 0
    # What a next build will likely serialise again: entries of the subscribed feeds and of
    # the open archive page (full pages never change). The rest leave the cache once written.
    keep = {e.guid for f in files if f.hub_topic or f is files[-1] for e in f.entries}
    # Entries of the subscribed feeds, filled once for all the files they are in (a bounded
    # set: feeds.size per feed); an archive page's are filled for that page alone.
    filled: dict[str, FeedEntry] = {}
    prints = [file.fingerprint() for file in files]
    try:
        for at, file in enumerate(files):
            fingerprint = prints[at]
            manifest[file.path] = fingerprint
            target = out / file.path
            if old_manifest.get(file.path) == fingerprint and target.is_file():
                unchanged += 1
                continue
            if fill is not None:
                missing = [e for e in file.entries if e.guid not in filled]
                got = {e.guid: e for e in fill(missing)} if missing else {}
                if file.hub_topic:
                    filled.update(got)
                file = dataclasses.replace(file, entries=tuple(got.get(e.guid) or filled[e.guid] for e in file.entries))
                if ahead is not None:
                    upcoming = _next_to_write(files, prints, at + 1, old_manifest, out)
                    if upcoming is not None:
                        ahead([e for e in upcoming.entries if e.guid not in filled])
            data = render_file(file, cache)
            if not file.hub_topic:  # an archive page: drop what no subscribed feed holds
                cache.forget(e.guid for e in file.entries if e.guid not in keep)
            try:
                if target.read_bytes() == data:
                    unchanged += 1
                    continue
            except FileNotFoundError:
                pass
            write_atomic(target, data)
            changed.append(file.path)
            if file.hub_topic:
                topics.append(file.meta.self_url)
        for rel in sorted(set(old_manifest) - set(manifest)):
            stale = _inside(out, rel)
            if stale is not None and stale.is_file():
                stale.unlink()
                removed.append(rel)
        if manifest != old_manifest or force:
            write_atomic(
                out / MANIFEST,
                json.dumps({"version": FORMAT_VERSION, "files": manifest}, indent=1, sort_keys=True).encode(),
            )
    except OSError as exc:
        raise RenderError(f"feeds: cannot write to {out}: {exc}") from exc
    except ValueError as exc:  # lxml refusing a string would be a gap in cleaning: report it, don't crash the job
        raise RenderError(f"feeds: cannot serialise: {exc}") from exc
    finally:
        cache.end_build(keep=keep)
    return BuildReport(changed=tuple(changed), removed=tuple(removed), unchanged=unchanged, hub_topics=tuple(topics))
