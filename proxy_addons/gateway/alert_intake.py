"""The recorder's alert sink: the verdicts a person actually met, turned into alerts.

A refused CONNECT, a refused TLS connection, a decrypted one the device then would not
trust (no block page follows), a request (blocked, or a search), or a page the content
filter blocked for what it says (`Took.RESPONSE`). The recorder's hook only copies the
record and hands it to one background thread, which looks for search terms and risk
phrases, counts repeated blocks, and raises the events (through
`Services.raise_alert`, the alerting add-on's outbox). Not a mitmproxy add-on: the
alerting add-on gives it the phrase matcher and the pseudonymiser.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from proxy_addons.alerts.events import Event, Pseudonymiser
from proxy_addons.alerts.request_events import RepeatTracker, events_for_decision
from proxy_addons.checks.probes import PROBE_MARK
from proxy_addons.core import search_terms
from proxy_addons.core.background import Worker
from proxy_addons.core.content.phrases import PhraseMatcher
from proxy_addons.core.policy.model import Policy
from proxy_addons.core.verdict import CONTENT_BLOCKED, ContentFinding, Verdict
from proxy_addons.gateway.content_block import content_event
from proxy_addons.record.access_sink import Device
from proxy_addons.record.seen import Seen, Took

logger = logging.getLogger(__name__)

PACE = 0.05  # seconds the intake thread rests between runs of work (background.py)
_MET_AT_ONCE = (Took.REFUSED, Took.TLS_FAILED)  # blocked with no request (no page) after


class AlertIntake:
    """Raises safeguarding alerts from verdicts, off the proxy's event loop."""

    def __init__(
        self,
        policy: Callable[[], Policy | None],
        raise_alert: Callable[[Event], object],
        device_at: Callable[[str | None], Device | None] = lambda ip: None,
    ) -> None:
        self.policy = policy
        self.raise_alert = raise_alert
        self.device_at = device_at  # the enrolled device at an address (its key, its report)
        self.matcher: PhraseMatcher | None = None  # the policy's risk phrases (alerting.py)
        self.pseudonym: Pseudonymiser | None = None  # for technical alerts (alerting.py)
        self.tracker = RepeatTracker()
        self._worker = Worker("alerts-intake", pace=PACE)

    def record(self, verdict: Verdict, seen: Seen) -> None:
        if seen.took is Took.REQUEST:
            path = seen.path or ""
            host = str(verdict.record.get("host") or "")
            if not verdict.blocked and not search_terms.extract(host, path):
                return  # an allowed request raises nothing unless it is a search
            self._submit(self._on_decision, self._named(verdict), path, seen.at, seen.navigation)
        elif seen.took in _MET_AT_ONCE and verdict.blocked:
            self._submit(self._on_decision, self._named(verdict), None, seen.at, True)
        elif seen.took is Took.RESPONSE:
            finding = verdict.content
            if finding is not None and finding.outcome == CONTENT_BLOCKED:  # not unread: no one's
                self._submit(self._on_content, self._named(verdict), finding, seen.at)

    def _named(self, verdict: Verdict) -> dict[str, Any]:
        """The record, with the enrolled device at its address, as the access log has it."""
        record = dict(verdict.record)
        device = self.device_at(record.get("ip"))
        if device is not None:
            record["device_id"], record["device_name"] = device.device_id, device.name
        return record

    def raise_later(self, event: Event) -> None:
        """Raise `event` from the intake thread (the page scan's finds)."""
        self._submit(self.raise_alert, event)

    def close(self) -> None:
        self._worker.close(wait=True)  # events already raised reach the store

    def _submit(self, fn: Callable[..., object], *args: Any) -> None:
        self._worker.submit(self._guarded, fn, *args)  # refused once shutting down

    @staticmethod
    def _guarded(fn: Callable[..., object], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            logger.exception("Alerting failed")

    def _on_content(self, record: dict[str, Any], finding: ContentFinding, at: datetime) -> None:
        policy = self.policy()
        if policy is None or _checks_own(record):
            return
        score, threshold = finding.score or 0, finding.threshold or 0
        self.raise_alert(content_event(record, policy, finding.phrases, score, threshold, at))

    def _on_decision(
        self, record: dict[str, Any], path: str | None, at: datetime, navigation: bool
    ) -> None:
        policy = self.policy()
        if policy is None or self.pseudonym is None or _checks_own(record):
            return
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
            self.raise_alert(event)


def _checks_own(record: dict[str, Any]) -> bool:
    """A termly check's canaries (checks/identity.py) or a browser check's test requests
    (check_marker.py): no one's doing, so no alert."""
    return record.get("identified_by") == "check" or bool(record.get(PROBE_MARK))
