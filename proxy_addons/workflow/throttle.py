"""Counting failed guesses (passwords, the enrolment secret) so they can be slowed down.

Failures are counted per key in a sliding window, in memory (the web app and the device API
are one process). The key for a client is its address as a guesser controls it: an IPv4
address, but an IPv6 client's whole /64, since a host given a /64 (SLAAC, privacy addresses)
can use any address in it; fd00::1, fd00::2, ... are one guesser. An IPv4-mapped IPv6 address
(::ffff:10.0.0.5) is its IPv4 address, never one key for every IPv4 client.

Memory is bounded: at most `max_keys` keys are kept per counter, the stalest dropped first.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

IPV6_PREFIX = 64
MAX_KEYS = 10_000


def address_key(address: str | None) -> str:
    """What to count a client's failures under: its IPv4 address or its IPv6 /64; anything
    that is not an address (a relay sent none) is counted as it is."""
    text = (address or "").strip()
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 zone is not the host
    except ValueError:
        return text or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


class FailureCounter:
    """Failures per key within `window` seconds; a key with `limit` of them is held back
    until the oldest ages out."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        self._failures: OrderedDict[Hashable, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: Hashable, now: float) -> list[float]:
        times = [t for t in self._failures.get(key, ()) if now - t < self.window]
        if not times:
            self._failures.pop(key, None)
        return times

    def blocked(self, key: Hashable) -> bool:
        with self._lock:
            return len(self._recent(key, self.clock())) >= self.limit

    def failed(self, key: Hashable) -> None:
        with self._lock:
            now = self.clock()
            self._failures[key] = [*self._recent(key, now), now][-self.limit :]
            self._failures.move_to_end(key)
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)  # the key whose last failure is oldest

    def succeeded(self, key: Hashable) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._failures)


__all__ = ["IPV6_PREFIX", "MAX_KEYS", "FailureCounter", "address_key"]
