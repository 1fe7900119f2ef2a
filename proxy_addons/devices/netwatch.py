"""Devices on the school network that never enrolled, seen in ARP and DHCP traffic.

Personal devices are not allowed on the school network, and an enrolled device reports its
MACs, so any MAC the gateway sees in ARP or a DHCP request that no enrolled device reported
is a device to look at. Parsing (`observations`) is pure, so it is tested on packets built
with scapy and on captures; `NetWatch` sniffs an interface and records what it sees.

A randomised ("private") MAC, as phones use by default, has the locally administered bit
set; it is recorded as the vendor hint, since there is no maker to look up for it.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from scapy.arch.common import compile_filter
from scapy.error import Scapy_Exception
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.l2 import ARP
from scapy.packet import Packet
from scapy.sendrecv import AsyncSniffer
from scapy.utils import PcapReader
from sqlalchemy.dialects import postgresql, sqlite

from proxy_addons.devices.circumvention_watch import BPF_FILTER as CIRCUMVENTION_FILTER
from proxy_addons.devices.circumvention_watch import CircumventionWatch
from proxy_addons.devices.inventory import list_devices
from proxy_addons.store import Store
from proxy_addons.store.schema import seen_devices

logger = logging.getLogger(__name__)

BPF_FILTER = "arp or (udp and (port 67 or port 68))"
RANDOMISED = "randomised (locally administered)"
MAX_HOSTNAME = 253
Source = Literal["arp", "dhcp"]
# The client asking for an address: numbers when dissected, names in packets built in code.
_DHCP_CLIENT_TYPES = (1, 3, "discover", "request")


@dataclass(frozen=True)
class Sighting:
    mac: str  # lower case, colon-separated
    ip: str | None
    hostname: str | None
    source: Source


@dataclass(frozen=True)
class SeenDevice:
    mac: str
    ip: str | None
    hostname: str | None
    vendor_hint: str | None
    first_seen: datetime
    last_seen: datetime


def _mac(value: Any) -> str | None:
    """A unicast MAC in canonical form, or None (broadcast, zero, multicast, malformed)."""
    if isinstance(value, bytes):
        if len(value) < 6:
            return None
        value = ":".join(f"{b:02x}" for b in value[:6])
    if not isinstance(value, str):
        return None
    parts = value.lower().split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        return None
    try:
        octets = [int(p, 16) for p in parts]
    except ValueError:
        return None
    if octets[0] & 1 or not any(octets):  # multicast/broadcast, or all zero
        return None
    return ":".join(parts)


def _ip(value: Any) -> str | None:
    """A usable IPv4 address (not 0.0.0.0, broadcast or multicast), or None."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    try:
        addr = ipaddress.IPv4Address(str(value))
    except ValueError:
        return None
    if addr.is_unspecified or addr.is_multicast or addr == ipaddress.IPv4Address("255.255.255.255"):
        return None
    return str(addr)


def _hostname(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = "".join(c for c in value if c.isprintable()).strip()
    return value[:MAX_HOSTNAME] or None


def vendor_hint(mac: str) -> str | None:
    """What the MAC itself says about the device; only randomised MACs for now."""
    return RANDOMISED if int(mac[:2], 16) & 2 else None


def observations(packet: Packet) -> list[Sighting]:
    """What one packet says about a device on the network; [] for anything else or malformed."""
    try:
        if packet.haslayer(ARP):
            return _arp(packet[ARP])
        if packet.haslayer(DHCP) and packet.haslayer(BOOTP):
            return _dhcp(packet[BOOTP], packet[DHCP])
    except Exception as exc:  # scapy raises many kinds on truncated fields
        logger.debug("packet ignored: %s", exc)
    return []


def _arp(arp: Packet) -> list[Sighting]:
    if arp.op not in (1, 2) or arp.hwtype != 1 or arp.ptype != 0x0800:
        return []
    mac = _mac(arp.hwsrc)
    if mac is None:
        return []
    return [Sighting(mac, _ip(arp.psrc), None, "arp")]


def _dhcp(bootp: Packet, dhcp: Packet) -> list[Sighting]:
    if bootp.op != 1:  # BOOTREQUEST: what the client sends
        return []
    options = {o[0]: o[1:] for o in dhcp.options if isinstance(o, tuple) and len(o) >= 2}
    message = options.get("message-type", (None,))[0]
    if message not in _DHCP_CLIENT_TYPES:
        return []
    mac = _mac(bytes(bootp.chaddr)[: bootp.hlen or 6])
    if mac is None:
        return []
    ip = _ip(options.get("requested_addr", (None,))[0]) or _ip(bootp.ciaddr)
    hostname = _hostname(options.get("hostname", (None,))[0])
    return [Sighting(mac, ip, hostname, "dhcp")]


def record(store: Store, sightings: Iterable[Sighting], at: datetime) -> int:
    """Upsert sightings (one statement per MAC; a sighting without ip/hostname keeps the old)."""
    rows = list(sightings)
    if not rows:
        return 0
    insert = postgresql.insert if store.dialect == "postgresql" else sqlite.insert
    with store.begin() as conn:
        for s in rows:
            mac = s.mac.lower()
            stmt = insert(seen_devices).values(
                mac=mac,
                ip=s.ip,
                hostname=s.hostname,
                vendor_hint=vendor_hint(mac),
                first_seen=at,
                last_seen=at,
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[seen_devices.c.mac],
                    set_={
                        "ip": sa.func.coalesce(stmt.excluded.ip, seen_devices.c.ip),
                        "hostname": sa.func.coalesce(
                            stmt.excluded.hostname, seen_devices.c.hostname
                        ),
                        "last_seen": sa.case(
                            (
                                seen_devices.c.last_seen > stmt.excluded.last_seen,
                                seen_devices.c.last_seen,
                            ),
                            else_=stmt.excluded.last_seen,
                        ),
                        "first_seen": sa.case(
                            (
                                seen_devices.c.first_seen < stmt.excluded.first_seen,
                                seen_devices.c.first_seen,
                            ),
                            else_=stmt.excluded.first_seen,
                        ),
                    },
                )
            )
    return len(rows)


