"""Alerts: which events a decision raises, who gets them and what each audience may see; the
Teams, Slack and syslog channels against real local receivers (an HTTP server, and UDP and
TCP syslog collectors whose parser follows RFC 5424)."""

from __future__ import annotations

import http.server
import json
import logging
import re
import socket
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from proxy_addons.alerts.events import (
    CIRCUMVENTION,
    HIGH_RISK_BLOCK,
    ILLEGAL_TIER,
    REPEATED_BLOCKS,
    RISK_PHRASE,
    Audience,
    Event,
    Pseudonymiser,
    reload_failed_event,
)
from proxy_addons.alerts.notify.base import Notification, NotifyError
from proxy_addons.alerts.notify.from_policy import build_channels, configured_channels
from proxy_addons.alerts.notify.incoming_webhook import IncomingWebhookSettings
from proxy_addons.alerts.notify.slack import SlackChannel
from proxy_addons.alerts.notify.syslog import SyslogChannel, SyslogSettings
from proxy_addons.alerts.notify.teams import TeamsChannel
from proxy_addons.alerts.notify.webhook import WebhookChannel
from proxy_addons.alerts.request_events import RepeatTracker, events_for_decision, phrase_event
from proxy_addons.alerts.routing import Route, routes
from proxy_addons.alerts.wording import notification_for
from proxy_addons.core.content.phrase_library import load_libraries
from proxy_addons.core.content.phrases import PhraseMatcher
from proxy_addons.core.decide import Decision, Reason
from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.core.policy.model import Action, Policy
from proxy_addons.gateway.page_scan import visible_text
from tests.conftest import copy_policy

KEY = Pseudonymiser(b"k" * 32)
PUPIL, PUPIL_IP = "pupil", "10.10.3.7"
TERM = "how to k1ll mys3lf"
NOW = datetime(2026, 3, 2, 10, 15, 7, tzinfo=UTC)

PHRASES = """\
name: test phrases
categories:
  suicide:
    5: ["kill myself", "end my life"]
  self_harm:
    4: ["cut myself"]
innocent: ["skill myself"]
"""


# --- helpers ----------------------------------------------------------------------------------


def alert_policy(
    tmp: Path,
    *,
    notifications: str = "",
    monitoring: str = "",
    files: dict[str, str] | None = None,
) -> Path:
    """The test policy with extra notification settings and a monitoring section."""
    path = copy_policy(tmp)
    (path.parent / "phrases.yaml").write_text(PHRASES)
    for name, text in (files or {}).items():
        (path.parent / name).write_text(text)
    text = path.read_text().replace("notifications:\n", "notifications:\n" + notifications)
    text += (
        "monitoring:\n"
        "  phrase_libraries: [phrases.yaml]\n"
        "  high_risk_categories: [adult]\n" + monitoring
    )
    path.write_text(text)
    return path


ALL_CHANNELS = (
    "  email: {host: 127.0.0.1, port: 2525, starttls: false, sender: gw@test.example}\n"
    "  webhook: {url: 'http://127.0.0.1:9/hook', secret_file: hook-secret}\n"
    "  teams_url_file: teams-url\n"
    "  slack_url_file: slack-url\n"
    "  syslog: {host: 127.0.0.1, port: 5514, protocol: tcp}\n"
)
ALL_FILES = {
    "hook-secret": "s3cret",
    "teams-url": "http://127.0.0.1:9/teams/tok-teams\n",
    "slack-url": "http://127.0.0.1:9/services/T0/B0/tok-slack\n",
}


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    return load_policy(alert_policy(tmp_path, notifications=ALL_CHANNELS, files=ALL_FILES))


@pytest.fixture(scope="module")
def matcher(tmp_path_factory: pytest.TempPathFactory) -> PhraseMatcher:
    path = tmp_path_factory.mktemp("phrases") / "phrases.yaml"
    path.write_text(PHRASES)
    return load_libraries([path])


