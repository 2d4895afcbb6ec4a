"""The operator's charts: one count per UTC day from the store, drawn as SVG (pygal) or as sparklines.

Counting is pure (rows in, lists out, `now` given); only `build_charts` reads the
store, and it only reads. The SVG is made on the server with nothing external:
no script, no stylesheet or font from elsewhere, so a page can inline it as is.
"""

from __future__ import annotations

import math
import re
import sys
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from bot.store.charts import POLL_FAILED, POLL_NOT_MODIFIED, POLL_OK, AttemptRow, SubscriberDates

if TYPE_CHECKING:
    from bot.store import Store

DAY = timedelta(days=1)
#: a subscriber's states, in the order a tie between two changes at the same instant is resolved
SUBSCRIBER_STATES = ("pending", "confirmed", "unsubscribed", "bounced")
#: the poll log's results and their names on the charts
POLL_SERIES = ((POLL_OK, "ok"), (POLL_NOT_MODIFIED, "not modified (304)"), (POLL_FAILED, "failed"))
#: attempt outcomes that count as a failure: the post will not go out without the operator
#: (permanent refusals; credentials refused, which pauses the channel)
FAILED_OUTCOMES = frozenset({"permanent", "duplicate", "auth"})


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart: a count per UTC day for each named series."""

    title: str
    #: the UTC days shown, oldest first
    days: tuple[date, ...]
    #: (name, one count per day) in legend order
    series: tuple[tuple[str, tuple[int, ...]], ...]


# ------------------------------------------------------------------ series


def window(now: datetime, days: int) -> tuple[date, ...]:
    """The `days` UTC days ending with `now`'s, oldest first."""
    if days < 1:
        raise ValueError(f"a chart shows at least one day, not {days}")
    last = now.astimezone(UTC).date()
    return tuple(last - timedelta(days=days - 1 - i) for i in range(days))


def midnight(day: date) -> datetime:
    """The start of a UTC day."""
    return datetime.combine(day, time(), UTC)


def daily_counts(
    events: Iterable[tuple[str, datetime]], days: Sequence[date], keys: Sequence[str] = ()
) -> dict[str, list[int]]:
    """key → events per day (zero-filled); `keys` are always present, other keys only with events."""
    index = {d: i for i, d in enumerate(days)}
    out = {k: [0] * len(days) for k in keys}
    for key, at in events:
        i = index.get(at.astimezone(UTC).date())
        if i is not None:
            out.setdefault(key, [0] * len(days))[i] += 1
    return out


def attempt_kind(row: AttemptRow) -> str | None:
    """ "failures", "retries" or None (a success, a reconciliation, an operator's action)."""
    if row.outcome in FAILED_OUTCOMES:
        return "failures"
    if row.outcome == "transient":
        # The last transient error of a delivery that went dead ended it: a failure, not a retry.
        return "failures" if row.final_of_dead else "retries"
    return None


def _spans(row: SubscriberDates, now: datetime) -> list[tuple[str, datetime, datetime | None]]:
    """(state, from, until) of one subscriber, rebuilt from the last time of each change.

    Only the latest time of each change is kept: an address that unsubscribed and came
    back shows as pending before its latest confirmation.
    """
    changes = [
        (at, rank, state)
        for rank, (state, at) in enumerate(
            zip(SUBSCRIBER_STATES, (row.created_at, row.confirmed_at, row.unsubscribed_at, row.bounced_at), strict=True)
        )
        if at is not None and at <= now
    ]
    changes.sort()
    return [
        (state, at, changes[i + 1][0] if i + 1 < len(changes) else None) for i, (at, _, state) in enumerate(changes)
    ]


def subscribers_by_state(rows: Iterable[SubscriberDates], days: Sequence[date], now: datetime) -> dict[str, list[int]]:
    """state → how many subscribers were in it at the end of each day (the last day: at `now`)."""
    ends = [midnight(d) + DAY for d in days]
    # +1 where a state starts holding at a day's end, -1 where it stops: one pass per subscriber.
    delta = {s: [0] * (len(days) + 1) for s in SUBSCRIBER_STATES}
    for row in rows:
        for state, since, until in _spans(row, now):
            delta[state][bisect_right(ends, since)] += 1
            delta[state][len(days) if until is None else bisect_right(ends, until)] -= 1
    out: dict[str, list[int]] = {}
    for state, changes in delta.items():
        total, counts = 0, []
        for change in changes[: len(days)]:
            total += change
            counts.append(total)
        out[state] = counts
    return out


def _chart(title: str, days: Sequence[date], series: Iterable[tuple[str, Sequence[int]]]) -> Chart:
    return Chart(title, tuple(days), tuple((name, tuple(values)) for name, values in series))


