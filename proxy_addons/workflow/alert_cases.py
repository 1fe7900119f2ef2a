"""What the DSL does with an alert: acknowledge it, close it with an outcome, reopen it; and
the alert's history, read back from the audit trail.

Each step is one conditional UPDATE (`WHERE state = <what the person saw>`), so when two
people act on one alert at once, one wins and the other is told who got there first,
instead of one silently overwriting the other. Each step is audited (who, when, from which
address) in the same transaction. The audit trail keeps the outcome, never the notes: the
notes say things about a pupil, and belong on the alert's row, which the school's
retention purges; the hash-chained trail is kept whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from proxy_addons.alerts.alert_rows import ACKNOWLEDGED, CLOSED, NEW, OUTCOMES
from proxy_addons.store import Store
from proxy_addons.store.schema import alerts, audit_log
from proxy_addons.workflow import audit, history_views
from proxy_addons.workflow.unblocks import Actor

# Outcomes that need notes: someone reading the record later must know where it went.
NOTES_NEEDED = frozenset({"referred", "incident_opened"})
MAX_NOTES = 4000
MAX_REASON = 500
# Audit actions on an alert (subject "alert:<id>"); escalation is written by the escalation
# sweep (workflow/alert_escalation.py, the same subject), the link to an incident by
# workflow/incidents.py; the look at a person's timeline by the alert page ("person.viewed",
# as people's history names it: subject "user:<name>" or "device:<id or address>").
ACKNOWLEDGE, CLOSE, REOPEN, ESCALATE = (
    "alert.acknowledge",
    "alert.close",
    "alert.reopen",
    "alert.escalated",
)
LOOK = history_views.VIEWED


class AlertCaseError(Exception):
    """A step that can't be taken; the message is for the person who tried."""


class AlertMoved(AlertCaseError):
    """Someone else changed the alert since the person's page showed it."""


def audit_subject(alert_id: int) -> str:
    return f"alert:{alert_id}"


@dataclass(frozen=True)
class Step:
    """One line of an alert's history."""

    at: datetime
    actor: str
    action: str  # ACKNOWLEDGE, CLOSE, REOPEN, ESCALATE, or another "alert." action
    detail: dict[str, Any]
    address: str | None


def acknowledge(store: Store, actor: Actor, alert_id: int, now: datetime) -> None:
    """Say "I have this one": stops its escalation; the alert stays open until closed."""
    with store.begin() as conn:
        acknowledge_in(conn, actor, alert_id, now)


def acknowledge_in(conn: sa.Connection, actor: Actor, alert_id: int, now: datetime) -> None:
    """`acknowledge` inside the caller's write transaction (a report picked up takes its
    alert with it)."""
    _move(
        conn,
        alert_id,
        doing="acknowledge",
        expected=NEW,
        values={"state": ACKNOWLEDGED, "acknowledged_by": actor.name, "acknowledged_at": now},
    )
    _audit(conn, actor, ACKNOWLEDGE, alert_id, {"from": NEW}, now)


def close(
    store: Store,
    actor: Actor,
    alert_id: int,
    *,
    expected: str,
    outcome: str,
    notes: str,
    now: datetime,
) -> None:
    """Close the alert with what became of it; `expected` is the state the person saw."""
    with store.begin() as conn:
        close_in(conn, actor, alert_id, expected=expected, outcome=outcome, notes=notes, now=now)


def close_in(
    conn: sa.Connection,
    actor: Actor,
    alert_id: int,
    *,
    expected: str,
    outcome: str,
    notes: str,
    now: datetime,
) -> None:
    """`close` inside the caller's write transaction (an incident opened from the alert
    closes it in the same transaction that saves the incident)."""
    notes = notes.strip()
    if outcome not in OUTCOMES:
        raise AlertCaseError("Choose what the outcome was.")
    if outcome in NOTES_NEEDED and not notes:
        raise AlertCaseError(f"Say in the notes what happened: “{OUTCOMES[outcome]}” needs notes.")
    if len(notes) > MAX_NOTES:
        raise AlertCaseError(f"The notes are too long (at most {MAX_NOTES} characters).")
    if expected not in (NEW, ACKNOWLEDGED):
        raise AlertCaseError("This alert is already closed.")
    _move(
        conn,
        alert_id,
        doing="close",
        expected=expected,
        values={
            "state": CLOSED,
            "outcome": outcome,
            "notes": notes or None,
            "closed_by": actor.name,
            "closed_at": now,
        },
    )
    _audit(
        conn,
        actor,
        CLOSE,
        alert_id,
        {"from": expected, "outcome": outcome, "notes": bool(notes)},
        now,
    )


