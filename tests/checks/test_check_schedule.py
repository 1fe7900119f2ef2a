"""The policy's `checks:` section, the check identity, failure alerts, reminders and the report.

Store parts run on SQLite and PostgreSQL (`db_url`); the outbox rows are read back as stored.
"""

from __future__ import annotations

import csv
import os
import stat
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from agent.check_suite import CheckCase, Expect, observe_response
from proxy_addons.alerts.events import Audience
from proxy_addons.checks.alerts import CHECK_FAILED, failure_events, record_and_alert
from proxy_addons.checks.identity import CHECK_HEADER, CheckIdentity, header_value, is_loopback
from proxy_addons.checks.records import CheckRun, add_action, result_for
from proxy_addons.checks.report import ILLEGAL_URL_SHOWN, build_checks_report, write_checks_report
from proxy_addons.checks.schedule import CHECK_DUE, check_status, remind_if_due
from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.core.policy.model import Policy, Term
from proxy_addons.store import Store
from proxy_addons.store.schema import alert_outbox
from tests.conftest import copy_policy
from tests.pg import db_url  # noqa: F401  (a fixture)

SUITE = """\
name: Unit suite
cases:
  - {id: iwf, url: "http://illegal.test/exact.html", category: child_sexual_abuse, expect: blocked}
  - {id: adult, url: "https://adult.test/", category: adult, expect: blocked}
  - {id: edu, url: "https://edu.test/", category: educational, expect: allowed}
"""
TERMS = """\
  terms:
    - {name: Summer 2026, start: 2026-04-13, end: 2026-07-22}
    - {name: Autumn 2026, start: 2026-09-02, end: 2026-12-18}
"""


def _policy(tmp_path: Path, checks: str, email: bool = True) -> Path:
    policy = copy_policy(tmp_path)
    (policy.parent / "checks.yaml").write_text(SUITE)
    text = policy.read_text().replace(
        "  terms:\n    - {name: Whole year, start: 2026-01-01, end: 2027-12-31}\n", TERMS
    )
    if email:
        text = text.replace(
            "notifications:\n",
            "notifications:\n  email: {host: 127.0.0.1, port: 2525, sender: sg@test.example}\n",
        )
    policy.write_text(text + checks)
    return policy


CHECKS = "checks:\n  suite: checks.yaml\n  remind: [tech, dsl]\n  due_after_days: 14\n"


def test_the_checks_section_is_read_with_defaults(tmp_path: Path) -> None:
    policy = load_policy(_policy(tmp_path, CHECKS))
    assert policy.checks.suite == (tmp_path / "policy" / "checks.yaml").resolve()
    assert policy.checks.remind == {"tech", "dsl"}
    assert policy.checks.due_after_days == 14 and policy.checks.profiles == frozenset()
    assert policy.checks.suite in policy.files  # a suite change is audited like the policy
    plain = load_policy(copy_policy(tmp_path / "plain"))
    assert plain.checks.suite is None and plain.checks.due_after_days == 14


def test_mistakes_in_the_checks_section_or_its_suite_break_the_policy(tmp_path: Path) -> None:
    bad = "checks:\n  suite: checks.yaml\n  due_after_days: -1\n  profiles: [ks3]\n  remnd: []\n"
    with pytest.raises(PolicyError) as err:
        load_policy(_policy(tmp_path / "a", bad))
    text = str(err.value)
    assert "due_after_days" in text and "'ks3' is not a profile" in text
    assert "'remnd' is not a setting of checks" in text
    path = _policy(tmp_path / "b", CHECKS)
    (path.parent / "checks.yaml").write_text(SUITE.replace("expect: allowed", "expect: open"))
    with pytest.raises(PolicyError, match=r"checks.yaml, line 5: expect should be one of"):
        load_policy(path)
    (path.parent / "checks.yaml").write_text(
        SUITE.replace("expect: allowed}", "expect: allowed, profiles: [year9]}")
    )
    with pytest.raises(PolicyError, match="'year9' is not a profile of the policy"):
        load_policy(path)


def test_the_check_identity_is_believed_only_from_loopback_with_the_token(
    tmp_path: Path,
) -> None:
    ident = CheckIdentity()
    ident.configure(tmp_path)
    token_file = tmp_path / "check-token"
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    token = token_file.read_text().strip()
    assert len(token) >= 40
    good = {CHECK_HEADER: header_value("ks2", token)}
    assert ident.profile_from(good, "127.0.0.1") == "ks2"
    assert ident.profile_from({CHECK_HEADER.lower(): f"ks2 {token}"}, "::1") == "ks2"
    assert ident.profile_from(good, "::ffff:127.0.0.1") == "ks2"
    assert ident.profile_from(good, "10.10.0.5") is None  # a device on the school network
    assert ident.profile_from({CHECK_HEADER: "ks2 guess"}, "127.0.0.1") is None
    assert ident.profile_from({CHECK_HEADER: "ks2"}, "127.0.0.1") is None
    assert ident.profile_from({}, "127.0.0.1") is None
    again = CheckIdentity()
    again.configure(tmp_path)  # a restart keeps the token the runner reads
    assert again.profile_from(good, "127.0.0.1") == "ks2"
    assert not is_loopback(None) and not is_loopback("not an ip")


