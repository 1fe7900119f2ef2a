"""Who is told: the channels an event goes to, by its audience and the policy's people.

Syslog feeds a SIEM run by technical staff, so it never gets safeguarding alerts; chat
channels are assumed to be the safeguarding team's. Ready-made messages (the unblock
workflow's) go by email to their recipients and to the webhook, never to chat or syslog.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from proxy_addons.alerts.events import Audience, Event
from proxy_addons.core.policy.model import Policy

SAFEGUARDING_CHANNELS: tuple[str, ...] = ("email", "webhook", "teams", "slack")
TECHNICAL_CHANNELS: tuple[str, ...] = ("email", "webhook", "syslog")
MESSAGE_CHANNELS: tuple[str, ...] = ("email", "webhook")


@dataclass(frozen=True)
class Route:
    channel: str
    recipients: tuple[str, ...] = ()  # email addresses, for the email channel


def routes(event: Event, policy: Policy, configured: Collection[str]) -> list[Route]:
    """The channels `event` goes to: the audience's people by email, and the shared channels."""
    monitoring, contacts = policy.monitoring, policy.notifications.contacts
    if event.audience is Audience.SAFEGUARDING:
        people, channels = monitoring.safeguarding, SAFEGUARDING_CHANNELS
    else:
        people, channels = monitoring.technical, TECHNICAL_CHANNELS
    out: list[Route] = []
    for channel in channels:
        if channel not in configured:
            continue
        if channel == "email":
            emails = tuple(sorted({contacts[p] for p in people if p in contacts}))
            if emails:
                out.append(Route("email", emails))
        else:
            out.append(Route(channel))
    return out


def message_routes(recipients: tuple[str, ...], configured: Collection[str]) -> list[Route]:
    """A ready-made message: email to `recipients` (none: not by email) and the webhook."""
    return [
        Route(name, recipients if name == "email" else ())
        for name in MESSAGE_CHANNELS
        if name in configured and (name != "email" or recipients)
    ]
