"""Which devices refuse the school's CA, and for which sites.

A device without the school's CA fails every decrypted handshake, and is then decided on
host names only (policy `decryption.untrusted_clients`). But a client can also fail one
handshake on purpose, and a pinned app fails for its own site only: neither may switch off
decryption, URL logging and content scanning for everything the device does. So a refusal
is remembered for the (device, site) it happened on; the whole device counts as untrusting
only when it refused several sites and never completed a decrypted handshake. A device that
did trust the CA and starts refusing it is worth a technical alert (`on_refusal`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

# Refusals on this many different sites, with no decrypted handshake ever, make the whole
# device untrusting: a device without the CA fails on every site, so its user sees a few
# failed pages, not one per site per hour.
DEVICE_WIDE_SITES = 3
_MAX_ENTRIES = 100_000


class CaTrust:
    """Per-device, per-site memory of refused and completed decrypted handshakes."""

    def __init__(
        self,
        seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        on_refusal: Callable[[str, str], None] | None = None,
    ) -> None:
        self.seconds = seconds
        self._clock = clock
        self.on_refusal = on_refusal  # (device address, site): a trusting device refused
        self._refused: OrderedDict[tuple[str, str], float] = OrderedDict()  # -> until
        self._sites: dict[str, dict[str, float]] = {}  # device -> site -> until
        self._trusted: OrderedDict[str, float] = OrderedDict()  # device -> last completed
        self._alerted: dict[str, float] = {}  # device -> until (one alert an hour)

    def trusts(self, device: str | None, site: str) -> bool:
        """Should the gateway offer its own certificate for `site` to `device`?"""
        if not device:
            return True
        now = self._clock()
        until = self._refused.get((device, site))
        if until is not None and until > now:
            return False
        if device in self._trusted:
            return True
        sites = self._sites.get(device)
        return not sites or sum(1 for t in sites.values() if t > now) < DEVICE_WIDE_SITES

    def refused(self, device: str | None, site: str) -> None:
        """`device` failed a decrypted handshake for `site`."""
        if not device:
            return
        now = self._clock()
        until = now + self.seconds
        self._refused[(device, site)] = until
        self._refused.move_to_end((device, site))
        sites = self._sites.setdefault(device, {})
        sites[site] = until
        for gone in [s for s, t in sites.items() if t <= now]:
            del sites[gone]
        if device in self._trusted and self._alerted.get(device, 0.0) <= now:
            self._alerted[device] = until
            if self.on_refusal is not None:
                self.on_refusal(device, site)
        self._bound()

    def completed(self, device: str | None) -> None:
        """`device` completed a decrypted handshake: it has the school's CA."""
        if not device:
            return
        self._trusted[device] = self._clock()
        self._trusted.move_to_end(device)
        self._bound()

    def _bound(self) -> None:
        while len(self._refused) > _MAX_ENTRIES:
            (device, site), _ = self._refused.popitem(last=False)
            self._sites.get(device, {}).pop(site, None)
        while len(self._trusted) > _MAX_ENTRIES:
            device, _ = self._trusted.popitem(last=False)
            self._alerted.pop(device, None)
        if len(self._sites) > _MAX_ENTRIES:
            now = self._clock()
            for device in [d for d, s in self._sites.items() if max(s.values(), default=0) <= now]:
                del self._sites[device]
