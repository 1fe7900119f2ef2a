"""Which WireGuard key each enrolled device holds, and the tunnel address bound to it.

The binding is what makes identity by key work (docs/offsite.md): the gateway's interface
takes packets from a tunnel address only from the peer whose key it is bound to (WireGuard's
allowed IPs), so traffic from that address is that device, whatever its reports say. An
address is the device's for as long as it keeps a key: a new key (rotation) keeps it, a
revoked device loses it at once (`unbind`, in the revoking transaction), and it can then go
to another device. The gateway's interface follows this table (ops/wireguard/peers.py).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from agent.tunnel.config import TunnelConfig, valid_key
from proxy_addons.core.policy.model import Tunnel
from proxy_addons.store import Store
from proxy_addons.store.schema import device_tunnels, devices
from proxy_addons.workflow import audit

logger = logging.getLogger(__name__)

KEY_DIR = "wireguard"  # under the gateway's var folder, unless the policy names key_file
ATTEMPTS = 5  # two devices taking the same free address at once: one retries


class TunnelError(ValueError):
    """A key or address can't be bound; the message is safe to show the device."""


class KeyTaken(TunnelError):
    """The key is bound to another device (the API answers 409)."""


@dataclass(frozen=True)
class Binding:
    device_id: str
    hostname: str
    public_key: str
    address: str
    issued_at: datetime
    issued_by: str
    last_handshake_at: datetime | None = None


def key_files(tunnel: Tunnel, var: Path) -> tuple[Path, Path]:
    """(private, public) key files of the gateway's interface; the public one is readable by
    the web app, which gives it to devices."""
    private = tunnel.key_file or (var / KEY_DIR / "gateway.key")
    return private, private.with_suffix(".pub")


def gateway_public_key(tunnel: Tunnel, var: Path) -> str | None:
    """The gateway's public key, as `schoolgate tunnel` wrote it; None before it has."""
    try:
        text = key_files(tunnel, var)[1].read_text().strip()
    except OSError:
        return None
    return text if valid_key(text) else None


def _binding(row: sa.Row[Any]) -> Binding:
    return Binding(
        device_id=row.device_id,
        hostname=row.hostname,
        public_key=row.public_key,
        address=row.address,
        issued_at=row.issued_at,
        issued_by=row.issued_by,
        last_handshake_at=row.last_handshake_at,
    )


def _select() -> sa.Select[Any]:
    return sa.select(
        device_tunnels.c.device_id,
        devices.c.hostname,
        device_tunnels.c.public_key,
        device_tunnels.c.address,
        device_tunnels.c.issued_at,
        device_tunnels.c.issued_by,
        device_tunnels.c.last_handshake_at,
    ).join(devices, devices.c.device_id == device_tunnels.c.device_id)


def bindings(store: Store) -> list[Binding]:
    """Every live binding (revoked devices have none), by address."""
    with store.connect() as conn:
        rows = conn.execute(_select().where(devices.c.revoked_at.is_(None))).all()
    return sorted((_binding(r) for r in rows), key=lambda b: ipaddress.ip_address(b.address))


def binding_of(store: Store, device_id: str) -> Binding | None:
    with store.connect() as conn:
        row = conn.execute(_select().where(device_tunnels.c.device_id == device_id)).first()
    return _binding(row) if row is not None else None


def _usable(tunnel: Tunnel, address: str) -> bool:
    """A device address in the pool: not the gateway's (after the pool changed under a
    device, its old address may be), nor the pool's network or broadcast address."""
    host = ipaddress.IPv4Address(address)
    pool = tunnel.pool
    return host in pool and host not in (
        tunnel.gateway_address,
        pool.network_address,
        pool.broadcast_address,
    )


def _free_address(conn: sa.Connection, tunnel: Tunnel) -> str:
    taken = {row.address for row in conn.execute(sa.select(device_tunnels.c.address))}
    for host in tunnel.pool.hosts():
        if host != tunnel.gateway_address and str(host) not in taken:
            return str(host)
    raise TunnelError(
        f"the tunnel pool {tunnel.pool} is full ({len(taken)} devices): "
        "a larger devices.tunnel.pool is needed"
    )


def bind(
    store: Store,
    tunnel: Tunnel,
    device_id: str,
    public_key: str,
    now: datetime,
    by: str,
    gateway_key: str | None = None,
) -> Binding:
    """Bind `public_key` to the device; its address stays if it had one (or the pool changed
    under it), else it gets the lowest free one. Audited; refused for a revoked device, a
    key another device holds, or the gateway's own (`gateway_key`: WireGuard ignores a peer
    with the interface's key, so it would never be on the interface)."""
    if not valid_key(public_key):
        raise TunnelError("public_key should be a WireGuard public key (44 characters)")
    if public_key == gateway_key:
        raise TunnelError("that key is the gateway's own: make a new key pair")
    for attempt in range(ATTEMPTS):
        try:
            return _bind(store, tunnel, device_id, public_key, now, by)
        except sa.exc.IntegrityError:
            if attempt == ATTEMPTS - 1:
                raise TunnelError("the key or address was taken meanwhile: try again") from None
    raise AssertionError("unreachable")


