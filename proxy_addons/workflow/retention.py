"""The retention purge: every table that names a person loses its rows once the policy's
`retention:` (and `monitoring.retention_days` for the access log) says they are too old.

Each table has one `Rule`: the clear date column that judges a row, and what keeps a row
however old it is (an alert still new or acknowledged, or one an incident still kept rests
on; an incident still open; a report nobody has closed). Rows go in batches, each its own short
transaction, so a big table never holds the store's locks for long; a table whose purge
fails is logged and counted (`record.metrics.retention_purge_failed`) and the others still
go. The log says how many rows went from which table, never whose.

The audit trail is never purged: it is hash-chained (workflow/audit.py), so deleting its
old records would break the chain that proves nothing was changed. The gateway runs
`purge` daily (gateway/services.py); `schoolgate store purge` runs it now.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from proxy_addons.alerts.alert_rows import CLOSED
from proxy_addons.alerts.outbox_rows import SENT
from proxy_addons.core.policy.model import Policy
from proxy_addons.record import daily_totals as daily_totals_job
from proxy_addons.record import metrics
from proxy_addons.store import Store
from proxy_addons.store.schema import (
    access_log,
    alert_outbox,
    alerts,
    check_actions,
    check_results,
    check_runs,
    daily_totals,
    device_reports,
    incident_actions,
    incidents,
    portal_form_uses,
    reports,
    seen_devices,
    unblocks,
    web_sessions,
)

logger = logging.getLogger(__name__)

BATCH = 1000  # rows per transaction: short locks, even on a table of millions
DAY_SECONDS = 24 * 3600.0  # how often the gateway runs the purge
# A portal form token acts once within its lifetime (2 hours, gateway/portal_identity.py);
# its mark only has to outlive that, and gateway/portal_forms.py drops most sooner.
SPENT_TOKENS_KEPT = timedelta(days=1)


@dataclass(frozen=True)
class Rule:
    """One table's retention: its rows older than `days` go, unless `keep` says otherwise.

    `old(cutoff, now)` is the condition a row must meet to go (spent tokens and sent outbox
    rows go by their own clock, `now`, whatever `days`); `children` are tables whose rows
    hang off this one's key (column), deleted with it.
    """

    table: sa.Table
    days: int
    old: Callable[[datetime, datetime], sa.ColumnElement[bool]]
    children: tuple[sa.Column[int], ...] = ()

    @property
    def name(self) -> str:
        return self.table.name


@dataclass
class PurgeReport:
    """What one purge removed (or, dry, would remove), per table; and which tables failed."""

    removed: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    dry_run: bool = False


def _incident_rests_on(alert_id: sa.Column[int], incident_id: sa.Column[int]) -> sa.Exists:
    """An incident, open or closed, opened from this alert: the alert is its basis, and
    alone says the incident is about a member of staff (the headteacher's alone)."""
    i = incidents.c
    return sa.exists().where(sa.or_(i.id == incident_id, i.alert_id == alert_id))


def rules(policy: Policy) -> list[Rule]:
    """Every table that names a person, with the policy's retention for it."""
    keep = policy.retention
    a, r, u, s = alerts.c, reports.c, unblocks.c, seen_devices.c
    return [
        Rule(
            access_log,
            policy.monitoring.retention_days,
            lambda cutoff, now: access_log.c.at < cutoff,
        ),
        # An alert goes once closed and old; never while someone still has to act on it,
        # nor while an incident (kept longer than alerts) rests on it.
        Rule(
            alerts,
            keep.alerts_days,
            lambda cutoff, now: sa.and_(
                a.state == CLOSED,
                a.raised_at < cutoff,
                ~_incident_rests_on(a.id, a.incident_id),
            ),
        ),
        Rule(
            incidents,
            keep.incidents_days,
            lambda cutoff, now: sa.and_(
                incidents.c.state == CLOSED, incidents.c.recorded_at < cutoff
            ),
            children=(incident_actions.c.incident_id,),
        ),
        # A report nobody has closed stays: it has not reached its person yet.
        Rule(
            reports,
            keep.reports_days,
            lambda cutoff, now: sa.and_(r.state == CLOSED, r.at < cutoff),
        ),
        # An unblock's window ended long ago, whatever became of it.
        Rule(unblocks, keep.unblocks_days, lambda cutoff, now: u.ends_at < cutoff),
        Rule(
            check_runs,
            keep.check_records_days,
            lambda cutoff, now: check_runs.c.started_at < cutoff,
            children=(check_results.c.run_id, check_actions.c.run_id),
        ),
        Rule(seen_devices, keep.seen_devices_days, lambda cutoff, now: s.last_seen < cutoff),
        # An expired session opens nothing: it goes at once; none lives past the retention.
        Rule(
            web_sessions,
            keep.web_sessions_days,
            lambda cutoff, now: sa.or_(
                web_sessions.c.expires_at <= now, web_sessions.c.created_at < cutoff
            ),
        ),
        Rule(
            portal_form_uses,
            keep.web_sessions_days,
            lambda cutoff, now: portal_form_uses.c.used_at < now - SPENT_TOKENS_KEPT,
        ),
        # Sent alerts whose fold window is over: the `alerts` table keeps what they said.
        Rule(
            alert_outbox,
            keep.alerts_days,
            lambda cutoff, now: sa.and_(
                alert_outbox.c.status == SENT, alert_outbox.c.fold_until < now
            ),
        ),
        Rule(
            daily_totals,
            keep.daily_totals_days,
            lambda cutoff, now: daily_totals.c.day < cutoff.date(),
        ),
        # A device's history: each report it sent (its latest stays on the device itself).
        Rule(
            device_reports,
            keep.device_reports_days,
            lambda cutoff, now: device_reports.c.received_at < cutoff,
        ),
    ]


def purge(store: Store, policy: Policy, now: datetime, *, dry_run: bool = False) -> PurgeReport:
    """Delete (or, `dry_run`, count) every table's rows past its retention; one table's
    failure is logged and counted, and the others still go."""
    report = PurgeReport(dry_run=dry_run)
    for rule in rules(policy):
        cutoff = now - timedelta(days=rule.days)
        try:
            if rule.table is access_log:
                cutoff = _counted_before(store, policy, now, cutoff, dry_run=dry_run)
            found = (
                _count(store, rule, cutoff, now) if dry_run else _delete(store, rule, cutoff, now)
            )
        except Exception as exc:
            report.failed.append(rule.name)
            metrics.retention_purge_failed(rule.name)
            logger.error("retention: purging %s failed (%s)", rule.name, type(exc).__name__)
            logger.debug("retention: %s", exc, exc_info=True)
            continue
        report.removed.update(found)
        for table, count in found.items():
            if count and not dry_run:
                logger.info("retention: purged %d rows of %s past their retention", count, table)
    return report


def _counted_before(
    store: Store, policy: Policy, now: datetime, cutoff: datetime, *, dry_run: bool
) -> datetime:
    """The access log's cutoff, no later than its first day not yet in the daily totals:
    the governors' report must never lose a day because the log was purged first. A real
    purge counts the missing days first, so a dry run says what that purge would remove)."""
    if dry_run:
        return cutoff
    tz = policy.timezone
    daily_totals_job.total_missing(store, tz, now, retention_days=policy.monitoring.retention_days)
    return daily_totals_job.safe_cutoff(store, tz, cutoff)


def _key(rule: Rule) -> sa.Column[object]:
    """The column a batch is chosen by: the primary key, or its first column (daily_totals)."""
    return next(iter(rule.table.primary_key.columns))


def _count(store: Store, rule: Rule, cutoff: datetime, now: datetime) -> dict[str, int]:
    where = rule.old(cutoff, now)
    with store.connect() as conn:
        found = {
            rule.name: conn.scalar(sa.select(sa.func.count()).select_from(rule.table).where(where))
        }
        chosen = sa.select(_key(rule)).where(where)
        for child in rule.children:
            found[child.table.name] = conn.scalar(
                sa.select(sa.func.count()).select_from(child.table).where(child.in_(chosen))
            )
    return {name: int(count or 0) for name, count in found.items()}


def _delete(store: Store, rule: Rule, cutoff: datetime, now: datetime) -> dict[str, int]:
    """A batch at a time, each in its own transaction: children first, then the rows."""
    key = _key(rule)
    composite = len(rule.table.primary_key.columns) > 1
    removed = dict.fromkeys([rule.name, *(c.table.name for c in rule.children)], 0)
    while True:
        where = rule.old(cutoff, now)
        with store.begin() as conn:
            pick = sa.select(key).where(where)
            pick = pick.distinct().limit(max(1, BATCH // 100)) if composite else pick.limit(BATCH)
            batch = list(conn.scalars(pick))
            if not batch:
                return removed
            for child in rule.children:
                gone = conn.execute(child.table.delete().where(child.in_(batch))).rowcount
                removed[child.table.name] += int(gone or 0)
            gone = conn.execute(rule.table.delete().where(key.in_(batch), where)).rowcount
            removed[rule.name] += int(gone or 0)
        if not composite and len(batch) < BATCH:
            return removed


TABLES = metrics.RETENTION_TABLES  # every table `rules` purges (children go with them)

__all__ = ["BATCH", "DAY_SECONDS", "TABLES", "PurgeReport", "Rule", "purge", "rules"]
