"""The recorder: last in the chain, it settles once which verdict took effect for each
request and connection, and hands every verdict to its sinks (the access log, the alert
intake, the decision metrics, the check witness: record/seen.py's `Sink`). No sink
decides again, or works out again which verdict counted.

A page may be decided up to three times: at CONNECT, at the TLS ClientHello (or a
transparent connection's first bytes) and per decrypted request. Which one took effect:

- a request's verdict, always (`requestheaders`: every decided request passes it once,
  even one whose answer never completes). The connection's earlier verdicts waiting for
  it are superseded by it.
- a CONNECT's, at once if the Filter answered it (refused: nothing follows). An allowed
  one waits: a TLS verdict or requests on the connection follow and supersede it; a
  tunnel with neither (not TLS, not HTTP) makes it count when it closes.
- a connection's (`Services.connection(...).verdict`, TLS or raw TCP), at once if it was
  refused or passed through on its host name. One the Filter decrypts waits for its
  requests; if the device refuses the school's certificate instead (`tls_failed_client`),
  it counts; if the connection ends without a request, it had no effect.

One verdict comes after the request's: the content filter's on the page (stage "response",
core/verdict.py `ContentFinding`), reached in `response` or while the body streams, where
no hook runs. The content filter hands it over through `Services.record_late`, and it goes
to the sinks at once, as `Took.RESPONSE`: recorded when reached, whether or not the flow
then completes.

A verdict with no effect is still handed to the sinks, as `Took.SUPERSEDED`, so that
every decision is timed once.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from mitmproxy import connection, http, tls
from mitmproxy.proxy import layer, layers

from proxy_addons.core.verdict import Verdict
from proxy_addons.gateway.flows import proxyauth_user
from proxy_addons.gateway.headers import header
from proxy_addons.gateway.refuse_layer import RefuseLayer
from proxy_addons.gateway.services import Services, client_ip, verdict_of
from proxy_addons.record import metrics
from proxy_addons.record.seen import Answer, Seen, Sink, Took

logger = logging.getLogger(__name__)
RECORDED_KEY = "schoolgate_recorded"  # flow.metadata: this flow's verdict was handed on


@dataclass(slots=True)
class _Waiting:
    """A client connection's verdicts that wait to learn whether they took effect."""

    connect: tuple[Verdict, Seen] | None = None  # an allowed CONNECT's
    looked_at: Verdict | None = None  # the connection verdict last looked at
    decrypted: tuple[Verdict, Seen] | None = None  # the connection verdict, awaiting requests
    undecided: bool = False  # the layer was not chosen yet when `looked_at` was looked at


