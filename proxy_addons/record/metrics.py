"""The gateway's Prometheus metrics, in their own registry, and the calls that update them.

Other modules record what happened through the functions here, never through the metric
objects, so the label rules live in one place: labels are only ever the policy's own names
(profile, category), fixed words (outcome, reason, stage) or a channel's name. Never a user,
an IP address, a host or a URL: those would make a series per pupil (cardinality) and put
browsing history into the monitoring system (privacy).

For the alert outbox (a channel is a notifier's `name`, e.g. "email" or "webhook"):

- `alert_sent(channel)`: one alert delivered on the channel.
- `alert_failed(channel)`: one delivery attempt failed (it may be retried).
- `set_alerts_queued(channel, n)`: how many alerts wait in the outbox for the channel now.

These series exist with value 0 for every known channel from start-up, so alert rules and
dashboards can name them before the outbox sends anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)

# One series per counter, not two: the `_created` timestamps only double what is scraped.
disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_*: CPU, memory, open files, start time

# The alert channels (as alert_outbox.CHANNELS): their series exist, at 0, from start-up.
CHANNELS = ("email", "webhook", "teams", "slack", "syslog")
NO_CATEGORY = "none"

DECISIONS = Counter(
    "schoolgate_decisions",
    "Decisions that took effect: requests and connections let through (allow) or stopped "
    "(block), by the stage that decided them.",
    ["profile", "category", "outcome", "reason", "stage"],
    registry=REGISTRY,
)
DECISION_SECONDS = Histogram(
    "schoolgate_decision_duration_seconds",
    "Time the filter took to decide, at every stage (also decisions a later stage redoes).",
    ["stage"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    registry=REGISTRY,
)
ALERTS_SENT = Counter(
    "schoolgate_alerts_sent", "Alerts delivered, per channel.", ["channel"], registry=REGISTRY
)
ALERTS_FAILED = Counter(
    "schoolgate_alerts_failed",
    "Alert deliveries that failed (and may be retried), per channel.",
    ["channel"],
    registry=REGISTRY,
)
ALERTS_QUEUED = Gauge(
    "schoolgate_alerts_queued",
    "Alerts waiting in the outbox, per channel.",
    ["channel"],
    registry=REGISTRY,
)
POLICY_RELOADS = Counter(
    "schoolgate_policy_reloads",
    "Live policy reloads; on failure the last good policy stays in force.",
    ["outcome"],
    registry=REGISTRY,
)

# Damaged or lost state (core/policy/runtime.py, access_writer.py, alerting.py): never silent.
ACCESS_LOG_SINKS = ("queue", "file", "store")
LIST_INDEX_DAMAGE = Counter(
    "schoolgate_list_index_damage_found",
    "Damaged list index files found (checksum, size or header wrong). Each is rebuilt; "
    "until it is, the gateway blocks.",
    registry=REGISTRY,
)
ACCESS_LOG_DROPPED = Counter(
    "schoolgate_access_log_dropped",
    "Access log records lost, by where: queue (the writer fell behind; in neither place), "
    "file (not written to access.jsonl), store (not written to the store).",
    ["sink"],
    registry=REGISTRY,
)
ALERTS_NOT_STORED = Counter(
    "schoolgate_alerts_not_stored",
    "Alerts that could not be written to the outbox (store down, disk full): only logged.",
    ["kind"],
    registry=REGISTRY,
)

# The recorder's sinks, by class name (gateway/chain.py builds them).
RECORD_SINKS = ("AccessLogSink", "AlertIntake", "DecisionMetrics", "VerdictWitness")
RECORD_SINK_FAILED = Counter(
    "schoolgate_record_sink_failures",
    "Verdicts a recorder sink failed on (access_log, alerts, metrics, witness); the other "
    "sinks still got them, and the gateway's log has the error.",
    ["sink"],
    registry=REGISTRY,
)

# The retention purge's tables (workflow/retention.TABLES): a table's purge that failed.
RETENTION_TABLES = (
    "access_log",
    "alerts",
    "incidents",
    "reports",
    "unblocks",
    "check_runs",
    "seen_devices",
    "web_sessions",
    "portal_form_uses",
    "alert_outbox",
    "daily_totals",
    "device_reports",
)
RETENTION_PURGE_FAILED = Counter(
    "schoolgate_retention_purge_failures",
    "Tables whose daily retention purge failed (the others were still purged; the gateway's "
    "log has the error). Rows past their retention stay until a purge succeeds.",
    ["table"],
    registry=REGISTRY,
)

for _table in RETENTION_TABLES:
    RETENTION_PURGE_FAILED.labels(_table)
for _sink in ACCESS_LOG_SINKS:
    ACCESS_LOG_DROPPED.labels(_sink)
for _sink in RECORD_SINKS:
    RECORD_SINK_FAILED.labels(_sink)
for _channel in CHANNELS:
    ALERTS_SENT.labels(_channel)
    ALERTS_FAILED.labels(_channel)
    ALERTS_QUEUED.labels(_channel)
for _outcome in ("success", "failure"):
    POLICY_RELOADS.labels(_outcome)


def observe_decision(record: Mapping[str, Any], seconds: float | None = None) -> None:
    """Count a decision that took effect; `record` is `Decision.record()` plus its "stage".

    `seconds`, when known, is how long the decision took (see `observe_decision_seconds`).
    Only the record's profile, category, action, reason and stage become labels.
    """
    stage = str(record.get("stage") or "unknown")
    key = (
        str(record.get("profile") or "unknown"),
        str(record.get("category") or NO_CATEGORY),
        str(record.get("action") or "block"),
        str(record.get("reason") or "unknown"),
        stage,
    )
    counter = _DECISION_COUNTERS.get(key)
    if counter is None:
        counter = _DECISION_COUNTERS[key] = DECISIONS.labels(*key)
    counter.inc()
    if seconds is not None:
        observe_decision_seconds(stage, seconds)


# Each label set's child, found once: `labels()` checks and locks on every call, and these
# two are called for every request. The label values come from bounded sets (profiles,
# categories, outcomes, reasons, stages), so neither cache grows without end.
_DECISION_COUNTERS: dict[tuple[str, ...], Any] = {}
_DECISION_TIMERS: dict[str, Any] = {}


def observe_decision_seconds(stage: str, seconds: float) -> None:
    """Time one decision without counting it (a later stage decides the same traffic again)."""
    timer = _DECISION_TIMERS.get(stage)
    if timer is None:
        timer = _DECISION_TIMERS[stage] = DECISION_SECONDS.labels(stage)
    timer.observe(seconds)


def alert_sent(channel: str) -> None:
    """One alert delivered on `channel` (a notifier's name)."""
    ALERTS_SENT.labels(channel).inc()


def alert_failed(channel: str) -> None:
    """One alert delivery on `channel` failed."""
    ALERTS_FAILED.labels(channel).inc()


def set_alerts_queued(channel: str, n: int) -> None:
    """`n` alerts wait in the outbox for `channel` now (set it after every change)."""
    ALERTS_QUEUED.labels(channel).set(n)


def policy_reloaded(ok: bool) -> None:
    """One live reload of the policy finished, well (`ok`) or not."""
    POLICY_RELOADS.labels("success" if ok else "failure").inc()


def list_index_damaged() -> None:
    """A damaged list index file was found (it is rebuilt, never served)."""
    LIST_INDEX_DAMAGE.inc()


def access_log_dropped(sink: str, n: int = 1) -> None:
    """`n` access log records did not reach `sink` (one of ACCESS_LOG_SINKS)."""
    ACCESS_LOG_DROPPED.labels(sink if sink in ACCESS_LOG_SINKS else "queue").inc(n)


def record_sink_failed(sink: str) -> None:
    """A recorder sink (a fixed name: its class) raised on a verdict."""
    RECORD_SINK_FAILED.labels(sink if sink in RECORD_SINKS else "other").inc()


def retention_purge_failed(table: str) -> None:
    """The retention purge of `table` (one of RETENTION_TABLES) failed."""
    RETENTION_PURGE_FAILED.labels(table if table in RETENTION_TABLES else "other").inc()


def alert_not_stored(kind: str) -> None:
    """An alert of `kind` (an event kind, a fixed word) could not be put in the outbox."""
    ALERTS_NOT_STORED.labels(kind).inc()


# -- safe search and circumvention (counted from the verdict, decision_metrics.py) --
CIRCUMVENTION_KINDS = ("doh", "private_relay", "tor", "tunnel", "vpn", "proxy", "listed")
SAFE_SEARCH_ENGINES = ("google", "bing", "duckduckgo", "youtube", "other")
SAFE_SEARCH_ACTIONS = ("rewritten", "steered", "refused", "blocked")
CIRCUMVENTION_BLOCKED = Counter(
    "schoolgate_circumvention_blocked",
    "Ways round the filter stopped, by kind (built-in checks and the circumvention lists).",
    ["kind"],
    registry=REGISTRY,
)
SAFE_SEARCH = Counter(
    "schoolgate_safe_search",
    "Safe search enforced: requests rewritten, connections steered to an engine's enforced "
    "endpoint, engine hosts refused (not steerable) and engines without safe search blocked.",
    ["engine", "action"],
    registry=REGISTRY,
)
for _kind in CIRCUMVENTION_KINDS:
    CIRCUMVENTION_BLOCKED.labels(_kind)


def circumvention_blocked(kind: str) -> None:
    """One way round the filter stopped; `kind` is one of CIRCUMVENTION_KINDS."""
    CIRCUMVENTION_BLOCKED.labels(kind if kind in CIRCUMVENTION_KINDS else "listed").inc()


def safe_search_enforced(engine: str, action: str) -> None:
    """Safe search enforced once on `engine` (or "other"), by `action`."""
    engine = engine if engine in SAFE_SEARCH_ENGINES else "other"
    SAFE_SEARCH.labels(engine, action if action in SAFE_SEARCH_ACTIONS else "blocked").inc()
