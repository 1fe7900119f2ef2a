"""The access log's writer: a queue and one thread, so the proxy never waits on a disk or a
database. The thread appends JSON lines (with size-based rotation, like
`logging.handlers.RotatingFileHandler`), writes the store in batches, and purges what is
older than the retention period.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path

from proxy_addons.record import metrics
from proxy_addons.record.access_files import JsonLines
from proxy_addons.record.access_records import AccessRecord
from proxy_addons.record.access_store import purge, write_rows
from proxy_addons.store import Store

logger = logging.getLogger(__name__)

PURGE_SECONDS = 3600.0
MAX_PENDING_ROWS = 100_000  # rows kept for a store that is down, before the oldest go
LOSS_LOG_SECONDS = 60.0  # lost records are logged at most this often (counted always)

_STOP = object()


class AccessWriter:
    """Writes records off the proxy's event loop: JSON lines at once, the store in batches.

    `submit` never blocks: if the thread falls `queue_size` records behind (a
    disk or database that has stopped), new records are dropped rather than slowing
    down every page at school. Every record lost anywhere is counted in `lost` (by
    sink: the queue, the JSON file, the store), in the metrics, and logged at most once
    a minute; state_health.py raises an alert from `lost`.
    """

    def __init__(
        self,
        json_path: Path | None,
        store: Store | None,
        retention_days: Callable[[], int | None],
        *,
        max_bytes: int = 50_000_000,
        backups: int = 20,
        flush_seconds: float = 2.0,
        pace_seconds: float = 0.05,
        batch_size: int = 500,
        purge_seconds: float = PURGE_SECONDS,
        queue_size: int = 100_000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        timezone: Callable[[], tzinfo] = lambda: UTC,
    ) -> None:
        self.json_path = json_path
        self.timezone = timezone  # the school's: the purge totals its days first
        self.store = store
        self.retention_days = retention_days
        self.max_bytes = max_bytes
        self.backups = backups
        self.flush_seconds = flush_seconds
        # Rest between runs of records: the thread wakes a few times a second, not once per
        # request, so the proxy's thread isn't made to hand it the GIL for every page.
        self.pace_seconds = pace_seconds
        self.batch_size = batch_size
        self.purge_seconds = purge_seconds
        self.clock = clock
        self.lost = dict.fromkeys(metrics.ACCESS_LOG_SINKS, 0)  # records lost, by sink
        self.last_loss: str | None = None  # why the newest were lost
        self._loss_logged_at = -LOSS_LOG_SECONDS
        # A SimpleQueue (a C deque) takes a record in a fraction of a Queue's locked put;
        # the bound is checked against its size (racing submitters may pass it by a record).
        self.queue_size = queue_size
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._pending: list[AccessRecord] = []
        self._file: JsonLines | None = None
        self._thread = threading.Thread(target=self._run, name="schoolgate-access-log", daemon=True)
        self._store_failing = False

    def start(self) -> None:
        if self.json_path is not None:
            self._file = JsonLines(self.json_path, self.max_bytes, self.backups)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Records lost before reaching either the file or the store."""
        return self.lost["queue"]

    def submit(self, record: AccessRecord) -> None:
        if self._queue.qsize() < self.queue_size:
            self._queue.put(record)
        else:
            self._lost("queue", 1, "the writer is behind (a disk or the store has stopped)")

    def _lost(self, sink: str, n: int, why: str) -> None:
        """Count `n` records that did not reach `sink`; log it at most once a minute."""
        self.lost[sink] += n
        self.last_loss = f"{sink}: {why}"
        metrics.access_log_dropped(sink, n)
        now = time.monotonic()
        if now - self._loss_logged_at >= LOSS_LOG_SECONDS:
            self._loss_logged_at = now
            logger.error(
                "access log: records lost (queue %d, file %d, store %d so far); newest: %s",
                self.lost["queue"],
                self.lost["file"],
                self.lost["store"],
                self.last_loss,
            )

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread."""
        if not self._thread.is_alive():
            return
        self._queue.put(_STOP)  # never blocks: the stop mark goes in even when the queue is full
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error("access log: could not stop the writer cleanly")

    def _run(self) -> None:
        next_flush = time.monotonic() + self.flush_seconds
        next_purge = time.monotonic()  # purge at start
        stopping = False
        while not stopping:
            wait = max(0.0, min(next_flush, next_purge) - time.monotonic())
            stopping = self._drain(wait)
            now = time.monotonic()
            if stopping or len(self._pending) >= self.batch_size or now >= next_flush:
                self._flush_store()
                next_flush = now + self.flush_seconds
            if now >= next_purge and not stopping:
                self._purge()
                next_purge = now + self.purge_seconds
            if self.pace_seconds and not stopping:
                time.sleep(self.pace_seconds)
        if self._file is not None:
            self._file_lost(self._file.close())

    def _drain(self, wait: float) -> bool:
        """Take what is queued (waiting up to `wait` for the first); True on the stop mark."""
        try:
            item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
        except queue.Empty:
            return False
        stop = False
        while True:
            if item is _STOP:
                stop = True
            elif isinstance(item, AccessRecord):
                self._write_json(item)
                if self.store is not None:
                    self._pending.append(item)
            if len(self._pending) >= self.batch_size:
                break
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
        if self._file is not None:
            self._file_lost(self._file.flush())
        return stop

    def _write_json(self, record: AccessRecord) -> None:
        if self._file is None:
            return
        try:
            self._file_lost(self._file.write(record))
        except Exception as exc:  # one bad record never stops the writer
            self._lost("file", 1, f"a record could not be written: {exc}")

    def _file_lost(self, n: int) -> None:
        if n and self._file is not None:
            error = self._file.error
            why = error.strerror or str(error) if error is not None else "not written"
            self._lost("file", n, f"cannot write {self.json_path}: {why}")

    def _flush_store(self) -> None:
        if self.store is None or not self._pending:
            return
        try:
            write_rows(self.store, self._pending)
        except Exception as exc:
            if not self._store_failing:
                logger.error("access log: cannot write the store (will retry): %s", exc)
            self._store_failing = True
            if len(self._pending) > MAX_PENDING_ROWS:
                lost = len(self._pending) - MAX_PENDING_ROWS
                del self._pending[:lost]
                self._lost("store", lost, f"the store is down ({exc}); kept in JSON only")
            return
        if self._store_failing:
            logger.info("access log: writing the store again")
        self._store_failing = False
        self._pending.clear()

    def _purge(self) -> None:
        days = self.retention_days()
        if not days:
            return
        now = self.clock()
        try:
            purge(self.store, self.json_path, days, now, timezone=self.timezone())
            if self._file is not None:
                self._file.drop_if_older(now - timedelta(days=days))
        except Exception as exc:
            logger.error("access log: purge failed (will retry): %s", exc)
