"""Daily totals: each finished day of the access log counted, with no personal data, for years.

The access log names people and is kept for `monitoring.retention_days` (often 90 days);
a governors' report over a term, or a trend over years, must not depend on it. So every
finished local day (the school's time zone) is counted into `daily_totals`: one row per
profile, category ("" when none), decision, reason and whether it was a termly check's
visit, with the count. No user, address, device or site is kept.

- Idempotent: totalling a day again replaces its rows (in one transaction).
- Catching up: each run totals every finished day since the last one totalled (days the
  gateway was down included: a day with no traffic is totalled as such), and counts the
  last `RECOUNT_DAYS` again while the access log still holds all of them, for records
  that reached the store late (a store that was down).
- Before the purge: `access_store.purge` totals what is missing first, and never deletes
  the records of a day not yet totalled (`safe_cutoff`); any other purge of the access
  log must do the same (call `total_missing`, then purge no further than `safe_cutoff`).

On an upgrade the first run counts from the oldest day the access log still holds (that
day may have been partly purged already: its count can be short).

A day that was totalled has a marker row (`reason` "day totalled", count 0), so a quiet
day (no rows) is told apart from a day that was never counted (`totalled_days`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

import sqlalchemy as sa

from proxy_addons.core.periodic import Every
from proxy_addons.core.policy.model import Policy
from proxy_addons.store import Store
from proxy_addons.store.schema import access_log, daily_totals

logger = logging.getLogger(__name__)

DAY_TOTALLED = "day totalled"  # the marker row's reason: this day was counted
RECOUNT_DAYS = 2  # finished days counted again on each run, for late records
SWEEP_SECONDS = 900.0  # how often the gateway's job looks for a finished day
# Reasons that are a page's second record (the content filter's, stage "response"): its
# request was counted already, so they are blocks but not more requests.
PAGE_REASONS = frozenset({"content", "unscanned"})


@dataclass(frozen=True)
class Total:
    day: date
    profile: str
    category: str  # "" when none
    decision: str  # allow | block
    reason: str
    check_visit: bool
    count: int


def day_bounds(day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """The instants (UTC) a local day starts and ends: 23 or 25 hours on a clock change."""
    start = datetime.combine(day, time.min, tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time.min, tz).astimezone(UTC)
    return start, end


def local_day(at: datetime, tz: tzinfo) -> date:
    return at.astimezone(tz).date()


def total_day(conn: sa.Connection, day: date, tz: tzinfo) -> int:
    """Count `day` from the access log into daily_totals, replacing what was there; returns
    the rows written (the marker included). Inside the caller's write transaction."""
    start, end = day_bounds(day, tz)
    c = access_log.c
    category = sa.func.coalesce(c.category, "")
    rows = conn.execute(
        sa.select(c.profile, category, c.decision, c.reason, c.check_visit, sa.func.count())
        .where(c.at >= start, c.at < end)
        .group_by(c.profile, category, c.decision, c.reason, c.check_visit)
    ).all()
    conn.execute(daily_totals.delete().where(daily_totals.c.day == day))
    values = [
        {
            "day": day,
            "profile": profile[:100],
            "category": cat[:100],
            "decision": decision[:8],
            "reason": reason[:20],
            "check_visit": bool(check),
            "count": int(n),
        }
        for profile, cat, decision, reason, check, n in rows
    ]
    values.append(
        {
            "day": day,
            "profile": "",
            "category": "",
            "decision": "",
            "reason": DAY_TOTALLED,
            "check_visit": False,
            "count": 0,
        }
    )
    conn.execute(daily_totals.insert(), values)
    return len(values)


def _last_totalled(conn: sa.Connection) -> date | None:
    found: date | None = conn.execute(
        sa.select(sa.func.max(daily_totals.c.day)).where(daily_totals.c.reason == DAY_TOTALLED)
    ).scalar_one()
    return found


def _first_logged(conn: sa.Connection) -> datetime | None:
    found: datetime | None = conn.execute(sa.select(sa.func.min(access_log.c.at))).scalar_one()
    return found


