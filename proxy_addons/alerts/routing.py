"""Who is told: the channels an event goes to, by its audience and the policy's people.

Each channel has an audience. Email goes to the people of the alert's audience; Teams and
Slack are the safeguarding team's; syslog feeds a SIEM run by technical staff, so it never
gets safeguarding alerts; the signed webhook gets what `notifications.webhook.audience`
says (safeguarding, technical or all: a webhook at the IT provider's says technical, and
then never receives a pupil's search). Ready-made messages (the unblock workflow's) go by
email to their recipients and to the webhook, never to chat or syslog.

A concern about a member of staff (subjects.py decides who is staff) never goes to the
safeguarding list or the shared channels, where it could reach the person it is about: it
goes by email only to the headteacher, or to the chair of governors when it is about the
headteacher (`staff_concern_routes`).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from proxy_addons.alerts.events import Audience, Event
from proxy_addons.core.policy.model import Policy

logger = logging.getLogger(__name__)

SAFEGUARDING_CHANNELS: tuple[str, ...] = ("email", "webhook", "teams", "slack")
TECHNICAL_CHANNELS: tuple[str, ...] = ("email", "webhook", "syslog")
MESSAGE_CHANNELS: tuple[str, ...] = ("email", "webhook")
STAFF = "staff"  # the alerts table's audience for a concern about a member of staff


@dataclass(frozen=True)
class Route:
    channel: str
    recipients: tuple[str, ...] = ()  # email addresses, for the email channel


def emails_of(policy: Policy, people: Iterable[str]) -> tuple[str, ...]:
    """The contact addresses of `people` (user names); those with none are left out."""
    contacts = policy.notifications.contacts
    return tuple(sorted({contacts[p] for p in people if p in contacts}))


def webhook_takes(policy: Policy, audience: Audience) -> bool:
    """Whether the webhook's audience (`notifications.webhook.audience`) includes `audience`."""
    webhook = policy.notifications.webhook
    return webhook is not None and webhook.audience in ("all", audience.value)


def routes(event: Event, policy: Policy, configured: Collection[str]) -> list[Route]:
    """The channels `event` goes to: the audience's people by email, and the shared channels
    whose audience it is."""
    monitoring = policy.monitoring
    if event.audience is Audience.SAFEGUARDING:
        people, channels = monitoring.safeguarding, SAFEGUARDING_CHANNELS
    else:
        people, channels = monitoring.technical, TECHNICAL_CHANNELS
    out: list[Route] = []
    for channel in channels:
        if channel not in configured:
            continue
        if channel == "email":
            emails = emails_of(policy, people)
            if emails:
                out.append(Route("email", emails))
        elif channel != "webhook" or webhook_takes(policy, event.audience):
            out.append(Route(channel))
    return out


def staff_concern_people(policy: Policy, subject: str | None) -> frozenset[str]:
    """Who hears of a concern about the member of staff `subject` (None: not known by name):
    the headteacher; the chair of governors when it is about the headteacher; with nobody
    named, the safeguarding list. Never the subject."""
    m = policy.monitoring
    if subject is not None and subject in m.headteacher:
        people, missing = m.chair_of_governors, "monitoring.chair_of_governors"
    else:
        people, missing = m.headteacher, "monitoring.headteacher"
    people = people - {subject} if subject else people
    if not people:
        logger.warning(
            "An alert about a member of staff went to the safeguarding list (minus the person "
            "it is about) because the policy names nobody in %s: name them there.",
            missing,
        )
        people = m.safeguarding - {subject} if subject else m.safeguarding
    return people


def staff_concern_routes(
    policy: Policy, subject: str | None, configured: Collection[str]
) -> list[Route]:
    """A concern about a member of staff: by email only, to `staff_concern_people`."""
    emails = emails_of(policy, staff_concern_people(policy, subject))
    if "email" not in configured or not emails:
        return []
    return [Route("email", emails)]


def message_routes(recipients: tuple[str, ...], configured: Collection[str]) -> list[Route]:
    """A ready-made message: email to `recipients` (none: not by email) and the webhook."""
    return [
        Route(name, recipients if name == "email" else ())
        for name in MESSAGE_CHANNELS
        if name in configured and (name != "email" or recipients)
    ]
