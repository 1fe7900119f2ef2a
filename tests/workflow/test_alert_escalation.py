"""Escalation with a controlled clock (no sleeping), on SQLite and PostgreSQL, delivered to a
real SMTP server: a serious alert nobody acknowledged goes to the deputy after 15 school
minutes, then to the headteacher; an acknowledged one, a severity-3 one and one whose
clock stopped for the weekend don't (yet); a concern about staff escalates to the chair of
governors, never to the deputies; two gateways sharing the store send each step once; each
step is in the audit trail."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from proxy_addons.alerts import escalation
from proxy_addons.alerts.dispatch import raise_alert
from proxy_addons.alerts.events import Event
from proxy_addons.alerts.notify.from_policy import build_channels
from proxy_addons.alerts.outbox import AlertOutbox
from proxy_addons.core.policy.model import Policy
from proxy_addons.store import Store
from proxy_addons.store.schema import alerts
from proxy_addons.workflow import audit
from proxy_addons.workflow.alert_escalation import ESCALATED, EscalationSweep
from tests.alerts.test_notify import SmtpServer
from tests.alerts.test_notify import plain_smtp_server as plain_smtp_server  # noqa: F401 (fixture)
from tests.alerts.test_routing_people import (
    CHAIR,
    DEPUTY,
    DSL,
    HEAD,
    MONITORING,
    concern,
    mail_since,
    people_policy,
)
from tests.pg import db_url  # noqa: F401  (a fixture)

LONDON = ZoneInfo("Europe/London")
TUESDAY_10 = datetime(2026, 3, 3, 10, 0, tzinfo=LONDON)  # the test policy: term all year


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def at(self, when: datetime) -> None:
        self.now = when


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:  # noqa: F811
    s = Store.open(db_url)
    yield s
    s.dispose()


class School:
    """One gateway's view: the policy, a clock the test moves, raising and sweeping."""

    def __init__(self, store: Store, policy: Policy, clock: Clock) -> None:
        self.store, self.policy, self.clock = store, policy, clock
        self.sweep = EscalationSweep(lambda: store, lambda: policy, clock)

    def raise_(self, event: Event) -> int:
        outbox = AlertOutbox(self.store, clock=self.clock)
        outbox.channels = build_channels(self.policy)
        outbox.deliver_now(raise_alert(outbox, self.policy, event))
        with self.store.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.max(alerts.c.id))) or 0)

    def at(self, when: datetime) -> list[tuple[int, int]]:
        """Move the clock to `when` and sweep; (alert id, level) of each step taken."""
        self.clock.at(when)
        return [(e.step.alert_id, e.step.level) for e in self.sweep.sweep()]

    def row(self, alert_id: int) -> Any:
        with self.store.connect() as conn:
            return conn.execute(sa.select(alerts).where(alerts.c.id == alert_id)).one()


def school(tmp_path: Path, store: Store, smtp: SmtpServer, start: datetime, **kw: Any) -> School:
    return School(store, people_policy(tmp_path, smtp.port, **kw), Clock(start))


def test_an_unacknowledged_alert_goes_to_the_deputy_then_the_headteacher(
    tmp_path: Path,
    store: Store,
    plain_smtp_server: SmtpServer,  # noqa: F811
) -> None:
    gw = school(tmp_path, store, plain_smtp_server, TUESDAY_10)
    alert = gw.raise_(concern("pupil", "ks2", severity=4))
    seen = len(plain_smtp_server.mailbox.messages)

    assert gw.at(TUESDAY_10 + timedelta(minutes=14, seconds=59)) == []
    assert gw.at(TUESDAY_10 + timedelta(minutes=15)) == [(alert, escalation.DEPUTIES)]
    [(to, subject, body)] = mail_since(plain_smtp_server, seen)
    assert to == [DEPUTY]
    assert "Not acknowledged after 15 minutes" in subject
    assert "not acknowledged after 15 minutes in school hours" in body.lower()
    assert f"/alerts/{alert}" in body and "how to k1ll mys3lf" in body
    row = gw.row(alert)
    assert (row.escalation_level, row.escalated_at) == (1, TUESDAY_10 + timedelta(minutes=15))

    assert gw.at(TUESDAY_10 + timedelta(minutes=29)) == []
    assert gw.at(TUESDAY_10 + timedelta(minutes=30)) == [(alert, escalation.HEADTEACHER)]
    assert gw.at(TUESDAY_10 + timedelta(hours=5)) == []  # the headteacher is the last step
    [_, (to, subject, _)] = mail_since(plain_smtp_server, seen)
    assert to == [HEAD] and "Not acknowledged after 30 minutes" in subject

    assert gw.row(alert).recipients == [f"email:{a}" for a in (DEPUTY, DSL, HEAD)]
    trail = [r for r in audit.records(store) if r.action == ESCALATED]
    assert [(r.subject, r.detail["level"], r.detail["to"]) for r in trail] == [
        (f"alert:{alert}", 1, ["mr.jones"]),
        (f"alert:{alert}", 2, ["mrs.okafor"]),
    ]
    assert audit.verify(store).ok


