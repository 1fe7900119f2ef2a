"""The browser check page's runs in progress, in this gateway process's memory.

A run is forgotten once finished and recorded, after RUN_SECONDS unfinished, or when
MAX_RUNS newer ones have started (checks/page.py serves them).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from agent.check_suite import CheckCase
from proxy_addons.checks.records import CaseResult

RUN_SECONDS = 3 * 3600  # an unfinished run is forgotten after this
MAX_RUNS = 300


@dataclass
class BrowserRun:
    token: str
    ip: str
    started_by: str
    device_type: str
    device_name: str | None
    profile: str
    user_agent: str
    suite: str
    cases: tuple[CheckCase, ...]
    started_at: datetime
    created: float
    results: dict[str, CaseResult] = field(default_factory=dict)
    run_id: int | None = None
    finishing: threading.Lock = field(default_factory=threading.Lock)  # recorded once


class BrowserRuns:
    """Runs in progress, by token (the Flask handlers run on a worker thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, BrowserRun] = {}

    def add(self, run: BrowserRun) -> None:
        with self._lock:
            now = time.monotonic()
            for token in [t for t, r in self._runs.items() if now - r.created > RUN_SECONDS]:
                del self._runs[token]
            while len(self._runs) >= MAX_RUNS:  # the oldest goes first
                del self._runs[next(iter(self._runs))]
            self._runs[run.token] = run

    def get(self, token: str) -> BrowserRun | None:
        with self._lock:
            return self._runs.get(token)
