"""Who may reach the gateway: its client networks for the proxy, its management network
for the admin app. Never an open proxy, even when the firewall is missing or wrong.

Pure: the add-on (client_access.py) and the admin app's middleware call in here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from proxy_addons.core.policy.model import IPNetwork

# The device API must stay open to the school's devices (the firewall keeps it to them).
DEVICE_API_PREFIX = "/api/"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def client_address(ip: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A peer's address as the socket gave it (zone index and IPv4-mapped form undone);
    None when missing or unparseable."""
    if not ip:
        return None
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped:  # a dual-stack socket's view of IPv4
        return addr.ipv4_mapped
    return addr


def address_in(networks: Iterable[IPNetwork], ip: str | None) -> bool:
    """Whether `ip` is in one of `networks`; the gateway's own loopback always is.

    Unparseable or missing addresses are not (the gateway never falls open).
    """
    addr = client_address(ip)
    if addr is None:
        return False
    if addr.is_loopback:
        return True
    return any(addr in net for net in networks)


def management_only(app: WSGIApp, networks: Callable[[], Iterable[IPNetwork]]) -> WSGIApp:
    """WSGI middleware: the admin pages answer only `networks` (the management and staff ones).

    The device API (`/api/`) is left to the firewall: the agents report from client networks.
    """

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO") or "/")
        if path.startswith(DEVICE_API_PREFIX) or address_in(networks(), environ.get("REMOTE_ADDR")):
            return app(environ, start_response)
        body = (
            b"The Schoolgate admin app is only available from the school's staff and "
            b"management networks.\n"
        )
        start_response(
            "403 Forbidden",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return guarded
