"""The gateway counts the daily totals by itself: once the services start, every finished day
the access log holds is in `daily_totals`, and the annual review's reminder is raised."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from proxy_addons.gateway.services import Services
from proxy_addons.record import access_records, access_store, daily_totals
from proxy_addons.store.schema import alerts
from proxy_addons.workflow import audit, reviews
from tests.conftest import ROOT

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_the_gateway_counts_finished_days_and_reminds_of_the_review(tmp_path: Path) -> None:
    services = Services(clock=lambda: NOW)
    services.open(ROOT / "tests/data/policy/school.yaml", tmp_path, "")
    store = services.store
    assert store is not None
    decision = {"action": "block", "reason": "rule", "profile": "ks2", "host": "chatter.test"}
    at = NOW - timedelta(days=2)
    access_store.write_rows(store, [access_records.build(decision | {"category": "social"}, at)])
    # In service for longer than a new install's grace: the first review is due.
    began = NOW - timedelta(days=reviews.FIRST_REVIEW_DAYS + 1)
    with store.begin() as conn:
        audit.append(conn, actor="it", action="policy.loaded", subject="p", detail={}, at=began)
    services.start()
    try:
        deadline = time.monotonic() + 60  # a bound for a slow machine, not a timing check
        while time.monotonic() < deadline:
            counted = daily_totals.totalled_days(store, date(2026, 12, 1), date(2026, 12, 7))
            with store.connect() as conn:
                reminded = conn.execute(
                    sa.select(sa.func.count()).where(alerts.c.kind == "review_due")
                ).scalar_one()
            if len(counted) == 2 and reminded:
                break
            time.sleep(0.05)
    finally:
        services.stop()
    assert counted == {date(2026, 12, 5), date(2026, 12, 6)}  # not today: it isn't over
    assert reminded == 1
