"""The alerting add-on: delivers alerts for the DSL and the IT provider, and scans the
pages pupils read for risk phrases.

Decisions reach alerts through the recorder (recorder.py), whose alert sink
(`Services.alert_intake`, alert_intake.py) this add-on equips with the policy's risk
phrases and the pseudonymiser. Here: the durable outbox (alerts/outbox.py) and its
channels, the way every other part raises an alert (`Services.raise_alert`), and the
scan of allowed HTML pages (page_scan.py), for the profiles the policy names.

A failed policy reload is a technical alert too: the add-on listens to the services'
reloads (`Services.on_reload_error`, and `on_reload`, to pick up new channels and phrase
libraries).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mitmproxy import ctx, http
from mitmproxy.addonmanager import Loader

from proxy_addons.alerts.dispatch import raise_alert
from proxy_addons.alerts.events import Event, Pseudonymiser, ca_refused_event, reload_failed_event
from proxy_addons.alerts.notify.from_policy import build_channels
from proxy_addons.alerts.outbox import AlertOutbox
from proxy_addons.checks.probes import PROBE_MARK
from proxy_addons.core import search_terms
from proxy_addons.core.content.phrase_library import load_libraries
from proxy_addons.core.policy.model import Policy
from proxy_addons.core.policy.runtime import LoadedPolicy, PolicyRuntime
from proxy_addons.gateway import option_types
from proxy_addons.gateway.headers import header
from proxy_addons.gateway.page_scan import Page, PageScanner
from proxy_addons.gateway.services import Services, verdict_of
from proxy_addons.record import metrics
from proxy_addons.store import Store

logger = logging.getLogger(__name__)

KEY_FILE = Path("alerts") / "pseudonym.key"  # under schoolgate_var


class Alerting:
    """Raises safeguarding and technical alerts and delivers them through the outbox."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.intake = services.alert_intake  # the recorder's alert sink
        services.raise_alert = self.try_raise
        services.on_reload.append(self._policy_loaded)
        services.on_reload_error.append(self._reload_failed)
        self.outbox: AlertOutbox | None = None
        self.scanner = PageScanner(
            lambda: self.intake.matcher, self._policy, self.intake.raise_later
        )
        self._runtime: PolicyRuntime | None = None
        self._store: Store | None = None
        self._running = False
        self._scan_max_bytes = 1_000_000  # schoolgate_alerts_scan_max_bytes
        self._retry, self._retry_max = 5.0, 900.0  # schoolgate_alerts_retry_(max_)seconds

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
            key = _pseudonym_key(Path(ctx.options.schoolgate_var))
            self.intake.pseudonym = Pseudonymiser(key)
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
        self.scanner.close()
        self.intake.close()  # events already raised reach the store
        if self.outbox is not None:
            self.outbox.stop()

    # -- policy changes ----------------------------------------------------------------------

    def _policy_loaded(self, loaded: LoadedPolicy) -> None:
        policy = loaded.policy
        libraries = policy.monitoring.phrase_libraries
        try:
            self.intake.matcher = load_libraries(libraries) if libraries else None
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

    def _policy(self) -> Policy | None:
        return self.services.policy

    # -- hooks -------------------------------------------------------------------------------

    def response(self, flow: http.HTTPFlow) -> None:
        """Scan readable HTML for risk phrases, for the profiles the policy names."""
        verdict = verdict_of(flow)
        record = verdict.record if verdict is not None else None
        response = flow.response
        if (
            self.intake.matcher is None
            or response is None
            or not record
            or record.get("stage") != "request"
            or record.get("action") != "allow"
            or record.get("reason") == "portal"
            or record.get("identified_by") == "check"  # a termly check (checks/identity.py)
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
        url = str(record.get("url") or "").split("?", 1)[0].split("#", 1)[0]
        encoding_name = header(response.headers, b"content-encoding")
        content_type = header(response.headers, b"content-type")
        raw = response.raw_content
        self.scanner.offer(Page(dict(record), url, encoding_name, content_type, raw, cap))


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
