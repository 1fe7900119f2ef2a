"""The filtering add-on: decides every CONNECT, TLS ClientHello and HTTP request.

Thin on purpose: identity comes from the services, request facts from the flow, the
verdict from the core's one pipeline (`decide` -> circumvention -> safe search,
`core.pipeline.settle`), and it goes into `flow.metadata["schoolgate"]` (a request or
CONNECT) or the connection's state (`Services.connection(...).verdict`, TLS and raw TCP)
for the add-ons that follow. This add-on acts on it: the block page, a refused
handshake, a passed-through tunnel. Any failure blocks: the gateway never falls open.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

from mitmproxy import connection, ctx, http, tls
from mitmproxy.net.tls import starts_like_tls_record
from mitmproxy.proxy import layer, layers
from mitmproxy.proxy.layers.http import HTTPMode
from mitmproxy.proxy.layers.tls import parse_client_hello

from proxy_addons.checks.identity import CHECK_HEADER
from proxy_addons.core.decide import Decision, Identity, Reason, Request, decide
from proxy_addons.core.hosts import Host, HostError, canonical_host, request_url
from proxy_addons.core.lists.layout import IndexDamaged
from proxy_addons.core.names import Names, by_destination, decide_names, registrable_domain
from proxy_addons.core.pipeline import Asked, settle
from proxy_addons.core.policy.model import Action, UntrustedClients
from proxy_addons.core.verdict import Verdict
from proxy_addons.gateway import answers
from proxy_addons.gateway.flows import claimed_names, from_network, proxyauth_user, site_of
from proxy_addons.gateway.headers import has_header, header, host_header
from proxy_addons.gateway.refuse_layer import RefuseLayer
from proxy_addons.gateway.services import (
    VERDICT_KEY,
    ConnectionState,
    NoPolicy,
    Services,
    client_ip,
)
from proxy_addons.pages import blockpage

_CHECK_HEADER_NAME = CHECK_HEADER.lower().encode()
logger = logging.getLogger(__name__)

_SERVER_NAME = 0  # the TLS server_name extension's type
# TLS-stage blocks refused in the handshake rather than decrypted for a block page: names
# that disagree, or can't be read, say nothing a block page could show.
_NOT_INTERCEPTED = frozenset({Reason.FRONTING, Reason.INVALID})
NEVER_MATCHES = "(?!)"


class Filter:
    """Enforces the school's policy on everything that passes the gateway."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._quiet_until = 0.0  # when a known blocking state may be logged again

    def configure(self, updated: set[str]) -> None:
        if "connection_strategy" in updated or "schoolgate_policy" in updated:
            if ctx.options.connection_strategy != "lazy":
                # Decide before any upstream connection exists.
                ctx.options.update(connection_strategy="lazy")
        if not ctx.options.ignore_hosts and not ctx.options.allow_hosts:
            # With any ignore_hosts pattern, mitmproxy's NextLayer waits for the
            # whole ClientHello before choosing a layer, so next_layer() always
            # sees the SNI, however many packets the ClientHello spans.
            ctx.options.update(ignore_hosts=[NEVER_MATCHES])

    # -- hooks ---------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        """Explicit proxy: decide on the CONNECT host before any upstream connection."""
        if flow.response is not None:
            return  # e.g. proxy authentication is still required
        started = time.perf_counter()  # metrics: decision latency
        client = flow.client_conn
        state = self.services.connection(client)
        user = proxyauth_user(flow)
        if user:
            state.user = user
        check_as = self._check_header(flow)
        if check_as:
            state.check_as = check_as
        site = flow.request.host
        try:
            host = canonical_host(flow.request.host)
            site = registrable_domain(host.name)
            state.connect_host = host.name
            identity = self.services.identity(user, client_ip(client), state.check_as)
            decision = self._decide(identity, Request(host))
        except Exception as exc:  # never fall open
            decision = self._failure(flow.request.host, exc)
        verdict = self._settle(decision, "connect", Asked(), started)
        flow.metadata[VERDICT_KEY] = state.connect = verdict
        final = verdict.decision
        state.only_http = final.blocked or final.must_decrypt
        wants_decryption = final.decrypt or final.must_decrypt
        if verdict.blocked and (
            verdict.circumvention is not None
            or not (wants_decryption and self.services.ca_trust.trusts(client_ip(client), site))
        ):
            assert verdict.reference is not None
            flow.response = answers.plain_block(verdict.reference)

    async def next_layer(self, nextlayer: layer.NextLayer) -> None:
        """TLS: decide on the destination and the SNI; pass through host-only sites,
        refuse blocked ones."""
        data = nextlayer.data_client()
        stack = nextlayer.context.layers
        # mitmproxy's own NextLayer may have decided first (it does when the Filter is added
        # after it, as `schoolgate run` does): the layers it proposed pushed themselves onto
        # the stack. Judge the stack below them, and drop them if the Filter decides instead.
        proposed = stack.index(nextlayer.layer) if nextlayer.layer in stack else len(stack)
        if not starts_like_tls_record(data):
            await self._not_tls(nextlayer, proposed)
            return
        if any(isinstance(x, layers.ClientTLSLayer) for x in stack[:proposed]):
            return  # TLS inside TLS: the outer hello was decided already
        client = nextlayer.context.client
        started = time.perf_counter()  # metrics: decision latency
        site = ""
        try:
            hello = parse_client_hello(data)
            if hello is None:
                return  # incomplete; NextLayer waits too (see NEVER_MATCHES)
            server = nextlayer.context.server.address
            if hello.sni is None and any(t == _SERVER_NAME for t, _ in hello.extensions):
                # A server name mitmproxy can't read (bad punycode, several names): the
                # upstream might read it, so it is refused, never decided without it.
                raise HostError("a TLS server name the gateway cannot read")
            claimed = (canonical_host(hello.sni),) if hello.sni else ()
            if server is None:
                if not claimed:
                    raise HostError("a TLS connection with no destination and no SNI")
                names = Names(claimed[0], claimed)
            else:
                names = await self._names(client, canonical_host(server[0]), claimed)
            site = registrable_domain(names.destination.name)
            decision = decide_names(self._decider(client), names)
        except Exception as exc:  # never fall open
            decision = self._failure(str(nextlayer.context.server.address), exc)
        state = self.services.connection(client)
        state.tls_site = site
        wants_decryption = decision.decrypt or decision.must_decrypt
        trusted = self.services.ca_trust.trusts(client_ip(client), site)
        intercept = wants_decryption and trusted and decision.reason not in _NOT_INTERCEPTED
        refuse = decision.blocked or decision.must_decrypt or self._refuse_untrusted(decision)
        passthrough = not intercept and not refuse
        verdict = self._settle(decision, "tls", Asked(host_only=passthrough), started)
        self._keep(state, verdict)
        changed = verdict.decision is not decision  # a way round the filter, an unsafe engine
        if intercept and not changed:
            return  # intercept: a blocked request gets the block page
        if not intercept:
            del stack[proposed:]
        if refuse or changed:
            nextlayer.layer = RefuseLayer(nextlayer.context)
        else:
            nextlayer.layer = layers.TCPLayer(nextlayer.context, ignore=True)

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Every plain or decrypted request, before its body is read."""
        if flow.response is not None:
            return
        check_as = self._check_header(flow)
        if check_as:
            self.services.connection(flow.client_conn).check_as = check_as
        started = time.perf_counter()  # metrics: decision latency
        user = proxyauth_user(flow)
        try:
            decision = await self._decide_request(flow, user)
        except Exception as exc:  # never fall open
            decision = self._failure(flow.request.pretty_host, exc)
        req = flow.request
        asked = Asked(
            req.path, header(req.headers, b"content-type"), header(req.headers, b"accept")
        )
        verdict = self._settle(decision, "request", asked, started)
        flow.metadata[VERDICT_KEY] = verdict
        reference = verdict.reference
        if reference is None:
            return
        if decision.reason is Reason.INVALID:
            flow.response = answers.bad_request(reference)
            return
        try:
            flow.response = self._block_response(verdict.decision, reference)
        except Exception as exc:  # a page that can't be drawn still blocks
            logger.error("Block page failed (%s): sending a plain one", exc, exc_info=exc)
            flow.response = answers.plain_block(reference)

    def tls_failed_client(self, data: tls.TlsData) -> None:
        """Remember the (device, site) that refused the school's CA (gateway/ca_trust.py)."""
        client = data.context.client
        state = self.services.peek(client)
        site = (state.tls_site if state else "") or site_of(client.sni)
        if site:
            self.services.ca_trust.refused(client_ip(client), site)

    def tls_established_client(self, data: tls.TlsData) -> None:
        self.services.ca_trust.completed(client_ip(data.context.client))

    # -- helpers -------------------------------------------------------------

    async def _not_tls(self, nextlayer: layer.NextLayer, proposed: int) -> None:
        """Bytes that are not TLS. mitmproxy passes bytes it doesn't take for HTTP as raw TCP
        (a leading CRLF, a request line in two writes, a TLS record whose version byte it
        doesn't know), which a server may still read as HTTP or TLS. On a connection not
        allowed whole, only HTTP may carry them, so every request is decided; on an allowed
        one, text that could be a request is parsed as HTTP too (else a Host header could
        name another site on a shared front end).

        Explicit proxy: the CONNECT decision (or the TLS decision, inside a decrypted
        tunnel) says. Transparent mode: the destination address is decided here.
        """
        chosen = nextlayer.layer
        client = nextlayer.context.client
        data = nextlayer.data_client()
        if isinstance(chosen, layers.HttpLayer) or client.transport_protocol != "tcp":
            return
        if chosen is None and (not data or b"\x16\x03".startswith(data)):
            return  # nothing yet, or perhaps the start of a TLS record: wait for more
        state = self.services.peek(client)
        only_http = state.only_http if state is not None else None
        decided: tuple[Decision, float] | None = None
        if only_http is None:
            if not from_network(client):
                return  # the explicit proxy's own first layer: its requests are decided
            decided = await self._decide_address(nextlayer)
            only_http = decided[0].blocked or decided[0].must_decrypt
        stripped = data.lstrip(b"\r\n")
        if only_http or not stripped or (stripped[:1].isalpha() and not stripped[:4] == b"SSH-"):
            # Text that a server may read as a request (a Host header naming another site,
            # a request line split over writes, line ends first): every request is decided,
            # even on a connection to an allowed site. Other protocols keep mitmproxy's
            # choice.
            del nextlayer.context.layers[proposed:]
            nextlayer.layer = layers.HttpLayer(nextlayer.context, HTTPMode.transparent)
        if decided is None:
            return
        decision, started = decided
        passthrough = isinstance(nextlayer.layer, layers.TCPLayer)
        verdict = self._settle(decision, "tcp", Asked(host_only=passthrough), started)
        self._keep(self.services.connection(client), verdict)
        if verdict.decision is not decision:  # a way round the filter, an unsafe engine
            nextlayer.layer = RefuseLayer(nextlayer.context)

    async def _decide_address(self, nextlayer: layer.NextLayer) -> tuple[Decision, float]:
        """Transparent mode, bytes that are not TLS: decide the destination address (and
        the names it is known by), and when deciding started."""
        client = nextlayer.context.client
        started = time.perf_counter()
        try:
            server = nextlayer.context.server.address
            if server is None:
                raise HostError("a connection with no destination")
            names = await self._names(client, canonical_host(server[0]), ())
            decision = decide_names(self._decider(client), names)
        except Exception as exc:  # never fall open
            decision = self._failure(str(nextlayer.context.server.address), exc)
        return decision, started

    def _settle(self, decision: Decision, stage: str, asked: Asked, started: float) -> Verdict:
        """The verdict on `decision`: the core's pipeline, timed from `started`."""
        policy = self.services.policy
        profiles = policy.profiles if policy is not None else {}
        seconds = time.perf_counter() - started
        return settle(decision, profiles, stage, asked, self._new_reference, seconds)

    def _new_reference(self) -> str:
        """A block's reference (the block page, the access log and alerts quote it)."""
        return blockpage.new_reference(self.services.clock())

    @staticmethod
    def _keep(state: ConnectionState, verdict: Verdict) -> None:
        """The connection's verdict, for the add-ons that act on it and the ones that record."""
        decision = verdict.decision
        state.verdict = verdict
        state.only_http = decision.blocked or decision.must_decrypt
        state.steer_to = verdict.steer_to

    def _decide(self, identity: Identity, request: Request) -> Decision:
        loaded = self.services.require()
        return decide(
            loaded.policy,
            loaded.index,
            identity,
            request,
            self.services.clock(),
            self.services.unblocks(),
        )

    def _decider(self, client: connection.Client) -> Callable[[Request], Decision]:
        """decide() for a connection's requests, as whoever signed in at CONNECT (or the
        device report at its address)."""
        state = self.services.peek(client)
        user, check_as = (state.user, state.check_as) if state is not None else (None, None)
        identity = self.services.identity(user, client_ip(client), check_as)
        return functools.partial(self._decide, identity)

    async def _names(
        self, client: connection.Client, destination: Host, claimed: tuple[Host, ...]
    ) -> Names:
        """Where the connection really goes, and the names to decide it on.

        Explicit proxy: the CONNECT target or request line, as written (a bare IP stays a
        bare IP). Transparent mode: the original destination address, or a claimed name
        the gateway's resolver gives that address for (gateway/known_names.py).
        """
        if not destination.is_ip or not from_network(client):
            return Names(destination, claimed)
        known = self.services.known_names
        for host in claimed:
            if not host.is_ip:
                await known.check(host.name, destination.name)
        return by_destination(destination, claimed, known.known, known.names_of)

    async def _decide_request(self, flow: http.HTTPFlow, user: str | None) -> Decision:
        req = flow.request
        client = flow.client_conn
        state = self.services.peek(client)
        try:
            claimed = claimed_names(flow, state.connect_host if state else None)
            names = await self._names(client, canonical_host(req.host), claimed)
            url = request_url(req.scheme, names.destination.name, req.port, req.path)
        except HostError:
            return self._invalid(host_header(req) or req.host, flow)
        query = f"?{url.query}" if url.query else ""
        identity = self.services.identity(
            user, client_ip(client), state.check_as if state else None
        )
        return decide_names(
            functools.partial(self._decide, identity), names, url.path + query, url.scheme
        )

    def _check_header(self, flow: http.HTTPFlow) -> str | None:
        """A gateway check run's profile (checks/identity.py); the header never goes upstream."""
        if not has_header(flow.request.headers, _CHECK_HEADER_NAME):
            return None
        identity = self.services.check_identity
        profile = identity.profile_from(flow.request.headers, client_ip(flow.client_conn))
        del flow.request.headers[CHECK_HEADER]
        return profile

    def _refuse_untrusted(self, decision: Decision) -> bool:
        """A site that wants decrypting, for a device that doesn't trust the school's CA."""
        if not (decision.decrypt or decision.must_decrypt):
            return False
        policy = self.services.require_policy()
        return policy.decryption.untrusted_clients is UntrustedClients.REFUSE

    def _invalid(self, raw_host: str, flow: http.HTTPFlow) -> Decision:
        ip = client_ip(flow.client_conn)
        return Decision(Action.BLOCK, Reason.INVALID, "unknown", "none", raw_host, ip=ip)

    def _failure(self, host: str, exc: Exception) -> Decision:
        if isinstance(exc, HostError):
            return Decision(Action.BLOCK, Reason.INVALID, "unknown", "none", host)
        if isinstance(exc, (NoPolicy, IndexDamaged)):
            # A known state that blocks everything until it passes (status, doctor and an
            # alert say so): said once a minute, not with a traceback for every request.
            now = time.monotonic()
            if now >= self._quiet_until:
                self._quiet_until = now + 60
                logger.error("Blocking every request until this is put right: %s", exc)
        else:
            logger.error("Blocking %s because the filter failed: %s", host, exc, exc_info=exc)
        return Decision(Action.BLOCK, Reason.UNAVAILABLE, "unknown", "none", host)

    def _block_response(self, decision: Decision, reference: str) -> http.Response:
        return answers.block_page(self.services.policy, decision, reference, self.services.clock())
