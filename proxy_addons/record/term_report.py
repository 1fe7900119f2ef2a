"""The governors' termly report on filtering and monitoring: counts, not people.

It reads figures that outlive the access log: the daily totals (record/daily_totals.py)
for what was allowed and blocked, by category and profile, with the termly checks' own
visits left out; the `alerts` table for alerts by kind, audience and severity and what
became of them; the `incidents` table for anonymised incident counts; the unblocks granted;
and, given by the caller (the CLI, the web app), the annual reviews, the termly checks'
summary and the school devices' figures against the DfE cyber security standard
(devices/term_compliance.py). When some of the term's days were never totalled (the access
log's retention is shorter than the term and totals began later, or the gateway was not
counting) the report says so, naming the days. No pupil is named; staff appear by their
role in the school.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa

from proxy_addons.core.policy.model import Policy, Term
from proxy_addons.pages.blockpage import render_page
from proxy_addons.record import daily_totals
from proxy_addons.record import device_term as dwords
from proxy_addons.record import report_words as words
from proxy_addons.record.device_term import CSV_HEADER, DeviceFigures, csv_rows
from proxy_addons.record.term_charts import Chart, bar_chart, by_week, unknown_weeks
from proxy_addons.store import Store
from proxy_addons.store.schema import alerts, incidents, unblocks

GRANTED = ("active", "expired", "revoked")
OPEN_STATES = ("new", "acknowledged")


class ReviewLike(Protocol):
    """An annual review as workflow/reviews.py keeps it."""

    @property
    def held_on(self) -> date: ...
    @property
    def participants(self) -> Sequence[dict[str, str]]: ...
    @property
    def findings(self) -> str: ...
    @property
    def actions(self) -> str: ...


@dataclass(frozen=True)
class ChecksSummary:
    """The term's filtering checks in a line (checks/report.py has the full report)."""

    runs: int
    passed: int
    failed: int
    errors: int
    missing_profiles: list[str]


@dataclass(frozen=True)
class Coverage:
    """Which of the term's days the figures cover."""

    counted_to: date | None  # the last day counted (yesterday while the term runs)
    missing: list[str]  # runs of days with no totals, in words
    missing_days: int
    retention_days: int
    term_days: int
    days: frozenset[date] = frozenset()  # the days with no figures

    @property
    def retention_shorter(self) -> bool:
        return self.retention_days < self.term_days


@dataclass(frozen=True)
class TermReport:
    school: str
    term: Term
    start: datetime
    end: datetime
    coverage: Coverage
    blocks: list[tuple[str, str, int]]  # (category label, profile label, count)
    by_profile: list[tuple[str, int, int]]  # (profile label, requests, blocks)
    alerts: list[tuple[str, str, int, int, int]]  # kind, audience, severity, raised, closed
    outcomes: list[tuple[str, int]]  # (outcome in words, alerts closed with it)
    incidents: list[tuple[str, int, int]]  # (category label, open, closed)
    unblocks: list[dict[str, Any]]
    totals: dict[str, int]
    charts: list[Chart]
    reviews: list[ReviewLike] = field(default_factory=list)
    next_review: date | None = None
    checks: ChecksSummary | None = None
    devices: DeviceFigures | None = None


def find_term(policy: Policy, name: str) -> Term:
    for term in policy.terms:
        if term.name.lower() == name.strip().lower():
            return term
    names = ", ".join(t.name for t in policy.terms) or "none"
    raise ValueError(f"No term called '{name}' in the policy (terms: {names}).")


def current_term(policy: Policy, today: date) -> Term | None:
    """The term in force today, or else the last one that ended, or else the first."""
    past = [t for t in policy.terms if t.start <= today]
    return max(past, key=lambda t: t.start) if past else (policy.terms[0] if policy.terms else None)


