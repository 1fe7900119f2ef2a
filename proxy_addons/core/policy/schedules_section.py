"""The policy's times: `schedules:` (days and times of day, in term or out) and the school's
terms and closures (dates), read by `load.load_policy`; `unblocks.lessons` uses the same
time ranges.
"""

from __future__ import annotations

import re
from datetime import date, time
from typing import Any

from proxy_addons.core.policy.checker import Checker
from proxy_addons.core.policy.model import Schedule, TimeRange
from proxy_addons.core.policy.yaml_reader import LMap, Where

DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DAY_GROUPS = {"weekdays": range(0, 5), "weekend": range(5, 7), "every_day": range(0, 7)}
_TIME_RANGE = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")


def date_spans(ck: Checker, raw: Any, where: Where, what: str) -> list[tuple[str, date, date]]:
    out: list[tuple[str, date, date]] = []
    items = ck.listing(raw, where, f"the {what}s")
    for i, item in enumerate(items or []):
        at = items.at(i) if items is not None else where
        m = ck.mapping(item, at, f"a {what}", ["name", "start", "end"])
        if m is None:
            continue
        name = str(m.get("name", f"{what} {i + 1}"))
        start = ck.day(m.get("start"), m.at("start"), f"the {what}'s start")
        end = ck.day(m.get("end", m.get("start")), m.at("end"), f"the {what}'s end")
        if start and end:
            if end < start:
                ck.fail(at, f"the {what} '{name}' ends ({end}) before it starts ({start})")
            else:
                out.append((name, start, end))
    return out


def load_schedules(ck: Checker, raw: Any, where: Where) -> dict[str, Schedule]:
    out: dict[str, Schedule] = {}
    m = ck.mapping(raw, where, "schedules", []) if not isinstance(raw, LMap) else raw
    for name, value in (m or {}).items():
        at = m.at(name) if m is not None else where
        sm = ck.mapping(value, at, f"schedule '{name}'", ["days", "times", "term"])
        if sm is None:
            continue
        days = _days(ck, sm.get("days", ["every_day"]), sm.at("days"), name)
        times = time_ranges(ck, sm.get("times"), sm.at("times"), name)
        term = str(sm.get("term", "any"))
        if term not in ("school_days", "holidays", "any"):
            ck.fail(sm.at("term"), f"term should be school_days, holidays or any, not '{term}'")
        out[name] = Schedule(name, days, times, term, at)
    return out


def _days(ck: Checker, raw: Any, where: Where, name: str) -> frozenset[int]:
    days: set[int] = set()
    for item in ck.listing(raw, where, f"the days of schedule '{name}'") or []:
        word = str(item).strip().lower()
        if word in DAYS or word in _DAY_NAMES:
            days.add(DAYS[word[:3]])
        elif word in DAY_GROUPS:
            days.update(DAY_GROUPS[word])
        else:
            ck.fail(where, f"'{item}' is not a day; use mon..sun, weekdays, weekend or every_day")
    return frozenset(days)


def time_ranges(ck: Checker, raw: Any, where: Where, name: str) -> tuple[TimeRange, ...]:
    out: list[TimeRange] = []
    for item in ck.listing(raw, where, f"the times of schedule '{name}'") or []:
        match = _TIME_RANGE.fullmatch(str(item).strip())
        if not match:
            ck.fail(where, f"'{item}' is not a time range; write it like 12:00-13:15")
            continue
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
            ck.fail(where, f"'{item}' has an impossible time")
            continue
        start, end = time(h1, m1), time.max if h2 == 24 else time(h2, m2)
        if end <= start:
            ck.fail(where, f"'{item}' ends before it starts; split ranges that cross midnight")
            continue
        out.append(TimeRange(start, end))
    return tuple(out)
