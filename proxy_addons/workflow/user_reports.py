"""Reports from users, from being sent to being closed: each reaches a person and an outcome.

A pupil or member of staff reports from the gateway's portal (gateway/addons/portal.py): a
block they think is a mistake, or a page that got through and should not have. What they
chose decides who is told (`REASONS`): something upsetting or harmful goes to the people
who keep pupils safe (safeguarding); a wrong block, or a page that should be blocked but
upset nobody, goes to the IT provider (technical). Every report raises an alert of kind
`user_report` (`report_event`), whose id the report keeps, so it is in the console and
in the right inbox.

In the console (web/report_pages.py) the report is acknowledged, then closed with an
outcome and notes; each step is in the audit trail, who and from where, and the report's
alert takes the same step, so nobody is chased (escalation) for an alert whose report is
already being dealt with.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from proxy_addons.alerts.alert_rows import ACKNOWLEDGED, CLOSED, NEW
from proxy_addons.alerts.events import Audience, Event, local_time
from proxy_addons.core.policy.model import Policy
from proxy_addons.store import Store
from proxy_addons.store.schema import alerts, audit_log, reports
from proxy_addons.workflow import alert_cases, audit
from proxy_addons.workflow.unblocks import Actor

USER_REPORT = "user_report"  # the alert's kind
SAFEGUARDING, TECHNICAL = Audience.SAFEGUARDING.value, Audience.TECHNICAL.value
STATES = (NEW, ACKNOWLEDGED, CLOSED)
OPEN_STATES = (NEW, ACKNOWLEDGED)
MAX_NOTES = 4000
# Per reporter (user, else address): more than this in an hour is refused, kindly.
HOURLY_LIMIT = 20


@dataclass(frozen=True)
class Reason:
    """What the reporter said, in the words the console shows, and who it goes to."""

    audience: str
    severity: int
    label: str


REASONS = {
    "mistake": Reason(TECHNICAL, 2, "Blocked, but needed for school work"),
    "upsetting": Reason(SAFEGUARDING, 4, "Got through, and it upset or could hurt someone"),
    "should_block": Reason(TECHNICAL, 3, "Got through, and should be blocked (not upsetting)"),
}
OUTCOMES = {
    "page_unblocked": "The page was unblocked",
    "block_kept": "The block is right and stays",
    "page_blocked": "The page is blocked now",
    "spoke_to_pupil": "Spoke to the pupil",
    "referred": "Referred",
    "incident_opened": "Incident opened",
    "no_action": "No action needed",
}
# The report's outcome, as its alert records it (alerts/alert_rows.OUTCOMES).
ALERT_OUTCOMES = {
    "spoke_to_pupil": "spoke_to_pupil",
    "referred": "referred",
    "incident_opened": "incident_opened",
    "block_kept": "false_positive",
}
STATE_TEXT = {NEW: "New", ACKNOWLEDGED: "Being looked at", CLOSED: "Closed"}


class ReportError(ValueError):
    """A step that can't be taken: the words say why, for the page."""


@dataclass(frozen=True)
class NewReport:
    """One report as the portal files it; who sent it is the gateway's knowledge, never
    a form field."""

    kind: str  # "report" (a block is a mistake) | "page_report" (something got through)
    reason: str  # a key of REASONS
    reference: str  # the block's code, when it is about a block
    url: str
    text: str
    username: str | None
    ip: str | None
    device_id: str | None
    profile: str

    @property
    def audience(self) -> str:
        return REASONS[self.reason].audience


def file(store: Store, report: NewReport, now: datetime) -> int:
    """Keep `report` (state new); returns its id."""
    with store.begin() as conn:
        result = conn.execute(
            reports.insert().values(
                kind=report.kind,
                at=now,
                reference=report.reference,
                url=report.url,
                text=report.text,
                username=report.username,
                ip=report.ip,
                device_id=report.device_id,
                profile=report.profile,
                audience=report.audience,
                reason=report.reason,
                state=NEW,
            )
        )
    assert result.inserted_primary_key is not None
    return int(result.inserted_primary_key[0])


def sent_since(store: Store, username: str | None, ip: str | None, since: datetime) -> int:
    """How many reports this reporter (the user, else the address) sent since `since`."""
    t = reports.c
    who = t.username == username if username else sa.and_(t.username.is_(None), t.ip == ip)
    with store.connect() as conn:
        query = sa.select(sa.func.count()).select_from(reports).where(who, t.at >= since)
        return int(conn.execute(query).scalar_one())