def record(**overrides: Any) -> dict[str, Any]:
    """A decision record as the Filter leaves it in flow.metadata."""
    values: dict[str, Any] = {
        "action": Action.ALLOW,
        "reason": Reason.DEFAULT,
        "profile": "ks2",
        "identified_by": "user",
        "host": "www.google.com",
        "url": f"https://www.google.com/search?q={TERM.replace(' ', '+')}",
        "user": PUPIL,
        "ip": PUPIL_IP,
    }
    values.update(overrides)
    out = Decision(**values).record()
    out["stage"] = "request"
    out["reference"] = "SG-BCDF-GHJK" if values["action"] is Action.BLOCK else None
    return out


def blocked(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"action": Action.BLOCK, "reason": Reason.RULE}
    return record(**(values | overrides))


def rendered(event: Event) -> str:
    """Everything any channel would carry for `event`, as one string to search."""
    note = notification_for(event, recipients=("dsl@test.example",))
    teams = TeamsChannel(IncomingWebhookSettings("https://teams.example/x")).payload(note)
    slack = SlackChannel(IncomingWebhookSettings("https://hooks.slack.example/x")).payload(note)
    hook = WebhookChannel.body(note, NOW).decode()
    return "\n".join(
        [note.subject, note.text, json.dumps(note.data), json.dumps(teams), json.dumps(slack), hook]
    )


# --- events and routing -----------------------------------------------------------------------


def test_risky_search_tells_the_dsl_who_and_what_on_safeguarding_channels(
    policy: Policy, matcher: PhraseMatcher
) -> None:
    hits = matcher.match(TERM)
    [event] = events_for_decision(record(), policy, TERM, hits, pseudonym=KEY, at=NOW)

    assert event.kind == RISK_PHRASE and event.audience is Audience.SAFEGUARDING
    assert event.severity == 5
    assert event.fields["user"] == PUPIL and event.fields["search"] == TERM
    assert event.fields["category"] == "suicide" and event.fields["phrase"] == "kill myself"
    assert event.fields["time"] == "2026-03-02 10:15:07 GMT"
    # Subjects show on lock screens: no name, no term.
    assert PUPIL not in event.summary and "k1ll" not in event.summary

    got = routes(event, policy, configured_channels(policy))
    assert got == [
        Route("email", ("deputy@test.example", "dsl@test.example")),
        Route("webhook"),
        Route("teams"),
        Route("slack"),
    ]
    note = notification_for(event, recipients=got[0].recipients)
    assert "User: pupil" in note.text and f"Search: {TERM}" in note.text
    assert PUPIL not in note.subject and TERM not in note.subject
    assert note.kind == "alert.risk_phrase" and note.data["fields"]["search"] == TERM


def test_a_value_on_several_lines_cannot_pass_for_the_alerts_own_lines() -> None:
    """A pupil's words (a report, a decoded search) may hold line breaks and "User: ..."; in
    the message they stay indented under their own label."""
    forged = "needed for homework\nUser: headteacher\r\nSearch: nothing worrying\u2028Severity: 1"
    event = Event(
        kind="user_report",
        severity=4,
        audience=Audience.SAFEGUARDING,
        summary="A user reported a page",
        fields={"reporter": "amy", "message": forged, "page": "https://x.example/"},
        fold_key="user_report|1",
        at=NOW,
    )
    lines = notification_for(event).text.splitlines()
    assert [line for line in lines if line and not line.startswith(" ")] == [
        "A user reported a page",
        "Reported by: amy",
        "In their words: needed for homework",
        "Page: https://x.example/",
    ]
    assert "    User: headteacher" in lines and "    Severity: 1" in lines