def _bind(
    store: Store, tunnel: Tunnel, device_id: str, public_key: str, now: datetime, by: str
) -> Binding:
    with store.begin() as conn:
        device = conn.execute(
            sa.select(devices.c.revoked_at).where(devices.c.device_id == device_id)
        ).first()
        if device is None:
            raise TunnelError(f"there is no device {device_id[:64]}")
        if device.revoked_at is not None:
            raise TunnelError(f"device {device_id} is revoked: enrol it again first")
        holder = conn.execute(
            sa.select(device_tunnels.c.device_id).where(device_tunnels.c.public_key == public_key)
        ).first()
        if holder is not None and holder.device_id != device_id:
            raise KeyTaken("that key is another device's: make a new key pair")
        old = conn.execute(
            sa.select(device_tunnels.c.address, device_tunnels.c.public_key).where(
                device_tunnels.c.device_id == device_id
            )
        ).first()
        keep = old is not None and _usable(tunnel, old.address)
        address = old.address if keep and old is not None else _free_address(conn, tunnel)
        values = {"public_key": public_key, "address": address, "issued_at": now, "issued_by": by}
        if old is None:
            conn.execute(device_tunnels.insert().values(device_id=device_id, **values))
        elif old.public_key != public_key or old.address != address:
            conn.execute(
                device_tunnels.update()
                .where(device_tunnels.c.device_id == device_id)
                .values(**values, last_handshake_at=None)
            )
        changed = old is None or old.public_key != public_key or old.address != address
        if changed:
            audit.append(
                conn,
                actor=by if by != "device" else f"device {device_id}",
                action="device.tunnel_bound",
                subject=device_id,
                detail={"address": address, "public_key": public_key, "new_key": old is not None},
                at=now,
            )
        row = conn.execute(_select().where(device_tunnels.c.device_id == device_id)).one()
    if changed:  # a device's hourly refresh with the same key changes nothing: not said
        logger.info("device %s: tunnel address %s bound to its key", device_id, address)
    return _binding(row)


def unbind(conn: sa.Connection, device_id: str) -> str | None:
    """Inside the caller's transaction (a revoke): the device's address is no longer bound to
    any key. Returns the address it had, if any."""
    row = conn.execute(
        sa.select(device_tunnels.c.address).where(device_tunnels.c.device_id == device_id)
    ).first()
    if row is None:
        return None
    conn.execute(device_tunnels.delete().where(device_tunnels.c.device_id == device_id))
    return str(row.address)


def record_handshakes(store: Store, seen: dict[str, datetime]) -> None:
    """The interface's latest handshake per public key (ops/wireguard/peers.py)."""
    if not seen:
        return
    with store.begin() as conn:
        for key, when in seen.items():
            conn.execute(
                device_tunnels.update()
                .where(device_tunnels.c.public_key == key)
                .values(last_handshake_at=when)
            )


def allowed_ips(tunnel: Tunnel) -> tuple[str, ...]:
    """Everything through the tunnel (IPv4 and IPv6), but the policy's passthrough networks.

    IPv6 goes in too, so a device with IPv6 at home can't go round the tunnel with it; the
    gateway doesn't forward IPv6 from tunnels, so it fails rather than leaks."""
    out: list[ipaddress.IPv4Network] = [ipaddress.IPv4Network("0.0.0.0/0")]
    for hole in tunnel.passthrough:
        out = [piece for n in out for piece in _without(n, hole)]
    return (*(str(n) for n in sorted(out)), "::/0")


def _without(
    network: ipaddress.IPv4Network, hole: ipaddress.IPv4Network
) -> list[ipaddress.IPv4Network]:
    if not network.overlaps(hole):
        return [network]
    if network.subnet_of(hole):
        return []
    return list(network.address_exclude(hole))


def device_config(
    tunnel: Tunnel, binding: Binding, gateway_key: str, school_resolvers: frozenset[str]
) -> TunnelConfig:
    """What the device is told about its tunnel."""
    return TunnelConfig(
        address=binding.address,
        gateway_public_key=gateway_key,
        endpoint=tunnel.endpoint,
        gateway_address=str(tunnel.gateway_address),
        allowed_ips=allowed_ips(tunnel),
        onsite_endpoint=tunnel.onsite_endpoint,
        dns=tunnel.dns or tuple(sorted(school_resolvers))[:4],
        on_site=tunnel.on_site,
        fail_closed=tunnel.fail_closed,
    )


__all__ = [
    "Binding",
    "KeyTaken",
    "TunnelError",
    "allowed_ips",
    "bind",
    "binding_of",
    "bindings",
    "device_config",
    "gateway_public_key",
    "key_files",
    "record_handshakes",
    "unbind",
]
