"""The check witness add-on: notes what the gateway did with a browser check's test requests.

Runs after the Filter (and any add-on that changes answers) and only looks: while the check
page has a probe armed for a client and host (`check_probes.ProbeBook`), it turns the
Filter's decisions and the answers passed on into `Sighting`s for that probe. With nothing
armed every hook returns after one dictionary test. Also keeps the list of open host-only
tunnels, whose requests the gateway can't see, so a later probe knows one was reused.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import replace
from urllib.parse import urljoin

from mitmproxy import connection, http, tls
from mitmproxy.proxy import layer, layers

from agent.check_suite import Observation, observe_response
from proxy_addons.checks.probes import Probe, ProbeBook, ProbeError, Sighting, Stage, host_of
from proxy_addons.core.hosts import HostError, canonical_host
from proxy_addons.core.verdict import Verdict
from proxy_addons.gateway.refuse_layer import RefuseLayer
from proxy_addons.gateway.services import Services, client_ip, verdict_of

logger = logging.getLogger(__name__)

BODY_LIMIT = 200_000  # enough of a page to find a block page's or engine's markers


class CheckWitness:
    """Feeds the check page's armed probes from the gateway's own decisions."""

    name = "schoolgate_check_witness"

    def __init__(self, services: Services) -> None:
        self.services = services
        self.book: ProbeBook = services.probes
        self._seen_tls: weakref.WeakKeyDictionary[connection.Client, int] = (
            weakref.WeakKeyDictionary()
        )

    # -- hooks ---------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        verdict = verdict_of(flow)
        if verdict is None or verdict.stage != "connect" or flow.response is None:
            return
        probe = self.book.watching(client_ip(flow.client_conn), verdict.host)
        if probe is not None:
            seen = _observe(flow)
            seen = replace(seen, evidence=f"CONNECT refused with {seen.evidence}")
            self.book.note(probe, Sighting(Stage.REFUSED, seen))

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        client = nextlayer.context.client
        state = self.services.peek(client)
        verdict = state.verdict if state is not None else None
        if verdict is None or self._seen_tls.get(client) == id(verdict):
            return
        refused = isinstance(nextlayer.layer, RefuseLayer)
        passed = isinstance(nextlayer.layer, layers.TCPLayer)
        if not (refused or passed):
            return  # decrypted: its requests will be seen one by one
        self._seen_tls[client] = id(verdict)
        host, ip = verdict.host, client_ip(client)
        if passed and ip:
            self.book.tunnel_opened(id(client), ip, host)
        probe = self.book.watching(ip, host)
        if probe is None:
            return
        if passed:
            self.book.note(probe, Sighting(Stage.PASSED, None, "passed through on its host name"))
        else:
            self.book.note(probe, Sighting(Stage.REFUSED, _refusal(verdict)))

    def client_disconnected(self, client: connection.Client) -> None:
        self.book.tunnel_closed(id(client))

    def tls_failed_client(self, data: tls.TlsData) -> None:
        probe = self.book.watching(client_ip(data.context.client), _host(data.conn.sni))
        if probe is not None:
            why = str(data.conn.error or "handshake failed")[:200]
            self.book.note(probe, Sighting(Stage.TLS_REJECTED, None, why))

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.request.method == "CONNECT" or flow.response is None:
            return
        probe = self._probe(flow)
        if probe is None:
            return
        seen = _observe(flow)
        redirect = None
        location = flow.response.headers.get("Location")
        if 300 <= flow.response.status_code < 400 and location:
            try:  # the browser follows it: keep watching where it goes
                redirect = host_of(urljoin(flow.request.pretty_url, location))
            except ProbeError:
                redirect = None
        self.book.note(probe, Sighting(Stage.RESPONSE, seen), redirect)

    def error(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.error is None or flow.request.method == "CONNECT":
            return
        probe = self._probe(flow)
        if probe is not None:
            note = str(flow.error.msg)[:200]
            self.book.note(probe, Sighting(Stage.UPSTREAM_ERROR, None, note))

    # -- helpers -------------------------------------------------------------

    def _probe(self, flow: http.HTTPFlow) -> Probe | None:
        if not self.book.armed:  # no browser check running: most of the time, and cheap
            return None
        return self.book.watching(client_ip(flow.client_conn), _host(flow.request.pretty_host))


def _observe(flow: http.HTTPFlow) -> Observation:
    """The shared judgement (check_suite) on the answer the gateway gave this request."""
    response = flow.response
    assert response is not None
    body = response.get_content(strict=False) or b""
    return observe_response(
        flow.request.pretty_url, response.status_code, dict(response.headers), body[:BODY_LIMIT]
    )


def _refusal(verdict: Verdict) -> Observation:
    """A TLS hello the Filter refused: blocked, or a site the device must let it decrypt."""
    if verdict.blocked:
        ref = verdict.reference
        evidence = "TLS refused on its host name: blocked" + (f" ({ref})" if ref else "")
        return Observation(None, True, ref, None, None, evidence)
    error = "TLS refused: the site must be decrypted and this device does not trust the school CA"
    return Observation(None, False, None, None, error, error)


def _host(name: str | None) -> str | None:
    try:
        return canonical_host(name).name if name else None
    except (HostError, ValueError):
        return None
