"""The annual review of filtering and monitoring: recorded, listed, and reminded when due.

The DfE standard asks senior leaders, the DSL, a governor and the IT provider to review
filtering and monitoring at least once a year and record the results. A review here has
its date, who took part and in what role, the findings and the actions agreed; recording
one is audited (who, when, from where). The next is due `monitoring.review_every_months`
after the last; with none recorded, the first falls due FIRST_REVIEW_DAYS after the
gateway began keeping records (a new install is not greeted by a reminder in its first
hour, and a school that never records one is reminded within a month); while it is due
the safeguarding team,
the headteacher and the IT provider get a reminder, at most once a day however many
gateways share the store. The governors' report lists the reviews and the next due date.
"""

from __future__ import annotations

import logging
from calendar import monthrange
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from proxy_addons.alerts.dispatch import deliver_now, raise_alert
from proxy_addons.alerts.events import Audience, Event
from proxy_addons.alerts.notify.from_policy import configured_channels
from proxy_addons.alerts.outbox import AlertOutbox
from proxy_addons.alerts.routing import Route, emails_of, webhook_takes
from proxy_addons.core.periodic import Every
from proxy_addons.core.policy.model import Policy
from proxy_addons.store import Store
from proxy_addons.store.schema import access_log, audit_log, reviews
from proxy_addons.workflow import audit
from proxy_addons.workflow.reminder_days import claim_day

logger = logging.getLogger(__name__)

REVIEW_DUE = "review_due"  # the alert kind
# The day of the last reminder (workflow/reminder_days.py) is kept under this key.
REMINDER_KEY = "annual review"
SWEEP_SECONDS = 3600.0
FIRST_REVIEW_DAYS = 30  # with none recorded: due this long after the first record kept
ROLES = {
    "slt": "Senior leader (SLT)",
    "dsl": "Designated safeguarding lead",
    "it": "IT provider",
    "governor": "Governor",
    "other": "Other",
}
MAX_PARTICIPANTS = 20
MAX_TEXT = 20_000
MAX_NAME = 200


class ReviewError(ValueError):
    """A review that cannot be recorded as given; the message says why, for the form."""


@dataclass(frozen=True)
class Review:
    id: int
    held_on: date
    participants: list[dict[str, str]]  # {"role": role's words, "name": ...}
    findings: str
    actions: str
    recorded_by: str
    recorded_at: datetime


def _review(row: sa.Row[tuple[object, ...]]) -> Review:
    m = row._mapping
    return Review(
        id=m["id"],
        held_on=m["held_on"],
        participants=list(m["participants"]),
        findings=m["findings"],
        actions=m["actions"],
        recorded_by=m["recorded_by"],
        recorded_at=m["recorded_at"],
    )


def list_reviews(store: Store) -> list[Review]:
    """Every review, the newest first."""
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(reviews).order_by(reviews.c.held_on.desc(), reviews.c.id.desc())
        ).all()
    return [_review(r) for r in rows]


def record_review(
    store: Store,
    *,
    held_on: date,
    participants: Sequence[tuple[str, str]],
    findings: str,
    actions: str,
    actor: str,
    address: str | None,
    now: datetime,
    today: date,
) -> Review:
    """Record a review held on `held_on` by `participants` ((role, name) pairs, roles from
    ROLES), audited as `actor`'s from `address`; raises ReviewError when something is
    missing or wrong."""
    people = [
        {"role": ROLES[role], "name": " ".join(name.split())[:MAX_NAME]}
        for role, name in participants
        if name.strip() and role in ROLES
    ]
    if any(role not in ROLES for role, _ in participants):
        raise ReviewError("Choose a role for each person from the list.")
    if not people:
        raise ReviewError("Name at least one person who took part.")
    if len(people) > MAX_PARTICIPANTS:
        raise ReviewError(f"Name at most {MAX_PARTICIPANTS} people.")
    if held_on > today:
        raise ReviewError("A review is recorded once it has been held: the date is in the future.")
    findings, actions = findings.strip(), actions.strip()
    if not findings or not actions:
        raise ReviewError("Write down what the review found and the actions agreed.")
    if len(findings) > MAX_TEXT or len(actions) > MAX_TEXT:
        raise ReviewError(f"Findings and actions are limited to {MAX_TEXT} characters each.")
    with store.begin() as conn:
        new_id = conn.execute(
            reviews.insert()
            .values(
                held_on=held_on,
                participants=people,
                findings=findings,
                actions=actions,
                recorded_by=actor,
                recorded_at=now,
            )
            .returning(reviews.c.id)
        ).scalar_one()
        audit.append(
            conn,
            actor=actor,
            action="review.record",
            subject=f"review {new_id}",
            detail={"held_on": held_on.isoformat(), "roles": sorted({p["role"] for p in people})},
            address=address,
            at=now,
        )
    return Review(new_id, held_on, people, findings, actions, actor, now)


