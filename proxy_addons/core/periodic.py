"""A background job that runs every so often until stopped (sweeps, watches, reminders).

The gateway's one way to run work in the background on a timer: its services start and
stop every job in one place (gateway/services.py). A failing run is logged and tried
again at the next interval: a store that is down for a while must not end the job.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

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


class Every(Periodic):
    """`fn()` every `interval` seconds. The first run is one interval after the start
    (the caller has just run it once, to start from fresh state) unless `at_start`."""

    def __init__(
        self,
        name: str,
        interval: float,
        fn: Callable[[], object],
        failure: str,
        *,
        at_start: bool = False,
    ) -> None:
        super().__init__()
        self.thread_name, self.interval, self.failure = name, interval, failure
        self._fn = fn
        self._at_start = at_start

    def tick(self) -> None:
        self._fn()

    def _run(self) -> None:
        if self._at_start:
            self._call()
        while not self._stop.wait(self.interval):
            self._call()

    def _call(self) -> None:
        try:
            self._fn()
        except Exception as exc:
            logger.error("%s: %s", self.failure, exc)
