"""The termly monitoring report for governors: counts, not people.

Blocks and alerts by category and profile, and the unblocks granted with their
reasons, for one term of the policy's calendar. Pseudonymised: no pupil is
named (audiences of single users or class lists appear as a count of users).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from proxy_addons.core.policy.model import Policy, Term
from proxy_addons.pages.blockpage import render_page
from proxy_addons.store import Store
from proxy_addons.store.schema import access_log, alert_outbox, unblocks

GRANTED = ("active", "expired", "revoked")


@dataclass(frozen=True)
class TermReport:
    school: str
    term: Term
    start: datetime
    end: datetime
    blocks: list[tuple[str, str, int]]  # (category, profile, count)
    alerts: list[tuple[str, int, int]]  # (kind, severity, count of alerts)
    unblocks: list[dict[str, Any]]
    totals: dict[str, int]


def find_term(policy: Policy, name: str) -> Term:
    for term in policy.terms:
        if term.name.lower() == name.strip().lower():
            return term
    names = ", ".join(t.name for t in policy.terms) or "none"
    raise ValueError(f"No term called '{name}' in the policy (terms: {names}).")


def build_report(store: Store, policy: Policy, term: Term) -> TermReport:
    tz = policy.timezone
    start = datetime.combine(term.start, time.min, tz).astimezone(UTC)
    end = datetime.combine(term.end + timedelta(days=1), time.min, tz).astimezone(UTC)
    with store.connect() as conn:
        block_rows = conn.execute(
            sa.select(
                sa.func.coalesce(access_log.c.category, access_log.c.reason),
                access_log.c.profile,
                sa.func.count(),
            )
            .where(
                access_log.c.decision == "block", access_log.c.at >= start, access_log.c.at < end
            )
            .group_by(
                sa.func.coalesce(access_log.c.category, access_log.c.reason), access_log.c.profile
            )
        ).all()
        decisions = conn.execute(
            sa.select(sa.func.count())
            .select_from(access_log)
            .where(access_log.c.at >= start, access_log.c.at < end)
        ).scalar_one()
        # One outbox row per channel: count each alert once, by its fold key and first time.
        alert_rows = conn.execute(
            sa.select(
                alert_outbox.c.kind,
                alert_outbox.c.severity,
                alert_outbox.c.fold_key,
                alert_outbox.c.first_at,
            )
            .where(alert_outbox.c.first_at >= start, alert_outbox.c.first_at < end)
            .distinct()
        ).all()
        granted = conn.execute(
            sa.select(unblocks)
            .where(
                unblocks.c.status.in_(GRANTED),
                unblocks.c.decided_at >= start,
                unblocks.c.decided_at < end,
            )
            .order_by(unblocks.c.decided_at)
        ).all()
    alerts = Counter((r.kind, r.severity) for r in alert_rows)
    blocks = sorted(
        ((c or "other", p, n) for c, p, n in block_rows), key=lambda r: (-r[2], r[0], r[1])
    )
    return TermReport(
        school=policy.school,
        term=term,
        start=start,
        end=end,
        blocks=blocks,
        alerts=sorted(((k, s, n) for (k, s), n in alerts.items()), key=lambda r: (-r[1], r[0])),
        unblocks=[_pseudonymous(row, policy) for row in granted],
        totals={
            "decisions": int(decisions),
            "blocks": sum(n for _, _, n in blocks),
            "alerts": sum(alerts.values()),
            "unblocks": len(granted),
        },
    )


def _pseudonymous(row: Any, policy: Policy) -> dict[str, Any]:
    if row.audience_kind == "profile":
        audience = "profile " + ", ".join(row.audience)
    elif row.audience_kind == "device":
        audience = f"{len(row.audience)} device(s)"
    else:
        audience = f"{len(row.audience)} user(s)"
    tz = policy.timezone
    return {
        "id": row.id,
        "target": row.target,
        "scope": row.scope,
        "audience": audience,
        "from": row.starts_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
        "until": row.ends_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
        "reason": row.reason,
        "requested_by": row.requested_by,  # staff, by role in the school
        "decided_by": row.decided_by,
        "status": row.status,
    }


def write_report(report: TermReport, folder: Path) -> list[Path]:
    """report.html plus blocks.csv, alerts.csv and unblocks.csv in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    html = render_page("report_term.html", report=report, school=report.school)
    written = [folder / "report.html"]
    written[0].write_text(html, encoding="utf-8")
    tables: dict[str, tuple[list[str], Sequence[Sequence[Any]]]] = {
        "blocks.csv": (["category", "profile", "blocks"], report.blocks),
        "alerts.csv": (["kind", "severity", "alerts"], report.alerts),
        "unblocks.csv": (
            list(report.unblocks[0]) if report.unblocks else ["id"],
            [list(u.values()) for u in report.unblocks],
        ),
    }
    for name, (header, rows) in tables.items():
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
        (folder / name).write_text(out.getvalue(), encoding="utf-8")
        written.append(folder / name)
    return written
