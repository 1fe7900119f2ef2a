"""The WireGuard configuration file the agent writes for each system's WireGuard tools.

Everything goes through the tunnel (0.0.0.0/0 and ::/0), except the policy's passthrough
networks (video calls). The gateway says that as a list of allowed networks; on Linux and
macOS the file instead routes everything in and takes the passthrough networks back out,
because wg-quick keeps the tunnel's own endpoint outside only for a full /0 tunnel (a
list of /1../n pieces would route the endpoint into its own tunnel).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from agent.tunnel.config import TunnelConfig

INTERFACE = "schoolgate0"  # wg-quick takes the name from the file's; at most 15 characters
FWMARK = 51820  # wg-quick's usual table and mark; probes with it go round the tunnel
MTU = 1420
PASSTHROUGH_RULE_PRIORITY = 100  # before wg-quick's own rules
HEADER = "# Written by schoolgate-agent from the gateway's tunnel config: edits are overwritten.\n"
_EVERYTHING_V4 = ipaddress.IPv4Network("0.0.0.0/0")


def valid_interface(name: str) -> bool:
    return 0 < len(name) <= 15 and all(c.isalnum() or c in "_=+.-" for c in name)


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """host:port or [v6]:port -> (host, port)."""
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"'{endpoint}' is not host:port")
    return host.strip("[]"), int(port)


def join_endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def passthrough(config: TunnelConfig) -> list[str]:
    """The IPv4 networks the gateway leaves out of the tunnel: 0.0.0.0/0 minus its list."""
    allowed = [n for n in (ipaddress.ip_network(a) for a in config.allowed_ips) if n.version == 4]
    left = [_EVERYTHING_V4]
    for network in allowed:
        left = [piece for n in left for piece in _without(n, network)]
    return [str(n) for n in ipaddress.collapse_addresses(left)]


def _without(
    network: ipaddress.IPv4Network, hole: ipaddress.IPv4Network
) -> Iterable[ipaddress.IPv4Network]:
    if not network.overlaps(hole):
        return [network]
    if network.subnet_of(hole):
        return []
    return network.address_exclude(hole)


def _full(config: TunnelConfig) -> str:
    v6 = any(ipaddress.ip_network(a).version == 6 for a in config.allowed_ips)
    return "0.0.0.0/0, ::/0" if v6 else "0.0.0.0/0"


def _peer(config: TunnelConfig, endpoint: str, allowed: str) -> list[str]:
    return [
        "",
        "[Peer]",
        f"PublicKey = {config.gateway_public_key}",
        f"Endpoint = {endpoint}",
        f"AllowedIPs = {allowed}",
        f"PersistentKeepalive = {config.keepalive}",
    ]


def _interface(config: TunnelConfig, private_key: str, dns: bool) -> list[str]:
    lines = ["[Interface]", f"PrivateKey = {private_key}", f"Address = {config.address}/32"]
    if dns and config.dns:
        lines.append(f"DNS = {', '.join(config.dns)}")
    lines.append(f"MTU = {MTU}")
    return lines


def linux(config: TunnelConfig, private_key: str, endpoint: str, dns: bool) -> str:
    """wg-quick on Linux: full tunnel by fwmark policy routing, passthrough by `ip rule`."""
    lines = _interface(config, private_key, dns)
    lines.append(f"FwMark = {FWMARK}")
    for network in passthrough(config):
        rule = f"to {network} lookup main priority {PASSTHROUGH_RULE_PRIORITY}"
        lines.append(f"PostUp = ip -4 rule add {rule}")
        lines.append(f"PreDown = ip -4 rule del {rule}")
    return HEADER + "\n".join(lines + _peer(config, endpoint, _full(config))) + "\n"


def macos(config: TunnelConfig, private_key: str, endpoint: str, dns: bool) -> str:
    """Homebrew's wg-quick on macOS (a utun interface): passthrough by routes via the router."""
    lines = _interface(config, private_key, dns)
    router = "$(route -n get default | awk '/gateway:/ {print $2}')"
    for network in passthrough(config):
        lines.append(f'PostUp = route -q -n add -inet {network} "{router}"')
        lines.append(f"PostDown = route -q -n delete -inet {network}")
    return HEADER + "\n".join(lines + _peer(config, endpoint, _full(config))) + "\n"


def windows(config: TunnelConfig, private_key: str, endpoint: str, kill_switch: bool) -> str:
    """The WireGuard app for Windows. Its kill switch (blocking untunnelled traffic while the
    tunnel runs) is on only for a single peer with a /0: with `kill_switch` everything goes
    in, passthrough included; without, the gateway's list as it is (the app keeps the
    endpoint outside itself)."""
    lines = _interface(config, private_key, dns=True)
    allowed = _full(config) if kill_switch else ", ".join(config.allowed_ips)
    return HEADER + "\n".join(lines + _peer(config, endpoint, allowed)) + "\n"


__all__ = [
    "FWMARK",
    "INTERFACE",
    "join_endpoint",
    "linux",
    "macos",
    "passthrough",
    "split_endpoint",
    "valid_interface",
    "windows",
]
