"""The portal's reports reach a person: filed, alerted to the right audience, and the
reporter told truthfully who will see it.

portal.py takes the forms ("Is this a mistake?" from a block page, "Report this page" from
the portal); here a report is filed (workflow/user_reports.py), its alert raised through
the gateway's one alert path (`Services.raise_alert`, kept in the `alerts` table and sent
by the outbox) and linked to the report. Who sent it is what the gateway knows: the proxy
sign-in or the user a device report places at the address, the address, and the enrolled
device reporting that address; never a form field.

What the reporter is told names the people the policy names for that audience, by the
names their console accounts carry ("Mrs Patel"), or says "the people who keep pupils safe
at school" when it has none: an alert is always kept for the console, and only said to be
emailed when it was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from proxy_addons.alerts.events import Event
from proxy_addons.alerts.outbox_rows import fold_hash
from proxy_addons.core.policy.model import Policy
from proxy_addons.devices.inventory import list_devices
from proxy_addons.gateway.services import Services
from proxy_addons.store import Store
from proxy_addons.store.schema import accounts, alerts
from proxy_addons.workflow import user_reports
from proxy_addons.workflow.user_reports import HOURLY_LIMIT, SAFEGUARDING, NewReport

logger = logging.getLogger(__name__)

TOO_MANY = "too_many"


@dataclass(frozen=True)
class Sent:
    """What became of a report, for the page that thanks the reporter."""

    report_id: int
    audience: str
    people: tuple[str, ...]  # display names of those the policy names for the audience
    alerted: bool  # the alert was stored: it is in the console
    emailed: bool  # and it is on its way to someone by email


def reporter(gateway: Services, user: str | None, ip: str | None) -> tuple[str | None, str]:
    """(user, profile) as the gateway knows them: the proxy sign-in, or the user a fresh
    device report places at `ip` (Services.identity), and the profile that puts them in."""
    identity = gateway.identity(user, ip)
    return identity.user, gateway.profile_for(user, ip)


def device_at(store: Store, ip: str | None, now: datetime, minutes: int) -> str | None:
    """The enrolled device whose fresh report lists `ip`, if any (not a revoked one)."""
    if not ip:
        return None
    since = now - timedelta(minutes=minutes)
    for device in list_devices(store, now, stale_days=365):
        fresh = device.last_report_at is not None and device.last_report_at >= since
        if fresh and not device.revoked and ip in device.last_ips:
            return device.device_id
    return None


def too_many(store: Store, user: str | None, ip: str | None, now: datetime) -> bool:
    """More than HOURLY_LIMIT reports from this person in the last hour: a flood, refused."""
    return user_reports.sent_since(store, user, ip, now - timedelta(hours=1)) >= HOURLY_LIMIT


def send(gateway: Services, store: Store, policy: Policy, report: NewReport, now: datetime) -> Sent:
    """File `report`, raise its alert and keep the alert's id with it."""
    report_id = user_reports.file(store, report, now)
    event = user_reports.report_event(
        report_id, report, policy, gateway.alert_intake.pseudonym, now
    )
    alerted = gateway.raise_alert(event)
    alert_id, recipients = _alert_of(store, event) if alerted else (None, [])
    if alert_id is not None:
        user_reports.link_alert(store, report_id, alert_id)
    else:
        logger.error("Report %d kept, but its alert was not raised", report_id)
    logger.info(
        "Schoolgate report %d received (%s, reference %s)",
        report_id,
        report.audience,
        report.reference or "none",
    )
    people = people_for(store, policy, report.audience)
    emailed = any(str(r).startswith("email:") for r in recipients)
    return Sent(report_id, report.audience, people, alert_id is not None, emailed)


def _alert_of(store: Store, event: Event) -> tuple[int | None, list[str]]:
    """The alert row `event` became (a report's fold key is its own, so it is one row), and
    where it was sent (alert_rows.recipients_of: "email:<address>", channel names)."""
    t = alerts.c
    with store.connect() as conn:
        query = sa.select(t.id, t.recipients).where(t.fold_key == fold_hash(event.fold_key))
        found = conn.execute(query.order_by(t.id.desc()).limit(1)).first()
    return (int(found.id), list(found.recipients or [])) if found else (None, [])


def people_for(store: Store, policy: Policy, audience: str) -> tuple[str, ...]:
    """The names of the people who will see a report for `audience`: the policy's lists
    (monitoring.safeguarding or .technical), as their console accounts name them."""
    m = policy.monitoring
    names = sorted(m.safeguarding if audience == SAFEGUARDING else m.technical)
    if not names:
        return ()
    with store.connect() as conn:
        query = sa.select(accounts.c.username, accounts.c.display_name).where(
            accounts.c.username.in_(names), accounts.c.disabled.is_(False)
        )
        shown = {row.username: row.display_name for row in conn.execute(query)}
    return tuple(shown[n] for n in names if n in shown)


def in_words(names: tuple[str, ...]) -> str:
    """ "Mrs Patel", "Mrs Patel and Mr Jones", "A, B and C"."""
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} and {names[-1]}"


__all__ = ["TOO_MANY", "Sent", "device_at", "in_words", "people_for", "reporter", "send"]
