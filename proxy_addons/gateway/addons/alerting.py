"""The alerting add-on: turns what the Filter decided, and what pupils search for and read,
into alerts for the DSL and the IT provider.

It runs after the Filter and the access log and reads the Filter's decision records; it
hooks in where the access log does, for the same reasons (see access_log.py), and alerts
on the decision the person actually met: a refused CONNECT, a refused TLS connection, or a
request (blocked or not). The request path only copies the record and hands it to one
background thread, which looks for search terms and risk phrases, counts repeated blocks
and writes events to the durable outbox (alert_outbox.py); pages are scanned on another
thread, so nobody's page waits on the scan.

A failed policy reload is a technical alert too: the add-on listens to the services'
reloads (`Services.on_reload_error`, and `on_reload`, to pick up new channels and phrase
libraries). It is also how the others raise an alert (`Services.raise_alert`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mitmproxy import connection, ctx, http, tls
from mitmproxy.addonmanager import Loader
from mitmproxy.net import encoding
from mitmproxy.net.http.headers import infer_content_encoding
from mitmproxy.proxy import layer

from proxy_addons.alerts.dispatch import raise_alert
from proxy_addons.alerts.events import Event, Pseudonymiser, ca_refused_event, reload_failed_event
from proxy_addons.alerts.notify.from_policy import build_channels
from proxy_addons.alerts.outbox import AlertOutbox
from proxy_addons.alerts.request_events import RepeatTracker, events_for_decision, phrase_event
from proxy_addons.checks.probes import PROBE_MARK
from proxy_addons.core import search_terms
from proxy_addons.core.background import Worker
from proxy_addons.core.content.page_text import html_text
from proxy_addons.core.content.phrase_library import load_libraries
from proxy_addons.core.content.phrases import PhraseMatcher
from proxy_addons.core.policy.model import Policy
from proxy_addons.core.policy.runtime import LoadedPolicy, PolicyRuntime
from proxy_addons.gateway import option_types
from proxy_addons.gateway.headers import header
from proxy_addons.gateway.refuse_layer import RefuseLayer
from proxy_addons.gateway.services import Services, verdict_of
from proxy_addons.record import metrics
from proxy_addons.store import Store

logger = logging.getLogger(__name__)

KEY_FILE = Path("alerts") / "pseudonym.key"  # under schoolgate_var
MAX_SCAN_BACKLOG = 32_000_000  # bytes of pages waiting to be scanned; beyond, pages go unscanned
SCAN_PACE = 0.05  # seconds the scan and intake threads rest between runs of work (background.py)


class Alerting:
    """Raises safeguarding and technical alerts and delivers them through the outbox."""

    def __init__(self, services: Services) -> None:
        self.services = services
        services.raise_alert = self.try_raise
        services.on_reload.append(self._policy_loaded)
        services.on_reload_error.append(self._reload_failed)
        self.outbox: AlertOutbox | None = None
        self.matcher: PhraseMatcher | None = None
        self.tracker = RepeatTracker()
        self.pseudonym: Pseudonymiser | None = None
        self._runtime: PolicyRuntime | None = None
        self._store: Store | None = None
        self._running = False
        self._intake = Worker("alerts-intake", pace=SCAN_PACE)
        self._scanner = Worker("alerts-scan", pace=SCAN_PACE)
        self._scan_backlog = 0  # bytes
        self._scan_max_bytes = 1_000_000  # schoolgate_alerts_scan_max_bytes
        self._retry, self._retry_max = 5.0, 900.0  # schoolgate_alerts_retry_(max_)seconds
        self._skipped_scans = 0  # pages not scanned because the backlog was full
        self._skip_warned_at = -60.0
        self._scan_lock = threading.Lock()
        # Decrypted connections the Filter blocked at TLS: alerted on if the device then
        # rejects the school's certificate (no request, so no block page, follows).
        self._pending_tls: weakref.WeakKeyDictionary[connection.Client, dict[str, Any]] = (
            weakref.WeakKeyDictionary()
        )
        self._seen_tls: weakref.WeakKeyDictionary[connection.Client, int] = (
            weakref.WeakKeyDictionary()
        )

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "schoolgate_alerts_scan_max_bytes",
            int,
            1_000_000,
            "Largest page (bytes) whose text is checked for risk phrases, for the profiles "
            "in monitoring.scan_page_text; larger pages are not scanned.",
        )
        loader.add_option(  # seconds as text: `--set` can't give a float (option_types.py)
            "schoolgate_alerts_retry_seconds",
            str,
            "5",
            "Wait (seconds) before retrying an alert on a channel that is down; doubles per "
            "attempt.",
        )
        loader.add_option(
            "schoolgate_alerts_retry_max_seconds",
            str,
            "900",
            "Longest wait (seconds) between retries of an alert.",
        )
        loader.add_option(
            "schoolgate_alerts_stuck_attempts",
            int,
            6,
            "After this many failed attempts on a channel, a technical alert says it is stuck.",
        )

    def configure(self, updated: set[str]) -> None:
        if "schoolgate_alerts_scan_max_bytes" in updated:
            self._scan_max_bytes = ctx.options.schoolgate_alerts_scan_max_bytes
        if "schoolgate_alerts_retry_seconds" in updated:
            self._retry = option_types.seconds("schoolgate_alerts_retry_seconds", 0.05)
        if "schoolgate_alerts_retry_max_seconds" in updated:
            self._retry_max = option_types.seconds("schoolgate_alerts_retry_max_seconds", 0.05)
        runtime, store = self.services.runtime, self.services.store
        if runtime is None or store is None or runtime.current is None:
            return
        if runtime is not self._runtime:
            self._runtime = runtime
            self.services.ca_trust.on_refusal = self._ca_refused
            self.pseudonym = Pseudonymiser(_pseudonym_key(Path(ctx.options.schoolgate_var)))
            self._policy_loaded(runtime.current)
        if store is not self._store:
            if self.outbox is not None:
                self.outbox.stop()
            self._store = store
            self.outbox = AlertOutbox(store, on_stuck=self.raise_event)
            self._set_channels(runtime.current.policy)
            if self._running:
                self.outbox.start()
        assert self.outbox is not None
        opts = ctx.options
        self.outbox.backoff = self._retry
        self.outbox.backoff_max = max(self._retry, self._retry_max)
        self.outbox.stuck_attempts = max(1, opts.schoolgate_alerts_stuck_attempts)

    def running(self) -> None:
        self._running = True
        if self.outbox is not None:
            self.outbox.start()

    def done(self) -> None:
        self._running = False
        self._scanner.close(wait=False, drop_pending=True)
        self._intake.close(wait=True)  # events already raised reach the store
        if self.outbox is not None:
            self.outbox.stop()

    # -- policy changes ----------------------------------------------------------------------

    def _policy_loaded(self, loaded: LoadedPolicy) -> None:
        policy = loaded.policy
        libraries = policy.monitoring.phrase_libraries
        try:
            self.matcher = load_libraries(libraries) if libraries else None
        except Exception as exc:  # keep matching with the libraries we had
            logger.error("Risk phrase libraries not loaded; keeping the previous ones: %s", exc)
        self._set_channels(policy)

    def _set_channels(self, policy: Policy) -> None:
        if self.outbox is not None:
            self.outbox.channels = build_channels(policy)

    def _ca_refused(self, device: str, site: str) -> None:
        loaded = self.services.loaded
        self.raise_event(ca_refused_event(device, site, loaded.policy if loaded else None))

    def _reload_failed(self, message: str) -> None:
        loaded = self.services.loaded
        policy = loaded.policy if loaded else None
        self.raise_event(reload_failed_event(policy, message))

    # -- raising -----------------------------------------------------------------------------

    def raise_event(self, event: Event) -> None:
        """Route `event` by the policy in force and store it in the outbox (any thread)."""
        self.try_raise(event)

    def try_raise(self, event: Event) -> bool:
        """raise_event, saying whether the alert was stored: not with no store yet, or a
        store that is down or whose disk is full (then it is logged and counted)."""
        loaded = self.services.loaded
        outbox = self.outbox
        if loaded is None or outbox is None:
            logger.error("Alert %s not raised: no policy or store yet", event.kind)
            metrics.alert_not_stored(event.kind)
            return False
        try:
            raise_alert(outbox, loaded.policy, event)
        except Exception:  # the store is down or its disk full: logged and counted there
            return False
        return True

    def _submit(self, fn: Callable[..., None], *args: Any) -> None:
        self._intake.submit(self._guarded, fn, *args)  # refused once shutting down

    @staticmethod
    def _guarded(fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            logger.exception("Alerting failed")

    def _on_decision(
        self, record: dict[str, Any], path: str | None, at: datetime, navigation: bool = True
    ) -> None:
        loaded = self.services.loaded
        if loaded is None or self.pseudonym is None or record.get("identified_by") == "check":
            return  # a termly check's canaries are no one's doing (check_identity.py)
        if record.get(PROBE_MARK):
            return  # nor a browser check's (check_marker.py)
        policy = loaded.policy
        term = None
        if path is not None and record.get("reason") != "illegal":
            term = search_terms.extract(str(record.get("host") or ""), path)
        matcher = self.matcher
        hits = matcher.match(term) if term and matcher is not None else []
        events = events_for_decision(
            record, policy, term, hits, pseudonym=self.pseudonym, navigation=navigation, at=at
        )
        repeat = self.tracker.observe(record, policy, at, navigation=navigation)
        if repeat is not None:
            events.append(repeat)
        for event in events:
            self.raise_event(event)

    # -- hooks -------------------------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        verdict = verdict_of(flow)
        if (
            verdict is not None
            and verdict.stage == "connect"
            and verdict.blocked
            and flow.response is not None
            and flow.response.status_code == 403
        ):
            self._submit(self._on_decision, dict(verdict.record), None, datetime.now(UTC))

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        client = nextlayer.context.client
        state = self.services.peek(client)
        verdict = state.verdict if state is not None else None
        if verdict is None or self._seen_tls.get(client) == id(verdict):
            return
        self._seen_tls[client] = id(verdict)
        if not verdict.blocked:
            return
        record = verdict.record
        if isinstance(nextlayer.layer, RefuseLayer):
            self._submit(self._on_decision, dict(record), None, datetime.now(UTC))
        else:
            self._pending_tls[client] = dict(record)  # its request will show the block page

    def tls_failed_client(self, data: tls.TlsData) -> None:
        record = self._pending_tls.pop(data.context.client, None)
        if record is not None:
            self._submit(self._on_decision, record, None, datetime.now(UTC))

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        verdict = verdict_of(flow)
        if verdict is None or verdict.stage != "request":
            return
        record = verdict.record
        self._pending_tls.pop(flow.client_conn, None)
        path = flow.request.path
        if record.get("action") != "block" and not search_terms.extract(
            str(record.get("host") or ""), path
        ):
            return  # an allowed request raises nothing unless it is a search (_on_decision)
        navigation = _is_navigation(flow.request)
        self._submit(self._on_decision, dict(record), path, datetime.now(UTC), navigation)

    def response(self, flow: http.HTTPFlow) -> None:
        """Scan readable HTML for risk phrases, for the profiles the policy names."""
        verdict = verdict_of(flow)
        record = verdict.record if verdict is not None else None
        response = flow.response
        if (
            self.matcher is None
            or response is None
            or not record
            or record.get("stage") != "request"
            or record.get("action") != "allow"
            or record.get("reason") == "portal"
            or record.get("identified_by") == "check"  # a termly check (check_identity.py)
            or record.get(PROBE_MARK)  # a browser check's test URL (check_marker.py)
            or not 200 <= response.status_code < 300
            or response.raw_content is None
            or "text/html" not in header(response.headers, b"content-type").lower()
        ):
            return
        loaded = self.services.loaded
        if loaded is None or record.get("profile") not in loaded.policy.monitoring.scan_page_text:
            return
        cap = self._scan_max_bytes
        if len(response.raw_content) > cap:
            return
        if search_terms.extract(str(record.get("host") or ""), flow.request.path):
            return  # a results page: the search itself was checked
        with self._scan_lock:
            if self._scan_backlog + len(response.raw_content) > MAX_SCAN_BACKLOG:
                self._skipped_scans += 1
                now = time.monotonic()
                if now >= self._skip_warned_at + 60:  # at most a line a minute, with a count
                    self._skip_warned_at = now
                    logger.warning(
                        "Page scans skipped: %d pages so far (%d bytes of pages waiting)",
                        self._skipped_scans,
                        self._scan_backlog,
                    )
                return
            self._scan_backlog += len(response.raw_content)
        page = str(record.get("url") or "").split("?", 1)[0].split("#", 1)[0]
        # The two headers it needs and the (immutable) body, not `response.copy()`: a copy of
        # the message costs the event loop more than the scan of a small page does.
        encoding_name = header(response.headers, b"content-encoding")
        content_type = header(response.headers, b"content-type")
        args = (dict(record), page, encoding_name, content_type, response.raw_content, cap)
        if not self._scanner.submit(self._scan, *args):
            with self._scan_lock:  # shutting down
                self._scan_backlog -= len(response.raw_content)

    def _scan(
        self,
        record: dict[str, Any],
        page: str,
        content_encoding: str,
        content_type: str,
        raw: bytes,
        cap: int,
    ) -> None:
        try:
            matcher, loaded = self.matcher, self.services.loaded
            if matcher is None or loaded is None:
                return
            content = _decoded(raw, content_encoding)
            if len(content) > cap:
                return
            text = visible_text(_as_text(content, content_type))
            if not matcher.categories_in(text):  # most pages: no phrase, found in a fraction
                return  # of the time `match` takes to say so
            hits = matcher.match(text)
            event = phrase_event(record, loaded.policy, hits, page=page)
            if event is not None:
                self._submit(self.raise_event, event)
        except Exception:
            logger.exception("Page scan failed")
        finally:
            with self._scan_lock:
                self._scan_backlog -= len(raw)


def _decoded(raw: bytes, content_encoding: str) -> bytes:
    """The body without its Content-Encoding; as sent if that can't be undone (as
    mitmproxy's `get_content(strict=False)`)."""
    if not content_encoding:
        return raw
    try:
        content = encoding.decode(raw, content_encoding)
    except ValueError:
        return raw
    return content if isinstance(content, bytes) else raw


def _as_text(content: bytes, content_type: str) -> str:
    """The body as text, in the charset mitmproxy infers (`get_text(strict=False)`)."""
    charset = infer_content_encoding(content_type, content)
    try:
        return str(encoding.decode(content, charset))
    except ValueError:
        return content.decode("utf8", "surrogateescape")


def _is_navigation(request: http.Request) -> bool:
    """Did the person ask for this (a page or frame), rather than a page fetching it?

    Browsers say so in Sec-Fetch-Dest; without it (older browsers, apps, curl) assume yes.
    """
    dest = header(request.headers, b"sec-fetch-dest").lower()
    return dest in ("", "document", "iframe", "frame")


def _pseudonym_key(var: Path) -> bytes:
    """The school's key for pseudonyms in technical alerts, made on first use."""
    path = var / KEY_FILE
    try:
        key = path.read_bytes()
        if len(key) >= 16:
            return key
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.urandom(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    os.replace(tmp, path)
    return key


# -- page text -----------------------------------------------------------------------------------


def visible_text(html: str) -> str:
    """The page's visible words, one space apart (content_scoring's one-pass extraction)."""
    return " ".join(html_text(html).split())
