"""The interface's peers made exactly the store's live bindings (devices/tunnels.py).

A peer is a device's public key allowed exactly its one tunnel address; that is what makes a
connection from the address that device (identity by key). So a sync removes every peer no
live binding has (a revoked device's tunnel stops at once), corrects a peer allowed anything
but its binding's address, and adds the bindings the interface lacks; removals come first,
so an address moved from one key to another is never allowed to both. The handshakes the
interface saw are written to the store only when they are newer than what it holds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from proxy_addons.core.policy.model import Tunnel
from proxy_addons.devices import tunnels
from proxy_addons.devices.tunnels import Binding
from proxy_addons.ops.wireguard import interface
from proxy_addons.ops.wireguard.commands import Commands, WireGuardError
from proxy_addons.ops.wireguard.interface import Peer
from proxy_addons.store import Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Changes:
    """What a sync does (or did) to the interface and the store."""

    added: tuple[Binding, ...] = ()
    fixed: tuple[Binding, ...] = ()  # a peer whose allowed ips weren't its binding's address
    removed: tuple[str, ...] = ()  # public keys no live binding has
    handshakes: dict[str, datetime] = field(default_factory=dict)  # newer than the store's

    @property
    def peers_changed(self) -> bool:
        return bool(self.added or self.fixed or self.removed)


def plan(bindings: Sequence[Binding], peers: Sequence[Peer]) -> Changes:
    """The difference between the store's bindings and the interface's peers."""
    by_key = {b.public_key: b for b in bindings}
    have = {p.public_key: p for p in peers}
    removed = tuple(sorted(key for key in have if key not in by_key))
    added = tuple(b for b in bindings if b.public_key not in have)
    fixed = tuple(
        b
        for b in bindings
        if b.public_key in have and have[b.public_key].allowed_ips != (f"{b.address}/32",)
    )
    handshakes = {
        key: peer.latest_handshake
        for key, peer in have.items()
        if key in by_key
        and peer.latest_handshake is not None
        and (
            by_key[key].last_handshake_at is None
            or peer.latest_handshake > by_key[key].last_handshake_at  # type: ignore[operator]
        )
    }
    return Changes(added=added, fixed=fixed, removed=removed, handshakes=handshakes)


def apply(name: str, changes: Changes, cmd: Commands) -> None:
    """Removals first, then corrections, then additions."""
    for key in changes.removed:
        interface.remove_peer(name, key, cmd)
    for binding in (*changes.fixed, *changes.added):
        interface.set_peer(name, binding.public_key, binding.address, cmd)


@dataclass
class PeerSync:
    """Keeps one interface in step with the store; remembers which device each key was, so
    the log can name a revoked device whose binding is already gone."""

    store: Store
    tunnel: Tunnel
    cmd: Commands
    names: dict[str, str] = field(default_factory=dict)  # public key -> device id

    def sync(self) -> Changes:
        name = self.tunnel.interface
        found = interface.show(name, self.cmd)
        if found is None:
            raise WireGuardError(f"there is no interface {name}: run `schoolgate tunnel up`")
        bindings = tunnels.bindings(self.store)
        self.names.update({b.public_key: b.device_id for b in bindings})
        changes = plan(bindings, found.peers)
        apply(name, changes, self.cmd)
        if changes.handshakes:
            tunnels.record_handshakes(self.store, changes.handshakes)
        if changes.peers_changed:
            logger.info("tunnel: %s", self.describe(changes))
        # Kept: the keys bound now, and those just removed (until the next sync, for describe).
        keep = {b.public_key for b in bindings} | set(changes.removed)
        self.names = {k: v for k, v in self.names.items() if k in keep}
        return changes

    def describe(self, changes: Changes) -> str:
        """E.g. "added 1 peer (dev-4f2a), removed 1 (dev-91c0)"."""
        parts: list[str] = []
        for verb, keys in (
            ("added", [b.public_key for b in changes.added]),
            ("corrected", [b.public_key for b in changes.fixed]),
            ("removed", list(changes.removed)),
        ):
            if keys:
                who = ", ".join(self.names.get(k, f"key {k[:8]}…") for k in keys)
                noun = "" if parts else (" peer" if len(keys) == 1 else " peers")
                parts.append(f"{verb} {len(keys)}{noun} ({who})")
        return ", ".join(parts) or "peers unchanged"


def sync(store: Store, tunnel: Tunnel, cmd: Commands) -> Changes:
    """One sync, for a caller that keeps no state between them."""
    return PeerSync(store, tunnel, cmd).sync()


__all__ = ["Changes", "PeerSync", "apply", "plan", "sync"]