def add_months(day: date, months: int) -> date:
    """`day` `months` later, on the last day of a shorter month (31 Jan + 1 = 28/29 Feb)."""
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return date(year, month, min(day.day, monthrange(year, month)[1]))


def first_record_day(store: Store, policy: Policy) -> date | None:
    """The school day the gateway began keeping records (its first audit record or access
    log line), or None before it has kept any."""
    with store.connect() as conn:
        firsts = [
            conn.scalar(sa.select(sa.func.min(audit_log.c.at))),
            conn.scalar(sa.select(sa.func.min(access_log.c.at))),
        ]
    found = [first for first in firsts if first is not None]  # aware: min keeps the type
    return min(found).astimezone(policy.timezone).date() if found else None


def next_due(
    policy: Policy, found: Sequence[Review], today: date, first_day: date | None = None
) -> date:
    """When the next review is due: `review_every_months` after the last one; with none
    recorded, FIRST_REVIEW_DAYS after `first_day` (the first record kept), else today."""
    if not found:
        return first_day + timedelta(days=FIRST_REVIEW_DAYS) if first_day else today
    last = max(r.held_on for r in found)
    return add_months(last, policy.monitoring.review_every_months)


def reminder_event(policy: Policy, due_on: date, last: date | None, at: datetime) -> Event:
    local = at.astimezone(policy.timezone)
    since = f"the last was held on {last.isoformat()}" if last else "none has been recorded"
    return Event(
        kind=REVIEW_DUE,
        severity=2,
        audience=Audience.SAFEGUARDING,
        summary="The annual review of filtering and monitoring is due",
        fields={
            "time": local.strftime("%Y-%m-%d %H:%M %Z"),
            "reference": f"due since {due_on.isoformat()} ({since}); record it in the console",
        },
        fold_key=f"{REVIEW_DUE}|{local.date()}",
        at=at,
        timezone=policy.timezone.key,
    )


def reminder_routes(policy: Policy) -> list[Route]:
    """By email to the safeguarding team, the headteacher and the IT provider, who take part
    in the review; the webhook too when it takes safeguarding alerts."""
    configured = configured_channels(policy)
    m = policy.monitoring
    out = []
    emails = emails_of(policy, m.safeguarding | m.deputies | m.headteacher | m.technical)
    if "email" in configured and emails:
        out.append(Route("email", emails))
    if "webhook" in configured and webhook_takes(policy, Audience.SAFEGUARDING):
        out.append(Route("webhook"))
    return out


def remind_if_due(
    store: Store, policy: Policy, now: datetime | None = None, *, deliver: bool = True
) -> date | None:
    """Remind if the annual review is due; returns the day it fell due, or None when it is
    not due or was reminded today already. The alert is kept (the console lists it) even
    when no channel can carry it."""
    now = now or datetime.now(UTC)
    today = now.astimezone(policy.timezone).date()
    found = list_reviews(store)
    first_day = first_record_day(store, policy)
    if not found and first_day is None:
        return None  # nothing kept yet: a gateway that has not started work
    due_on = next_due(policy, found, today, first_day)
    if due_on > today:
        return None
    if not claim_day(store, REMINDER_KEY, today, now):
        return None
    chosen = reminder_routes(policy)  # none: the console's alert list still shows it
    if not chosen:
        logger.warning("The annual review is due; no email or webhook to remind anyone by.")
    last = max((r.held_on for r in found), default=None)
    outbox = AlertOutbox(store)
    written = raise_alert(
        outbox, policy, reminder_event(policy, due_on, last, now), to=chosen, fold_minutes=0
    )
    if deliver:
        deliver_now(outbox, policy, written)
    logger.info("Reminded the safeguarding team: the annual review is due (since %s)", due_on)
    return due_on


def reminder_job(
    store: Store,
    policy: Callable[[], Policy],
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Every:
    """The gateway's job: `remind_if_due` every hour (the outbox workers deliver)."""
    return Every(
        "review-reminders",
        SWEEP_SECONDS,
        lambda: remind_if_due(store, policy(), clock(), deliver=False),
        "Annual review reminder failed; trying again later",
        at_start=True,
    )


__all__ = [
    "REVIEW_DUE",
    "ROLES",
    "Review",
    "ReviewError",
    "add_months",
    "list_reviews",
    "first_record_day",
    "next_due",
    "record_review",
    "reminder_job",
    "remind_if_due",
]
