"""Storing a request, reading stored unblocks, and ending those whose window has passed
(recorded in the audit trail as `unblock.expired`, also for ones that ended while no gateway
was running)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from proxy_addons.core.unblocks import Status, Unblock
from proxy_addons.store import Store
from proxy_addons.store.schema import unblocks
from proxy_addons.workflow import audit
from proxy_addons.workflow.unblock_rules import LIVE, aware, row_to_unblock


def insert_request(conn: sa.Connection, unblock: Unblock, address: str | None) -> None:
    """Store a new request (`unblock`, pending), made from `address`."""
    conn.execute(
        unblocks.insert().values(
            id=unblock.id,
            scope=unblock.scope.value,
            target=unblock.target,
            audience_kind=unblock.audience_kind.value,
            audience=list(unblock.audience),
            starts_at=unblock.starts_at,
            ends_at=unblock.ends_at,
            reason=unblock.reason,
            requested_by=unblock.requested_by,
            requested_at=unblock.starts_at,
            requested_from=address,
            status=unblock.status.value,
        )
    )


def stored(store: Store, unblock_id: str) -> Any:
    """The unblock's row, or None."""
    with store.connect() as conn:
        return conn.execute(sa.select(unblocks).where(unblocks.c.id == unblock_id)).first()


def listed(store: Store, statuses: Sequence[Status] = ()) -> list[Unblock]:
    """Unblocks (with one of `statuses`, if given), the latest request first."""
    query = sa.select(unblocks).order_by(unblocks.c.requested_at.desc())
    if statuses:
        query = query.where(unblocks.c.status.in_([s.value for s in statuses]))
    with store.connect() as conn:
        return [row_to_unblock(r) for r in conn.execute(query)]


def in_force(store: Store, now: datetime) -> list[Unblock]:
    """Active unblocks whose window has not ended at `now` (the proxy's working set)."""
    query = sa.select(unblocks).where(
        unblocks.c.status == Status.ACTIVE.value, unblocks.c.ends_at > now
    )
    with store.connect() as conn:
        return [row_to_unblock(r) for r in conn.execute(query)]


def expire_due(store: Store, now: datetime) -> list[str]:
    """Mark every live unblock whose window has passed as expired; returns their ids. One
    transaction each, guarded by the status read, so two gateways expire one only once."""
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(unblocks.c.id).where(
                unblocks.c.status.in_([s.value for s in LIVE]), unblocks.c.ends_at <= now
            )
        ).all()
    done = []
    for row in rows:
        with store.begin() as conn:
            current = conn.execute(sa.select(unblocks).where(unblocks.c.id == row.id)).one()
            changed = conn.execute(
                unblocks.update()
                .where(unblocks.c.id == row.id, unblocks.c.status == current.status)
                .values(
                    status=Status.EXPIRED.value,
                    ended_at=current.ends_at,
                    version=current.version + 1,
                )
            ).rowcount
            if changed:
                audit.append(
                    conn,
                    actor="schoolgate",
                    action="unblock.expired",
                    subject=row.id,
                    detail={"ended_at": aware(current.ends_at).isoformat(), "was": current.status},
                    at=now,
                )
                done.append(row.id)
    return done