def build_charts(store: Store, now: datetime, days: int) -> list[Chart]:
    """The four charts over the `days` UTC days ending with `now`'s."""
    span = window(now, days)
    start = midnight(span[0])
    posts = daily_counts(store.posts_between(start, now), span)
    attempts = [(kind, row.at) for row in store.attempts_between(start, now) if (kind := attempt_kind(row))]
    failures = daily_counts(attempts, span, keys=("failures", "retries"))
    polls = daily_counts(store.polls_between(start, now), span, keys=[key for key, _ in POLL_SERIES])
    subscribers = subscribers_by_state(store.subscriber_dates(now), span, now)
    return [
        _chart("Posts per day, by channel", span, sorted(posts.items())),
        _chart("Failed and retried posts per day", span, failures.items()),
        _chart("Subscribers by state (end of day)", span, subscribers.items()),
        _chart("Polls per day, by result", span, ((name, polls[key]) for key, name in POLL_SERIES)),
    ]


# --------------------------------------------------------------- rendering

#: the SVG's drawing size; the page scales it to its width (viewBox, width 100%)
WIDTH, HEIGHT = 640, 420
_SVG_NS = "http://www.w3.org/2000/svg"
# lxml refuses these in text; a channel name from the database must not break a page
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("", text)


def _y_labels(top: int) -> list[int]:
    # Counts are whole: pygal's own ticks would read 0.2, 0.4, ...
    step = max(1, math.ceil(top / 5))
    return list(range(0, max(top, 1) + step, step))


def _style() -> Any:
    from pygal.style import Style

    # Fonts the device has (no web font is fetched), sizes that stay legible scaled down to a phone.
    return Style(
        font_family="system-ui, sans-serif",
        title_font_size=20,
        legend_font_size=16,
        label_font_size=14,
        major_label_font_size=14,
        no_data_font_size=24,
    )


def _pygal() -> Any:
    import pygal

    # pygal appends an import hook for its map plugins (unused here) that has no find_spec:
    # every later import that no other finder knows then warns (ImportWarning) on Python 3.11.
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "PluginImportFixer"]
    return pygal


def chart_svg(chart: Chart) -> str:
    """The chart as one inline <svg> element: no script, nothing loaded from elsewhere, width 100%."""
    line = _pygal().Line(
        js=[],  # pygal otherwise links its tooltip script from a CDN
        width=WIDTH,
        height=HEIGHT,
        style=_style(),
        disable_xml_declaration=True,
        legend_at_bottom=True,
        legend_at_bottom_columns=min(4, max(1, len(chart.series))),
        truncate_legend=-1,  # names are short; a cut one ("not modified (30…") reads wrong
        x_label_rotation=30,
        x_labels_major_every=7,
        show_minor_x_labels=False,
        dots_size=2,
        no_data_text="No data",
    )
    line.title = _xml_text(chart.title)
    line.x_labels = [d.strftime("%m-%d") for d in chart.days]
    if chart.series:  # pygal cannot place labels on an axis without data ("No data" instead)
        line.y_labels = _y_labels(max(max(values, default=0) for _, values in chart.series))
    for name, values in chart.series:
        line.add(_xml_text(name), list(values))
    return _self_contained(line.render(is_unicode=True))


def _self_contained(svg: str) -> str:
    """Drop what pygal adds for its script (the config <script>, comments naming its site); scale to the page."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    root = etree.fromstring(svg.encode("utf-8"), parser)
    for node in [*root.iter(f"{{{_SVG_NS}}}script", etree.Comment)]:
        parent = node.getparent()
        if parent is not None:
            parent.remove(node)
    for node in root.iterdescendants():
        # Only pygal's script used these ("activate-serie-0" in every chart): ids unique on a page of several charts.
        node.attrib.pop("id", None)
    root.set("width", "100%")
    root.set("role", "img")
    root.attrib.pop("height", None)
    return etree.tostring(root, encoding="unicode")


def console_charts(store: Store, now: datetime, days: int) -> list[tuple[str, str]]:
    """(title, SVG markup) of the four charts over `days` days (30 or 90), for the operator console."""
    return [(chart.title, chart_svg(chart)) for chart in build_charts(store, now, days)]


# -------------------------------------------------------------- sparklines

_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[int]) -> str:
    """One character a value: ▁ for zero, any other value at least ▂, the largest █."""
    top = max(values, default=0)
    if top <= 0:
        return _BARS[0] * len(values)
    return "".join(_BARS[0] if v <= 0 else _BARS[max(1, math.ceil(v * 7 / top))] for v in values)


def status_sparklines(store: Store, now: datetime, days: int = 30) -> list[str]:
    """The charts' series as one line each, for `status`."""
    posts, failures, subscribers, polls = build_charts(store, now, days)
    rows = [(f"posts {name}", values, f"{sum(values)}") for name, values in posts.series]
    rows += [(name, values, f"{sum(values)}") for name, values in failures.series]
    rows += [
        (f"subscribers {name}", values, f"{values[-1]} now")
        for name, values in subscribers.series
        if name == "confirmed"
    ]
    rows += [(f"polls {name}", values, f"{sum(values)}") for name, values in polls.series]
    width = max(len(label) for label, _, _ in rows)
    out = [f"last {days} days (a mark a day, oldest first; then the total):"]
    out += [f"  {label:<{width}}  {sparkline(values)}  {total}" for label, values, total in rows]
    return out