def test_technical_alert_names_no_pupil_and_goes_to_the_it_provider(policy: Policy) -> None:
    vpn = blocked(
        host="vpn.example", category="circumvention", category_label="Ways round the filter"
    )
    [event] = events_for_decision(vpn, policy, None, [], pseudonym=KEY, at=NOW)

    assert event.kind == CIRCUMVENTION and event.audience is Audience.TECHNICAL
    text = rendered(event)
    assert PUPIL not in text and PUPIL_IP not in text
    assert event.fields["profile"] == "ks2" and event.fields["site"] == "vpn.example"
    assert event.fields["user_ref"] == KEY("u", PUPIL) != KEY("u", "pupil2")
    assert event.fields["device_ref"] == KEY("d", PUPIL_IP)
    assert event.fields["reference"] == "SG-BCDF-GHJK"
    assert routes(event, policy, configured_channels(policy)) == [
        Route("email", ("tech@test.example",)),
        Route("webhook"),
        Route("syslog"),
    ]
    # The same device later gets the same reference; another key gives another.
    assert Pseudonymiser(b"other-key-1234567").__call__("d", PUPIL_IP) != KEY("d", PUPIL_IP)

    fronting = blocked(reason=Reason.FRONTING, host="allowed.example", entry="blocked.example")
    [event] = events_for_decision(fronting, policy, None, [], pseudonym=KEY, at=NOW)
    assert event.kind == CIRCUMVENTION and event.fields["category"] == "domain fronting"


def test_illegal_tier_alert_never_carries_the_address(
    policy: Policy, matcher: PhraseMatcher
) -> None:
    hit = blocked(
        reason=Reason.ILLEGAL,
        host="illegal.test",
        url="http://illegal.test/exact.html?q=kill+myself",
        entry="illegal.test/exact.html",
        list_source=str(policy.path.parent / "lists/illegal/exact.txt"),
    )
    events = events_for_decision(
        hit, policy, "kill myself", matcher.match("kill myself"), pseudonym=KEY, at=NOW
    )
    assert [e.kind for e in events] == [ILLEGAL_TIER]
    event = events[0]
    assert event.severity == 5 and event.audience is Audience.SAFEGUARDING
    text = rendered(event)
    assert "illegal.test" not in text and "exact.html" not in text and "kill" not in text
    assert "illegal-tier list entry" in text and "SG-BCDF-GHJK" in text
    assert event.fields["list"] == "exact.txt" and event.fields["user"] == PUPIL
    assert "Do not try to visit it" in notification_for(event).text


def test_high_risk_blocks_alert_and_others_do_not(policy: Policy) -> None:
    adult = blocked(host="adult.example", category="adult", category_label="Adult content")
    [event] = events_for_decision(adult, policy, None, [], pseudonym=KEY, at=NOW)
    assert event.kind == HIGH_RISK_BLOCK and event.fields["category"] == "Adult content"
    assert event.fields["site"] == "adult.example" and event.fields["user"] == PUPIL

    # What a page fetched by itself (an advert) is not the pupil's doing ...
    assert events_for_decision(adult, policy, None, [], pseudonym=KEY, navigation=False) == []
    # ... but an illegal-tier hit always is worth telling.
    illegal = blocked(reason=Reason.ILLEGAL, host="illegal.test", entry="illegal.test/x")
    assert events_for_decision(illegal, policy, None, [], pseudonym=KEY, navigation=False)

    games = blocked(host="games.example", category="games", category_label="Games")
    assert events_for_decision(games, policy, None, [], pseudonym=KEY) == []
    allowed = record(host="adult.example", category="adult")
    assert events_for_decision(allowed, policy, None, [], pseudonym=KEY) == []
    portal = record(reason=Reason.PORTAL, host="schoolgate.local")
    assert events_for_decision(portal, policy, "kill myself", [], pseudonym=KEY) == []


