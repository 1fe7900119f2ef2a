"""The retention purge on both stores: for every table that names a person, rows just past
its retention go and rows just inside it stay, as do rows someone must still act on (an
open alert, incident or report); big tables go in batches; one table failing leaves the
others purged and is counted."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.policy.model import Policy, Retention
from proxy_addons.devices import enrolment, history
from proxy_addons.record import metrics
from proxy_addons.store import Store
from proxy_addons.store.schema import (
    access_log,
    alert_outbox,
    alerts,
    check_actions,
    check_results,
    check_runs,
    daily_totals,
    device_reports,
    incident_actions,
    incidents,
    portal_form_uses,
    reports,
    seen_devices,
    unblocks,
    web_sessions,
)
from proxy_addons.workflow import incident_log, retention
from tests.conftest import ROOT
from tests.devices import test_device_history as history_test
from tests.pg import db_url  # noqa: F401  (a fixture)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
KEEP = Retention(
    alerts_days=100,
    incidents_days=200,
    reports_days=30,
    unblocks_days=60,
    check_records_days=300,
    seen_devices_days=10,
    web_sessions_days=5,
    daily_totals_days=1000,
    device_reports_days=40,
)
LOG_DAYS = 20
_BASE = load_policy(ROOT / "tests/data/policy/school.yaml")
POLICY: Policy = dataclasses.replace(
    _BASE,
    retention=KEEP,
    monitoring=dataclasses.replace(_BASE.monitoring, retention_days=LOG_DAYS),
)


def past(days: int) -> datetime:
    """A moment just older than `days` days (past the boundary)."""
    return NOW - timedelta(days=days, minutes=1)


def within(days: int) -> datetime:
    """A moment just younger than `days` days (inside the boundary)."""
    return NOW - timedelta(days=days) + timedelta(minutes=1)


def access_row(at: datetime, user: str | None = "pupil.a", **more: Any) -> dict[str, Any]:
    row = {
        "at": at,
        "username": user,
        "profile": "ks2",
        "ip": "10.20.1.5",
        "host": "example.test",
        "url": "https://example.test/",
        "decision": "block",
        "reason": "category",
        "stage": "request",
    }
    return row | more


def alert_row(at: datetime, state: str, user: str = "pupil.a", **more: Any) -> dict[str, Any]:
    row = {
        "raised_at": at,
        "last_seen_at": at,
        "kind": "blocked",
        "severity": 4,
        "audience": "safeguarding",
        "category": "self_harm",
        "username": user,
        "summary": f"{user} was blocked",
        "event": {"kind": "blocked", "fields": {"user": user}},
        "fold_key": "f" * 64,
        "recipients": ["email:dsl@school.test"],
        "state": state,
    }
    return row | more


def incident_row(at: datetime, state: str, people: list[str], **more: Any) -> dict[str, Any]:
    row = {
        "occurred_at": at,
        "location": "ICT suite",
        "description": "searched for something worrying",
        "action_taken": "spoke to the pupil",
        "people": people,
        "recorded_by": "mrs.patel",
        "recorded_at": at,
        "state": state,
    }
    return row | more


def report_row(at: datetime, state: str, user: str = "pupil.a", **more: Any) -> dict[str, Any]:
    row = {
        "at": at,
        "kind": "report",
        "reference": "SG-AAAA-BBBB",
        "url": "https://example.test/page",
        "text": "this should not be blocked",
        "username": user,
        "ip": "10.20.1.5",
        "profile": "ks2",
        "state": state,
    }
    return row | more


def unblock_row(uid: str, ends: datetime, **more: Any) -> dict[str, Any]:
    row = {
        "id": uid,
        "scope": "domain",
        "target": "example.test",
        "audience_kind": "user",
        "audience": ["pupil.a"],
        "starts_at": ends - timedelta(hours=1),
        "ends_at": ends,
        "reason": "a lesson on the Romans",
        "requested_by": "mr.teacher",
        "requested_at": ends - timedelta(hours=2),
        "status": "expired",
    }
    return row | more


def check_run_row(at: datetime, by: str = "it.support") -> dict[str, Any]:
    return {
        "started_at": at,
        "finished_at": at,
        "started_by": by,
        "source": "gateway",
        "profile": "ks2",
        "suite": "termly",
        "passed": 1,
        "failed": 0,
        "errors": 0,
    }


def outbox_row(status: str, fold_until: datetime) -> dict[str, Any]:
    return {
        "channel": "email",
        "fold_key": "f" * 64,
        "kind": "blocked",
        "severity": 4,
        "audience": "safeguarding",
        "event": {},
        "recipients": [],
        "first_at": fold_until,
        "last_at": fold_until,
        "fold_until": fold_until,
        "status": status,
        "next_attempt_at": fold_until,
    }


def insert(conn: sa.Connection, table: sa.Table, row: dict[str, Any]) -> Any:
    """Insert `row`, returning its new id (or None for tables without one)."""
    result = conn.execute(table.insert().values(**row))
    key = result.inserted_primary_key
    return key[0] if key else None


def seed(store: Store) -> dict[str, Any]:
    """Rows on both sides of every table's boundary; returns the ids that must stay."""
    stay: dict[str, Any] = {}
    with store.begin() as conn:
        insert(conn, access_log, access_row(past(LOG_DAYS)))
        stay["access_log"] = {insert(conn, access_log, access_row(within(LOG_DAYS)))}

        # Alerts: old and closed goes; old but open, young, or under an open incident stays.
        insert(conn, alerts, alert_row(past(100), "closed"))
        kept_alerts = {
            insert(conn, alerts, alert_row(past(100), "new")),
            insert(conn, alerts, alert_row(past(100), "acknowledged")),
            insert(conn, alerts, alert_row(within(100), "closed")),
        }
        under_open = insert(conn, alerts, alert_row(past(100), "closed"))
        linked_from_open = insert(conn, alerts, alert_row(past(100), "closed"))
        kept_alerts |= {under_open, linked_from_open}
        stay["alerts"] = kept_alerts

        # Incidents: closed and old goes, with its actions; open or young stays.
        gone = insert(conn, incidents, incident_row(past(200), "closed", ["pupil.a"]))
        insert(conn, incident_actions, action_row(gone))
        open_old = insert(
            conn,
            incidents,
            incident_row(past(200), "open", ["pupil.a"], alert_id=linked_from_open),
        )
        young = insert(conn, incidents, incident_row(within(200), "closed", ["pupil.b"]))
        conn.execute(alerts.update().where(alerts.c.id == under_open).values(incident_id=open_old))
        kept_action = insert(conn, incident_actions, action_row(open_old))
        stay["incidents"] = {open_old, young}
        stay["incident_actions"] = {kept_action}

        insert(conn, reports, report_row(past(30), "closed"))
        stay["reports"] = {
            insert(conn, reports, report_row(past(30), "new")),
            insert(conn, reports, report_row(within(30), "closed")),
        }

        insert(conn, unblocks, unblock_row("UB-OLD001", past(60)))
        insert(conn, unblocks, unblock_row("UB-YOUNG1", within(60)))
        stay["unblocks"] = {"UB-YOUNG1"}

        old_run = insert(conn, check_runs, check_run_row(past(300)))
        young_run = insert(conn, check_runs, check_run_row(within(300)))
        for run in (old_run, young_run):
            insert(conn, check_results, result_row(run))
            insert(conn, check_actions, check_action_row(run))
        stay["check_runs"] = {young_run}

        for mac, seen in (("aa:00:00:00:00:01", past(10)), ("aa:00:00:00:00:02", within(10))):
            insert(conn, seen_devices, {"mac": mac, "first_seen": seen, "last_seen": seen})
        stay["seen_devices"] = {"aa:00:00:00:00:02"}

        sessions = (
            ("expired", NOW - timedelta(days=1), NOW - timedelta(minutes=1)),
            ("too-old", past(5), NOW + timedelta(hours=1)),
            ("live", within(5), NOW + timedelta(hours=1)),
        )
        for key, created, expires in sessions:
            row = {"id_hash": key, "username": "mrs.patel", "created_at": created}
            insert(conn, web_sessions, row | {"expires_at": expires})
        stay["web_sessions"] = {"live"}

        for key, used in (("spent-long-ago", past(1)), ("spent-now", NOW)):
            insert(conn, portal_form_uses, {"token_hash": key, "used_at": used})
        stay["portal_form_uses"] = {"spent-now"}

        insert(conn, alert_outbox, outbox_row("sent", NOW - timedelta(minutes=1)))
        stay["alert_outbox"] = {
            insert(conn, alert_outbox, outbox_row("sent", NOW + timedelta(minutes=5))),
            insert(conn, alert_outbox, outbox_row("pending", NOW - timedelta(days=9))),
        }

        for day in (past(1000).date() - timedelta(days=1), within(1000).date()):
            insert(conn, daily_totals, totals_row(day))
        stay["daily_totals"] = {within(1000).date()}
    device_id, _ = enrolment.enrol(store, "secret", b"secret", "lab-pc-07", past(400))
    with store.begin() as conn:
        insert(conn, device_reports, device_report_row(device_id, past(40)))
        stay["device_reports"] = {
            insert(conn, device_reports, device_report_row(device_id, within(40)))
        }
    return stay


