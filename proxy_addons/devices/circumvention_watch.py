"""Ways round the filter that never pass the proxy, seen in packets on the school network.

The proxy sees web traffic; a device can still send DNS to a resolver of its choosing, DNS
over TLS, or start a VPN (WireGuard, OpenVPN, IPsec), or use QUIC (HTTP/3 over UDP 443,
which the proxy doesn't carry). `classify` recognises each from one packet (pure, tested on
packets built with scapy and on captures); `CircumventionWatch` is fed by NetWatch's capture
(one sniffer serves both), names the device and user when the device agent's reports know
them, and raises an alert per device and kind at most once in `window`.

What is recognised, and how sure it is:
- outside_dns: a DNS query (UDP or TCP port 53) to an address that is not one of the policy's
  `devices.school_resolvers` (judged only when the policy names them);
- dns_over_tls: TCP to port 853 of any address but the school's resolvers;
- wireguard: a handshake initiation, UDP, exactly 148 bytes starting 01 00 00 00 (any port);
- openvpn: a client hard reset (opcode 7 or 10, key id 0): on TCP with its 2-byte length in
  front, which must match; on UDP by the opcode byte, length and trailing zero packet id,
  away from ports where other protocols are common;
- ipsec: IKE on UDP 500 or 4500 (an IKE header, version 1 or 2), and ESP (IP protocol 50);
- quic: a QUIC long-header Initial packet (version 1, 2 or a draft) of at least 1200 bytes
  (clients pad their first datagram to that) to UDP 443.
The safeguarding team is told only about deliberate tunnels (WireGuard, OpenVPN, IPsec) by
someone the gateway can name; everything goes to the IT provider, who can close the path
(deploy/ firewall rules).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet
from scapy.utils import PcapReader

from proxy_addons.alerts.dispatch import raise_alert
from proxy_addons.alerts.events import CIRCUMVENTION, Audience, Event, local_time
from proxy_addons.alerts.outbox import AlertOutbox
from proxy_addons.core.policy.model import Policy
from proxy_addons.devices.identity import users_by_ip
from proxy_addons.devices.inventory import list_devices
from proxy_addons.store import Store

logger = logging.getLogger(__name__)

OUTSIDE_DNS = "outside_dns"
DNS_OVER_TLS = "dns_over_tls"
WIREGUARD = "wireguard"
OPENVPN = "openvpn"
IPSEC = "ipsec"
QUIC = "quic"
KINDS = frozenset({OUTSIDE_DNS, DNS_OVER_TLS, WIREGUARD, OPENVPN, IPSEC, QUIC})
LABELS = {
    OUTSIDE_DNS: "DNS to a resolver outside the school",
    DNS_OVER_TLS: "DNS over TLS (port 853)",
    WIREGUARD: "WireGuard VPN handshake",
    OPENVPN: "OpenVPN handshake",
    IPSEC: "IPsec VPN (IKE/ESP)",
    QUIC: "QUIC (HTTP/3 over UDP 443)",
}
TUNNELS = frozenset({WIREGUARD, OPENVPN, IPSEC})  # deliberate: the DSL hears of these too

# What the kernel passes up, on top of NetWatch's ARP and DHCP: DNS, DoT, IKE, ESP, UDP 443
# long headers, 148-byte UDP datagrams starting 01 00 00 00, OpenVPN-looking first bytes.
# (IPv6 can't be filtered on payload bytes in BPF: its UDP and the two TCP ports go up.)
BPF_FILTER = (
    "port 53 or tcp dst port 853 or udp port 500 or udp port 4500 or ip proto 50"
    " or (udp dst port 443 and udp[8] & 0xc0 = 0xc0)"
    " or (udp[4:2] = 156 and udp[8:4] = 0x01000000)"
    " or (udp and (udp[8] = 0x38 or udp[8] = 0x50))"
    " or (tcp and tcp[((tcp[12] & 0xf0) >> 2) + 2] & 0xf8 = 0x38)"
    " or (tcp and tcp[((tcp[12] & 0xf0) >> 2) + 2] & 0xf8 = 0x50)"
    " or (ip6 and (udp or tcp port 53 or tcp port 853 or proto 50))"
)

WINDOW = timedelta(minutes=60)
_WG_INITIATION = b"\x01\x00\x00\x00"
_WG_LENGTH = 148
_OPENVPN_RESETS = (7, 10)  # P_CONTROL_HARD_RESET_CLIENT_V2, _V3
# UDP ports whose own protocols can start with OpenVPN's opcode byte by chance.
_NOT_OPENVPN_UDP = frozenset({53, 67, 68, 123, 137, 138, 161, 443, 500, 1900, 4500, 5353})
_QUIC_VERSIONS = {0x00000001: 0, 0x6B3343CF: 1}  # version -> Initial's packet type bits
_QUIC_MIN_INITIAL = 1200


@dataclass(frozen=True)
class Finding:
    kind: str
    src: str  # the device's address
    dst: str
    port: int
    transport: Literal["udp", "tcp", "esp"]
    mac: str | None = None  # the device's MAC, when the frame has one


def _addresses(packet: Packet) -> tuple[str, str, int] | None:
    if packet.haslayer(IP):
        ip = packet[IP]
        return str(ip.src), str(ip.dst), int(ip.proto)
    if packet.haslayer(IPv6):
        ip6 = packet[IPv6]
        return str(ip6.src), str(ip6.dst), int(ip6.nh)
    return None


def _canonical(address: str) -> str:
    """One spelling per address; scapy's IPv4 is already canonical (and parsing is slow)."""
    if ":" not in address:
        return address
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


