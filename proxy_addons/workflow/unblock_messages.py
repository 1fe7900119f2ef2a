"""What the unblock workflow tells people, and sending it through the alert outbox.

A request goes to the deciders; a decision (approved, rejected, applied, revoked) to the
requester and the IT provider. Each message is stored by `alerts.dispatch.queue_message` in
the step's own transaction (by email to those people and on the webhook, as the policy
configures), tried at once by `send_soon`, and retried by any running gateway's outbox
workers until it arrives. A person's address is the policy's `notifications.contacts` entry,
or else their account's own e-mail (`schoolgate account add --email`), so a teacher added
with an address hears of their requests without a line in the policy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping

import sqlalchemy as sa

from proxy_addons.alerts.dispatch import deliver_now
from proxy_addons.alerts.notify.base import Notification
from proxy_addons.alerts.outbox import AlertOutbox
from proxy_addons.core.policy.model import Policy
from proxy_addons.core.unblocks import Unblock
from proxy_addons.store.schema import accounts
from proxy_addons.workflow.unblock_rules import describe, school_time

logger = logging.getLogger(__name__)


def account_emails(conn: sa.Connection) -> dict[str, str]:
    """Enabled accounts' own e-mail addresses, by user name."""
    rows = conn.execute(
        sa.select(accounts.c.username, accounts.c.email).where(
            accounts.c.email.is_not(None), accounts.c.disabled == sa.false()
        )
    )
    return {row.username: row.email for row in rows if row.email}


def request_message(
    policy: Policy, unblock: Unblock, emails: Mapping[str, str] | None = None
) -> Notification:
    """For the deciders: who asks for what, for whom, until when, and why."""
    text = (
        f"{unblock.requested_by} asks to unblock {unblock.target} ({unblock.scope.value}) for "
        f"{unblock.audience_kind.value} {', '.join(unblock.audience)} until "
        f"{school_time(policy, unblock.ends_at)}.\nReason: {unblock.reason}\n"
    )
    return _message(
        policy,
        "unblock.requested",
        f"Unblock request {unblock.id} from {unblock.requested_by}: {unblock.target}",
        text,
        policy.unblocks.deciders,
        unblock,
        emails or {},
    )


def outcome_message(
    policy: Policy,
    unblock: Unblock,
    what: str,
    comment: str,
    emails: Mapping[str, str] | None = None,
) -> Notification:
    """For the requester and the IT provider: what happened to the request (`what`)."""
    note = f"\nComment: {comment}" if comment else ""
    text = (
        f"Unblock {unblock.id} for {unblock.target} was {what}. It is now "
        f"{unblock.status.value}, until {school_time(policy, unblock.ends_at)}.{note}\n"
    )
    return _message(
        policy,
        "unblock.decided",
        f"Unblock {unblock.id} {what}: {unblock.target}",
        text,
        {unblock.requested_by, *policy.unblocks.it_provider},
        unblock,
        emails or {},
    )


def _message(
    policy: Policy,
    kind: str,
    subject: str,
    text: str,
    people: Iterable[str],
    unblock: Unblock,
    emails: Mapping[str, str],
) -> Notification:
    link = f"{policy.unblocks.web_url}/unblocks/{unblock.id}"
    contacts = {**emails, **policy.notifications.contacts}  # the policy's entry first
    return Notification(
        kind=kind,
        subject=subject,
        text=text + f"\nOpen it: {link}\n",
        recipients=tuple(sorted({contacts[p] for p in people if p in contacts})),
        link=link,
        data={**describe(unblock), "status": unblock.status.value},
    )


def send_soon(outbox: AlertOutbox, policy: Policy, ids: list[int], background: bool) -> None:
    """Try the stored messages now; whatever fails stays queued for the retries."""
    if not ids:
        return

    def send() -> None:
        try:
            deliver_now(outbox, policy, ids)
        except Exception as exc:  # the store went away: the gateway's workers retry
            logger.error("Unblock messages %s not sent now: %s", ids, exc)

    if background:
        threading.Thread(target=send, daemon=True, name="unblock-notify").start()
    else:
        send()