def device_report_row(device_id: str, at: datetime) -> dict[str, Any]:
    row = {"device_id": device_id, "generated_at": at, "received_at": at, "compliant": True}
    return row | {"results": [{"id": "firewall", "status": "pass"}], "source": "agent"}


def action_row(incident: int) -> dict[str, Any]:
    return {
        "incident_id": incident,
        "text": "tell the parents",
        "recorded_by": "mrs.patel",
        "recorded_at": NOW - timedelta(days=300),
    }


def result_row(run: int) -> dict[str, Any]:
    return {
        "run_id": run,
        "case_id": "adult",
        "url": "https://canary.test/",
        "category": "adult",
        "expected": "blocked",
        "outcome": "pass",
        "evidence": "blocked",
    }


def check_action_row(run: int) -> dict[str, Any]:
    return {"run_id": run, "at": NOW, "author": "it.support", "text": "nothing to do"}


def totals_row(day: date) -> dict[str, Any]:
    return {
        "day": day,
        "profile": "ks2",
        "category": "",
        "decision": "block",
        "reason": "category",
        "check_visit": False,
        "count": 3,
    }


def keys(store: Store, table: sa.Table) -> set[Any]:
    key = next(iter(table.primary_key.columns))
    with store.connect() as conn:
        return set(conn.scalars(sa.select(key)))


