"""Who hears of an alert, through the real outbox, on SQLite and PostgreSQL, delivered to a
real SMTP server (aiosmtpd) and a real signed-webhook receiver: each channel's audience
(a technical webhook never gets a pupil's search), and concerns about staff routed away
from the safeguarding list (to the headteacher; about the headteacher, to the chair)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from proxy_addons.alerts.dispatch import raise_alert
from proxy_addons.alerts.events import Audience, Event, reload_failed_event
from proxy_addons.alerts.notify.from_policy import build_channels
from proxy_addons.alerts.outbox import AlertOutbox
from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.policy.model import Policy
from proxy_addons.store import Store
from proxy_addons.store.schema import alerts
from proxy_addons.workflow.accounts import add_account
from tests.alerts.test_notify import SECRET, SmtpServer, _Receiver, hook_url
from tests.alerts.test_notify import plain_smtp_server as plain_smtp_server  # noqa: F401 (fixture)
from tests.alerts.test_notify import receiver as receiver  # noqa: F401 (fixture)
from tests.conftest import copy_policy
from tests.pg import db_url  # noqa: F401  (a fixture)

NOW = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)  # a Tuesday in term
DSL, DEPUTY, HEAD, CHAIR, IT = (
    "dsl@school.example",
    "deputy@school.example",
    "head@school.example",
    "chair@school.example",
    "it@provider.example",
)
CONTACTS = (
    f"{{mrs.patel: {DSL}, mr.jones: {DEPUTY}, mrs.okafor: {HEAD}, mr.price: {CHAIR},"
    f" it.support: {IT}}}"
)
MONITORING = """\
monitoring:
  safeguarding: [mrs.patel, mr.jones]
  technical: [it.support]
  deputies: [mr.jones]
  headteacher: [mrs.okafor]
  chair_of_governors: [mr.price]
  staff_profiles: [staff]
  escalation: {after_minutes: 15, school_hours: ["08:00-17:00"]}
"""


def people_policy(
    tmp: Path,
    smtp_port: int,
    hook: str | None = None,
    *,
    audience: str = "technical",
    monitoring: str = MONITORING,
) -> Policy:
    """The test policy with the school's named people, email to `smtp_port` and (given
    `hook`) the signed webhook for `audience`."""
    return load_policy(people_policy_file(tmp, smtp_port, hook, audience, monitoring))


def people_policy_file(
    tmp: Path,
    smtp_port: int,
    hook: str | None = None,
    audience: str = "technical",
    monitoring: str = MONITORING,
) -> Path:
    """people_policy's file."""
    path = copy_policy(tmp)
    (path.parent / "hook-secret").write_bytes(SECRET)
    text = path.read_text()
    start = text.index("  contacts: {")
    text = text[:start] + f"  contacts: {CONTACTS}\n" + text[text.index("\n", start) + 1 :]
    channels = (
        f"  email: {{host: 127.0.0.1, port: {smtp_port}, starttls: false,"
        " sender: gw@school.example}\n"
    )
    if hook:
        channels += (
            f"  webhook: {{url: '{hook}', secret_file: hook-secret, audience: {audience}}}\n"
        )
    text = text.replace("notifications:\n", "notifications:\n" + channels)
    text = text.replace("users: {", "users: {mr.jones: staff, mrs.okafor: staff, ")
    path.write_text(text + monitoring)
    return path


def concern(
    user: str, profile: str, severity: int = 4, search: str = "how to k1ll mys3lf"
) -> Event:
    """A safeguarding event shaped as request_events.phrase_event builds one."""
    return Event(
        kind="risk_phrase",
        severity=severity,
        audience=Audience.SAFEGUARDING,
        summary=f"Risk phrase in a search: suicide (severity {severity})",
        fields={
            "user": user,
            "device": "10.10.3.7",
            "profile": profile,
            "search": search,
            "site": "www.google.com",
            "category": "suicide",
            "time": "2026-03-03 10:00:00 GMT",
        },
        fold_key=f"risk_phrase|{user}|suicide|search",
        at=NOW,
        timezone="Europe/London",
    )


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:  # noqa: F811
    s = Store.open(db_url)
    yield s
    s.dispose()


def deliver(
    store: Store, policy: Policy, event: Event, smtp: SmtpServer | None = None
) -> list[tuple[list[str], str, str]]:
    """Raise `event` as the gateway does and send what it wrote at once; the mail `smtp`
    took for it."""
    seen = len(smtp.mailbox.messages) if smtp else 0
    outbox = AlertOutbox(store, clock=lambda: NOW)
    outbox.channels = build_channels(policy)
    ids = raise_alert(outbox, policy, event)
    assert outbox.deliver_now(ids) == len(ids)
    return mail_since(smtp, seen) if smtp else []


def mail_since(server: SmtpServer, seen: int) -> list[tuple[list[str], str, str]]:
    """(recipients, subject, body) of each message the server took after the first `seen`."""
    return [
        (sorted(m.rcpt_tos), str(m.message["Subject"]), m.message.get_content())
        for m in server.mailbox.messages[seen:]
    ]


def alert_rows(store: Store) -> list[Any]:
    with store.connect() as conn:
        return list(conn.execute(sa.select(alerts).order_by(alerts.c.id)))


# -- channel audiences --------------------------------------------------------------------------


