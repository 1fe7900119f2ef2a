"""A look at one pupil's or device's history, and its CSV export, each one audited.

Looking at a person's browsing is itself something the school must be able to account for
(UK GDPR; KCSIE's "who looked at whom, when, why"), so a look needs a reason, and every page
of results and every export writes an audit record: who looked, at whom, with which
filters, why, and from which address. The history is the access log (record/access_store),
newest first, with each termly check's own visits marked as such.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa

from proxy_addons.core.policy.model import Policy
from proxy_addons.record import access_store
from proxy_addons.record.access_export import csv_text
from proxy_addons.record.access_records import AccessRecord
from proxy_addons.store import Store
from proxy_addons.store.schema import alerts
from proxy_addons.workflow import audit
from proxy_addons.workflow.unblocks import Actor

PAGE_SIZE = 50
EXPORT_LIMIT = 20_000  # rows in one CSV: a term of one pupil's browsing, with room to spare
ALERTS_SHOWN = 100
MAX_REASON = 500
VIEWED, EXPORTED = "person.viewed", "person.exported"  # as the alert page's timeline look


class LookError(ValueError):
    """What is missing or wrong in a look, field by field."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__(" ".join(problems.values()))
        self.problems = problems


@dataclass(frozen=True)
class Look:
    """Whose history, narrowed how, and why the DSL is looking."""

    user: str = ""
    device: str = ""  # id, name or IP address
    reference: str = ""  # a block page's SG-XXXX-XXXX
    term: str = ""  # a term's name in the policy
    category: str = ""
    start: date | None = None  # school days, inclusive
    end: date | None = None
    reason: str = ""

    def whom(self) -> str:
        """The audit record's subject: who was looked at."""
        for kind, value in (("user", self.user), ("device", self.device)):
            if value:
                return f"{kind}:{value}"[:200]
        return f"reference:{self.reference}"[:200]

    def filters(self) -> dict[str, str]:
        """The filters as given (for the audit record), empty ones left out."""
        values = {
            "user": self.user,
            "device": self.device,
            "reference": self.reference,
            "term": self.term,
            "category": self.category,
            "from": self.start.isoformat() if self.start else "",
            "to": self.end.isoformat() if self.end else "",
        }
        return {k: v for k, v in values.items() if v}


def problems_of(look: Look, policy: Policy) -> dict[str, str]:
    found: dict[str, str] = {}
    if not (look.user or look.device or look.reference):
        found["user"] = "Name a pupil, a device or a block's reference code."
    if not look.reason.strip():
        found["reason"] = "Say why you are looking (for example 'alert 12')."
    elif len(look.reason) > MAX_REASON:
        found["reason"] = f"Keep the reason under {MAX_REASON} characters."
    if look.term and look.term not in {t.name for t in policy.terms}:
        found["term"] = "Choose one of the school's terms."
    if look.start and look.end and look.end < look.start:
        found["end"] = "The last day is before the first."
    return found


def _midnight(policy: Policy, day: date) -> datetime:
    return datetime.combine(day, time(0), policy.timezone)


def query_of(look: Look, policy: Policy, limit: int) -> access_store.Query:
    """The access-log query for `look`: a term and dates narrow each other, in school time."""
    start = _midnight(policy, look.start) if look.start else None
    end = _midnight(policy, look.end + timedelta(days=1)) if look.end else None
    for term in policy.terms:
        if term.name == look.term:
            t_start = _midnight(policy, term.start)
            t_end = _midnight(policy, term.end + timedelta(days=1))
            start = max(start, t_start) if start else t_start
            end = min(end, t_end) if end else t_end
    return access_store.Query(
        user=look.user or None,
        device=look.device or None,
        reference=look.reference or None,
        category=look.category or None,
        start=start,
        end=end,
        limit=limit,
    )


@dataclass(frozen=True)
class Visit:
    record: AccessRecord
    check_visit: bool  # a termly check's own visit, never a pupil's


@dataclass(frozen=True)
class History:
    visits: list[Visit]
    total: int
    page: int  # from 1
    pages: int


def _visits(found: Sequence[Any]) -> list[Visit]:
    return [Visit(AccessRecord.from_row(r), bool(r.check_visit)) for r in found]


def _audit(store: Store, actor: Actor, action: str, look: Look, detail: dict[str, Any]) -> None:
    with store.begin() as conn:
        audit.append(
            conn,
            actor=actor.name,
            action=action,
            subject=look.whom(),
            detail={"filters": look.filters(), "reason": look.reason.strip(), **detail},
            address=actor.address,
        )


def history(store: Store, policy: Policy, actor: Actor, look: Look, page: int = 1) -> History:
    """One page of `look`'s history, newest first; audited before anything is read."""
    problems = problems_of(look, policy)
    if problems:
        raise LookError(problems)
    q = query_of(look, policy, PAGE_SIZE)
    total = access_store.count(store, q)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(page, 1), pages)
    _audit(store, actor, VIEWED, look, {"page": page, "where": "people"})
    found = access_store.rows(store, q, offset=(page - 1) * PAGE_SIZE)
    return History(_visits(found), total, page, pages)


CSV_COLUMNS = (
    "time",
    "time_utc",
    "user",
    "device_name",
    "device_id",
    "ip",
    "profile",
    "decision",
    "reason",
    "category",
    "host",
    "url",
    "search_term",
    "reference",
    "check_visit",
)


def export_csv(store: Store, policy: Policy, actor: Actor, look: Look) -> str:
    """`look`'s history as CSV (newest first, at most EXPORT_LIMIT rows); audited."""
    problems = problems_of(look, policy)
    if problems:
        raise LookError(problems)
    q = query_of(look, policy, EXPORT_LIMIT)
    visits = _visits(access_store.rows(store, q))
    _audit(store, actor, EXPORTED, look, {"rows": len(visits), "format": "csv"})
    tz = policy.timezone
    return csv_text(
        CSV_COLUMNS,
        (
            [
                f"{v.record.time.astimezone(tz):%Y-%m-%d %H:%M:%S}",
                v.record.as_dict()["time"],
                v.record.user,
                v.record.device_name,
                v.record.device_id,
                v.record.ip,
                v.record.profile,
                v.record.decision,
                v.record.reason,
                v.record.category,
                v.record.host,
                v.record.url,
                v.record.search_term,
                v.record.reference,
                "yes" if v.check_visit else "no",
            ]
            for v in visits
        ),
    )


def alerts_about(
    store: Store, look: Look, audiences: frozenset[str], limit: int = ALERTS_SHOWN
) -> list[Any]:
    """The alerts (of the audiences the viewer holds) naming the looked-at user or device."""
    c = alerts.c
    who: list[sa.ColumnElement[bool]] = []
    if look.user:
        who.append(c.username == look.user.lower())
    if look.device:
        who.append(sa.or_(c.device_id == look.device, c.ip == look.device))
    if not who or not audiences:
        return []
    stmt = (
        sa.select(c.id, c.raised_at, c.severity, c.kind, c.category, c.summary, c.state)
        .where(sa.or_(*who), c.audience.in_(sorted(audiences)))
        .order_by(c.raised_at.desc())
        .limit(limit)
    )
    with store.connect() as conn:
        return list(conn.execute(stmt).all())


__all__ = [
    "CSV_COLUMNS",
    "EXPORTED",
    "PAGE_SIZE",
    "VIEWED",
    "History",
    "Look",
    "LookError",
    "Visit",
    "alerts_about",
    "export_csv",
    "history",
    "problems_of",
    "query_of",
]