def _coverage(store: Store, policy: Policy, term: Term, today: date) -> Coverage:
    last = min(term.end, today - timedelta(days=1))
    days = (term.end - term.start).days + 1
    retention = policy.monitoring.retention_days
    if last < term.start:
        return Coverage(None, [], 0, retention, days)
    counted = daily_totals.totalled_days(store, term.start, last)
    missing = [
        term.start + timedelta(days=n)
        for n in range((last - term.start).days + 1)
        if term.start + timedelta(days=n) not in counted
    ]
    runs = [words.run_text(a, b) for a, b in words.day_runs(missing)]
    return Coverage(last, runs, len(missing), retention, days, frozenset(missing))


def build_report(
    store: Store,
    policy: Policy,
    term: Term,
    *,
    today: date | None = None,
    reviews: Sequence[ReviewLike] = (),
    next_review: date | None = None,
    checks: ChecksSummary | None = None,
    devices: DeviceFigures | None = None,
) -> TermReport:
    tz = policy.timezone
    today = today or datetime.now(tz).date()
    start = datetime.combine(term.start, time.min, tz).astimezone(UTC)
    end = datetime.combine(term.end + timedelta(days=1), time.min, tz).astimezone(UTC)
    totals = daily_totals.read_totals(store, term.start, term.end)
    people = [t for t in totals if not t.check_visit]
    block_counts: Counter[tuple[str, str]] = Counter()
    profile_requests: Counter[str] = Counter()
    profile_blocks: Counter[str] = Counter()
    blocks_by_day: Counter[date] = Counter()
    for t in people:
        label = words.profile_label(policy, t.profile)
        if t.reason not in daily_totals.PAGE_REASONS:
            profile_requests[label] += t.count  # a page's second record is not a request
        if t.decision == "block":
            block_counts[(words.category_label(policy, t.category, t.reason), label)] += t.count
            profile_blocks[label] += t.count
            blocks_by_day[t.day] += t.count
    with store.connect() as conn:
        alert_rows = conn.execute(
            sa.select(
                alerts.c.kind,
                alerts.c.audience,
                alerts.c.severity,
                alerts.c.state,
                alerts.c.outcome,
                alerts.c.raised_at,
            ).where(alerts.c.raised_at >= start, alerts.c.raised_at < end)
        ).all()
        incident_rows = conn.execute(
            sa.select(incidents.c.category, incidents.c.state).where(
                incidents.c.occurred_at >= start, incidents.c.occurred_at < end
            )
        ).all()
        granted = conn.execute(
            sa.select(unblocks)
            .where(
                unblocks.c.status.in_(GRANTED),
                unblocks.c.decided_at >= start,
                unblocks.c.decided_at < end,
            )
            .order_by(unblocks.c.decided_at)
        ).all()
    alert_table: dict[tuple[str, str, int], list[int]] = {}
    outcomes: Counter[str] = Counter()
    alerts_by_day: Counter[date] = Counter()
    for a in alert_rows:
        key = (words.ALERT_KINDS.get(a.kind, words.plain(a.kind)), a.audience, a.severity)
        row = alert_table.setdefault(key, [0, 0])
        row[0] += 1
        if a.state not in OPEN_STATES:
            row[1] += 1
            outcomes[words.OUTCOMES.get(a.outcome or "", "Closed, no outcome given")] += 1
        else:
            outcomes["Still open"] += 1
        alerts_by_day[a.raised_at.astimezone(tz).date()] += 1
    incident_table: dict[str, list[int]] = {}
    for i in incident_rows:
        label = words.category_label(policy, i.category) if i.category else "Other"
        incident_table.setdefault(label, [0, 0])[0 if i.state == "open" else 1] += 1
    coverage = _coverage(store, policy, term, today)
    if checks is not None:
        labels = [words.profile_label(policy, p) for p in checks.missing_profiles]
        checks = replace(checks, missing_profiles=labels)
    return TermReport(
        school=policy.school,
        term=term,
        start=start,
        end=end,
        coverage=coverage,
        blocks=sorted(((c, p, n) for (c, p), n in block_counts.items()), key=_by_count),
        by_profile=sorted(
            ((p, n, profile_blocks[p]) for p, n in profile_requests.items()),
            key=lambda r: (-r[1], r[0]),
        ),
        alerts=sorted(
            (
                (kind, words.AUDIENCES.get(aud, words.plain(aud)), sev, n, closed)
                for (kind, aud, sev), (n, closed) in alert_table.items()
            ),
            key=lambda r: (-r[2], -r[3], r[0]),
        ),
        outcomes=sorted(outcomes.items(), key=lambda r: (-r[1], r[0])),
        incidents=sorted(((c, o, k) for c, (o, k) in incident_table.items()), key=_by_count),
        unblocks=[_pseudonymous(row, policy) for row in granted],
        totals={
            "decisions": sum(profile_requests.values()),
            "blocks": sum(block_counts.values()),
            "check_visits": sum(t.count for t in totals if t.check_visit),
            "alerts": len(alert_rows),
            "alerts_closed": sum(r[1] for r in alert_table.values()),
            "incidents": len(incident_rows),
            "unblocks": len(granted),
        },
        charts=[
            bar_chart(
                "Blocks by week",
                by_week(term.start, term.end, blocks_by_day.items()),
                unknown_weeks(term.start, term.end, coverage.days),
            ),
            bar_chart("Alerts by week", by_week(term.start, term.end, alerts_by_day.items())),
        ],
        reviews=[r for r in reviews if term.start <= r.held_on <= term.end],
        next_review=next_review,
        checks=checks,
        devices=devices,
    )