def test_a_technical_webhook_never_receives_a_pupils_search(
    tmp_path: Path,
    store: Store,
    plain_smtp_server: SmtpServer,  # noqa: F811
    receiver: _Receiver,  # noqa: F811
) -> None:
    smtp = plain_smtp_server
    policy = people_policy(tmp_path, smtp.port, hook_url(receiver))

    [(to, _, pupil_mail)] = deliver(store, policy, concern("pupil", "ks2"), smtp)
    assert to == [DEPUTY, DSL] and "how to k1ll mys3lf" in pupil_mail
    [(to, _, it_mail)] = deliver(store, policy, reload_failed_event(policy, "bad", NOW), smtp)
    assert to == [IT] and "k1ll" not in it_mail

    bodies = [json.loads(d.body) for d in receiver.deliveries if d.valid]
    assert [b["data"]["audience"] for b in bodies] == ["technical"]
    assert "k1ll" not in json.dumps(bodies)


@pytest.mark.parametrize(
    ("audience", "expected"),
    [("safeguarding", ["safeguarding"]), ("all", ["safeguarding", "technical"])],
)
def test_a_webhook_gets_the_audiences_it_names(
    tmp_path: Path,
    store: Store,
    plain_smtp_server: SmtpServer,  # noqa: F811
    receiver: _Receiver,  # noqa: F811
    audience: str,
    expected: list[str],
) -> None:
    policy = people_policy(tmp_path, plain_smtp_server.port, hook_url(receiver), audience=audience)
    deliver(store, policy, concern("pupil", "ks2"))
    deliver(store, policy, reload_failed_event(policy, "line 3: bad indent", NOW))
    bodies = [json.loads(d.body) for d in receiver.deliveries if d.valid]
    assert [b["data"]["audience"] for b in bodies] == expected


# -- concerns about staff -----------------------------------------------------------------------


def test_a_pupils_alert_goes_to_the_safeguarding_list(
    tmp_path: Path,
    store: Store,
    plain_smtp_server: SmtpServer,  # noqa: F811
) -> None:
    policy = people_policy(tmp_path, plain_smtp_server.port)
    [(to, subject, body)] = deliver(store, policy, concern("pupil", "ks2"), plain_smtp_server)
    assert to == [DEPUTY, DSL] and "safeguarding alert" in subject
    [row] = alert_rows(store)
    assert (row.audience, row.username) == ("safeguarding", "pupil")
    assert f"/alerts/{row.id}" in body  # the console link


@pytest.mark.parametrize(
    ("user", "profile", "told"),
    [
        ("mr.jones", "staff", HEAD),  # a deputy, on the safeguarding list
        ("mrs.okafor", "ks2", CHAIR),  # the headteacher (staff by the policy's identities)
        ("mr.smith", "ks2", HEAD),  # staff by his account, whatever profile filtered him
    ],
)
def test_a_concern_about_staff_reaches_the_headteacher_or_the_chair_only(
    tmp_path: Path,
    store: Store,
    plain_smtp_server: SmtpServer,  # noqa: F811
    receiver: _Receiver,  # noqa: F811
    user: str,
    profile: str,
    told: str,
) -> None:
    add_account(store, "mr.smith", "a long passphrase", ["staff"])
    policy = people_policy(tmp_path, plain_smtp_server.port, hook_url(receiver), audience="all")
    [(to, _, body)] = deliver(store, policy, concern(user, profile), plain_smtp_server)
    assert to == [told]
    assert "about a member of staff" in body and "how to k1ll mys3lf" in body
    assert receiver.deliveries == []  # no shared channel
    [row] = alert_rows(store)
    assert (row.audience, row.username, row.recipients) == ("staff", user, [f"email:{told}"])


@pytest.mark.parametrize("roles", [[], ["governor"]])
def test_an_account_without_a_staff_role_is_not_staff(
    tmp_path: Path,
    store: Store,
    plain_smtp_server: SmtpServer,  # noqa: F811
    roles: list[str],
) -> None:
    add_account(store, "pupil9", "a long passphrase", roles)
    policy = people_policy(tmp_path, plain_smtp_server.port)
    [(to, _, _)] = deliver(store, policy, concern("pupil9", "ks2"), plain_smtp_server)
    assert to == [DEPUTY, DSL]
    [row] = alert_rows(store)
    assert (row.audience, row.username) == ("safeguarding", "pupil9")


def test_with_nobody_named_a_staff_concern_goes_to_the_list_minus_its_subject(
    tmp_path: Path,
    store: Store,
    plain_smtp_server: SmtpServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    monitoring = MONITORING.replace("  headteacher: [mrs.okafor]\n", "")
    policy = people_policy(tmp_path, plain_smtp_server.port, monitoring=monitoring)
    with caplog.at_level(logging.WARNING, logger="proxy_addons.alerts.routing"):
        [(to, _, _)] = deliver(store, policy, concern("mr.jones", "staff"), plain_smtp_server)
    assert to == [DSL]  # mr.jones is on the list: never told of a concern about himself
    assert "monitoring.headteacher" in caplog.text


def test_an_alert_about_a_page_a_teacher_reported_is_no_concern_about_staff(
    tmp_path: Path,
    store: Store,
    plain_smtp_server: SmtpServer,  # noqa: F811
) -> None:
    # As workflow/user_reports.py raises one: the reporter is not the alert's subject.
    policy = people_policy(tmp_path, plain_smtp_server.port)
    report = Event(
        kind="user_report",
        severity=4,
        audience=Audience.SAFEGUARDING,
        summary="A user reported a page that upset them",
        fields={"reporter": "mr.jones", "profile": "staff", "page": "https://x.test/"},
        fold_key="user_report|1",
        at=NOW,
    )
    [(to, _, _)] = deliver(store, policy, report, plain_smtp_server)
    assert to == [DEPUTY, DSL]
    assert [r.audience for r in alert_rows(store)] == ["safeguarding"]
