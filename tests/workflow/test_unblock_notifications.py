"""Unblock notifications through the channels a policy configures: email to a real
SMTP server (aiosmtpd) and a signed webhook to a local receiver. They go through the
durable alert outbox: sent while a channel is down, they arrive when it is back."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from aiosmtpd.controller import Controller

from proxy_addons.alerts.notify.from_policy import build_channels
from proxy_addons.alerts.outbox import AlertOutbox
from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.unblocks import AudienceKind
from proxy_addons.store import Store, store_url
from proxy_addons.store.schema import alert_outbox
from proxy_addons.workflow.unblocks import Actor, UnblockWorkflow
from tests.alerts.test_notify import SECRET, Mailbox, SmtpServer, _Receiver, free_port, hook_url
from tests.alerts.test_notify import plain_smtp_server as plain_smtp_server  # noqa: F401 (fixture)
from tests.alerts.test_notify import receiver as receiver  # noqa: F401 (fixture)
from tests.conftest import Upstream, copy_policy, start_mitmdump
from tests.gateway.test_unblock_scope import ask_for_ks2


def policy_with_channels(tmp_path: Path, smtp_port: int, receiver: _Receiver) -> Path:  # noqa: F811
    """The test policy, with email to `smtp_port` and the signed webhook to `receiver`."""
    policy_path = copy_policy(tmp_path)
    (policy_path.parent / "webhook-secret").write_bytes(SECRET)
    text = policy_path.read_text().replace(
        "notifications:\n",
        "notifications:\n"
        f"  email: {{host: 127.0.0.1, port: {smtp_port}, starttls: false,"
        " sender: schoolgate@test.example}\n"
        f"  webhook: {{url: '{hook_url(receiver)}', secret_file: webhook-secret}}\n",
    )
    policy_path.write_text(text)
    return policy_path


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)


def outbox_rows(store: Store) -> list[sa.Row]:  # type: ignore[type-arg]
    with store.connect() as conn:
        return list(conn.execute(sa.select(alert_outbox).order_by(alert_outbox.c.id)))


def accepted_hooks(receiver: _Receiver, since: int) -> list[dict]:  # type: ignore[type-arg]  # noqa: F811
    """Signed deliveries from the `since`-th on (the receiver answered 200 from then)."""
    return [json.loads(d.body) for d in receiver.deliveries[since:] if d.valid]


def ask(flow: UnblockWorkflow) -> str:
    return flow.request(
        Actor("teacher", "10.20.0.7"),
        target="https://chatter.test/lesson",
        audience_kind=AudienceKind.PROFILE,
        audience=["ks2"],
        minutes=45,
        reason="Online safety: how social networks use our data",
    ).id


def test_request_and_decision_reach_the_right_people(
    tmp_path: Path,
    plain_smtp_server: SmtpServer,  # noqa: F811
    receiver: _Receiver,  # noqa: F811
) -> None:
    policy = load_policy(policy_with_channels(tmp_path, plain_smtp_server.port, receiver))
    store = Store.open(store_url(tmp_path / "var"))
    flow = UnblockWorkflow(store, lambda: policy, send_in_background=False)
    mailbox = plain_smtp_server.mailbox
    before = len(mailbox.messages)

    uid = ask(flow)
    request_mail = mailbox.messages[before]
    assert sorted(request_mail.rcpt_tos) == ["deputy@test.example", "dsl@test.example"]
    body = request_mail.message.get_content()
    assert uid in request_mail.message["Subject"]
    assert "Online safety" in body and f"/unblocks/{uid}" in body
    hook = json.loads(receiver.deliveries[-1].body)
    assert receiver.deliveries[-1].valid and hook["kind"] == "unblock.requested"
    assert hook["data"]["id"] == uid and hook["data"]["audience"] == ["ks2"]

    flow.approve(Actor("dsl", "10.20.0.2"), uid, "fine")
    decided = [m for m in mailbox.messages[before:] if "approved" in str(m.message["Subject"])]
    assert len(decided) == 1
    assert sorted(decided[0].rcpt_tos) == ["teacher@test.example", "tech@test.example"]
    assert receiver.deliveries[-1].valid
    assert json.loads(receiver.deliveries[-1].body)["data"]["status"] == "active"
    store.dispose()
    assert all(row.status == "sent" and row.event == {} for row in outbox_rows(store))


def test_sent_while_both_channels_are_down_they_arrive_when_they_are_back(
    tmp_path: Path,
    receiver: _Receiver,  # noqa: F811
) -> None:
    """As the CLI sends: one try at once, which fails; a gateway's outbox retries later."""
    receiver.status = 503  # the webhook answers "unavailable"
    smtp_port = free_port()  # and nothing listens for mail yet
    policy = load_policy(policy_with_channels(tmp_path, smtp_port, receiver))
    store = Store.open(store_url(tmp_path / "var"))
    flow = UnblockWorkflow(store, lambda: policy, send_in_background=False)
    uid = ask(flow)
    flow.approve(Actor("dsl", "10.20.0.2"), uid, "fine")
    waiting = outbox_rows(store)
    # One row per message per channel, each tried once and kept with its error.
    assert sorted((r.kind, r.channel) for r in waiting) == [
        ("unblock.decided", "email"),
        ("unblock.decided", "webhook"),
        ("unblock.requested", "email"),
        ("unblock.requested", "webhook"),
    ]
    assert all(r.status == "pending" and r.attempts == 1 and r.last_error for r in waiting)

    # The channels come back; a gateway's outbox (as the alerting add-on runs it) sends them.
    receiver.status = 200
    seen = len(receiver.deliveries)
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    gateway = AlertOutbox(store, backoff_seconds=0.1)
    gateway.channels = build_channels(policy)
    gateway.start(["email", "webhook"])
    try:
        wait_for(lambda: all(r.status == "sent" for r in outbox_rows(store)))
        time.sleep(0.3)  # and nothing goes out twice
    finally:
        gateway.stop()
        smtp.stop()
    hooks = accepted_hooks(receiver, seen)
    assert sorted(h["kind"] for h in hooks) == ["unblock.decided", "unblock.requested"]
    assert {h["data"]["id"] for h in hooks} == {uid}
    by_subject = {str(m.message["Subject"]): sorted(m.rcpt_tos) for m in mailbox.messages}
    assert len(by_subject) == 2
    [asked] = [rcpt for subject, rcpt in by_subject.items() if "request" in subject]
    [told] = [rcpt for subject, rcpt in by_subject.items() if "approved" in subject]
    assert asked == ["deputy@test.example", "dsl@test.example"]
    assert told == ["teacher@test.example", "tech@test.example"]
    store.dispose()


def test_a_request_from_the_cli_while_the_webhook_is_down_reaches_it_through_the_gateway(
    tmp_path: Path,
    upstream: Upstream,
    receiver: _Receiver,  # noqa: F811
) -> None:
    """The CLI ends after its one try; the running gateway's alert outbox delivers it."""
    receiver.status = 503
    policy = policy_with_channels(tmp_path, free_port(), receiver)
    var = tmp_path / "var"  # where the command keeps its store
    made = ask_for_ks2(policy, "https://chatter.test/lesson", "Year 6 online safety")
    assert made.returncode == 0, made.stderr
    tried = len(receiver.deliveries)
    assert tried == 1  # the CLI's own try, refused
    receiver.status = 200
    gw = start_mitmdump(
        policy, var, upstream, extra=["--set", "schoolgate_alerts_retry_seconds=0.2"]
    )
    try:
        wait_for(
            lambda: any(h["kind"] == "unblock.requested" for h in accepted_hooks(receiver, tried))
        )
    finally:
        gw.stop()
    time.sleep(0.5)  # and it is not sent twice
    [hook] = accepted_hooks(receiver, tried)
    assert hook["kind"] == "unblock.requested"
    assert hook["data"]["reason"] == "Year 6 online safety"
