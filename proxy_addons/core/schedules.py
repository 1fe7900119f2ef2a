"""When a schedule is in force, in the school's own time zone and term calendar."""

from __future__ import annotations

from datetime import date, datetime

from proxy_addons.core.policy.model import Policy, Schedule


def is_school_day(policy: Policy, day: date) -> bool:
    """A weekday inside a term and outside every closure (half term, INSET)."""
    if day.weekday() >= 5:
        return False
    if not any(t.start <= day <= t.end for t in policy.terms):
        return False
    return not any(c.start <= day <= c.end for c in policy.closures)


def schedule_active(policy: Policy, schedule: Schedule, now: datetime) -> bool:
    """Whether `schedule` covers the instant `now` (any time zone; converted to the school's)."""
    local = now.astimezone(policy.timezone)
    if local.weekday() not in schedule.days:
        return False
    if schedule.term != "any":
        school_day = is_school_day(policy, local.date())
        if school_day != (schedule.term == "school_days"):
            return False
    if not schedule.times:
        return True
    clock = local.time().replace(tzinfo=None)
    return any(r.start <= clock < r.end for r in schedule.times)
