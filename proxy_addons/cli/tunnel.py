"""`schoolgate tunnel up|run|status|issue|bind`: the gateway's WireGuard interface for school
devices wherever they are (docs/offsite.md).

`run` is the service (deploy/systemd/schoolgate-tunnel.service): it brings the interface up and
then, every second, makes its peers the store's live bindings, so a device bound through the
device API can connect within a second and a revoked one is cut off as fast. It re-reads the
policy when its files change, and takes the interface down when it stops: a gateway that no
longer follows the store lets no tunnel in. `issue` is for devices that can't run the agent's
own key setup (a WireGuard app configured by MDM): the key pair is made here and the private
key printed once, to standard output only.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from agent.tunnel.config import TunnelConfig, new_private_key, public_key
from proxy_addons.cli.common import fail, open_policy_and_store
from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.core.policy.model import Policy, Tunnel
from proxy_addons.devices import tunnels
from proxy_addons.ops.status import age
from proxy_addons.ops.wireguard import interface
from proxy_addons.ops.wireguard.commands import Commands, WireGuardError
from proxy_addons.ops.wireguard.peers import PeerSync
from proxy_addons.store import Store
from proxy_addons.workflow import audit

logger = logging.getLogger("schoolgate.tunnel")

SYNC_SECONDS = 1.0
NO_TUNNEL = "the policy has no devices.tunnel section: tunnels are off (docs/offsite.md)"


def cmd_tunnel(args: argparse.Namespace) -> int:
    policy, store = open_policy_and_store(args)
    try:
        tunnel = policy.devices.tunnel
        if tunnel is None:
            return fail(f"schoolgate: {NO_TUNNEL}")
        var, cmd = Path(args.var), Commands()
        try:
            match args.tunnel_command:
                case "up":
                    return _up(store, tunnel, var, cmd)
                case "run":
                    return _run(Path(args.policy), policy, store, var, cmd)
                case "status":
                    return _status(args, store, tunnel, cmd)
                case "issue":
                    return _issue(args, policy, store, tunnel, var)
                case _:
                    return _bind(args, store, tunnel, var)
        except (WireGuardError, tunnels.TunnelError) as exc:
            return fail(f"schoolgate: {exc}")
    finally:
        store.dispose()


def _up(store: Store, tunnel: Tunnel, var: Path, cmd: Commands) -> int:
    how = interface.bring_up(tunnel, var, cmd)
    syncer = PeerSync(store, tunnel, cmd)
    changes = syncer.sync()
    made = "already there" if how == "existing" else f"made with {how}"
    print(
        f"{tunnel.interface} is up ({made}): {tunnel.gateway_address}/{tunnel.pool.prefixlen}, "
        f"UDP {tunnel.listen_port}; {syncer.describe(changes)}"
    )
    return 0


# ------------------------------------------------------------------ run


class _Stop:
    """Set by SIGTERM or SIGINT; the loop waits on it between syncs."""

    def __init__(self) -> None:
        self.event = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._set)

    def _set(self, signum: int, frame: FrameType | None) -> None:
        logger.info("tunnel: %s received, stopping", signal.Signals(signum).name)
        self.event.set()


def _mtimes(policy: Policy) -> dict[Path, float]:
    """The policy's own files (the policy and what it includes): cheap to look at each second."""
    found = {}
    for path in policy.files:
        try:
            found[Path(path)] = Path(path).stat().st_mtime
        except OSError:
            found[Path(path)] = -1.0
    return found


def _run(path: Path, policy: Policy, store: Store, var: Path, cmd: Commands) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = _Stop()
    tunnel, seen = policy.devices.tunnel, _mtimes(policy)
    syncer: PeerSync | None = None
    last_error = ""
    while not stop.event.is_set():
        if _mtimes(policy) != seen:
            policy, seen, changed = _reload(path, policy)
            if changed:
                if tunnel is not None and (
                    policy.devices.tunnel is None
                    or policy.devices.tunnel.interface != tunnel.interface
                ):
                    interface.take_down(tunnel.interface, cmd)
                    logger.info("tunnel: the policy changed: %s taken down", tunnel.interface)
                tunnel, syncer = policy.devices.tunnel, None
        try:
            if tunnel is not None:
                if syncer is None or not interface.exists(tunnel.interface, cmd):
                    how = interface.bring_up(tunnel, var, cmd)
                    logger.info("tunnel: %s up (%s)", tunnel.interface, how)
                    syncer = PeerSync(store, tunnel, cmd, syncer.names if syncer else {})
                syncer.sync()
            last_error = ""
        except Exception as exc:  # a store or WireGuard failure: said once, tried again
            if str(exc) != last_error:
                logger.error("tunnel: %s", exc)
                last_error = str(exc)
            syncer = None
        stop.event.wait(SYNC_SECONDS)
    if tunnel is not None:
        interface.take_down(tunnel.interface, cmd)  # nobody follows the store: nobody in
        logger.info("tunnel: %s taken down", tunnel.interface)
    return 0