@functools.lru_cache(maxsize=16)
def _resolver_set(resolvers: frozenset[str]) -> frozenset[str]:
    return frozenset(_canonical(r.strip()) for r in resolvers)


def _is_dns_query(payload: bytes) -> bool:
    return len(payload) >= 12 and not payload[2] & 0x80  # QR bit clear: a question


def _is_openvpn_reset(payload: bytes) -> bool:
    """A client hard reset: opcode 7/10, key id 0, then session id, ... and (without
    tls-crypt) an empty ack list and message packet id 0 at the end."""
    if not 14 <= len(payload) <= 1024:
        return False
    if payload[0] >> 3 not in _OPENVPN_RESETS or payload[0] & 0x07:
        return False
    return payload[0] >> 3 == 10 or payload[-5:] == b"\x00" * 5


def _is_quic_initial(payload: bytes) -> bool:
    if len(payload) < _QUIC_MIN_INITIAL or payload[0] & 0xC0 != 0xC0:
        return False
    version = int.from_bytes(payload[1:5], "big")
    kind = (payload[0] & 0x30) >> 4
    if version in _QUIC_VERSIONS:
        return kind == _QUIC_VERSIONS[version]
    return version & 0xFFFFFF00 == 0xFF000000 and kind == 0  # IETF drafts


def _is_ike(payload: bytes, port: int) -> bool:
    if port == 4500:
        if payload == b"\xff":
            return True  # NAT-T keepalive
        if payload[:4] != b"\x00\x00\x00\x00":
            return len(payload) >= 8  # ESP in UDP: an SPI, a sequence number
        payload = payload[4:]  # the non-ESP marker, then IKE
    return len(payload) >= 28 and payload[17] >> 4 in (1, 2)


def classify(packet: Packet, resolvers: Iterable[str] = ()) -> Finding | None:
    """What way round the filter this packet is, if any (None for ordinary traffic).

    `resolvers` are the school's own DNS resolvers: DNS and DoT to them is ordinary, and
    what they send themselves is not a device's doing.
    """
    try:
        return _classify(packet, _resolver_set(frozenset(resolvers)))
    except (IndexError, ValueError, TypeError, AttributeError) as exc:  # truncated fields
        logger.debug("packet ignored: %s", exc)
        return None


def _classify(packet: Packet, resolvers: frozenset[str]) -> Finding | None:
    found = _addresses(packet)
    if found is None:
        return None
    src, dst, proto = _canonical(found[0]), _canonical(found[1]), found[2]
    if src in resolvers:
        return None
    mac = str(packet[Ether].src).lower() if packet.haslayer(Ether) else None

    def finding(kind: str, port: int, transport: Literal["udp", "tcp", "esp"]) -> Finding:
        return Finding(kind, src, dst, port, transport, mac)

    if proto == 50:
        return finding(IPSEC, 0, "esp")
    if packet.haslayer(UDP):
        udp = packet[UDP]
        payload = bytes(udp.payload)
        dport, sport = int(udp.dport), int(udp.sport)
        if dport == 53:
            if resolvers and dst not in resolvers and _is_dns_query(payload):
                return finding(OUTSIDE_DNS, dport, "udp")
            return None
        if dport in (500, 4500) and _is_ike(payload, dport):
            return finding(IPSEC, dport, "udp")
        if len(payload) == _WG_LENGTH and payload[:4] == _WG_INITIATION:
            return finding(WIREGUARD, dport, "udp")
        if dport == 443 and _is_quic_initial(payload):
            return finding(QUIC, dport, "udp")
        if {dport, sport}.isdisjoint(_NOT_OPENVPN_UDP) and _is_openvpn_reset(payload):
            return finding(OPENVPN, dport, "udp")
        return None
    if packet.haslayer(TCP):
        tcp = packet[TCP]
        dport = int(tcp.dport)
        payload = bytes(tcp.payload)
        if dport == 853 and dst not in resolvers:
            return finding(DNS_OVER_TLS, dport, "tcp")
        if dport == 53:
            if resolvers and dst not in resolvers and (tcp.flags.S or payload):
                return finding(OUTSIDE_DNS, dport, "tcp")
            return None
        framed = payload[2:]
        if len(payload) > 2 and int.from_bytes(payload[:2], "big") == len(framed):
            if _is_openvpn_reset(framed):
                return finding(OPENVPN, dport, "tcp")
    return None


