"""Every alert is kept in `alerts` with its state, apart from the outbox that delivers it:
even with no channel to send it on, repeats folded, and its message linking to its page."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from proxy_addons.alerts.alert_rows import ACKNOWLEDGED, NEW
from proxy_addons.alerts.dispatch import raise_alert
from proxy_addons.alerts.events import Audience, Event
from proxy_addons.alerts.outbox import AlertOutbox
from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.policy.model import EmailChannel, Policy
from proxy_addons.store import Store
from proxy_addons.store.schema import alert_outbox, alerts
from tests.pg import db_url  # noqa: F401  (a fixture)

EXAMPLE = Path(__file__).resolve().parents[2] / "policies" / "school.yaml"
T0 = datetime(2026, 12, 8, 10, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:  # noqa: F811
    s = Store.open(db_url)
    yield s
    s.dispose()


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(EXAMPLE)


def with_email(policy: Policy) -> Policy:
    email = EmailChannel("127.0.0.1", 2525, False, None, None, "schoolgate@oakfield.example")
    return replace(policy, notifications=replace(policy.notifications, email=email))


def pupil_event(key: str = "risk|pupil7", severity: int = 5) -> Event:
    return Event(
        kind="risk_phrase",
        severity=severity,
        audience=Audience.SAFEGUARDING,
        summary="Risk phrase in a search",
        fields={"user": "Pupil7", "device": "10.10.3.7", "search": "how to hurt myself"},
        fold_key=key,
        at=T0,
    )


def alert_rows(store: Store) -> list[Any]:
    with store.connect() as conn:
        return list(conn.execute(sa.select(alerts).order_by(alerts.c.id)))


def test_an_alert_is_kept_even_with_no_channel_to_send_it(store: Store, policy: Policy) -> None:
    assert policy.notifications.email is None  # the example sends nowhere until set up
    outbox = AlertOutbox(store, clock=Clock())
    assert raise_alert(outbox, policy, pupil_event()) == []
    [row] = alert_rows(store)
    assert (row.state, row.kind, row.severity, row.audience) == (
        NEW,
        "risk_phrase",
        5,
        "safeguarding",
    )
    assert (row.username, row.ip, row.occurrences, row.recipients) == ("pupil7", "10.10.3.7", 1, [])
    assert row.event["fields"]["search"] == "how to hurt myself"


def test_repeats_fold_until_someone_acknowledges(store: Store, policy: Policy) -> None:
    clock = Clock()
    outbox = AlertOutbox(store, clock=clock)
    raise_alert(outbox, policy, pupil_event(severity=4))
    clock.now += timedelta(minutes=3)
    raise_alert(outbox, policy, pupil_event(severity=5))
    [row] = alert_rows(store)
    assert (row.occurrences, row.severity, row.last_seen_at) == (2, 5, clock.now)
    with store.begin() as conn:
        conn.execute(alerts.update().values(state=ACKNOWLEDGED))
    clock.now += timedelta(minutes=1)
    raise_alert(outbox, policy, pupil_event())
    first, second = alert_rows(store)
    assert (first.occurrences, second.occurrences, second.state) == (2, 1, NEW)
    # Outside the fold window since it was last seen, a repeat is news again.
    clock.now += timedelta(minutes=policy.monitoring.fold_minutes + 1)
    raise_alert(outbox, policy, pupil_event())
    assert [r.occurrences for r in alert_rows(store)] == [2, 1, 1]


def test_a_technical_alert_names_nobody(store: Store, policy: Policy) -> None:
    event = Event(
        kind="high_risk_block",
        severity=3,
        audience=Audience.TECHNICAL,
        summary="Blocked: adult content",
        fields={"user_ref": "u-0123456789ab", "device_ref": "d-ba9876543210", "profile": "ks2"},
        fold_key="block|u-0123456789ab",
    )
    raise_alert(AlertOutbox(store, clock=Clock()), policy, event)
    [row] = alert_rows(store)
    assert (row.audience, row.username, row.ip, row.device_id) == ("technical", None, None, None)


def test_the_message_links_to_the_alerts_page(store: Store, policy: Policy) -> None:
    ids = raise_alert(AlertOutbox(store, clock=Clock()), with_email(policy), pupil_event())
    assert ids
    [row] = alert_rows(store)
    with store.connect() as conn:
        sent = list(conn.execute(sa.select(alert_outbox.c.event, alert_outbox.c.recipients)))
    assert sent and all(
        e["fields"]["console"] == f"{policy.unblocks.web_url}/alerts/{row.id}" for e, _ in sent
    )
    emails = {address for _, recipients in sent for address in recipients}
    assert row.recipients == sorted(f"email:{a}" for a in emails)