def kept_totals(store: Store) -> set[date]:
    """The daily totals seeded here that are left: the purge also counts the access log's
    recent days first (so that it never loses one), which adds days of its own."""
    return {day for day in keys(store, daily_totals) if day <= within(1000).date()}


def child_runs(store: Store, table: sa.Table) -> set[int]:
    with store.connect() as conn:
        return set(conn.scalars(sa.select(table.c.run_id)))


def test_each_table_keeps_only_what_its_retention_allows(db_url: str) -> None:  # noqa: F811
    store = Store.open(db_url)
    stay = seed(store)
    report = retention.purge(store, POLICY, NOW)
    assert report.failed == []
    for table in (
        access_log,
        alerts,
        incidents,
        incident_actions,
        reports,
        unblocks,
        check_runs,
        seen_devices,
        web_sessions,
        portal_form_uses,
        alert_outbox,
        device_reports,
    ):
        assert keys(store, table) == stay[table.name], table.name
    assert kept_totals(store) == stay["daily_totals"]
    (young_run,) = stay["check_runs"]
    assert child_runs(store, check_results) == child_runs(store, check_actions) == {young_run}
    assert report.removed == {
        "access_log": 1,
        "alerts": 1,
        "incidents": 1,
        "incident_actions": 1,
        "reports": 1,
        "unblocks": 1,
        "check_runs": 1,
        "check_results": 1,
        "check_actions": 1,
        "seen_devices": 1,
        "web_sessions": 2,
        "portal_form_uses": 1,
        "alert_outbox": 1,
        "daily_totals": 1,
        "device_reports": 1,
    }
    again = retention.purge(store, POLICY, NOW)
    assert set(again.removed.values()) == {0}


def test_an_alert_stays_while_its_closed_incident_is_kept(db_url: str) -> None:  # noqa: F811
    """Alerts are kept for less time than incidents; the alert an incident was opened from
    stays as long as the incident does: it is the incident's basis, and it alone says the
    incident is about a member of staff (the headteacher's alone): purged, the incident
    would show in the DSL team's log."""
    store = Store.open(db_url)
    with store.begin() as conn:
        concern = insert(conn, alerts, alert_row(past(150), "closed", audience="staff"))
        basis = insert(
            conn, incidents, incident_row(past(150), "closed", ["mr.x"], alert_id=concern)
        )
        conn.execute(alerts.update().where(alerts.c.id == concern).values(incident_id=basis))
    report = retention.purge(store, POLICY, NOW)
    assert report.removed["alerts"] == 0 and keys(store, alerts) == {concern}
    dsl_team = incident_log.listing(store, incident_log.Filter(staff=False))
    assert dsl_team == []  # still the headteacher's alone
    with store.begin() as conn:  # once the incident's own time is up, both go
        conn.execute(incidents.update().values(recorded_at=past(200)))
    retention.purge(store, POLICY, NOW)
    assert keys(store, incidents) == set()
    retention.purge(store, POLICY, NOW)  # the next day's: the alert rests on nothing now
    assert keys(store, alerts) == set() and keys(store, incidents) == set()
    store.dispose()