def read_pcap(path: Path, resolvers: Iterable[str] = ()) -> list[Finding]:
    """The findings in a capture, in order."""
    wanted = frozenset(resolvers)
    out: list[Finding] = []
    with PcapReader(str(path)) as reader:
        for packet in reader:
            found = classify(packet, wanted)
            if found is not None:
                out.append(found)
    return out


# -- who, and raising the alert --------------------------------------------------------------


@dataclass(frozen=True)
class Who:
    device_id: str | None = None
    hostname: str | None = None
    user: str | None = None  # from a fresh report, as the filter's identity uses


def identify(store: Store, policy: Policy, ip: str, mac: str | None, now: datetime) -> Who:
    """The enrolled device at this MAC (or, failing that, address) and its signed-in user."""
    found = list_devices(store, now, stale_days=365)
    device = next((d for d in found if mac and mac in d.last_macs), None)
    device = device or next((d for d in found if ip in d.last_ips), None)
    user = users_by_ip(store, now, policy.devices.identity_minutes, policy).get(ip)
    if device is None:
        return Who(user=user)
    return Who(device.device_id, device.hostname, user)


def events(finding: Finding, who: Who, policy: Policy, at: datetime) -> list[Event]:
    """The IT provider's alert (the device, never the user), and the DSL's for a tunnel
    started by someone the gateway can name."""
    tz = policy.timezone
    when = local_time(tz, at)
    label = LABELS[finding.kind]
    where = f"{finding.dst} port {finding.port}/{finding.transport}"
    if finding.transport == "esp":
        where = f"{finding.dst} (ESP)"
    device_key = who.device_id or finding.mac or finding.src
    technical: dict[str, str] = {}
    if who.device_id:
        technical.update(hostname=who.hostname or "", device_id=who.device_id)
    if finding.mac:
        technical["mac"] = finding.mac
    technical.update(ip=finding.src, category=label, site=where, time=when)
    out = [
        Event(
            kind=CIRCUMVENTION,
            severity=3,
            audience=Audience.TECHNICAL,
            summary=f"Circumvention on the network: {label}",
            fields=technical,
            fold_key=f"{CIRCUMVENTION}|net|{device_key}|{finding.kind}",
            at=at,
            timezone=tz.key,
        )
    ]
    if finding.kind in TUNNELS and who.user:
        device = who.hostname or finding.src
        out.append(
            Event(
                kind=CIRCUMVENTION,
                severity=3,
                audience=Audience.SAFEGUARDING,
                summary=f"VPN started on a school device: {label}",
                fields={
                    "user": who.user,
                    "device": device,
                    "category": label,
                    "site": where,
                    "time": when,
                },
                fold_key=f"{CIRCUMVENTION}|net|{who.user}|{finding.kind}",
                at=at,
                timezone=tz.key,
            )
        )
    return out


def raise_events(store: Store, policy: Policy, found: Iterable[Event]) -> int:
    """Into the alert outbox, to the channels each event's audience uses; the gateway's
    outbox workers deliver them (this runs in `schoolgate devices watch`, another process)."""
    outbox = AlertOutbox(store)
    return sum(len(raise_alert(outbox, policy, event)) for event in found)


class CircumventionWatch:
    """Takes packets from NetWatch's capture; one alert per device and kind per `window`."""

    def __init__(
        self,
        store: Store,
        policy: Callable[[], Policy],
        window: timedelta = WINDOW,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_remembered: int = 10_000,
    ) -> None:
        self.store, self.policy, self.window, self.clock = store, policy, window, clock
        self.max_remembered = max_remembered
        self._last: dict[tuple[str, str], float] = {}  # (device, kind) -> monotonic time
        self._lock = threading.Lock()
        self.raised = 0

    def on_packet(self, packet: Packet) -> Finding | None:
        policy = self.policy()
        found = classify(packet, policy.devices.school_resolvers)
        if found is None:
            return None
        key = (found.mac or found.src, found.kind)
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.window.total_seconds():
                return found  # already raised in this window
            self._last[key] = now
            if len(self._last) > self.max_remembered:
                horizon = now - self.window.total_seconds()
                self._last = {k: t for k, t in self._last.items() if t >= horizon}
        at = self.clock()
        try:
            who = identify(self.store, policy, found.src, found.mac, at)
            self.raised += raise_events(self.store, policy, events(found, who, policy, at))
            logger.info("circumvention: %s from %s", found.kind, who.device_id or found.src)
        except Exception as exc:  # keep watching; the next packet of its kind tries again
            with self._lock:
                self._last.pop(key, None)
            logger.error("circumvention: alert for %s not raised: %s", found.kind, exc)
        return found


__all__ = [
    "BPF_FILTER",
    "KINDS",
    "CircumventionWatch",
    "Finding",
    "Who",
    "classify",
    "events",
    "identify",
    "read_pcap",
]
