"""The durable alert outbox: alerts are written to the store first, then delivered.

Why a table rather than a queue in memory: a channel can be down for hours and the gateway
can restart meanwhile; an alert about a child at risk must still arrive. So:

- `enqueue` writes one row per alert per channel (a channel that is down is retried on its
  own; the others are not sent twice). A repeat of an alert (same fold key) within the fold
  window adds to the waiting row's count; if the first one has gone already, the repeats are
  gathered into one follow-up sent when the window ends. So a burst is one alert, then at most
  one per window, each with a count.
- One worker thread per channel sends what is due, most severe first, and is woken at once by
  `enqueue`, so a severity-5 alert leaves within a second or so. A failed send is retried with
  exponential backoff, for ever; after `stuck_attempts` failures a technical alert says so.
- A row is claimed with a lease before sending, so gateways sharing PostgreSQL don't both
  send it; a gateway that dies mid-send leaves a lease that simply runs out. Delivery is at
  least once: a crash between sending and recording it can repeat one message.
- Sent rows keep no content (only what folding needs) and are deleted once their fold window
  has passed.
- Messages that are not alerts (an unblock request or decision, workflow/unblocks.py) go the
  same way, ready-made and never folded (`enqueue_notification`), so a channel that is down
  when a DSL approves still hears of it; `deliver_now` tries them at once from the process
  that wrote them, and any running gateway's workers retry them.

Raisers reach this through alerts/dispatch.py; the table's rows are kept by outbox_rows.py,
the thread per channel is outbox_workers.py, and each channel is a module of alerts/notify/.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from proxy_addons.alerts import outbox_rows
from proxy_addons.alerts.events import OUTBOX_STUCK, Event, outbox_stuck_event
from proxy_addons.alerts.notify.base import BaseChannel, Notification, NotifyError
from proxy_addons.alerts.notify.from_policy import CHANNELS
from proxy_addons.alerts.outbox_rows import fold_hash
from proxy_addons.alerts.outbox_workers import DeliveryThreads
from proxy_addons.alerts.routing import Route
from proxy_addons.alerts.wording import note_to_json
from proxy_addons.record import metrics
from proxy_addons.store import Store

logger = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 30.0  # also picks up rows another gateway enqueued
BATCH = 20
PURGE_EVERY = timedelta(minutes=10)


class AlertOutbox:
    """Store-backed alert queue with folding, per-channel workers, retries and backoff."""

    def __init__(
        self,
        store: Store,
        *,
        backoff_seconds: float = 5.0,
        backoff_max_seconds: float = 900.0,
        lease_seconds: float = 120.0,
        stuck_attempts: int = 6,
        on_stuck: Callable[[Event], None] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.backoff = backoff_seconds
        self.backoff_max = backoff_max_seconds
        self.lease = timedelta(seconds=lease_seconds)
        self.stuck_attempts = stuck_attempts
        self.on_stuck = on_stuck
        self.clock = clock or (lambda: datetime.now(UTC))
        self.channels: Mapping[str, BaseChannel] = {}  # set from the policy (dispatch.py)
        self.workers = DeliveryThreads(self.deliver_round, CHANNELS)
        self._last_purge = self.clock()

    # -- writing ---------------------------------------------------------------------------

    def enqueue(self, event: Event, routes: Sequence[Route], fold_minutes: int) -> list[int]:
        """Store `event` for each route (folding repeats); returns the rows written or bumped."""
        if not routes:
            return []
        now = self.clock()
        key = fold_hash(event.fold_key)
        fold = timedelta(minutes=fold_minutes)
        with self.store.begin() as conn:
            ids = [outbox_rows.add_alert(conn, event, r, key, fold, now) for r in routes]
        for route in routes:
            self.wake(route.channel)
        for channel in {r.channel for r in routes}:
            self._report_queued(channel)
        return ids

    def enqueue_notification(
        self,
        note: Notification,
        routes: Sequence[Route],
        *,
        conn: sa.Connection | None = None,
        severity: int = 3,
        audience: str = "safeguarding",
    ) -> list[int]:
        """Store a ready-made message for each route, never folded (each one is news);
        in the caller's transaction when `conn` is given. Returns the rows written."""
        if conn is None:
            with self.store.begin() as own:
                return self.enqueue_notification(
                    note, routes, conn=own, severity=severity, audience=audience
                )
        now = self.clock()
        key = fold_hash(f"{note.kind}|{secrets.token_hex(16)}")  # folds with nothing
        content = (note.kind[:40], severity, audience, {"notification": note_to_json(note)})
        ids = [outbox_rows.insert(conn, route, key, content, now, now, now) for route in routes]
        for route in routes:
            self.wake(route.channel)
        return ids

    # -- delivering ------------------------------------------------------------------------

    def deliver_due(self, channel: str) -> int:
        """Send what is due on `channel` now; returns how many were delivered."""
        delivered = 0
        for row_id in outbox_rows.due_ids(self.store, channel, self.clock(), BATCH):
            if self.workers.stopping:
                break
            if self._claim_and_send(row_id):
                delivered += 1
        return delivered

    def deliver_now(self, ids: Iterable[int]) -> int:
        """Try these rows once, now (their writer wants them out at once); one that fails
        stays pending, with backoff, for the workers of any process running the outbox."""
        return sum(1 for row_id in ids if self._claim_and_send(row_id))

    def deliver_round(self, channel: str) -> float:
        """One round of a channel's delivery job: send what is due, count what waits (and,
        on the first channel, purge now and then); returns the seconds until the next is due.
        A Periodic may run it as its tick; `start` runs it in a thread per channel, woken at
        once by `enqueue`."""
        try:
            self.deliver_due(channel)
            self._report_queued(channel)
            if channel == CHANNELS[0] and self.clock() - self._last_purge > PURGE_EVERY:
                self._last_purge = self.clock()
                self.purge()
            due = outbox_rows.next_due(self.store, channel)
        except Exception as exc:  # the store is unreachable: try again shortly
            logger.error("Alert outbox (%s): %s", channel, exc)
            due = self.clock() + timedelta(seconds=5)
        if due is None:
            return IDLE_POLL_SECONDS
        return min(IDLE_POLL_SECONDS, max(0.0, (due - self.clock()).total_seconds()))

    def _claim_and_send(self, row_id: int) -> bool:
        row = outbox_rows.claim(self.store, row_id, self.clock(), self.lease)
        return row is not None and self._send(row)

    def _send(self, row: Any) -> bool:
        channel = self.channels.get(row.channel)
        try:
            if channel is None:
                raise NotifyError(f"{row.channel}: channel is not configured")
            channel.send(outbox_rows.message(row))
        except Exception as exc:
            if not isinstance(exc, NotifyError):
                logger.exception(
                    "Alert %d (%s) via %s: unexpected error", row.id, row.kind, row.channel
                )
            self._failed(row, str(exc))
            return False
        outbox_rows.mark_sent(self.store, row.id, self.clock())
        metrics.alert_sent(row.channel)
        logger.info(
            "Alert %d (%s, severity %d, x%d) sent via %s",
            row.id,
            row.kind,
            row.severity,
            row.occurrences,
            row.channel,
        )
        return True

    def _failed(self, row: Any, error: str) -> None:
        attempts = row.attempts + 1
        delay = min(self.backoff_max, self.backoff * 2 ** (attempts - 1))
        retry_at = self.clock() + timedelta(seconds=delay)
        outbox_rows.mark_failed(self.store, row.id, attempts, retry_at, error)
        metrics.alert_failed(row.channel)
        logger.warning(
            "Alert %d (%s) not sent via %s (attempt %d); retrying in %.1f s: %s",
            row.id,
            row.kind,
            row.channel,
            attempts,
            delay,
            error,
        )
        if attempts == self.stuck_attempts and row.kind != OUTBOX_STUCK and self.on_stuck:
            waiting = self.pending(row.channel)
            timezone = (row.event or {}).get("timezone", "UTC")
            try:
                self.on_stuck(
                    outbox_stuck_event(row.channel, waiting, row.first_at, error, timezone)
                )
            except Exception:
                logger.exception("Could not raise the outbox-stuck alert for %s", row.channel)

    # -- looking and housekeeping ------------------------------------------------------------

    def pending(self, channel: str | None = None) -> int:
        return outbox_rows.pending(self.store, channel)

    def _report_queued(self, channel: str) -> None:
        try:
            metrics.set_alerts_queued(channel, self.pending(channel))
        except Exception as exc:  # metrics must never stop delivery
            logger.debug("Could not count queued alerts for %s: %s", channel, exc)

    def recover(self) -> int:
        """At start-up: alerts that failed before the restart are retried at once."""
        retried = outbox_rows.retry_failed_now(self.store, self.clock())
        waiting = self.pending()
        if waiting:
            logger.info("Alert outbox: %d alert(s) waiting from before the restart", waiting)
        return retried

    def purge(self) -> int:
        """Delete sent rows whose fold window is over (they have no content left anyway)."""
        return outbox_rows.purge(self.store, self.clock())

    # -- worker threads (outbox_workers.py) ----------------------------------------------------

    def wake(self, channel: str) -> None:
        self.workers.wake(channel)

    def start(self, channels: Iterable[str] = CHANNELS) -> None:
        """Recover and purge, then a delivery thread per channel."""
        self.recover()
        self.purge()
        self.workers.start(channels)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the workers; whatever is unsent stays in the store for the next start."""
        self.workers.stop(timeout)
