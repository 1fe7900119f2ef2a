"""When a term's filtering check is due, whether it is done, and reminding the named people.

A term's check is due `checks.due_after_days` after the term starts and stays due until runs
in that term cover every profile the policy names (`checks.profiles`, default all). While it
is due and not done, the people in `checks.remind` get a reminder by email (and on the
webhook), at most once a day per term however many gateways share the store: the day of the
last reminder is claimed in `check_reminders` (workflow/reminder_days.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from proxy_addons.alerts.dispatch import deliver_now, raise_alert
from proxy_addons.alerts.events import Audience, Event
from proxy_addons.alerts.notify.from_policy import configured_channels
from proxy_addons.alerts.outbox import AlertOutbox
from proxy_addons.alerts.routing import Route
from proxy_addons.checks.records import profiles_covered
from proxy_addons.core.periodic import Periodic
from proxy_addons.core.policy.model import Policy, Term
from proxy_addons.store import Store
from proxy_addons.workflow.reminder_days import claim_day

logger = logging.getLogger(__name__)

CHECK_DUE = "check_due"
SWEEP_SECONDS = 3600.0


@dataclass(frozen=True)
class Due:
    term: Term
    due_on: date
    missing: frozenset[str]  # profiles with no run in the term yet

    @property
    def done(self) -> bool:
        return not self.missing


def required_profiles(policy: Policy) -> frozenset[str]:
    return policy.checks.profiles or frozenset(policy.profiles)


def check_status(store: Store, policy: Policy, today: date) -> Due | None:
    """The term in force today once its check is due (done or not); None otherwise."""
    for term in policy.terms:
        due_on = term.start + timedelta(days=policy.checks.due_after_days)
        if due_on <= today <= term.end:
            covered = profiles_covered(store, term.name)
            return Due(term, due_on, frozenset(required_profiles(policy) - covered))
    return None


def reminder_event(policy: Policy, due: Due, at: datetime) -> Event:
    missing = ", ".join(sorted(due.missing))
    return Event(
        kind=CHECK_DUE,
        severity=2,
        audience=Audience.TECHNICAL,
        summary=f"The termly filtering check for {due.term.name} is due",
        fields={
            "profile": f"not yet checked: {missing}",
            "time": at.astimezone(policy.timezone).strftime("%Y-%m-%d %H:%M %Z"),
            "reference": f"due since {due.due_on.isoformat()}; see docs/checks.md",
        },
        fold_key=f"{CHECK_DUE}|{due.term.name}|{at.astimezone(policy.timezone).date()}",
        at=at,
        timezone=policy.timezone.key,
    )


def reminder_routes(policy: Policy) -> list[Route]:
    """Email to the people named in `checks.remind`; the webhook too, when there is one.
    Nobody named (or no `checks:` section): no reminders at all."""
    if not policy.checks.remind:
        return []
    configured = configured_channels(policy)
    contacts = policy.notifications.contacts
    out = []
    emails = tuple(sorted({contacts[p] for p in policy.checks.remind if p in contacts}))
    if "email" in configured and emails:
        out.append(Route("email", emails))
    if "webhook" in configured:
        out.append(Route("webhook"))
    return out


def remind_if_due(
    store: Store, policy: Policy, now: datetime | None = None, *, deliver: bool = True
) -> Due | None:
    """Remind the named people if today's term check is due and not done; returns what was sent
    about (None when nothing was due, done, already reminded today, or nobody to tell)."""
    now = now or datetime.now(UTC)
    today = now.astimezone(policy.timezone).date()
    due = check_status(store, policy, today)
    if due is None or due.done:
        return None
    chosen = reminder_routes(policy)
    if not chosen:
        logger.warning(
            "The filtering check for %s is due but nobody can be reminded (checks.remind "
            "needs people with contacts and an email channel).",
            due.term.name,
        )
        return None
    if not claim_day(store, due.term.name, today, now):
        return None
    outbox = AlertOutbox(store)
    written = raise_alert(
        outbox, policy, reminder_event(policy, due, now), to=chosen, fold_minutes=0
    )
    if deliver:
        deliver_now(outbox, policy, written)
    who = ", ".join(sorted(policy.checks.remind)) or "nobody named"
    logger.info("Reminded %s: filtering check for %s is due", who, due.term.name)
    return due


class CheckReminders(Periodic):
    """The check reminders' periodic job: `remind_if_due` every hour."""

    thread_name = "check-reminders"
    failure = "Check reminder failed; trying again later"

    def __init__(
        self,
        store: Store,
        policy: Callable[[], Policy],
        interval: float = SWEEP_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__()
        self.store, self.policy, self.interval, self.clock = store, policy, interval, clock

    def tick(self) -> None:
        remind_if_due(self.store, self.policy(), self.clock())


__all__ = [
    "CHECK_DUE",
    "CheckReminders",
    "Due",
    "check_status",
    "remind_if_due",
    "reminder_event",
    "required_profiles",
]
