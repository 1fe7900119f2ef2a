"""Unblock notifications through the channels a policy configures: email to a real
SMTP server (aiosmtpd) and a signed webhook to a local receiver."""

from __future__ import annotations

import json
from pathlib import Path

from proxy_addons.channels import notifier_from_policy
from proxy_addons.policy_loader import load_policy
from proxy_addons.store import Store, store_url
from proxy_addons.unblock_workflow import Actor, UnblockWorkflow
from proxy_addons.unblocks import AudienceKind
from tests.conftest import copy_policy
from tests.test_notify import SECRET, SmtpServer, _Receiver, hook_url
from tests.test_notify import plain_smtp_server as plain_smtp_server  # noqa: F401 (fixture)
from tests.test_notify import receiver as receiver  # noqa: F401 (fixture)


def test_request_and_decision_reach_the_right_people(
    tmp_path: Path,
    plain_smtp_server: SmtpServer,
    receiver: _Receiver,  # noqa: F811
) -> None:
    policy_path = copy_policy(tmp_path)
    (policy_path.parent / "webhook-secret").write_bytes(SECRET)
    text = policy_path.read_text().replace(
        "notifications:\n",
        "notifications:\n"
        f"  email: {{host: 127.0.0.1, port: {plain_smtp_server.port}, starttls: false,"
        " sender: schoolgate@test.example}\n"
        f"  webhook: {{url: '{hook_url(receiver)}', secret_file: webhook-secret}}\n",
    )
    policy_path.write_text(text)
    policy = load_policy(policy_path)
    store = Store.open(store_url(tmp_path / "var"))
    flow = UnblockWorkflow(
        store, lambda: policy, notifier_from_policy(policy), send_in_background=False
    )
    mailbox = plain_smtp_server.mailbox
    before = len(mailbox.messages)

    ub = flow.request(
        Actor("teacher", "10.20.0.7"),
        target="https://chatter.test/lesson",
        audience_kind=AudienceKind.PROFILE,
        audience=["ks2"],
        minutes=45,
        reason="Online safety: how social networks use our data",
    )
    request_mail = mailbox.messages[before]
    assert sorted(request_mail.rcpt_tos) == ["deputy@test.example", "dsl@test.example"]
    body = request_mail.message.get_content()
    assert ub.id in request_mail.message["Subject"]
    assert "Online safety" in body and f"/unblocks/{ub.id}" in body
    hook = json.loads(receiver.deliveries[-1].body)
    assert receiver.deliveries[-1].valid and hook["kind"] == "unblock.requested"
    assert hook["data"]["id"] == ub.id and hook["data"]["audience"] == ["ks2"]

    flow.approve(Actor("dsl", "10.20.0.2"), ub.id, "fine")
    decided = [m for m in mailbox.messages[before:] if "approved" in str(m.message["Subject"])]
    assert len(decided) == 1
    assert sorted(decided[0].rcpt_tos) == ["teacher@test.example", "tech@test.example"]
    assert receiver.deliveries[-1].valid
    assert json.loads(receiver.deliveries[-1].body)["data"]["status"] == "active"
    store.dispose()
