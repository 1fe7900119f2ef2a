"""Who the policy tells of what, in words, for `schoolgate policy check`: who gets each
audience's alerts, where escalation and concerns about staff go, and what is missing for
them to work (a named person with no email address, nobody to take concerns about staff).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import time

from proxy_addons.core.policy.model import Policy


def _names(people: Iterable[str], nobody: str = "nobody") -> str:
    return ", ".join(sorted(people)) or nobody


def _clock(t: time) -> str:
    return "24:00" if t == time.max else t.strftime("%H:%M")


def _hours(policy: Policy) -> str:
    ranges = policy.monitoring.school_hours
    return ", ".join(f"{_clock(r.start)}-{_clock(r.end)}" for r in ranges) or "all day"


def summary(policy: Policy) -> list[str]:
    """One line per route: alerts, escalation, concerns about staff, the webhook."""
    m, n = policy.monitoring, policy.notifications
    lines = [
        f"alerts: safeguarding to {_names(m.safeguarding)}; technical to {_names(m.technical)}",
        f"escalation: severity 4-5 safeguarding alerts nobody acknowledged within "
        f"{m.escalate_after_minutes} minutes of school hours ({_hours(policy)} on school "
        f"days) go to {_names(m.deputies, 'no deputies')}, then "
        f"{_names(m.headteacher, 'no headteacher')}",
        f"concerns about staff (profiles {_names(m.staff_profiles, 'none')} and account "
        f"holders): to {_names(m.headteacher, 'the safeguarding list')}; about the "
        f"headteacher, to {_names(m.chair_of_governors, 'the safeguarding list')}",
    ]
    if n.webhook is not None:
        lines.append(f"webhook: {n.webhook.audience} alerts")
    return lines


def warnings(policy: Policy) -> list[str]:
    """What keeps alerts from reaching the people the policy means."""
    m, contacts = policy.monitoring, policy.notifications.contacts
    out: list[str] = []
    if not m.headteacher:
        out.append(
            "no monitoring.headteacher: concerns about staff go to the safeguarding list "
            "(minus the person concerned) and escalation stops at the deputies"
        )
    named = {
        "safeguarding": m.safeguarding,
        "technical": m.technical,
        "deputies": m.deputies,
        "headteacher": m.headteacher,
        "chair_of_governors": m.chair_of_governors,
    }
    for key, people in named.items():
        for person in sorted(people - set(contacts)):
            out.append(
                f"{person} (monitoring.{key}) has no address in notifications.contacts: "
                "they are sent no email"
            )
    return out


__all__ = ["summary", "warnings"]
