"""The filtering add-on: decides every CONNECT, TLS ClientHello and HTTP request.

Thin on purpose: identity and request facts come from the flow, the decision
from `decision.decide`, and the outcome goes into `flow.metadata["schoolgate"]`
for the add-ons that follow. Any failure blocks: the gateway never falls open.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mitmproxy import connection, ctx, exceptions, http, tls
from mitmproxy.addonmanager import Loader
from mitmproxy.net.tls import starts_like_tls_record
from mitmproxy.proxy import layer, layers
from mitmproxy.proxy.layers.http import HTTPMode
from mitmproxy.proxy.layers.tls import parse_client_hello
from mitmproxy.proxy.mode_specs import RegularMode, ReverseMode, Socks5Mode, UpstreamMode

from proxy_addons.checks.identity import CHECK_HEADER, CheckIdentity
from proxy_addons.core.decide import Decision, Identity, Reason, Request, decide, resolve_profile
from proxy_addons.core.hosts import Host, HostError, canonical_host, request_url, valid_authority
from proxy_addons.core.lists.layout import IndexDamaged
from proxy_addons.core.names import Names, by_destination, decide_names, registrable_domain
from proxy_addons.core.policy.model import Action, Audience, Policy, UntrustedClients
from proxy_addons.core.policy.runtime import LoadedPolicy, PolicyLoadError, PolicyRuntime
from proxy_addons.devices.identity import DeviceIdentities
from proxy_addons.devices.watch import StaleSweep
from proxy_addons.gateway.ca_trust import CaTrust
from proxy_addons.gateway.directory_groups import DirectoryGroups
from proxy_addons.gateway.headers import has_header, host_header
from proxy_addons.gateway.known_names import KnownNames
from proxy_addons.gateway.refuse_layer import RefuseLayer
from proxy_addons.pages import blockpage
from proxy_addons.record import metrics
from proxy_addons.store import Store, store_url
from proxy_addons.workflow import audit
from proxy_addons.workflow.unblock_watch import UnblockWatch
from proxy_addons.workflow.unblocks import UnblockWorkflow

_CHECK_HEADER_NAME = CHECK_HEADER.lower().encode()
logger = logging.getLogger(__name__)

METADATA_KEY = "schoolgate"
_SERVER_NAME = 0  # the TLS server_name extension's type
# TLS-stage blocks refused in the handshake rather than decrypted for a block page: names
# that disagree, or can't be read, say nothing a block page could show.
_NOT_INTERCEPTED = frozenset({Reason.FRONTING, Reason.INVALID})
_FOLDED = re.compile(rb"[\r\n\x00]")
NEVER_MATCHES = "(?!)"

PLAIN_REASONS = {
    Reason.BARE_IP: "the web address is written as numbers",
    Reason.DEFAULT: "this website is not on the school's list of allowed websites",
    Reason.FRONTING: "the page tried to hide where it really goes",
    Reason.INVALID: "the web address is not written correctly",
    Reason.UNAVAILABLE: "the school's filter is not ready; please try again in a minute",
    Reason.CIRCUMVENTION: "it is a way round the school's filter",
    Reason.SAFE_SEARCH: "this search engine cannot be kept to safe search, so it is blocked",
}


def plain_reason(decision: Decision) -> str:
    if decision.reason is Reason.RULE:
        if decision.allowed_when:
            times = ", ".join(w.replace("_", " ") for w in decision.allowed_when)
            return f"it is not allowed at this time (it is allowed: {times})"
        if decision.category_label:
            return "the school does not allow this kind of website for you"
        return "the school has chosen to block this website"
    return PLAIN_REASONS.get(decision.reason, "the school's filter blocked it")


class NoPolicy(RuntimeError):
    """No policy has loaded yet: every request is blocked."""


class Filter:
    """Enforces the school's policy on everything that passes the gateway."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.clock = clock or (lambda: datetime.now(UTC))
        self.runtime: PolicyRuntime | None = None
        self.store: Store | None = None
        self.workflow: UnblockWorkflow | None = None
        self.unblock_watch: UnblockWatch | None = None
        self.device_identities: DeviceIdentities | None = None
        self.stale_sweep: StaleSweep | None = None  # device_watch: alerts on silent devices
        self._connect_user: weakref.WeakKeyDictionary[connection.Client, str] = (
            weakref.WeakKeyDictionary()
        )
        self._connect_host: weakref.WeakKeyDictionary[connection.Client, str] = (
            weakref.WeakKeyDictionary()
        )
        self.ca_trust = CaTrust()  # devices that refuse the school's CA, per site
        self._tls_site: weakref.WeakKeyDictionary[connection.Client, str] = (
            weakref.WeakKeyDictionary()
        )
        self.known_names = KnownNames()  # transparent mode: which names an address has
        self._quiet_until = 0.0  # when a known blocking state may be logged again
        # Connections not allowed whole (blocked, or a URL must decide): only HTTP may pass.
        self._only_http: weakref.WeakKeyDictionary[connection.Client, bool] = (
            weakref.WeakKeyDictionary()
        )
        # Termly checks run from the gateway itself, as a profile (check_identity.py).
        self.check_identity = CheckIdentity()
        self._check_as: weakref.WeakKeyDictionary[connection.Client, str] = (
            weakref.WeakKeyDictionary()
        )
        self._directory: tuple[str, DirectoryGroups] | None = None  # (ldap spec, lookups)
        # TLS-stage decisions, for connections that never become an HTTP flow.
        self.connection_decisions: weakref.WeakKeyDictionary[connection.Client, dict[str, Any]] = (
            weakref.WeakKeyDictionary()
        )

    def load(self, loader: Loader) -> None:
        loader.add_option("schoolgate_policy", str, "", "The school's policy file (YAML).")
        loader.add_option(
            "schoolgate_var", str, "var", "Folder for the gateway's state: index, status, reports."
        )
        loader.add_option(
            "schoolgate_dsn",
            str,
            "",
            "PostgreSQL DSN for a store shared by several gateways; empty: SQLite under var.",
        )
        loader.add_option(
            "schoolgate_untrusted_seconds",
            int,
            3600,
            "How long a device that rejected the school's CA for a site is treated as not "
            "trusting it there (ca_trust.py).",
        )

    def configure(self, updated: set[str]) -> None:
        if "schoolgate_untrusted_seconds" in updated:
            self.ca_trust.seconds = ctx.options.schoolgate_untrusted_seconds
        if "connection_strategy" in updated or "schoolgate_policy" in updated:
            if ctx.options.connection_strategy != "lazy":
                # Decide before any upstream connection exists.
                ctx.options.update(connection_strategy="lazy")
        if not ctx.options.ignore_hosts and not ctx.options.allow_hosts:
            # With any ignore_hosts pattern, mitmproxy's NextLayer waits for the
            # whole ClientHello before choosing a layer, so next_layer() always
            # sees the SNI, however many packets the ClientHello spans.
            ctx.options.update(ignore_hosts=[NEVER_MATCHES])
        if not updated & {"schoolgate_policy", "schoolgate_var"}:
            return
        if not ctx.options.schoolgate_policy:
            # Nothing to enforce yet: every hook blocks until a policy is set.
            logger.warning("schoolgate_policy is not set: blocking everything until it is.")
            return
        runtime = PolicyRuntime(
            Path(ctx.options.schoolgate_policy),
            Path(ctx.options.schoolgate_var),
            count_index_damage=metrics.list_index_damaged,
        )
        try:
            runtime.start()
        except PolicyLoadError as exc:
            raise exceptions.OptionsError(f"Schoolgate cannot start: {exc}") from exc
        try:
            store = Store.open(
                store_url(Path(ctx.options.schoolgate_var), ctx.options.schoolgate_dsn)
            )
        except Exception as exc:
            raise exceptions.OptionsError(f"Schoolgate cannot open its store: {exc}") from exc
        if self.runtime is not None:
            self.runtime.stop_watching()
        if self.unblock_watch is not None:
            self.unblock_watch.stop()
        self.runtime = runtime
        self.store = store
        self.workflow = UnblockWorkflow(store, self._policy)
        runtime.on_reload = self._policy_changed
        self.unblock_watch = UnblockWatch(self.workflow)
        self.unblock_watch.start()
        if self.device_identities is not None:
            self.device_identities.stop()
        self.device_identities = DeviceIdentities(store, self._policy)
        self.device_identities.start()
        # device_watch: here because the gateway runs under `make run` and in production.
        if self.stale_sweep is not None:
            self.stale_sweep.stop()
        self.stale_sweep = StaleSweep(store, self._policy)
        self.stale_sweep.start()
        self.check_identity.configure(Path(ctx.options.schoolgate_var))
        loaded = runtime.current
        assert loaded is not None
        auth = loaded.policy.authentication
        wanted = f"@{auth.htpasswd}" if auth.htpasswd else auth.ldap
        if wanted and ctx.options.proxyauth != wanted:
            ctx.options.update(proxyauth=wanted)
        logger.info(
            "Schoolgate policy for %s in force: %d profiles, %d list entries.",
            loaded.policy.school,
            len(loaded.policy.profiles),
            loaded.index.entry_count,
        )

    def running(self) -> None:
        if self.runtime is not None:
            self.runtime.watch()

    def done(self) -> None:
        if self.runtime is not None:
            self.runtime.stop_watching()
        if self.unblock_watch is not None:
            self.unblock_watch.stop()
        if self.device_identities is not None:
            self.device_identities.stop()
        if self.stale_sweep is not None:
            self.stale_sweep.stop()

    def _policy(self) -> Policy:
        return self._loaded().policy

    def _policy_changed(self, loaded: LoadedPolicy) -> None:
        """Every policy change goes into the audit trail, with the files' fingerprints."""
        if self.store is None or self.workflow is None:
            return
        detail = {str(p): _sha256(p) for p in loaded.policy.files if p.is_file()}
        with self.store.begin() as conn:
            audit.append(
                conn,
                actor="schoolgate",
                action="policy.changed",
                subject=loaded.policy.school[:200],
                detail=detail,
            )

    # -- hooks ---------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        """Explicit proxy: decide on the CONNECT host before any upstream connection."""
        if flow.response is not None:
            return  # e.g. proxy authentication is still required
        started = time.perf_counter()  # metrics: decision latency
        user = _proxyauth_user(flow)
        if user:
            self._connect_user[flow.client_conn] = user
        check_as = self._check_header(flow)
        if check_as:
            self._check_as[flow.client_conn] = check_as
        site = flow.request.host
        try:
            host = canonical_host(flow.request.host)
            site = registrable_domain(host.name)
            self._connect_host[flow.client_conn] = host.name
            identity = self._identity(
                user, _ip(flow.client_conn), self._check_as.get(flow.client_conn)
            )
            decision = self._decide(identity, Request(host))
        except Exception as exc:  # never fall open
            decision = self._failure(flow.request.host, exc)
        _record(flow.metadata, decision, "connect", started)
        self._only_http[flow.client_conn] = decision.blocked or decision.must_decrypt
        wants_decryption = decision.decrypt or decision.must_decrypt
        if decision.blocked and not (
            wants_decryption and self.ca_trust.trusts(_ip(flow.client_conn), site)
        ):
            flow.response = _plain_block(flow.metadata[METADATA_KEY]["reference"])

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
        self.connection_decisions[client] = _record({}, decision, "tls", started)
        self._tls_site[client] = site
        self._only_http[client] = decision.blocked or decision.must_decrypt
        wants_decryption = decision.decrypt or decision.must_decrypt
        trusted = self.ca_trust.trusts(_ip(client), site)
        if wants_decryption and trusted and decision.reason not in _NOT_INTERCEPTED:
            return  # intercept: a blocked request gets the block page
        del stack[proposed:]
        if (
            decision.blocked
            or decision.must_decrypt
            or (wants_decryption and self._refuse_untrusted())
        ):
            nextlayer.layer = RefuseLayer(nextlayer.context)
        else:
            nextlayer.layer = layers.TCPLayer(nextlayer.context, ignore=True)

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Every plain or decrypted request, before its body is read."""
        if flow.response is not None:
            return
        check_as = self._check_header(flow)
        if check_as:
            self._check_as[flow.client_conn] = check_as
        started = time.perf_counter()  # metrics: decision latency
        user = _proxyauth_user(flow)
        try:
            decision = await self._decide_request(flow, user)
        except Exception as exc:  # never fall open
            decision = self._failure(flow.request.pretty_host, exc)
        record = _record(flow.metadata, decision, "request", started)
        if decision.reason is Reason.INVALID:
            flow.response = _bad_request(record["reference"])
        elif decision.blocked:
            try:
                flow.response = self._block_response(decision, record["reference"])
            except Exception as exc:  # a page that can't be drawn still blocks
                logger.error("Block page failed (%s): sending a plain one", exc, exc_info=exc)
                flow.response = _plain_block(record["reference"])

    def tls_failed_client(self, data: tls.TlsData) -> None:
        """Remember the (device, site) that refused the school's CA (see ca_trust.py)."""
        client = data.context.client
        site = self._tls_site.get(client) or _site_of(client.sni)
        if site:
            self.ca_trust.refused(_ip(client), site)

    def tls_established_client(self, data: tls.TlsData) -> None:
        self.ca_trust.completed(_ip(data.context.client))

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
        only_http = self._only_http.get(client)
        if only_http is None:
            if not _from_network(client):
                return  # the explicit proxy's own first layer: its requests are decided
            only_http = await self._decide_address(nextlayer)
        stripped = data.lstrip(b"\r\n")
        if only_http or not stripped or (stripped[:1].isalpha() and not stripped[:4] == b"SSH-"):
            # Text that a server may read as a request (a Host header naming another site,
            # a request line split over writes, line ends first): every request is decided,
            # even on a connection to an allowed site. Other protocols keep mitmproxy's
            # choice.
            del nextlayer.context.layers[proposed:]
            nextlayer.layer = layers.HttpLayer(nextlayer.context, HTTPMode.transparent)

    async def _decide_address(self, nextlayer: layer.NextLayer) -> bool:
        """Transparent mode, bytes that are not TLS: decide the destination address (and
        the names it is known by); True when only HTTP may pass."""
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
        self.connection_decisions[client] = _record({}, decision, "tcp", started)
        only_http = self._only_http[client] = decision.blocked or decision.must_decrypt
        return only_http

    def _decide(self, identity: Identity, request: Request) -> Decision:
        loaded = self._loaded()
        unblocks = self.unblock_watch.current if self.unblock_watch else ()
        return decide(loaded.policy, loaded.index, identity, request, self.clock(), unblocks)

    def _decider(self, client: connection.Client) -> Callable[[Request], Decision]:
        """decide() for a connection's requests, as whoever signed in at CONNECT (or the
        device report at its address)."""
        identity = self._identity(
            self._connect_user.get(client), _ip(client), self._check_as.get(client)
        )
        return functools.partial(self._decide, identity)

    async def _names(
        self, client: connection.Client, destination: Host, claimed: tuple[Host, ...]
    ) -> Names:
        """Where the connection really goes, and the names to decide it on.

        Explicit proxy: the CONNECT target or request line, as written (a bare IP stays a
        bare IP). Transparent mode: the original destination address, or a claimed name
        the gateway's resolver gives that address for (known_names.py).
        """
        if not destination.is_ip or not _from_network(client):
            return Names(destination, claimed)
        for host in claimed:
            if not host.is_ip:
                await self.known_names.check(host.name, destination.name)
        known = self.known_names
        return by_destination(destination, claimed, known.known, known.names_of)

    async def _decide_request(self, flow: http.HTTPFlow, user: str | None) -> Decision:
        req = flow.request
        client = flow.client_conn
        try:
            claimed = _claimed_names(flow, self._connect_host.get(client))
            names = await self._names(client, canonical_host(req.host), claimed)
            url = request_url(req.scheme, names.destination.name, req.port, req.path)
        except HostError:
            return self._invalid(host_header(req) or req.host, flow)
        query = f"?{url.query}" if url.query else ""
        identity = self._identity(user, _ip(client), self._check_as.get(client))
        return decide_names(
            functools.partial(self._decide, identity), names, url.path + query, url.scheme
        )

    def _identity(self, user: str | None, ip: str | None, check_as: str | None = None) -> Identity:
        """Proxy sign-in first; otherwise the user a fresh device report puts at this IP,
        unless the directory puts that user in a staff profile (device_identity.may_name)."""
        if user or self.device_identities is None:
            return Identity(user, self.groups_of(user), ip, check_as)
        reported = self.device_identities.user_at(ip)
        groups = self.groups_of(reported)
        if reported and groups:
            loaded = self._loaded()
            profile, via = resolve_profile(loaded.policy, Identity(reported, groups))
            if via == "group" and profile.audience is Audience.STAFF:
                reported, groups = None, ()  # a device's word never makes staff
        return Identity(reported, groups, ip, check_as)

    def _check_header(self, flow: http.HTTPFlow) -> str | None:
        """A gateway check run's profile (check_identity.py); the header never goes upstream."""
        if not has_header(flow.request.headers, _CHECK_HEADER_NAME):
            return None
        profile = self.check_identity.profile_from(flow.request.headers, _ip(flow.client_conn))
        del flow.request.headers[CHECK_HEADER]
        return profile

    def groups_of(self, user: str | None) -> tuple[str, ...]:
        """A signed-in user's directory groups, for `identities.groups` (LDAP sign-in only).

        The lookup is set up on first use after a policy load, and again when the policy's
        `authentication.ldap` changes; its per-user cache keeps LDAP off most requests.
        """
        loaded = self.runtime.current if self.runtime else None
        spec = loaded.policy.authentication.ldap if loaded else None
        if not user or not spec:
            return ()
        if self._directory is None or self._directory[0] != spec:
            if self._directory is not None:
                self._directory[1].close()
            self._directory = (spec, DirectoryGroups(spec))
        return self._directory[1].groups_of(user)

    def _loaded(self) -> LoadedPolicy:
        if self.runtime is None or self.runtime.current is None:
            raise NoPolicy("no policy is in force")
        return self.runtime.current

    def _refuse_untrusted(self) -> bool:
        policy = self._loaded().policy
        return policy.decryption.untrusted_clients is UntrustedClients.REFUSE

    def _invalid(self, raw_host: str, flow: http.HTTPFlow) -> Decision:
        return Decision(
            Action.BLOCK, Reason.INVALID, "unknown", "none", raw_host, ip=_ip(flow.client_conn)
        )

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
        loaded = self.runtime.current if self.runtime else None
        staff = False
        audiences: tuple[tuple[str, str], ...] = ()
        school = "your school"
        portal = "http://schoolgate.local"
        if loaded is not None:
            policy = loaded.policy
            scheme = "https" if (decision.url or "").startswith("https:") else "http"
            school, portal = policy.school, f"{scheme}://{policy.portal_host}"
            if decision.profile in policy.profiles:
                staff = policy.profiles[decision.profile].may_request_unblock
            audiences = (("me", "Only me (to check it first)"),) + tuple(
                (f"profile:{p.name}", p.label) for p in policy.profiles.values()
            )
        page = blockpage.render_block_page(
            blockpage.BlockPageContext(
                school=school,
                reference=reference,
                host=decision.host,
                url=decision.url or decision.host,
                reason=plain_reason(decision),
                category_label=decision.category_label,
                at=self.clock(),
                portal=portal,
                staff=staff,
                illegal=decision.reason is Reason.ILLEGAL,
                audiences=audiences,
            )
        )
        return http.Response.make(
            403,
            page,
            {
                "Content-Type": "text/html; charset=utf-8",
                "Cache-Control": "no-store",
                "X-Schoolgate-Reference": reference,
            },
        )

    def block_response(self, decision: Decision, reference: str) -> http.Response:
        """The block page for `decision` (for the add-ons that block after the Filter)."""
        return self._block_response(decision, reference)

    def profile_for(self, user: str | None, ip: str | None) -> str:
        """The profile a user or device is in (for the portal's pages)."""
        loaded = self._loaded()
        return resolve_profile(loaded.policy, self._identity(user, ip))[0].name


