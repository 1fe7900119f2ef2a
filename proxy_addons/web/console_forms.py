"""Reading what the DSL typed into the console's forms (People, Incidents): days, school
times and text, each with a sentence for the person when it can't be read."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime

from proxy_addons.core.policy.model import Policy

MAX_FIELD = 4000


def text(form: Mapping[str, str], name: str, limit: int = MAX_FIELD) -> str:
    return (form.get(name) or "").strip()[:limit]


def read_day(
    form: Mapping[str, str], name: str, problems: dict[str, str], what: str
) -> date | None:
    """A day from a date input ("2026-03-03"); a problem for `name` if it isn't one."""
    typed = text(form, name, 40)
    if not typed:
        return None
    try:
        return date.fromisoformat(typed)
    except ValueError:
        problems[name] = f"{what} is not a date: write it like 2026-03-03."
        return None


def read_time(
    form: Mapping[str, str], name: str, policy: Policy, problems: dict[str, str]
) -> datetime | None:
    """A time in school time from a datetime-local input ("2026-03-03T10:15")."""
    typed = text(form, name, 40)
    if not typed:
        return None
    try:
        when = datetime.fromisoformat(typed)
    except ValueError:
        problems[name] = f"'{typed}' is not a time: write it like 2026-03-03 10:15."
        return None
    return when if when.tzinfo else when.replace(tzinfo=policy.timezone)


def local_input(policy: Policy, at: datetime) -> str:
    """What a datetime-local input shows for `at`, in school time."""
    return at.astimezone(policy.timezone).strftime("%Y-%m-%dT%H:%M")


def labelled_choices(labels: Mapping[str, str]) -> list[tuple[str, str]]:
    """(shown, value) for a pick-list of names with plain labels, sorted by label; names that
    share a label (three lists called "Adult content") say which is which."""
    seen: dict[str, int] = {}
    for label in labels.values():
        seen[label] = seen.get(label, 0) + 1
    return sorted(
        (f"{label} ({name})" if seen[label] > 1 else label, name) for name, label in labels.items()
    )


__all__ = ["MAX_FIELD", "labelled_choices", "local_input", "read_day", "read_time", "text"]
