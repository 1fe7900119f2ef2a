"""Bar charts by week for the termly report, drawn as inline SVG by the template.

Only the geometry is worked out here (no JavaScript, no external file: the report is one
self-contained page that prints); every chart has a table of the same figures beside it,
for screen readers and for anyone who would rather read the numbers.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

WIDTH = 640  # the viewBox; the SVG scales to the page
HEIGHT = 200
LEFT = 40  # room for the scale
BOTTOM = 28  # room for the week labels
TOP = 12
MAX_LABELS = 9  # week labels that fit under the chart


@dataclass(frozen=True)
class Bar:
    label: str  # the week, "7 Sep"
    value: int
    x: float
    y: float
    width: float
    height: float
    unknown: bool = False  # no figures for any day of this week (shown hatched, not as 0)


@dataclass(frozen=True)
class Chart:
    title: str
    bars: list[Bar]
    ticks: list[tuple[int, float]]  # (value, y) of the scale's lines
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    baseline: float = HEIGHT - BOTTOM

    @property
    def total(self) -> int:
        return sum(b.value for b in self.bars)

    @property
    def label_every(self) -> int:
        """Label every n-th week, so that at most MAX_LABELS labels share the axis."""
        return max(1, -(-len(self.bars) // MAX_LABELS))


def week_of(day: date) -> date:
    """The Monday of `day`'s week."""
    return day - timedelta(days=day.weekday())


def weeks(first: date, last: date) -> list[date]:
    """Every week (its Monday) from `first`'s to `last`'s."""
    out, monday = [], week_of(first)
    while monday <= last:
        out.append(monday)
        monday += timedelta(days=7)
    return out


def by_week(first: date, last: date, counts: Iterable[tuple[date, int]]) -> dict[date, int]:
    """Counts by day summed into the term's weeks (each week present, zero or not)."""
    out = dict.fromkeys(weeks(first, last), 0)
    for day, n in counts:
        monday = week_of(day)
        if monday in out:
            out[monday] += n
    return out


def unknown_weeks(first: date, last: date, missing: Collection[date]) -> set[date]:
    """The weeks (Mondays) none of whose days from `first` to `last` has figures."""
    out = set()
    for monday in weeks(first, last):
        days = [monday + timedelta(days=n) for n in range(7)]
        inside = [d for d in days if first <= d <= last]
        if inside and all(d in missing for d in inside):
            out.add(monday)
    return out


def _nice_top(peak: int) -> int:
    """A round top for the scale at or above `peak` (1, 2, 5, 10, 20, 50...)."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if step * m >= peak:
                return step * m
        step *= 10


def bar_chart(title: str, series: Mapping[date, int], unknown: Collection[date] = ()) -> Chart:
    """`series` by week (Monday -> count); `unknown` are the weeks with no figures at all."""
    top = _nice_top(max(series.values(), default=0) or 1)
    plot_h = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - LEFT) / max(1, len(series))
    bars = []
    for i, (monday, value) in enumerate(series.items()):
        h = plot_h * value / top
        bars.append(
            Bar(
                label=f"{monday.day} {monday:%b}",
                value=value,
                x=round(LEFT + i * slot + slot * 0.15, 1),
                y=round(HEIGHT - BOTTOM - h, 1),
                width=round(slot * 0.7, 1),
                height=round(h, 1),
                unknown=monday in unknown,
            )
        )
    ticks = [(v, round(HEIGHT - BOTTOM - plot_h * v / top, 1)) for v in (0, top // 2, top)]
    return Chart(title, bars, sorted(set(ticks)))


__all__ = ["Bar", "Chart", "bar_chart", "by_week", "unknown_weeks", "week_of", "weeks"]
