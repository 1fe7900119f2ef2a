"""How the alert pages word an alert: its list row, what its event says, its history in
plain sentences, and the list's filters read from the address (dates in school time)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from proxy_addons.alerts.alert_rows import ACKNOWLEDGED, CLOSED, NEW, OUTCOMES
from proxy_addons.alerts.events import LABELS
from proxy_addons.core.policy.model import Policy
from proxy_addons.web.wording import when_text
from proxy_addons.workflow.alert_cases import ACKNOWLEDGE, CLOSE, ESCALATE, REOPEN, Step
from proxy_addons.workflow.alert_queries import (
    AUDIENCE_TEXT,
    PERSONAL,
    SEVERITY_TEXT,
    STATE_CHOICES,
    STATE_TEXT,
    Filters,
    kind_text,
)

ESCALATION_TEXT = {1: "the deputies", 2: "the headteacher"}
LINKED = "alert.incident_linked"  # workflow/incidents.py: an incident opened from the alert


@dataclass(frozen=True)
class FilterForm:
    """The filters as asked (to show them again in the form) and as understood."""

    filters: Filters
    values: dict[str, str]
    problems: list[str]

    def args(self) -> dict[str, str]:
        """The filters as query arguments, for the feed and the "older" link."""
        return {k: v for k, v in self.values.items() if v}


def read_filters(args: Mapping[str, str], tz: ZoneInfo) -> FilterForm:
    """The list's filters from the query string; anything unreadable is left out and said."""
    values = {
        name: (args.get(name) or "").strip()[:200]
        for name in ("severity", "category", "kind", "state", "person", "from", "to")
    }
    problems: list[str] = []
    severity = 1
    if values["severity"]:
        if values["severity"] in {"1", "2", "3", "4", "5"}:
            severity = int(values["severity"])
        else:
            problems.append("The severity should be 1 to 5.")
            values["severity"] = ""
    state = values["state"] or "open"
    if state not in STATE_CHOICES:
        problems.append("Choose a state from the list.")
        state = "open"
    values["state"] = state
    start = _day(values, "from", tz, problems)
    end = _day(values, "to", tz, problems)
    if end is not None:
        end += timedelta(days=1)  # "to" includes that whole day
    filters = Filters(
        min_severity=severity,
        category=values["category"],
        kind=values["kind"],
        state=state,
        person=values["person"],
        start=start,
        end=end,
    )
    return FilterForm(filters, values, problems)


def _day(values: dict[str, str], name: str, tz: ZoneInfo, problems: list[str]) -> datetime | None:
    text = values[name]
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        problems.append(f"“{text}” isn't a date (YYYY-MM-DD).")
        values[name] = ""
        return None
    return datetime.combine(day, time(0), tz)


def who_text(row: Any) -> str:
    """Who a personal alert is about; "" for one that names nobody (technical alerts)."""
    if row.audience not in PERSONAL:
        return ""
    if row.username:
        return str(row.username)
    if row.device_id:
        return f"device {row.device_id}"
    return f"address {row.ip}" if row.ip else ""


def row_view(row: Any, policy: Policy) -> dict[str, Any]:
    """What the list shows of one alert."""
    return {
        "id": row.id,
        "when": when_text(policy, row.raised_at),
        "severity": row.severity,
        "severity_text": SEVERITY_TEXT.get(row.severity, str(row.severity)),
        "kind": kind_text(row.kind),
        "summary": row.summary,
        "who": who_text(row),
        "personal": row.audience in PERSONAL,
        "state": row.state,
        "state_text": STATE_TEXT.get(row.state, row.state),
        "occurrences": row.occurrences,
        "escalated": row.escalation_level > 0 and row.state != CLOSED,
        "audience": AUDIENCE_TEXT.get(row.audience, row.audience),
    }


def announcement(rows: Sequence[Any]) -> str:
    """What a screen reader is told of alerts that just arrived (newest first)."""
    if not rows:
        return ""
    newest = rows[0]
    level = SEVERITY_TEXT.get(newest.severity, "")
    said = f"{kind_text(newest.kind)}, severity {newest.severity} {level}: {newest.summary}"
    if len(rows) == 1:
        return f"New alert. {said}"
    return f"{len(rows)} new alerts. The newest: {said}"


def event_facts(row: Any) -> list[tuple[str, str]]:
    """The event's own fields, labelled as its message labels them."""
    fields = (row.event or {}).get("fields") or {}
    return [
        (LABELS.get(k, k.replace("_", " ").capitalize()), str(v)) for k, v in fields.items() if v
    ]


def recipients_text(recipients: Sequence[str]) -> list[str]:
    out = []
    for r in recipients or ():
        kind, _, who = str(r).partition(":")
        out.append(f"{who} by email" if kind == "email" and who else str(r).capitalize())
    return out


def history_lines(row: Any, steps: Sequence[Step], policy: Policy) -> list[tuple[str, str]]:
    """(when, what) from the alert's row and its audited steps, oldest first."""
    lines: list[tuple[datetime, str]] = [(row.raised_at, "Raised")]
    if row.occurrences > 1:
        lines.append((row.last_seen_at, f"Last repeat ({row.occurrences} times in all)"))
    actions = {s.action for s in steps}
    lines += [(s.at, step_text(s)) for s in steps]
    if row.escalation_level > 0 and ESCALATE not in actions and row.escalated_at:
        to = ESCALATION_TEXT.get(row.escalation_level, f"level {row.escalation_level}")
        lines.append((row.escalated_at, f"Escalated to {to}: nobody had acknowledged it"))
    if row.acknowledged_at and ACKNOWLEDGE not in actions and REOPEN not in actions:
        lines.append((row.acknowledged_at, f"Acknowledged by {row.acknowledged_by}"))
    if row.state == CLOSED and row.closed_at and CLOSE not in actions:
        outcome = OUTCOMES.get(row.outcome or "", "no outcome recorded")
        lines.append((row.closed_at, f"Closed by {row.closed_by}: {outcome}"))
    lines.sort(key=lambda line: line[0])
    return [(when_text(policy, at), text) for at, text in lines]


def step_text(step: Step) -> str:
    d = step.detail
    if step.action == ACKNOWLEDGE:
        return f"Acknowledged by {step.actor}"
    if step.action == CLOSE:
        outcome = OUTCOMES.get(str(d.get("outcome")), str(d.get("outcome")))
        return f"Closed by {step.actor}: {outcome}" + (", with notes" if d.get("notes") else "")
    if step.action == REOPEN:
        return f"Reopened by {step.actor}: “{d.get('reason', '')}”"
    if step.action == ESCALATE:
        level = d.get("level") or d.get("escalation_level")
        to = ESCALATION_TEXT.get(int(level), f"level {level}") if level else "the next people"
        names = d.get("to") or d.get("recipients")
        if isinstance(names, list):
            names = ", ".join(str(n) for n in names)
        return f"Escalated to {to}" + (f" ({names})" if names else "") + ": not acknowledged"
    if step.action == LINKED and d.get("incident"):
        return f"Linked to incident {d['incident']} by {step.actor}"
    return f"{step.action.removeprefix('alert.').replace('_', ' ').capitalize()} by {step.actor}"


def may_close(row: Any) -> bool:
    return row.state in (NEW, ACKNOWLEDGED)


__all__ = [
    "FilterForm",
    "announcement",
    "event_facts",
    "history_lines",
    "may_close",
    "read_filters",
    "recipients_text",
    "row_view",
    "step_text",
    "who_text",
]
