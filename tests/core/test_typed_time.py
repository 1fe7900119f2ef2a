"""Dates and times as people type them on the command line (core/typed_time.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from proxy_addons.core.typed_time import TimeTypedError, read_time

LONDON = ZoneInfo("Europe/London")
# 00:30 in London on a summer day is still the day before in UTC: "today" is London's.
NOW = datetime(2027, 6, 9, 23, 30, tzinfo=UTC)


def at(text: str, end: bool = False) -> datetime:
    return read_time(text, LONDON, NOW, "--from", end=end)


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("today", datetime(2027, 6, 10, tzinfo=LONDON)),
        ("  Yesterday ", datetime(2027, 6, 9, tzinfo=LONDON)),
        ("tomorrow", datetime(2027, 6, 11, tzinfo=LONDON)),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=LONDON)),
        ("14:30", datetime(2027, 6, 10, 14, 30, tzinfo=LONDON)),
        ("9:05", datetime(2027, 6, 10, 9, 5, tzinfo=LONDON)),
        ("2026-11-01 14:30", datetime(2026, 11, 1, 14, 30, tzinfo=LONDON)),
        ("2026-11-01T14:30:15", datetime(2026, 11, 1, 14, 30, 15, tzinfo=LONDON)),
        ("2026-11-01  9:30", datetime(2026, 11, 1, 9, 30, tzinfo=LONDON)),
        ("tomorrow 15:15", datetime(2027, 6, 11, 15, 15, tzinfo=LONDON)),
        (
            "2026-11-01T14:30+05:00",
            datetime(2026, 11, 1, 14, 30, tzinfo=timezone(timedelta(hours=5))),
        ),
        ("now", NOW),
    ],
)
def test_what_people_type(typed: str, meant: datetime) -> None:
    assert at(typed) == meant


def test_a_day_as_an_end_includes_the_whole_day() -> None:
    assert at("2026-11-01", end=True) == datetime(2026, 11, 2, tzinfo=LONDON)
    assert at("today", end=True) == datetime(2027, 6, 11, tzinfo=LONDON)
    assert at("14:30", end=True) == datetime(2027, 6, 10, 14, 30, tzinfo=LONDON)  # a time: as is


def test_the_school_time_zone_is_used_winter_and_summer() -> None:
    assert at("2026-12-01 09:00").utcoffset() == timedelta(0)
    assert at("2027-06-01 09:00").utcoffset() == timedelta(hours=1)


@pytest.mark.parametrize(
    "typed", ["25/11/2026", "2026-13-01", "2026-02-30", "25:00", "14:61", "next week", "", "1430"]
)
def test_anything_else_is_refused_naming_the_option(typed: str) -> None:
    with pytest.raises(TimeTypedError) as caught:
        at(typed)
    said = str(caught.value)
    assert said.startswith(f"--from: '{typed.strip()}' is not a date or time")
    assert "today, yesterday, 2026-11-01, 14:30 or 2026-11-01 14:30" in said