def test_gateway_workers_starting_together_share_one_token(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from proxy_addons.checks.identity import ensure_token

    with ThreadPoolExecutor(8) as pool:
        tokens = set(pool.map(lambda _: ensure_token(tmp_path), range(8)))
    assert tokens == {(tmp_path / "check-token").read_text().strip()}
    # An empty token file (a crash while writing it) never lets an empty token in.
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "check-token").write_text("")
    broken = CheckIdentity()
    broken.configure(tmp_path / "broken")
    assert broken.profile_from({CHECK_HEADER: "ks2 "}, "127.0.0.1") is None


def _run(
    policy: Policy, at: datetime, profile: str = "ks2", adult_blocked: bool = True
) -> CheckRun:
    from proxy_addons.core.policy.check_suite_file import load_suite

    assert policy.checks.suite is not None
    suite = load_suite(policy.checks.suite)
    blocked = {"X-Schoolgate-Reference": "SG-BBBB-CCCC"}
    results = []
    for case in suite.cases_for(profile):
        if case.expect is Expect.BLOCKED and (case.category != "adult" or adult_blocked):
            seen = observe_response(case.url, 403, blocked, "")
        else:
            seen = observe_response(case.url, 200, {}, "ok")
        results.append(result_for(case, seen))
    return CheckRun(
        started_at=at,
        finished_at=at + timedelta(seconds=3),
        started_by="tech",
        source="browser",
        profile=profile,
        results=tuple(results),
        suite=suite.name,
        device_type="ipad",
        os="iPadOS 17",
        browser="Safari 17",
        term="Autumn 2026" if at.month >= 9 else "Summer 2026",
    )


def test_failure_events_tell_both_audiences_without_an_illegal_address(tmp_path: Path) -> None:
    policy = load_policy(_policy(tmp_path, CHECKS))
    at = datetime(2026, 10, 1, 10, tzinfo=UTC)
    assert failure_events(1, _run(policy, at), policy) == []
    run = _run(policy, at, adult_blocked=False)
    iwf = CheckCase(
        "iwf", "http://illegal.test/exact.html", "child_sexual_abuse", frozenset(), Expect.BLOCKED
    )
    leaked = replace(
        run, results=(*run.results, result_for(iwf, observe_response(iwf.url, 200, {}, "")))
    )
    events = failure_events(7, leaked, policy)
    assert [e.audience for e in events] == [Audience.TECHNICAL, Audience.SAFEGUARDING]
    for event in events:
        assert event.kind == CHECK_FAILED and event.severity == 5
        text = " ".join(event.fields.values()) + event.summary
        assert "illegal.test" not in text  # no address of the illegal tier travels
        assert "iwf (child_sexual_abuse: not blocked)" in event.fields["checks"]
        assert event.fields["reference"].startswith("check run 7")
    only_adult = failure_events(8, run, policy)
    assert {e.severity for e in only_adult} == {4}


def _outbox(store: Store) -> list[tuple[str, str, list[str]]]:
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(
                alert_outbox.c.kind, alert_outbox.c.audience, alert_outbox.c.recipients
            ).order_by(alert_outbox.c.id)
        ).all()
    return [(r.kind, r.audience, list(r.recipients)) for r in rows]


def test_a_failed_run_puts_alerts_for_both_audiences_in_the_outbox(
    tmp_path: Path,
    db_url: str,  # noqa: F811
) -> None:
    policy = load_policy(_policy(tmp_path, CHECKS))
    store = Store.open(db_url)
    try:
        at = datetime(2026, 10, 1, 10, tzinfo=UTC)
        record_and_alert(store, policy, _run(policy, at), deliver=False)
        assert _outbox(store) == []
        record_and_alert(store, policy, _run(policy, at, adult_blocked=False), deliver=False)
        assert _outbox(store) == [
            (CHECK_FAILED, "technical", ["tech@test.example"]),
            (CHECK_FAILED, "safeguarding", ["deputy@test.example", "dsl@test.example"]),
        ]
    finally:
        store.dispose()


