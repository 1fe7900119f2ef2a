"""The one way to raise an alert or send a message: into the outbox (durable), then delivered.

Every raiser calls `raise_alert`: the alerting add-on (decisions, page scans, a refused
policy or CA), the content filter and state health through it, failed termly checks and the
check reminders (checks/), device compliance, stale and unknown devices (devices/watch.py,
devices/alert_state.py), the network circumvention watch, and the outbox itself when a
channel is stuck. The unblock workflow's ready-made messages take `queue_message`, in the
step's own transaction. Both route by the policy in force (routing.py; a concern about a
member of staff, subjects.py, goes only to the headteacher or the chair of governors, and
is kept with the audience "staff") and write to the outbox (outbox.py), which folds
repeats and retries with backoff until a channel takes them; `deliver_now` tries rows at
once from a process that runs no outbox workers (the CLI, the web app, the check page,
the escalation sweep). Nothing here imports the gateway.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import timedelta

import sqlalchemy as sa

from proxy_addons.alerts import alert_rows, subjects
from proxy_addons.alerts.events import Event
from proxy_addons.alerts.notify.base import Notification
from proxy_addons.alerts.notify.from_policy import build_channels, configured_channels
from proxy_addons.alerts.outbox import AlertOutbox
from proxy_addons.alerts.routing import (
    STAFF,
    Route,
    message_routes,
    routes,
    staff_concern_routes,
)
from proxy_addons.core.policy.model import Policy
from proxy_addons.record import metrics

logger = logging.getLogger(__name__)


def raise_alert(
    outbox: AlertOutbox,
    policy: Policy,
    event: Event,
    *,
    to: Sequence[Route] | None = None,
    fold_minutes: int | None = None,
) -> list[int]:
    """Route `event` by `policy` (or to the routes `to`) and store it in the outbox, whose
    workers deliver it; returns the rows written or folded into.

    A store that is down or whose disk is full raises, after logging and counting the
    alert as not stored: the caller decides whether to try again (device sweeps do).
    """
    fold = policy.monitoring.fold_minutes if fold_minutes is None else fold_minutes
    try:
        with outbox.store.begin() as conn:
            if to is None:
                event, chosen, audience = choose(conn, event, policy)
            else:
                chosen, audience = list(to), None
            _log_raised(event, chosen, audience)
            alert_id = alert_rows.record(
                conn, event, chosen, timedelta(minutes=fold), outbox.clock(), audience=audience
            )
        if not chosen:
            return []
        return outbox.enqueue(with_link(event, policy, alert_id), chosen, fold)
    except Exception as exc:
        logger.error("Alert %s not stored (%s): %s", event.kind, exc, event.summary)
        metrics.alert_not_stored(event.kind)
        raise


def choose(
    conn: sa.Connection, event: Event, policy: Policy
) -> tuple[Event, list[Route], str | None]:
    """The routes for `event` by the policy, and the audience its alert row is kept under
    (None: the event's own). A concern about a member of staff goes by email only to the
    headteacher (the chair of governors when it is about the headteacher), kept as "staff",
    and says so in its message."""
    configured = configured_channels(policy)
    about = subjects.subject(conn, event, policy)
    if not about.staff:
        return event, routes(event, policy, configured), None
    fields = dict(event.fields)
    fields.setdefault("action", STAFF_CONCERN)
    staff_event = replace(event, fields=fields)
    return staff_event, staff_concern_routes(policy, about.user, configured), STAFF


STAFF_CONCERN = (
    "This alert is about a member of staff, so it went only to you, not to the "
    "safeguarding list. Follow the school's procedure for concerns about staff "
    "(the LADO where it applies)."
)


def _log_raised(event: Event, chosen: Sequence[Route], audience: str | None) -> None:
    logger.info(
        "Alert raised: %s (%s, severity %d) to %s",
        event.kind,
        audience or event.audience.value,
        event.severity,
        ", ".join(r.channel for r in chosen) or "nobody (no channel configured)",
    )


def with_link(event: Event, policy: Policy, alert_id: int) -> Event:
    """`event` with the address of its page in the console, where it is acted on."""
    link = f"{policy.unblocks.web_url}/alerts/{alert_id}"
    return replace(event, fields={**event.fields, "console": link})


def queue_message(
    outbox: AlertOutbox, policy: Policy, note: Notification, *, conn: sa.Connection
) -> list[int]:
    """Store a ready-made message (never folded: each one is news) by email to its
    recipients and on the webhook, in the caller's transaction `conn`, so it is sent even
    if a channel is down now or this process ends before it could send."""
    chosen = message_routes(note.recipients, configured_channels(policy))
    if not chosen:
        return []
    return outbox.enqueue_notification(note, chosen, conn=conn)


def deliver_now(outbox: AlertOutbox, policy: Policy, ids: Iterable[int]) -> int:
    """Try these rows once, now, on the policy's channels; one that fails (or a fold's
    follow-up not yet due) stays in the outbox for the gateway's workers. Returns how many
    were delivered."""
    wanted = list(ids)
    if not wanted:
        return 0
    outbox.channels = build_channels(policy)
    return outbox.deliver_now(wanted)
