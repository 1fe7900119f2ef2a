"""Damaged or lost state is never silent: the list index is checked while it serves, failed
reloads are tried again, and lost access-log records raise an alert.

What it adds to the PolicyRuntime (core/policy/runtime.py), which does the work:

- every `schoolgate_index_verify_seconds` the index in force is checked against its
  checksum, and the file under its name against its lists (its file changing in place
  or being replaced is caught at once by the runtime's watcher); a damaged one blocks
  every request until it is rebuilt;
- a reload that failed for a reason that may pass (a full disk, an unreadable file) is
  tried again every `schoolgate_reload_retry_seconds`;
- a technical alert when a damaged index is found (also one found at start-up, before
  alerting existed), and at most one every 15 minutes while access-log records are
  being lost (access_writer.AccessWriter.lost);
- the access log's losses in `status()`, so `schoolgate status` shows them.

An alert of these that cannot be stored (the store's disk is full too) is logged and
counted by alerting.py, and tried again here as often as a failed reload, until it is.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from mitmproxy import ctx
from mitmproxy.addonmanager import Loader

from proxy_addons.alerts.events import Audience, Event, local_time
from proxy_addons.core.periodic import Periodic
from proxy_addons.core.policy.model import Policy
from proxy_addons.core.policy.runtime import PolicyRuntime
from proxy_addons.gateway.services import Services
from proxy_addons.record.access_writer import AccessWriter

logger = logging.getLogger(__name__)

LIST_INDEX_DAMAGED = "list_index_damaged"
ACCESS_LOG_LOST = "access_log_lost"
TICK_SECONDS = 5.0
LOSS_ALERT_SECONDS = 900.0  # at most one lost-records alert per this many seconds


def index_damaged_event(policy: Policy | None, problem: str) -> Event:
    """A damaged list index was found: the gateway blocks until it is rebuilt (seconds,
    unless the rebuild fails too, which a policy-reload alert then says)."""
    return _technical(
        policy,
        LIST_INDEX_DAMAGED,
        "The list index was damaged: the gateway blocks until it is rebuilt",
        {
            "error": problem[:2000],
            "action": "Rebuilt automatically; `schoolgate status` says when. Check the disk "
            "(dmesg, smartctl) and that nothing else writes to the gateway's var folder.",
        },
    )


def access_log_lost_event(policy: Policy | None, lost: dict[str, int], why: str) -> Event:
    """Access-log records were lost: the record of who went where has a gap."""
    counts = ", ".join(f"{sink} {n}" for sink, n in lost.items() if n)
    return _technical(
        policy,
        ACCESS_LOG_LOST,
        "Access log records are being lost",
        {
            "lost": f"{sum(lost.values())} since the gateway started ({counts})",
            "error": why[:500],
            "action": "Free space in the gateway's var folder and check the store.",
        },
    )


def _technical(policy: Policy | None, kind: str, summary: str, fields: dict[str, str]) -> Event:
    """A severity-4 event for the IT provider, one per kind per fold window."""
    at = datetime.now(UTC)
    tz = policy.timezone if policy else ZoneInfo("UTC")
    return Event(
        kind=kind,
        severity=4,
        audience=Audience.TECHNICAL,
        summary=summary,
        fields={**fields, "time": local_time(tz, at)},
        fold_key=kind,
        at=at,
        timezone=tz.key,
    )


class _Tick(Periodic):
    interval = TICK_SECONDS
    thread_name = "schoolgate-state-health"
    failure = "Checking the gateway's state failed; trying again later"

    def __init__(self, health: StateHealth) -> None:
        super().__init__()
        self.health = health

    def tick(self) -> None:
        self.health.tick()


class StateHealth:
    """Checks the list index, retries reloads, and alerts on damaged or lost state."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.verify_seconds = 600.0
        self._runtime: PolicyRuntime | None = None
        services.add_job(_Tick(self))
        self._next_verify = 0.0
        self._unstored: list[Event] = []  # alerts the store refused, to try again
        self._retry_unstored_at = 0.0
        self._writer: AccessWriter | None = None
        self._lost_told = 0
        self._next_loss_alert = 0.0

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "schoolgate_index_verify_seconds",
            int,
            600,
            "How often (seconds) the list index in use is checked against its checksum "
            "and its lists (it is also checked when opened and whenever its file changes); "
            "0: only then.",
        )
        loader.add_option(
            "schoolgate_reload_retry_seconds",
            int,
            30,
            "How often (seconds) a policy reload that failed for a reason that may pass by "
            "itself (a full disk, an unreadable file), the status file and an alert that "
            "could not be stored are tried again.",
        )

    def configure(self, updated: set[str]) -> None:
        self.verify_seconds = max(0, ctx.options.schoolgate_index_verify_seconds)
        self._next_verify = time.monotonic() + self.verify_seconds
        runtime = self.services.runtime
        if runtime is None:
            return
        runtime.retry_seconds = max(1, ctx.options.schoolgate_reload_retry_seconds)
        if runtime is self._runtime:
            return
        self._runtime = runtime
        runtime.on_index_damaged = self._index_damaged
        runtime.status_parts["access_log"] = self._access_status
        damage = runtime.index_damage
        if runtime.index_damage_untold and damage is not None:  # found at start-up
            runtime.index_damage_untold = False
            self._index_damaged(damage["message"])

    # -- the periodic work --------------------------------------------------------------

    def tick(self) -> None:
        now = time.monotonic()
        runtime = self._runtime
        if runtime is not None and self.verify_seconds and now >= self._next_verify:
            self._next_verify = now + self.verify_seconds
            runtime.verify_index()
        if self._unstored and now >= self._retry_unstored_at:
            self._retry_unstored_at = now + (runtime.retry_seconds if runtime else 30.0)
            events, self._unstored = self._unstored, []
            for event in events:
                self._raise(event)
        self._check_losses(now)

    def _check_losses(self, now: float) -> None:
        writer = self.services.access_writer
        if writer is not self._writer:  # a new writer counts from 0
            self._writer, self._lost_told = writer, 0
        if writer is None or now < self._next_loss_alert:
            return
        lost = dict(writer.lost)
        total = sum(lost.values())
        if total <= self._lost_told:
            return
        self._lost_told = total
        self._next_loss_alert = now + LOSS_ALERT_SECONDS
        self._raise(access_log_lost_event(self._policy(), lost, writer.last_loss or ""))

    # -- alerts -------------------------------------------------------------------------

    def _index_damaged(self, problem: str) -> None:
        self._raise(index_damaged_event(self._policy(), problem))

    def _raise(self, event: Event) -> None:
        if not self.services.raise_alert(event):
            self._unstored = [e for e in self._unstored if e.kind != event.kind] + [event]

    def _policy(self) -> Policy | None:
        return self.services.policy

    def _access_status(self) -> dict[str, Any]:
        writer = self.services.access_writer
        if writer is None:
            return {"lost": {}, "last_loss": None}
        return {"lost": dict(writer.lost), "last_loss": writer.last_loss}
