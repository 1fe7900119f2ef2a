"""The governors' termly report: counts from the daily totals (a term longer than the access
log's retention), check visits left out, alerts and what became of them, incidents by
category, unblocks with their reasons, the reviews; plain labels; the missing days named;
and no pupil named anywhere in it."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from proxy_addons.cli.main import main
from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.policy.model import Term
from proxy_addons.record import access_records, access_store, daily_totals
from proxy_addons.record.access_records import AccessRecord
from proxy_addons.record.term_report import ChecksSummary, build_report, render_report
from proxy_addons.store import Store, store_url
from proxy_addons.store.schema import access_log, alerts, incidents, unblocks
from tests.conftest import ROOT

POLICY = ROOT / "tests/data/policy/school.yaml"  # one term: "Whole year" 2026-2027
IN_TERM = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
AFTER = datetime(2028, 2, 1, 10, 0, tzinfo=UTC)
# An autumn term of 16 weeks; the access log is kept 90 days (the test policy's).
AUTUMN = Term("Autumn 2026", date(2026, 9, 1), date(2026, 12, 18))
TODAY = date(2026, 12, 21)  # after the term


def visit(at: datetime, user: str, profile: str, **fields: object) -> AccessRecord:
    decision: dict[str, object] = {
        "action": "allow",
        "reason": "default",
        "profile": profile,
        "identified_by": "user",
        "host": "chatter.test",
        "url": "https://chatter.test/",
        "user": user,
        "ip": "10.10.3.7",
        "stage": "request",
    } | fields
    return access_records.build(decision, at, method="GET")


def block(at: datetime, user: str, profile: str, category: str, **fields: object) -> AccessRecord:
    return visit(at, user, profile, action="block", reason="rule", category=category, **fields)


def alert_row(at: datetime, kind: str, severity: int, **fields: object) -> dict[str, Any]:
    return {
        "raised_at": at,
        "last_seen_at": at,
        "kind": kind,
        "severity": severity,
        "audience": "safeguarding",
        "username": "amelia.k",
        "summary": "A worrying search",
        "event": {},
        "fold_key": "f" * 64,
        "recipients": ["dsl"],
        "state": "new",
        "outcome": None,
    } | fields


def unblock_row(at: datetime) -> dict[str, Any]:
    return {
        "id": "UB-BBBBBB",
        "scope": "domain",
        "target": "chatter.test",
        "audience_kind": "users",
        "audience": ["amelia.k", "ben.t"],
        "starts_at": at,
        "ends_at": at + timedelta(hours=1),
        "reason": "Year 6 debate on social media",
        "requested_by": "teacher",
        "requested_at": at,
        "status": "expired",
        "decided_by": "dsl",
        "decided_at": at,
    }


def incident_row(at: datetime, category: str | None, state: str) -> dict[str, Any]:
    return {
        "occurred_at": at,
        "location": "ICT suite",
        "description": "Amelia searched for something worrying",
        "action_taken": "Spoke to her",
        "category": category,
        "people": ["amelia.k"],
        "recorded_by": "dsl",
        "recorded_at": at,
        "state": state,
    }


@dataclass(frozen=True)
class Held:
    held_on: date
    participants: list[dict[str, str]]
    findings: str
    actions: str


def seed_autumn(store: Store) -> None:
    """The log's days counted as the gateway would have, each before its purge: from
    12 October on (totals began then), the earlier term days never counted."""
    day = lambda d: datetime(2026, 10, 12, 10, 0, tzinfo=UTC) + timedelta(days=d)  # noqa: E731
    access_store.write_rows(
        store,
        [
            block(day(0), "amelia.k", "ks2", "social"),
            block(day(0), "amelia.k", "ks2", "social"),
            block(day(8), "ben.t", "early_years", "games"),
            visit(day(8), "ben.t", "early_years"),
            visit(day(9), "amelia.k", "ks2"),
            # a page blocked for what it said: the request's record and the page's
            visit(day(9), "amelia.k", "ks2", host="news.test"),
            visit(day(9), "amelia.k", "ks2", action="block", reason="content", category="adult"),
            # the termly check's canaries: kept in the log, never counted as blocks
            block(day(10), "check", "ks2", "adult", identified_by="check"),
            block(day(10), "staff.t", "ks2", "adult", check_probe=True),
        ],
    )
    daily_totals.total_missing(store, ZONE, datetime(2026, 12, 20, 1, 0, tzinfo=UTC))
    # The access log's purge has since deleted what it held of October.
    access_store.purge(store, None, 30, datetime(2026, 12, 20, 1, 0, tzinfo=UTC), timezone=ZONE)
    in_term = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    with store.begin() as conn:
        conn.execute(
            alerts.insert(),
            [
                alert_row(in_term, "risk_phrase", 5, state="closed", outcome="spoke_to_pupil"),
                alert_row(in_term, "risk_phrase", 5, state="closed", outcome="no_concern"),
                alert_row(in_term + timedelta(days=7), "risk_phrase", 5),
                alert_row(in_term, "check_failed", 3, audience="technical", username=None),
                alert_row(datetime(2027, 1, 5, tzinfo=UTC), "risk_phrase", 5),  # next term
            ],
        )
        conn.execute(
            incidents.insert(),
            [
                incident_row(in_term, "social", "open"),
                incident_row(in_term, "social", "closed"),
                incident_row(in_term, None, "closed"),
            ],
        )
        conn.execute(unblocks.insert().values(**unblock_row(in_term)))


ZONE = load_policy(POLICY).timezone


@pytest.fixture
def autumn(tmp_path: Path) -> Store:
    store = Store.open(store_url(tmp_path / "var"))
    seed_autumn(store)
    return store


def test_the_report_counts_the_term_from_totals_after_the_log_is_gone(autumn: Store) -> None:
    policy = load_policy(POLICY)
    with autumn.connect() as conn:
        assert conn.execute(access_log.select()).all() == []  # the log itself is purged
    report = build_report(autumn, policy, AUTUMN, today=TODAY)
    assert report.blocks == [
        ("Social networks", "KS2", 2),
        ("Adult content", "KS2", 1),  # the page blocked for what it said
        ("Games", "Early years", 1),
    ]
    assert report.totals["blocks"] == 4  # the two check visits are not among them
    assert report.totals["check_visits"] == 2
    assert report.totals["decisions"] == 6  # a page's second record is not another request
    assert report.by_profile == [("KS2", 4, 3), ("Early years", 2, 1)]
    assert report.alerts == [
        ("A worrying search or phrase", "Safeguarding team", 5, 3, 2),
        ("A termly filtering check failed", "IT provider", 3, 1, 0),
    ]
    assert dict(report.outcomes) == {"Still open": 2, "Spoke to the pupil": 1, "No concern": 1}
    assert report.incidents == [("Social networks", 1, 1), ("Other", 0, 1)]
    assert report.unblocks[0]["audience"] == "2 user(s)"
    blocks_chart, alerts_chart = report.charts
    assert len(blocks_chart.bars) == 16 and blocks_chart.total == 4
    assert alerts_chart.total == 4
    assert [b.value for b in alerts_chart.bars if b.value] == [3, 1]  # 2 Nov, 9 Nov


def test_the_report_says_which_days_it_could_not_count(autumn: Store) -> None:
    report = build_report(autumn, load_policy(POLICY), AUTUMN, today=TODAY)
    coverage = report.coverage
    assert coverage.retention_shorter and coverage.retention_days == 90
    assert coverage.missing == ["1 Sep to 11 Oct 2026 (41 days)"]
    html = render_report(report)
    assert "kept for 90 days, less than this term (109 days)" in html
    assert "No figures for 41 day(s) of this term:</strong> 1 Sep to 11 Oct 2026 (41 days)" in html
    assert "The 2 visits made by the termly filtering checks" in html


def test_the_report_lists_the_term_s_reviews_and_the_checks(autumn: Store) -> None:
    held = Held(
        date(2026, 11, 20),
        [{"role": "Governor", "name": "Mr Shah"}, {"role": "IT provider", "name": "Jo Bell"}],
        "Filtering fit for purpose; YouTube restricted mode confirmed.",
        "Add the new AI tool to the termly check.",
    )
    old = Held(date(2025, 11, 20), [], "Last year's", "None")
    report = build_report(
        autumn,
        load_policy(POLICY),
        AUTUMN,
        today=TODAY,
        reviews=[held, old],
        next_review=date(2027, 11, 20),
        checks=ChecksSummary(2, 40, 1, 0, ["early_years"]),
    )
    assert report.reviews == [held]
    html = render_report(report)
    assert "Mr Shah (Governor), Jo Bell (IT provider)" in html
    assert "The next review is due by <strong>20 Nov 2027</strong>" in html
    assert "Not yet checked this term: Early years" in html
    # Inline SVG only: nothing to run, nothing fetched.
    assert "<svg" in html and "<script" not in html and "src=" not in html


def test_the_cli_writes_the_report_and_names_no_pupil(tmp_path: Path) -> None:
    var = tmp_path / "var"
    store = Store.open(store_url(var))
    access_store.write_rows(
        store,
        [
            block(IN_TERM, "amelia.k", "ks2", "social"),
            block(IN_TERM + timedelta(minutes=1), "amelia.k", "ks2", "social"),
            block(IN_TERM, "ben.t", "early_years", "games"),
            visit(IN_TERM, "amelia.k", "ks2"),
            block(AFTER, "amelia.k", "ks2", "social"),  # outside the term
        ],
    )
    daily_totals.total_missing(store, ZONE, IN_TERM + timedelta(days=2))
    with store.begin() as conn:
        conn.execute(alerts.insert().values(**alert_row(IN_TERM, "risk_phrase", 5)))
        conn.execute(incidents.insert().values(**incident_row(IN_TERM, "social", "open")))
        conn.execute(unblocks.insert().values(**unblock_row(IN_TERM)))
    store.dispose()
    out = tmp_path / "report"
    args = ["report", "--term", "whole year", "--out", str(out)]
    assert main([*args, "--policy", str(POLICY), "--var", str(var)]) == 0
    html = (out / "report.html").read_text()
    blocks = list(csv.reader((out / "blocks.csv").open()))
    assert blocks[0] == ["category", "profile", "blocks"]
    assert ["Social networks", "KS2", "2"] in blocks and ["Games", "Early years", "1"] in blocks
    assert list(csv.reader((out / "alerts.csv").open()))[1] == [
        "A worrying search or phrase",
        "Safeguarding team",
        "5",
        "1",
        "0",
    ]
    assert list(csv.reader((out / "incidents.csv").open()))[1] == ["Social networks", "1", "0"]
    unblock_rows = list(csv.DictReader((out / "unblocks.csv").open()))
    assert unblock_rows[0]["audience"] == "2 user(s)"
    assert unblock_rows[0]["reason"] == "Year 6 debate on social media"
    assert 'id="total-requests">4<' in html and 'id="total-blocks">3<' in html
    for text in [html, *(p.read_text() for p in out.glob("*.csv"))]:
        assert "amelia" not in text.lower() and "ben.t" not in text  # no pupil, in any file


def test_unknown_term_is_a_clear_error(tmp_path: Path) -> None:
    code = main(
        ["report", "--term", "Autumn 1999", "--policy", str(POLICY), "--var", str(tmp_path)]
    )
    assert code == 1
