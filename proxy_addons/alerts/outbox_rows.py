"""The outbox's rows in the store: writing one (a repeat folds into the row that waits),
claiming one with a lease, recording a send or a failure, counting, and housekeeping.

Nothing here sends: outbox.py decides what to send and when; these functions keep the
`alert_outbox` table right for any number of gateways sharing it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from proxy_addons.alerts.events import Event
from proxy_addons.alerts.notify.base import Notification
from proxy_addons.alerts.routing import Route
from proxy_addons.alerts.wording import note_from_json, notification_for
from proxy_addons.store import Store
from proxy_addons.store.schema import alert_outbox

PENDING, SENT = "pending", "sent"

Content = tuple[str, int, str, dict[str, Any]]  # kind, severity, audience, event


def fold_hash(fold_key: str) -> str:
    """Fold keys name people; the table keeps only their hash."""
    return hashlib.sha256(fold_key.encode()).hexdigest()


def add_alert(
    conn: sa.Connection,
    event: Event,
    route: Route,
    key: str,
    fold: timedelta,
    now: datetime,
) -> int:
    """Store `event` for `route`, or count it in the row of its fold key that still waits;
    returns that row's id."""
    t = alert_outbox.c
    latest = None
    if fold:
        latest = conn.execute(
            sa.select(t.id, t.status, t.lease_until, t.fold_until, t.severity)
            .where(t.fold_key == key, t.channel == route.channel, t.fold_until > now)
            .order_by(t.id.desc())
            .limit(1)
            .with_for_update()
        ).first()
    if latest is not None and latest.status == PENDING and not _leased(latest, now):
        conn.execute(
            alert_outbox.update()
            .where(t.id == latest.id)
            .values(
                occurrences=t.occurrences + 1,
                last_at=now,
                severity=max(latest.severity, event.severity),
            )
        )
        return int(latest.id)
    if latest is None:  # the first in its window: send now
        due, fold_until = now, now + fold
    else:  # the last one is sent or being sent: gather repeats until its window ends
        due, fold_until = latest.fold_until, latest.fold_until + fold
    content = (event.kind, event.severity, event.audience.value, event.to_json())
    return insert(conn, route, key, content, now, due, fold_until)


def insert(
    conn: sa.Connection,
    route: Route,
    key: str,
    content: Content,
    now: datetime,
    due: datetime,
    fold_until: datetime,
) -> int:
    """A new pending row, due at `due`; returns its id."""
    kind, severity, audience, event = content
    result = conn.execute(
        alert_outbox.insert().values(
            channel=route.channel,
            fold_key=key,
            kind=kind,
            severity=severity,
            audience=audience,
            event=event,
            recipients=list(route.recipients),
            occurrences=1,
            first_at=now,
            last_at=now,
            fold_until=fold_until,
            status=PENDING,
            attempts=0,
            next_attempt_at=due,
        )
    )
    assert result.inserted_primary_key is not None
    return int(result.inserted_primary_key[0])


def due_ids(store: Store, channel: str, now: datetime, limit: int) -> list[int]:
    """Rows of `channel` due and not leased, most severe first."""
    t = alert_outbox.c
    with store.connect() as conn:
        return list(
            conn.scalars(
                sa.select(t.id)
                .where(
                    t.status == PENDING,
                    t.channel == channel,
                    t.next_attempt_at <= now,
                    sa.or_(t.lease_until.is_(None), t.lease_until <= now),
                )
                .order_by(t.severity.desc(), t.id)
                .limit(limit)
            ).all()
        )


def claim(store: Store, row_id: int, now: datetime, lease: timedelta) -> Any:
    """The row, leased to this caller until `now + lease`; None if it is not due, not
    pending, or another worker (or gateway) has it."""
    t = alert_outbox.c
    with store.begin() as conn:
        claimed = conn.execute(
            alert_outbox.update()
            .where(
                t.id == row_id,
                t.status == PENDING,
                t.next_attempt_at <= now,  # a fold's follow-up waits for its window
                sa.or_(t.lease_until.is_(None), t.lease_until <= now),
            )
            .values(lease_until=now + lease)
        ).rowcount
        if claimed != 1:
            return None
        return conn.execute(sa.select(alert_outbox).where(t.id == row_id)).one()


def mark_sent(store: Store, row_id: int, now: datetime) -> None:
    """Sent: the content goes (only what folding needs stays until the purge)."""
    with store.begin() as conn:
        conn.execute(
            alert_outbox.update()
            .where(alert_outbox.c.id == row_id)
            .values(status=SENT, sent_at=now, lease_until=None, last_error=None, event={})
        )


def mark_failed(store: Store, row_id: int, attempts: int, retry_at: datetime, error: str) -> None:
    """Not sent: released, to be tried again at `retry_at`."""
    with store.begin() as conn:
        conn.execute(
            alert_outbox.update()
            .where(alert_outbox.c.id == row_id)
            .values(
                attempts=attempts,
                next_attempt_at=retry_at,
                lease_until=None,
                last_error=error[:1000],
            )
        )


def pending(store: Store, channel: str | None = None) -> int:
    """How many rows wait (on `channel`, or on any)."""
    t = alert_outbox.c
    query = sa.select(sa.func.count()).select_from(alert_outbox).where(t.status == PENDING)
    if channel is not None:
        query = query.where(t.channel == channel)
    with store.connect() as conn:
        return int(conn.scalar(query) or 0)


def next_due(store: Store, channel: str) -> datetime | None:
    """When the next row of `channel` is due, if any waits."""
    t = alert_outbox.c
    with store.connect() as conn:
        due: datetime | None = conn.scalar(
            sa.select(sa.func.min(t.next_attempt_at)).where(
                t.status == PENDING, t.channel == channel
            )
        )
    return due


def retry_failed_now(store: Store, now: datetime) -> int:
    """Rows that failed and wait for their backoff are due now; returns how many."""
    t = alert_outbox.c
    with store.begin() as conn:
        return int(
            conn.execute(
                alert_outbox.update()
                .where(t.status == PENDING, t.attempts > 0, t.next_attempt_at > now)
                .values(next_attempt_at=now)
            ).rowcount
        )


def purge(store: Store, now: datetime) -> int:
    """Delete sent rows whose fold window is over (they have no content left anyway)."""
    t = alert_outbox.c
    with store.begin() as conn:
        return int(
            conn.execute(alert_outbox.delete().where(t.status == SENT, t.fold_until < now)).rowcount
        )


def message(row: Any) -> Notification:
    """What a row says: a stored message as it was written, or its (folded) alert rendered."""
    stored = row.event.get("notification")
    if stored is not None:
        return note_from_json(stored, tuple(row.recipients))
    return notification_for(
        Event.from_json(row.event),
        occurrences=row.occurrences,
        first_at=row.first_at,
        last_at=row.last_at,
        recipients=row.recipients,
    )


def _leased(row: Any, now: datetime) -> bool:
    return row.lease_until is not None and row.lease_until > now
