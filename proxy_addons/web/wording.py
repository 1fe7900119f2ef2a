"""How the admin pages word an unblock: its status, audience, scope and times in school time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import g

from proxy_addons.core.policy.model import Policy
from proxy_addons.core.unblocks import AudienceKind, Scope, Status, Unblock
from proxy_addons.web.context import policy, services
from proxy_addons.web.nav import nav_links, powers

STATUS_TEXT = {
    Status.PENDING: "Waiting for a DSL or deputy",
    Status.AWAITING_IT: "Approved, waiting for IT",
    Status.ACTIVE: "Active",
    Status.REJECTED: "Rejected",
    Status.REVOKED: "Revoked",
    Status.EXPIRED: "Expired",
}
_AUDIENCE_TEXT = {
    AudienceKind.USER: "User",
    AudienceKind.USERS: "Users",
    AudienceKind.PROFILE: "Profile",
    AudienceKind.DEVICE: "Device",
}
_SCOPE_TEXT = {
    Scope.URL: "this page only",
    Scope.PREFIX: "this page and the pages below it",
    Scope.DOMAIN: "the whole site",
}


def template_values() -> dict[str, Any]:
    """What every admin page's template may use (a context processor of the app)."""
    return {
        "school": policy().school,
        "me": g.get("account"),
        "status_text": lambda u: status_text(u, services().workflow.clock()),
        "audience_text": audience_text,
        "window_text": lambda u: window_text(policy(), u.starts_at, u.ends_at),
        "scope_text": _SCOPE_TEXT,
        "when_text": lambda at: when_text(policy(), at) if at else "",
        "nav_links": nav_links,
        "powers": powers,
    }


def status_text(unblock: Unblock, now: datetime) -> str:
    if unblock.status is Status.ACTIVE and unblock.ends_at <= now:
        return "Ended"
    return STATUS_TEXT[unblock.status]


def audience_text(unblock: Unblock) -> str:
    return f"{_AUDIENCE_TEXT[unblock.audience_kind]}: {', '.join(unblock.audience)}"


def when_text(policy: Policy, at: datetime) -> str:
    local = at.astimezone(policy.timezone)
    return f"{local:%H:%M} on {local:%a} {local.day} {local:%b %Y}"


def window_text(policy: Policy, start: datetime, end: datetime) -> str:
    """ "09:05 to 10:00 on Tue 3 Mar 2026", in school time."""
    a, b = start.astimezone(policy.timezone), end.astimezone(policy.timezone)
    if a.date() == b.date():
        return f"{a:%H:%M} to {b:%H:%M} on {b:%a} {b.day} {b:%b %Y}"
    return f"{a:%H:%M} on {a:%a} {a.day} {a:%b} to {when_text(policy, end)}"


def input_value(policy: Policy, at: datetime) -> str:
    """The value a datetime-local input shows, in school time."""
    return at.astimezone(policy.timezone).strftime("%Y-%m-%dT%H:%M")


__all__ = [
    "STATUS_TEXT",
    "audience_text",
    "input_value",
    "status_text",
    "template_values",
    "when_text",
    "window_text",
]
