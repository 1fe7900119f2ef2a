"""Reading alerts for the console: the list with its filters, one alert, and the timeline of
the person it is about.

Every read takes the audiences the reader holds (workflow/roles.Powers.audiences()), and
"email:<address>" for each address they are told at: an alert of another audience is not
listed and not found, so its id tells nothing, unless it was sent to them (an escalation
to the headteacher, a reminder to a named person), whose message links to its page. The
timeline is the access log around the alert for its user (or, with nobody signed in, its
device or address); an illegal-tier block in it shows no address, as its alert shows none.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from proxy_addons.alerts.alert_rows import ACKNOWLEDGED, CLOSED, NEW
from proxy_addons.store import Store
from proxy_addons.store.schema import access_log, alerts

SEVERITY_TEXT = {1: "Note", 2: "Low", 3: "Medium", 4: "High", 5: "Urgent"}
KIND_TEXT = {
    "risk_phrase": "Worrying words in a search or page",
    "illegal_tier": "Illegal content blocked",
    "high_risk_block": "High-risk site blocked",
    "repeated_blocks": "Repeated blocked attempts",
    "content_block": "Page blocked for what it says",
    "circumvention": "Trying to get round the filter",
    "check_failed": "A filtering check failed",
    "check_due": "A filtering check is due",
    "device_noncompliant": "Device not up to standard",
    "device_stale": "Device not heard from",
    "device_unknown": "Unknown device on the network",
    "policy_reload_failed": "Policy change refused",
    "outbox_stuck": "Alerts not being delivered",
    "ca_refused": "Device refuses the school's certificate",
    "list_index_damaged": "Block list index damaged",
    "access_log_lost": "Access log records lost",
    "user_report": "A pupil or member of staff reported a page",
    "review_due": "The annual filtering review is due",
    "illegal_unblock_asked": "Asked to unblock illegal content",
    "illegal_tier_unfit": "Illegal-content lists out of date",
    "illegal_tier_fit": "Illegal-content lists current again",
}
AUDIENCE_TEXT = {
    "safeguarding": "Safeguarding team",
    "technical": "IT provider",
    "staff": "Concern about staff (headteacher)",
}
# Which alerts name a person: only these show who and their timeline.
PERSONAL = frozenset({"safeguarding", "staff"})
STATE_CHOICES = {
    "open": ("Not closed", (NEW, ACKNOWLEDGED)),
    NEW: ("New", (NEW,)),
    ACKNOWLEDGED: ("Acknowledged", (ACKNOWLEDGED,)),
    CLOSED: ("Closed", (CLOSED,)),
    "all": ("All", (NEW, ACKNOWLEDGED, CLOSED)),
}
STATE_TEXT = {NEW: "New", ACKNOWLEDGED: "Acknowledged", CLOSED: "Closed"}
PAGE_SIZE = 100
TIMELINE_AROUND = timedelta(hours=1)
TIMELINE_LIMIT = 500


def kind_text(kind: str) -> str:
    return KIND_TEXT.get(kind) or kind.replace("_", " ").capitalize()


@dataclass(frozen=True)
class Filters:
    """What the alert list is narrowed to; every field is optional."""

    min_severity: int = 1
    category: str = ""
    kind: str = ""
    state: str = "open"  # a key of STATE_CHOICES
    person: str = ""  # a user name, device id or IP address, exactly
    start: datetime | None = None  # raised at or after
    end: datetime | None = None  # raised before

    def where(self, audiences: Collection[str]) -> list[sa.ColumnElement[bool]]:
        t = alerts.c
        out: list[sa.ColumnElement[bool]] = [visible(audiences)]
        out.append(t.state.in_(STATE_CHOICES.get(self.state, STATE_CHOICES["open"])[1]))
        if self.min_severity > 1:
            out.append(t.severity >= self.min_severity)
        if self.category:
            out.append(t.category == self.category)
        if self.kind:
            out.append(t.kind == self.kind)
        if self.person:
            who = self.person.strip()
            out.append(sa.or_(t.username == who.lower(), t.device_id == who, t.ip == who))
        if self.start is not None:
            out.append(t.raised_at >= self.start)
        if self.end is not None:
            out.append(t.raised_at < self.end)
        return out


def visible(audiences: Collection[str]) -> sa.ColumnElement[bool]:
    """Alerts of these audiences, or sent to one of the "email:<address>" among them."""
    t = alerts.c
    held = sorted(a for a in audiences if not a.startswith("email:"))
    sent = [
        sa.cast(t.recipients, sa.Text).like(f'%"{_like(a)}"%', escape="\\")
        for a in sorted(audiences)
        if a.startswith("email:")
    ]
    return sa.or_(t.audience.in_(held), *sent)


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def listed(
    store: Store,
    audiences: Collection[str],
    filters: Filters,
    *,
    after: int | None = None,
    before: int | None = None,
    limit: int = PAGE_SIZE,
) -> list[Any]:
    """Alerts matching `filters`, newest first: those with ids after `after` (the live
    feed), or the page before `before` (older ones)."""
    if not audiences:
        return []
    t = alerts.c
    where = filters.where(audiences)
    if after is not None:
        where.append(t.id > after)
    if before is not None:
        where.append(t.id < before)
    query = sa.select(alerts).where(*where).order_by(t.id.desc()).limit(limit)
    with store.connect() as conn:
        return list(conn.execute(query).all())


def changed(
    store: Store,
    audiences: Collection[str],
    filters: Filters,
    *,
    since: datetime,
    upto: int,
    limit: int = PAGE_SIZE,
) -> list[Any]:
    """Alerts up to id `upto` matching `filters` in any state that changed at or after
    `since` (repeated, acknowledged, escalated, closed, reopened): the live list updates
    rows it already shows, including one someone else has just closed."""
    if not audiences:
        return []
    t = alerts.c
    where = replace(filters, state="all").where(audiences)
    moved = [t.last_seen_at, t.acknowledged_at, t.closed_at, t.escalated_at]
    where += [t.id <= upto, sa.or_(*(column >= since for column in moved))]
    query = sa.select(alerts).where(*where).order_by(t.id.desc()).limit(limit)
    with store.connect() as conn:
        return list(conn.execute(query).all())


def choices(store: Store, audiences: Collection[str]) -> tuple[list[str], list[str]]:
    """(categories, kinds) among the alerts the reader may see, for the filter's lists."""
    if not audiences:
        return [], []
    t = alerts.c
    mine = visible(audiences)
    with store.connect() as conn:
        categories = conn.execute(
            sa.select(t.category).where(mine, t.category.is_not(None)).distinct()
        ).scalars()
        kinds = conn.execute(sa.select(t.kind).where(mine).distinct()).scalars()
        return sorted(c for c in categories if c), sorted(kinds)


