"""One background thread fed by a queue: work handed off the proxy's event loop, cheaply.

A `ThreadPoolExecutor` makes a Future, a work item and a locked queue entry, and checks
its thread count, for every task: about ten times what a `queue.SimpleQueue` put costs.
The gateway hands work off for every page, and nobody waits on the result, so this keeps
only what the add-ons use: submit, and close (finishing or dropping what is queued).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

_STOP = object()


class Worker:
    """Runs submitted calls in order on one daemon thread, started on first use."""

    def __init__(self, name: str, *, pace: float = 0.0) -> None:
        self.name = name
        # After a run of work, rest this long (seconds) before taking more: work handed off
        # per request then wakes the thread a few times a second, not once per request, and
        # the proxy's thread isn't made to give up the GIL to it hundreds of times a second.
        self.pace = pace
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._drop = False

    def submit(self, fn: Callable[..., object], *args: Any) -> bool:
        """Queue `fn(*args)`; False (nothing queued) once the worker is closed."""
        if self._closed:
            return False
        if self._thread is None:
            self._start()
        self._queue.put((fn, args))
        return True

    def close(self, *, wait: bool, drop_pending: bool = False) -> None:
        """Take no more work; finish what is queued (or drop it), joining the thread if `wait`."""
        with self._lock:
            self._closed = True
            self._drop = drop_pending
            thread = self._thread
        if thread is None:
            return
        self._queue.put(_STOP)
        if wait:
            thread.join()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            while True:  # everything queued, then rest
                if item is _STOP:
                    return
                if not self._drop:
                    fn, args = item
                    try:
                        fn(*args)
                    except Exception:
                        logger.exception("%s: background task failed", self.name)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if self.pace and not self._closed:
                time.sleep(self.pace)
