"""The safe search add-on: holds Google, Bing, DuckDuckGo and YouTube to their safe modes.

Runs after the Filter (and the circumvention add-on), on what they allowed, for the
profile's `safe_search` (strict, moderate or off):

- a plain or decrypted request to an engine is rewritten (`safe_search.rewrite`);
- a connection passed through on its host name alone is steered: `server_connect` sends it
  to the engine's enforced endpoint, leaving the client's TLS (SNI) and Host untouched,
  as the engines' DNS method does; an engine host with no endpoint is refused;
- a search engine without an enforceable safe mode is blocked (the block page, or a
  refused connection), unless a rule naming its domain, or an unblock, allows it.

What was enforced goes into the decision record's "enforced" (the access log's field) and
the counter `schoolgate_safe_search_total`.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import Any

from mitmproxy import connection, http
from mitmproxy.proxy import layer, layers
from mitmproxy.proxy.server_hooks import ServerConnectionHookData

from proxy_addons.core import safe_search as ss
from proxy_addons.core.decide import Decision
from proxy_addons.core.pipeline import record_of, safe_search_block
from proxy_addons.core.policy.model import SafeSearch
from proxy_addons.gateway.addons.filter import METADATA_KEY, Filter
from proxy_addons.gateway.refuse_layer import RefuseLayer
from proxy_addons.record import metrics

logger = logging.getLogger(__name__)


class SafeSearchEnforcer:
    """Rewrites, steers or blocks search engines for the profiles that need safe search."""

    def __init__(self, gate: Filter) -> None:
        self.gate = gate
        self._steer: weakref.WeakKeyDictionary[connection.Client, str] = weakref.WeakKeyDictionary()
        self._seen: weakref.WeakKeyDictionary[connection.Client, int] = weakref.WeakKeyDictionary()

    # -- hooks ---------------------------------------------------------------

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        """Host-name-only connections to an engine: steer them, or refuse them."""
        client = nextlayer.context.client
        record = self.gate.connection_decisions.get(client)
        if record is None or self._seen.get(client) == id(record):
            return
        self._seen[client] = id(record)
        passthrough = isinstance(nextlayer.layer, layers.TCPLayer)
        if record.get("action") != "allow" or not passthrough:
            return  # refused already, or decrypted: its requests are rewritten
        mode = self._mode(record)
        if mode is SafeSearch.OFF:
            return
        host = str(record.get("host") or "")
        target = ss.steer_target(host, mode)
        engine = ss.engine_for_host(host)
        if target is not None and engine is not None:
            self._steer[client] = target
            record["enforced"] = f"safe_search={mode.value} via {target}"
            metrics.safe_search_enforced(engine.value, "steered")
            return
        blocked = self._engine_block(record, host, mode, stage="tls")
        if blocked is not None:
            _, new = blocked
            self.gate.connection_decisions[client] = new
            self._seen[client] = id(new)
            nextlayer.layer = RefuseLayer(nextlayer.context)

    def server_connect(self, data: ServerConnectionHookData) -> None:
        """Connect a steered connection to the engine's enforced endpoint instead."""
        target = self._steer.get(data.client)
        if target is None or data.server.address is None:
            return
        original = data.server.address
        data.server.address = (target, original[1])
        logger.debug("Safe search: %s:%d steered to %s", original[0], original[1], target)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Plain and decrypted requests: rewrite them, or block an engine with no safe mode."""
        record = flow.metadata.get(METADATA_KEY)
        if (
            not record
            or record.get("stage") != "request"
            or record.get("action") != "allow"
            or flow.response is not None
        ):
            return
        mode = self._mode(record)
        if mode is SafeSearch.OFF:
            return
        host = str(record.get("host") or "")
        started = time.perf_counter()
        blocked = self._engine_block(record, host, mode, stage="request", started=started)
        if blocked is not None:
            decision, new = blocked
            flow.metadata[METADATA_KEY] = new
            flow.response = self.gate.block_response(decision, str(new["reference"]))
            return
        req = flow.request
        path, _, query = req.path.partition("?")
        change = ss.rewrite(host, query, mode)
        if change is None:
            return
        if change.query is not None:
            req.path = f"{path}?{change.query}"
        if change.header is not None:
            name, value = change.header
            req.headers[name] = value
        record["enforced"] = change.note(mode)
        metrics.safe_search_enforced(change.engine.value, "rewritten")

    # -- helpers -------------------------------------------------------------

    def _engine_block(
        self,
        record: dict[str, Any],
        host: str,
        mode: SafeSearch,
        *,
        stage: str,
        started: float | None = None,
    ) -> tuple[Decision, dict[str, Any]] | None:
        """A block for an engine with no safe mode, or (host-only) one that can't be steered."""
        blocked = safe_search_block(record, host, mode, host_only=stage == "tls")
        if blocked is None:
            return None
        decision, name, action = blocked
        new = record_of(decision, stage, started)
        new["enforced"] = f"safe_search={mode.value}"
        metrics.safe_search_enforced(name, action)
        return decision, new

    def _mode(self, record: dict[str, Any]) -> SafeSearch:
        """The profile's setting; strict if the profile is unknown (never falls open)."""
        runtime = self.gate.runtime
        loaded = runtime.current if runtime else None
        profile = loaded.policy.profiles.get(str(record.get("profile"))) if loaded else None
        return profile.safe_search if profile is not None else SafeSearch.STRICT
