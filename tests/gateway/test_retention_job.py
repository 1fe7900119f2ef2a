"""The gateway runs the retention purge by itself: once the services start (and then daily),
a row past its retention is gone from the store without anyone running a command."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from proxy_addons.gateway.services import Services
from proxy_addons.store.schema import seen_devices
from tests.conftest import ROOT

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_the_gateway_purges_old_rows_when_it_starts(tmp_path: Path) -> None:
    services = Services(clock=lambda: NOW)
    loaded = services.open(ROOT / "tests/data/policy/school.yaml", tmp_path, "")
    store = services.store
    assert store is not None
    days = loaded.policy.retention.seen_devices_days
    old, young = NOW - timedelta(days=days + 1), NOW - timedelta(days=days - 1)
    with store.begin() as conn:
        for mac, seen in (("aa:00:00:00:00:01", old), ("aa:00:00:00:00:02", young)):
            conn.execute(seen_devices.insert().values(mac=mac, first_seen=seen, last_seen=seen))
    services.start()
    try:
        deadline = time.monotonic() + 60  # a bound for a slow machine, not a timing check
        while time.monotonic() < deadline:
            with store.connect() as conn:
                macs = set(conn.scalars(sa.select(seen_devices.c.mac)))
            if len(macs) == 1:
                break
            time.sleep(0.05)
    finally:
        services.stop()
    assert macs == {"aa:00:00:00:00:02"}
