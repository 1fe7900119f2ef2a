"""The school's devices over a term, per check and overall, as counts.

Governors and the IT provider need to show, for the term and not just today, how many
devices were encrypted, locked, patched and so on the whole time, how many fell short at
some point and for how many device-days, how many fall short now, and how many never
reported (unknown: never counted as compliant). Read from every kept report
(`device_reports`), with the last one before the term giving the state the term began in.

A device's state lasts until its next report, but no longer than `devices.stale_days`:
after that it is silent and counts as not compliant on every check until it reports again,
as the inventory counts a stale device. A check a device has not reported yet (an older
agent, an MDM export that can't tell) isn't counted for it until it does; once reported, a
report without it counts as unknown. A revoked device is counted until it was revoked.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from typing import Any

import sqlalchemy as sa

from proxy_addons.core.policy.model import Policy, Term
from proxy_addons.record.device_term import OVERALL, CheckFigures, DeviceFigures
from proxy_addons.store import Store
from proxy_addons.store.schema import device_reports, devices

# The order the report lists checks in: the standard's, then any others by id.
CHECK_ORDER = (
    "disk_encryption",
    "screen_lock",
    "patches",
    "removable_storage",
    "software",
    "accounts",
    "password_policy",
    "os_supported",
    "hardware_age",
    "firewall",
    "antimalware",
    "mdm_compliance",
)
DAY = 86400.0


@dataclass(frozen=True)
class Known:
    """A device as the term counts it."""

    device_id: str
    from_mdm: bool
    stop: datetime  # the end of the period, or when it was revoked


@dataclass(frozen=True)
class Said:
    """One report (or a run of reports alike, none later than `stale` after the one before:
    `last` is the run's last): when, the device's verdict, and which checks passed."""

    at: datetime
    compliant: bool
    passed: dict[str, bool]
    last: datetime | None = None
    follows: bool | None = None  # made within `stale` of the report before (None: see `at`)

    @property
    def latest(self) -> datetime:
        return self.last or self.at


@dataclass
class Tally:
    """One device's figures for one check (or OVERALL)."""

    bad_seconds: float = 0.0
    bad_now: bool = False


@dataclass
class Totals:
    devices: int = 0
    whole_term: int = 0
    at_some_point: int = 0
    seconds: float = 0.0
    now: int = 0
    not_reported: int = 0
    from_mdm: int = 0


def _passed(results: Sequence[Any]) -> dict[str, bool]:
    return {str(r.get("id")): r.get("status") == "pass" for r in results if isinstance(r, dict)}


def runs(sent: Iterable[Said], stale: timedelta) -> list[Said]:
    """Reports alike in a row, none more than `stale` after the one before, as one: the
    term's figures are the same, and a device reporting every 15 minutes sends thousands."""
    found: list[Said] = []
    for report in sent:
        run = found[-1] if found else None
        if (
            run is not None
            and report.compliant == run.compliant
            and report.passed == run.passed
            and (report.follows if report.follows is not None else report.at - run.latest <= stale)
        ):
            found[-1] = replace(run, last=report.at)
        else:
            if run is not None and report.follows:  # the run lasted until this one
                found[-1] = replace(run, last=max(run.latest, report.at))
            found.append(report)
    return found


def _stretches(
    sent: Sequence[Said], start: datetime, stop: datetime, stale: timedelta
) -> Iterator[tuple[Said, bool, datetime, datetime]]:
    """The period cut by report: (report, silent, from, to); silent once the report is older
    than `stale` and no other has come."""
    for report, following in itertools.zip_longest(sent, sent[1:]):
        until = min(following.at if following is not None else stop, stop)
        begin, fresh_until = max(report.at, start), min(report.latest + stale, until)
        if fresh_until > begin:
            yield report, False, begin, fresh_until
        silent_from = max(fresh_until, start)
        if until > silent_from:
            yield report, True, silent_from, until


def tally_device(
    sent: Sequence[Said], start: datetime, stop: datetime, stale: timedelta
) -> dict[str, Tally]:
    """One device's tallies by check and OVERALL; empty when it never reported in the term.
    A check counts from the first report that has it (the last before the term included)."""
    if not any(s.latest >= start and s.at < stop for s in sent):
        return {}
    tallies: dict[str, Tally] = {OVERALL: Tally()}
    for report, silent, begin, end in _stretches(sent, start, stop, stale):
        seconds = (end - begin).total_seconds()
        passed = report.passed
        for check in passed:
            tallies.setdefault(check, Tally())
        for check, tally in tallies.items():
            if silent:
                good = False
            elif check == OVERALL:
                good = report.compliant
            else:
                good = passed.get(check, False)
            if not good:
                tally.bad_seconds += seconds
            tally.bad_now = not good
    return tallies


def _known(store: Store, start: datetime, until: datetime) -> list[Known]:
    d = devices.c
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(d.device_id, d.source, d.revoked_at).where(
                d.enrolled_at < until, sa.or_(d.revoked_at.is_(None), d.revoked_at >= start)
            )
        ).all()
    return [Known(r.device_id, r.source == "mdm", min(until, r.revoked_at or until)) for r in rows]


