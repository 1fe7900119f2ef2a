"""The gateway escalates by itself: the escalation sweep is among the services' jobs,
which run it once they start; an alert nobody acknowledged for
15 school minutes reaches the deputy by email (a real SMTP server) without anyone asking."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from proxy_addons.alerts.dispatch import raise_alert
from proxy_addons.alerts.outbox import AlertOutbox
from proxy_addons.gateway.services import Services
from proxy_addons.store.schema import alerts
from tests.alerts.test_notify import SmtpServer
from tests.alerts.test_notify import plain_smtp_server as plain_smtp_server  # noqa: F401 (fixture)
from tests.alerts.test_routing_people import DEPUTY, concern, mail_since, people_policy_file

RAISED = datetime(2026, 3, 3, 10, 0, tzinfo=ZoneInfo("Europe/London"))  # a school Tuesday


def test_the_gateway_escalates_an_unacknowledged_alert_by_itself(
    tmp_path: Path,
    plain_smtp_server: SmtpServer,  # noqa: F811
) -> None:
    now = [RAISED]
    services = Services(clock=lambda: now[0])
    loaded = services.open(people_policy_file(tmp_path, plain_smtp_server.port), tmp_path, "")
    store = services.store
    assert store is not None
    raise_alert(AlertOutbox(store, clock=lambda: RAISED), loaded.policy, concern("pupil", "ks2"))
    seen = len(plain_smtp_server.mailbox.messages)
    now[0] = RAISED + timedelta(minutes=15)
    services.start()
    try:
        deadline = time.monotonic() + 60  # a bound for a slow machine, not a timing check
        while time.monotonic() < deadline:
            with store.connect() as conn:
                level = conn.scalar(sa.select(alerts.c.escalation_level))
            if level:
                break
            time.sleep(0.05)
    finally:
        services.stop()
    assert level == 1
    assert [to for to, _, _ in mail_since(plain_smtp_server, seen)] == [[DEPUTY]]
