"""Escalation: a serious safeguarding alert nobody acknowledged goes further up.

A safeguarding alert (audience safeguarding, or staff: a concern about a member of staff)
of severity 4 or 5 still "new" after `monitoring.escalate_after_minutes` of school time
(core/school_time.py: school hours on school days) goes to the next people:

- a pupil's alert: level 1, the deputies (`monitoring.deputies`); after another period,
  level 2, the headteacher. No deputy to tell: straight to level 2.
- a concern about a member of staff (it went to the headteacher, or to the chair of
  governors when it is about the headteacher): level 2, the chair of governors. It never
  goes to the safeguarding list or the deputies.

Never to the person the alert is about. Each step is an email through the outbox (the
alert's own words, "not acknowledged after N minutes", and the link to its page in the
console), and the alert's row records its level and when. Gateways sharing one store each
run the sweep: a step is claimed with an UPDATE that only matches the level it read
(`claim`), so exactly one of them sends it. The sweep that writes the audit trail around
these steps is workflow/alert_escalation.py.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from proxy_addons.alerts import outbox_rows
from proxy_addons.alerts.alert_rows import NEW, recipients_of
from proxy_addons.alerts.dispatch import with_link
from proxy_addons.alerts.events import Audience, Event
from proxy_addons.alerts.routing import STAFF, Route, emails_of
from proxy_addons.core.policy.model import Policy
from proxy_addons.core.school_time import school_minutes_between, school_time_after
from proxy_addons.store.schema import alerts

logger = logging.getLogger(__name__)

MIN_SEVERITY = 4  # severity 4-5 escalate; 1-3 wait for the DSL
DEPUTIES, HEADTEACHER = 1, 2  # escalation levels (the alerts table's escalation_level)
LAST_LEVEL = HEADTEACHER
ESCALATING = (Audience.SAFEGUARDING.value, STAFF)
LEVEL_NAMES = {DEPUTIES: "the deputy safeguarding leads", HEADTEACHER: "the headteacher"}


@dataclass(frozen=True)
class Step:
    """One escalation that is due: alert `alert_id` from level `was` to `level`."""

    alert_id: int
    was: int
    level: int
    people: tuple[str, ...]  # user names, never the alert's subject
    minutes: int  # school minutes the alert has waited unacknowledged


def people_at(policy: Policy, audience: str, subject: str | None, level: int) -> frozenset[str]:
    """Who an alert of `audience` about `subject` escalates to at `level`."""
    m = policy.monitoring
    if audience == STAFF:
        people = m.chair_of_governors if level == HEADTEACHER else frozenset()
    else:
        people = m.deputies if level == DEPUTIES else m.headteacher
    return people - {subject} if subject else people


def next_step(policy: Policy, row: Any, now: datetime) -> Step | None:
    """The escalation of alert `row` due at `now`, if one is (see the module docstring)."""
    if (
        row.state != NEW
        or row.severity < MIN_SEVERITY
        or row.audience not in ESCALATING
        or row.escalation_level >= LAST_LEVEL
    ):
        return None
    after = policy.monitoring.escalate_after_minutes
    since = row.raised_at if row.escalation_level == 0 else (row.escalated_at or row.raised_at)
    due_at = school_time_after(policy, since, after)
    if due_at is None or due_at > now:
        return None
    level = row.escalation_level + 1
    people = people_at(policy, row.audience, row.username, level)
    if not people and level < LAST_LEVEL:
        level = LAST_LEVEL
        people = people_at(policy, row.audience, row.username, level)
    waited = int(school_minutes_between(policy, row.raised_at, now))
    return Step(int(row.id), int(row.escalation_level), level, tuple(sorted(people)), waited)


def due(conn: sa.Connection, policy: Policy, now: datetime) -> list[Step]:
    """Every escalation due at `now` (alerts that could escalate are few: new, severe)."""
    t = alerts.c
    rows = conn.execute(
        sa.select(
            t.id,
            t.raised_at,
            t.severity,
            t.audience,
            t.username,
            t.state,
            t.escalation_level,
            t.escalated_at,
        )
        .where(
            t.state == NEW,
            t.severity >= MIN_SEVERITY,
            t.audience.in_(ESCALATING),
            t.escalation_level < LAST_LEVEL,
        )
        .order_by(t.id)
    ).all()
    return [step for row in rows if (step := next_step(policy, row, now)) is not None]


def claim(conn: sa.Connection, step: Step, now: datetime) -> bool:
    """Mark the alert escalated to `step.level`, if it is still new and at the level the
    step was read at: False when another gateway (or an acknowledgement) got there first."""
    t = alerts.c
    result = conn.execute(
        alerts.update()
        .where(t.id == step.alert_id, t.escalation_level == step.was, t.state == NEW)
        .values(escalation_level=step.level, escalated_at=now)
    )
    return result.rowcount == 1


def escalation_event(policy: Policy, stored: dict[str, Any], step: Step) -> Event:
    """The alert as it was raised, saying it was not acknowledged, for `step`'s people."""
    event = Event.from_json(stored)
    note = (
        f"Not acknowledged after {step.minutes} minutes in school hours, so it now goes to "
        f"{LEVEL_NAMES[step.level]}. Please acknowledge it in the console."
    )
    fields = dict(event.fields)
    fields["action"] = f"{note} {fields['action']}" if fields.get("action") else note
    escalated = replace(
        event,
        summary=f"Not acknowledged after {step.minutes} minutes: {event.summary}",
        fields=fields,
        fold_key=f"escalation|{step.alert_id}|{step.level}",
    )
    return with_link(escalated, policy, step.alert_id)


def queue(
    conn: sa.Connection,
    policy: Policy,
    step: Step,
    configured: Collection[str],
    now: datetime,
) -> list[int]:
    """Write `step`'s email into the outbox in the caller's transaction, and add its
    addresses to the alert's recipients; returns its rows (none: no email channel, or
    nobody at this level with a contact address)."""
    emails = emails_of(policy, step.people)
    missing = sorted(set(step.people) - set(policy.notifications.contacts))
    if missing:
        logger.warning(
            "Alert %d escalates to %s, who have no address in notifications.contacts",
            step.alert_id,
            ", ".join(missing),
        )
    if not step.people:
        logger.warning(
            "Alert %d was not acknowledged and the policy names nobody to escalate it to "
            "(monitoring.headteacher, or monitoring.chair_of_governors for concerns about "
            "staff)",
            step.alert_id,
        )
    if "email" not in configured or not emails:
        return []
    row = conn.execute(
        sa.select(alerts.c.event, alerts.c.recipients).where(alerts.c.id == step.alert_id)
    ).one()
    event = escalation_event(policy, dict(row.event or {}), step)
    route = Route("email", emails)
    told = sorted(set(row.recipients or ()) | set(recipients_of([route])))
    conn.execute(alerts.update().where(alerts.c.id == step.alert_id).values(recipients=told))
    key = outbox_rows.fold_hash(event.fold_key)
    return [outbox_rows.add_alert(conn, event, route, key, timedelta(0), now)]


__all__ = [
    "DEPUTIES",
    "HEADTEACHER",
    "MIN_SEVERITY",
    "Step",
    "claim",
    "due",
    "escalation_event",
    "next_step",
    "people_at",
    "queue",
]