def runtime_policy(runtime: PolicyRuntime) -> Policy:
    assert runtime.current is not None
    return runtime.current.policy


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _record(
    store: dict[str, Any], decision: Decision, stage: str, started: float | None = None
) -> dict[str, Any]:
    record = decision.record()
    record["stage"] = stage
    record["reference"] = blockpage.new_reference(datetime.now(UTC)) if decision.blocked else None
    # -- metrics: decision latency (read by proxy_addons/gateway/addons/metrics.py) --
    if started is not None:
        record["decide_seconds"] = time.perf_counter() - started
    # -- end metrics --
    store[METADATA_KEY] = record
    return record


def _proxyauth_user(flow: http.HTTPFlow) -> str | None:
    auth = flow.metadata.get("proxyauth")
    return str(auth[0]) if auth else None  # never keep the password


def _bad_request(reference: str) -> http.Response:
    """A request whose names can't be read: refused, as a server would (RFC 9112 3.2)."""
    return http.Response.make(
        400,
        f"Bad request: the web address or Host header is not valid (reference {reference}).\n",
        {"Content-Type": "text/plain; charset=utf-8", "X-Schoolgate-Reference": reference},
    )


def _plain_block(reference: str) -> http.Response:
    return http.Response.make(
        403,
        f"Blocked by the school's web filter (reference {reference}).\n",
        {"Content-Type": "text/plain; charset=utf-8", "X-Schoolgate-Reference": reference},
    )


