"""The access log add-on: one record per filtering decision, in JSON lines and in the store.

It runs after the Filter and reads what the Filter decided. Where it hooks in, and why:

- `requestheaders`, for every plain or decrypted request: the Filter decides
  there, and every decided request passes it exactly once. mitmproxy does call
  `response` for the block pages the Filter sets there too, but only once the
  request body is in and the exchange is over, and `error` for the rest: a
  long download, a stream or a gateway stopping mid-request would log late or
  not at all.
- `http_connect`: a refused CONNECT is logged at once (it never gets further).
  An allowed one waits: a TLS decision or decrypted requests on the
  connection follow and are what gets logged; a tunnel with neither (not TLS,
  not HTTP) is logged when it closes (`client_disconnected`).
- `next_layer`, for the Filter's TLS-stage verdicts (`Services.connection(...).verdict`):
  a connection refused or passed through on its host name alone is logged at
  once as a host-only record. One the Filter decrypts is logged through its
  requests instead, or, if the device rejects the school's certificate and
  no request ever comes (`tls_failed_client`), as the host-only decision.
"""

from __future__ import annotations

import logging
import weakref
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mitmproxy import connection, ctx, http, tls
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import layer, layers

from proxy_addons.gateway.refuse_layer import RefuseLayer
from proxy_addons.gateway.services import Services, client_ip, verdict_of
from proxy_addons.record.access_records import JSON_FILE, AccessRecord, AccessWriter, build

logger = logging.getLogger(__name__)

LOGGED_KEY = "schoolgate_access_logged"
_WRITER_OPTIONS = {
    "schoolgate_var",
    "schoolgate_policy",
    "schoolgate_dsn",
    "schoolgate_access_log_max_bytes",
    "schoolgate_access_log_backups",
    "schoolgate_access_log_flush_ms",
    "schoolgate_access_log_batch",
}


class AccessLog:
    """Hands every decision the Filter makes to a background writer."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.writer: AccessWriter | None = None
        # Decisions waiting to learn whether the connection brings requests of its own.
        self._pending_connect: weakref.WeakKeyDictionary[connection.Client, AccessRecord] = (
            weakref.WeakKeyDictionary()
        )
        self._pending_tls: weakref.WeakKeyDictionary[connection.Client, AccessRecord] = (
            weakref.WeakKeyDictionary()
        )
        self._seen_tls: weakref.WeakKeyDictionary[connection.Client, int] = (
            weakref.WeakKeyDictionary()
        )

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "schoolgate_access_log_max_bytes",
            int,
            50_000_000,
            "Size at which var/log/access.jsonl is rotated to access.jsonl.1 (0: never).",
        )
        loader.add_option(
            "schoolgate_access_log_backups", int, 50, "How many rotated access log files to keep."
        )
        loader.add_option(
            "schoolgate_access_log_flush_ms",
            int,
            2000,
            "How often (milliseconds) queued access log records are written to the store.",
        )
        loader.add_option(
            "schoolgate_access_log_batch",
            int,
            500,
            "Write queued access log records to the store when this many are waiting.",
        )

    def configure(self, updated: set[str]) -> None:
        if not updated & _WRITER_OPTIONS or self.services.runtime is None:
            return
        if self.writer is not None:
            self.writer.close()
        opts = ctx.options
        self.writer = AccessWriter(
            Path(opts.schoolgate_var) / JSON_FILE,
            self.services.store,
            self._retention_days,
            max_bytes=opts.schoolgate_access_log_max_bytes,
            backups=opts.schoolgate_access_log_backups,
            flush_seconds=max(10, opts.schoolgate_access_log_flush_ms) / 1000,
            batch_size=max(1, opts.schoolgate_access_log_batch),
        )
        self.writer.start()
        self.services.access_writer = self.writer

    def done(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            self.services.access_writer = None

    # -- hooks ---------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        verdict = verdict_of(flow)
        if verdict is None or verdict.stage != "request" or flow.metadata.get(LOGGED_KEY):
            return
        decision = verdict.record
        flow.metadata[LOGGED_KEY] = True
        client = flow.client_conn
        self._pending_connect.pop(client, None)  # the tunnel's requests speak for it
        self._pending_tls.pop(client, None)
        req = flow.request
        self._submit(
            build(
                decision,
                _when(req.timestamp_start),
                method=req.method,
                user=_user(flow),
                ip=client_ip(client),
                url=None if decision.get("url") else req.pretty_url,  # only when it lacks one
            )
        )

    def http_connect(self, flow: http.HTTPFlow) -> None:
        verdict = verdict_of(flow)
        if verdict is None or verdict.stage != "connect" or flow.metadata.get(LOGGED_KEY):
            return
        flow.metadata[LOGGED_KEY] = True
        record = build(
            verdict.record,
            _when(flow.request.timestamp_start),
            method="CONNECT",
            user=_user(flow),
            ip=client_ip(flow.client_conn),
        )
        if flow.response is not None and flow.response.status_code >= 300:
            self._submit(record)  # refused: nothing follows
        else:
            self._pending_connect[flow.client_conn] = record

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        client = nextlayer.context.client
        state = self.services.peek(client)
        verdict = state.verdict if state is not None else None
        if verdict is None or self._seen_tls.get(client) == id(verdict):
            return
        self._seen_tls[client] = id(verdict)  # the Filter decided this connection just now
        self._pending_connect.pop(client, None)  # the TLS decision supersedes the CONNECT's
        record = build(verdict.record, datetime.now(UTC), ip=client_ip(client))
        if isinstance(nextlayer.layer, RefuseLayer | layers.TCPLayer):
            self._submit(record)  # refused or passed through on the host name alone
        else:
            self._pending_tls[client] = record  # decrypted: its requests will be logged

    def tls_failed_client(self, data: tls.TlsData) -> None:
        record = self._pending_tls.pop(data.context.client, None)
        if record is not None:
            self._submit(record)

    def client_disconnected(self, client: connection.Client) -> None:
        self._pending_tls.pop(client, None)  # decrypted, handshake done, no request: nothing
        record = self._pending_connect.pop(client, None)
        if record is not None:
            self._submit(record)  # a tunnel that was neither TLS nor HTTP

    # -- helpers -------------------------------------------------------------

    def _submit(self, record: AccessRecord) -> None:
        if self.writer is not None:
            self.writer.submit(record)

    def _retention_days(self) -> int | None:
        policy = self.services.policy
        return policy.monitoring.retention_days if policy is not None else None


def _when(timestamp: float | None) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC) if timestamp else datetime.now(UTC)


def _user(flow: http.HTTPFlow) -> str | None:
    auth: Any = flow.metadata.get("proxyauth")
    return str(auth[0]) if auth else None  # the name only: never the password
