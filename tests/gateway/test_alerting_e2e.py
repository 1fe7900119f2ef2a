"""Alerting end to end: a real mitmdump gateway with signed-in users, an aiosmtpd SMTP server,
a webhook receiver that checks signatures, Teams and Slack receivers and a syslog collector."""

from __future__ import annotations

import http.server
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from tests.alerts.test_alerts import (
    PHRASES,
    ChatReceiver,
    SyslogCollector,
    _Chat,
    _UdpHandler,
)
from tests.alerts.test_notify import SECRET, SmtpServer, _Hook, _Receiver, hook_url
from tests.alerts.test_notify import plain_smtp_server as plain_smtp_server  # noqa: F401 (fixture)
from tests.conftest import ROOT, Gateway, Upstream, copy_policy, free_port, start_mitmdump
from tests.gateway.test_gateway_e2e import body_and_status

SEARCH = "https://www.google.com/search?q=how+to+k1ll+mys3lf"
TERM = "how to k1ll mys3lf"
DSL = ["deputy@test.example", "dsl@test.example"]
# Other gateways (other test modules, other runs) may hold the metrics port; not needed here.
QUIET = ["--set", "schoolgate_metrics_port=0"]
FORUM_PAGE = (
    b"<!doctype html><html><head><title>Help forum</title>"
    b"<script>var hidden = 'end my life';</script></head>"
    b"<body><h1>Thread</h1><p>sometimes i want to cut myself</p></body></html>"
)


def phrase_library() -> Path | None:
    """The shipped English library, once it is there; tests/test_alerts.PHRASES otherwise."""
    shipped = ROOT / "policies" / "phrases" / "en.yaml"
    return shipped if shipped.exists() else None


