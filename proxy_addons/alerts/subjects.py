"""Who an alert is about, and whether that person is a member of staff.

A safeguarding alert about what someone did names them: the event's `user` ("not signed
in" on a device nobody signed in to), and the `profile` they were filtered by. The subject
is staff when that profile, or the one the policy's identities give the user, is in
`monitoring.staff_profiles`, or when the user holds an account in the admin web app with
a staff role (staff, DSL, deputy, IT, headteacher; a governor's alone is not). An alert with no
`user` field is about something else (a failed check, a page a user reported: its
reporter is not its subject) and is nobody's concern about staff.
Routing (routing.staff_concern_routes) sends a concern about a member of staff away from
the safeguarding list, which may well include that person. Technical alerts name nobody.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from proxy_addons.alerts.alert_rows import subject_of
from proxy_addons.alerts.events import Audience, Event
from proxy_addons.core.policy.model import Policy
from proxy_addons.store.schema import accounts


@dataclass(frozen=True)
class Subject:
    user: str | None  # lower case; None when not signed in or not named (technical)
    staff: bool


# An account holding one of these works at the school; a governor alone does not.
STAFF_ACCOUNT_ROLES = frozenset({"staff", "dsl", "deputy", "it", "headteacher"})


def has_account(conn: sa.Connection, user: str) -> bool:
    """Whether `user` (lower case, as accounts are kept) has an account in the admin web
    app with a role of someone who works at the school (a role-less account is not staff)."""
    found = conn.execute(sa.select(accounts.c.roles).where(accounts.c.username == user)).first()
    return found is not None and bool(STAFF_ACCOUNT_ROLES & set(found.roles or ()))


def staff_profile(policy: Policy, profile: str) -> bool:
    return profile.strip().lower() in policy.monitoring.staff_profiles


def subject(conn: sa.Connection, event: Event, policy: Policy) -> Subject:
    """Who `event` is about, and whether they are staff (see the module docstring)."""
    if event.audience is not Audience.SAFEGUARDING or "user" not in event.fields:
        return Subject(None, False)
    user, _, _ = subject_of(event)
    profile = event.fields.get("profile", "")
    staff = staff_profile(policy, profile)
    if user is not None and not staff:
        named = policy.identities.users.get(user)
        staff = (named is not None and staff_profile(policy, named)) or has_account(conn, user)
    return Subject(user, staff)


__all__ = ["Subject", "has_account", "staff_profile", "subject"]
