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

The answer to a rewritten request says what the engine really received: the
`X-Schoolgate-Safe-Search` header (agent/check_suite.SAFE_SEARCH_HEADER), set from the
request as it was sent upstream, never from the plan, and never taken from the engine. A
termly check judges safe search by it: YouTube's restricted mode is a request header the
gateway adds, which nothing in YouTube's answer shows, so without it a check that could
only read the page reported a failure the gateway had not made.
"""

from __future__ import annotations

import logging

from mitmproxy import http
from mitmproxy.proxy.server_hooks import ServerConnectionHookData

from agent.check_suite import SAFE_SEARCH_HEADER
from proxy_addons.core.safe_search import Rewrite
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

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """Say on the answer what safe search the engine received; drop any such claim an
        upstream makes itself."""
        if flow.response is None:
            return
        flow.response.headers.pop(SAFE_SEARCH_HEADER, None)
        verdict = verdict_of(flow)
        if verdict is None or verdict.rewrite is None:
            return
        sent = safe_search_sent(verdict.rewrite, flow.request)
        if sent is not None:
            flow.response.headers[SAFE_SEARCH_HEADER] = sent


def safe_search_sent(change: Rewrite, request: http.Request) -> str | None:
    """What of `change` the request as sent upstream carries ("youtube: YouTube-Restrict:
    Strict"), or None when it lacks any of it (something undid the rewrite)."""
    found = []
    if change.header is not None:
        name, value = change.header
        if request.headers.get(name) != value:
            return None
        found.append(f"{name}: {value}")
    if change.query is not None:
        if request.path.partition("?")[2] != change.query:
            return None
        found.append("query rewritten")
    return f"{change.engine.value}: {'; '.join(found)}" if found else None
