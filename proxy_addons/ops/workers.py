"""Several gateway processes on one listening port, so a multi-core Pi uses its cores.

mitmproxy runs one event loop on one core. `schoolgate run --workers N` starts N
worker processes that each bind the same address with SO_REUSEPORT: the kernel
spreads new connections across them, and stops sending any to a worker the moment
its socket closes, so a crashed worker costs only the connections it held. The
supervisor restarts it. Workers share state through the store (unblocks, the alert
outbox with its leases, devices, the access log) and the list index files.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RESTART_DELAY_MIN = 0.5  # first restart of a crashed worker, seconds
RESTART_DELAY_MAX = 30.0  # crash loops back off to this
HEALTHY_AFTER = 60.0  # a worker that lived this long resets its back-off
STOP_GRACE = 10.0  # SIGTERM, then SIGKILL after this many seconds


def enable_reuse_port() -> None:
    """Make this process's asyncio listening sockets SO_REUSEPORT.

    mitmproxy binds its proxy port with `asyncio.start_server(handler, host, port)` and
    has no option for it; a worker process sets the default before mitmproxy listens.
    """
    if getattr(asyncio.start_server, "_schoolgate_reuse_port", False):
        return
    patched: Any = functools.partial(asyncio.start_server, reuse_port=True)
    patched._schoolgate_reuse_port = True
    asyncio.start_server = patched


def metrics_port_for(worker: int, base: int) -> int:
    """Each worker serves its own /metrics (Prometheus sums them); 0 stays off."""
    return base + worker if base else 0


@dataclass
class Worker:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    delay: float = RESTART_DELAY_MIN
    restart_at: float | None = None


@dataclass
class Supervisor:
    """Starts `count` workers from `command(index)` and keeps them running until stopped."""

    command: Callable[[int], Sequence[str]]
    count: int
    state_file: Path | None = None
    poll_seconds: float = 0.2
    clock: Callable[[], float] = time.monotonic
    workers: list[Worker] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        if self.count < 1:
            raise ValueError("workers must be at least 1")
        self.workers = [Worker(i) for i in range(self.count)]
        for worker in self.workers:
            self._spawn(worker)
        self._write_state()

    def _spawn(self, worker: Worker) -> None:
        worker.process = subprocess.Popen(list(self.command(worker.index)))
        worker.started_at = self.clock()
        worker.restart_at = None
        logger.info("worker %d started (pid %d)", worker.index, worker.process.pid)

    def check(self) -> None:
        """Restart workers that died, with a back-off for ones that keep dying."""
        now = self.clock()
        changed = False
        for worker in self.workers:
            proc = worker.process
            if worker.restart_at is not None:
                if now >= worker.restart_at:
                    worker.restarts += 1
                    self._spawn(worker)
                    changed = True
                continue
            if proc is None or proc.poll() is None:
                continue
            lived = now - worker.started_at
            first_or_healthy = worker.restarts == 0 or lived >= HEALTHY_AFTER
            worker.delay = (
                RESTART_DELAY_MIN if first_or_healthy else min(RESTART_DELAY_MAX, worker.delay * 2)
            )
            logger.error(
                "worker %d (pid %d) exited with %s after %.1f s; restarting in %.1f s",
                worker.index,
                proc.pid,
                proc.returncode,
                lived,
                worker.delay,
            )
            worker.restart_at = now + worker.delay
        if changed:
            self._write_state()

    def run(self) -> int:
        self.start()
        while not self._stop.wait(self.poll_seconds):
            self.check()
        return self.shutdown()

    def stop(self, *_: object) -> None:
        self._stop.set()

    def shutdown(self) -> int:
        live = [w.process for w in self.workers if w.process and w.process.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for proc in live:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.error("worker pid %d did not stop in %.0f s: killed", proc.pid, STOP_GRACE)
                proc.kill()
                proc.wait()
        if self.state_file is not None:
            self.state_file.unlink(missing_ok=True)
        return 0

    def pids(self) -> dict[int, int]:
        return {w.index: w.process.pid for w in self.workers if w.process is not None}

    def _write_state(self) -> None:
        if self.state_file is None:
            return
        state = {
            "supervisor": os.getpid(),
            "workers": [
                {
                    "index": w.index,
                    "pid": w.process.pid if w.process else None,
                    "restarts": w.restarts,
                }
                for w in self.workers
            ],
        }
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, self.state_file)


def read_state(state_file: Path) -> dict[str, Any] | None:
    """The running supervisor's workers, for `schoolgate status`."""
    try:
        state: dict[str, Any] = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return None
    return state
