"""The circumvention add-on: refuses the ways round the filter in `circumvention.py`.

Runs right after the Filter, at each of its stages, and only where the Filter let traffic
through or blocked it for a generic reason (a bare IP, the default): then a DoH resolver
by address, the Firefox canary domain, iCloud Private Relay, a Tor name or DoH on any host
is refused (CONNECT 403, TLS refused, or the block page), and a connection whose first
bytes are neither TLS nor HTTP is closed. The block replaces the Filter's record, under
the category "circumvention" with reason "circumvention", so the access log, the
circumvention alert (technical, pseudonymous) and the metrics that follow see it. A
profile's `allow_circumvention` names the kinds it may use (never for learners).
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import Any

from mitmproxy import connection, ctx, http
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import commands, events, layer, layers

from proxy_addons.core import circumvention as cv
from proxy_addons.core.decide import Decision, Identity, resolve_profile
from proxy_addons.core.pipeline import circumvention_applies, circumvention_decision, record_of
from proxy_addons.gateway.addons.filter import METADATA_KEY, Filter
from proxy_addons.gateway.headers import header
from proxy_addons.gateway.refuse_layer import RefuseLayer
from proxy_addons.record import metrics

logger = logging.getLogger(__name__)


class CloseLayer(RefuseLayer):
    """Closes a refused connection that is not TLS (a TLS alert would mean nothing to it).

    A RefuseLayer, so the add-ons after this one treat it as the refusal it is.
    """

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.Start):
            yield commands.CloseConnection(self.context.client)


class Circumvention:
    """Blocks and records the ways round the filter the gateway recognises itself."""

    def __init__(self, gate: Filter) -> None:
        self.gate = gate
        self._connect: weakref.WeakKeyDictionary[connection.Client, dict[str, Any]] = (
            weakref.WeakKeyDictionary()
        )
        self._seen: weakref.WeakKeyDictionary[connection.Client, int] = weakref.WeakKeyDictionary()

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "schoolgate_refuse_tunnels",
            bool,
            True,
            "Close connections whose first bytes are neither TLS nor HTTP (SSH, OpenVPN, "
            "SOCKS and other tunnels through the proxy).",
        )

    # -- hooks ---------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        record = flow.metadata.get(METADATA_KEY)
        if not record or record.get("stage") != "connect":
            return
        started = time.perf_counter()
        finding = self._finding(record, cv.host_finding(str(record.get("host") or "")))
        if finding is not None:
            record = self._block(record, finding, "connect", started)
            flow.metadata[METADATA_KEY] = record
            flow.response = http.Response.make(
                403,
                f"Blocked by the school's web filter (reference {record['reference']}).\n",
                {"Content-Type": "text/plain; charset=utf-8"},
            )
        self._connect[flow.client_conn] = record
        if flow.response is not None and record.get("action") == "block":
            _count(record)

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        client = nextlayer.context.client
        if client.transport_protocol != "tcp":
            return
        record = self.gate.connection_decisions.get(client)
        if record is not None and self._seen.get(client) != id(record):
            self._seen[client] = id(record)  # the Filter decided this TLS connection just now
            started = time.perf_counter()
            finding = self._finding(record, cv.host_finding(str(record.get("host") or "")))
            if finding is not None:
                record = self._block(record, finding, "tls", started)
                self._remember(client, record)
                nextlayer.layer = RefuseLayer(nextlayer.context)
                _count(record)
                return
            if record.get("action") == "block" and isinstance(nextlayer.layer, RefuseLayer):
                _count(record)
        if ctx.options.schoolgate_refuse_tunnels:
            self._sniff(nextlayer, record)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        record = flow.metadata.get(METADATA_KEY)
        if not record or record.get("stage") != "request":
            return
        started = time.perf_counter()
        req = flow.request
        found = cv.host_finding(str(record.get("host") or "")) or cv.request_finding(
            req.path, header(req.headers, b"content-type"), header(req.headers, b"accept")
        )
        finding = self._finding(record, found)
        if finding is not None:
            decision = circumvention_decision(record, finding)
            record = _record(decision, finding, "request", started)
            flow.metadata[METADATA_KEY] = record
            flow.response = self.gate.block_response(decision, str(record["reference"]))
        if record.get("action") == "block" and flow.response is not None:
            _count(record)

    # -- helpers -------------------------------------------------------------

    def _sniff(self, nextlayer: layer.NextLayer, record: dict[str, Any] | None) -> None:
        """Close a tunnel: a connection whose first bytes are neither TLS nor HTTP."""
        data = nextlayer.data_client()
        if not data or isinstance(nextlayer.layer, layers.HttpLayer):
            return  # HTTP (the Filter's choice too): every request is decided, junk refused
        kind = cv.sniff(data)
        if kind is None:
            nextlayer.layer = None  # too few bytes to tell: wait for more
            return
        if not cv.is_tunnel(kind):
            return
        client = nextlayer.context.client
        base = record or self._connect.get(client) or self._fresh(nextlayer)
        if cv.TUNNEL in self._allowed(base):
            return
        finding = cv.Finding(cv.TUNNEL, kind, "built-in: first bytes of the connection")
        blocked = self._block(base, finding, "tunnel", None)
        self._remember(client, blocked)
        nextlayer.layer = CloseLayer(nextlayer.context)
        _count(blocked)
        logger.info(
            "Closed a %s tunnel to %s (reference %s)", kind, blocked["host"], blocked["reference"]
        )

    def _remember(self, client: connection.Client, record: dict[str, Any]) -> None:
        """Put the block where the access log, alerts and metrics read TLS-stage decisions."""
        self.gate.connection_decisions[client] = record
        self._seen[client] = id(record)

    def _finding(self, record: dict[str, Any], found: cv.Finding | None) -> cv.Finding | None:
        """`found`, if it should block here: the Filter let it by, the profile may not."""
        if found is None or not circumvention_applies(record, found, self._allowed(record)):
            return None
        return found

    def _allowed(self, record: dict[str, Any]) -> frozenset[str]:
        """The kinds of circumvention the record's profile may use (none if unknown)."""
        runtime = self.gate.runtime
        loaded = runtime.current if runtime else None
        profile = loaded.policy.profiles.get(str(record.get("profile"))) if loaded else None
        return profile.allow_circumvention if profile is not None else frozenset()

    @staticmethod
    def _block(
        record: dict[str, Any], finding: cv.Finding, stage: str, started: float | None
    ) -> dict[str, Any]:
        return _record(circumvention_decision(record, finding), finding, stage, started)

    def _fresh(self, nextlayer: layer.NextLayer) -> dict[str, Any]:
        """Who is behind a connection no earlier stage decided (transparent mode)."""
        client = nextlayer.context.client
        ip = str(client.peername[0]) if client.peername else None
        server = nextlayer.context.server.address
        out: dict[str, Any] = {"host": str(server[0]) if server else "", "ip": ip}
        runtime = self.gate.runtime
        loaded = runtime.current if runtime else None
        if loaded is None:
            return out | {"profile": "unknown", "identified_by": "none"}
        identities = self.gate.device_identities
        user = identities.user_at(ip) if identities is not None else None
        profile, via = resolve_profile(loaded.policy, Identity(user, self.gate.groups_of(user), ip))
        return out | {"profile": profile.name, "identified_by": via, "user": user}


def _record(
    decision: Decision, finding: cv.Finding, stage: str, started: float | None
) -> dict[str, Any]:
    out = record_of(decision, stage, started)
    out["circumvention"] = finding.kind
    return out


def kind_of(record: dict[str, Any]) -> str:
    """The metric's kind for a circumvention block: built-in, or from the list it came from."""
    if record.get("circumvention"):
        return str(record["circumvention"])
    source = str(record.get("list_source") or "").lower()
    for part, kind in (("doh", "doh"), ("vpn", "vpn"), ("redirector", "proxy"), ("prox", "proxy")):
        if part in source:
            return kind
    return "listed"


def _count(record: dict[str, Any]) -> None:
    if record.get("category") == cv.CATEGORY:
        metrics.circumvention_blocked(kind_of(record))
