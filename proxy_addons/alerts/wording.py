"""What people read: the one message an alert (folded or not) is sent as, the same words on
every channel."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from proxy_addons.alerts.events import ILLEGAL_TIER, LABELS, Audience, Event, local_time
from proxy_addons.alerts.notify.base import Notification


def notification_for(
    event: Event,
    *,
    occurrences: int = 1,
    first_at: datetime | None = None,
    last_at: datetime | None = None,
    recipients: Sequence[str] = (),
) -> Notification:
    """The message for one (possibly folded) alert; the same words on every channel."""
    tz = ZoneInfo(event.timezone)
    first_at, last_at = first_at or event.at, last_at or event.at
    who = "Safeguarding" if event.audience is Audience.SAFEGUARDING else "Technical"
    subject = f"Schoolgate {who.lower()} alert: {event.summary}"
    if occurrences > 1:
        subject += f" (x{occurrences})"
    facts = [(LABELS.get(k, k), v) for k, v in event.fields.items() if v]
    if occurrences > 1:
        span = f"{local_time(tz, first_at)} to {local_time(tz, last_at)}"
        facts.append(("Occurrences", f"{occurrences}, {span}"))
    lines = [event.summary, ""] + [f"{label}: {_indented(value)}" for label, value in facts]
    if event.kind == ILLEGAL_TIER:
        lines += [
            "",
            "The address is deliberately left out. Do not try to visit it; look the "
            "reference up in the access log and follow the school's procedure "
            "(IWF/CTIRU reporting where it applies).",
        ]
    elif occurrences > 1:
        lines += ["", "Each occurrence is in the access log."]
    data: dict[str, Any] = {
        "alert": event.kind,
        "severity": event.severity,
        "audience": event.audience.value,
        "occurrences": occurrences,
        "first_at": first_at.astimezone(UTC).isoformat(timespec="seconds"),
        "last_at": last_at.astimezone(UTC).isoformat(timespec="seconds"),
        "fields": dict(event.fields),
        "facts": [list(f) for f in facts],
    }
    return Notification(
        kind=f"alert.{event.kind}",
        subject=subject,
        text="\n".join(lines) + "\n",
        recipients=tuple(recipients),
        data=data,
    )


def _indented(value: str) -> str:
    """A value's further lines indented under its label: a pupil's report or search with a
    line "User: ..." in it must not read as a line of the alert's own."""
    return "\n    ".join(str(value).splitlines())


def note_to_json(note: Notification) -> dict[str, Any]:
    """A ready-made message as the outbox stores it (recipients are the row's own)."""
    return {
        "kind": note.kind,
        "subject": note.subject,
        "text": note.text,
        "link": note.link,
        "data": note.data,
    }


def note_from_json(stored: Mapping[str, Any], recipients: tuple[str, ...]) -> Notification:
    """A stored ready-made message, as it was written."""
    return Notification(
        kind=stored["kind"],
        subject=stored["subject"],
        text=stored["text"],
        recipients=recipients,
        link=stored.get("link"),
        data=dict(stored.get("data") or {}),
    )