def link_alert(store: Store, report_id: int, alert_id: int) -> None:
    with store.begin() as conn:
        conn.execute(reports.update().where(reports.c.id == report_id).values(alert_id=alert_id))


def page_for(url: str, audience: str) -> str:
    """The reported address as `audience` may read it: whole for the safeguarding team; for
    the IT provider without its query or fragment, which may hold what the pupil searched
    for (the block's reference finds the whole record in the access log)."""
    if audience == SAFEGUARDING:
        return url
    return url.split("#", 1)[0].split("?", 1)[0]


def report_event(
    report_id: int,
    report: NewReport,
    policy: Policy,
    pseudonym: Callable[[str, str], str] | None,
    at: datetime,
) -> Event:
    """The alert a report raises, cut down for its audience: the safeguarding team sees who
    sent it; the IT provider sees the profile and pseudonyms (alerts/events.py)."""
    reason = REASONS[report.reason]
    fields: dict[str, str] = {}
    if reason.audience == SAFEGUARDING:
        # "reporter", not "user": the alert is about the page, not about the person who
        # reported it, so routing by subject (a concern about staff) must not take it.
        # Nor "device"/"device_id": the alert's subject columns (alerts/alert_rows.py) and
        # its timeline would be the reporter's own browsing.
        fields["reporter"] = report.username or "not signed in"
        if report.ip:
            fields["reporter_device"] = report.ip
        if report.device_id:
            fields["reporter_device_id"] = report.device_id
    elif pseudonym is not None:
        if report.username:
            fields["user_ref"] = pseudonym("u", report.username.lower())
        if report.ip:
            fields["device_ref"] = pseudonym("d", report.ip)
    fields["profile"] = report.profile
    fields["page"] = page_for(report.url, reason.audience) or "(not given)"
    fields["report"] = reason.label
    if report.text:
        fields["message"] = report.text
    if report.reference:
        fields["reference"] = report.reference
    fields["time"] = local_time(policy.timezone, at)
    what = "a page that got through" if report.kind == "page_report" else "a block"
    return Event(
        kind=USER_REPORT,
        severity=reason.severity,
        audience=Audience(reason.audience),
        summary=f"A user reported {what}: {reason.label.lower()}",
        fields=fields,
        # One reporter's reports of one kind fold while nobody has picked them up (each is
        # still its own report): twenty "it upset me" in an hour are one alert that counts
        # them, not twenty that each escalate to the headteacher.
        fold_key=f"{USER_REPORT}|{reason.audience}|{_reporter_key(fields, report_id)}",
        at=at,
        timezone=policy.timezone.key,
    )


def _reporter_key(fields: dict[str, str], report_id: int) -> str:
    """Who sent it, as the event itself may say (the IT provider's names nobody: its
    pseudonyms), for folding; with nothing to go on, the report alone."""
    for key in ("reporter", "reporter_device", "user_ref", "device_ref"):
        if fields.get(key) and fields[key] != "not signed in":
            return fields[key]
    return f"report {report_id}"


# -- the console ------------------------------------------------------------------------------


def list_reports(
    store: Store, audiences: Collection[str], state: str | None, limit: int = 200
) -> list[Any]:
    """Reports for these audiences, newest first; `state` "open" means new or being looked
    at, None every state. Reports kept before they had an audience were all "is this a
    mistake?" reports, so the IT provider's."""
    t = reports.c
    mine = [t.audience.in_(sorted(audiences))]
    if TECHNICAL in audiences:
        mine.append(t.audience.is_(None))
    query = sa.select(reports).where(sa.or_(*mine))
    if state == "open":
        query = query.where(t.state.in_(OPEN_STATES))
    elif state in STATES:
        query = query.where(t.state == state)
    with store.connect() as conn:
        return list(conn.execute(query.order_by(t.at.desc(), t.id.desc()).limit(limit)))


def audience_of(row: Any) -> str:
    return str(row.audience or TECHNICAL)


def get(store: Store, report_id: int) -> Any | None:
    with store.connect() as conn:
        return conn.execute(sa.select(reports).where(reports.c.id == report_id)).first()


def alert_fields(store: Store, alert_id: int | None) -> dict[str, str]:
    """The fields of the alert a report raised (its pseudonyms, for the IT provider)."""
    if alert_id is None:
        return {}
    with store.connect() as conn:
        event = conn.execute(sa.select(alerts.c.event).where(alerts.c.id == alert_id)).scalar()
    return dict((event or {}).get("fields") or {})