def test_page_text_hits_name_the_page_without_its_query(
    policy: Policy, matcher: PhraseMatcher
) -> None:
    page = record(host="forum.example", url="https://forum.example/t/1?session=abc")
    text = visible_text(
        "<html><head><title>Forum</title><script>var x='kill myself'</script></head>"
        "<body><p>I want to <b>cut myself</b></p><style>p{}</style></body></html>"
    )
    assert text == "Forum I want to cut myself"
    event = phrase_event(page, policy, matcher.match(text), page="https://forum.example/t/1")
    assert event is not None and event.fields["page"] == "https://forum.example/t/1"
    assert event.fields["category"] == "self harm" and event.severity == 4
    assert "session=abc" not in rendered(event)
    assert phrase_event(page, policy, [], page="https://forum.example/t/1") is None


def test_repeated_blocks_by_one_user_become_one_alert(policy: Policy) -> None:
    tracker = RepeatTracker(debounce_seconds=10)
    count = policy.monitoring.repeat_count  # 5 by default, within 10 minutes
    at = NOW
    got = []
    for n in range(count):
        host = f"site{n}.example"
        for burst in range(3):  # a page's own requests for one site count once
            got.append(tracker.observe(blocked(host=host), policy, at + timedelta(seconds=burst)))
        at += timedelta(seconds=30)
    events = [e for e in got if e is not None]
    assert len(events) == 1 and events[0].kind == REPEATED_BLOCKS
    assert events[0].fields["user"] == PUPIL
    assert events[0].fields["sites"].startswith("site0.example, site1.example")
    # Someone else's blocks, a page's own fetches, allowed requests and outages don't count.
    assert tracker.observe(blocked(host="new.example"), policy, at, navigation=False) is None
    assert tracker.observe(blocked(user="pupil2"), policy, at) is None
    assert tracker.observe(record(), policy, at) is None
    assert tracker.observe(blocked(reason=Reason.UNAVAILABLE), policy, at) is None
    # Attempts spread wider than the window never add up.
    for n in range(count * 2):
        late = at + timedelta(minutes=policy.monitoring.repeat_minutes / 2 * n + 1)
        assert tracker.observe(blocked(host=f"x{n}.example", user="pupil3"), policy, late) is None


def test_failed_reload_is_technical(policy: Policy) -> None:
    event = reload_failed_event(policy, "school.yaml, line 3: 'x' is not a profile", at=NOW)
    assert event.audience is Audience.TECHNICAL and event.severity == 4
    assert event.fields["policy"] == str(policy.path)
    assert "line 3" in event.fields["error"]


def test_a_folded_alert_says_how_often_and_over_what_time(policy: Policy) -> None:
    adult = blocked(host="adult.example", category="adult", category_label="Adult content")
    [event] = events_for_decision(adult, policy, None, [], pseudonym=KEY, at=NOW)
    note = notification_for(event, occurrences=4, first_at=NOW, last_at=NOW + timedelta(minutes=7))
    assert note.subject.endswith("(x4)")
    assert "Occurrences: 4, 2026-03-02 10:15:07 GMT to 2026-03-02 10:22:07 GMT" in note.text
    assert note.data["occurrences"] == 4
    again = Event.from_json(json.loads(json.dumps(event.to_json())))
    assert again == event


# --- policy -----------------------------------------------------------------------------------


def test_policy_reads_chat_and_syslog_channels(tmp_path: Path) -> None:
    policy = load_policy(alert_policy(tmp_path, notifications=ALL_CHANNELS, files=ALL_FILES))
    n = policy.notifications
    assert n.teams_url_file == (policy.path.parent / "teams-url").resolve()
    assert n.slack_url_file is not None and n.syslog is not None
    assert (n.syslog.host, n.syslog.port, n.syslog.protocol) == ("127.0.0.1", 5514, "tcp")
    channels = build_channels(policy)
    assert sorted(channels) == ["email", "slack", "syslog", "teams", "webhook"]
    assert "tok-teams" not in repr(channels) and "tok-slack" not in repr(channels)


