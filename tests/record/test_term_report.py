"""The governors' termly report: counts by category and profile, unblocks with their
reasons, and no pupil named anywhere in it."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

from proxy_addons.cli.main import main
from proxy_addons.core.policy.load import load_policy
from proxy_addons.store import Store, store_url
from proxy_addons.store.schema import access_log, alert_outbox, unblocks
from tests.conftest import ROOT

POLICY = ROOT / "tests/data/policy/school.yaml"  # one term: "Whole year" 2026-2027
IN_TERM = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
AFTER = datetime(2028, 2, 1, 10, 0, tzinfo=UTC)


def _log(at: datetime, user: str, profile: str, decision: str, category: str | None) -> dict:  # type: ignore[type-arg]
    return dict(
        at=at,
        username=user,
        profile=profile,
        ip="10.10.3.7",
        host="chatter.test",
        url="https://chatter.test/",
        decision=decision,
        reason="rule",
        category=category,
        stage="request",
    )


def _seed(store: Store) -> None:
    rows = [
        _log(IN_TERM, "amelia.k", "ks2", "block", "social"),
        _log(IN_TERM + timedelta(minutes=1), "amelia.k", "ks2", "block", "social"),
        _log(IN_TERM, "ben.t", "early_years", "block", "games"),
        _log(IN_TERM, "amelia.k", "ks2", "allow", None),
        _log(AFTER, "amelia.k", "ks2", "block", "social"),  # outside the term
    ]
    alert = dict(
        fold_key="f" * 64,
        kind="risk_phrase",
        severity=5,
        audience="safeguarding",
        event={},
        recipients=[],
        occurrences=2,
        first_at=IN_TERM,
        last_at=IN_TERM,
        fold_until=IN_TERM,
        status="sent",
        next_attempt_at=IN_TERM,
    )
    with store.begin() as conn:
        conn.execute(access_log.insert(), rows)
        # The same alert on two channels counts once.
        conn.execute(
            alert_outbox.insert(), [dict(alert, channel="email"), dict(alert, channel="webhook")]
        )
        conn.execute(
            unblocks.insert().values(
                id="UB-BBBBBB",
                scope="domain",
                target="chatter.test",
                audience_kind="users",
                audience=["amelia.k", "ben.t"],
                starts_at=IN_TERM,
                ends_at=IN_TERM + timedelta(hours=1),
                reason="Year 6 debate on social media",
                requested_by="teacher",
                requested_at=IN_TERM,
                status="expired",
                decided_by="dsl",
                decided_at=IN_TERM,
            )
        )


def test_report_counts_the_term_and_names_no_pupil(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    var = tmp_path / "var"
    store = Store.open(store_url(var))
    _seed(store)
    store.dispose()
    out = tmp_path / "report"
    code = main(
        [
            "report",
            "--term",
            "whole year",
            "--out",
            str(out),
            "--policy",
            str(POLICY),
            "--var",
            str(var),
        ]
    )
    assert code == 0
    html = (out / "report.html").read_text()
    blocks = list(csv.reader((out / "blocks.csv").open()))
    assert blocks[0] == ["category", "profile", "blocks"]
    assert ["social", "ks2", "2"] in blocks and ["games", "early_years", "1"] in blocks
    assert list(csv.reader((out / "alerts.csv").open()))[1] == ["risk_phrase", "5", "1"]
    unblock_rows = list(csv.DictReader((out / "unblocks.csv").open()))
    assert unblock_rows[0]["audience"] == "2 user(s)"
    assert unblock_rows[0]["reason"] == "Year 6 debate on social media"
    assert "4 web requests checked" in html and "3 blocked" in html
    for text in [html, *(p.read_text() for p in out.glob("*.csv"))]:
        assert "amelia" not in text and "ben.t" not in text  # no pupil's name, in any file


def test_unknown_term_is_a_clear_error(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = main(
        ["report", "--term", "Autumn 1999", "--policy", str(POLICY), "--var", str(tmp_path)]
    )
    assert code == 1
    assert "No term called 'Autumn 1999'" in capsys.readouterr().err
    assert load_policy(POLICY).terms[0].name == "Whole year"
