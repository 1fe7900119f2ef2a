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
- Messages that are not alerts (an unblock request or decision, unblock_workflow.py) go the
  same way, ready-made and never folded (`enqueue_notification`), so a channel that is down
  when a DSL approves still hears of it; `deliver_now` tries them at once from the process
  that wrote them, and any running gateway's workers retry them.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from proxy_addons.alerts.events import OUTBOX_STUCK, Event, outbox_stuck_event
from proxy_addons.alerts.notify.base import BaseChannel, Notification, NotifyError
from proxy_addons.alerts.notify.from_policy import CHANNELS
from proxy_addons.alerts.routing import Route
from proxy_addons.alerts.wording import note_from_json, note_to_json, notification_for
from proxy_addons.record import metrics
from proxy_addons.store import Store
from proxy_addons.store.schema import alert_outbox

logger = logging.getLogger(__name__)

PENDING, SENT = "pending", "sent"
IDLE_POLL_SECONDS = 30.0  # also picks up rows another gateway enqueued
BATCH = 20
PURGE_EVERY = timedelta(minutes=10)


def fold_hash(fold_key: str) -> str:
    """Fold keys name people; the table keeps only their hash."""
    return hashlib.sha256(fold_key.encode()).hexdigest()


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
        self._wake = {channel: threading.Event() for channel in CHANNELS}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_purge = self.clock()

    # -- writing ---------------------------------------------------------------------------

    def enqueue(self, event: Event, routes: Sequence[Route], fold_minutes: int) -> list[int]:
        """Store `event` for each route (folding repeats); returns the rows written or bumped."""
        if not routes:
            return []
        now = self.clock()
        key = fold_hash(event.fold_key)
        fold = timedelta(minutes=fold_minutes)
        ids: list[int] = []
        with self.store.begin() as conn:
            for route in routes:
                ids.append(self._enqueue_one(conn, event, route, key, fold, now))
        for route in routes:
            self.wake(route.channel)
        for channel in {r.channel for r in routes}:
            self._report_queued(channel)
        return ids

    def _enqueue_one(
        self,
        conn: sa.Connection,
        event: Event,
        route: Route,
        key: str,
        fold: timedelta,
        now: datetime,
    ) -> int:
        t = alert_outbox.c
        latest = None
        if fold:
            latest = conn.execute(
                sa.select(t.id, t.status, t.lease_until, t.fold_until, t.severity)
                .where(t.fold_key == key, t.channel == route.channel, t.fold_until > now)
                .order_by(t.id.desc())
                .limit(1)
                .with_for_update()
            ).first()
        if latest is not None and latest.status == PENDING and not _leased(latest, now):
            conn.execute(
                alert_outbox.update()
                .where(t.id == latest.id)
                .values(
                    occurrences=t.occurrences + 1,
                    last_at=now,
                    severity=max(latest.severity, event.severity),
                )
            )
            return int(latest.id)
        if latest is None:  # the first in its window: send now
            due, fold_until = now, now + fold
        else:  # the last one is sent or being sent: gather repeats until its window ends
            due, fold_until = latest.fold_until, latest.fold_until + fold
        content = (event.kind, event.severity, event.audience.value, event.to_json())
        return _insert(conn, route, key, content, now, due, fold_until)

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
        ids = [_insert(conn, route, key, content, now, now, now) for route in routes]
        for route in routes:
            self.wake(route.channel)
        return ids

    # -- delivering ------------------------------------------------------------------------

    def deliver_due(self, channel: str) -> int:
        """Send what is due on `channel` now; returns how many were delivered."""
        now = self.clock()
        t = alert_outbox.c
        with self.store.connect() as conn:
            ids = conn.scalars(
                sa.select(t.id)
                .where(
                    t.status == PENDING,
                    t.channel == channel,
                    t.next_attempt_at <= now,
                    sa.or_(t.lease_until.is_(None), t.lease_until <= now),
                )
                .order_by(t.severity.desc(), t.id)
                .limit(BATCH)
            ).all()
        delivered = 0
        for row_id in ids:
            if self._stop.is_set():
                break
            row = self._claim(row_id)
            if row is not None and self._send(row):
                delivered += 1
        return delivered

    def deliver_now(self, ids: Iterable[int]) -> int:
        """Try these rows once, now (their writer wants them out at once); one that fails
        stays pending, with backoff, for the workers of any process running the outbox."""
        delivered = 0
        for row_id in ids:
            row = self._claim(row_id)
            if row is not None and self._send(row):
                delivered += 1
        return delivered

    def _claim(self, row_id: int) -> Any:
        now = self.clock()
        t = alert_outbox.c
        with self.store.begin() as conn:
            claimed = conn.execute(
                alert_outbox.update()
                .where(
                    t.id == row_id,
                    t.status == PENDING,
                    t.next_attempt_at <= now,  # a fold's follow-up waits for its window
                    sa.or_(t.lease_until.is_(None), t.lease_until <= now),
                )
                .values(lease_until=now + self.lease)
            ).rowcount
            if claimed != 1:
                return None  # another worker (or gateway) has it
            return conn.execute(sa.select(alert_outbox).where(t.id == row_id)).one()

    def _send(self, row: Any) -> bool:
        channel = self.channels.get(row.channel)
        try:
            if channel is None:
                raise NotifyError(f"{row.channel}: channel is not configured")
            channel.send(_message(row))
        except Exception as exc:
            if not isinstance(exc, NotifyError):
                logger.exception(
                    "Alert %d (%s) via %s: unexpected error", row.id, row.kind, row.channel
                )
            self._failed(row, str(exc))
            return False
        with self.store.begin() as conn:
            conn.execute(
                alert_outbox.update()
                .where(alert_outbox.c.id == row.id)
                .values(
                    status=SENT, sent_at=self.clock(), lease_until=None, last_error=None, event={}
                )
            )
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
        now = self.clock()
        with self.store.begin() as conn:
            conn.execute(
                alert_outbox.update()
                .where(alert_outbox.c.id == row.id)
                .values(
                    attempts=attempts,
                    next_attempt_at=now + timedelta(seconds=delay),
                    lease_until=None,
                    last_error=error[:1000],
                )
            )
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

    # -- looking -----------------------------------------------------------------------------

    def pending(self, channel: str | None = None) -> int:
        t = alert_outbox.c
        query = sa.select(sa.func.count()).select_from(alert_outbox).where(t.status == PENDING)
        if channel is not None:
            query = query.where(t.channel == channel)
        with self.store.connect() as conn:
            return int(conn.scalar(query) or 0)

    def _next_due(self, channel: str) -> datetime | None:
        t = alert_outbox.c
        with self.store.connect() as conn:
            due: datetime | None = conn.scalar(
                sa.select(sa.func.min(t.next_attempt_at)).where(
                    t.status == PENDING, t.channel == channel
                )
            )
        return due

    def _report_queued(self, channel: str) -> None:
        try:
            metrics.set_alerts_queued(channel, self.pending(channel))
        except Exception as exc:  # metrics must never stop delivery
            logger.debug("Could not count queued alerts for %s: %s", channel, exc)

    # -- housekeeping ------------------------------------------------------------------------

    def recover(self) -> int:
        """At start-up: alerts that failed before the restart are retried at once."""
        now = self.clock()
        t = alert_outbox.c
        with self.store.begin() as conn:
            retried = conn.execute(
                alert_outbox.update()
                .where(t.status == PENDING, t.attempts > 0, t.next_attempt_at > now)
                .values(next_attempt_at=now)
            ).rowcount
        waiting = self.pending()
        if waiting:
            logger.info("Alert outbox: %d alert(s) waiting from before the restart", waiting)
        return int(retried)

    def purge(self) -> int:
        """Delete sent rows whose fold window is over (they have no content left anyway)."""
        t = alert_outbox.c
        with self.store.begin() as conn:
            return int(
                conn.execute(
                    alert_outbox.delete().where(t.status == SENT, t.fold_until < self.clock())
                ).rowcount
            )

    # -- worker threads ----------------------------------------------------------------------

    def wake(self, channel: str) -> None:
        wake = self._wake.get(channel)
        if wake is not None:
            wake.set()

    def start(self, channels: Iterable[str] = CHANNELS) -> None:
        self.recover()
        self.purge()
        self._stop.clear()
        for channel in channels:
            thread = threading.Thread(
                target=self._run, args=(channel,), name=f"alerts-{channel}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the workers; whatever is unsent stays in the store for the next start."""
        self._stop.set()
        for wake in self._wake.values():
            wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

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
            due = self._next_due(channel)
        except Exception as exc:  # the store is unreachable: try again shortly
            logger.error("Alert outbox (%s): %s", channel, exc)
            due = self.clock() + timedelta(seconds=5)
        if due is None:
            return IDLE_POLL_SECONDS
        return min(IDLE_POLL_SECONDS, max(0.0, (due - self.clock()).total_seconds()))

    def _run(self, channel: str) -> None:
        wake = self._wake[channel]
        while not self._stop.is_set():
            wake.clear()
            wake.wait(self.deliver_round(channel))


def _leased(row: Any, now: datetime) -> bool:
    return row.lease_until is not None and row.lease_until > now


def _insert(
    conn: sa.Connection,
    route: Route,
    key: str,
    content: tuple[str, int, str, dict[str, Any]],  # kind, severity, audience, event
    now: datetime,
    due: datetime,
    fold_until: datetime,
) -> int:
    kind, severity, audience, event = content
    result = conn.execute(
        alert_outbox.insert().values(
            channel=route.channel,
            fold_key=key,
            kind=kind,
            severity=severity,
            audience=audience,
            event=event,
            recipients=list(route.recipients),
            occurrences=1,
            first_at=now,
            last_at=now,
            fold_until=fold_until,
            status=PENDING,
            attempts=0,
            next_attempt_at=due,
        )
    )
    assert result.inserted_primary_key is not None
    return int(result.inserted_primary_key[0])


def _message(row: Any) -> Notification:
    """What a row says: a stored message as it was written, or its (folded) alert rendered."""
    stored = row.event.get("notification")
    if stored is not None:
        return note_from_json(stored, tuple(row.recipients))
    return notification_for(
        Event.from_json(row.event),
        occurrences=row.occurrences,
        first_at=row.first_at,
        last_at=row.last_at,
        recipients=row.recipients,
    )