def _by_count(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return (-sum(n for n in row if isinstance(n, int)), *row)


def _pseudonymous(row: Any, policy: Policy) -> dict[str, Any]:
    if row.audience_kind == "profile":
        audience = ", ".join(words.profile_label(policy, p) for p in row.audience)
    elif row.audience_kind == "device":
        audience = f"{len(row.audience)} device(s)"
    else:
        audience = f"{len(row.audience)} user(s)"
    tz = policy.timezone
    return {
        "id": row.id,
        "target": row.target,
        "scope": row.scope,
        "audience": audience,
        "from": row.starts_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
        "until": row.ends_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
        "reason": row.reason,
        "requested_by": row.requested_by,  # staff, by role in the school
        "decided_by": row.decided_by,
        "status": row.status,
    }


def render_report(report: TermReport, **page: Any) -> str:
    """The report as one self-contained HTML page; `page` adds the web app's bar."""
    return render_page(
        "report_term.html", report=report, school=report.school, words=words, dwords=dwords, **page
    )


def write_report(report: TermReport, folder: Path) -> list[Path]:
    """report.html plus blocks.csv, alerts.csv, incidents.csv and unblocks.csv in `folder`,
    and devices.csv when the report has the devices' figures."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "report.html"]
    written[0].write_text(render_report(report), encoding="utf-8")
    tables: dict[str, tuple[list[str], Sequence[Sequence[Any]]]] = {
        "blocks.csv": (["category", "profile", "blocks"], report.blocks),
        "alerts.csv": (
            ["kind", "audience", "severity", "alerts", "closed with an outcome"],
            report.alerts,
        ),
        "incidents.csv": (["category", "open", "closed"], report.incidents),
        "unblocks.csv": (
            list(report.unblocks[0]) if report.unblocks else ["id"],
            [list(u.values()) for u in report.unblocks],
        ),
    }
    if report.devices is not None:
        tables["devices.csv"] = (CSV_HEADER, csv_rows(report.devices))
    for name, (header, rows) in tables.items():
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
        (folder / name).write_text(out.getvalue(), encoding="utf-8")
        written.append(folder / name)
    return written


__all__ = [
    "ChecksSummary",
    "Coverage",
    "ReviewLike",
    "TermReport",
    "build_report",
    "current_term",
    "find_term",
    "render_report",
    "write_report",
]
