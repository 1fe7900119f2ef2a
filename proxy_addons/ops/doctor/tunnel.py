"""The doctor's checks of school devices' tunnels (docs/offsite.md), when the policy has
`devices.tunnel`: the interface is there, up, on the policy's port with the gateway's key; the
key file is its owner's alone; the peers are the store's bindings; the endpoint's name
resolves; and bound devices do reach it (else the router's port forward is the usual cause).

Read only, like every doctor check: the store is opened read only (as root, nothing it writes
would be root's), and nothing is changed on the interface."""

from __future__ import annotations

import ipaddress
import re
import socket
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from agent.tunnel.config import public_key, valid_key
from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.core.policy.model import Tunnel
from proxy_addons.core.policy.tunnel_section import split_endpoint
from proxy_addons.devices import tunnels
from proxy_addons.devices.tunnels import Binding
from proxy_addons.ops.doctor.findings import Check, fail, ok, warn
from proxy_addons.ops.wireguard import interface
from proxy_addons.ops.wireguard.commands import Commands, WireGuardError
from proxy_addons.ops.wireguard.interface import Interface
from proxy_addons.ops.wireguard.peers import plan
from proxy_addons.store import Store, store_url

QUIET = timedelta(hours=24)  # no device's handshake for this long: is the port forwarded?
SERVICE = "systemctl start schoolgate-tunnel; journalctl -u schoolgate-tunnel says why it stopped"
Resolve = Callable[[str], Any]


def _resolve(host: str) -> Any:
    return socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)


def check_tunnel(
    policy_path: Path,
    var: Path,
    dsn: str = "",
    cmd: Commands | None = None,
    resolve: Resolve = _resolve,
    now: datetime | None = None,
) -> list[Check]:
    """Nothing when the policy has no tunnels (or doesn't load: the lists check says so)."""
    try:
        tunnel = load_policy(policy_path).devices.tunnel
    except (PolicyError, OSError):
        return []
    if tunnel is None:
        return []
    cmd = cmd or Commands()
    checks = [check_key_file(tunnel, var), check_endpoint(tunnel, resolve)]
    checks += [c for c in [check_firewall(tunnel, cmd)] if c is not None]
    try:
        found = interface.show(tunnel.interface, cmd)
        up = found is not None and interface.is_up(tunnel.interface, cmd)
    except WireGuardError as exc:
        return [fail("tunnel", str(exc), "apt-get install wireguard-tools"), *checks]
    if found is None or not up:
        state = "missing" if found is None else "down"
        checks.insert(
            0, fail("tunnel", f"the WireGuard interface {tunnel.interface} is {state}", SERVICE)
        )
        return checks
    checks.insert(0, check_interface(tunnel, var, found))
    try:
        bound = _bindings(var, dsn)
    except sa.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return [*checks, warn("tunnel peers", f"can't read the store's bindings: {reason}")]
    checks.append(check_peers(found, bound))
    checks.append(check_use(tunnel, found, bound, now or datetime.now(UTC)))
    return checks


def _bindings(var: Path, dsn: str) -> list[Binding]:
    url = sa.make_url(store_url(var, dsn or None))
    if url.get_backend_name() == "sqlite":
        engine = sa.create_engine(f"sqlite:///file:{url.database}?mode=ro&uri=true")
    else:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
    try:
        return tunnels.bindings(Store(engine))
    finally:
        engine.dispose()


def check_key_file(tunnel: Tunnel, var: Path) -> Check:
    private, _ = tunnels.key_files(tunnel, var)
    try:
        mode = stat.S_IMODE(private.stat().st_mode)
    except OSError:
        return fail("tunnel key", f"no key file at {private}", "schoolgate tunnel up makes it")
    if mode & 0o077:
        return fail(
            "tunnel key",
            f"{private} (the gateway's private WireGuard key) can be read by others ({mode:o})",
            f"chmod 600 {private}",
        )
    return ok("tunnel key", f"{private} is readable by its owner only")


