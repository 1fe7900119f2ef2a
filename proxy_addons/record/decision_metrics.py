"""The recorder's metrics sink: counts the verdicts that took effect and times every one.

A page may be decided up to three times (CONNECT, TLS ClientHello, decrypted request);
only the verdict that took effect is counted in `schoolgate_decisions_total`, so summing
over stages gives requests and connections, not decisions redone. Every decision is timed,
counted or not. The circumvention and safe-search counters are counted with the verdict.
The content filter's verdict on a page (`Took.RESPONSE`) is not a decision counted here:
its request was counted, and its deciding timed, already.
"""

from __future__ import annotations

from proxy_addons.core import circumvention as cv
from proxy_addons.core.verdict import Verdict
from proxy_addons.record import metrics
from proxy_addons.record.seen import Seen, Took


class DecisionMetrics:
    """Counts decisions into the Prometheus registry (record/metrics.py)."""

    def record(self, verdict: Verdict, seen: Seen) -> None:
        if seen.took is Took.RESPONSE:
            return
        seconds = verdict.decide_seconds
        if not seen.took_effect:
            if seconds is not None:
                metrics.observe_decision_seconds(verdict.stage, seconds)
            return
        record = verdict.record
        metrics.observe_decision(record, seconds)
        if verdict.blocked and verdict.decision.category == cv.CATEGORY:
            metrics.circumvention_blocked(cv.kind_of(record))
        if verdict.safe_search is not None:
            metrics.safe_search_enforced(*verdict.safe_search)
