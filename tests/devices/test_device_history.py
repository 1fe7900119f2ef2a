"""A device's history on both stores: every accepted report is kept (a refused one is not),
the reports are cut into spans of compliant / not compliant with the checks that failed in
each, and a period starts in the state the device was in. (The purge: tests/workflow/
test_retention.py.)"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from agent.report import parse_report
from proxy_addons.devices import enrolment, history, reports
from proxy_addons.store import Store
from proxy_addons.store.schema import device_reports
from tests.devices.test_device_api import report
from tests.pg import db_url  # noqa: F401  (a fixture)

KEY = b"enrol-secret-for-history"
T0 = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)
PASS = {"id": "firewall", "status": "pass", "reason": "nftables has rules"}


def check(check_id: str, status: str) -> dict[str, Any]:
    return {"id": check_id, "status": status, "reason": f"{check_id}: {status}"}


def send(store: Store, device_id: str, hours: float, *failing: str) -> None:
    """A report made `hours` after T0, failing `failing` (none: compliant)."""
    at = T0 + dt.timedelta(hours=hours)
    results = [PASS, *(check(c, "fail") for c in failing)]
    sent = report(device_id, at, results=results)
    reports.record_report(store, parse_report(sent), at, source="10.1.2.3")


def enrolled(url: str) -> tuple[Store, str]:
    store = Store.open(url)
    device_id, _ = enrolment.enrol(store, KEY.decode(), KEY, "lab-pc-07", T0)
    return store, device_id


def test_every_accepted_report_is_kept_and_a_refused_one_is_not(db_url: str) -> None:  # noqa: F811
    store, device_id = enrolled(db_url)
    send(store, device_id, 0)
    send(store, device_id, 1, "disk_encryption")
    with pytest.raises(reports.ReportRejected):
        send(store, device_id, 1, "disk_encryption")  # the same report again
    with store.connect() as conn:
        rows = conn.execute(sa.select(device_reports).order_by(device_reports.c.generated_at)).all()
    assert [(r.compliant, r.source) for r in rows] == [(True, "agent"), (False, "agent")]
    assert rows[1].generated_at == T0 + dt.timedelta(hours=1)
    assert rows[1].received_at == T0 + dt.timedelta(hours=1)
    assert [r["id"] for r in rows[1].results] == ["firewall", "disk_encryption"]


def test_reports_become_spans_with_the_checks_that_failed(db_url: str) -> None:  # noqa: F811
    store, device_id = enrolled(db_url)
    send(store, device_id, 0)
    send(store, device_id, 24)
    send(store, device_id, 48, "disk_encryption")
    send(store, device_id, 72, "screen_lock", "disk_encryption")
    send(store, device_id, 120)
    found = history.history(store, device_id, T0, T0 + dt.timedelta(days=30))
    assert [(s.compliant, s.reports, s.failing) for s in found] == [
        (True, 2, ()),
        (False, 2, ("disk_encryption", "screen_lock")),
        (True, 1, ()),
    ]
    bad = found[1]
    assert bad.since == T0 + dt.timedelta(hours=48)
    assert bad.until == T0 + dt.timedelta(hours=120)
    assert bad.length(T0) == 72 * 3600  # ended: `now` doesn't matter
    assert found[-1].until is None and found[-1].last_report == T0 + dt.timedelta(hours=120)


def test_a_period_starts_in_the_state_the_device_was_in(db_url: str) -> None:  # noqa: F811
    store, device_id = enrolled(db_url)
    send(store, device_id, 0, "patches")
    send(store, device_id, 10, "patches")
    send(store, device_id, 100)
    start = T0 + dt.timedelta(hours=50)
    found = history.history(store, device_id, start, T0 + dt.timedelta(days=30))
    assert [(s.compliant, s.since, s.until) for s in found] == [
        (False, start, T0 + dt.timedelta(hours=100)),
        (True, T0 + dt.timedelta(hours=100), None),
    ]
    assert history.history(store, device_id, T0 - dt.timedelta(days=9), T0) == []


def test_a_report_dated_before_enrolment_starts_history_at_enrolment(db_url: str) -> None:  # noqa: F811
    """A flat CMOS battery (or a copied report) dates a report years back: its checks count,
    but the device's history must not gain months nobody saw (the term's figures read it)."""
    store, device_id = enrolled(db_url)
    at = T0 - dt.timedelta(days=700)
    sent = report(device_id, at, results=[check("disk_encryption", "fail")])
    reports.record_report(store, parse_report(sent), T0 + dt.timedelta(hours=1), source="10.1.2.3")
    found = history.history(
        store, device_id, T0 - dt.timedelta(days=800), T0 + dt.timedelta(days=1)
    )
    assert [(s.compliant, s.since) for s in found] == [(False, T0)]
    with store.connect() as conn:
        row = conn.execute(sa.select(device_reports)).one()
    assert row.generated_at == T0 and row.received_at == T0 + dt.timedelta(hours=1)


def test_unknown_is_not_a_pass() -> None:
    results = [check("a", "pass"), check("b", "unknown"), check("c", "fail")]
    assert history.failing_of(results) == ("b", "c")
    assert history.spans([]) == []