def _claimed_names(flow: http.HTTPFlow, connect_host: str | None) -> tuple[Host, ...]:
    """The names the client wrote: Host header, request-line authority or `:authority`,
    SNI and CONNECT target. A Host header that is repeated or not a valid host[:port] is a
    HostError (the request is refused, never decided on a guess)."""
    req = flow.request
    hosts = []
    for name, value in req.headers.fields:
        if _FOLDED.search(name) or _FOLDED.search(value):
            # An obs-fold line or a stray CR/LF/NUL: a server may read a header mitmproxy
            # didn't (RFC 9112 5.2 lets a proxy refuse it).
            raise HostError("a folded or broken header line")
        if name.lower() == b"host":
            hosts.append(value)
    if len(hosts) > 1:
        raise HostError("more than one Host header")
    claimed = [valid_authority(v.decode("utf-8", "surrogateescape"))[0] for v in hosts]
    if req.authority:  # absolute-form inside a tunnel, or HTTP/2's :authority
        claimed.append(valid_authority(req.authority)[0])
    sni = flow.client_conn.sni if req.scheme == "https" else None
    if sni:
        claimed.append(canonical_host(sni))
    if connect_host:
        claimed.append(canonical_host(connect_host))
    return tuple(claimed)


def _from_network(client: connection.Client) -> bool:
    """Is the destination the one the client's packets went to (transparent, WireGuard,
    local capture), rather than one the client named (explicit proxy, SOCKS, reverse)?"""
    mode = client.proxy_mode
    return not isinstance(mode, (RegularMode, UpstreamMode, Socks5Mode, ReverseMode))


def _site_of(name: str | None) -> str:
    try:
        return registrable_domain(canonical_host(name).name) if name else ""
    except HostError:
        return ""


def _ip(client: connection.Client) -> str | None:
    peer = client.peername
    return str(peer[0]) if peer else None
