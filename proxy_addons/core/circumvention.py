"""Ways round the filter the gateway recognises itself, beyond the policy's lists (pure).

The policy's `circumvention` category (UT1 `doh`, `vpn`, `strict_redirector` ...) blocks
the services it lists by name. These checks add what a list cannot hold: the well-known
public resolvers used by address for DNS over HTTPS, DoH by its media type on any host,
Mozilla's canary domain, iCloud Private Relay's hosts, Tor (.onion names, tor2web
gateways, the Tor Project's bridge and Snowflake hosts), and tunnels recognised from the
first bytes of a connection that is neither TLS nor HTTP (SSH, OpenVPN over TCP, SOCKS,
anything else). Tor's own TLS, with random-looking names, is not recognisable here: see
docs/circumvention.md.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Kinds of circumvention (fixed words: they are metric labels and policy values).
DOH = "doh"
PRIVATE_RELAY = "private_relay"
TOR = "tor"
TUNNEL = "tunnel"
KINDS = frozenset({DOH, PRIVATE_RELAY, TOR, TUNNEL})

LABELS = {
    DOH: "DNS over HTTPS",
    PRIVATE_RELAY: "iCloud Private Relay",
    TOR: "Tor",
    TUNNEL: "A tunnel that is not web traffic",
}

CATEGORY = "circumvention"  # the category these blocks are recorded under (alerts.py)

# Firefox turns its default DoH off when this name does not resolve; blocking it says no.
CANARY = "use-application-dns.net"

# Public resolvers that answer DoH on their bare address (RFC 8484 over https://IP/).
RESOLVER_IPS = frozenset(
    ipaddress.ip_address(a)
    for a in (
        # Cloudflare (1.1.1.1, families)
        "1.1.1.1",
        "1.0.0.1",
        "1.1.1.2",
        "1.0.0.2",
        "1.1.1.3",
        "1.0.0.3",
        "2606:4700:4700::1111",
        "2606:4700:4700::1001",
        "2606:4700:4700::1112",
        "2606:4700:4700::1002",
        "2606:4700:4700::1113",
        "2606:4700:4700::1003",
        # Google Public DNS
        "8.8.8.8",
        "8.8.4.4",
        "2001:4860:4860::8888",
        "2001:4860:4860::8844",
        # Quad9
        "9.9.9.9",
        "149.112.112.112",
        "9.9.9.10",
        "149.112.112.10",
        "9.9.9.11",
        "149.112.112.11",
        "2620:fe::fe",
        "2620:fe::9",
        "2620:fe::10",
        "2620:fe::11",
        # OpenDNS, AdGuard, CleanBrowsing, Mullvad, NextDNS anycast
        "208.67.222.222",
        "208.67.220.220",
        "94.140.14.14",
        "94.140.15.15",
        "185.228.168.168",
        "185.228.168.9",
        "194.242.2.2",
        "45.90.28.0",
        "45.90.30.0",
    )
)

# Well-known DoH host names, so the common ones are blocked even without the UT1 list.
DOH_HOSTS = frozenset(
    {
        "dns.google",
        "dns.google.com",
        "cloudflare-dns.com",
        "one.one.one.one",
        "dns.quad9.net",
        "doh.opendns.com",
        "dns.nextdns.io",
        "dns.adguard-dns.com",
        "dns.adguard.com",
        "doh.cleanbrowsing.org",
        "dns.mullvad.net",
        "doh.mullvad.net",
        "freedns.controld.com",
        "doh.libredns.gr",
        CANARY,
    }
)

# Apple: "mask.icloud.com and mask-h2.icloud.com" answering no address turns Relay off.
RELAY_HOSTS = frozenset({"mask.icloud.com", "mask-h2.icloud.com", "mask-api.icloud.com"})

# Tor: hidden services reached through a proxy or a tor2web gateway, bridge distribution
# and the Snowflake pluggable transport's brokers.
TOR_HOSTS = frozenset(
    {
        "torproject.org",
        "torproject.net",
        "snowflake-broker.freehaven.net",
        "tor2web.org",
        "tor2web.io",
        "onion.to",
        "onion.ly",
        "onion.ws",
        "onion.pet",
        "onion.link",
        "onion.city",
        "onion.cab",
    }
)

DOH_MEDIA_TYPES = ("application/dns-message", "application/dns-json")

# An HTTP/1 request line starts with a method token (RFC 9110: letters for every method in
# use) and a space; HTTP/2 with prior knowledge starts "PRI * HTTP/2.0".
_HTTP_START = re.compile(rb"^[A-Z][A-Z_-]{1,19} ")
_METHOD_PREFIX = re.compile(rb"^[A-Z][A-Z_-]{0,19}$")


@dataclass(frozen=True, slots=True)
class Finding:
    """A recognised way round the filter: what kind, and what gave it away."""

    kind: str
    entry: str  # the host, address or protocol that matched
    source: str  # which built-in check matched, for the log's `list` field

    @property
    def label(self) -> str:
        return LABELS[self.kind]


def _covered(host: str, names: frozenset[str]) -> str | None:
    rest = host
    while True:
        if rest in names:
            return rest
        if "." not in rest:
            return None
        rest = rest.split(".", 1)[1]


def host_finding(host: str) -> Finding | None:
    """A finding for a canonical host name or IP literal, or None."""
    address = None
    if host[:1].isdigit() or ":" in host:  # could be an IP literal ([v6] or v4)
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            pass
    if address is not None:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if address in RESOLVER_IPS:
            return Finding(DOH, str(address), "built-in: public DoH resolvers by address")
        return None
    if host == "onion" or host.endswith(".onion"):
        return Finding(TOR, ".onion", "built-in: Tor hidden services")
    if entry := _covered(host, TOR_HOSTS):
        return Finding(TOR, entry, "built-in: Tor gateways and bridges")
    if entry := _covered(host, RELAY_HOSTS):
        return Finding(PRIVATE_RELAY, entry, "built-in: iCloud Private Relay")
    if entry := _covered(host, DOH_HOSTS):
        source = "built-in: Mozilla canary domain" if entry == CANARY else "built-in: DoH hosts"
        return Finding(DOH, entry, source)
    return None


def request_finding(path: str, content_type: str, accept: str) -> Finding | None:
    """DNS over HTTPS on any host: the RFC 8484 media types, or a GET of /dns-query?dns=."""
    for header in (content_type, accept):
        value = header.lower()
        for media in DOH_MEDIA_TYPES:
            if media in value:
                return Finding(DOH, media, "built-in: DoH media type")
    route, _, query = path.partition("?")
    if route.rstrip("/").lower().endswith("/dns-query") and (
        query.startswith("dns=") or "&dns=" in query
    ):
        return Finding(DOH, "/dns-query", "built-in: DoH path")
    return None


def sniff(data: bytes) -> str | None:
    """What the first bytes a client sent are: "tls", "http", or a tunnel's name.

    Tunnels: "ssh", "openvpn", "socks" or "unknown". None: too few bytes to tell yet.
    """
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")  # RFC 9112: empty lines before a request line are allowed
    if not data:
        return None
    if data[0] == 0x16:
        if len(data) < 3:
            return None
        if data[1] == 0x03 and data[2] <= 0x04:
            return "tls"
    if data.startswith(b"PRI * HTTP/2.0") or _HTTP_START.match(data):
        return "http"
    if data.startswith(b"SSH-"):
        return "ssh"
    if len(data) < 21 and (_METHOD_PREFIX.match(data) or b"SSH-".startswith(data)):
        return None  # could still become a request line or an SSH banner
    if _openvpn(data):
        return "openvpn"
    if _socks(data):
        return "socks"
    return "unknown"


def is_tunnel(kind: str | None) -> bool:
    return kind is not None and kind not in ("tls", "http")


def _openvpn(data: bytes) -> bool:
    """OpenVPN over TCP: a 2-byte length, then P_CONTROL_HARD_RESET_CLIENT_V2/V3, key id 0."""
    if len(data) < 3:
        return False
    length = int.from_bytes(data[:2], "big")
    opcode, key_id = data[2] >> 3, data[2] & 0x07
    return opcode in (7, 10) and key_id == 0 and 14 <= length <= 1600


def _socks(data: bytes) -> bool:
    """SOCKS5 greeting (5, n, n methods) or a SOCKS4 CONNECT/BIND request."""
    if data[0] == 0x05 and len(data) >= 2:
        return 1 <= data[1] <= 16 and len(data) == 2 + data[1]
    return data[0] == 0x04 and len(data) >= 9 and data[1] in (1, 2)


def kind_of(record: Mapping[str, Any]) -> str:
    """The metric's kind for a circumvention block: built-in, or from the list it came from."""
    if record.get("circumvention"):
        return str(record["circumvention"])
    source = str(record.get("list_source") or "").lower()
    for part, kind in (("doh", "doh"), ("vpn", "vpn"), ("redirector", "proxy"), ("prox", "proxy")):
        if part in source:
            return kind
    return "listed"
