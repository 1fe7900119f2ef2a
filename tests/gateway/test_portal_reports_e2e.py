"""Reports from users reach a person, through a real mitmdump, an aiosmtpd mail server and the
store: "Is this a mistake?" from a block page goes to the IT provider, "Report a page" from
the portal to the safeguarding team (or IT, when the reporter says it upset nobody), each
kept with its state and its alert, and the reporter told who will read it. A self-harm site
gets the calm page that points to help; the portal and block pages say the network is
filtered and monitored."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from proxy_addons.store import Store, store_url
from proxy_addons.store.schema import alerts, reports
from proxy_addons.workflow.accounts import add_account
from tests.alerts.test_notify import SmtpServer
from tests.alerts.test_notify import plain_smtp_server as plain_smtp_server  # noqa: F401 (fixture)
from tests.conftest import Gateway, Upstream, copy_policy, start_mitmdump
from tests.gateway.test_alerting_e2e import QUIET, wait_for
from tests.gateway.test_gateway_e2e import body_and_status
from tests.support.portal_form import curl_send_confirmed, hidden_fields

PORTAL = "http://schoolgate.local"
MONITORED = "The school network is filtered and monitored"
ADULT = "Mrs Dee, our safeguarding lead (room 4)"


def policy_with_reports(tmp: Path, smtp_port: int) -> Path:
    """The test policy with a self-harm category (sensitive), named people and email."""
    policy = copy_policy(tmp)
    (policy.parent / "lists" / "self-harm.txt").write_text("hurt.test\n")
    text = policy.read_text()
    text = text.replace(
        "categories:\n",
        "categories:\n  self_harm: {label: Self-harm, sources: [domains: lists/self-harm.txt]}\n",
        1,
    )
    text = text.replace(
        "      - block: [adult, social, banking]",
        "      - block: [adult, social, banking, self_harm]",
    )
    text = text.replace(
        "notifications:\n",
        "notifications:\n"
        f"  email: {{host: 127.0.0.1, port: {smtp_port}, starttls: false,"
        " sender: schoolgate@test.example}\n",
    )
    text += (
        "monitoring:\n"
        "  safeguarding: [dsl]\n"
        "  technical: [tech]\n"
        "  sensitive_categories: [self_harm]\n"
        f"  trusted_adults: ['{ADULT}']\n"
    )
    policy.write_text(text)
    return policy


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    upstream: Upstream,
    plain_smtp_server: SmtpServer,  # noqa: F811
) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("portal-reports")
    var = tmp / "var"
    store = Store.open(store_url(var))  # the console accounts whose names the pupil is told
    add_account(store, "dsl", "a long pass phrase", ["staff", "dsl"], display_name="Mrs Dee")
    add_account(store, "tech", "a long pass phrase", ["it"], display_name="Mr Byte")
    store.dispose()
    gw = start_mitmdump(
        policy_with_reports(tmp, plain_smtp_server.port), var, upstream, extra=QUIET
    )
    yield gw
    gw.stop()


def rows(gw: Gateway, table: sa.Table) -> list[Any]:
    store = Store.open(store_url(gw.var))
    try:
        with store.connect() as conn:
            return list(conn.execute(sa.select(table).order_by(table.c.id)))
    finally:
        store.dispose()


def alert_of(gw: Gateway, report: Any) -> Any:
    [found] = [a for a in rows(gw, alerts) if a.id == report.alert_id]
    return found


def mails(smtp: SmtpServer, to: str) -> list[Any]:
    return [
        m
        for m in smtp.mailbox.messages
        if m.message["X-Schoolgate-Kind"] == "alert.user_report" and to in m.rcpt_tos
    ]


def text_of(page: str) -> str:
    shown = re.sub(r"<(style|title)>.*?</\1>", " ", page, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", shown).split())


def report_a_page(gw: Gateway, url: str, what: str, message: str) -> tuple[str, int]:
    """As a pupil's browser does it: open the portal's form, fill it in, send it."""
    form, code = body_and_status(gw.curl(f"{PORTAL}/report-page?url={url}"))
    assert code == 200, form
    data = {**hidden_fields(form), "url": url, "what": what, "message": message}
    args = [a for k, v in data.items() for a in ("--data-urlencode", f"{k}={v}")]
    return body_and_status(gw.curl(f"{PORTAL}/report-page", "-H", f"Origin: {PORTAL}", *args))


def test_a_mistake_report_reaches_the_it_provider(
    gateway: Gateway,
    plain_smtp_server: SmtpServer,  # noqa: F811
) -> None:
    blocked, code = body_and_status(gateway.curl("http://games.test/maths-game", "-i"))
    assert code == 403 and MONITORED in blocked
    assert f'href="{PORTAL}/report-page"' in blocked  # "Report a page" from the block page
    ref = re.search(r"X-Schoolgate-Reference: (\S+)", blocked, re.I).group(1)  # type: ignore[union-attr]
    form = {"ref": ref, "url": "http://games.test/maths-game", "message": "for maths"}
    body, code = curl_send_confirmed(gateway, f"{PORTAL}/report", form)
    assert code == 200, body
    said = text_of(body)
    assert "Mr Byte will look at whether this page should be open" in said
    assert "We have sent them a message about it now" in said

    report = rows(gateway, reports)[-1]
    assert (report.kind, report.reason, report.audience, report.state) == (
        "report",
        "mistake",
        "technical",
        "new",
    )
    assert (report.reference, report.text, report.ip) == (ref, "for maths", "127.0.0.1")
    alert = alert_of(gateway, report)
    assert (alert.kind, alert.audience, alert.severity) == ("user_report", "technical", 2)
    assert "127.0.0.1" not in str(alert.event)  # the IT provider gets a pseudonym
    [mail] = wait_for(lambda: mails(plain_smtp_server, "tech@test.example"))
    assert mail.rcpt_tos == ["tech@test.example"]
    assert f"Reference: {ref}" in mail.message.get_content()


def test_an_upsetting_page_reaches_the_safeguarding_team(
    gateway: Gateway,
    plain_smtp_server: SmtpServer,  # noqa: F811
) -> None:
    portal, code = body_and_status(gateway.curl(f"{PORTAL}/"))
    assert code == 200 and MONITORED in portal and 'href="/report-page"' in portal
    page = "http://plain.test/forum/thread-9"
    body, code = report_a_page(gateway, page, "upsetting", "people were being cruel")
    assert code == 200, body
    said = text_of(body)
    assert "Mrs Dee, who keeps pupils safe at school, will read what you sent" in said
    assert "0800 1111" in said and ADULT in said

    report = rows(gateway, reports)[-1]
    assert (report.kind, report.reason, report.audience, report.state) == (
        "page_report",
        "upsetting",
        "safeguarding",
        "new",
    )
    assert (report.url, report.text, report.profile) == (
        page,
        "people were being cruel",
        "early_years",
    )
    alert = alert_of(gateway, report)
    assert (alert.audience, alert.severity, alert.state) == ("safeguarding", 4, "new")
    [mail] = wait_for(lambda: mails(plain_smtp_server, "dsl@test.example"))
    content = mail.message.get_content()
    assert "In their words: people were being cruel" in content
    assert f"/alerts/{alert.id}" in content  # the console page where it is acted on


def test_should_be_blocked_but_not_upsetting_goes_to_it(gateway: Gateway) -> None:
    body, code = report_a_page(gateway, "http://plain.test/adverts", "should_block", "")
    assert code == 200 and "Mr Byte will check the page, and block it if it should be" in text_of(
        body
    )
    report = rows(gateway, reports)[-1]
    assert (report.reason, report.audience) == ("should_block", "technical")
    assert alert_of(gateway, report).severity == 3


def test_the_report_page_acts_once_and_only_with_its_token(gateway: Gateway) -> None:
    before = len(rows(gateway, reports))
    form, _ = body_and_status(gateway.curl(f"{PORTAL}/report-page"))
    fields = {**hidden_fields(form), "url": "http://plain.test/", "what": "upsetting"}
    args = [a for k, v in fields.items() for a in ("--data-urlencode", f"{k}={v}")]
    # From another site's page (no portal Origin): refused, nothing filed.
    refused = body_and_status(gateway.curl(f"{PORTAL}/report-page", *args, "-H", "Origin: null"))
    assert refused[1] == 403
    sent = [gateway.curl(f"{PORTAL}/report-page", "-H", f"Origin: {PORTAL}", *args) for _ in "12"]
    assert [body_and_status(s)[1] for s in sent] == [200, 409]  # a double click sends once
    # Nothing chosen: asked again, keeping what was typed; nothing filed.
    form, _ = body_and_status(gateway.curl(f"{PORTAL}/report-page"))
    data = {**hidden_fields(form), "url": "http://plain.test/kept", "what": ""}
    args = [a for k, v in data.items() for a in ("--data-urlencode", f"{k}={v}")]
    body, code = body_and_status(
        gateway.curl(f"{PORTAL}/report-page", "-H", f"Origin: {PORTAL}", *args)
    )
    assert code == 400 and "Choose what is wrong with the page" in body
    assert 'value="http://plain.test/kept"' in body
    assert len(rows(gateway, reports)) == before + 1


def test_a_self_harm_site_gets_the_page_that_points_to_help(gateway: Gateway) -> None:
    body, code = body_and_status(gateway.curl("http://hurt.test/ways"))
    assert code == 403
    said = text_of(body)
    assert "0800 1111" in said and "childline.org.uk" in said and ADULT in said
    assert MONITORED in said
    for absent in ("Is this a mistake", "hurt.test", "Self-harm", "score", "<form"):
        assert absent not in body
