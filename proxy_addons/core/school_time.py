"""Time that counts in school hours: how much of it passed between two instants, and when a
given amount of it will have passed.

Escalation clocks (alerts/escalation.py) run only while someone is there to act: in
`monitoring.school_hours` on school days (a weekday in a term, outside closures:
core/schedules.is_school_day), in the school's own time zone. An alert raised on a Friday at
16:55 with a 15-minute clock has used 5 minutes by 17:00 and escalates at 08:10 on the next
school day. No school hours named (an empty list): the whole of a school day counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

from proxy_addons.core.policy.model import Policy, TimeRange
from proxy_addons.core.schedules import is_school_day

# How far ahead `school_time_after` looks for school time (a summer holiday is ~6 weeks;
# a policy whose last term has ended has none at all).
HORIZON_DAYS = 400


def _day_spans(policy: Policy, day: date) -> list[tuple[datetime, datetime]]:
    """`day`'s school hours as instants in UTC (so sums are true across a clock change),
    merged where ranges overlap; none on a day the school is shut."""
    if not is_school_day(policy, day):
        return []
    tz = policy.timezone
    ranges = policy.monitoring.school_hours or (TimeRange(time(0), time.max),)
    spans: list[tuple[datetime, datetime]] = []
    for r in sorted(ranges, key=lambda r: (r.start, r.end)):
        start = datetime.combine(day, r.start, tz).astimezone(UTC)
        end = (
            datetime.combine(day + timedelta(days=1), time(0), tz)
            if r.end == time.max
            else datetime.combine(day, r.end, tz)
        ).astimezone(UTC)
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return spans


def _spans_from(policy: Policy, first: date, days: int) -> Iterator[tuple[datetime, datetime]]:
    for offset in range(days):
        yield from _day_spans(policy, first + timedelta(days=offset))


def school_minutes_between(policy: Policy, start: datetime, end: datetime) -> float:
    """Minutes of school time from `start` to `end` (aware instants; 0 if end <= start)."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        return 0.0
    tz = policy.timezone
    first = start.astimezone(tz).date()
    days = (end.astimezone(tz).date() - first).days + 1
    counted = timedelta()
    for span_start, span_end in _spans_from(policy, first, days):
        overlap = min(end, span_end) - max(start, span_start)
        if overlap > timedelta():
            counted += overlap
    return counted.total_seconds() / 60


def school_time_after(policy: Policy, start: datetime, minutes: float) -> datetime | None:
    """The first instant by which `minutes` of school time have passed since `start`; None
    when there is not that much school time in the next HORIZON_DAYS days (no term ahead)."""
    start = start.astimezone(UTC)
    left = timedelta(minutes=minutes)
    if left <= timedelta():
        return start
    first = start.astimezone(policy.timezone).date()
    for span_start, span_end in _spans_from(policy, first, HORIZON_DAYS):
        begin = max(start, span_start)
        if begin >= span_end:
            continue
        if span_end - begin >= left:
            return begin + left
        left -= span_end - begin
    return None


__all__ = ["HORIZON_DAYS", "school_minutes_between", "school_time_after"]
