"""The illegal tier, watched while the gateway runs: a technical alert when it becomes unfit
(a feed older than the policy allows, never fetched, or only test entries on a production
install: ops/illegal_feeds/health.py) and one when it is fit again, once per state, not at
every check; the gauges `schoolgate_illegal_list_age_seconds` and
`schoolgate_illegal_tier_fit` for Prometheus (deploy/prometheus/ has the rule).

A feed fetched by `schoolgate lists update` is taken at once: the watch sees a list whose
checksum is not the one in force and asks the policy runtime to reload (the feeds folder
may not have existed when the runtime began watching).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from prometheus_client.core import GaugeMetricFamily, Metric

from proxy_addons.alerts.events import Audience, Event, local_time
from proxy_addons.core.periodic import Periodic
from proxy_addons.core.policy.illegal_feed import read_feed_state
from proxy_addons.core.policy.model import Policy
from proxy_addons.gateway.services import Services
from proxy_addons.ops.illegal_feeds.health import TierHealth, TierState, is_production, tier_health

logger = logging.getLogger(__name__)

ILLEGAL_TIER_UNFIT = "illegal_tier_unfit"
ILLEGAL_TIER_FIT = "illegal_tier_fit"
CHECK_SECONDS = 60.0


def tier_event(policy: Policy, health: TierHealth, at: datetime | None = None) -> Event:
    """The IT provider is told the tier became unfit (severity 5: illegal content may be
    reachable), or that it is fit again (severity 2). No entry of any list in it."""
    at = at or datetime.now(UTC)
    tz = policy.timezone if policy else ZoneInfo("UTC")
    if health.fit:
        kind, severity, summary = ILLEGAL_TIER_FIT, 2, "The illegal-content lists are current again"
        fields = {"reason": "; ".join(health.notes) or "current"}
    else:
        kind, severity = ILLEGAL_TIER_UNFIT, 5
        summary = {
            TierState.STALE: "The illegal-content lists are out of date",
            TierState.NEVER_FETCHED: "An illegal-content feed has never been fetched",
            TierState.PLACEHOLDER: "The illegal-content lists hold only test entries",
        }[health.state]
        fields = {
            "error": "; ".join(health.problems)[:2000],
            "action": "Run `schoolgate lists update --feeds-only` and read its message; "
            "`schoolgate doctor`; docs/illegal-content.md.",
        }
    return Event(
        kind=kind,
        severity=severity,
        audience=Audience.TECHNICAL,
        summary=summary,
        fields={**fields, "time": local_time(tz, at)},
        fold_key=f"illegal_tier|{health.state.value}",
        at=at,
        timezone=tz.key,
    )


class _Tick(Periodic):
    interval = CHECK_SECONDS
    thread_name = "schoolgate-illegal-watch"
    failure = "Checking the illegal tier's lists failed; trying again later"

    def __init__(self, watch: IllegalTierWatch) -> None:
        super().__init__()
        self.watch = watch

    def tick(self) -> None:
        self.watch.check()


class IllegalTierWatch:
    """Checks the tier every minute; raises an alert when its state changes."""

    def __init__(self, services: Services, *, production: bool | None = None) -> None:
        self.services = services
        self.production = is_production() if production is None else production
        self._told: TierState | None = None  # the state last alerted on (None: start-up)
        services.add_job(_Tick(self))

    def check(self, now: datetime | None = None) -> TierHealth | None:
        policy = self.services.policy
        if policy is None:
            return None
        self._take_new_lists(policy)
        health = tier_health(policy.illegal, production=self.production, now=now)
        if health.state is self._told or (self._told is None and health.fit):
            self._told = health.state
            return health
        if self.services.raise_alert(tier_event(policy, health, now)):
            self._told = health.state  # else told at the next check
        return health

    def _take_new_lists(self, policy: Policy) -> None:
        runtime = self.services.runtime
        for feed in policy.illegal.feeds:
            fetched = read_feed_state(feed).get("sha256")
            if (
                runtime is not None
                and fetched
                and fetched != policy.illegal.feed_digests.get(feed.name)
            ):
                logger.info("Illegal-tier feed %s has a new list; reloading the policy", feed.name)
                runtime.schedule_reload()
                return


def tier_families(policy: Policy | None, production: bool | None = None) -> Iterable[Metric]:
    """The tier's age and fitness, read at scrape time (never a URL or a list's name)."""
    if policy is None:
        return
    production = is_production() if production is None else production
    health = tier_health(policy.illegal, production=production)
    age = GaugeMetricFamily(
        "schoolgate_illegal_list_age_seconds",
        "Age of the oldest illegal-tier list in force (its provider's publication, else its "
        "fetch; files without a feed: their last change).",
    )
    if health.age_seconds is not None:
        age.add_metric([], health.age_seconds)
        yield age
    fit = GaugeMetricFamily(
        "schoolgate_illegal_tier_fit",
        "1 while the illegal tier is current and more than test entries; 0 while it is not "
        "(schoolgate doctor says why).",
    )
    fit.add_metric([], 1 if health.fit else 0)
    yield fit
