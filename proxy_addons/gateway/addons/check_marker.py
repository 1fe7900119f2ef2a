"""Marks the Filter's decisions on a browser check's probed requests, before monitoring runs.

The check page's test URLs are canaries (adult sites, proxies, the illegal tier's test
entries) fetched on purpose by a member of staff: like the gateway's own check runs
(`identified_by: check`), they should not reach the DSL as if a pupil had tried them. This
add-on sits right after the ones that decide and before the access log and alerting; for a
request an armed probe is watching (`check_probes.ProbeBook`: this client, this host, for at
most 30 seconds) it marks the verdict `check_probe` (a new verdict in the verdict's place),
which alerting skips.
The access log still records the request: it happened.

An agent's check run is marked the same way while its window is open (checks/announced.py:
this address, the suite's URLs, a few minutes), read from the store by a `WindowBook`
thread, never on the request path.
"""

from __future__ import annotations

from dataclasses import replace

from mitmproxy import connection, http
from mitmproxy.proxy import layer

from proxy_addons.checks.announced import WindowBook
from proxy_addons.checks.probes import ProbeBook
from proxy_addons.core.verdict import Verdict
from proxy_addons.gateway.services import VERDICT_KEY, Services, client_ip, verdict_of


class CheckMarker:
    name = "schoolgate_check_marker"

    def __init__(self, services: Services) -> None:
        self.services = services

    @property
    def book(self) -> ProbeBook:
        return self.services.probes

    @property
    def windows(self) -> WindowBook:
        return self.services.windows

    def http_connect(self, flow: http.HTTPFlow) -> None:
        marked = self._mark(verdict_of(flow), flow.client_conn)
        if marked is not None:
            flow.metadata[VERDICT_KEY] = marked
            self.services.connection(flow.client_conn).connect = marked

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        state = self.services.peek(nextlayer.context.client)
        if state is None or state.verdict is state.looked_at:
            return  # next_layer runs more than once per connection: mark a verdict when new
        marked = self._mark(state.verdict, nextlayer.context.client)
        if marked is not None:
            state.verdict = marked
        state.looked_at = state.verdict

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        marked = self._mark(verdict_of(flow), flow.client_conn)
        if marked is not None:
            flow.metadata[VERDICT_KEY] = marked

    def _mark(self, verdict: Verdict | None, client: connection.Client) -> Verdict | None:
        """The verdict marked as a check's, or None to leave it as it is."""
        if verdict is None or verdict.check_probe:
            return None
        ip = client_ip(client)
        if self.book.watching(ip, verdict.host):
            return replace(verdict, check_probe=True)
        window = self.windows.covering(ip, verdict.record)
        if window is not None:  # an agent's check run (checks/announced.py)
            return replace(verdict, check_probe=True, check_window=window.id)
        return None