def test_policy_refuses_bad_syslog_and_missing_url_files(tmp_path: Path) -> None:
    bad = (
        "  teams_url_file: no-such-file\n  syslog: {host: 127.0.0.1, port: 70000, protocol: tls}\n"
    )
    with pytest.raises(PolicyError) as info:
        load_policy(alert_policy(tmp_path, notifications=bad))
    text = str(info.value)
    assert "Teams webhook URL file 'no-such-file' does not exist" in text
    assert "syslog port should be a number from 1 to 65535" in text
    assert "syslog protocol should be udp or tcp" in text


# --- chat channels ----------------------------------------------------------------------------


@dataclass
class ChatPost:
    path: str
    content_type: str
    payload: Any


class ChatReceiver(http.server.ThreadingHTTPServer):
    status: int
    posts: list[ChatPost]


class _Chat(http.server.BaseHTTPRequestHandler):
    server: ChatReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.posts.append(
            ChatPost(self.path, self.headers.get("Content-Type", ""), json.loads(body))
        )
        self.send_response(self.server.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def chat() -> Iterator[ChatReceiver]:
    server = ChatReceiver(("127.0.0.1", 0), _Chat)
    server.status, server.posts = 200, []
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def chat_url(server: ChatReceiver, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def alert_note(policy: Policy, matcher: PhraseMatcher, term: str = TERM) -> Notification:
    hits = matcher.match(term)
    [event] = events_for_decision(record(), policy, term, hits, pseudonym=KEY, at=NOW)
    return notification_for(event)


def test_teams_gets_an_adaptive_card(
    chat: ChatReceiver, policy: Policy, matcher: PhraseMatcher, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = chat_url(chat, "/webhookb2/tok-teams")
    TeamsChannel(IncomingWebhookSettings(url)).send(alert_note(policy, matcher))

    [post] = chat.posts
    assert post.path == "/webhookb2/tok-teams"
    assert post.content_type == "application/json; charset=utf-8"
    assert post.payload["type"] == "message"
    [attachment] = post.payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    heading, facts = card["body"]
    assert heading["type"] == "TextBlock" and heading["color"] == "Attention"
    assert "Risk phrase in a search" in heading["text"]
    shown = {f["title"]: f["value"] for f in facts["facts"]}
    assert shown["User"] == PUPIL and shown["Search"] == TERM
    assert "tok-teams" not in caplog.text  # the URL is the credential

    # What a pupil typed can't become a link or formatting in the DSL's channel.
    term = "[kill myself](http://evil.example) *now*"
    TeamsChannel(IncomingWebhookSettings(url)).send(alert_note(policy, matcher, term))
    facts = chat.posts[-1].payload["attachments"][0]["content"]["body"][1]["facts"]
    [search] = [f["value"] for f in facts if f["title"] == "Search"]
    assert search == r"\[kill myself\](http://evil.example) \*now\*"


def test_slack_gets_block_kit_with_user_text_escaped(
    chat: ChatReceiver, policy: Policy, matcher: PhraseMatcher
) -> None:
    term = "<!channel> kill myself & <http://evil.example|click>"
    url = chat_url(chat, "/services/T0/B0/tok-slack")
    SlackChannel(IncomingWebhookSettings(url)).send(alert_note(policy, matcher, term))

    [post] = chat.posts
    payload = post.payload
    assert payload["text"].startswith("Schoolgate safeguarding alert: Risk phrase")
    assert PUPIL not in payload["text"]  # what a lock screen shows
    header, section = payload["blocks"][:2]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    fields = [f["text"] for f in section["fields"]]
    assert "*User*\npupil" in fields
    [search] = [f for f in fields if f.startswith("*Search*")]
    assert "<" not in search and "&lt;!channel&gt; kill myself &amp; &lt;http" in search


def test_chat_channel_down_or_refusing_is_notify_error(chat: ChatReceiver) -> None:
    chat.status = 404
    note = Notification("alert.x", "subject", "text", ())
    with pytest.raises(NotifyError, match="answered 404"):
        SlackChannel(IncomingWebhookSettings(chat_url(chat, "/s/tok"))).send(note)
    dead = f"http://127.0.0.1:{_free_port()}/x"
    with pytest.raises(NotifyError, match="unreachable"):
        TeamsChannel(IncomingWebhookSettings(dead, timeout=2)).send(note)
    with pytest.raises(ValueError):
        IncomingWebhookSettings("file:///etc/passwd")


# --- syslog -----------------------------------------------------------------------------------

_HEADER = re.compile(
    rb"^<(?P<pri>\d{1,3})>(?P<version>[1-9]\d{0,2}) (?P<timestamp>\S+) (?P<hostname>\S{1,255}) "
    rb"(?P<app>\S{1,48}) (?P<procid>\S{1,128}) (?P<msgid>\S{1,32}) "
)
_ELEMENT = re.compile(
    rb'\[(?P<id>[^ =\]"]{1,32})(?P<params>(?: [^ =\]"]{1,32}="(?:[^"\\\]]|\\.)*")*)\]'
)
_PARAM = re.compile(rb'([^ =\]"]{1,32})="((?:[^"\\\]]|\\.)*)"')
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$")


@dataclass
class SyslogMessage:
    facility: int
    severity: int
    timestamp: datetime
    hostname: str
    app: str
    procid: str
    msgid: str
    data: dict[str, dict[str, str]]
    msg: str


def parse_rfc5424(raw: bytes) -> SyslogMessage:
    """A strict parser for what a SIEM collector expects (RFC 5424 section 6)."""
    m = _HEADER.match(raw)
    assert m, raw
    pri, version = int(m["pri"]), m["version"]
    assert 0 <= pri <= 191 and version == b"1"
    stamp = m["timestamp"].decode()
    assert _TIMESTAMP.match(stamp), stamp
    rest = raw[m.end() :]
    data: dict[str, dict[str, str]] = {}
    if rest.startswith(b"-"):
        rest = rest[1:]
    else:
        while rest.startswith(b"["):
            e = _ELEMENT.match(rest)
            assert e, rest
            params = {
                k.decode(): re.sub(rb"\\(.)", rb"\1", v).decode()
                for k, v in _PARAM.findall(e["params"])
            }
            data[e["id"].decode()] = params
            rest = rest[e.end() :]
    msg = b""
    if rest:
        assert rest.startswith(b" "), rest
        msg = rest[1:]
        assert msg.startswith(b"\xef\xbb\xbf"), "MSG in UTF-8 starts with a BOM"
    return SyslogMessage(
        facility=pri // 8,
        severity=pri % 8,
        timestamp=datetime.fromisoformat(stamp.replace("Z", "+00:00")),
        hostname=m["hostname"].decode(),
        app=m["app"].decode(),
        procid=m["procid"].decode(),
        msgid=m["msgid"].decode(),
        data=data,
        msg=msg[3:].decode("utf-8"),
    )


@dataclass
class SyslogCollector:
    protocol: str
    port: int
    messages: list[SyslogMessage] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)

    def add(self, data: bytes) -> None:
        self.raw.append(data)
        self.messages.append(parse_rfc5424(data))


class _UdpHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.collector.add(self.request[0])  # type: ignore[attr-defined]


class _TcpHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        """RFC 6587 octet counting: "LEN SP MESSAGE", repeated."""
        while True:
            digits = b""
            while (c := self.rfile.read(1)) not in (b" ", b""):
                assert c.isdigit(), c
                digits += c
            if not digits:
                return
            self.server.collector.add(self.rfile.read(int(digits)))  # type: ignore[attr-defined]


@pytest.fixture(params=["udp", "tcp"])
def collector(request: pytest.FixtureRequest) -> Iterator[SyslogCollector]:
    server: socketserver.BaseServer
    if request.param == "udp":
        server = socketserver.ThreadingUDPServer(("127.0.0.1", 0), _UdpHandler)
    else:
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _TcpHandler)
    got = SyslogCollector(request.param, server.server_address[1])  # type: ignore[index]
    server.collector = got  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield got
    server.shutdown()
    server.server_close()


def wait_for(check: Any, timeout: float = 5.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_syslog_sends_rfc5424_with_structured_data(
    collector: SyslogCollector, policy: Policy
) -> None:
    vpn = blocked(host="vpn.example", category="circumvention", category_label='A "b" ]c\\')
    [event] = events_for_decision(vpn, policy, None, [], pseudonym=KEY, at=NOW)
    settings = SyslogSettings("127.0.0.1", collector.port, collector.protocol, hostname="gw1")
    notifier = SyslogChannel(settings)
    notifier.send(notification_for(event))
    notifier.send(notification_for(reload_failed_event(policy, "bad ] line", at=NOW)))

    wait_for(lambda: len(collector.messages) == 2)
    # Each send is its own TCP connection: the collector may take the second first.
    first, second = sorted(collector.messages, key=lambda m: m.msgid != "alert.circumvention")
    assert (first.facility, first.severity) == (13, 4)  # log audit; ours 3 -> warning
    assert second.severity == 3  # ours 4 -> error
    assert first.hostname == "gw1" and first.app == "schoolgate"
    assert first.msgid == "alert.circumvention"
    assert abs((datetime.now(UTC) - first.timestamp).total_seconds()) < 10
    sd = first.data["schoolgate@32473"]
    assert sd["kind"] == "alert.circumvention" and sd["audience"] == "technical"
    assert sd["severity"] == "3" and sd["site"] == "vpn.example"
    assert sd["category"] == 'A "b" ]c\\'  # escaped on the wire, intact when parsed
    assert sd["device_ref"] == KEY("d", PUPIL_IP)
    assert first.msg.startswith("Schoolgate technical alert: Circumvention attempt")
    wire = b"".join(collector.raw)
    assert PUPIL.encode() not in wire and PUPIL_IP.encode() not in wire
    assert second.data["schoolgate@32473"]["error"] == "bad ] line"


def test_syslog_refuses_safeguarding_alerts(policy: Policy, matcher: PhraseMatcher) -> None:
    notifier = SyslogChannel(SyslogSettings("127.0.0.1", _free_port(), "udp"))
    with pytest.raises(NotifyError, match="only technical alerts"):
        notifier.send(alert_note(policy, matcher))
    with pytest.raises(ValueError):
        SyslogSettings("127.0.0.1", 514, "tls")


def test_syslog_collector_down_is_notify_error() -> None:
    notifier = SyslogChannel(SyslogSettings("127.0.0.1", _free_port(), "tcp", timeout=2))
    note = Notification("alert.x", "s", "t", (), data={"audience": "technical"})
    with pytest.raises(NotifyError, match="ConnectionRefusedError"):
        notifier.send(note)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_scanned_page_is_read_as_mitmproxy_reads_it() -> None:
    # alerting hands the scan thread the headers and raw body, not a copy of the response:
    # the body must still be decoded and its charset found as `get_text` would.
    import gzip

    from mitmproxy import http

    from proxy_addons.gateway.page_scan import as_text, decoded

    page = "<html><body><p>Chcę się zabić</p></body></html>"
    for content_encoding, charset, raw in [
        ("gzip", "utf-8", gzip.compress(page.encode())),
        ("", "iso-8859-2", page.encode("iso-8859-2")),
        ("", "", page.encode()),
        ("gzip", "utf-8", b"not gzip at all"),  # undecodable: read as sent, as mitmproxy does
    ]:
        headers = {"content-type": f"text/html; charset={charset}" if charset else "text/html"}
        if content_encoding:
            headers["content-encoding"] = content_encoding
        response = http.Response.make(200, b"", headers)
        response.raw_content = raw
        text = as_text(decoded(raw, content_encoding), headers["content-type"])
        assert text == response.get_text(strict=False)
        if raw != b"not gzip at all":
            assert visible_text(text) == "Chcę się zabić"
