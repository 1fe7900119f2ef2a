"""The online-safety incident log both schools' policies keep: when and where it happened,
what happened, the action taken, who recorded it and when; follow-up actions; closing.

Every step writes its rows and its audit record (workflow/audit.py) in one transaction, so
the log and the trail never disagree. An incident opened from an alert links the alert
(alerts.incident_id) and, if nobody had closed the alert yet, closes it with the outcome
"incident_opened". What the person typed is checked as a whole: `IncidentError` carries a
sentence for every field that is wrong, so a form can show them all and keep the rest.

The audit trail is kept for ever and is not purged with the log, so it holds ids and names
of fields, never an incident's description.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from proxy_addons.alerts import alert_rows
from proxy_addons.store import Store
from proxy_addons.store.schema import alerts, incident_actions, incidents
from proxy_addons.workflow import alert_cases, audit
from proxy_addons.workflow.incident_log import CLOSED, OPEN, STAFF_AUDIENCE
from proxy_addons.workflow.unblocks import Actor

# Audit actions; subjects "incident:<id>" (and "alert:<id>" for the alert's link).
OPENED, ACTION_ADDED, ACTION_DONE, CLOSED_ACTION, LINKED = (
    "incident.open",
    "incident.action_add",
    "incident.action_done",
    "incident.close",
    "alert.incident_linked",
)
MAX_LINE = 200
MAX_TEXT = 4000
MAX_PEOPLE = 50


class IncidentError(ValueError):
    """What is wrong with a step, field by field ("" for the step as a whole)."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__(" ".join(problems.values()))
        self.problems = problems


@dataclass(frozen=True)
class Draft:
    """A new incident as typed, already read into values (the web form does that)."""

    occurred_at: datetime | None
    location: str
    description: str
    action_taken: str
    category: str | None
    people: tuple[str, ...]
    about_staff: bool = False  # said so by whoever records it: the headteacher's alone


def audit_subject(incident_id: int) -> str:
    return f"incident:{incident_id}"


def problems_of(draft: Draft, now: datetime) -> dict[str, str]:
    """A sentence for each field of `draft` that can't go in the log."""
    found: dict[str, str] = {}
    if draft.occurred_at is None:
        found["occurred_at"] = "Give the date and time it happened."
    elif draft.occurred_at > now:
        found["occurred_at"] = "The time it happened is in the future."
    if not draft.location.strip():
        found["location"] = "Say where it happened (a room, or 'at home, reported by a pupil')."
    if not draft.description.strip():
        found["description"] = "Describe what happened."
    if not draft.action_taken.strip():
        found["action_taken"] = "Say what action was taken (or 'none yet')."
    if len(draft.people) > MAX_PEOPLE:
        found["people"] = f"Name at most {MAX_PEOPLE} people."
    return found


def _audit(
    conn: sa.Connection,
    actor: Actor,
    action: str,
    subject: str,
    detail: dict[str, Any],
    at: datetime,
) -> None:
    audit.append(
        conn,
        actor=actor.name,
        action=action,
        subject=subject,
        detail=detail,
        address=actor.address,
        at=at,
    )


def _alert_for(conn: sa.Connection, alert_id: int, audiences: frozenset[str]) -> Any:
    row = conn.execute(
        sa.select(alerts.c.id, alerts.c.state, alerts.c.audience, alerts.c.incident_id)
        .where(alerts.c.id == alert_id)
        .with_for_update()
    ).first()
    if row is None or row.audience not in audiences:
        raise IncidentError({"": f"There is no alert {alert_id} you may open."})
    if row.incident_id is not None:
        raise IncidentError({"": f"Alert {alert_id} already has incident {row.incident_id}."})
    return row


def open_incident(
    store: Store,
    actor: Actor,
    draft: Draft,
    now: datetime,
    *,
    alert_id: int | None = None,
    audiences: frozenset[str] = frozenset(),
) -> int:
    """Record `draft` as a new open incident; returns its id. From an alert (which `actor`
    must see: its audience is in `audiences`), the alert is linked, and closed if open."""
    problems = problems_of(draft, now)
    if problems:
        raise IncidentError(problems)
    assert draft.occurred_at is not None
    with store.begin() as conn:
        alert = _alert_for(conn, alert_id, audiences) if alert_id is not None else None
        result = conn.execute(
            incidents.insert().values(
                occurred_at=draft.occurred_at,
                location=draft.location.strip()[:MAX_TEXT],
                description=draft.description.strip()[:MAX_TEXT],
                action_taken=draft.action_taken.strip()[:MAX_TEXT],
                category=(draft.category or None),
                people=list(draft.people),
                about_staff=draft.about_staff or _about_staff(alert),
                alert_id=alert_id,
                recorded_by=actor.name,
                recorded_at=now,
                state=OPEN,
            )
        )
        assert result.inserted_primary_key is not None
        incident_id = int(result.inserted_primary_key[0])
        detail: dict[str, Any] = {"alert": alert_id, "people": len(draft.people)}
        if draft.about_staff or _about_staff(alert):
            detail["about_staff"] = True
        _audit(conn, actor, OPENED, audit_subject(incident_id), detail, now)
        if alert is not None:
            _link_alert(conn, actor, alert, incident_id, now)
    return incident_id