def _reports(
    store: Store, start: datetime, until: datetime, stale: timedelta
) -> Iterator[tuple[str, list[Said]]]:
    """Each device's reports made before `until`, from the last one before `start`, in runs.

    A device reporting every 15 minutes sends thousands a term, nearly all compliant, so
    the database leaves out an agent's compliant report between two others that are
    compliant and made within `stale` of it: an agent's compliant report passed every check
    (agent/report.py), so it changes nothing but the checks' list, and a check first reported
    in such a report is counted from the next one kept (the end of the run, or a silence),
    which changes no figure. `follows` keeps the runs whole across the reports left out.
    """
    r = device_reports.c
    last = (
        sa.select(r.device_id, sa.func.max(r.generated_at).label("at"))
        .where(r.generated_at < start)
        .group_by(r.device_id)
        .subquery()
    )
    columns = (r.id, r.device_id, r.generated_at, r.compliant, r.source)
    before = sa.select(*columns).join(
        last, sa.and_(last.c.device_id == r.device_id, last.c.at == r.generated_at)
    )
    during = sa.select(*columns).where(r.generated_at >= start, r.generated_at < until)
    both = sa.union_all(before, during).subquery()
    device, order = both.c.device_id, (both.c.generated_at, both.c.id)
    day = _days(store.dialect, both.c.generated_at)
    near = sa.select(
        both,
        sa.func.lag(both.c.compliant).over(partition_by=device, order_by=order).label("before"),
        sa.func.lead(both.c.compliant).over(partition_by=device, order_by=order).label("after"),
        (day - sa.func.lag(day).over(partition_by=device, order_by=order)).label("gap"),
        (sa.func.lead(day).over(partition_by=device, order_by=order) - day).label("next_gap"),
    ).subquery()
    days = stale.total_seconds() / DAY
    kept = sa.or_(
        sa.not_(near.c.compliant),
        near.c.source != "agent",
        near.c.before.is_(None),
        near.c.after.is_(None),
        near.c.before != near.c.compliant,
        near.c.after != near.c.compliant,
        near.c.gap > days,
        near.c.next_gap > days,
    )
    results = sa.select(r.results).where(r.id == near.c.id).scalar_subquery()
    query = (
        sa.select(
            near.c.device_id,
            near.c.generated_at,
            near.c.compliant,
            results.label("results"),
            (near.c.gap <= days).label("follows"),
        )
        .where(kept)
        .order_by(near.c.device_id, near.c.generated_at, near.c.id)
    )
    with store.connect() as conn:
        rows = conn.execution_options(yield_per=1000).execute(query)
        for device_id, group in itertools.groupby(rows, key=lambda row: row.device_id):
            sent = (
                Said(
                    row.generated_at,
                    bool(row.compliant),
                    _passed(_json(row.results)),
                    follows=bool(row.follows),
                )
                for row in group
            )
            yield device_id, runs(sent, stale)


def _days(dialect: str, column: Any) -> Any:
    """A time as a number of days, for the gaps between reports."""
    if dialect == "sqlite":
        return sa.func.julianday(column)
    return sa.extract("epoch", column) / DAY


def _json(value: Any) -> Sequence[Any]:
    """The results as the database gave them back: parsed, or JSON text."""
    if isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, list) else []


def _ordered(checks: Iterable[str]) -> list[str]:
    rank = {c: n for n, c in enumerate(CHECK_ORDER)}
    return sorted(checks, key=lambda c: (rank.get(c, len(rank)), c))


def term_figures(
    store: Store, start: datetime, end: datetime, now: datetime, stale_days: int
) -> DeviceFigures:
    """The devices' figures over [start, end), counted to `now` while the period runs."""
    until = min(end, now)
    stale = timedelta(days=stale_days)
    known = {k.device_id: k for k in _known(store, start, until)}
    tallies: dict[str, dict[str, Tally]] = {}
    if until > start:
        for device_id, sent in _reports(store, start, until, stale):
            if device_id in known:
                tallies[device_id] = tally_device(sent, start, known[device_id].stop, stale)
    checks = {c for found in tallies.values() for c in found if c != OVERALL}
    rows = []
    for check in [OVERALL, *_ordered(checks)]:
        t = Totals(devices=len(known))
        for device in known.values():
            tally = tallies.get(device.device_id, {}).get(check)
            if tally is None:
                t.not_reported += 1
                continue
            t.from_mdm += device.from_mdm
            t.seconds += tally.bad_seconds
            t.now += tally.bad_now and device.stop >= until  # a revoked one isn't in use
            if tally.bad_seconds > 0:
                t.at_some_point += 1
            else:
                t.whole_term += 1
        rows.append(
            CheckFigures(
                check,
                t.devices,
                t.whole_term,
                t.at_some_point,
                t.seconds / DAY,
                t.now,
                t.not_reported,
                t.from_mdm,
            )
        )
    return DeviceFigures(
        start=start,
        until=until,
        ended=now >= end,
        devices=len(known),
        reported=sum(1 for found in tallies.values() if found),
        from_mdm=sum(k.from_mdm for k in known.values()),
        silent_after_days=stale_days,
        rows=tuple(rows),
    )


def for_term(store: Store, policy: Policy, term: Term, now: datetime) -> DeviceFigures:
    """The figures over a term of the policy's calendar (its days in the school's time)."""
    tz = policy.timezone
    start = datetime.combine(term.start, time.min, tz)
    end = datetime.combine(term.end + timedelta(days=1), time.min, tz)
    return term_figures(store, start, end, now.astimezone(tz), policy.devices.stale_days)


__all__ = ["CHECK_ORDER", "Said", "Tally", "for_term", "runs", "tally_device", "term_figures"]