def read_pcap(path: Path, store: Store | None = None) -> list[Sighting]:
    """Sightings in a capture, in order; with a store, each is recorded at its packet's time."""
    found: list[Sighting] = []
    with PcapReader(str(path)) as reader:
        for packet in reader:
            seen = observations(packet)
            if seen and store is not None:
                record(store, seen, datetime.fromtimestamp(float(packet.time), UTC))
            found.extend(seen)
    return found


def seen(store: Store) -> list[SeenDevice]:
    with store.connect() as conn:
        rows = conn.execute(sa.select(seen_devices).order_by(seen_devices.c.mac))
        return [
            SeenDevice(r.mac, r.ip, r.hostname, r.vendor_hint, r.first_seen, r.last_seen)
            for r in rows
        ]


def unknown_devices(store: Store, now: datetime, since_days: int) -> list[SeenDevice]:
    """MACs seen within `since_days` that no enrolled device has reported, newest first."""
    enrolled = {m.lower() for d in list_devices(store, now, stale_days=365) for m in d.last_macs}
    since = now - timedelta(days=since_days)
    found = [d for d in seen(store) if d.last_seen >= since and d.mac not in enrolled]
    return sorted(found, key=lambda d: d.last_seen, reverse=True)


def _kernel_filter(wanted: str = BPF_FILTER) -> str | None:
    """`wanted` if libpcap can compile it; else None, and Python does the filtering."""
    try:
        compile_filter(wanted)
    except (ImportError, OSError, Scapy_Exception) as exc:
        logger.warning("netwatch: no kernel filter (%s); filtering every packet in Python", exc)
        return None
    return wanted


class NetWatch:
    """Sniffs one interface for ARP and DHCP (needs root or CAP_NET_RAW) into the store.

    With `circumvention` (proxy_addons/devices/circumvention_watch.py), the same capture also looks
    for DNS, DNS over TLS, VPN handshakes and QUIC that never pass the proxy.
    """

    def __init__(
        self, store: Store, interface: str, circumvention: CircumventionWatch | None = None
    ) -> None:
        self.store = store
        self.interface = interface
        self.circumvention = circumvention
        self._sniffer: AsyncSniffer | None = None
        self._lock = threading.Lock()

    def _on_packet(self, packet: Packet) -> None:
        if self.circumvention is not None:
            try:
                self.circumvention.on_packet(packet)
            except Exception:  # never stop sniffing for one packet
                logger.exception("netwatch: circumvention check failed")
        found = observations(packet)
        if not found:
            return
        try:
            with self._lock:
                record(self.store, found, datetime.now(UTC))
        except sa.exc.SQLAlchemyError as exc:  # keep sniffing; the next sighting retries
            logger.error("netwatch: could not record %s: %s", found[0].mac, exc)

    def start(self) -> None:
        wanted = BPF_FILTER
        if self.circumvention is not None:
            wanted = f"({BPF_FILTER}) or ({CIRCUMVENTION_FILTER})"
        self._sniffer = AsyncSniffer(
            iface=self.interface, filter=_kernel_filter(wanted), prn=self._on_packet, store=False
        )
        self._sniffer.start()
        what = "ARP, DHCP and circumvention" if self.circumvention else "ARP and DHCP"
        logger.info("netwatch: watching %s for %s", self.interface, what)

    def stop(self) -> None:
        if self._sniffer is not None:
            if self._sniffer.running:
                self._sniffer.stop()
            self._sniffer = None

    def join(self, timeout: float | None = None) -> None:
        if self._sniffer is not None:
            self._sniffer.join(timeout)


__all__ = [
    "BPF_FILTER",
    "NetWatch",
    "SeenDevice",
    "Sighting",
    "observations",
    "read_pcap",
    "record",
    "seen",
    "unknown_devices",
    "vendor_hint",
]