def test_a_dry_run_counts_what_would_go_and_removes_nothing(db_url: str) -> None:  # noqa: F811
    store = Store.open(db_url)
    seed(store)
    before = {t: keys(store, t) for t in (access_log, alerts, incidents, check_runs)}
    dry = retention.purge(store, POLICY, NOW, dry_run=True)
    assert dry.dry_run
    assert {t: keys(store, t) for t in before} == before
    real = retention.purge(store, POLICY, NOW)
    assert dry.removed == real.removed


def test_a_big_table_goes_in_batches(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setattr(retention, "BATCH", 3)
    store = Store.open(db_url)
    with store.begin() as conn:
        conn.execute(access_log.insert(), [access_row(past(LOG_DAYS)) for _ in range(10)])
        conn.execute(access_log.insert(), [access_row(within(LOG_DAYS)) for _ in range(2)])
        days = [past(1000).date() - timedelta(days=n) for n in range(1, 8)]
        conn.execute(daily_totals.insert(), [totals_row(day) for day in days])
    report = retention.purge(store, POLICY, NOW)
    assert report.removed["access_log"] == 10
    assert report.removed["daily_totals"] == 7
    assert len(keys(store, access_log)) == 2
    assert kept_totals(store) == set()


def test_one_table_failing_leaves_the_others_purged(db_url: str) -> None:  # noqa: F811
    store = Store.open(db_url)
    stay = seed(store)
    with store.begin() as conn:
        conn.execute(sa.text("DROP TABLE seen_devices"))
    labels = {"table": "seen_devices"}
    name = "schoolgate_retention_purge_failures_total"
    counted = metrics.REGISTRY.get_sample_value(name, labels) or 0.0
    report = retention.purge(store, POLICY, NOW)
    assert report.failed == ["seen_devices"]
    assert metrics.REGISTRY.get_sample_value(name, labels) == counted + 1
    assert "seen_devices" not in report.removed
    assert keys(store, alerts) == stay["alerts"]
    assert kept_totals(store) == stay["daily_totals"]


def test_the_access_log_keeps_a_day_not_yet_counted(
    db_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The governors' report reads the daily totals: a day the totals job never counted
    (it failed, or the gateway was upgraded) stays in the log until it is counted."""
    store = Store.open(db_url)
    with store.begin() as conn:
        old = insert(conn, access_log, access_row(past(LOG_DAYS)))
    monkeypatch.setattr(retention.daily_totals_job, "total_missing", lambda *a, **k: [])
    assert retention.purge(store, POLICY, NOW).removed["access_log"] == 0
    assert keys(store, access_log) == {old}
    monkeypatch.undo()
    assert retention.purge(store, POLICY, NOW).removed["access_log"] == 1
    with store.connect() as conn:
        counted = conn.scalar(
            sa.select(sa.func.sum(daily_totals.c.count)).where(
                daily_totals.c.day == past(LOG_DAYS).astimezone(POLICY.timezone).date(),
                daily_totals.c.decision == "block",
            )
        )
    assert counted == 1


def test_every_purged_table_has_a_metric_label() -> None:
    assert tuple(rule.name for rule in retention.rules(POLICY)) == retention.TABLES


def test_the_purge_drops_reports_past_their_retention(db_url: str) -> None:  # noqa: F811
    store, device_id = history_test.enrolled(db_url)
    history_test.send(store, device_id, 0, "patches")
    history_test.send(store, device_id, 24 * 10)
    base = _BASE
    assert base.retention.device_reports_days == 400  # the default: a school year and a term
    keep = dataclasses.replace(base.retention, device_reports_days=5)
    policy = dataclasses.replace(base, retention=keep)
    now = history_test.T0 + timedelta(days=10, minutes=1)
    done = retention.purge(store, policy, now)
    assert done.failed == [] and done.removed["device_reports"] == 1
    left = history.history(store, device_id, history_test.T0, now)
    assert [(s.compliant, s.since) for s in left] == [(True, history_test.T0 + timedelta(days=10))]
