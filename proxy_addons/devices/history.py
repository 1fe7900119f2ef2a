"""A device's compliance over a period, from the reports it sent (`device_reports`).

The IT provider (and through them the governors) needs to say when a device became
non-compliant and for how long, not only what its last report said. The reports are read
in order and cut into spans of the same state (compliant or not); each span names the
checks that failed in it. The last report before the period is read too, so the period's
first span starts at the period's start with the state the device was in then.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from proxy_addons.store import Store
from proxy_addons.store.schema import device_reports


@dataclass(frozen=True)
class Sent:
    """One report as the history needs it: when it was made, its state, its failing checks."""

    at: datetime
    compliant: bool
    failing: tuple[str, ...]
    source: str = "agent"  # or "mdm": seen by the school's MDM, imported (mdm_import.py)


@dataclass(frozen=True)
class Span:
    """A stretch of time in one state. `until` is when the next state's first report was
    made; None while it is still the device's state (then `last_report` is the latest)."""

    compliant: bool
    since: datetime
    until: datetime | None
    last_report: datetime
    failing: tuple[str, ...]  # every check that failed in the span, in the order first seen
    reports: int
    sources: tuple[str, ...] = ("agent",)  # where its reports came from, in the order first seen

    @property
    def from_mdm(self) -> bool:
        """Known from the MDM's export, not from an agent on the device."""
        return "mdm" in self.sources

    def length(self, now: datetime) -> float:
        """How long the span lasted (or has lasted, to `now`), in seconds."""
        return ((self.until or now) - self.since).total_seconds()


def failing_of(results: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The checks of a report that did not pass (fail or unknown: neither is a pass)."""
    return tuple(str(r.get("id")) for r in results if r.get("status") != "pass")


def spans(sent: Iterable[Sent], start: datetime | None = None) -> list[Span]:
    """Cut reports (oldest first) into spans of one state; a span that began before `start`
    is shown from `start`."""
    found: list[Span] = []
    for report in sent:
        since = max(report.at, start) if start is not None else report.at
        last = found[-1] if found else None
        if last is not None and last.compliant == report.compliant:
            failing = last.failing + tuple(c for c in report.failing if c not in last.failing)
            sources = last.sources + (() if report.source in last.sources else (report.source,))
            found[-1] = replace(
                last,
                last_report=report.at,
                failing=failing,
                reports=last.reports + 1,
                sources=sources,
            )
            continue
        if last is not None:
            found[-1] = replace(last, until=since)
        found.append(
            Span(report.compliant, since, None, report.at, report.failing, 1, (report.source,))
        )
    return found


def read(store: Store, device_id: str, start: datetime, end: datetime) -> list[Sent]:
    """The device's reports made in [start, end), after the last one made before `start`."""
    r = device_reports.c
    columns = (r.generated_at, r.compliant, r.results, r.source)
    mine = r.device_id == device_id
    with store.connect() as conn:
        before = conn.execute(
            sa.select(*columns)
            .where(mine, r.generated_at < start)
            .order_by(r.generated_at.desc(), r.id.desc())
            .limit(1)
        ).all()
        during = conn.execute(
            sa.select(*columns)
            .where(mine, r.generated_at >= start, r.generated_at < end)
            .order_by(r.generated_at, r.id)
        ).all()
    return [
        Sent(row[0], bool(row[1]), failing_of(row[2] or []), row[3] or "agent")
        for row in [*before, *during]
    ]


def history(store: Store, device_id: str, start: datetime, end: datetime) -> list[Span]:
    """The device's spans of compliance over [start, end)."""
    return spans(read(store, device_id, start, end), start)


__all__ = ["Sent", "Span", "failing_of", "history", "read", "spans"]