class Recorder:
    """Hands every verdict, once, with how it took effect, to each of its sinks."""

    name = "schoolgate_recorder"

    def __init__(self, services: Services, sinks: Sequence[Sink]) -> None:
        self.services = services
        self.sinks = tuple(sinks)
        self._waiting: weakref.WeakKeyDictionary[connection.Client, _Waiting] = (
            weakref.WeakKeyDictionary()
        )
        services.record_late = self.record_late

    # -- hooks ---------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        verdict = verdict_of(flow)
        if verdict is None or verdict.stage != "connect" or flow.metadata.get(RECORDED_KEY):
            return
        flow.metadata[RECORDED_KEY] = True
        seen = _seen(flow, Took.REFUSED)
        response = flow.response
        if response is not None and response.status_code >= 300:
            answer = Answer(
                flow.request.pretty_url,
                response.status_code,
                dict(response.headers),
                response.get_content(strict=False) or b"",
            )
            self._hand(verdict, replace(seen, answer=answer))
            return
        waiting = self._waiting_for(flow.client_conn)
        self._supersede(waiting.connect)
        waiting.connect = (verdict, seen)

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        client = nextlayer.context.client
        state = self.services.peek(client)
        verdict = state.verdict if state is not None else None
        if verdict is None:
            return
        waiting = self._waiting_for(client)
        chosen = nextlayer.layer
        if verdict is waiting.looked_at:
            if not waiting.undecided or waiting.decrypted is None:
                return  # next_layer runs more than once per connection: settled already
            seen = waiting.decrypted[1]  # the layer was not chosen then: perhaps now
            waiting.decrypted = None
        else:
            self._supersede(waiting.connect)  # this connection's verdict decides, not the CONNECT's
            self._supersede(waiting.decrypted)
            waiting.connect = waiting.decrypted = None
            waiting.looked_at = verdict
            seen = Seen(Took.REFUSED, datetime.now(UTC), id(client), ip=client_ip(client))
        waiting.undecided = chosen is None  # waiting for more bytes (circumvention.py)
        if isinstance(chosen, RefuseLayer):
            self._hand(verdict, seen)
        elif isinstance(chosen, layers.TCPLayer):
            self._hand(verdict, replace(seen, took=Took.PASSED))
        else:
            waiting.decrypted = (verdict, seen)  # decrypted or HTTP: its requests will count

    def tls_failed_client(self, data: tls.TlsData) -> None:
        waiting = self._waiting.get(data.context.client)
        if waiting is None or waiting.decrypted is None:
            return
        verdict, seen = waiting.decrypted
        waiting.decrypted = None
        self._hand(verdict, replace(seen, took=Took.TLS_FAILED))

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        verdict = verdict_of(flow)
        if verdict is None or verdict.stage != "request" or flow.metadata.get(RECORDED_KEY):
            return
        flow.metadata[RECORDED_KEY] = True
        client = flow.client_conn
        waiting = self._waiting.get(client)
        if waiting is not None:  # the connection's requests speak for it
            self._supersede(waiting.connect)
            self._supersede(waiting.decrypted)
            waiting.connect = waiting.decrypted = None
        request = flow.request
        seen = replace(
            _seen(flow, Took.REQUEST),
            url=None if verdict.record.get("url") else request.pretty_url,  # only when it lacks one
            path=request.path,
            navigation=_is_navigation(request),
        )
        self._hand(verdict, seen)

    def client_disconnected(self, client: connection.Client) -> None:
        waiting = self._waiting.pop(client, None)
        if waiting is None:
            return
        self._supersede(waiting.decrypted)  # decrypted, handshake done, no request: no effect
        if waiting.connect is not None:  # a tunnel that was neither TLS nor HTTP
            verdict, seen = waiting.connect
            self._hand(verdict, replace(seen, took=Took.CLOSED))

    def record_late(self, flow: http.HTTPFlow, verdict: Verdict) -> None:
        """A verdict on the page, reached after the request's: handed on as it is reached."""
        request = flow.request
        seen = replace(
            _seen(flow, Took.RESPONSE),
            at=datetime.now(UTC),  # when the page was judged, not when it was asked for
            url=None if verdict.record.get("url") else request.pretty_url,
            path=request.path,
            navigation=_is_navigation(request),
        )
        self._hand(verdict, seen)

    # -- helpers -------------------------------------------------------------

    def _waiting_for(self, client: connection.Client) -> _Waiting:
        waiting = self._waiting.get(client)
        if waiting is None:
            waiting = self._waiting[client] = _Waiting()
        return waiting

    def _supersede(self, pending: tuple[Verdict, Seen] | None) -> None:
        if pending is not None:
            verdict, seen = pending
            self._hand(verdict, replace(seen, took=Took.SUPERSEDED))

    def _hand(self, verdict: Verdict, seen: Seen) -> None:
        """Each sink on its own: one that fails (a full disk under the access log) must not
        keep the verdict from the others (the alert that a pupil was blocked from a
        high-risk site). The answer was sent before this; recording never changes it."""
        for sink in self.sinks:
            try:
                sink.record(verdict, seen)
            except Exception as exc:
                name = type(sink).__name__
                logger.error("Recording a %s verdict failed in %s: %s", seen.took, name, exc)
                metrics.record_sink_failed(name)


def _seen(flow: http.HTTPFlow, took: Took) -> Seen:
    """What a request or CONNECT adds: when it started, from where, who signed in."""
    started = flow.request.timestamp_start
    return Seen(
        took,
        datetime.fromtimestamp(started, UTC) if started else datetime.now(UTC),
        id(flow.client_conn),
        ip=client_ip(flow.client_conn),
        user=proxyauth_user(flow),  # the name only: never the password
        method=flow.request.method,
    )


def _is_navigation(request: http.Request) -> bool:
    """Did the person ask for this (a page or frame), rather than a page fetching it?

    Browsers say so in Sec-Fetch-Dest; without it (older browsers, apps, curl) assume yes.
    """
    dest = header(request.headers, b"sec-fetch-dest").lower()
    return dest in ("", "document", "iframe", "frame")