def reopen(store: Store, actor: Actor, alert_id: int, *, reason: str, now: datetime) -> None:
    """Open a closed alert again (new information, closed by mistake): it is acknowledged by
    the person reopening it. The notes stay; the reason is kept in the audit trail."""
    reason = " ".join(reason.split())
    if not reason:
        raise AlertCaseError("Say why the alert is reopened.")
    if len(reason) > MAX_REASON:
        raise AlertCaseError(f"The reason is too long (at most {MAX_REASON} characters).")
    with store.begin() as conn:
        _move(
            conn,
            alert_id,
            doing="reopen",
            expected=CLOSED,
            values={
                "state": ACKNOWLEDGED,
                "acknowledged_by": actor.name,
                "acknowledged_at": now,
                "outcome": None,
                "closed_by": None,
                "closed_at": None,
            },
        )
        _audit(conn, actor, REOPEN, alert_id, {"from": CLOSED, "reason": reason}, now)


def _audit(
    conn: sa.Connection,
    actor: Actor,
    action: str,
    alert_id: int,
    detail: dict[str, Any],
    now: datetime,
) -> None:
    audit.append(
        conn,
        actor=actor.name,
        action=action,
        subject=audit_subject(alert_id),
        detail=detail,
        address=actor.address,
        at=now,
    )


def record_look(
    store: Store,
    actor: Actor,
    alert_id: int,
    *,
    whom: str,
    start: datetime,
    end: datetime,
    now: datetime,
) -> None:
    """Audit a look at a person's timeline from an alert's page: who looked at whom, when,
    from where, and why (the alert)."""
    with store.begin() as conn:
        audit.append(
            conn,
            actor=actor.name,
            action=LOOK,
            subject=whom[:200],
            detail={
                "reason": f"alert {alert_id}",
                "alert": alert_id,
                "what": "timeline",
                "from": start.isoformat(),
                "to": end.isoformat(),
            },
            address=actor.address,
            at=now,
        )


def _move(
    conn: sa.Connection, alert_id: int, *, doing: str, expected: str, values: dict[str, Any]
) -> None:
    t = alerts.c
    done = conn.execute(
        alerts.update().where(t.id == alert_id, t.state == expected).values(**values)
    ).rowcount
    if done == 1:
        return
    row = conn.execute(sa.select(alerts).where(t.id == alert_id)).first()
    if row is None:
        raise AlertCaseError("There is no such alert.")
    raise AlertMoved(_moved_text(row, doing=doing))


def _moved_text(row: Any, *, doing: str) -> str:
    """Why the step did not happen: what someone else did first."""
    if row.state == CLOSED:
        first = f"{row.closed_by or 'Someone'} closed this alert first"
        outcome = OUTCOMES.get(row.outcome or "", "no outcome")
        tail = ": it can't be acknowledged." if doing == "acknowledge" else "."
        return f"{first} ({outcome}){tail}"
    if row.state == ACKNOWLEDGED:
        who = row.acknowledged_by or "Someone"
        if doing == "acknowledge":
            return f"{who} acknowledged this alert first."
        if doing == "reopen":
            return f"This alert is open again already: {who} has it."
        return f"{who} acknowledged this alert while you had it open: read it again first."
    return "This alert changed while you had it open: read it again first."


def history(store: Store, alert_id: int) -> list[Step]:
    """Every audited step on the alert, oldest first."""
    t = audit_log.c
    query = (
        sa.select(t.at, t.actor, t.action, t.detail, t.address)
        .where(
            t.subject == audit_subject(alert_id),
            t.action.like("alert.%"),
        )
        .order_by(t.seq)
    )
    with store.connect() as conn:
        rows = conn.execute(query).all()
    return [Step(r.at, r.actor, r.action, dict(r.detail or {}), r.address) for r in rows]


__all__ = [
    "ACKNOWLEDGE",
    "CLOSE",
    "ESCALATE",
    "MAX_NOTES",
    "NOTES_NEEDED",
    "LOOK",
    "REOPEN",
    "AlertCaseError",
    "AlertMoved",
    "Step",
    "acknowledge",
    "acknowledge_in",
    "audit_subject",
    "close",
    "close_in",
    "history",
    "record_look",
    "reopen",
]
