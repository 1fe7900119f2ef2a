"""The words a lay governor reads in the termly report: category and profile labels from the
policy, kinds of alert, audiences, outcomes and the reasons for a block without a category,
and runs of dates ("1 to 14 Sep 2026")."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

from proxy_addons.core.policy.model import Policy

ALERT_KINDS = {
    "risk_phrase": "A worrying search or phrase",
    "illegal_tier": "Illegal content (IWF or police list)",
    "high_risk_block": "A block in a high-risk category",
    "repeated_blocks": "Many blocks in a short time",
    "circumvention": "A way round the filter",
    "content_block": "A page blocked for what it said",
    "check_failed": "A termly filtering check failed",
    "check_due": "A termly filtering check was due",
    "review_due": "The annual review was due",
    "device_noncompliant": "A school device not set up safely",
    "device_stale": "A school device stopped reporting",
    "device_unknown": "An unknown device on the network",
    "policy_reload_failed": "A change to the filter was refused",
    "outbox_stuck": "Alerts could not be delivered",
    "ca_refused": "A device refused the school's certificate",
    "list_index_damaged": "A damaged block list was rebuilt",
    "access_log_lost": "Access log records were lost",
    "user_report": "A report from a pupil or member of staff",
}
AUDIENCES = {
    "safeguarding": "Safeguarding team",
    "technical": "IT provider",
    "staff": "Headteacher (about staff)",
}
OUTCOMES = {
    "no_concern": "No concern",
    "spoke_to_pupil": "Spoke to the pupil",
    "referred": "Referred",
    "incident_opened": "Incident opened",
    "false_positive": "False alarm",
}
# A block with no category says why in its reason (core/decide.py Reason).
REASONS = {
    "illegal": "Illegal content (IWF or police list)",
    "circumvention": "Ways round the filter",
    "safe_search": "Search engines without safe search",
    "bare_ip": "Addresses written as numbers",
    "default": "Sites not on the allowed list",
    "fronting": "Disguised sites",
    "invalid": "Malformed addresses",
    "unavailable": "Blocked while the filter was starting",
    "content": "Pages blocked for what they said",
    "rule": "Other rules",
    "portal": "The school's own pages",
}
STATES = {"open": "Open", "closed": "Closed"}


def plain(code: str) -> str:
    """A code nobody gave words to yet, readable: "device_stale" -> "Device stale"."""
    text = code.replace("_", " ").strip()
    return text[:1].upper() + text[1:] if text else "Other"


def category_label(policy: Policy, category: str, reason: str = "") -> str:
    found = policy.categories.get(category) if category else None
    if found is not None:
        return found.label
    if category:
        return plain(category)
    return REASONS.get(reason, plain(reason))


def profile_label(policy: Policy, profile: str) -> str:
    found = policy.profiles.get(profile)
    return found.label if found is not None else plain(profile)


def short_date(day: date) -> str:
    return f"{day.day} {day:%b %Y}"


def day_runs(days: Iterable[date]) -> list[tuple[date, date]]:
    """Consecutive days as (first, last) runs."""
    runs: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if runs and runs[-1][1] + timedelta(days=1) == day:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def run_text(first: date, last: date) -> str:
    """ "3 Sep 2026", or "1 to 14 Sep 2026 (14 days)"."""
    if first == last:
        return short_date(first)
    n = (last - first).days + 1
    head = f"{first.day}" if (first.year, first.month) == (last.year, last.month) else ""
    if not head:
        head = f"{first.day} {first:%b}" if first.year == last.year else short_date(first)
    return f"{head} to {short_date(last)} ({n} days)"


__all__ = [
    "ALERT_KINDS",
    "AUDIENCES",
    "OUTCOMES",
    "REASONS",
    "STATES",
    "category_label",
    "day_runs",
    "plain",
    "profile_label",
    "run_text",
    "short_date",
]
