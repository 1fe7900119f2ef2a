"""The access log in the store: writing rows, `schoolgate log search`, and the retention purge.

The purge counts every finished day into the daily totals first (record/daily_totals.py)
and never deletes a day that has not been counted: the governors' figures outlive the log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from proxy_addons.record import daily_totals
from proxy_addons.record.access_files import purge_files
from proxy_addons.record.access_records import AccessRecord
from proxy_addons.store import Store
from proxy_addons.store.schema import access_log

logger = logging.getLogger(__name__)

DELETE_BATCH = 5000


def write_rows(store: Store, records: Sequence[AccessRecord]) -> None:
    if records:
        with store.begin() as conn:
            conn.execute(access_log.insert(), [r.to_row() for r in records])


@dataclass(frozen=True, slots=True)
class Query:
    """What `schoolgate log search` asks; every filter is optional."""

    user: str | None = None
    ip: str | None = None
    device: str | None = None  # a device's id, its name (any case) or its IP address
    profile: str | None = None
    category: str | None = None
    decision: Literal["allow", "block"] | None = None
    host: str | None = None  # the host or any of its subdomains
    term: str | None = None  # a substring of the search term, any case
    reference: str | None = None  # a block page's reference (SG-XXXX-XXXX), any case
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive
    limit: int = 100


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def conditions(q: Query) -> list[sa.ColumnElement[bool]]:
    """`q`'s filters as SQL conditions on `access_log`."""
    c = access_log.c
    where: list[sa.ColumnElement[bool]] = []
    if q.user:
        where.append(c.username == q.user.lower())
    if q.ip:
        where.append(c.ip == q.ip)
    if q.device:
        device = q.device.strip()
        where.append(
            sa.or_(
                c.device_id == device,
                sa.func.lower(c.device_name) == device.lower(),
                c.ip == device,
            )
        )
    if q.profile:
        where.append(c.profile == q.profile)
    if q.category:
        where.append(c.category == q.category)
    if q.decision:
        where.append(c.decision == q.decision)
    if q.host:
        host = q.host.lower().rstrip(".")
        where.append(sa.or_(c.host == host, c.host.like(f"%.{_like_escape(host)}", escape="\\")))
    if q.term:
        where.append(c.search_term.ilike(f"%{_like_escape(q.term)}%", escape="\\"))
    if q.reference:
        where.append(c.reference == q.reference.strip().upper())
    if q.start:
        where.append(c.at >= q.start)
    if q.end:
        where.append(c.at < q.end)
    return where


def rows(store: Store, q: Query, offset: int = 0) -> list[sa.Row[Any]]:
    """Rows matching `q`, newest first: `q.limit` of them after skipping the `offset` newest
    (pages of a search); a row also says whether it was a termly check's visit."""
    c = access_log.c
    stmt = (
        sa.select(access_log)
        .where(*conditions(q))
        .order_by(c.at.desc(), c.id.desc())
        .offset(max(offset, 0))
        .limit(q.limit)
    )
    with store.connect() as conn:
        return list(conn.execute(stmt).all())


def count(store: Store, q: Query) -> int:
    """How many rows match `q` (its limit aside)."""
    stmt = sa.select(sa.func.count()).select_from(access_log).where(*conditions(q))
    with store.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def search(store: Store, q: Query) -> list[AccessRecord]:
    """The newest `q.limit` records matching `q`, oldest first."""
    return [AccessRecord.from_row(r) for r in reversed(rows(store, q))]


def purge_store(store: Store, before: datetime) -> int:
    """Delete rows older than `before`, a batch at a time (short locks); returns how many."""
    c = access_log.c
    total = 0
    while True:
        batch = sa.select(c.id).where(c.at < before).limit(DELETE_BATCH)
        with store.begin() as conn:
            deleted = conn.execute(access_log.delete().where(c.id.in_(batch))).rowcount
        total += deleted
        if deleted < DELETE_BATCH:
            return total


def purge(
    store: Store | None,
    path: Path | None,
    retention_days: int,
    now: datetime,
    *,
    timezone: tzinfo,
) -> tuple[int, list[Path]]:
    """Enforce the retention period: store rows and rotated JSON files older than it go.

    Store rows go only once their day is in the daily totals (`timezone` is the school's,
    whose days they count): missing days are totalled first, and a day that still could not
    be (the store failing) keeps its rows until the next purge."""
    before = now - timedelta(days=retention_days)
    rows = 0
    if store is not None:
        daily_totals.total_missing(store, timezone, now, retention_days=retention_days)
        rows = purge_store(store, daily_totals.safe_cutoff(store, timezone, before))
    files = purge_files(path, before) if path is not None else []
    if rows or files:
        logger.info(
            "access log: purged %d records and %d files older than %d days",
            rows,
            len(files),
            retention_days,
        )
    return rows, files
