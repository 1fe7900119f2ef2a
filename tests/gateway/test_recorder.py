"""The Recorder in-process (mitmproxy's taddons/tflow): which verdict took effect for a
request or connection, handed to the sinks once. No mitmdump: the verdicts are put where
the Filter keeps them (`flow.metadata`, `Services.connection`) and the hooks called in the
order mitmproxy calls them. The wire-level paths stay in tests/gateway/test_gateway_e2e.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from mitmproxy import connection, http, tls
from mitmproxy.proxy import layer, layers
from mitmproxy.proxy.context import Context
from mitmproxy.test import taddons, tflow

from proxy_addons.alerts.events import Event
from proxy_addons.core.decide import Decision, Reason
from proxy_addons.core.policy.load import load_policy
from proxy_addons.core.policy.model import Action
from proxy_addons.core.verdict import (
    CONTENT_BLOCKED,
    CONTENT_UNREADABLE,
    CONTENT_UNSCANNED,
    ContentFinding,
    Verdict,
)
from proxy_addons.gateway.addons.recorder import Recorder
from proxy_addons.gateway.alert_intake import AlertIntake
from proxy_addons.gateway.content_block import CONTENT_BLOCK
from proxy_addons.gateway.refuse_layer import RefuseLayer
from proxy_addons.gateway.services import VERDICT_KEY, Services
from proxy_addons.record import metrics
from proxy_addons.record.access_files import JSON_FILE
from proxy_addons.record.access_sink import AccessLogSink
from proxy_addons.record.access_writer import AccessWriter
from proxy_addons.record.decision_metrics import DecisionMetrics
from proxy_addons.record.seen import Seen, Took
from tests.conftest import ROOT

IP = "192.0.2.50"


class Kept:
    """A sink that keeps what it was handed, in order."""

    def __init__(self) -> None:
        self.handed: list[tuple[Verdict, Seen]] = []

    def record(self, verdict: Verdict, seen: Seen) -> None:
        self.handed.append((verdict, seen))

    def took(self) -> list[tuple[str, Took]]:
        return [(v.stage, s.took) for v, s in self.handed]


@pytest.fixture
def tctx() -> Iterator[taddons.context]:
    with taddons.context() as tctx:
        yield tctx


@pytest.fixture
def services() -> Services:
    return Services()


@pytest.fixture
def kept() -> Kept:
    return Kept()


@pytest.fixture
def recorder(services: Services, kept: Kept) -> Recorder:
    return Recorder(services, [kept])


def verdict(stage: str, host: str, *, blocked: bool = False, url: str | None = None) -> Verdict:
    action, reason = (Action.BLOCK, Reason.RULE) if blocked else (Action.ALLOW, Reason.DEFAULT)
    decision = Decision(action, reason, "learners", "network", host, url=url, ip=IP)
    return Verdict(decision, stage, reference="ABC-123" if blocked else None, decide_seconds=0.001)


def client() -> connection.Client:
    conn = tflow.tclient_conn()
    conn.peername = (IP, 40000)
    return conn


def connect_flow(conn: connection.Client, v: Verdict) -> http.HTTPFlow:
    f = tflow.tflow(client_conn=conn)
    f.request.method, f.request.host, f.request.port = "CONNECT", v.host, 443
    f.metadata[VERDICT_KEY] = v
    return f


def request_flow(conn: connection.Client, v: Verdict, path: str = "/") -> http.HTTPFlow:
    f = tflow.tflow(client_conn=conn)
    f.request.scheme, f.request.host, f.request.port, f.request.path = "https", v.host, 443, path
    f.metadata[VERDICT_KEY] = v
    return f


def next_layer(
    tctx: taddons.context, services: Services, conn: connection.Client, v: Verdict, chosen: type
) -> layer.NextLayer:
    """The hook as mitmproxy calls it once the Filter has kept `v` for the connection."""
    services.connection(conn).verdict = v
    nl = layer.NextLayer(Context(conn, tctx.options))
    if chosen is layers.ClientTLSLayer:  # decrypted: mitmproxy stacks it on the server's
        nl.context.layers = [layers.ServerTLSLayer(nl.context), nl]
    nl.layer = chosen(nl.context) if chosen is not type(None) else None
    return nl


def test_connect_then_tls_then_request_counts_the_request(
    tctx: taddons.context, services: Services, recorder: Recorder, kept: Kept
) -> None:
    conn = client()
    recorder.http_connect(connect_flow(conn, verdict("connect", "site.test")))
    assert kept.took() == []  # an allowed CONNECT waits for what follows
    nl = next_layer(tctx, services, conn, verdict("tls", "site.test"), layers.ClientTLSLayer)
    recorder.next_layer(nl)
    recorder.next_layer(nl)  # next_layer runs more than once per connection
    assert kept.took() == [("connect", Took.SUPERSEDED)]  # decrypted: its requests will count
    request = verdict("request", "site.test", url="https://site.test/page")
    recorder.requestheaders(f := request_flow(conn, request, "/page"))
    recorder.requestheaders(f)  # a flow is handed on once
    assert kept.took() == [
        ("connect", Took.SUPERSEDED),
        ("tls", Took.SUPERSEDED),
        ("request", Took.REQUEST),
    ]
    seen = kept.handed[-1][1]
    assert (seen.ip, seen.method, seen.path, seen.url) == (IP, "GET", "/page", None)
    recorder.requestheaders(request_flow(conn, verdict("request", "site.test")))
    recorder.client_disconnected(conn)
    assert kept.took()[3:] == [("request", Took.REQUEST)]  # nothing left waiting


def test_a_blocked_connect_counts_at_once_with_the_answer_given(
    recorder: Recorder, kept: Kept
) -> None:
    conn = client()
    f = connect_flow(conn, verdict("connect", "chat.test", blocked=True))
    f.response = http.Response.make(403, b"Blocked (ABC-123)", {"Content-Type": "text/plain"})
    recorder.http_connect(f)
    recorder.client_disconnected(conn)  # no flow after it
    assert kept.took() == [("connect", Took.REFUSED)]
    seen = kept.handed[0][1]
    assert seen.method == "CONNECT" and seen.answer is not None
    assert seen.answer.status == 403 and seen.answer.body == b"Blocked (ABC-123)"


def test_an_allowed_connect_whose_tunnel_was_neither_tls_nor_http_counts_when_it_closes(
    recorder: Recorder, kept: Kept
) -> None:
    conn = client()
    recorder.http_connect(connect_flow(conn, verdict("connect", "site.test")))
    recorder.client_disconnected(conn)
    assert kept.took() == [("connect", Took.CLOSED)]


@pytest.mark.parametrize(
    ("chosen", "took"), [(layers.TCPLayer, Took.PASSED), (RefuseLayer, Took.REFUSED)]
)
def test_a_raw_tcp_connection_counts_once_passed_or_refused(
    tctx: taddons.context,
    services: Services,
    recorder: Recorder,
    kept: Kept,
    chosen: type,
    took: Took,
) -> None:
    conn = client()
    tcp = verdict("tcp", "198.51.100.7", blocked=chosen is RefuseLayer)
    recorder.next_layer(next_layer(tctx, services, conn, tcp, type(None)))  # more bytes, please
    assert kept.took() == []
    recorder.next_layer(next_layer(tctx, services, conn, tcp, chosen))
    recorder.next_layer(next_layer(tctx, services, conn, tcp, chosen))
    recorder.client_disconnected(conn)
    assert kept.took() == [("tcp", took)]


def test_a_tunnel_verdict_after_the_connections_own_supersedes_it(
    tctx: taddons.context, services: Services, recorder: Recorder, kept: Kept
) -> None:
    conn = client()
    recorder.next_layer(next_layer(tctx, services, conn, verdict("tcp", "h.test"), type(None)))
    tunnel = verdict("tunnel", "h.test", blocked=True)
    recorder.next_layer(next_layer(tctx, services, conn, tunnel, RefuseLayer))
    assert kept.took() == [("tcp", Took.SUPERSEDED), ("tunnel", Took.REFUSED)]


def test_a_decrypted_connection_the_device_refuses_counts_its_tls_verdict(
    tctx: taddons.context, services: Services, recorder: Recorder, kept: Kept
) -> None:
    conn = client()
    tls_verdict = verdict("tls", "chat.test", blocked=True)
    recorder.next_layer(next_layer(tctx, services, conn, tls_verdict, layers.ClientTLSLayer))
    recorder.tls_failed_client(tls.TlsData(conn, Context(conn, tctx.options)))
    recorder.client_disconnected(conn)
    assert kept.took() == [("tls", Took.TLS_FAILED)]


def test_a_decrypted_connection_with_no_request_had_no_effect(
    tctx: taddons.context, services: Services, recorder: Recorder, kept: Kept
) -> None:
    conn = client()
    recorder.next_layer(
        next_layer(tctx, services, conn, verdict("tls", "site.test"), layers.ClientTLSLayer)
    )
    recorder.client_disconnected(conn)
    assert kept.took() == [("tls", Took.SUPERSEDED)]


def _decisions(stage: str) -> float:
    labels = {
        "profile": "learners",
        "category": metrics.NO_CATEGORY,
        "outcome": "allow",
        "reason": "default",
        "stage": stage,
    }
    return metrics.REGISTRY.get_sample_value("schoolgate_decisions_total", labels) or 0.0


def test_the_real_sinks_log_and_count_only_what_took_effect(
    tctx: taddons.context, services: Services, tmp_path: Path
) -> None:
    writer = AccessWriter(tmp_path / JSON_FILE, None, lambda: None, pace_seconds=0)
    writer.start()
    recorder = Recorder(services, [AccessLogSink(lambda: writer), DecisionMetrics()])
    before = {stage: _decisions(stage) for stage in ("connect", "tls", "request")}
    conn = client()
    recorder.http_connect(connect_flow(conn, verdict("connect", "site.test")))
    nl = next_layer(tctx, services, conn, verdict("tls", "site.test"), layers.ClientTLSLayer)
    recorder.next_layer(nl)
    recorder.requestheaders(request_flow(conn, verdict("request", "site.test"), "/a?q=1"))
    recorder.client_disconnected(conn)
    writer.close()
    lines = (tmp_path / JSON_FILE).read_text().splitlines()
    [logged] = [json.loads(line) for line in lines]
    assert (logged["stage"], logged["method"], logged["ip"]) == ("request", "GET", IP)
    assert logged["url"] == "https://site.test/a"  # the query string never reaches the log
    after = {stage: _decisions(stage) for stage in before}
    assert {stage: after[stage] - before[stage] for stage in before} == {
        "connect": 0,
        "tls": 0,
        "request": 1,
    }


SCORED = ContentFinding(
    CONTENT_BLOCKED,
    rule="content score 230 over 100 (learners profile)",
    category="pornography",
    category_label="Pornography",
    list_source="en",
    entry="hardcore porn, xxx",
    score=230,
    threshold=100,
    phrases=("hardcore porn", "xxx"),
)
UNREADABLE = ContentFinding(
    CONTENT_UNREADABLE,
    rule="content could not be checked: content encoding 'foo' can't be read",
    category="unreadable",
    category_label="Content that could not be checked",
)
UNSCANNED = ContentFinding(CONTENT_UNSCANNED, rule="content not scanned: over the cap")


def test_a_late_content_verdict_reaches_each_sink_once(
    tctx: taddons.context, services: Services, tmp_path: Path
) -> None:
    """The content filter's verdict on a page, reached after the request's was recorded,
    handed through Services as the content filter hands it: logged, alerted, not counted."""
    writer = AccessWriter(tmp_path / JSON_FILE, None, lambda: None, pace_seconds=0)
    writer.start()
    raised: list[Event] = []
    policy = load_policy(ROOT / "tests" / "data" / "policy" / "school.yaml")
    intake = AlertIntake(lambda: policy, raised.append)
    kept = Kept()
    sinks = [AccessLogSink(lambda: writer), intake, DecisionMetrics(), kept]
    recorder = Recorder(services, sinks)
    request = verdict("request", "site.test")
    flow = request_flow(client(), request, "/page")
    recorder.requestheaders(flow)
    responses_before = _content_decisions()
    for finding, reference in ((SCORED, "XYZ-789"), (UNREADABLE, "XYZ-790"), (UNSCANNED, None)):
        late = replace(request, stage="response", reference=reference, content=finding)
        services.record_late(flow, late)
    intake.close()
    writer.close()
    assert kept.took() == [("request", Took.REQUEST)] + [("response", Took.RESPONSE)] * 3
    lines = (tmp_path / JSON_FILE).read_text().splitlines()
    logged = [json.loads(line) for line in lines]
    assert [(r["stage"], r["decision"], r["reason"]) for r in logged] == [
        ("request", "allow", "default"),
        ("response", "block", "content"),
        ("response", "block", "content"),
        ("response", "allow", "unscanned"),
    ]
    scored, unreadable, unscanned = logged[1:]
    assert (scored["category"], scored["entry"], scored["list"]) == (
        "pornography",
        "hardcore porn, xxx",
        "en",
    )
    assert (scored["rule"], scored["reference"]) == (SCORED.rule, "XYZ-789")
    assert (scored["url"], scored["method"], scored["ip"]) == ("https://site.test/page", "GET", IP)
    assert (unreadable["category"], unreadable["entry"]) == ("unreadable", None)
    assert (unscanned["rule"], unscanned["reference"]) == (UNSCANNED.rule, None)
    [event] = raised  # only the block by score raises an alert: an unread page is no one's
    assert event.kind == CONTENT_BLOCK
    assert (event.fields["score"], event.fields["reference"]) == ("230 (limit 100)", "XYZ-789")
    assert event.fields["phrase"] == "hardcore porn, xxx"
    assert _content_decisions() == responses_before  # counted as before: not at all


def test_a_checks_own_page_blocked_for_its_content_raises_no_alert(services: Services) -> None:
    raised: list[Event] = []
    policy = load_policy(ROOT / "tests" / "data" / "policy" / "school.yaml")
    intake = AlertIntake(lambda: policy, raised.append)
    Recorder(services, [intake])
    probe = replace(verdict("request", "site.test"), check_probe=True)
    services.record_late(
        request_flow(client(), probe, "/page"),
        replace(probe, stage="response", reference="XYZ-791", content=SCORED),
    )
    intake.close()
    assert raised == []


def _content_decisions() -> float:
    """schoolgate_decisions_total's samples at stage "response", all labels."""
    return sum(
        sample.value
        for family in metrics.REGISTRY.collect()
        for sample in family.samples
        if sample.name == "schoolgate_decisions_total" and sample.labels.get("stage") == "response"
    )


class Broken:
    """A sink that fails, as the access log does on a full disk."""

    def record(self, verdict: Verdict, seen: Seen) -> None:
        raise OSError("No space left on device")


def test_a_failing_sink_keeps_the_verdict_from_no_other_sink(
    services: Services, kept: Kept, caplog: pytest.LogCaptureFixture
) -> None:
    before = metrics.RECORD_SINK_FAILED.labels("other")._value.get()
    recorder = Recorder(services, [Broken(), kept, Broken()])
    conn = client()
    f = connect_flow(conn, verdict("connect", "chat.test", blocked=True))
    f.response = http.Response.make(403, b"Blocked (ABC-123)", {"Content-Type": "text/plain"})
    recorder.http_connect(f)
    assert kept.took() == [("connect", Took.REFUSED)]  # the alert intake would still hear of it
    assert f.response.status_code == 403  # recording never changes the answer
    assert metrics.RECORD_SINK_FAILED.labels("other")._value.get() == before + 2
    failures = [r for r in caplog.records if "failed in Broken" in r.getMessage()]
    assert len(failures) == 2 and "No space left" in failures[0].getMessage()
