"""The incident log for the school's safeguarding record system (MyConcern, CPOMS and the
like import CSV) and for its own files (JSON), and the audit record of each export.

The CSV has one row per incident, times in school time as a spreadsheet reads them, with the
follow-up actions in one cell; the JSON keeps everything, times in ISO 8601 UTC, actions as
a list. docs/console.md lists the columns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from proxy_addons.core.policy.model import Policy
from proxy_addons.record.access_export import csv_text
from proxy_addons.store import Store
from proxy_addons.workflow import audit
from proxy_addons.workflow.incident_log import Action, Incident, kind_label
from proxy_addons.workflow.unblocks import Actor

EXPORTED = "incident.export"
CSV_COLUMNS = (
    "incident_id",
    "occurred",
    "location",
    "category",
    "category_label",
    "people",
    "description",
    "action_taken",
    "recorded_by",
    "recorded",
    "status",
    "closed_by",
    "closed",
    "alert_id",
    "follow_up_actions",
    "follow_up_open",
)


def _local(policy: Policy, at: datetime | None) -> str:
    return f"{at.astimezone(policy.timezone):%Y-%m-%d %H:%M}" if at else ""


def _utc(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat(timespec="seconds") if at else None


def action_text(policy: Policy, a: Action) -> str:
    """One follow-up action in a sentence: what; whose; by when; done or not."""
    parts = [a.text]
    if a.owner:
        parts.append(f"owner {a.owner}")
    if a.due:
        parts.append(f"due {a.due.isoformat()}")
    parts.append(f"done by {a.done_by} {_local(policy, a.done_at)}" if a.done_at else "not done")
    return "; ".join(parts)


def to_csv(policy: Policy, found: Sequence[Incident]) -> str:
    return csv_text(
        CSV_COLUMNS,
        (
            [
                i.id,
                _local(policy, i.occurred_at),
                i.location,
                i.category or "",
                kind_label(policy, i.category),
                "; ".join(i.people),
                i.description,
                i.action_taken,
                i.recorded_by,
                _local(policy, i.recorded_at),
                i.state,
                i.closed_by or "",
                _local(policy, i.closed_at),
                i.alert_id or "",
                " | ".join(action_text(policy, a) for a in i.actions),
                i.open_actions,
            ]
            for i in found
        ),
    )


def as_json_ready(policy: Policy, i: Incident) -> dict[str, Any]:
    return {
        "id": i.id,
        "occurred_at": _utc(i.occurred_at),
        "location": i.location,
        "category": i.category,
        "category_label": kind_label(policy, i.category) or None,
        "people": list(i.people),
        "description": i.description,
        "action_taken": i.action_taken,
        "recorded_by": i.recorded_by,
        "recorded_at": _utc(i.recorded_at),
        "state": i.state,
        "closed_by": i.closed_by,
        "closed_at": _utc(i.closed_at),
        "alert_id": i.alert_id,
        "report_id": i.report_id,
        "actions": [
            {
                "text": a.text,
                "owner": a.owner,
                "due": a.due.isoformat() if a.due else None,
                "recorded_by": a.recorded_by,
                "recorded_at": _utc(a.recorded_at),
                "done_by": a.done_by,
                "done_at": _utc(a.done_at),
            }
            for a in i.actions
        ],
    }


def to_json(policy: Policy, found: Sequence[Incident], exported_at: datetime) -> str:
    body = {
        "school": policy.school,
        "timezone": str(policy.timezone),
        "exported_at": _utc(exported_at),
        "incidents": [as_json_ready(policy, i) for i in found],
    }
    return json.dumps(body, ensure_ascii=False, indent=1) + "\n"


def record_export(
    store: Store,
    actor: Actor,
    fmt: str,
    found: Sequence[Incident],
    scope: dict[str, Any],
    now: datetime,
) -> None:
    """Audit an export: who took which incidents out, in what form, from where."""
    detail = {"format": fmt, "count": len(found), "ids": [i.id for i in found][:200], **scope}
    with store.begin() as conn:
        audit.append(
            conn,
            actor=actor.name,
            action=EXPORTED,
            subject="incidents",
            detail=detail,
            address=actor.address,
            at=now,
        )


__all__ = ["CSV_COLUMNS", "EXPORTED", "action_text", "record_export", "to_csv", "to_json"]