def check_firewall(tunnel: Tunnel, cmd: Commands) -> Check | None:
    """The loaded firewall's wg_if, tunnel_nets and wg_port are the policy's. Otherwise every
    packet from the tunnels is dropped as forged or refused, and nothing else says so. None
    when no schoolgate table is loaded (the firewall check says that)."""
    try:
        proc = cmd.run(["nft", "list", "table", "inet", "schoolgate"], check=False)
    except WireGuardError:
        return None
    if proc.returncode != 0:
        return None
    name, pool, port = tunnel.interface, str(tunnel.pool), tunnel.listen_port
    served = re.compile(
        rf'iifname "{re.escape(name)}" ip saddr [^\n]*\b{re.escape(pool)}\b[^\n]*jump from_clients'
    )
    wrong = []
    if not served.search(proc.stdout):
        wrong.append(f'wg_if = "{name}" and tunnel_nets = {{ {pool} }}')
    if not re.search(rf"\budp dport {port} accept", proc.stdout):
        wrong.append(f"wg_port = {port}")
    if wrong:
        return fail(
            "tunnel firewall",
            "the loaded firewall doesn't serve the policy's tunnels: devices' tunnels get "
            "nothing through",
            f"set {' and '.join(wrong)} in the firewall's variables, then nft -f it "
            "(docs/offsite.md, step 4)",
        )
    return ok("tunnel firewall", f"the firewall serves {name} ({pool}) and UDP {port}")


def check_interface(tunnel: Tunnel, var: Path, found: Interface) -> Check:
    """Up, on the policy's port, with the key of the key file (what devices were given)."""
    name = tunnel.interface
    if found.listen_port != tunnel.listen_port:
        return fail(
            "tunnel",
            f"{name} listens on UDP {found.listen_port}, the policy says {tunnel.listen_port}",
            "systemctl restart schoolgate-tunnel",
        )
    private, _ = tunnels.key_files(tunnel, var)
    try:
        text = private.read_text().strip()
    except OSError:
        text = ""
    expected = public_key(text) if valid_key(text) else None
    if expected is None or found.public_key != expected:
        return fail(
            "tunnel",
            f"{name}'s key is not the one in {private}: devices were given that one's public "
            "key, so they can't connect",
            "systemctl restart schoolgate-tunnel",
        )
    peers = len(found.peers)
    return ok(
        "tunnel", f"{name} up on UDP {found.listen_port}, {peers} peer{'' if peers == 1 else 's'}"
    )


def check_peers(found: Interface, bound: list[Binding]) -> Check:
    changes = plan(bound, found.peers)
    if not changes.peers_changed:
        return ok("tunnel peers", f"the interface's peers are the store's {len(bound)} bindings")
    parts = []
    if changes.added:
        parts.append("missing: " + ", ".join(b.device_id for b in changes.added))
    if changes.fixed:
        parts.append("wrong address: " + ", ".join(b.device_id for b in changes.fixed))
    if changes.removed:
        parts.append(f"{len(changes.removed)} peers no device is bound to")
    return warn(
        "tunnel peers",
        "the interface differs from the store (" + "; ".join(parts) + ")",
        "is schoolgate-tunnel running? it corrects this within a second",
    )


def check_endpoint(tunnel: Tunnel, resolve: Resolve) -> Check:
    host, port = split_endpoint(tunnel.endpoint, tunnel.listen_port)
    try:
        ipaddress.ip_address(host)
        return ok("tunnel endpoint", f"devices are told {host}:{port}")
    except ValueError:
        pass
    try:
        resolve(host)
    except (OSError, UnicodeError) as exc:
        return warn(
            "tunnel endpoint",
            f"the endpoint's name {host} does not resolve ({exc}): devices off site can't find "
            "the gateway",
            "check the dynamic-DNS name and its updater (docs/offsite.md)",
        )
    return ok("tunnel endpoint", f"{host} resolves (devices are told {host}:{port})")


def check_use(tunnel: Tunnel, found: Interface, bound: list[Binding], now: datetime) -> Check:
    """Bound devices, and none seen for a day: usually the router's port forward."""
    if not bound:
        return ok("tunnel use", "no device is bound yet")
    peers = {p.public_key: p.latest_handshake for p in found.peers}
    seen = [t for b in bound if (t := peers.get(b.public_key) or b.last_handshake_at)]
    latest = max(seen) if seen else None
    if latest is None and all(now - b.issued_at <= QUIET for b in bound):
        # Devices are bound at school, at enrolment: none connects until it is first away.
        return ok(
            "tunnel use",
            f"{_devices(len(bound))} bound in the last day; none has connected yet (a device "
            "connects when it is first off site)",
        )
    if latest is None or now - latest > QUIET:
        when = f"since {latest:%Y-%m-%d %H:%M} UTC" if latest else "ever"
        return warn(
            "tunnel use",
            f"{_devices(len(bound))} bound, and none has connected {when}",
            f"check the router's UDP port forward to this gateway's port {tunnel.listen_port}, "
            "and that the endpoint's name points at the school",
        )
    return ok("tunnel use", f"{len(seen)} of {len(bound)} bound devices have connected")


def _devices(count: int) -> str:
    return f"{count} device{'' if count == 1 else 's'}"
