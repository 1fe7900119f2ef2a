"""Putting the tunnel's parts together for this device: its gateway, its system, its network.

`setup` is `schoolgate-agent tunnel setup` (and what `enrol` does next): make the private
key if there is none, give the gateway its public key, keep the config it answers. The
same key always gets the same config back, so running it again is harmless.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from agent.client import Client
from agent.runner import Runner, SystemRunner
from agent.tunnel.config import TunnelConfig, parse_config, public_key
from agent.tunnel.drivers import driver_for
from agent.tunnel.files import TunnelFiles
from agent.tunnel.firewall import firewall_for
from agent.tunnel.keeper import Keeper, Parts
from agent.tunnel.location import Bypass, Network, Place, SystemNetwork, gateway_host_port, locate
from agent.tunnel.wgconf import INTERFACE


def now_utc() -> datetime:
    return datetime.now(UTC)


def resolve(host: str) -> str | None:
    """One address for a name (IPv4 first: the tunnel's endpoint is usually IPv4)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except OSError:
        return None
    found = sorted((info[0] != socket.AF_INET, str(info[4][0])) for info in infos)
    return found[0][1] if found else None


def fetcher(client: Client, files: TunnelFiles) -> Callable[[], TunnelConfig | None]:
    """Ask the gateway for this device's config with its public key; None: no tunnels there."""

    def fetch() -> TunnelConfig | None:
        answer = client.tunnel(public_key(files.private_key()))
        return None if answer is None else parse_config(answer)

    return fetch


def setup(client: Client, clock: Callable[[], datetime] = now_utc) -> TunnelConfig | None:
    """Make the key, send its public half, keep the answer; None when the gateway has none."""
    files = TunnelFiles(client.state_dir)
    config = fetcher(client, files)()
    if config is None:
        files.forget_config()
        return None
    files.save_config(config, clock())
    return config


def keeper_for(
    client: Client,
    platform: str,
    interface: str = INTERFACE,
    runner: Runner | None = None,
    network: Network | None = None,
    clock: Callable[[], datetime] = now_utc,
) -> Keeper:
    """A Keeper for this device's real system (tests build Parts with fakes instead)."""
    runner = runner or SystemRunner()
    net = network or SystemNetwork()
    files = TunnelFiles(client.state_dir)

    def where(bypass: Bypass | None, tunnel_up: bool) -> Place:
        return locate(client.gateway, client.tls_context, bypass, tunnel_up, net)

    def probe_target() -> tuple[str, int] | None:
        host, port = gateway_host_port(client.gateway)
        address = resolve(host) if host else None
        return (address, port) if address else None

    return Keeper(
        Parts(
            files=files,
            driver=driver_for(platform, runner, interface),
            firewall=firewall_for(platform, runner, Path(client.state_dir), interface),
            locate=where,
            resolve=resolve,
            probe_target=probe_target,
            fetch=fetcher(client, files),
            clock=clock,
        )
    )


__all__ = ["fetcher", "keeper_for", "now_utc", "resolve", "setup"]