def wait_for(check: Callable[[], Any], timeout: float = 8.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _htpasswd(path: Path, users: dict[str, str]) -> None:
    path.write_text(
        "".join(
            f"{name}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
            for name, pw in users.items()
        )
    )


def _serve(server: http.server.HTTPServer) -> None:
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()


class _Site(http.server.BaseHTTPRequestHandler):
    """Plain-HTTP upstream: a forum page (HTML) for page scanning."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(FORUM_PAGE)))
        self.end_headers()
        self.wfile.write(FORUM_PAGE)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Receivers:
    hook: _Receiver
    teams: ChatReceiver
    slack: ChatReceiver
    syslog: SyslogCollector
    smtp: SmtpServer

    def hooks(self, kind: str) -> list[dict[str, Any]]:
        return [
            json.loads(d.body)
            for d in self.hook.deliveries
            if d.valid and json.loads(d.body)["kind"] == kind
        ]

    def mails(self, kind: str) -> list[Any]:
        return [m for m in self.smtp.mailbox.messages if m.message["X-Schoolgate-Kind"] == kind]


def policy_with_alerts(tmp: Path, notifications: str) -> Path:
    policy = copy_policy(tmp)
    _htpasswd(policy.parent / "users.htpasswd", {"pupil": "p-pass", "teacher": "t-pass"})
    (policy.parent / "hook-secret").write_bytes(SECRET)
    library = phrase_library()
    if library is None:
        library = policy.parent / "phrases.yaml"
        library.write_text(PHRASES)
    text = policy.read_text()
    text = text.replace("identities:", "authentication: {htpasswd: users.htpasswd}\nidentities:")
    text = text.replace("notifications:\n", "notifications:\n" + notifications)
    text += (
        "monitoring:\n"
        f"  phrase_libraries: ['{library}']\n"
        "  high_risk_categories: [adult]\n"
        "  scan_page_text: [ks2]\n"
        "  fold_minutes: 10\n"
    )
    policy.write_text(text)
    return policy


@pytest.fixture(scope="module")
def receivers(
    plain_smtp_server: SmtpServer,  # noqa: F811
) -> Iterator[Receivers]:
    hook = _Receiver(("127.0.0.1", 0), _Hook)
    hook.secret, hook.status, hook.deliveries = SECRET, 200, []
    teams, slack = (ChatReceiver(("127.0.0.1", 0), _Chat) for _ in range(2))
    for chat in (teams, slack):
        chat.status, chat.posts = 200, []
    import socketserver

    udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), _UdpHandler)
    collector = SyslogCollector("udp", udp.server_address[1])
    udp.collector = collector  # type: ignore[attr-defined]
    servers: list[Any] = [hook, teams, slack, udp]
    for server in servers:
        _serve(server)
    yield Receivers(hook, teams, slack, collector, plain_smtp_server)
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, receivers: Receivers
) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("alerting")
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    _serve(site)
    teams_url = f"http://127.0.0.1:{receivers.teams.server_address[1]}/webhookb2/tok"
    slack_url = f"http://127.0.0.1:{receivers.slack.server_address[1]}/services/T/B/tok"
    policy = policy_with_alerts(
        tmp,
        f"  email: {{host: 127.0.0.1, port: {receivers.smtp.port}, starttls: false,"
        " sender: schoolgate@test.example}\n"
        f"  webhook: {{url: '{hook_url(receivers.hook)}', secret_file: hook-secret}}\n"
        "  teams_url_file: teams-url\n"
        "  slack_url_file: slack-url\n"
        f"  syslog: {{host: 127.0.0.1, port: {receivers.syslog.port}, protocol: udp}}\n",
    )
    (policy.parent / "teams-url").write_text(teams_url)
    (policy.parent / "slack-url").write_text(slack_url)
    # Plain HTTP goes to the forum site; HTTPS (the search engine) to the shared echo server.
    ours = Upstream(site.server_address[1], upstream.https_port)
    gw = start_mitmdump(policy, tmp / "var", ours, extra=QUIET)
    yield gw
    gw.stop()
    site.shutdown()
    site.server_close()


# First, before the module's gateway starts: two gateways at once would share ports.
def test_alerts_pending_at_a_restart_are_delivered_after_it(
    tmp_path: Path, upstream: Upstream
) -> None:
    port = free_port()  # the receiver is down: nothing listens here yet
    url = f"http://127.0.0.1:{port}/hooks/schoolgate"
    policy = policy_with_alerts(
        tmp_path, f"  webhook: {{url: '{url}', secret_file: hook-secret}}\n"
    )
    var = tmp_path / "var"
    first = start_mitmdump(policy, var, upstream, extra=QUIET)
    try:
        assert body_and_status(first.curl(SEARCH, user="pupil:p-pass"))[1] == 200
        wait_for(lambda: "not sent via webhook" in first.log_text())
    finally:
        first.stop()

    hook = _Receiver(("127.0.0.1", port), _Hook)
    hook.secret, hook.status, hook.deliveries = SECRET, 200, []
    _serve(hook)
    shutil.move(var / "gateway.log", tmp_path / "first.log")
    second = start_mitmdump(policy, var, upstream, extra=QUIET)
    try:
        [delivery] = wait_for(lambda: hook.deliveries)
        time.sleep(0.5)
        assert len(hook.deliveries) == 1  # once, not once per gateway run
    finally:
        second.stop()
        hook.shutdown()
        hook.server_close()
    assert delivery.valid
    payload = json.loads(delivery.body)
    assert payload["kind"] == "alert.risk_phrase"
    assert payload["data"]["fields"]["search"] == TERM


def test_self_harm_search_reaches_the_dsl_by_email_and_webhook_within_seconds(
    gateway: Gateway, receivers: Receivers
) -> None:
    # Warm up: the gateway's first HTTPS request for a host also makes its certificate.
    assert body_and_status(gateway.curl("https://www.google.com/", user="pupil:p-pass"))[1] == 200
    started = time.monotonic()
    assert body_and_status(gateway.curl(SEARCH, user="pupil:p-pass"))[1] == 200
    curl_seconds = time.monotonic() - started

    [hook] = wait_for(lambda: receivers.hooks("alert.risk_phrase"))
    hook_seconds = time.monotonic() - started
    [mail] = wait_for(lambda: receivers.mails("alert.risk_phrase"))
    mail_seconds = time.monotonic() - started

    print(
        f"curl {curl_seconds:.2f} s, webhook after {hook_seconds:.2f} s, email {mail_seconds:.2f} s"
    )
    assert hook["data"]["severity"] == 5 and hook_seconds < 2.0  # severity 5: within 2 s
    assert mail_seconds < 5.0
    fields = hook["data"]["fields"]
    assert fields["user"] == "pupil" and fields["search"] == TERM and fields["profile"] == "ks2"
    assert hook["data"]["audience"] == "safeguarding"

    assert sorted(mail.rcpt_tos) == DSL
    body = mail.message.get_content()
    assert "User: pupil" in body and f"Search: {TERM}" in body and "Site: www.google.com" in body
    subject = str(mail.message["Subject"]).strip()  # a long subject is folded
    assert subject.startswith("Schoolgate safeguarding alert: Risk phrase in a search")
    assert "pupil" not in subject and "k1ll" not in subject

    # The chat channels got it too; the SIEM did not (safeguarding alerts name pupils).
    wait_for(lambda: receivers.teams.posts and receivers.slack.posts)
    assert "pupil" in json.dumps(receivers.teams.posts[-1].payload)
    assert not [m for m in receivers.syslog.messages if m.msgid == "alert.risk_phrase"]
    assert "Alert raised: risk_phrase (safeguarding, severity 5)" in gateway.log_text()


def test_illegal_tier_hit_reaches_the_webhook_within_2s_without_the_address(
    gateway: Gateway, receivers: Receivers
) -> None:
    started = time.monotonic()
    _, code = body_and_status(gateway.curl("http://illegal.test/exact.html", user="pupil:p-pass"))
    assert code == 403

    [hook] = wait_for(lambda: receivers.hooks("alert.illegal_tier"))
    assert time.monotonic() - started < 2.0
    [mail] = wait_for(lambda: receivers.mails("alert.illegal_tier"))
    assert sorted(mail.rcpt_tos) == DSL
    assert hook["data"]["severity"] == 5 and hook["data"]["fields"]["user"] == "pupil"
    everything = json.dumps(hook) + mail.message.get_content() + str(mail.message["Subject"])
    wait_for(lambda: len(receivers.teams.posts) >= 2 and len(receivers.slack.posts) >= 2)
    everything += json.dumps([p.payload for p in receivers.teams.posts + receivers.slack.posts])
    assert "illegal.test" not in everything and "exact.html" not in everything
    assert "illegal-tier list entry" in mail.message.get_content()
    assert hook["data"]["fields"]["reference"].startswith("SG-")


def test_a_high_risk_block_alerts_when_asked_for_not_when_a_page_fetches_it(
    gateway: Gateway, receivers: Receivers
) -> None:
    advert = gateway.curl(
        "http://adult.test/ad.png", "-H", "Sec-Fetch-Dest: image", user="pupil:p-pass"
    )
    page = gateway.curl(
        "http://xxx-example.test/", "-H", "Sec-Fetch-Dest: document", user="pupil:p-pass"
    )
    assert body_and_status(advert)[1] == body_and_status(page)[1] == 403

    [hook] = wait_for(lambda: receivers.hooks("alert.high_risk_block"))
    assert hook["data"]["fields"]["site"] == "xxx-example.test"
    assert hook["data"]["fields"]["category"] == "Adult content"
    time.sleep(0.3)
    assert len(receivers.hooks("alert.high_risk_block")) == 1


def test_a_page_a_pupil_reads_is_scanned_but_a_teachers_is_not(
    gateway: Gateway, receivers: Receivers
) -> None:
    assert (
        body_and_status(gateway.curl("http://forum.test/t/42?s=1", user="teacher:t-pass"))[1] == 200
    )
    assert body_and_status(gateway.curl("http://forum.test/t/7?s=1", user="pupil:p-pass"))[1] == 200

    [hook] = wait_for(
        lambda: [h for h in receivers.hooks("alert.risk_phrase") if "page" in h["data"]["fields"]]
    )
    fields = hook["data"]["fields"]
    assert fields["user"] == "pupil" and fields["page"] == "http://forum.test/t/7"
    assert "cut myself" in fields["phrase"]
    assert "suicide" not in fields["category"]  # the script's "end my life" is not on show
    assert "teacher" not in json.dumps(receivers.hooks("alert.risk_phrase"))


def test_the_it_provider_hears_of_a_failed_reload_without_pupil_names(
    gateway: Gateway, receivers: Receivers
) -> None:
    good = gateway.policy.read_text()
    gateway.policy.write_text(good.replace("profiles:\n", "profiles:\n  broken: [\n", 1))
    try:
        [mail] = wait_for(lambda: receivers.mails("alert.policy_reload_failed"), timeout=15)
        [message] = wait_for(
            lambda: [
                m for m in receivers.syslog.messages if m.msgid == "alert.policy_reload_failed"
            ]
        )
    finally:
        gateway.policy.write_text(good)
    assert mail.rcpt_tos == ["tech@test.example"]
    body = mail.message.get_content()
    assert "Policy reload failed" in body and str(gateway.policy) in body
    assert "pupil" not in body
    assert message.severity == 3 and message.data["schoolgate@32473"]["audience"] == "technical"
    hook = wait_for(lambda: receivers.hooks("alert.policy_reload_failed"))
    assert hook[0]["data"]["audience"] == "technical"
    assert not [p for p in receivers.teams.posts if "reload" in json.dumps(p.payload)]
