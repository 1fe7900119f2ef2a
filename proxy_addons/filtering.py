"""The filtering add-on: decides every CONNECT, TLS ClientHello and HTTP request.

Thin on purpose: identity and request facts come from the flow, the decision
from `decision.decide`, and the outcome goes into `flow.metadata["schoolgate"]`
for the add-ons that follow. Any failure blocks: the gateway never falls open.
"""

from __future__ import annotations

import hashlib
import logging
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
from mitmproxy.proxy.layers.tls import parse_client_hello
from publicsuffix2 import get_sld

from proxy_addons import audit, blockpage
from proxy_addons.canonical import HostError, canonical_host, canonical_url, split_authority
from proxy_addons.channels import notifier_from_policy
from proxy_addons.check_identity import CHECK_HEADER, CheckIdentity
from proxy_addons.decision import Decision, Identity, Reason, Request, decide, resolve_profile
from proxy_addons.device_identity import DeviceIdentities
from proxy_addons.device_watch import StaleSweep
from proxy_addons.directory_groups import DirectoryGroups
from proxy_addons.header_get import has_header, host_header
from proxy_addons.policy import Action, Policy, UntrustedClients
from proxy_addons.policy_runtime import LoadedPolicy, PolicyLoadError, PolicyRuntime
from proxy_addons.refuse_layer import RefuseLayer
from proxy_addons.store import Store, store_url
from proxy_addons.unblock_watch import UnblockWatch
from proxy_addons.unblock_workflow import UnblockWorkflow

_CHECK_HEADER_NAME = CHECK_HEADER.lower().encode()
logger = logging.getLogger(__name__)

METADATA_KEY = "schoolgate"
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


def registrable_domain(host: str) -> str:
    """The site a host belongs to (example.co.uk for www.example.co.uk; IPs are their own)."""
    if canonical_host(host).is_ip:
        return host
    site = get_sld(host, strict=False) or host
    if "." not in site and "." in host:  # a TLD missing from the suffix list
        site = ".".join(host.split(".")[-2:])
    return site