def history(store: Store, report_id: int) -> list[Any]:
    """Each step taken on a report, from the audit trail, oldest first."""
    t = audit_log.c
    query = sa.select(t.at, t.actor, t.action, t.detail, t.address).where(
        t.subject == f"report:{report_id}"
    )
    with store.connect() as conn:
        return list(conn.execute(query.order_by(t.seq)))


def acknowledge(store: Store, report_id: int, actor: Actor, now: datetime) -> None:
    """Someone has picked the report up: the reporter's concern is being looked at."""
    with store.begin() as conn:
        row = _open_row(conn, report_id)
        if row.state != NEW:
            raise ReportError("This report is already being looked at.")
        conn.execute(
            reports.update()
            .where(reports.c.id == report_id)
            .values(state=ACKNOWLEDGED, handled_by=actor.name, handled_at=now)
        )
        _alert_step(conn, row.alert_id, actor, now, closed=False)
        audit.append(
            conn,
            actor=actor.name,
            action="report.acknowledged",
            subject=f"report:{report_id}",
            detail={"alert": row.alert_id},
            address=actor.address,
            at=now,
        )


def close(
    store: Store, report_id: int, actor: Actor, outcome: str, notes: str, now: datetime
) -> None:
    """Closed with what was done: an outcome from OUTCOMES, and notes (needed unless the
    outcome says it all)."""
    if outcome not in OUTCOMES:
        raise ReportError("Choose what was done about it.")
    notes = notes.strip()[:MAX_NOTES]
    if not notes and outcome in ("referred", "spoke_to_pupil", "incident_opened"):
        raise ReportError("Say in the notes what was done, so the record is complete.")
    with store.begin() as conn:
        row = _open_row(conn, report_id)
        conn.execute(
            reports.update()
            .where(reports.c.id == report_id)
            .values(
                state=CLOSED,
                outcome=outcome,
                notes=notes or None,
                handled_by=actor.name,
                handled_at=now,
            )
        )
        _alert_step(conn, row.alert_id, actor, now, closed=True, outcome=outcome, notes=notes)
        audit.append(
            conn,
            actor=actor.name,
            action="report.closed",
            subject=f"report:{report_id}",
            # Notes say things about a pupil: they stay on the report (and its alert) and go
            # with them at retention; the trail, never purged, keeps the outcome only.
            detail={"outcome": outcome, "alert": row.alert_id},
            address=actor.address,
            at=now,
        )


def _open_row(conn: sa.Connection, report_id: int) -> Any:
    row = conn.execute(
        sa.select(reports).where(reports.c.id == report_id).with_for_update()
    ).first()
    if row is None:
        raise ReportError("There is no such report.")
    if row.state == CLOSED:
        raise ReportError("This report is closed already.")
    return row


def _alert_step(
    conn: sa.Connection,
    alert_id: int | None,
    actor: Actor,
    now: datetime,
    *,
    closed: bool,
    outcome: str = "",
    notes: str = "",
) -> None:
    """The report's alert takes the same step through alert_cases (audited on the alert),
    unless someone has taken it further already."""
    if alert_id is None:
        return
    state = conn.execute(sa.select(alerts.c.state).where(alerts.c.id == alert_id)).scalar()
    try:
        if state == NEW:
            alert_cases.acknowledge_in(conn, actor, alert_id, now)
            state = ACKNOWLEDGED
        if closed and state == ACKNOWLEDGED:
            said = f"Report closed: {OUTCOMES[outcome]}. {notes}".strip()
            alert_cases.close_in(
                conn,
                actor,
                alert_id,
                expected=ACKNOWLEDGED,
                outcome=ALERT_OUTCOMES.get(outcome, "no_concern"),
                notes=said[: alert_cases.MAX_NOTES],
                now=now,
            )
    except alert_cases.AlertMoved:
        pass  # someone acted on the alert meanwhile: their step stands


def when_text(tz: ZoneInfo, at: datetime | None) -> str:
    return local_time(tz, at) if at else ""


__all__ = [
    "HOURLY_LIMIT",
    "OUTCOMES",
    "REASONS",
    "STATES",
    "STATE_TEXT",
    "USER_REPORT",
    "NewReport",
    "ReportError",
    "acknowledge",
    "alert_fields",
    "audience_of",
    "close",
    "file",
    "get",
    "history",
    "link_alert",
    "list_reports",
    "page_for",
    "report_event",
    "sent_since",
]
