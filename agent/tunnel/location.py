"""Where am I: on the school network, or not. Decided without trusting any name.

A network a pupil controls can answer any DNS name, hand out any DHCP option and copy any
Wi-Fi name, so none of those say "school". What it cannot do is complete a TLS handshake
as the gateway under the CA pinned at enrolment. So: the device is on site when a pinned
TLS handshake with the gateway's device API, at the enrolment URL, succeeds over the
physical network. Any failure (no answer, refused, wrong certificate) means off site.

The probe must not go through the tunnel, or a device at home with its tunnel up would
reach the gateway and think it was at school:
- Linux: the socket carries SO_MARK = the tunnel's fwmark; wg-quick's policy routing
  sends marked packets by the main table, round the tunnel (needs root, as the agent is).
- macOS: IP_BOUND_IF ties the socket to the default route's physical interface.
- Windows: no way round the WireGuard app's tunnel and kill switch, so with the tunnel
  up the answer is "unknown" (the keeper then checks the tunnel's own health instead).
This relies on the device API being reachable on the school network only: the router
forwards the WireGuard UDP port, never the device API (docs/offsite.md).
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import urlsplit

from agent.client import in_words
from agent.report import Where

PROBE_TIMEOUT = 4.0
SO_MARK = getattr(socket, "SO_MARK", 36)  # Linux
IP_BOUND_IF = 25  # macOS <netinet/in.h>
IP_UNICAST_IF = 31  # Windows <ws2ipdef.h>


class BypassError(OSError):
    """The probe couldn't be kept off the tunnel (e.g. SO_MARK without root)."""


@dataclass(frozen=True)
class Bypass:
    """How a probe socket keeps off the tunnel."""

    kind: Literal["mark", "bound_if", "unicast_if"]
    value: int  # the fwmark, or the physical interface's index

    def option(self) -> tuple[int, int, int | bytes]:
        """(level, option, value) for setsockopt."""
        if self.kind == "mark":
            return socket.SOL_SOCKET, SO_MARK, self.value
        if self.kind == "bound_if":
            return socket.IPPROTO_IP, IP_BOUND_IF, self.value
        return socket.IPPROTO_IP, IP_UNICAST_IF, struct.pack("!I", self.value)


@dataclass(frozen=True)
class Place:
    where: Where
    reason: str


class Network(Protocol):
    """The bits of the network a probe uses (tests give a fake one)."""

    def resolve(self, host: str, port: int) -> list[str]: ...

    def handshake(
        self,
        address: str,
        port: int,
        server_name: str,
        context: ssl.SSLContext,
        bypass: Bypass | None,
    ) -> None:
        """Connect and complete a TLS handshake, or raise OSError / ssl.SSLError."""


class SystemNetwork:
    def resolve(self, host: str, port: int) -> list[str]:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    def handshake(
        self,
        address: str,
        port: int,
        server_name: str,
        context: ssl.SSLContext,
        bypass: Bypass | None,
    ) -> None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            if bypass is not None:
                try:
                    sock.setsockopt(*bypass.option())
                except OSError as exc:
                    raise BypassError(f"can't keep the probe off the tunnel: {exc}") from exc
            sock.settimeout(PROBE_TIMEOUT)
            sock.connect((address, port))
            with context.wrap_socket(sock, server_hostname=server_name):
                pass


def gateway_host_port(gateway_url: str) -> tuple[str, int]:
    """The device API's host and port from the enrolment URL (https://host:port)."""
    parts = urlsplit(gateway_url)
    return parts.hostname or "", parts.port or 443


def locate(
    gateway_url: str,
    context: Callable[[], ssl.SSLContext],
    bypass: Bypass | None,
    tunnel_up: bool,
    network: Network,
) -> Place:
    """On site when the pinned handshake with the gateway succeeds round the tunnel."""
    if tunnel_up and bypass is None:
        return Place("unknown", "the tunnel is up and this system can't probe round it")
    host, port = gateway_host_port(gateway_url)
    if not host:
        return Place("unknown", "no gateway address: enrol first")
    try:
        pinned = context()
    except (OSError, ssl.SSLError) as exc:  # a missing or damaged CA file is not "off site"
        return Place("unknown", f"the gateway's CA file can't be used: {_short(exc)}")
    try:
        addresses = network.resolve(host, port)
    except OSError as exc:
        return Place("off_site", f"the gateway's name {host} doesn't resolve here ({exc})")
    failures = []
    for address in addresses[:4]:
        try:
            network.handshake(address, port, host, pinned, bypass)
        except BypassError as exc:
            return Place("unknown", str(exc))
        except (OSError, ssl.SSLError) as exc:  # ssl.SSLError is an OSError; said for clarity
            failures.append(f"{address}: {_short(exc)}")
            continue
        return Place(
            "on_site", f"the gateway answered at {address}:{port} with its own certificate"
        )
    return Place("off_site", "the gateway didn't answer: " + "; ".join(failures or ["no address"]))


def _short(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "a certificate not from the school's CA"
    return (in_words(exc) or type(exc).__name__)[:120]


__all__ = [
    "Bypass",
    "BypassError",
    "Network",
    "Place",
    "SystemNetwork",
    "gateway_host_port",
    "locate",
]
