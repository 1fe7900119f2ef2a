"""The check witness: notes what the gateway did with a browser check's test requests.

While the check page has a probe armed for a client and host (`checks.probes.ProbeBook`),
what the gateway did becomes `Sighting`s for that probe. Two parts: `VerdictWitness`, the
recorder's sink, sees the verdicts that took effect on a connection (a refused CONNECT, a
TLS connection refused or passed through on its host name) and keeps the list of open
host-only tunnels, whose requests the gateway can't see, so a later probe knows one was
reused; the `CheckWitness` add-on, last but the recorder, sees the answers as finally sent
and the handshakes a device refused. With nothing armed every hook returns after one
dictionary test.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from urllib.parse import urljoin

from mitmproxy import connection, http, tls

from agent.check_suite import Observation, observe_response
from proxy_addons.checks.probes import Probe, ProbeBook, ProbeError, Sighting, Stage, host_of
from proxy_addons.core.hosts import HostError, canonical_host
from proxy_addons.core.verdict import Verdict
from proxy_addons.gateway.services import Services, client_ip
from proxy_addons.record.seen import Seen, Took

logger = logging.getLogger(__name__)

BODY_LIMIT = 200_000  # enough of a page to find a block page's or engine's markers


class VerdictWitness:
    """The recorder's check sink: connection verdicts that took effect, as sightings."""

    def __init__(self, book: ProbeBook) -> None:
        self.book = book

    def record(self, verdict: Verdict, seen: Seen) -> None:
        if seen.took is Took.PASSED and seen.ip:
            self.book.tunnel_opened(seen.connection, seen.ip, verdict.host)
        if seen.took not in (Took.REFUSED, Took.PASSED):
            return  # requests are seen by their answers (CheckWitness)
        probe = self.book.watching(seen.ip, verdict.host)
        if probe is None:
            return
        if seen.answer is not None:  # a CONNECT the Filter answered
            answer = seen.answer
            body = answer.body[:BODY_LIMIT]
            said = observe_response(answer.url, answer.status, answer.headers, body)
            said = replace(said, evidence=f"CONNECT refused with {said.evidence}")
            self.book.note(probe, Sighting(Stage.REFUSED, said))
        elif seen.took is Took.PASSED:
            self.book.note(probe, Sighting(Stage.PASSED, None, "passed through on its host name"))
        else:
            self.book.note(probe, Sighting(Stage.REFUSED, _refusal(verdict)))


class CheckWitness:
    """Feeds the check page's armed probes from the answers the gateway sends."""

    name = "schoolgate_check_witness"

    def __init__(self, services: Services) -> None:
        self.book: ProbeBook = services.probes

    # -- hooks ---------------------------------------------------------------

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
