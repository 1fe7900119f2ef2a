"""The `alerts` table: every alert raised, kept with its state, apart from the outbox.

The outbox delivers and forgets; this table is what the console shows and what the DSL acts
on (new -> acknowledged -> closed with an outcome). A repeat of an alert nobody has picked
up yet, within the fold window since it was last seen, adds to its `occurrences` instead of
making a new alert, as the outbox folds messages. Who the alert is about is read from the
event's own fields, which are already cut down for its audience: a technical event names
no pupil, so its row names none either.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa

from proxy_addons.alerts.events import Event
from proxy_addons.alerts.outbox_rows import fold_hash
from proxy_addons.alerts.routing import Route
from proxy_addons.store.schema import alerts

NEW, ACKNOWLEDGED, CLOSED = "new", "acknowledged", "closed"
STATES = (NEW, ACKNOWLEDGED, CLOSED)
OUTCOMES = {
    "no_concern": "No concern",
    "spoke_to_pupil": "Spoke to the pupil",
    "referred": "Referred",
    "incident_opened": "Incident opened",
    "false_positive": "False positive",
}


def recipients_of(routes: Sequence[Route]) -> list[str]:
    """Where an alert went, for its page: each channel, with the addresses of email."""
    out: set[str] = set()
    for route in routes:
        if route.recipients:
            out.update(f"email:{r.lower()}" for r in route.recipients)
        else:
            out.add(route.channel)
    return sorted(out)


def subject_of(event: Event) -> tuple[str | None, str | None, str | None]:
    """(user name, device id, IP address) the event names, if its audience may see them."""
    fields = event.fields
    user = fields.get("user", "").strip().lower()
    if user in ("", "not signed in", "unknown"):
        user = ""
    address = fields.get("ip") or fields.get("device") or ""
    try:
        ip = str(ipaddress.ip_address(address.strip("[]")))
    except ValueError:
        ip = ""
    return user or None, fields.get("device_id") or None, ip or None


def record(
    conn: sa.Connection,
    event: Event,
    routes: Sequence[Route],
    fold: timedelta,
    now: datetime,
    *,
    audience: str | None = None,
) -> int:
    """Keep `event` (or count it in the open alert it repeats); returns the alert's id."""
    t = alerts.c
    key = fold_hash(event.fold_key)
    if fold:
        latest = conn.execute(
            sa.select(t.id, t.severity)
            .where(t.fold_key == key, t.state == NEW, t.last_seen_at > now - fold)
            .order_by(t.id.desc())
            .limit(1)
            .with_for_update()
        ).first()
        if latest is not None:
            conn.execute(
                alerts.update()
                .where(t.id == latest.id)
                .values(
                    occurrences=t.occurrences + 1,
                    last_seen_at=now,
                    severity=max(latest.severity, event.severity),
                )
            )
            return int(latest.id)
    user, device_id, ip = subject_of(event)
    result = conn.execute(
        alerts.insert().values(
            raised_at=now,
            last_seen_at=now,
            kind=event.kind[:40],
            severity=event.severity,
            audience=audience or event.audience.value,
            category=(event.fields.get("category") or None),
            username=user,
            device_id=device_id,
            ip=ip,
            summary=event.summary,
            event=event.to_json(),
            fold_key=key,
            occurrences=1,
            recipients=recipients_of(routes),
            state=NEW,
            escalation_level=0,
        )
    )
    assert result.inserted_primary_key is not None
    return int(result.inserted_primary_key[0])


__all__ = [
    "ACKNOWLEDGED",
    "CLOSED",
    "NEW",
    "OUTCOMES",
    "STATES",
    "record",
    "recipients_of",
    "subject_of",
]
