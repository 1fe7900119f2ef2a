"""Check runs, results and actions in the store, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.check_suite import CheckCase, Expect, Outcome, observe_error, observe_response
from proxy_addons.checks.records import (
    CaseResult,
    CheckRecordError,
    CheckRun,
    add_action,
    get_run,
    load_runs,
    profiles_covered,
    record_run,
    result_for,
    terms_with_runs,
)
from proxy_addons.store import Store
from tests.pg import db_url  # noqa: F401  (a fixture)

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def _run(profile: str = "ks2", term: str = "Autumn 2026", at: datetime = T0) -> CheckRun:
    blocked = CheckCase("adult-1", "http://adult.test/", "adult", frozenset(), Expect.BLOCKED)
    edu = CheckCase("edu-1", "http://edu.test/", "educational", frozenset(), Expect.ALLOWED)
    slow = CheckCase("slow-1", "http://slow.test/", "adult", frozenset(), Expect.BLOCKED)
    results = (
        result_for(
            blocked,
            observe_response(blocked.url, 403, {"X-Schoolgate-Reference": "SG-BBBB-CCCC"}, ""),
        ),
        result_for(
            edu, observe_response(edu.url, 403, {"X-Schoolgate-Reference": "SG-DDDD-FFFF"}, "")
        ),
        result_for(slow, observe_error("timed out")),
    )
    return CheckRun(
        started_at=at,
        finished_at=at + timedelta(seconds=5),
        started_by="it.support",
        source="gateway",
        profile=profile,
        results=results,
        suite="Termly",
        device_type="gateway",
        os="Linux",
        term=term,
    )


def test_a_run_is_stored_and_read_back_exactly(db_url: str) -> None:  # noqa: F811
    store = Store.open(db_url)
    try:
        run = _run()
        run_id = record_run(store, run)
        stored = get_run(store, run_id)
        assert stored is not None
        assert stored.run == run
        assert (stored.passed, stored.failed, stored.errors) == (1, 1, 1)
        assert [r.outcome for r in stored.run.results] == [
            Outcome.PASS,
            Outcome.FAIL,
            Outcome.ERROR,
        ]
        assert stored.run.results[1].block_reference == "SG-DDDD-FFFF"
        assert stored.run.results[2].evidence == "timed out"
        assert profiles_covered(store, "Autumn 2026") == {"ks2"}
    finally:
        store.dispose()


def test_actions_attach_to_a_run_or_a_case(db_url: str) -> None:  # noqa: F811
    store = Store.open(db_url)
    try:
        run_id = record_run(store, _run())
        add_action(store, run_id, "edu-1", "it.support", "Added edu.test to the allow list", T0)
        add_action(store, run_id, None, "mrs.patel", "Reviewed with the IT provider", T0)
        with pytest.raises(CheckRecordError, match="no case"):
            add_action(store, run_id, "nope", "it.support", "x")
        with pytest.raises(CheckRecordError, match="no check run"):
            add_action(store, run_id + 100, None, "it.support", "x")
        with pytest.raises(CheckRecordError, match="text"):
            add_action(store, run_id, None, "it.support", "  ")
        stored = get_run(store, run_id)
        assert stored is not None
        assert [(a.case_id, a.author) for a in stored.actions] == [
            ("edu-1", "it.support"),
            (None, "mrs.patel"),
        ]
    finally:
        store.dispose()


def test_listing_by_term_newest_first_and_the_terms_in_order(db_url: str) -> None:  # noqa: F811
    store = Store.open(db_url)
    try:
        a = record_run(store, _run("ks2", "Summer 2026", T0 - timedelta(days=150)))
        b = record_run(store, _run("ks2", "Autumn 2026", T0))
        c = record_run(store, _run("staff", "Autumn 2026", T0 + timedelta(hours=1)))
        assert [s.id for s in load_runs(store)] == [c, b, a]
        assert [s.id for s in load_runs(store, term="Autumn 2026")] == [c, b]
        assert [t for t, _ in terms_with_runs(store)] == ["Summer 2026", "Autumn 2026"]
    finally:
        store.dispose()


def test_a_run_must_name_who_ran_it_and_where_from(db_url: str) -> None:  # noqa: F811
    store = Store.open(db_url)
    try:
        from dataclasses import replace

        with pytest.raises(CheckRecordError, match="member of staff"):
            record_run(store, replace(_run(), started_by=" "))
        with pytest.raises(CheckRecordError, match="source"):
            record_run(store, replace(_run(), source="phone"))
        with pytest.raises(CheckRecordError, match="time zone"):
            record_run(store, replace(_run(), started_at=datetime(2026, 1, 1)))
        assert load_runs(store) == []
        empty = replace(_run(), results=())
        stored = get_run(store, record_run(store, empty))
        assert stored is not None and stored.run.results == ()
        assert isinstance(_run().results[0], CaseResult)
    finally:
        store.dispose()