def _reload(path: Path, current: Policy) -> tuple[Policy, dict[Path, float], bool]:
    """The edited policy, or the one in force when the edit doesn't load (said)."""
    try:
        policy = load_policy(path)
    except PolicyError as exc:
        logger.error("tunnel: the edited policy does not load, keeping the last good: %s", exc)
        return current, _mtimes(current), False
    changed = policy.devices.tunnel != current.devices.tunnel
    if changed:
        logger.info("tunnel: devices.tunnel changed in the policy: applying it")
    return policy, _mtimes(policy), changed


# ------------------------------------------------------------------ status


def _status(args: argparse.Namespace, store: Store, tunnel: Tunnel, cmd: Commands) -> int:
    if args.endpoints and not args.as_user:
        return fail("schoolgate: --endpoints shows where pupils are: give --as NAME (audited)")
    found = interface.show(tunnel.interface, cmd)
    if found is None:
        print(f"{tunnel.interface}: not there (schoolgate-tunnel not running?)")
        return 1
    state = "up" if interface.is_up(tunnel.interface, cmd) else "DOWN"
    print(
        f"{found.name}: {state}, UDP {found.listen_port}, gateway {tunnel.gateway_address}, "
        f"public key {found.public_key or '?'}"
    )
    bound = {b.public_key: b for b in tunnels.bindings(store)}
    peers = {p.public_key: p for p in found.peers}
    now = datetime.now(UTC)
    for key, binding in bound.items():
        peer = peers.get(key)
        seen = peer.latest_handshake if peer else binding.last_handshake_at
        line = (
            f"  {binding.device_id:<20} {_one_line(binding.hostname)[:24]:<24} "
            f"{binding.address:<15} "
            f"{age(seen, now) if seen else 'never':<12}"
        )
        if peer is None:
            line += " NOT ON THE INTERFACE"
        elif args.endpoints:
            line += f" from {peer.endpoint or '-'}"
        print(line)
    for key in peers.keys() - bound.keys():
        print(f"  UNBOUND PEER key {key[:8]}… (removed at the next sync)")
    devices = f"{len(bound)} device{'' if len(bound) == 1 else 's'}"
    on_it = f"{len(found.peers)} peer{'' if len(found.peers) == 1 else 's'}"
    print(f"{devices} bound, {on_it} on the interface")
    if args.endpoints:
        with store.begin() as conn:
            audit.append(
                conn,
                actor=args.as_user,
                action="tunnel.endpoints_viewed",
                subject=tunnel.interface,
                detail={"devices": len(bound)},
                at=now,
            )
    return 0


# ------------------------------------------------------------------ issue and bind


def _issue(
    args: argparse.Namespace, policy: Policy, store: Store, tunnel: Tunnel, var: Path
) -> int:
    gateway_key = tunnels.gateway_public_key(tunnel, var)
    if gateway_key is None:
        return fail("schoolgate: the gateway has no WireGuard key yet: run schoolgate tunnel up")
    private = new_private_key()
    had = tunnels.binding_of(store, args.device)
    binding = tunnels.bind(
        store, tunnel, args.device, public_key(private), datetime.now(UTC), args.as_user
    )
    config = tunnels.device_config(tunnel, binding, gateway_key, policy.devices.school_resolvers)
    sys.stdout.write(wg_quick(config, private, binding))
    print(
        f"schoolgate: the configuration above holds {binding.device_id}'s PRIVATE KEY: give it "
        "to the device (MDM) and keep no copy; it is not shown again. "
        + ("Its previous key no longer works." if had else ""),
        file=sys.stderr,
    )
    return 0


def _one_line(text: str) -> str:
    """A device's own name, as printed to a terminal or into a config file: no control
    characters (a newline would add lines to the WireGuard config, an escape would rewrite
    the terminal)."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def wg_quick(config: TunnelConfig, private: str, binding: tunnels.Binding) -> str:
    """The device's whole configuration, as wg-quick and the WireGuard apps import it."""
    lines = [
        f"# Schoolgate tunnel for {binding.device_id} ({_one_line(binding.hostname)}), made by "
        f"{_one_line(binding.issued_by)}. It holds the device's private key: keep it secret.",
        "[Interface]",
        f"PrivateKey = {private}",
        f"Address = {config.address}/32",
        *([f"DNS = {', '.join(config.dns)}"] if config.dns else []),
        f"MTU = {interface.MTU}",
        "",
        "[Peer]",
        f"PublicKey = {config.gateway_public_key}",
        f"Endpoint = {config.endpoint}",
        f"AllowedIPs = {', '.join(config.allowed_ips)}",
        f"PersistentKeepalive = {config.keepalive}",
    ]
    return "\n".join(lines) + "\n"


def _bind(args: argparse.Namespace, store: Store, tunnel: Tunnel, var: Path) -> int:
    known = tunnels.gateway_public_key(tunnel, var)
    binding = tunnels.bind(
        store, tunnel, args.device, args.public_key.strip(), datetime.now(UTC), args.as_user, known
    )
    gateway_key = known or "(run schoolgate tunnel up first)"
    print(
        f"{binding.device_id} ({_one_line(binding.hostname)}): tunnel address "
        f"{binding.address}; the gateway's public key {gateway_key}, endpoint {tunnel.endpoint}"
    )
    return 0
