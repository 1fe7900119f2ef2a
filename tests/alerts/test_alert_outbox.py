"""The alert outbox on SQLite and PostgreSQL, delivering to real receivers: a signed-webhook
HTTP server that can be made to fail, and an aiosmtpd SMTP server."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from proxy_addons.alerts.events import OUTBOX_STUCK, Audience, Event
from proxy_addons.alerts.notify.base import BaseChannel, Notification
from proxy_addons.alerts.notify.email import EmailChannel, SmtpSettings
from proxy_addons.alerts.notify.webhook import WebhookChannel, WebhookSettings
from proxy_addons.alerts.outbox import AlertOutbox
from proxy_addons.alerts.routing import Route
from proxy_addons.record import metrics
from proxy_addons.store import Store
from proxy_addons.store.schema import alert_outbox
from tests.alerts.test_notify import SECRET, SmtpServer, _Receiver, hook_url
from tests.alerts.test_notify import plain_smtp_server as plain_smtp_server  # noqa: F401 (fixture)
from tests.alerts.test_notify import receiver as receiver  # noqa: F401 (fixture)
from tests.pg import db_url  # noqa: F401  (a fixture)

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand (for fold windows measured in minutes)."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def event(
    key: str = "pupil|suicide", severity: int = 5, kind: str = "risk_phrase", **fields: str
) -> Event:
    return Event(
        kind=kind,
        severity=severity,
        audience=Audience.SAFEGUARDING,
        summary=f"Risk phrase in a search (severity {severity})",
        fields={"user": "pupil", "search": "how to k1ll mys3lf", **fields},
        fold_key=key,
        at=T0,
        timezone="Europe/London",
    )


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:  # noqa: F811
    s = Store.open(db_url)
    yield s
    s.dispose()


def webhook(server: _Receiver) -> WebhookChannel:
    return WebhookChannel(WebhookSettings(hook_url(server), SECRET, timeout=5))


def rows(store: Store) -> list[Any]:
    with store.connect() as conn:
        return list(conn.execute(sa.select(alert_outbox).order_by(alert_outbox.c.id)))


def payloads(server: _Receiver, *, valid_only: bool = True) -> list[dict[str, Any]]:
    return [json.loads(d.body) for d in server.deliveries if d.valid or not valid_only]


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def sample(name: str, channel: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, {"channel": channel}) or 0.0


HOOK = [Route("webhook")]


def test_repeats_fold_into_one_alert_with_a_count(
    store: Store,
    receiver: _Receiver,  # noqa: F811
) -> None:
    clock = Clock()
    outbox = AlertOutbox(store, clock=clock)
    outbox.channels = {"webhook": webhook(receiver)}

    first = outbox.enqueue(event(), HOOK, fold_minutes=10)
    clock.advance(minutes=1)
    again = outbox.enqueue(event(), HOOK, fold_minutes=10)
    clock.advance(minutes=1)
    outbox.enqueue(event(), HOOK, fold_minutes=10)
    other = outbox.enqueue(event(key="pupil2|suicide"), HOOK, fold_minutes=10)
    assert first == again and other != first
    assert outbox.deliver_due("webhook") == 2

    folded, single = payloads(receiver)
    assert folded["subject"].endswith("(x3)") and folded["data"]["occurrences"] == 3
    assert "Occurrences: 3, 2026-03-02 10:00:00 GMT to 2026-03-02 10:02:00 GMT" in folded["text"]
    assert single["data"]["occurrences"] == 1

    # Repeats after the first has gone are gathered until its window ends, then sent as one.
    clock.advance(minutes=1)
    outbox.enqueue(event(), HOOK, fold_minutes=10)
    clock.advance(minutes=2)
    outbox.enqueue(event(), HOOK, fold_minutes=10)
    assert outbox.deliver_due("webhook") == 0  # not yet: the window runs to 10:10
    clock.advance(minutes=6)  # 10:10
    assert outbox.deliver_due("webhook") == 1
    follow_up = payloads(receiver)[-1]
    assert follow_up["data"]["occurrences"] == 2
    assert follow_up["data"]["first_at"] == "2026-03-02T10:03:00+00:00"

    # After a quiet window, the next one goes at once again.
    clock.advance(minutes=25)
    outbox.enqueue(event(), HOOK, fold_minutes=10)
    assert outbox.deliver_due("webhook") == 1
    assert payloads(receiver)[-1]["data"]["occurrences"] == 1
    assert len(receiver.deliveries) == 4

    # fold_minutes 0: no folding at all.
    ids = [outbox.enqueue(event(key="x"), HOOK, fold_minutes=0)[0] for _ in range(3)]
    assert len(set(ids)) == 3


def test_channel_down_then_up_is_retried_with_backoff_and_delivered_once(
    store: Store,
    receiver: _Receiver,  # noqa: F811
) -> None:
    receiver.status = 503
    failed_before, sent_before = (
        sample("schoolgate_alerts_failed_total", "webhook"),
        sample("schoolgate_alerts_sent_total", "webhook"),
    )
    outbox = AlertOutbox(store, backoff_seconds=0.1, backoff_max_seconds=5)
    outbox.channels = {"webhook": webhook(receiver)}
    outbox.start(["webhook"])
    try:
        started = time.monotonic()
        outbox.enqueue(event(), HOOK, fold_minutes=10)
        wait_for(lambda: len(receiver.deliveries) >= 3)
        # Attempts at 0, 0.1 and 0.3 s: the waits doubled (test_backoff_doubles... has exact ones).
        assert time.monotonic() - started >= 0.3
        receiver.status = 200
        wait_for(lambda: rows(store)[0].status == "sent")
        time.sleep(0.3)  # nothing more goes out
    finally:
        outbox.stop()

    [row] = rows(store)
    assert row.attempts >= 2 and row.last_error is None
    assert all(d.valid for d in receiver.deliveries)  # every attempt signed
    assert len(receiver.deliveries) == row.attempts + 1  # then accepted once, and no more
    accepted = receiver.deliveries[-1]
    assert json.loads(accepted.body)["data"]["fields"]["search"] == "how to k1ll mys3lf"
    assert sample("schoolgate_alerts_failed_total", "webhook") - failed_before == row.attempts
    assert sample("schoolgate_alerts_sent_total", "webhook") - sent_before == 1
    assert sample("schoolgate_alerts_queued", "webhook") == 0


def test_backoff_doubles_up_to_the_maximum(store: Store) -> None:
    clock = Clock()
    outbox = AlertOutbox(store, clock=clock, backoff_seconds=5, backoff_max_seconds=30)
    dead = f"http://127.0.0.1:{_free_port()}/hook"
    outbox.channels = {"webhook": WebhookChannel(WebhookSettings(dead, SECRET, timeout=2))}
    outbox.enqueue(event(), HOOK, fold_minutes=10)
    waits = []
    for _ in range(5):
        assert outbox.deliver_due("webhook") == 0
        [row] = rows(store)
        waits.append((row.next_attempt_at - clock.now).total_seconds())
        clock.now = row.next_attempt_at
    assert waits == [5, 10, 20, 30, 30]
    assert "unreachable" in rows(store)[0].last_error


def test_pending_alerts_survive_a_restart(
    db_url: str,  # noqa: F811
    receiver: _Receiver,  # noqa: F811
) -> None:
    receiver.status = 503  # the receiving end is down while the first gateway runs
    first = AlertOutbox(Store.open(db_url), backoff_seconds=60)
    first.channels = {"webhook": webhook(receiver)}
    first.start(["webhook"])
    for n in range(3):
        first.enqueue(event(key=f"k{n}", n=str(n)), HOOK, fold_minutes=10)
    wait_for(lambda: len(receiver.deliveries) >= 3)
    first.stop()
    first.store.dispose()
    assert first.pending() == 3

    receiver.status = 200
    second = AlertOutbox(Store.open(db_url), backoff_seconds=60)  # a new process, as it were
    second.channels = {"webhook": webhook(receiver)}
    started = time.monotonic()
    second.start(["webhook"])
    try:
        wait_for(lambda: second.pending() == 0)
    finally:
        second.stop()
        second.store.dispose()
    assert time.monotonic() - started < 5  # not after the 60 s backoff: a restart retries
    delivered = sorted(p["data"]["fields"]["n"] for p in payloads(receiver)[3:])
    assert delivered == ["0", "1", "2"]


def test_most_severe_goes_first(
    store: Store,
    receiver: _Receiver,  # noqa: F811
) -> None:
    outbox = AlertOutbox(store)
    outbox.channels = {"webhook": webhook(receiver)}
    outbox.enqueue(event(key="a", severity=2), HOOK, fold_minutes=10)
    outbox.enqueue(event(key="b", severity=5), HOOK, fold_minutes=10)
    outbox.enqueue(event(key="c", severity=3), HOOK, fold_minutes=10)
    assert outbox.deliver_due("webhook") == 3
    assert [p["data"]["severity"] for p in payloads(receiver)] == [5, 3, 2]


def test_two_gateways_sharing_the_store_send_each_alert_once(
    db_url: str,  # noqa: F811
    receiver: _Receiver,  # noqa: F811
) -> None:
    gateways = [AlertOutbox(Store.open(db_url)) for _ in range(2)]
    for outbox in gateways:
        outbox.channels = {"webhook": webhook(receiver)}
    for n in range(12):
        gateways[n % 2].enqueue(event(key=f"k{n}", n=str(n)), HOOK, fold_minutes=10)
    for outbox in gateways:
        outbox.start(["webhook"])
    try:
        wait_for(lambda: gateways[0].pending() == 0)
    finally:
        for outbox in gateways:
            outbox.stop()
            outbox.store.dispose()
    got = [p["data"]["fields"]["n"] for p in payloads(receiver)]
    assert sorted(got, key=int) == [str(n) for n in range(12)]


def test_a_stuck_channel_raises_one_technical_alert(store: Store) -> None:
    raised: list[Event] = []
    clock = Clock()
    outbox = AlertOutbox(store, clock=clock, stuck_attempts=3, on_stuck=raised.append)
    dead = f"http://127.0.0.1:{_free_port()}/hook"
    outbox.channels = {"webhook": WebhookChannel(WebhookSettings(dead, SECRET, timeout=2))}
    outbox.enqueue(event(), HOOK, fold_minutes=10)
    for _ in range(6):
        outbox.deliver_due("webhook")
        clock.advance(hours=1)
    [stuck] = raised
    assert stuck.kind == OUTBOX_STUCK and stuck.audience is Audience.TECHNICAL
    assert stuck.fields["channel"] == "webhook" and stuck.fields["waiting"] == "1"
    assert stuck.fields["oldest"] == "2026-03-02 10:00:00 GMT"
    assert "pupil" not in json.dumps(stuck.to_json())


def test_a_channel_missing_from_the_policy_keeps_its_alerts(store: Store) -> None:
    outbox = AlertOutbox(store)
    outbox.enqueue(event(), [Route("teams")], fold_minutes=10)
    assert outbox.deliver_due("teams") == 0
    [row] = rows(store)
    assert row.status == "pending" and "not configured" in row.last_error


def test_a_broken_channel_does_not_silence_the_others(
    store: Store,
    receiver: _Receiver,  # noqa: F811
) -> None:
    """Each channel has its own row: one that raises (a bug) keeps its alert, with the error,
    while the webhook delivers (unblock messages too: they take the same outbox)."""

    class Broken(BaseChannel):
        name = "email"

        def send(self, note: Notification) -> None:
            raise RuntimeError("bug")

    outbox = AlertOutbox(store)
    outbox.channels = {"email": Broken(), "webhook": webhook(receiver)}
    outbox.enqueue(event(), [Route("email", ("dsl@test.example",)), *HOOK], fold_minutes=10)
    assert outbox.deliver_due("email") == 0
    assert outbox.deliver_due("webhook") == 1
    assert [d.valid for d in receiver.deliveries] == [True]
    [waiting] = [r for r in rows(store) if r.status == "pending"]
    assert waiting.channel == "email" and waiting.last_error == "bug"


def test_sent_alerts_keep_no_content_and_are_purged_after_their_window(
    store: Store,
    receiver: _Receiver,  # noqa: F811
) -> None:
    clock = Clock()
    outbox = AlertOutbox(store, clock=clock)
    outbox.channels = {"webhook": webhook(receiver)}
    outbox.enqueue(event(), HOOK, fold_minutes=10)
    outbox.deliver_due("webhook")
    [row] = rows(store)
    assert row.status == "sent" and row.event == {}
    assert "pupil" not in json.dumps([str(v) for v in row])  # the fold key is a hash
    assert outbox.purge() == 0
    clock.advance(minutes=11)
    assert outbox.purge() == 1 and rows(store) == []


def test_email_alerts_go_to_the_routed_people(
    store: Store,
    plain_smtp_server: SmtpServer,  # noqa: F811
) -> None:
    outbox = AlertOutbox(store)
    settings = SmtpSettings(
        host="127.0.0.1", port=plain_smtp_server.port, starttls=False, sender="gw@test.example"
    )
    outbox.channels = {"email": EmailChannel(settings)}
    before = len(plain_smtp_server.mailbox.messages)
    route = Route("email", ("deputy@test.example", "dsl@test.example"))
    outbox.enqueue(event(), [route], fold_minutes=10)
    assert outbox.deliver_due("email") == 1
    [mail] = plain_smtp_server.mailbox.messages[before:]
    assert mail.rcpt_tos == ["deputy@test.example", "dsl@test.example"]
    assert mail.message["X-Schoolgate-Kind"] == "alert.risk_phrase"
    assert "pupil" not in mail.message["Subject"]
    assert "Search: how to k1ll mys3lf" in mail.message.get_content()


def _free_port() -> int:
    from tests.alerts.test_notify import free_port

    return free_port()
