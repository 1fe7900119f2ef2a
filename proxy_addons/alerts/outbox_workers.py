"""The outbox's delivery threads: one per channel, each running the outbox's delivery
round, sleeping until the next row is due and woken at once when one is enqueued (so a
severity-5 alert leaves within a second or so). Stopping leaves whatever is unsent in the
store for the next start.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence


class DeliveryThreads:
    """A thread per channel calling `deliver_round(channel)`, which returns the seconds to
    wait before the next round unless `wake(channel)` comes first."""

    def __init__(self, deliver_round: Callable[[str], float], channels: Sequence[str]) -> None:
        self.deliver_round = deliver_round
        self._wake = {channel: threading.Event() for channel in channels}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def stopping(self) -> bool:
        """Set by `stop`: a round in progress should end early."""
        return self._stop.is_set()

    def wake(self, channel: str) -> None:
        wake = self._wake.get(channel)
        if wake is not None:
            wake.set()

    def start(self, channels: Iterable[str]) -> None:
        self._stop.clear()
        for channel in channels:
            thread = threading.Thread(
                target=self._run, args=(channel,), name=f"alerts-{channel}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        for wake in self._wake.values():
            wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def _run(self, channel: str) -> None:
        wake = self._wake[channel]
        while not self._stop.is_set():
            wake.clear()
            wake.wait(self.deliver_round(channel))
