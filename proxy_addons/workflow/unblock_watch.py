"""Keeps the proxy's copy of the unblocks in force fresh, and records expiries.

Polling the store once a second (`refresh`, run by the gateway's services as a
`core.periodic` job every POLL_SECONDS) keeps an approval from the web app, the CLI
or another gateway sharing PostgreSQL in force within 2 s, without the request
path ever waiting on the database. Windows are checked on every decision, so an
unblock ends on time even if a poll is late or the store is unreachable.
"""

from __future__ import annotations

import logging
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
