"""The governors' report on a term's filtering checks (`schoolgate checks report`).

What the standards ask a school to be able to show: when checks took place, who ran them,
on which devices and profiles, what was tested, the results and the actions taken. HTML for
reading (the gateway's Jinja templates, self-contained) and CSV for keeping, built from the
stored runs only: the report says nothing the record doesn't.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from agent.check_suite import Outcome
from proxy_addons.checks.alerts import ILLEGAL_CATEGORIES
from proxy_addons.checks.records import Database, StoredRun, load_runs
from proxy_addons.checks.schedule import required_profiles
from proxy_addons.core.policy.model import Policy, Term
from proxy_addons.devices import term_compliance
from proxy_addons.pages.blockpage import render_page
from proxy_addons.record.term_report import ChecksSummary, TermReport, build_report
from proxy_addons.store import Store
from proxy_addons.workflow import reviews

ILLEGAL_URL_SHOWN = "(the list provider's illegal-tier test entry)"


@dataclass(frozen=True)
class ChecksReport:
    school: str
    term: Term
    runs: list[StoredRun]  # oldest first
    coverage: list[tuple[str, str, int, int, int, int]]  # device type, profile, runs, p, f, e
    categories: list[tuple[str, int, int, int]]  # category, passed, failed, errors
    failures: list[dict[str, Any]]
    missing_profiles: list[str]
    trend: list[tuple[str, int, int, int, int, int]]  # term, runs, cases, passed, failed, errors
    totals: dict[str, int]


def _local(policy: Policy, at: Any) -> str:
    return str(at.astimezone(policy.timezone).strftime("%Y-%m-%d %H:%M"))


def _url(category: str, url: str) -> str:
    return ILLEGAL_URL_SHOWN if category in ILLEGAL_CATEGORIES else url


def term_summary(db: Database, policy: Policy, term: Term) -> ChecksSummary:
    """The term's checks in a line, for the governors' termly report."""
    found = build_checks_report(db, policy, term)
    t = found.totals
    return ChecksSummary(t["runs"], t["passed"], t["failed"], t["errors"], found.missing_profiles)


def governors_report(
    db: Store, policy: Policy, term: Term, today: date, now: datetime | None = None
) -> TermReport:
    """The governors' termly report with everything it lists: the annual reviews and when
    the next is due (workflow/reviews.py), this term's checks in a line, and the school
    devices against the cyber security standard (devices/term_compliance.py) to `now`."""
    found = reviews.list_reviews(db)
    return build_report(
        db,
        policy,
        term,
        today=today,
        reviews=found,
        next_review=reviews.next_due(policy, found, today, reviews.first_record_day(db, policy)),
        checks=term_summary(db, policy, term),
        devices=term_compliance.for_term(db, policy, term, now or datetime.now(UTC)),
    )


def build_checks_report(db: Database, policy: Policy, term: Term) -> ChecksReport:
    runs = list(reversed(load_runs(db, term=term.name)))
    coverage: dict[tuple[str, str], list[int]] = {}
    categories: dict[str, Counter[Outcome]] = {}
    failures: list[dict[str, Any]] = []
    for stored in runs:
        run = stored.run
        key = (run.device_type or run.source, run.profile)
        row = coverage.setdefault(key, [0, 0, 0, 0])
        row[0] += 1
        row[1] += stored.passed
        row[2] += stored.failed
        row[3] += stored.errors
        for result in run.results:
            categories.setdefault(result.category, Counter())[result.outcome] += 1
            if result.outcome is not Outcome.FAIL:
                continue
            actions = [
                f"{_local(policy, a.at)} {a.author}: {a.text}"
                for a in stored.actions
                if a.case_id in (None, result.case_id)
            ]
            failures.append(
                {
                    "run": stored.id,
                    "when": _local(policy, run.started_at),
                    "by": run.started_by,
                    "device": " ".join(x for x in (run.device_type or run.source, run.os) if x),
                    "profile": run.profile,
                    "case": result.case_id,
                    "category": result.category,
                    "url": _url(result.category, result.url),
                    "expected": result.expected,
                    "evidence": result.evidence,
                    "actions": actions,
                }
            )
    covered = {s.run.profile for s in runs}
    return ChecksReport(
        school=policy.school,
        term=term,
        runs=runs,
        coverage=sorted((d, p, *v) for (d, p), v in coverage.items()),  # type: ignore[misc]
        categories=sorted(
            (c, n[Outcome.PASS], n[Outcome.FAIL], n[Outcome.ERROR]) for c, n in categories.items()
        ),
        failures=failures,
        missing_profiles=sorted(required_profiles(policy) - covered),
        trend=_trend(db, policy, term),
        totals={
            "runs": len(runs),
            "cases": sum(len(s.run.results) for s in runs),
            "passed": sum(s.passed for s in runs),
            "failed": sum(s.failed for s in runs),
            "errors": sum(s.errors for s in runs),
            "actions": sum(len(s.actions) for s in runs),
            "devices": len({(s.run.device_type, s.run.device_id) for s in runs}),
        },
    )


def _trend(db: Database, policy: Policy, upto: Term) -> list[tuple[str, int, int, int, int, int]]:
    """Each of the policy's terms up to this one that has runs: how the checks went."""
    out = []
    for term in policy.terms:
        if term.start > upto.start:
            break
        runs = load_runs(db, term=term.name)
        if not runs:
            continue
        out.append(
            (
                term.name,
                len(runs),
                sum(len(s.run.results) for s in runs),
                sum(s.passed for s in runs),
                sum(s.failed for s in runs),
                sum(s.errors for s in runs),
            )
        )
    return out