def days_to_total(
    store: Store, tz: tzinfo, now: datetime, *, retention_days: int | None = None
) -> list[date]:
    """The finished days a run totals: those not yet totalled, and the last RECOUNT_DAYS
    again while the access log (kept `retention_days`) still holds the whole day."""
    today = local_day(now, tz)
    with store.connect() as conn:
        last, first = _last_totalled(conn), _first_logged(conn)
    if last is not None:
        start = last + timedelta(days=1)
    elif first is not None:
        start = local_day(first, tz)
    else:
        return []  # nothing logged yet, nothing totalled: nothing to count
    days = {start + timedelta(days=n) for n in range((today - start).days)}
    kept_from = now - timedelta(days=retention_days) if retention_days else None
    for n in range(1, RECOUNT_DAYS + 1):
        day = today - timedelta(days=n)
        whole = kept_from is None or day_bounds(day, tz)[0] >= kept_from
        if whole and (first is None or day_bounds(day, tz)[1] > first):
            days.add(day)
    return sorted(days)


def total_days(store: Store, tz: tzinfo, days: Iterable[date]) -> list[date]:
    """Total each day in its own transaction; returns the days totalled. A day another
    gateway totalled at the same moment (a key clash) is left to it."""
    done = []
    for day in days:
        try:
            with store.begin() as conn:
                total_day(conn, day, tz)
        except sa.exc.IntegrityError:
            logger.info("Daily totals for %s: another gateway counted it", day)
            continue
        done.append(day)
    if done:
        logger.info("Daily totals: counted %d day(s), %s to %s", len(done), done[0], done[-1])
    return done


def total_missing(
    store: Store, tz: tzinfo, now: datetime, *, retention_days: int | None = None
) -> list[date]:
    """Total every finished day not yet totalled (and recount the last few): the job's run,
    and what a purge of the access log does first."""
    return total_days(store, tz, days_to_total(store, tz, now, retention_days=retention_days))


def safe_cutoff(store: Store, tz: tzinfo, cutoff: datetime) -> datetime:
    """`cutoff`, or earlier: the start of the first day still in the access log before
    `cutoff` that has not been totalled, so that no purge loses an uncounted day."""
    with store.connect() as conn:
        first = _first_logged(conn)
        if first is None or first >= cutoff:
            return cutoff
        start_day = local_day(first, tz)
        end_day = local_day(cutoff, tz)
        counted = set(
            conn.execute(
                sa.select(daily_totals.c.day).where(
                    daily_totals.c.reason == DAY_TOTALLED,
                    daily_totals.c.day >= start_day,
                    daily_totals.c.day <= end_day,
                )
            ).scalars()
        )
    day = start_day
    while day <= end_day:
        if day not in counted:
            return min(cutoff, day_bounds(day, tz)[0])
        day += timedelta(days=1)
    return cutoff


def totalled_days(store: Store, first: date, last: date) -> set[date]:
    """The days from `first` to `last` (inclusive) that have been totalled."""
    with store.connect() as conn:
        return set(
            conn.execute(
                sa.select(daily_totals.c.day).where(
                    daily_totals.c.reason == DAY_TOTALLED,
                    daily_totals.c.day >= first,
                    daily_totals.c.day <= last,
                )
            ).scalars()
        )


def read_totals(store: Store, first: date, last: date) -> list[Total]:
    """Every count from `first` to `last` (inclusive), markers left out."""
    t = daily_totals.c
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(daily_totals)
            .where(t.day >= first, t.day <= last, t.reason != DAY_TOTALLED)
            .order_by(t.day)
        ).all()
    return [
        Total(
            **{**r._mapping, "check_visit": bool(r.check_visit), "count": int(r._mapping["count"])}
        )
        for r in rows
    ]


def totals_job(
    store: Store,
    policy: Callable[[], Policy],
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Every:
    """The gateway's job: `total_missing` at start and every SWEEP_SECONDS, in the time zone
    and with the access log's retention of the policy in force."""

    def run() -> None:
        current = policy()
        days = current.monitoring.retention_days
        total_missing(store, current.timezone, clock(), retention_days=days)

    return Every(
        "daily-totals",
        SWEEP_SECONDS,
        run,
        "Daily totals not counted; trying again later",
        at_start=True,
    )


__all__ = [
    "totals_job",
    "DAY_TOTALLED",
    "PAGE_REASONS",
    "Total",
    "day_bounds",
    "days_to_total",
    "local_day",
    "read_totals",
    "safe_cutoff",
    "total_day",
    "total_days",
    "total_missing",
    "totalled_days",
]
