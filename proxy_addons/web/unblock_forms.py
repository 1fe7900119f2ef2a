"""Reading the unblock forms: what was typed, as the values `UnblockWorkflow` takes.

Also used by the gateway's sign-in portal (the same minutes field on the block page).
"""

from __future__ import annotations

import re
from datetime import datetime
from datetime import time as clock_time
from typing import Any

from proxy_addons.core.policy.model import Policy
from proxy_addons.core.unblocks import AudienceKind, Scope
from proxy_addons.workflow.unblocks import WorkflowError

MAX_TEXT = 2000
MAX_URL = 2048
NEW_FIELDS = ("url", "scope", "audience_kind", "audience", "minutes", "until", "reason")


def request_values(form: dict[str, str], policy: Policy, now: datetime) -> dict[str, Any]:
    """Keyword arguments for `UnblockWorkflow.request` from the new-request form."""
    try:
        scope = Scope(form["scope"]) if form["scope"] else None
    except ValueError:
        raise WorkflowError(
            "Choose what to unblock: the page, the pages below it, or the site."
        ) from None
    try:
        kind = AudienceKind(form["audience_kind"])
    except ValueError:
        raise WorkflowError("Choose who the unblock is for.") from None
    minutes = parse_minutes(form["minutes"], policy)
    until = parse_when(form["until"], policy, now)
    if minutes is not None and until is not None:
        raise WorkflowError("Give either a number of minutes or an end time, not both.")
    return {
        "target": form["url"],
        "scope": scope,
        "audience_kind": kind,
        "audience": split_names(form["audience"]),
        "reason": form["reason"],
        "minutes": minutes,
        "until": until,
    }


def parse_minutes(text: str | None, policy: Policy) -> int | None:
    """How long an unblock should last, as typed: a whole number of minutes up to the policy's
    `max_days` (a huge one would overflow the end time's sum); None when not given."""
    text = (text or "").strip()
    if not text:
        return None
    if not text.isdecimal() or not text.isascii():
        raise WorkflowError("Give the number of minutes as a whole number, e.g. 45.")
    longest = policy.unblocks.max_days * 24 * 60
    if len(text.lstrip("0")) > len(str(longest)) or int(text) > longest:
        raise WorkflowError(f"An unblock can last at most {policy.unblocks.max_days} days.")
    return int(text)


def split_names(text: str) -> list[str]:
    """Names typed one per line, or separated by commas or spaces."""
    return [part for part in re.split(r"[\s,;]+", text) if part]


def parse_when(text: str | None, policy: Policy, now: datetime) -> datetime | None:
    """An end time typed in school time: "2026-03-03T15:00" (a date-time input) or "15:00"."""
    text = (text or "").strip()
    if not text:
        return None
    local_now = now.astimezone(policy.timezone)
    try:
        if re.fullmatch(r"\d{1,2}:\d{2}", text):
            when = datetime.combine(local_now.date(), clock_time.fromisoformat(text.zfill(5)))
        else:
            when = datetime.fromisoformat(text)
    except ValueError:
        raise WorkflowError(
            f"'{text[:40]}' is not a time: write it like {local_now:%Y-%m-%d} 15:00."
        ) from None
    if abs(when.year - local_now.year) > 1:  # also keeps time zone sums from overflowing
        raise WorkflowError("That end time is too far from today.")
    return when if when.tzinfo else when.replace(tzinfo=policy.timezone)


def clip(value: str | None, limit: int = MAX_TEXT) -> str:
    return (value or "").strip()[:limit]


__all__ = [
    "MAX_TEXT",
    "MAX_URL",
    "NEW_FIELDS",
    "clip",
    "parse_minutes",
    "parse_when",
    "request_values",
    "split_names",
]
