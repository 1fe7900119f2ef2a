"""Serves the gateway's Prometheus metrics.

The decisions are counted by the recorder's metrics sink (record/decision_metrics.py):
only the verdict that took effect is counted in `schoolgate_decisions_total` (and the
circumvention and safe-search counters), and every decision is timed.

Gauges that describe state (unblocks in force, pending requests, the policy's lists, a
damaged index, a status file that cannot be written) are read when Prometheus scrapes,
from the services, so they can never drift; the devices' figures over the term
(devices/term_gauges.py) are worked out again every few minutes.

The same port serves `/status`: the gateway's state as JSON from memory (what
var/run/status.json holds when it can be written), so `schoolgate status` still tells
the truth on a full disk.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from mitmproxy import ctx, exceptions
from mitmproxy.addonmanager import Loader
from prometheus_client import make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from proxy_addons.core.policy.runtime import PolicyRuntime
from proxy_addons.core.unblocks import Status
from proxy_addons.devices import inventory
from proxy_addons.devices.term_gauges import TermGauges
from proxy_addons.devices.watch import device_counts
from proxy_addons.gateway.addons.illegal_watch import tier_families
from proxy_addons.gateway.services import Services
from proxy_addons.record import metrics

logger = logging.getLogger(__name__)


class GatewayCollector(Collector):
    """Gauges read from the services at scrape time."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.term_gauges = TermGauges()

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        services = self.services
        unblocks, pending, last_good, failing, entries, illegal = self._families()
        now = datetime.now(UTC)
        watch = services.unblock_watch
        active = sum(1 for u in watch.current if u.in_force(now)) if watch else 0
        unblocks.add_metric([], active)
        yield unblocks
        try:
            waiting = len(services.workflow.list([Status.PENDING])) if services.workflow else 0
        except Exception as exc:  # the store is down: leave the gauge out, keep the rest
            logger.warning("Metrics: cannot count pending unblock requests: %s", exc)
        else:
            pending.add_metric([], waiting)
            yield pending
        runtime = services.runtime
        loaded = runtime.current if runtime else None
        failing.add_metric([], 1 if runtime and runtime.last_error else 0)
        yield failing
        yield from _damage_families(runtime)
        if loaded is None:
            return
        last_good.add_metric([], loaded.loaded_at.timestamp())
        yield last_good
        for category, count in sorted(loaded.index.by_category.items()):
            entries.add_metric([category], count)
        yield entries
        tier = loaded.policy.illegal
        illegal.add_metric([], len(tier.exact) + len(tier.prefixes))
        yield illegal
        yield from tier_families(loaded.policy)
        yield from _device_families(services, loaded.policy.devices.stale_days)
        if services.store is not None:  # the term's figures, worked out every few minutes
            yield from self.term_gauges.collect(services.store, loaded.policy, now)

    @staticmethod
    def _families() -> tuple[
        GaugeMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
    ]:
        return (
            GaugeMetricFamily(
                "schoolgate_unblocks_active", "Approved unblocks in force now (window open)."
            ),
            GaugeMetricFamily(
                "schoolgate_unblock_requests_pending",
                "Unblock requests waiting for the DSL or a deputy.",
            ),
            GaugeMetricFamily(
                "schoolgate_policy_last_reload_success_timestamp_seconds",
                "When the policy in force was loaded (start-up or the last good reload).",
            ),
            GaugeMetricFamily(
                "schoolgate_policy_last_reload_failed",
                "1 while the newest policy edit failed to load and the last good one is kept.",
            ),
            GaugeMetricFamily(
                "schoolgate_list_entries",
                "List entries (domains, URLs, expressions) per category in force.",
                labels=["category"],
            ),
            GaugeMetricFamily(
                "schoolgate_illegal_list_entries",
                "Entries in the illegal tier (exact URLs and prefixes) in force.",
            ),
        )


def _damage_families(runtime: PolicyRuntime | None) -> Iterable[Metric]:
    """Damaged state that blocks or hides things: served from memory, so a full disk that
    stops the status file being written still shows here."""
    loaded = runtime.current if runtime else None
    damaged = GaugeMetricFamily(
        "schoolgate_list_index_damaged",
        "1 while the list index in force is damaged: every request is blocked until it is rebuilt.",
    )
    damaged.add_metric([], 1 if loaded is not None and loaded.index.damaged else 0)
    yield damaged
    unwritten = GaugeMetricFamily(
        "schoolgate_status_file_failing",
        "1 while var/run/status.json cannot be written (the state is served on /status).",
    )
    unwritten.add_metric([], 1 if runtime is not None and runtime.status_error else 0)
    yield unwritten


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # Prometheus scrapes every few seconds: no line per scrape


