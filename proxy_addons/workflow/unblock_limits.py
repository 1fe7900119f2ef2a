"""What an unblock request may ask for: an audience that exists (profiles in the policy,
users in the policy or the store's accounts) and a window that ends later than now, by the
end of the lesson when no end is given, and within the policy's `unblocks.max_days`.

A request that asks too much raises ValueError with a sentence for the person; the workflow
(unblocks.py) hands it on as its WorkflowError and changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from proxy_addons.core.policy.model import Policy
from proxy_addons.core.unblocks import AudienceKind
from proxy_addons.store import Store
from proxy_addons.store.schema import accounts
from proxy_addons.workflow.unblock_rules import rest_of_lesson


def check_audience(
    store: Store, policy: Policy, kind: AudienceKind, people: tuple[str, ...]
) -> None:
    """Every profile or user named must exist."""
    if kind is AudienceKind.PROFILE:
        unknown = [p for p in people if p not in policy.profiles]
        if unknown:
            names = ", ".join(sorted(policy.profiles))
            raise ValueError(f"No profile called {', '.join(unknown)} (there are: {names}).")
    if kind in (AudienceKind.USER, AudienceKind.USERS):
        known = set(policy.identities.users)
        with store.connect() as conn:
            known.update(r.username for r in conn.execute(sa.select(accounts.c.username)))
        unknown = [p for p in people if p not in known]
        if unknown:
            raise ValueError(f"Unknown user(s): {', '.join(unknown)}.")


def window_end(
    policy: Policy,
    start: datetime,
    until: datetime | None,
    minutes: int | None,
    now: datetime | None = None,
) -> datetime:
    """When an unblock starting at `start` ends (UTC): at `until` (school time if naive),
    `minutes` after `now`, or at the end of the lesson happening now."""
    now = now or start
    if until is not None and until.tzinfo is None:
        until = until.replace(tzinfo=policy.timezone)
    if minutes is not None:
        if minutes <= 0:
            raise ValueError("The number of minutes must be more than 0.")
        until = now + timedelta(minutes=minutes)
    if until is None:
        until = rest_of_lesson(policy, now)
        if until is None:
            raise ValueError("It is not lesson time now: say until when (a time or minutes).")
    if until <= now:
        raise ValueError("That end time has already passed.")
    limit = timedelta(days=policy.unblocks.max_days)
    if until - start > limit:
        raise ValueError(f"An unblock can last at most {policy.unblocks.max_days} days.")
    return until.astimezone(UTC)