def test_reminders_when_due_not_done_at_most_once_a_day(
    tmp_path: Path,
    db_url: str,  # noqa: F811
) -> None:
    policy = load_policy(_policy(tmp_path, CHECKS))
    store = Store.open(db_url)
    try:
        start = datetime(2026, 9, 2, 9, tzinfo=UTC)
        assert check_status(store, policy, date(2026, 9, 15)) is None  # not due for 14 days
        assert remind_if_due(store, policy, start + timedelta(days=5), deliver=False) is None
        due_day = start + timedelta(days=14)
        sent = remind_if_due(store, policy, due_day, deliver=False)
        assert sent is not None and sent.term.name == "Autumn 2026"
        assert sent.missing == {"staff", "ks2", "early_years"}
        assert (
            remind_if_due(store, policy, due_day + timedelta(hours=3), deliver=False) is None
        )  # same day
        assert remind_if_due(store, policy, due_day + timedelta(days=1), deliver=False) is not None
        assert [(k, r) for k, _, r in _outbox(store)] == [
            (CHECK_DUE, ["dsl@test.example", "tech@test.example"]),
            (CHECK_DUE, ["dsl@test.example", "tech@test.example"]),
        ]
        for profile in ("staff", "ks2", "early_years"):
            record_and_alert(store, policy, _run(policy, due_day, profile), deliver=False)
        status = check_status(store, policy, (due_day + timedelta(days=2)).date())
        assert status is not None and status.done
        assert remind_if_due(store, policy, due_day + timedelta(days=2), deliver=False) is None
        assert len(_outbox(store)) == 2
    finally:
        store.dispose()


def test_no_reminder_without_anyone_to_tell(tmp_path: Path, db_url: str) -> None:  # noqa: F811
    policy = load_policy(_policy(tmp_path, CHECKS, email=False))
    store = Store.open(db_url)
    try:
        assert (
            remind_if_due(store, policy, datetime(2026, 10, 1, 9, tzinfo=UTC), deliver=False)
            is None
        )
        assert _outbox(store) == []
        # With an email channel but nobody named in checks.remind (or no checks: at all).
        for checks in ("checks:\n  suite: checks.yaml\n", ""):
            unnamed = load_policy(_policy(tmp_path / f"p{len(checks)}", checks))
            when = datetime(2026, 10, 1, 9, tzinfo=UTC)
            assert remind_if_due(store, unnamed, when, deliver=False) is None
        assert _outbox(store) == []
    finally:
        store.dispose()


def test_the_report_counts_what_was_stored_and_shows_the_trend(
    tmp_path: Path,
    db_url: str,  # noqa: F811
) -> None:
    policy = load_policy(_policy(tmp_path, CHECKS))
    store = Store.open(db_url)
    try:
        summer = datetime(2026, 5, 1, 10, tzinfo=UTC)
        autumn = datetime(2026, 10, 1, 10, tzinfo=UTC)
        record_and_alert(store, policy, _run(policy, summer, "ks2", False), deliver=False)
        record_and_alert(store, policy, _run(policy, autumn, "ks2"), deliver=False)
        failed = record_and_alert(
            store, policy, _run(policy, autumn, "staff", False), deliver=False
        )
        add_action(store, failed, "adult", "tech", "Adult list reloaded", autumn)
        term = next(t for t in policy.terms if t.name == "Autumn 2026")
        report = build_checks_report(store, policy, term)
        assert report.totals == {
            "runs": 2,
            "cases": 6,
            "passed": 5,
            "failed": 1,
            "errors": 0,
            "actions": 1,
            "devices": 1,
        }
        assert report.coverage == [("ipad", "ks2", 1, 3, 0, 0), ("ipad", "staff", 1, 2, 1, 0)]
        assert ("adult", 1, 1, 0) in report.categories
        assert [f["case"] for f in report.failures] == ["adult"]
        assert report.failures[0]["actions"][0].endswith("tech: Adult list reloaded")
        assert report.missing_profiles == ["early_years"]
        assert [t[0] for t in report.trend] == ["Summer 2026", "Autumn 2026"]
        assert report.trend[0][3:5] == (2, 1)
        files = write_checks_report(report, policy, tmp_path / "out")
        assert {f.name for f in files} >= {"checks.html", "results.csv", "trend.csv"}
        with (tmp_path / "out" / "results.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 6
        assert {r["url"] for r in rows if r["category"] == "child_sexual_abuse"} == {
            ILLEGAL_URL_SHOWN
        }
        html = (tmp_path / "out" / "checks.html").read_text()
        assert "Not yet checked this term: early_years" in html
        assert "Adult list reloaded" in html and "illegal.test" not in html
        assert isinstance(term, Term)
    finally:
        store.dispose()
