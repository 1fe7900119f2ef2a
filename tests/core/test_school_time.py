"""School time (core/school_time.py): the minutes an escalation clock counts, in school hours
on school days of the example policy's calendar (terms, half term, an INSET day), across a
change of the clocks; with properties that hold for any hours and any two instants."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import hypothesis
from hypothesis import given
from hypothesis import strategies as st

from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.policy.model import Policy, TimeRange
from proxy_addons.core.school_time import (
    HORIZON_DAYS,
    school_minutes_between,
    school_time_after,
)
from tests.core.test_policy_loader import EXAMPLE

LONDON = ZoneInfo("Europe/London")


@cache
def example() -> Policy:
    return load_policy(EXAMPLE)


def with_hours(*ranges: tuple[time, time]) -> Policy:
    policy = example()
    hours = tuple(TimeRange(a, b) for a, b in ranges)
    return replace(policy, monitoring=replace(policy.monitoring, school_hours=hours))


def local(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=LONDON)


def test_a_friday_afternoon_alert_waits_for_monday_morning() -> None:
    policy = example()  # school hours 08:00-17:00
    assert school_time_after(policy, local(2026, 10, 2, 16, 55), 15) == local(2026, 10, 5, 8, 10)
    assert school_minutes_between(policy, local(2026, 10, 2, 16, 55), local(2026, 10, 5, 8)) == 5


def test_half_term_and_the_clocks_going_back_are_skipped() -> None:
    # Friday 23 October 2026 is the last day before half term (26-30 October); the clocks
    # go back on Sunday 25th, so 16:55 BST and 08:10 GMT are 9 days and an hour apart.
    policy = example()
    due = school_time_after(policy, local(2026, 10, 23, 16, 55), 15)
    assert due == local(2026, 11, 2, 8, 10)
    assert due is not None and due.utcoffset() == timedelta(0)


def test_the_christmas_holiday_and_an_inset_day_are_skipped() -> None:
    policy = example()  # the autumn term ends on Friday 18 December; 4 January is INSET
    assert school_time_after(policy, local(2026, 12, 18, 16, 55), 15) == local(2027, 1, 5, 8, 10)


def test_inside_school_hours_the_clock_runs_as_a_clock() -> None:
    policy = example()
    assert school_time_after(policy, local(2026, 10, 6, 10, 0), 15) == local(2026, 10, 6, 10, 15)
    assert school_minutes_between(policy, local(2026, 10, 6, 7), local(2026, 10, 6, 18)) == 540


def test_overlapping_hours_count_once_and_no_hours_mean_the_whole_school_day() -> None:
    overlapping = with_hours((time(8), time(12)), (time(11), time(13)))
    day = (local(2026, 10, 6, 0), local(2026, 10, 7, 0))
    assert school_minutes_between(overlapping, *day) == 300
    assert school_minutes_between(with_hours(), *day) == 24 * 60
    assert school_minutes_between(with_hours((time(20), time.max)), *day) == 240


def test_no_school_day_ahead_means_never() -> None:
    policy = example()  # the last term ends on 21 July 2027
    assert school_time_after(policy, local(2027, 7, 21, 16, 50), 15) is None
    assert school_time_after(policy, local(2027, 7, 21, 16, 50), 10) == local(2027, 7, 21, 17)


# -- properties ---------------------------------------------------------------------------------

T0 = datetime(2026, 8, 25, tzinfo=UTC)  # a week before the autumn term: holidays and term

instants = st.integers(min_value=0, max_value=70 * 24 * 60 * 60).map(
    lambda s: T0 + timedelta(seconds=s)
)
clock_times = st.integers(min_value=0, max_value=24 * 60).map(
    lambda m: time.max if m == 24 * 60 else time(m // 60, m % 60)
)
hour_ranges = st.lists(
    st.tuples(clock_times, clock_times).filter(lambda r: r[0] < r[1]),
    min_size=0,
    max_size=3,
)


@given(hour_ranges, instants, instants, instants)
def test_school_minutes_add_up_and_never_exceed_the_wall_clock(
    hours: list[tuple[time, time]], a: datetime, b: datetime, c: datetime
) -> None:
    a, b, c = sorted((a, b, c))
    policy = with_hours(*hours)
    ab, bc = school_minutes_between(policy, a, b), school_minutes_between(policy, b, c)
    assert abs(ab + bc - school_minutes_between(policy, a, c)) < 1e-6
    assert 0 <= ab <= (b - a).total_seconds() / 60 + 1e-6
    assert school_minutes_between(policy, b, a) == 0


@given(hour_ranges, instants, st.integers(min_value=1, max_value=3000))
@hypothesis.example(hours=[(time(0, 0), time(0, 1))], start=T0, minutes=196)  # found in CI
def test_after_is_the_first_instant_with_that_much_school_time(
    hours: list[tuple[time, time]], start: datetime, minutes: int
) -> None:
    policy = with_hours(*hours)
    due = school_time_after(policy, start, minutes)
    if due is None:  # no more school time than that ahead (a minute a day, say): said so
        ahead = start + timedelta(days=HORIZON_DAYS)
        assert school_minutes_between(policy, start, ahead) < minutes
        return
    assert abs(school_minutes_between(policy, start, due) - minutes) < 1e-6
    assert school_minutes_between(policy, start, due - timedelta(seconds=1)) < minutes


@given(hour_ranges, st.dates(min_value=date(2026, 8, 24), max_value=date(2026, 11, 8)))
def test_weekends_holidays_and_closures_count_nothing(
    hours: list[tuple[time, time]], day: date
) -> None:
    policy = with_hours(*hours)
    start = datetime.combine(day, time(0), LONDON)
    end = datetime.combine(day + timedelta(days=1), time(0), LONDON)
    shut = (
        day.weekday() >= 5
        or day < date(2026, 9, 2)
        or date(2026, 10, 26) <= day <= date(2026, 10, 30)
    )
    if shut:
        assert school_minutes_between(policy, start, end) == 0
    else:
        assert school_minutes_between(policy, start, end) > 0
