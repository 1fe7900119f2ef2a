"""Which addresses a host name has, as the gateway's own resolver answers.

In transparent mode the kernel tells the gateway the address a client connected to; the
client's SNI or Host header only claims a name. A name stands for the address only when
the school's resolver gives that address for it (Squid's "host header forgery" check does
the same). Answers are kept for a while and added to, not replaced, so a site whose DNS
rotates through several addresses is still recognised at each of them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

Resolver = Callable[[str], Awaitable[set[str]]]


async def system_resolver(name: str) -> set[str]:
    """The addresses the system resolver gives for `name` (both families)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    return {_plain(str(info[4][0])) for info in infos}


def _plain(address: str) -> str:
    """`::ffff:10.0.0.1` -> `10.0.0.1`, a scope id dropped: one spelling per address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return str(ip)


class KnownNames:
    """A bounded cache of name -> addresses, refreshed when an address is not (yet) known."""

    def __init__(
        self,
        resolve: Resolver = system_resolver,
        keep_seconds: float = 3600.0,
        recheck_seconds: float = 30.0,
        timeout: float = 2.0,
        size: int = 20000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolve = resolve
        self.keep_seconds = keep_seconds
        self.recheck_seconds = recheck_seconds
        self.timeout = timeout
        self.size = size
        self._clock = clock
        # name -> (address -> when last given, when last asked)
        self._cache: OrderedDict[str, tuple[dict[str, float], float]] = OrderedDict()
        self._names: OrderedDict[str, dict[str, float]] = OrderedDict()  # address -> names

    def names_of(self, address: str) -> list[str]:
        """The names the resolver has lately given `address` for (from the cache)."""
        now = self._clock()
        found = self._names.get(_plain(address), {})
        return [n for n, t in found.items() if now - t < self.keep_seconds]

    def known(self, name: str, address: str) -> bool:
        """From the cache only: is `address` one of `name`'s addresses?"""
        entry = self._cache.get(name)
        if entry is None:
            return False
        seen = entry[0].get(_plain(address))
        return seen is not None and self._clock() - seen < self.keep_seconds

    async def check(self, name: str, address: str) -> bool:
        """Is `address` one of `name`'s addresses? Asks the resolver when unsure."""
        if self.known(name, address):
            return True
        entry = self._cache.get(name)
        now = self._clock()
        if entry is not None and now - entry[1] < self.recheck_seconds:
            return False  # asked a moment ago: don't let a client make the gateway ask again
        try:
            found = await asyncio.wait_for(self._resolve(name), self.timeout)
        except (OSError, TimeoutError, UnicodeError) as exc:
            logger.debug("No addresses for %s: %s", name, exc)
            found = set()
        self._remember(name, found, now)
        return self.known(name, address)

    def _remember(self, name: str, found: set[str], now: float) -> None:
        addresses = dict(self._cache[name][0]) if name in self._cache else {}
        addresses = {a: t for a, t in addresses.items() if now - t < self.keep_seconds}
        for address in found:
            addresses[_plain(address)] = now
            names = self._names.setdefault(_plain(address), {})
            names[name] = now
            self._names.move_to_end(_plain(address))
            if len(names) > 64:  # a shared address (a CDN's): the latest names only
                del names[min(names, key=names.__getitem__)]
        self._cache[name] = (addresses, now)
        self._cache.move_to_end(name)
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)
        while len(self._names) > self.size:
            self._names.popitem(last=False)
