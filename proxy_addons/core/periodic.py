"""A background job that runs every so often until stopped (sweeps, reminders).

A failing run is logged and tried again at the next interval: a store that is down
for a while must not end the job.
"""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger(__name__)


class Periodic:
    """Subclasses set `interval` (seconds) and implement `tick()`."""

    interval: float
    thread_name = "periodic"
    failure = "Background job failed; trying again later"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                logger.exception(self.failure)
            self._stop.wait(self.interval)