def plain_reason(decision: Decision) -> str:
    if decision.reason is Reason.RULE:
        if decision.allowed_when:
            times = ", ".join(w.replace("_", " ") for w in decision.allowed_when)
            return f"it is not allowed at this time (it is allowed: {times})"
        if decision.category_label:
            return "the school does not allow this kind of website for you"
        return "the school has chosen to block this website"
    return PLAIN_REASONS.get(decision.reason, "the school's filter blocked it")


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
        self._untrusted_until: dict[str, float] = {}
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
            "How long a device that rejected the school's CA is treated as not trusting it.",
        )

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
        if not updated & {"schoolgate_policy", "schoolgate_var"}:
            return
        if not ctx.options.schoolgate_policy:
            # Nothing to enforce yet: every hook blocks until a policy is set.
            logger.warning("schoolgate_policy is not set: blocking everything until it is.")
            return
        runtime = PolicyRuntime(
            Path(ctx.options.schoolgate_policy), Path(ctx.options.schoolgate_var)
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
        self.workflow = UnblockWorkflow(
            store, self._policy, notifier_from_policy(runtime_policy(runtime))
        )
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
        self.workflow.notifier = notifier_from_policy(loaded.policy)
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
        try:
            host = canonical_host(flow.request.host)
            self._connect_host[flow.client_conn] = host.name
            identity = self._identity(
                user, _ip(flow.client_conn), self._check_as.get(flow.client_conn)
            )
            decision = self._decide(identity, Request(host))
        except Exception as exc:  # never fall open
            decision = self._failure(flow.request.host, exc)
        _record(flow.metadata, decision, "connect", started)
        wants_decryption = decision.decrypt or decision.must_decrypt
        if decision.blocked and not (wants_decryption and self._trusts_ca(flow.client_conn)):
            ref = flow.metadata[METADATA_KEY]["reference"]
            flow.response = http.Response.make(
                403,
                f"Blocked by the school's web filter (reference {ref}).\n",
                {"Content-Type": "text/plain; charset=utf-8"},
            )

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        """TLS: decide on the SNI; pass through host-only sites, refuse blocked ones."""
        data = nextlayer.data_client()
        if not starts_like_tls_record(data):
            return
        stack = nextlayer.context.layers
        # mitmproxy's own NextLayer may have decided first (it does when the Filter is added
        # after it, as `schoolgate run` does): the layers it proposed pushed themselves onto
        # the stack. Judge the stack below them, and drop them if the Filter decides instead.
        proposed = stack.index(nextlayer.layer) if nextlayer.layer in stack else len(stack)
        if any(isinstance(x, layers.ClientTLSLayer) for x in stack[:proposed]):
            return  # TLS inside TLS: the outer hello was decided already
        client = nextlayer.context.client
        started = time.perf_counter()  # metrics: decision latency
        try:
            hello = parse_client_hello(data)
            if hello is None:
                return  # incomplete; NextLayer waits too (see NEVER_MATCHES)
            sni = hello.sni
            server = nextlayer.context.server.address
            name = sni or (server[0] if server else "")
            host = canonical_host(name)
            user = self._connect_user.get(client)
            identity = self._identity(user, _ip(client), self._check_as.get(client))
            decision = self._decide(identity, Request(host))
            connect_host = self._connect_host.get(client)
            if (
                not decision.blocked
                and connect_host
                and sni
                and registrable_domain(connect_host) != registrable_domain(host.name)
            ):
                decision = _fronting(decision, connect_host)
        except Exception as exc:  # never fall open
            decision = self._failure(str(nextlayer.context.server.address), exc)
        self.connection_decisions[client] = _record({}, decision, "tls", started)
        wants_decryption = decision.decrypt or decision.must_decrypt
        if wants_decryption and self._trusts_ca(client) and decision.reason is not Reason.FRONTING:
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

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Every plain or decrypted request, before its body is read."""
        if flow.response is not None:
            return
        check_as = self._check_header(flow)
        if check_as:
            self._check_as[flow.client_conn] = check_as
        started = time.perf_counter()  # metrics: decision latency
        user = _proxyauth_user(flow)
        try:
            decision = self._decide_request(flow, user)
        except Exception as exc:  # never fall open
            decision = self._failure(flow.request.pretty_host, exc)
        record = _record(flow.metadata, decision, "request", started)
        if decision.blocked:
            flow.response = self._block_response(decision, record["reference"])

    def tls_failed_client(self, data: tls.TlsData) -> None:
        """Remember devices that don't trust the school's CA (see decryption.untrusted_clients)."""
        ip = _ip(data.context.client)
        if ip:
            self._untrusted_until[ip] = time.monotonic() + ctx.options.schoolgate_untrusted_seconds

    def tls_established_client(self, data: tls.TlsData) -> None:
        self._untrusted_until.pop(_ip(data.context.client) or "", None)

    # -- helpers -------------------------------------------------------------

    def _decide(self, identity: Identity, request: Request) -> Decision:
        loaded = self._loaded()
        unblocks = self.unblock_watch.current if self.unblock_watch else ()
        return decide(loaded.policy, loaded.index, identity, request, self.clock(), unblocks)

    def _decide_request(self, flow: http.HTTPFlow, user: str | None) -> Decision:
        req = flow.request
        raw_host, _ = split_authority(host_header(req) or req.host)
        try:
            url = canonical_url(f"{req.scheme}://{raw_host}{req.path}")
        except HostError:
            return self._invalid(raw_host, flow)
        query = f"?{url.query}" if url.query else ""
        identity = self._identity(user, _ip(flow.client_conn), self._check_as.get(flow.client_conn))
        decision = self._decide(identity, Request(url.host, url.path + query, url.scheme))
        sni = flow.client_conn.sni
        if not decision.blocked and sni and req.scheme == "https":
            if registrable_domain(canonical_host(sni).name) != registrable_domain(url.host.name):
                decision = _fronting(decision, sni)
        return decision

    def _identity(self, user: str | None, ip: str | None, check_as: str | None = None) -> Identity:
        """Proxy sign-in first; otherwise the user a fresh device report puts at this IP."""
        if not user and self.device_identities is not None:
            user = self.device_identities.user_at(ip)
        return Identity(user, self.groups_of(user), ip, check_as)

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
            raise RuntimeError("no policy is in force")
        return self.runtime.current

    def _trusts_ca(self, client: connection.Client) -> bool:
        until = self._untrusted_until.get(_ip(client) or "")
        return until is None or until < time.monotonic()

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


def _fronting(decision: Decision, other: str) -> Decision:
    return Decision(
        Action.BLOCK,
        Reason.FRONTING,
        decision.profile,
        decision.identified_by,
        decision.host,
        url=decision.url,
        user=decision.user,
        ip=decision.ip,
        entry=other,
        decrypt=decision.decrypt,
    )


def _record(
    store: dict[str, Any], decision: Decision, stage: str, started: float | None = None
) -> dict[str, Any]:
    record = decision.record()
    record["stage"] = stage
    record["reference"] = blockpage.new_reference(datetime.now(UTC)) if decision.blocked else None
    # -- metrics: decision latency (read by proxy_addons/metrics_addon.py) --
    if started is not None:
        record["decide_seconds"] = time.perf_counter() - started
    # -- end metrics --
    store[METADATA_KEY] = record
    return record


def _proxyauth_user(flow: http.HTTPFlow) -> str | None:
    auth = flow.metadata.get("proxyauth")
    return str(auth[0]) if auth else None  # never keep the password


def _ip(client: connection.Client) -> str | None:
    peer = client.peername
    return str(peer[0]) if peer else None
