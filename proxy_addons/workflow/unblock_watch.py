"""Keeps the proxy's copy of the unblocks in force fresh, and records expiries.

Polling the store once a second keeps an approval from the web app, the CLI or
another gateway sharing PostgreSQL in force within 2 s, without the request
path ever waiting on the database. Windows are checked on every decision, so an
unblock ends on time even if a poll is late or the store is unreachable.
"""

from __future__ import annotations

import logging
import threading
import time

from proxy_addons.core.unblocks import Unblock, scope_problem
from proxy_addons.workflow.unblocks import UnblockWorkflow

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0
EXPIRY_SWEEP_SECONDS = 30.0


class UnblockWatch:
    def __init__(self, workflow: UnblockWorkflow) -> None:
        self.workflow = workflow
        self.current: tuple[Unblock, ...] = ()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_sweep = 0.0
        self._warned: set[str] = set()  # too-broad unblocks already logged

    def refresh(self) -> None:
        """Read the unblocks in force now; record any that expired."""
        if time.monotonic() - self._last_sweep >= EXPIRY_SWEEP_SECONDS:
            self._last_sweep = time.monotonic()
            for unblock in self.workflow.expire_due():
                logger.info("Unblock %s expired (%s)", unblock.id, unblock.target)
        self.current = tuple(self.workflow.in_force())
        for unblock in self.current:
            problem = scope_problem(unblock.scope, unblock.target)
            if problem is not None and unblock.id not in self._warned:
                self._warned.add(unblock.id)  # it opens nothing (Unblock.covers); say so once
                logger.warning("Unblock %s opens nothing: %s", unblock.id, problem)

    def start(self) -> None:
        self.refresh()  # at start-up, also records expiries missed while the gateway was down
        self._thread = threading.Thread(target=self._run, name="unblock-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.refresh()
            except Exception as exc:  # keep the last list; windows still end on time
                logger.error("Could not read unblocks from the store: %s", exc)
