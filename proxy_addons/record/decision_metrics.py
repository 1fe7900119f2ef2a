"""The recorder's metrics sink: counts the verdicts that took effect and times every one.

A page may be decided up to three times (CONNECT, TLS ClientHello, decrypted request);
only the verdict that took effect is counted in `schoolgate_decisions_total`, so summing
over stages gives requests and connections, not decisions redone. Every decision is timed,
counted or not. The circumvention and safe-search counters are counted with the verdict.
The content filter's verdict on a page (`Took.RESPONSE`) is not a decision counted here:
its request was counted, and its deciding timed, already.

A termly check's visit (`access_records.is_check_visit`: a canary fetched on purpose) is
counted apart, in `schoolgate_check_visits_total`, and never in the decisions, so no
dashboard or alert rule can take a check's block for a pupil's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter

from proxy_addons.core import circumvention as cv
from proxy_addons.core.verdict import Verdict
from proxy_addons.record import metrics
from proxy_addons.record.access_records import is_check_visit
from proxy_addons.record.seen import Seen, Took

CHECK_VISITS = Counter(
    "schoolgate_check_visits",
    "Requests and connections of termly filtering checks (not people's), by outcome "
    "(allow or block) and stage; never counted in schoolgate_decisions_total.",
    ["profile", "outcome", "stage"],
    registry=metrics.REGISTRY,
)


def observe_check_visit(record: Mapping[str, Any]) -> None:
    """Count one check visit; its labels are the policy's profile and fixed words only."""
    CHECK_VISITS.labels(
        str(record.get("profile") or "unknown"),
        str(record.get("action") or "block"),
        str(record.get("stage") or "unknown"),
    ).inc()


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
        if is_check_visit(record):
            observe_check_visit(record)
            if seconds is not None:
                metrics.observe_decision_seconds(verdict.stage, seconds)
            return
        metrics.observe_decision(record, seconds)
        if verdict.blocked and verdict.decision.category == cv.CATEGORY:
            metrics.circumvention_blocked(cv.kind_of(record))
        if verdict.safe_search is not None:
            metrics.safe_search_enforced(*verdict.safe_search)