def one(store: Store, audiences: Collection[str], alert_id: int) -> Any | None:
    """The alert, if the reader holds its audience; None otherwise, as if there were none."""
    if not audiences:
        return None
    t = alerts.c
    query = sa.select(alerts).where(t.id == alert_id, visible(audiences))
    with store.connect() as conn:
        return conn.execute(query).first()


@dataclass(frozen=True)
class Subject:
    """Whose timeline: a user, else a device id, else an address."""

    column: str  # username | device_id | ip
    value: str

    @property
    def text(self) -> str:
        label = {"username": "user", "device_id": "device", "ip": "address"}[self.column]
        return f"{label} {self.value}"

    @property
    def audit_key(self) -> str:
        """How the audit trail names the person looked at, as people's history does: user:,
        or device: (an id or an address)."""
        short = "user" if self.column == "username" else "device"
        return f"{short}:{self.value}"


def subject(row: Any) -> Subject | None:
    """Who a personal alert is about, for its timeline; None for a technical alert."""
    if row.audience not in PERSONAL:
        return None
    for column in ("username", "device_id", "ip"):
        value = getattr(row, column)
        if value:
            return Subject(column, value)
    return None


@dataclass(frozen=True)
class Visit:
    """One access-log line of a timeline, as the DSL reads it."""

    at: datetime
    host: str
    address: str  # the page, or "" when it must not be shown
    search_term: str | None
    blocked: bool
    reason: str
    category: str | None
    reference: str | None
    check_visit: bool
    user: str | None
    ip: str | None


@dataclass(frozen=True)
class Timeline:
    subject: Subject
    start: datetime
    end: datetime
    visits: list[Visit]
    more: bool  # there were more than TIMELINE_LIMIT lines: the rest is on People


def timeline(store: Store, row: Any) -> Timeline | None:
    """The access log from an hour before the alert to an hour after its last repeat, for
    the person it is about, oldest first; None when it names nobody."""
    who = subject(row)
    if who is None:
        return None
    start, end = row.raised_at - TIMELINE_AROUND, row.last_seen_at + TIMELINE_AROUND
    c = access_log.c
    query = (
        sa.select(access_log)
        .where(c[who.column] == who.value, c.at >= start, c.at <= end)
        .order_by(c.at, c.id)
        .limit(TIMELINE_LIMIT + 1)
    )
    with store.connect() as conn:
        rows = conn.execute(query).all()
    visits = [_visit(r) for r in rows[:TIMELINE_LIMIT]]
    return Timeline(who, start, end, visits, more=len(rows) > TIMELINE_LIMIT)


def _visit(r: Any) -> Visit:
    illegal = r.decision == "block" and r.reason == "illegal"
    return Visit(
        at=r.at,
        host="illegal-tier list entry" if illegal else r.host,
        address="" if illegal else (r.url or ""),
        search_term=None if illegal else r.search_term,
        blocked=r.decision == "block",
        reason=r.reason,
        category=r.category,
        reference=r.reference,
        check_visit=bool(r.check_visit),
        user=r.username,
        ip=r.ip,
    )


__all__ = [
    "AUDIENCE_TEXT",
    "KIND_TEXT",
    "PAGE_SIZE",
    "PERSONAL",
    "SEVERITY_TEXT",
    "STATE_CHOICES",
    "STATE_TEXT",
    "Filters",
    "Subject",
    "Timeline",
    "Visit",
    "changed",
    "choices",
    "kind_text",
    "listed",
    "one",
    "subject",
    "timeline",
]