def _about_staff(alert: Any) -> bool:
    return alert is not None and alert.audience == STAFF_AUDIENCE


def _link_alert(
    conn: sa.Connection, actor: Actor, alert: Any, incident_id: int, now: datetime
) -> None:
    """Close the alert with the outcome "incident opened" (alert_cases, in this transaction)
    if it was still open, and link it to the incident either way."""
    if alert.state in (alert_rows.NEW, alert_rows.ACKNOWLEDGED):
        note = f"Incident {incident_id} opened from this alert."
        try:
            alert_cases.close_in(
                conn,
                actor,
                alert.id,
                expected=alert.state,
                outcome="incident_opened",
                notes=note,
                now=now,
            )
        except alert_cases.AlertCaseError as exc:
            raise IncidentError({"": str(exc)}) from exc
    conn.execute(alerts.update().where(alerts.c.id == alert.id).values(incident_id=incident_id))
    subject = alert_cases.audit_subject(alert.id)
    _audit(conn, actor, LINKED, subject, {"incident": incident_id}, now)


def add_action(
    store: Store,
    actor: Actor,
    incident_id: int,
    text: str,
    owner: str,
    due: date | None,
    now: datetime,
) -> int:
    """A follow-up action on an open incident; returns its id."""
    if not text.strip():
        raise IncidentError({"text": "Say what needs doing."})
    with store.begin() as conn:
        _require_open(conn, incident_id)
        result = conn.execute(
            incident_actions.insert().values(
                incident_id=incident_id,
                text=text.strip()[:MAX_TEXT],
                owner=owner.strip()[:MAX_LINE] or None,
                due=due,
                recorded_by=actor.name,
                recorded_at=now,
            )
        )
        assert result.inserted_primary_key is not None
        action_id = int(result.inserted_primary_key[0])
        detail = {"action": action_id, "due": due.isoformat() if due else None}
        _audit(conn, actor, ACTION_ADDED, audit_subject(incident_id), detail, now)
    return action_id


def mark_done(store: Store, actor: Actor, incident_id: int, action_id: int, now: datetime) -> None:
    """Mark a follow-up action done, by `actor`, now."""
    t = incident_actions.c
    with store.begin() as conn:
        done = conn.execute(
            incident_actions.update()
            .where(t.id == action_id, t.incident_id == incident_id, t.done_at.is_(None))
            .values(done_by=actor.name, done_at=now)
        ).rowcount
        if not done:
            raise IncidentError({"": "That action is not open on this incident."})
        detail = {"action": action_id}
        _audit(conn, actor, ACTION_DONE, audit_subject(incident_id), detail, now)


def close(store: Store, actor: Actor, incident_id: int, now: datetime) -> None:
    """Close an open incident (its open actions stay listed as not done)."""
    with store.begin() as conn:
        _require_open(conn, incident_id)
        conn.execute(
            incidents.update()
            .where(incidents.c.id == incident_id)
            .values(state=CLOSED, closed_by=actor.name, closed_at=now)
        )
        _audit(conn, actor, CLOSED_ACTION, audit_subject(incident_id), {}, now)


def _require_open(conn: sa.Connection, incident_id: int) -> None:
    state = conn.execute(
        sa.select(incidents.c.state).where(incidents.c.id == incident_id).with_for_update()
    ).scalar_one_or_none()
    if state is None:
        raise IncidentError({"": f"There is no incident {incident_id}."})
    if state != OPEN:
        raise IncidentError({"": f"Incident {incident_id} is closed."})


__all__ = [
    "ACTION_ADDED",
    "ACTION_DONE",
    "CLOSED_ACTION",
    "LINKED",
    "OPENED",
    "Draft",
    "IncidentError",
    "add_action",
    "audit_subject",
    "close",
    "mark_done",
    "open_incident",
    "problems_of",
]
