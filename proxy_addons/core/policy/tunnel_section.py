"""`devices.tunnel:`, per-device WireGuard tunnels (docs/offsite.md), read into a `Tunnel`.

The pool is IPv4 and holds the gateway's own tunnel address (its first) and one address per
device; an endpoint is `host:port` (a name or an address) or a host alone, which takes the
listen port.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from proxy_addons.core.policy.checker import Checker
from proxy_addons.core.policy.model import Network, Tunnel
from proxy_addons.core.policy.yaml_reader import LMap, Where

KEYS = [
    "pool",
    "endpoint",
    "onsite_endpoint",
    "interface",
    "listen_port",
    "on_site",
    "fail_closed",
    "down_alert_minutes",
    "dns",
    "passthrough",
    "key_file",
]
# Linux interface names: at most 15 characters, none of / or white space; and not starting
# with "-" or ".", which `wireguard-go` would read as an option, or Linux refuse ("..").
_INTERFACE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_=+.-]{0,14}")
_HOST = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*"
)


def endpoint_ok(text: str) -> bool:
    """`host:port`, `[v6]:port` or a bare host: something a WireGuard peer can be told."""
    host, port = split_endpoint(text, 51820)
    if not 1 <= port <= 65535:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOST.fullmatch(host))


def split_endpoint(text: str, default_port: int) -> tuple[str, int]:
    """(host, port) of an endpoint; a port that isn't a number reads as 0 (refused above)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not port:
        return host, default_port
    return host, int(port) if port.isdigit() else 0


def _flag(ck: Checker, m: LMap, key: str) -> bool:
    value = m.get(key, False)
    if not isinstance(value, bool):
        ck.fail(m.at(key), f"{key} should be true or false")
        return False
    return value


def _pool(ck: Checker, m: LMap) -> ipaddress.IPv4Network | None:
    raw = m.get("pool")
    try:
        pool = ipaddress.ip_network(str(raw).strip(), strict=True)
    except ValueError:
        ck.fail(m.at("pool"), f"pool '{raw}' should be an IPv4 network, e.g. 10.123.0.0/20")
        return None
    if not isinstance(pool, ipaddress.IPv4Network) or not pool.is_private:
        ck.fail(m.at("pool"), f"pool {pool} should be a private IPv4 network")
        return None
    if not 16 <= pool.prefixlen <= 29:
        ck.fail(m.at("pool"), f"pool {pool} should be from a /16 to a /29")
        return None
    return pool


def _endpoint(ck: Checker, m: LMap, key: str) -> str | None:
    if m.get(key) is None:
        return None
    text = ck.text(m[key], m.at(key), key)
    if text is not None and not endpoint_ok(text):
        ck.fail(m.at(key), f"{key} '{text}' should be host:port, e.g. gateway.school.example:51820")
        return None
    return text


def load_tunnel(ck: Checker, raw: Any, where: Where) -> Tunnel | None:
    m = ck.mapping(raw, where, "tunnel", KEYS)
    if m is None or not m:
        return None
    for key in ("pool", "endpoint"):
        if m.get(key) is None:
            ck.fail(where, f"tunnel needs '{key}' (docs/offsite.md)")
    pool = _pool(ck, m) if m.get("pool") is not None else None
    endpoint = _endpoint(ck, m, "endpoint")
    interface = str(m.get("interface", "schoolgate-wg"))
    if not _INTERFACE.fullmatch(interface):
        ck.fail(m.at("interface"), "interface should be a name of 1 to 15 letters, digits or -_.")
        interface = "schoolgate-wg"
    dns: list[str] = []
    for i, item in enumerate(ck.listing(m.get("dns"), m.at("dns"), "dns") or []):
        try:
            dns.append(str(ipaddress.ip_address(str(item).strip())))
        except ValueError:
            ck.fail(m.at("dns"), f"dns: '{item}' (entry {i + 1}) is not an IP address")
    passthrough = []
    for item in ck.listing(m.get("passthrough"), m.at("passthrough"), "passthrough") or []:
        try:
            network = ipaddress.ip_network(str(item).strip(), strict=False)
        except ValueError:
            network = None
        if not isinstance(network, ipaddress.IPv4Network) or network.prefixlen == 0:
            ck.fail(m.at("passthrough"), f"passthrough: '{item}' should be an IPv4 network")
            continue
        passthrough.append(network)
    key_file = None
    if m.get("key_file") is not None:
        text = ck.text(m["key_file"], m.at("key_file"), "key_file")
        key_file = (ck.base / text).resolve() if text else None  # made by `schoolgate tunnel`
    settings = {
        "interface": interface,
        "listen_port": ck.whole(m, "listen_port", 51820, 1, 65535),
        "onsite_endpoint": _endpoint(ck, m, "onsite_endpoint"),
        "on_site": _flag(ck, m, "on_site"),
        "fail_closed": _flag(ck, m, "fail_closed"),
        "down_alert_minutes": ck.whole(m, "down_alert_minutes", 60, 5, 7 * 24 * 60),
        "dns": tuple(dns),
        "passthrough": tuple(passthrough),
        "key_file": key_file,
    }
    if pool is None or endpoint is None:
        return None  # every other setting was still checked, so all problems show at once
    return Tunnel(pool=pool, endpoint=endpoint, **settings)  # type: ignore[arg-type]


def pool_apart(
    ck: Checker, network: Network, tunnel: Tunnel | None, devices: Any, where: Where
) -> None:
    """The pool may lie inside a client network (10.0.0.0/8 listed whole), but no school
    network may lie inside it: the firewall drops a pool address arriving anywhere but the
    tunnel's interface as forged, so that network's devices would get nothing through."""
    if tunnel is None:
        return
    raw = devices.get("tunnel") if isinstance(devices, LMap) else None
    where = raw.at("pool") if isinstance(raw, LMap) else where
    for n in network.staff_networks:
        if isinstance(n, ipaddress.IPv4Network) and tunnel.pool.subnet_of(n):
            ck.fail(
                where,
                f"pool {tunnel.pool} is inside the staff network {n} (network.staff_networks): "
                "pupils' laptops at home would reach the admin app; name the staff networks "
                "themselves",
            )
    for key, networks in (
        ("client_networks", network.client_networks),
        ("management_networks", network.management_networks),
        ("staff_networks", network.staff_networks),
    ):
        for n in networks:
            if isinstance(n, ipaddress.IPv4Network) and n.subnet_of(tunnel.pool):
                ck.fail(
                    where,
                    f"pool {tunnel.pool} holds the school's network {n} (network.{key}): its "
                    "devices would be taken for forged tunnel addresses; choose a pool no "
                    "school network uses",
                )


def serving_tunnels(network: Network, tunnel: Tunnel | None) -> Network:
    """The tunnel pool is a client network: devices in it use the gateway like any other."""
    if tunnel is None:
        return network
    served = [n for n in network.client_networks if isinstance(n, ipaddress.IPv4Network)]
    if any(tunnel.pool.subnet_of(n) for n in served):
        return network
    return Network(
        (*network.client_networks, tunnel.pool),
        network.management_networks,
        network.staff_networks,
    )


__all__ = [
    "KEYS",
    "endpoint_ok",
    "load_tunnel",
    "pool_apart",
    "serving_tunnels",
    "split_endpoint",
]
