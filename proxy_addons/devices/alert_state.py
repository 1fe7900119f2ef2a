"""What the gateway remembers about device alerts it raised, kept in the store.

A stale device, a non-compliant one and an unknown MAC are each worth one alert, not one per
sweep or per packet. Remembering that in memory raised them all again after a restart; the
`device_alerts` table keeps it across restarts and between gateways sharing a database.
Each row is (kind, subject, state): the subject is a device id or a MAC, the state what the
alert was about (the last report time of a stale device, the failing checks), so a new state
is a new alert and the same one is not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from proxy_addons.alerts.events import DEVICE_UNKNOWN, Audience, Event, local_time
from proxy_addons.core.policy.model import Policy
from proxy_addons.devices.inventory import list_devices
from proxy_addons.store import Store
from proxy_addons.store.schema import device_alerts, seen_devices

logger = logging.getLogger(__name__)

UNKNOWN_GRACE = timedelta(minutes=10)  # a new school device may ARP before its first report
UNKNOWN_SINCE_DAYS = 1  # only MACs seen lately are news


def _insert(store: Store) -> Any:
    return postgresql.insert if store.dialect == "postgresql" else sqlite.insert


def claim(store: Store, kind: str, subject: str, state: str, at: datetime) -> bool:
    """Remember (kind, subject) in `state`; True if that is news (no row, or another state).

    One conditional upsert, so of two gateways claiming the same thing at once only one
    gets True and raises the alert.
    """
    stmt = _insert(store)(device_alerts).values(
        kind=kind, subject=subject, state=state, raised_at=at
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[device_alerts.c.kind, device_alerts.c.subject],
        set_={"state": stmt.excluded.state, "raised_at": stmt.excluded.raised_at},
        where=device_alerts.c.state != stmt.excluded.state,
    ).returning(device_alerts.c.kind)  # a row only when inserted or changed (rowcount isn't
    with store.begin() as conn:  # reliable for upserts across drivers)
        return conn.execute(stmt).first() is not None


def remember(store: Store, kind: str, subject: str, state: str, at: datetime) -> None:
    """Set the state whether or not it changed (e.g. fewer failing checks than alerted)."""
    stmt = _insert(store)(device_alerts).values(
        kind=kind, subject=subject, state=state, raised_at=at
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[device_alerts.c.kind, device_alerts.c.subject],
        set_={"state": stmt.excluded.state},
    )
    with store.begin() as conn:
        conn.execute(stmt)


def recalled(store: Store, kind: str, subject: str) -> str | None:
    """The remembered state of (kind, subject), or None."""
    with store.connect() as conn:
        value = conn.execute(
            sa.select(device_alerts.c.state).where(
                device_alerts.c.kind == kind, device_alerts.c.subject == subject
            )
        ).scalar_one_or_none()
    return None if value is None else str(value)


def forget(store: Store, kind: str, subject: str) -> None:
    with store.begin() as conn:
        conn.execute(
            device_alerts.delete().where(
                device_alerts.c.kind == kind, device_alerts.c.subject == subject
            )
        )


def forget_all_but(store: Store, kind: str, keep: Collection[str]) -> int:
    """Forget every `kind` row whose subject is not in `keep` (e.g. devices no longer stale)."""
    condition = device_alerts.c.kind == kind
    if keep:
        condition = sa.and_(condition, device_alerts.c.subject.not_in(list(keep)))
    with store.begin() as conn:
        return int(conn.execute(device_alerts.delete().where(condition)).rowcount or 0)


# -- unknown devices -------------------------------------------------------------------------


def unknown_event(found: Any, policy: Policy, at: datetime) -> Event:
    """A device that never enrolled is on the school network: its MAC, address and first
    sighting. Not its DHCP host name, which is often its owner's name ("Sams-iPhone");
    `schoolgate devices unknown` on the gateway shows it to those who need it."""
    tz = policy.timezone
    fields = {"mac": found.mac, "ip": found.ip or "unknown"}
    if found.vendor_hint:
        fields["vendor"] = found.vendor_hint
    fields["first_seen"] = local_time(tz, found.first_seen)
    fields["time"] = local_time(tz, at)
    return Event(
        kind=DEVICE_UNKNOWN,
        severity=3,
        audience=Audience.TECHNICAL,
        summary="A device that never enrolled is on the school network",
        fields=fields,
        fold_key=f"{DEVICE_UNKNOWN}|{found.mac}",
        at=at,
        timezone=tz.key,
    )


def alert_unknown_devices(
    store: Store,
    policy: Policy,
    now: datetime,
    raise_event: Callable[[Event], object],
    grace: timedelta = UNKNOWN_GRACE,
) -> int:
    """Raise each unknown MAC once, ever (until the remembered row is deleted by hand).

    A MAC first seen less than `grace` ago waits: a newly imaged school device is on the
    network a little while before its agent enrols and reports its MACs.
    """
    # Not netwatch.unknown_devices: that module imports scapy, which the gateway (where
    # this sweep runs) has no other use for. The same question, asked here in SQL.
    since, settled = now - timedelta(days=UNKNOWN_SINCE_DAYS), now - grace
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(seen_devices)
            .where(seen_devices.c.last_seen >= since, seen_devices.c.first_seen <= settled)
            .order_by(seen_devices.c.first_seen)
        ).all()
    if not rows:
        return 0
    enrolled = {m.lower() for d in list_devices(store, now, stale_days=365) for m in d.last_macs}
    raised = 0
    for found in rows:
        if found.mac in enrolled:
            continue
        if not claim(store, DEVICE_UNKNOWN, found.mac, "seen", now):
            continue
        try:
            raise_event(unknown_event(found, policy, now))
        except Exception:
            forget(store, DEVICE_UNKNOWN, found.mac)  # raised on the next sweep instead
            raise
        raised += 1
    return raised


__all__ = [
    "alert_unknown_devices",
    "claim",
    "forget",
    "forget_all_but",
    "recalled",
    "remember",
    "unknown_event",
]
