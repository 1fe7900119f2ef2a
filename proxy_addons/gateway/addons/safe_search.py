"""The safe search add-on: holds Google, Bing, DuckDuckGo and YouTube to their safe modes.

What safe search asks for is part of the core's one pipeline (`core.pipeline.settle`,
for the profile's `safe_search`: strict, moderate or off), so the Filter's verdict
already says it; this add-on carries it out:

- a plain or decrypted request to an engine is rewritten (the verdict's `rewrite`);
- a connection passed through on its host name alone is steered (the verdict's
  `steer_to`): `server_connect` sends it to the engine's enforced endpoint, leaving the
  client's TLS (SNI) and Host untouched, as the engines' DNS method does.

A search engine that can't be kept safe is blocked by the verdict itself (the block page,
or a refused connection). What was enforced is the verdict's `enforced` (the access log's
field) and counted in `schoolgate_safe_search_total` by the metrics add-on.
"""

from __future__ import annotations

import logging

from mitmproxy import http
from mitmproxy.proxy.server_hooks import ServerConnectionHookData

from proxy_addons.gateway.services import Services, verdict_of

logger = logging.getLogger(__name__)


class SafeSearchEnforcer:
    """Rewrites requests and steers connections as the verdict says."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def server_connect(self, data: ServerConnectionHookData) -> None:
        """Connect a steered connection to the engine's enforced endpoint instead."""
        state = self.services.peek(data.client)
        target = state.steer_to if state is not None else None
        if target is None or data.server.address is None:
            return
        original = data.server.address
        data.server.address = (target, original[1])
        logger.debug("Safe search: %s:%d steered to %s", original[0], original[1], target)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Plain and decrypted requests: make the verdict's change to the request."""
        verdict = verdict_of(flow)
        if verdict is None or verdict.rewrite is None or flow.response is not None:
            return
        change, req = verdict.rewrite, flow.request
        if change.query is not None:
            req.path = f"{req.path.partition('?')[0]}?{change.query}"
        if change.header is not None:
            name, value = change.header
            req.headers[name] = value
