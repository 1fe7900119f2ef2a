"""The term's device figures as Prometheus gauges, for the IT provider's dashboard.

The same counts as the governors' report (devices/term_compliance.py) over the current term
(the last one that ended between terms; the last 90 days when the policy names none).
Labels are the check's id and a fixed status word only: never a device, user or address.
Working the term out reads the term's reports, so it is done in the background at most
once every REFRESH_SECONDS and the figures are kept in between (Prometheus scrapes every
few seconds).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta

from prometheus_client.core import GaugeMetricFamily, Metric

from proxy_addons.core.policy.model import Policy
from proxy_addons.devices import term_compliance
from proxy_addons.record.device_term import DeviceFigures
from proxy_addons.record.term_report import current_term
from proxy_addons.store import Store

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 300.0
NO_TERM_DAYS = 90
STATUSES = ("compliant_all_term", "non_compliant_in_term", "not_reported")


def figures_now(store: Store, policy: Policy, now: datetime) -> DeviceFigures:
    """The figures of the term in force (or the last that ended), or the last 90 days."""
    term = current_term(policy, now.astimezone(policy.timezone).date())
    if term is not None:
        return term_compliance.for_term(store, policy, term, now)
    start = now - timedelta(days=NO_TERM_DAYS)
    return term_compliance.term_figures(store, start, now, now, policy.devices.stale_days)


def families(figures: DeviceFigures) -> list[Metric]:
    """The gauges of one set of figures ("overall" is the device as a whole)."""
    devices = GaugeMetricFamily(
        "schoolgate_device_term_devices",
        "Devices over the current term, per check (overall: every check): compliant all "
        "term, non-compliant (failing, unknown or silent) at some point, or never reported.",
        labels=["check", "status"],
    )
    days = GaugeMetricFamily(
        "schoolgate_device_term_non_compliant_days",
        "Device-days non-compliant this term so far, per check (overall: any check).",
        labels=["check"],
    )
    now = GaugeMetricFamily(
        "schoolgate_device_term_non_compliant_now",
        "Devices non-compliant now (failing, unknown, or silent past devices.stale_days), "
        "per check (overall: any check); at the end of term once it is over.",
        labels=["check"],
    )
    start = GaugeMetricFamily(
        "schoolgate_device_term_start_timestamp_seconds",
        "When the term the device_term gauges count began.",
    )
    for row in figures.rows:
        counts = (row.whole_term, row.at_some_point, row.not_reported)
        for status, count in zip(STATUSES, counts, strict=True):
            devices.add_metric([row.check, status], count)
        days.add_metric([row.check], round(row.device_days, 3))
        now.add_metric([row.check], row.now)
    start.add_metric([], figures.start.timestamp())
    return [devices, days, now, start]


class TermGauges:
    """The gauges, worked out again in the background once they are REFRESH_SECONDS old.

    Working out a big school's term can take longer than a scrape may (a device reporting
    every 15 minutes sends thousands of reports a term), so a scrape never waits for it: it
    gets the last figures, or waits up to `first_wait` seconds for the very first.
    """

    def __init__(self, refresh_seconds: float = REFRESH_SECONDS, first_wait: float = 5.0) -> None:
        self.refresh = timedelta(seconds=refresh_seconds)
        self.first_wait = first_wait
        self._lock = threading.Lock()
        self._made: datetime | None = None
        self._families: list[Metric] = []
        self._worker: threading.Thread | None = None
        self._first = threading.Event()

    def collect(self, store: Store, policy: Policy, now: datetime) -> Iterable[Metric]:
        with self._lock:
            due = self._made is None or not self._made <= now < self._made + self.refresh
            if due and self._worker is None:
                self._made = now  # not again before it is due, even if this one fails
                self._worker = threading.Thread(
                    target=self._work, args=(store, policy, now), name="term-gauges", daemon=True
                )
                self._worker.start()
        self._first.wait(self.first_wait)
        with self._lock:
            return list(self._families)

    def _work(self, store: Store, policy: Policy, now: datetime) -> None:
        try:
            made = families(figures_now(store, policy, now))
        except Exception as exc:  # the store is down: keep the last figures
            logger.warning("Metrics: cannot count devices over the term: %s", exc)
        else:
            with self._lock:
                self._families = made
        finally:
            with self._lock:
                self._worker = None
            self._first.set()

    def wait(self) -> None:
        """Until the figures being worked out are in (for tests and shutdown)."""
        with self._lock:
            worker = self._worker
        if worker is not None:
            worker.join()


__all__ = ["REFRESH_SECONDS", "STATUSES", "TermGauges", "families", "figures_now"]
