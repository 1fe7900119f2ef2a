"""The incident log as the console and the exports read it: an incident with its follow-up
actions, one or a list (filtered by when it happened, state and person), and who may see it.
The steps that change it, each audited, are in workflow/incidents.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from proxy_addons.alerts.routing import STAFF
from proxy_addons.core.policy.model import Policy
from proxy_addons.store import Store
from proxy_addons.store.schema import alerts, incident_actions, incidents

OPEN, CLOSED = "open", "closed"  # an incident's states
STAFF_AUDIENCE = STAFF  # alerts about a member of staff: the headteacher's alone
# Kinds of incident a school logs that are not filtering categories; the policy's own
# categories (with their labels) are offered too.
INCIDENT_KINDS = {
    "cyberbullying": "Cyberbullying",
    "nude_images": "Sharing nudes or semi-nudes",
    "stranger_contact": "Contact from a stranger",
    "device_misuse": "Misuse of a school device or account",
    "other": "Other",
}


@dataclass(frozen=True)
class Action:
    """A follow-up: what, whose, by when, and when it was done by whom."""

    id: int
    text: str
    owner: str | None
    due: date | None
    recorded_by: str
    recorded_at: datetime
    done_by: str | None
    done_at: datetime | None


@dataclass(frozen=True)
class Incident:
    id: int
    occurred_at: datetime
    location: str
    description: str
    action_taken: str
    category: str | None
    people: tuple[str, ...]
    alert_id: int | None
    report_id: int | None
    recorded_by: str
    recorded_at: datetime
    state: str
    closed_by: str | None
    closed_at: datetime | None
    about_staff: bool  # about a member of staff: said so, or opened from such an alert
    actions: tuple[Action, ...] = ()

    @property
    def open_actions(self) -> int:
        return sum(a.done_at is None for a in self.actions)


def kind_label(policy: Policy, category: str | None) -> str:
    """A category's plain name: the policy's label, or one of INCIDENT_KINDS."""
    if not category:
        return ""
    found = policy.categories.get(category)
    return found.label if found else INCIDENT_KINDS.get(category, category)


def _about_staff() -> sa.ColumnElement[bool]:
    """Said to be about staff when recorded, or opened from an alert about staff."""
    from_alert = sa.func.coalesce(alerts.c.audience == STAFF_AUDIENCE, False)
    return sa.or_(incidents.c.about_staff, from_alert)


def _select() -> sa.Select[Any]:
    return sa.select(incidents, _about_staff().label("staff")).select_from(
        incidents.outerjoin(alerts, alerts.c.id == incidents.c.alert_id)
    )


def _actions_of(conn: sa.Connection, ids: Sequence[int]) -> dict[int, list[Action]]:
    out: dict[int, list[Action]] = {i: [] for i in ids}
    if not ids:
        return out
    t = incident_actions.c
    found = conn.execute(
        sa.select(incident_actions).where(t.incident_id.in_(ids)).order_by(t.id)
    ).all()
    for r in found:
        out[r.incident_id].append(
            Action(r.id, r.text, r.owner, r.due, r.recorded_by, r.recorded_at, r.done_by, r.done_at)
        )
    return out


def _incident(row: Any, actions: Sequence[Action]) -> Incident:
    return Incident(
        id=row.id,
        occurred_at=row.occurred_at,
        location=row.location,
        description=row.description,
        action_taken=row.action_taken,
        category=row.category,
        people=tuple(row.people or ()),
        alert_id=row.alert_id,
        report_id=row.report_id,
        recorded_by=row.recorded_by,
        recorded_at=row.recorded_at,
        state=row.state,
        closed_by=row.closed_by,
        closed_at=row.closed_at,
        about_staff=bool(row.staff),
        actions=tuple(actions),
    )


def get(store: Store, incident_id: int) -> Incident | None:
    with store.connect() as conn:
        row = conn.execute(_select().where(incidents.c.id == incident_id)).first()
        if row is None:
            return None
        return _incident(row, _actions_of(conn, [row.id])[row.id])


@dataclass(frozen=True)
class Filter:
    """Which incidents a list or an export shows; every part optional."""

    start: datetime | None = None  # occurred at or after
    end: datetime | None = None  # occurred before
    state: str | None = None  # open | closed
    person: str | None = None  # a user name among the people involved
    staff: bool = False  # include incidents about staff (the headteacher's)
    limit: int = 500


def listing(store: Store, f: Filter) -> list[Incident]:
    """Incidents matching `f`, the newest (by when it happened) first, with their actions."""
    c = incidents.c
    stmt = _select().order_by(c.occurred_at.desc(), c.id.desc())
    if f.start is not None:
        stmt = stmt.where(c.occurred_at >= f.start)
    if f.end is not None:
        stmt = stmt.where(c.occurred_at < f.end)
    if f.state:
        stmt = stmt.where(c.state == f.state)
    if not f.staff:
        stmt = stmt.where(sa.not_(_about_staff()))
    with store.connect() as conn:
        rows = conn.execute(stmt).all()
        if f.person:
            who = f.person.strip().lower()
            rows = [r for r in rows if who in (p.lower() for p in r.people or ())]
        rows = rows[: f.limit]
        actions = _actions_of(conn, [r.id for r in rows])
    return [_incident(r, actions[r.id]) for r in rows]


__all__ = [
    "CLOSED",
    "INCIDENT_KINDS",
    "OPEN",
    "STAFF_AUDIENCE",
    "Action",
    "Filter",
    "Incident",
    "get",
    "kind_label",
    "listing",
]
