"""Never connect upstream to the gateway itself: its loopback, link-local or own addresses.

The filter decides on names, and a name can point anywhere: `localhost`, `127.0.0.1.nip.io`
or a pupil's own DNS name resolve to the gateway's loopback, where its metrics, admin app,
SSH and database listen for the gateway alone. An explicit proxy would connect there for
anyone, from the gateway's own address (which the admin app's "management network only"
check may trust). So every upstream connection is checked on the addresses its name
resolves to, just before mitmproxy connects: loopback, unspecified, link-local (cloud
metadata at 169.254.169.254), multicast and the gateway's own interface addresses are
refused. Private school ranges stay reachable: intranet servers live there.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time

import psutil
from mitmproxy import ctx
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy.server_hooks import ServerConnectionHookData

from proxy_addons.gateway.known_names import system_resolver

logger = logging.getLogger(__name__)

_OWN_SECONDS = 60.0  # interface addresses are read again this often


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0].strip("[]"))
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped:
        return ip.ipv4_mapped
    return ip


class UpstreamGuard:
    """Refuses upstream connections to the gateway's own or local-only addresses."""

    def __init__(self) -> None:
        self._own: frozenset[str] = frozenset()
        self._own_at = -_OWN_SECONDS
        self.allow_local = False

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "schoolgate_allow_local_upstreams",
            bool,
            False,
            "Let clients reach the gateway's own loopback and addresses through the proxy "
            "(a test lab whose web servers run on the gateway; never in a school).",
        )

    def configure(self, updated: set[str]) -> None:
        if "schoolgate_allow_local_upstreams" in updated:
            self.allow_local = ctx.options.schoolgate_allow_local_upstreams
            if self.allow_local:
                logger.warning("schoolgate_allow_local_upstreams is on: for test labs only")

    def _own_addresses(self) -> frozenset[str]:
        now = time.monotonic()
        if now - self._own_at >= _OWN_SECONDS:
            found = set()
            for addresses in psutil.net_if_addrs().values():
                for a in addresses:
                    if a.family in (socket.AF_INET, socket.AF_INET6):
                        ip = _address(a.address)
                        if ip is not None:
                            found.add(str(ip))
            self._own, self._own_at = frozenset(found), now
        return self._own

    def forbidden(self, text: str) -> bool:
        ip = _address(text)
        if ip is None:
            return False
        return (
            ip.is_loopback
            or ip.is_unspecified
            or ip.is_link_local
            or ip.is_multicast
            or str(ip) in self._own_addresses()
        )

    async def server_connect(self, data: ServerConnectionHookData) -> None:
        server = data.server
        if self.allow_local or server.address is None or server.via is not None or server.error:
            return
        host = str(server.address[0])
        addresses = {host} if _address(host) is not None else await _resolve(host)
        bad = next((a for a in addresses if self.forbidden(a)), None)
        if bad is not None:
            logger.warning(
                "Refused an upstream connection to %s (%s): the gateway itself", host, bad
            )
            server.error = f"Refused: {host} is the gateway itself or a local-only address"


async def _resolve(name: str) -> set[str]:
    """The addresses mitmproxy would connect to; none when the name doesn't resolve (then
    mitmproxy's own connect fails too)."""
    try:
        return await asyncio.wait_for(system_resolver(name), 5.0)
    except (OSError, TimeoutError, UnicodeError):
        return set()
