"""Dates and times as people type them on the command line, in the school's time zone.

`today`, `yesterday`, `tomorrow`, `now`, `2026-11-01`, `14:30` (today at that time),
`tomorrow 15:15`, `2026-11-01 14:30` (or with a `T`, seconds, or a UTC offset, as ISO 8601
writes them).
Every command option taking a time reads it here, so they all accept the same things and
a mistake names the option and what would have worked.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, tzinfo

DAY_WORDS = {"today": 0, "yesterday": -1, "tomorrow": 1}
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
DAY_AND_CLOCK = re.compile(r"(?:(\d{4}-\d{2}-\d{2})[ t])?(\d{1,2}):(\d{2})(?::(\d{2}))?")
EXAMPLES = "today, yesterday, 2026-11-01, 14:30 or 2026-11-01 14:30"


class TimeTypedError(ValueError):
    """What was typed is not a time; the message names the option."""


def read_time(
    text: str, timezone: tzinfo, now: datetime, option: str, *, end: bool = False
) -> datetime:
    """The moment `text` means, time-zone aware. A day alone (`today`, `2026-11-01`) is its
    first moment, or with `end` the first moment after it, so "--to 2026-11-01" includes
    the whole of that day."""
    typed = " ".join(text.strip().split()).lower()
    local_now = now.astimezone(timezone)
    if typed == "now":
        return local_now
    word, _, rest = typed.partition(" ")
    if word in DAY_WORDS:  # "today", "tomorrow 15:15"
        typed = f"{local_now.date() + timedelta(days=DAY_WORDS[word])} {rest}".strip()
    if DAY.fullmatch(typed):
        day = _date(typed, text, option) + timedelta(days=1 if end else 0)
        return datetime.combine(day, time(), timezone)
    try:
        if found := DAY_AND_CLOCK.fullmatch(typed):
            day_text, hour, minute, second = found.groups()
            day = _date(day_text, text, option) if day_text else local_now.date()
            return datetime.combine(day, time(int(hour), int(minute), int(second or 0)), timezone)
        value = datetime.fromisoformat(typed.upper().replace(" ", "T", 1))  # with an offset
    except ValueError:
        raise _mistake(text, option) from None
    return value if value.tzinfo else value.replace(tzinfo=timezone)


def _date(typed: str, text: str, option: str) -> date:
    try:
        return date.fromisoformat(typed)
    except ValueError:
        raise _mistake(text, option) from None


def _mistake(text: str, option: str) -> TimeTypedError:
    shown = text.strip()[:40]
    return TimeTypedError(f"{option}: '{shown}' is not a date or time; write {EXAMPLES}")


__all__ = ["EXAMPLES", "TimeTypedError", "read_time"]