def _start_server(
    host: str, port: int, app: Callable[..., Iterable[bytes]]
) -> tuple[WSGIServer, threading.Thread]:
    """A threaded WSGI server on host:port (IPv6 too), served from a daemon thread."""

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    server = make_server(host, port, app, Server, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    return server, thread


def _netloc(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else ("::1" if host == "::" else host)
    return f"[{shown}]:{port}" if ":" in shown else f"{shown}:{port}"


def _device_families(services: Services, stale_days: int) -> Iterable[Metric]:
    """Enrolled devices by compliance and their checks by status (device_watch).

    Counts only: no device, host or user label, so one series per state, not per pupil.
    """
    if services.store is None:
        return
    try:
        found = inventory.list_devices(services.store, datetime.now(UTC), stale_days)
    except Exception as exc:  # the store is down: leave the gauges out, keep the rest
        logger.warning("Metrics: cannot count devices: %s", exc)
        return
    compliance, checks = device_counts(found)
    by_state = GaugeMetricFamily(
        "schoolgate_devices",
        "Enrolled devices: compliant, non_compliant (last report failed) or stale (silent).",
        labels=["compliance"],
    )
    for state, count in sorted(compliance.items()):
        by_state.add_metric([state], count)
    yield by_state
    by_check = GaugeMetricFamily(
        "schoolgate_device_checks",
        "Checks in devices' last reports, by check and status (pass, fail, unknown).",
        labels=["check", "status"],
    )
    for (check, status), count in sorted(checks.items()):
        by_check.add_metric([check, status], count)
    yield by_check


class Metrics:
    """The /metrics endpoint (schoolgate_metrics_host/port)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.collector = GatewayCollector(services)
        self._registered = False
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        services.on_reload.append(lambda loaded: metrics.policy_reloaded(True))
        services.on_reload_error.append(lambda message: metrics.policy_reloaded(False))

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "schoolgate_metrics_host",
            str,
            "127.0.0.1",
            "Address the Prometheus /metrics endpoint listens on.",
        )
        loader.add_option(
            "schoolgate_metrics_port",
            int,
            9464,
            "Port of the Prometheus /metrics endpoint; 0 turns it off.",
        )

    def configure(self, updated: set[str]) -> None:
        if not self._registered:
            metrics.REGISTRY.register(self.collector)
            self._registered = True
        if updated & {"schoolgate_metrics_host", "schoolgate_metrics_port"}:
            port = ctx.options.schoolgate_metrics_port
            if not 0 <= port <= 65535:
                raise exceptions.OptionsError(f"schoolgate_metrics_port {port} is not a port")
            self._stop_server()
            if port:
                self._serve(ctx.options.schoolgate_metrics_host, port)

    def running(self) -> None:
        # Started as an add-on of a programmatic master (`schoolgate run`), configure may
        # never have seen the port options change: serve the default now.
        if self._server is None and ctx.options.schoolgate_metrics_port:
            self._serve(ctx.options.schoolgate_metrics_host, ctx.options.schoolgate_metrics_port)

    def done(self) -> None:
        self._stop_server()
        if self._registered:
            metrics.REGISTRY.unregister(self.collector)
            self._registered = False

    # -- helpers -------------------------------------------------------------

    def _serve(self, host: str, port: int) -> None:
        try:
            self._server, self._thread = _start_server(host, port, self._app())
        except OSError as exc:
            # A warning, not an error: mitmdump exits on errors logged at start-up, and
            # filtering matters more than its metrics.
            logger.warning(
                "Metrics endpoint not served: cannot listen on %s:%d: %s", host, port, exc
            )
            return
        logger.info("Prometheus metrics on http://%s:%d/metrics", host, port)
        runtime = self.services.runtime
        if runtime is not None:  # where `schoolgate status` finds /status
            runtime.status_parts["status_url"] = lambda: f"http://{_netloc(host, port)}/status"
            runtime.write_status()

    def _app(self) -> Callable[..., Iterable[bytes]]:
        """/metrics (and any other path) from the registry; /status from the runtime."""
        prometheus = make_wsgi_app(metrics.REGISTRY)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") != "/status":
                return prometheus(environ, start_response)  # type: ignore[no-any-return]
            runtime = self.services.runtime
            body = json.dumps(runtime.status() if runtime else {"state": "not loaded"}).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]

        return app

    def _stop_server(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
