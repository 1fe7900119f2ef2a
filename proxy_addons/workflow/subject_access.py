"""The subject-access export (UK GDPR right of access): everything the gateway holds about
one person, as one JSON document, or a ZIP of that document and a CSV per part.

A person is found by their user name, and, when the school asks, by the ids of the devices
they use and the IP addresses only they had (an address is shared over a day: give it only
for a device that was theirs alone). The export reads each table that can name a person
(the access log, alerts, incidents, reports, unblocks, devices, devices seen on the
network, check runs, web accounts, the audit trail) and takes only the rows that name
them. Secrets (password and token hashes) never leave.

Every export is itself audited before it is handed over: who exported whose records, when,
from where, why (a reason is required) and how many rows of each part.

A concern about a member of staff (an alert of audience "staff" and an incident opened from
one) is the headteacher's alone: the console leaves it out unless the exporter holds the
headteacher's power (`staff_concerns`), so a deputy exporting a colleague's records, or
their own, is not told of a concern about them; the document says so.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from proxy_addons.alerts.routing import STAFF
from proxy_addons.record.access_export import csv_text
from proxy_addons.store import Store
from proxy_addons.store.schema import (
    access_log,
    accounts,
    alerts,
    audit_log,
    check_actions,
    check_runs,
    devices,
    incident_actions,
    incidents,
    reports,
    seen_devices,
    unblocks,
)
from proxy_addons.workflow import audit

ACTION = "people.exported"
STAFF_AUDIENCE = STAFF  # alerts about a member of staff: the headteacher's alone
STAFF_LEFT_OUT = (
    " Concerns about members of staff, which only the headteacher may see: the headteacher "
    "adds them to the export."
)
# Columns that are secrets or machinery, not information about the person.
LEFT_OUT = frozenset({"password_hash", "token_hash", "fold_key", "prev_hash", "hash"})
PARTS = (
    "account",
    "access_log",
    "alerts",
    "incidents",
    "incident_actions",
    "reports",
    "unblocks",
    "devices",
    "seen_devices",
    "check_runs",
    "check_actions",
    "audit",
)


@dataclass(frozen=True)
class Subject:
    """Whose records: a user name, and the devices and addresses that were theirs."""

    username: str
    device_ids: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()

    @property
    def user(self) -> str:
        return self.username.strip().lower()

    def describe(self) -> dict[str, Any]:
        return {"username": self.user, "device_ids": list(self.device_ids), "ips": list(self.ips)}


class ExportRefused(ValueError):
    """The export was not made (no user name or no reason); nothing was read or audited."""


def _value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _rows(conn: sa.Connection, stmt: sa.Select[Any]) -> list[dict[str, Any]]:
    return [
        {k: _value(v) for k, v in row._mapping.items() if k not in LEFT_OUT}
        for row in conn.execute(stmt)
    ]


def _named(column: sa.Column[Any], user: str) -> sa.ColumnElement[bool]:
    return sa.func.lower(column) == user


def _either(*conditions: sa.ColumnElement[bool] | None) -> sa.ColumnElement[bool]:
    given = [c for c in conditions if c is not None]
    return sa.or_(*given) if given else sa.false()


def _in(column: sa.Column[Any], values: Sequence[str]) -> sa.ColumnElement[bool] | None:
    return column.in_(values) if values else None


def _names(people: Any) -> set[str]:
    return {str(p).strip().lower() for p in people} if isinstance(people, list) else set()


def gather(
    store: Store, who: Subject, *, staff_concerns: bool = True
) -> dict[str, list[dict[str, Any]]]:
    """Every row naming `who`, by part (see PARTS); nobody else's; concerns about staff only
    with `staff_concerns`."""
    u, ids, ips = who.user, list(who.device_ids), list(who.ips)
    found: dict[str, list[dict[str, Any]]] = {}
    with store.connect() as conn:
        a = alerts.c
        hidden: set[int] = set()
        if not staff_concerns:
            query = sa.select(a.id).where(a.audience == STAFF_AUDIENCE)
            hidden = set(conn.execute(query).scalars())
        found["account"] = _rows(conn, sa.select(accounts).where(_named(accounts.c.username, u)))
        c = access_log.c
        where = _either(c.username == u, _in(c.device_id, ids), _in(c.ip, ips))
        found["access_log"] = _rows(conn, sa.select(access_log).where(where).order_by(c.at, c.id))
        where = _either(_named(a.username, u), _in(a.device_id, ids), _in(a.ip, ips))
        found["alerts"] = [
            row
            for row in _rows(conn, sa.select(alerts).where(where).order_by(a.raised_at))
            if row["id"] not in hidden
        ]
        alert_ids = {row["id"] for row in found["alerts"]}
        # Incidents name people in a JSON list: read them all (a school records a few a
        # term) and keep those naming the person or resting on an alert about them.
        found["incidents"] = [
            row
            for row in _rows(conn, sa.select(incidents).order_by(incidents.c.occurred_at))
            if (u in _names(row["people"]) or row["alert_id"] in alert_ids)
            and row["alert_id"] not in hidden
            and (staff_concerns or not row["about_staff"])
        ]
        incident_ids = [row["id"] for row in found["incidents"]]
        ia = incident_actions.c
        found["incident_actions"] = _rows(
            conn, sa.select(incident_actions).where(ia.incident_id.in_(incident_ids))
        )
        r = reports.c
        where = _either(_named(r.username, u), _in(r.device_id, ids), _in(r.ip, ips))
        found["reports"] = _rows(conn, sa.select(reports).where(where).order_by(r.at))
        found["unblocks"] = [
            row
            for row in _rows(conn, sa.select(unblocks).order_by(unblocks.c.requested_at))
            if _unblock_names(row, u, ips)
        ]
        d = devices.c
        where = _either(_named(d.last_user, u), _in(d.device_id, ids))
        found["devices"] = _rows(conn, sa.select(devices).where(where))
        macs = sorted({m for row in found["devices"] for m in row["last_macs"] or []})
        s = seen_devices.c
        found["seen_devices"] = _rows(
            conn, sa.select(seen_devices).where(_either(_in(s.mac, macs), _in(s.ip, ips)))
        )
        found["check_runs"] = _rows(
            conn, sa.select(check_runs).where(_named(check_runs.c.started_by, u))
        )
        found["check_actions"] = _rows(
            conn, sa.select(check_actions).where(_named(check_actions.c.author, u))
        )
        # Audit subjects name a person as "user:<name>" or "device:<id or IP>" (looks at
        # their history, exports of their records), older ones by the bare name.
        looked = {f"user:{u}", *(f"device:{d}" for d in (*ids, *ips))}
        about = sorted({u, *ids, *looked, *(row["id"] for row in found["unblocks"])})
        t = audit_log.c
        where = _either(sa.func.lower(t.actor) == u, t.subject.in_(about))
        found["audit"] = _rows(conn, sa.select(audit_log).where(where).order_by(t.seq))
    return found


def _unblock_names(row: dict[str, Any], user: str, ips: Sequence[str]) -> bool:
    """Did this person ask for it, decide it, or was it for them (or their device's IP)?"""
    staff = (row["requested_by"], row["decided_by"], row["it_confirmed_by"], row["ended_by"])
    if user in {str(name).lower() for name in staff if name}:
        return True
    audience = _names(row["audience"])
    if row["audience_kind"] in ("user", "users"):
        return user in audience
    return row["audience_kind"] == "device" and bool(audience & set(ips))


def export(
    store: Store,
    who: Subject,
    *,
    by: str,
    reason: str,
    now: datetime,
    address: str | None = None,
    staff_concerns: bool = True,
) -> dict[str, Any]:
    """The document for `who`, after the audit trail records that `by` made it and why;
    concerns about staff only with `staff_concerns` (the headteacher's)."""
    if not who.user:
        raise ExportRefused("whose records? a user name is needed")
    if not reason.strip():
        raise ExportRefused("a reason is needed (e.g. the subject access request's reference)")
    parts = gather(store, who, staff_concerns=staff_concerns)
    counts = {name: len(rows) for name, rows in parts.items()}
    with store.begin() as conn:
        record = audit.append(
            conn,
            actor=by,
            action=ACTION,
            subject=f"user:{who.user}"[:200],  # as a look at their history is filed
            detail={"reason": reason.strip(), **who.describe(), "rows": counts},
            address=address,
            at=now,
        )
    return {
        "subject": who.describe(),
        "exported_at": now.isoformat(),
        "exported_by": by,
        "reason": reason.strip(),
        "audit_seq": record.seq,
        "rows": counts,
        "parts": parts,
        "not_included": (
            "Records past the school's retention periods, which the gateway has deleted; "
            "the access log's JSON files under the state folder (the same records as the "
            "access_log part, kept for the same time)." + ("" if staff_concerns else STAFF_LEFT_OUT)
        ),
    }


def recent_exports(store: Store, limit: int = 20) -> list[dict[str, Any]]:
    """The newest exports (from the audit trail), for the console: who, whose, when, why."""
    t = audit_log.c
    stmt = sa.select(t.at, t.actor, t.subject, t.detail).where(t.action == ACTION)
    with store.connect() as conn:
        rows = conn.execute(stmt.order_by(t.seq.desc()).limit(limit)).all()
    return [
        {
            "at": row.at,
            "by": row.actor,
            "whose": row.subject.removeprefix("user:"),
            "reason": row.detail.get("reason"),
        }
        for row in rows
    ]


def to_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def _cell(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else value


def _table(rows: Iterable[dict[str, Any]]) -> str:
    rows = list(rows)
    header = list(rows[0]) if rows else []
    return csv_text(header, ([_cell(row[k]) for k in header] for row in rows))


def to_zip(document: dict[str, Any]) -> bytes:
    """export.json and one CSV per part (for a spreadsheet), in one ZIP file."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("export.json", to_json(document))
        for name, rows in document["parts"].items():
            archive.writestr(f"{name}.csv", _table(rows))
    return out.getvalue()


def file_name(who: Subject, now: datetime, suffix: str) -> str:
    """e.g. subject-access-pupil.a-2026-12-07.json: only safe characters."""
    safe = "".join(ch if ch.isalnum() or ch in ".-_" else "_" for ch in who.user)[:60]
    return f"subject-access-{safe}-{now.date().isoformat()}.{suffix}"


__all__ = [
    "ACTION",
    "PARTS",
    "ExportRefused",
    "Subject",
    "export",
    "file_name",
    "gather",
    "recent_exports",
    "to_json",
    "to_zip",
]