def _csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def write_checks_report(report: ChecksReport, policy: Policy, folder: Path) -> list[Path]:
    """checks.html plus runs.csv, results.csv, actions.csv, coverage.csv and trend.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {
        "checks.html": render_page(
            "check_report.html",
            report=report,
            school=report.school,
            when=lambda at: _local(policy, at),
        ),
        "runs.csv": _csv(
            [
                "run",
                "started",
                "finished",
                "by",
                "source",
                "device_type",
                "device_id",
                "os",
                "browser",
                "profile",
                "suite",
                "passed",
                "failed",
                "errors",
            ],
            [
                [
                    s.id,
                    s.run.started_at.isoformat(),
                    s.run.finished_at.isoformat(),
                    s.run.started_by,
                    s.run.source,
                    s.run.device_type or "",
                    s.run.device_id or "",
                    s.run.os or "",
                    s.run.browser or "",
                    s.run.profile,
                    s.run.suite,
                    s.passed,
                    s.failed,
                    s.errors,
                ]
                for s in report.runs
            ],
        ),
        "results.csv": _csv(
            [
                "run",
                "case",
                "category",
                "url",
                "expected",
                "outcome",
                "status",
                "block_reference",
                "evidence",
            ],
            [
                [
                    s.id,
                    r.case_id,
                    r.category,
                    _url(r.category, r.url),
                    r.expected,
                    r.outcome.value,
                    "" if r.status is None else r.status,
                    r.block_reference or "",
                    r.evidence,
                ]
                for s in report.runs
                for r in s.run.results
            ],
        ),
        "actions.csv": _csv(
            ["run", "case", "at", "by", "action"],
            [
                [s.id, a.case_id or "", a.at.isoformat(), a.author, a.text]
                for s in report.runs
                for a in s.actions
            ],
        ),
        "coverage.csv": _csv(
            ["device_type", "profile", "runs", "passed", "failed", "errors"], report.coverage
        ),
        "trend.csv": _csv(["term", "runs", "cases", "passed", "failed", "errors"], report.trend),
    }
    written = []
    for name, text in files.items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


__all__ = [
    "ChecksReport",
    "build_checks_report",
    "governors_report",
    "term_summary",
    "write_checks_report",
]