def test_an_acknowledged_alert_and_a_severity_3_one_never_escalate(
    tmp_path: Path,
    store: Store,
    plain_smtp_server: SmtpServer,  # noqa: F811
) -> None:
    gw = school(tmp_path, store, plain_smtp_server, TUESDAY_10)
    picked_up = gw.raise_(concern("pupil", "ks2", severity=5))
    mild = gw.raise_(concern("pupil2", "ks2", severity=3))
    with store.begin() as conn:
        conn.execute(
            alerts.update()
            .where(alerts.c.id == picked_up)
            .values(state="acknowledged", acknowledged_by="mrs.patel")
        )
    seen = len(plain_smtp_server.mailbox.messages)
    assert gw.at(TUESDAY_10 + timedelta(days=3)) == []
    assert mail_since(plain_smtp_server, seen) == []
    assert (gw.row(picked_up).escalation_level, gw.row(mild).escalation_level) == (0, 0)


def test_the_clock_stops_for_the_weekend(
    tmp_path: Path,
    store: Store,
    plain_smtp_server: SmtpServer,  # noqa: F811
) -> None:
    friday = datetime(2026, 3, 6, 16, 55, tzinfo=LONDON)
    monday = datetime(2026, 3, 9, 8, 0, tzinfo=LONDON)
    gw = school(tmp_path, store, plain_smtp_server, friday)
    alert = gw.raise_(concern("pupil", "ks2", severity=5))
    assert gw.at(friday + timedelta(minutes=20)) == []
    assert gw.at(monday + timedelta(minutes=9)) == []
    assert gw.at(monday + timedelta(minutes=10)) == [(alert, escalation.DEPUTIES)]


def test_with_no_deputy_the_first_step_is_the_headteacher(
    tmp_path: Path,
    store: Store,
    plain_smtp_server: SmtpServer,  # noqa: F811
) -> None:
    monitoring = MONITORING.replace("  deputies: [mr.jones]\n", "")
    gw = school(tmp_path, store, plain_smtp_server, TUESDAY_10, monitoring=monitoring)
    alert = gw.raise_(concern("pupil", "ks2"))
    seen = len(plain_smtp_server.mailbox.messages)
    assert gw.at(TUESDAY_10 + timedelta(minutes=15)) == [(alert, escalation.HEADTEACHER)]
    assert [to for to, _, _ in mail_since(plain_smtp_server, seen)] == [[HEAD]]


def test_a_concern_about_staff_escalates_to_the_chair_never_to_the_list(
    tmp_path: Path,
    store: Store,
    plain_smtp_server: SmtpServer,  # noqa: F811
) -> None:
    gw = school(tmp_path, store, plain_smtp_server, TUESDAY_10)
    seen = len(plain_smtp_server.mailbox.messages)
    alert = gw.raise_(concern("mr.jones", "staff"))  # a deputy, on the safeguarding list
    assert gw.at(TUESDAY_10 + timedelta(minutes=15)) == [(alert, escalation.HEADTEACHER)]
    assert gw.at(TUESDAY_10 + timedelta(hours=2)) == []
    sent = [to for to, _, _ in mail_since(plain_smtp_server, seen)]
    assert sent == [[HEAD], [CHAIR]]
    assert all(DEPUTY not in to and DSL not in to for to in sent)


def test_two_gateways_sharing_the_store_send_each_step_once(
    tmp_path: Path,
    db_url: str,  # noqa: F811
    plain_smtp_server: SmtpServer,  # noqa: F811
) -> None:
    first, second = Store.open(db_url), Store.open(db_url)
    try:
        policy = people_policy(tmp_path, plain_smtp_server.port)
        a = School(first, policy, Clock(TUESDAY_10))
        b = School(second, policy, Clock(TUESDAY_10))
        alerts_raised = [a.raise_(concern(f"pupil{i}", "ks2")) for i in range(3)]
        seen = len(plain_smtp_server.mailbox.messages)
        due = TUESDAY_10 + timedelta(minutes=15)

        # Gateway a read what is due, gateway b escalated it meanwhile: a's claim fails.
        with first.connect() as conn:
            steps = escalation.due(conn, policy, due)
        assert b.at(due) == [(i, escalation.DEPUTIES) for i in alerts_raised]
        with first.begin() as conn:
            assert not any(escalation.claim(conn, step, due) for step in steps)

        # Both sweep at the same moment, in threads, for the next step: each taken once.
        later = due + timedelta(minutes=15)
        a.clock.at(later)
        b.clock.at(later)
        taken: list[tuple[int, int]] = []
        threads = [
            threading.Thread(
                target=lambda g=g: taken.extend(
                    (e.step.alert_id, e.step.level) for e in g.sweep.sweep()
                )
            )
            for g in (a, b)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(taken) == [(i, escalation.HEADTEACHER) for i in alerts_raised]
        sent = [to for to, _, _ in mail_since(plain_smtp_server, seen)]
        assert sent == [[DEPUTY]] * 3 + [[HEAD]] * 3
        steps_audited = [r for r in audit.records(first) if r.action == ESCALATED]
        assert len(steps_audited) == 6 and audit.verify(first).ok
    finally:
        first.dispose()
        second.dispose()
