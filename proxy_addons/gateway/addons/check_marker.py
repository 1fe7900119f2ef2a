"""Marks the Filter's decisions on a browser check's probed requests, before monitoring runs.

The check page's test URLs are canaries (adult sites, proxies, the illegal tier's test
entries) fetched on purpose by a member of staff: like the gateway's own check runs
(`identified_by: check`), they should not reach the DSL as if a pupil had tried them. This
add-on sits right after the ones that decide and before the access log and alerting; for a
request an armed probe is watching (`check_probes.ProbeBook`: this client, this host, for at
most 30 seconds) it adds `check_probe: true` to the decision record, which alerting skips.
The access log still records the request: it happened.

An agent's check run is marked the same way while its window is open (check_windows.py:
this address, the suite's URLs, a few minutes), read from the store by a `WindowBook`
thread, never on the request path.
"""

from __future__ import annotations

from typing import Any

from mitmproxy import connection, http
from mitmproxy.proxy import layer

from proxy_addons.checks.announced import WINDOW_MARK, WindowBook
from proxy_addons.checks.probes import PROBE_MARK, ProbeBook
from proxy_addons.gateway.addons.filter import METADATA_KEY, Filter


class CheckMarker:
    name = "schoolgate_check_marker"

    def __init__(self, gate: Filter, book: ProbeBook) -> None:
        self.gate = gate
        self.book = book
        self.windows = WindowBook(lambda: gate.store)

    def running(self) -> None:
        self.windows.start()

    def done(self) -> None:
        self.windows.stop()

    def http_connect(self, flow: http.HTTPFlow) -> None:
        self._mark(flow.metadata.get(METADATA_KEY), flow.client_conn)

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        client = nextlayer.context.client
        self._mark(self.gate.connection_decisions.get(client), client)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self._mark(flow.metadata.get(METADATA_KEY), flow.client_conn)

    def _mark(self, record: dict[str, Any] | None, client: connection.Client) -> None:
        if not record or PROBE_MARK in record:
            return
        peer = client.peername
        ip = str(peer[0]) if peer else None
        if self.book.watching(ip, record.get("host")):
            record[PROBE_MARK] = True
            return
        window = self.windows.covering(ip, record)
        if window is not None:  # an agent's check run (check_windows.py)
            record[PROBE_MARK] = True
            record[WINDOW_MARK] = window.id
