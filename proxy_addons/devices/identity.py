"""Who is at which IP address, from the device agents' fresh reports.

In transparent mode there is no proxy sign-in: a recent report saying which
user is signed in on the device at an address lets the filter and the access
log attribute that address's traffic to the user (for `devices.identity_minutes`), and
the access log name the device itself (its id and host name) whoever signed in.
Read from the store every REFRESH_SECONDS off the request path (`refresh`, a
`core.periodic` job of the gateway's services); the request path
only looks in a dict.
"""

from __future__ import annotations

import ipaddress
import logging
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from proxy_addons.core.policy.model import Audience, Policy
from proxy_addons.devices import tunnels
from proxy_addons.devices.inventory import Device, list_devices
from proxy_addons.devices.reports import address_of
from proxy_addons.store import Store

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 5.0
MISS_SECONDS = 1.0  # an unknown tunnel address reads the bindings at most this often


_refused: set[tuple[str, str]] = set()  # (device, user) already logged


def may_name(policy: Policy, user: str) -> bool:
    """May a device report name `user`? Not one the policy puts in a staff profile.

    A report is the device's word: an enrolled device with a tampered agent (or a stolen
    enrolment secret) can say anything, and a staff name would give a pupil's device the
    staff profile and put the teacher's name on the pupil's browsing. Staff are known by
    what can't be forged: proxy sign-in, the directory, the staff network.
    """
    name = policy.identities.users.get(unicodedata.normalize("NFKC", user).strip().lower())
    return name is None or policy.profiles[name].audience is not Audience.STAFF


@dataclass(frozen=True, slots=True)
class DeviceAt:
    """The enrolled device a fresh report puts at an address: for the access log's
    device_id and device_name (its host name)."""

    device_id: str
    name: str


def _fresh(store: Store, now: datetime, minutes: int) -> list[Device]:
    """Devices whose agent reported within `minutes`, not revoked, oldest report first."""
    since = now - timedelta(minutes=minutes)
    # Freshness is when the device made the report, not when it arrived (a report kept
    # in the agent's spool may be old).
    fresh = [
        d
        for d in list_devices(store, now, stale_days=365)
        if not d.revoked  # a revoked device's word is no longer taken
        and d.last_generated_at is not None
        and d.last_generated_at >= since
    ]
    fresh.sort(key=lambda d: d.last_generated_at or since)
    return fresh


def users_by_ip(
    store: Store, now: datetime, minutes: int, policy: Policy | None = None
) -> dict[str, str]:
    """IP -> signed-in user, from reports newer than `minutes` (newest report wins); with
    a policy, users it puts in a staff profile are not taken from a report (`may_name`), and
    tunnel addresses are the bound devices' (`where`)."""
    fresh = _fresh(store, now, minutes)
    return _users(where(fresh, _bound(store, policy), policy), policy)


def devices_by_ip(
    store: Store, now: datetime, minutes: int, policy: Policy | None = None
) -> dict[str, DeviceAt]:
    """IP -> the device there, from reports newer than `minutes` (newest report wins), and
    every tunnel address bound to a device's key (`where`)."""
    bound = _bound(store, policy)
    return _devices(where(_fresh(store, now, minutes), bound, policy), bound)


def _bound(store: Store, policy: Policy | None) -> list[tunnels.Binding]:
    return tunnels.bindings(store) if policy is not None and policy.devices.tunnel else []


def where(
    fresh: list[Device], bound: list[tunnels.Binding], policy: Policy | None
) -> list[tuple[Device, tuple[str, ...]]]:
    """Each freshly reporting device with the addresses it is known at.

    A tunnel address is its key holder's, whatever any report says: WireGuard only lets the
    holder of the bound key send from it (devices/tunnels.py). So no report ever places a
    device at a pool address, and a bound device is at its tunnel address; with
    `devices.tunnel.on_site`, a bound device is known by its key alone, on site too.
    """
    tunnel = policy.devices.tunnel if policy is not None else None
    at_key = {b.device_id: b.address for b in bound}
    out = []
    for d in fresh:
        reported = tuple(
            ip
            for ip in d.last_ips
            if tunnel is None or not _in(ip, tunnel.pool)
            if not (tunnel is not None and tunnel.on_site and d.device_id in at_key)
        )
        key = (at_key[d.device_id],) if d.device_id in at_key else ()
        out.append((d, reported + key))
    return out


def _in(ip: str, pool: ipaddress.IPv4Network) -> bool:
    found = address_of(ip)
    return found is not None and found in pool


def _devices(
    placed: list[tuple[Device, tuple[str, ...]]], bound: Sequence[tunnels.Binding] = ()
) -> dict[str, DeviceAt]:
    out = {b.address: DeviceAt(b.device_id, b.hostname) for b in bound}
    for d, ips in placed:
        out.update({ip: DeviceAt(d.device_id, d.hostname) for ip in ips})
    return out


def _users(placed: list[tuple[Device, tuple[str, ...]]], policy: Policy | None) -> dict[str, str]:
    named = {}
    for d, ips in placed:
        user = d.last_user
        if not user:
            continue
        if policy is not None and not may_name(policy, user):
            if (d.device_id, user) not in _refused and len(_refused) < 10000:
                _refused.add((d.device_id, user))
                logger.warning(
                    "Device %s (%s) reports staff user %r: not taken (staff sign in)",
                    d.device_id,
                    d.hostname,
                    user,
                )
            continue
        for ip in ips:
            named[ip] = user
    return named


class DeviceIdentities:
    """The maps the request path looks in, refreshed off it; a tunnel address the maps don't
    know yet (a device bound since the last refresh) is looked up at once, at most once a
    second, so even a new device's first request is logged under its key."""

    def __init__(self, store: Store, policy: Callable[[], Policy]) -> None:
        self.store = store
        self.policy = policy
        self.by_ip: dict[str, str] = {}
        self.devices: dict[str, DeviceAt] = {}
        self._looked = 0.0  # when a miss last read the bindings (monotonic)

    def user_at(self, ip: str | None) -> str | None:
        return self.by_ip.get(ip) if ip else None

    def device_at(self, ip: str | None) -> DeviceAt | None:
        if not ip:
            return None
        found = self.devices.get(ip)
        if found is None and self._unknown_tunnel(ip):
            found = self.devices.get(ip)
        return found

    def _unknown_tunnel(self, ip: str) -> bool:
        """A pool address not in the map: read the bindings now (once a second at most)."""
        tunnel = self.policy().devices.tunnel
        now = time.monotonic()
        if tunnel is None or not _in(ip, tunnel.pool) or now - self._looked < MISS_SECONDS:
            return False
        self._looked = now
        known = {b.address: DeviceAt(b.device_id, b.hostname) for b in tunnels.bindings(self.store)}
        self.devices = {**self.devices, **known}
        return ip in known

    def refresh(self) -> None:
        policy = self.policy()
        fresh = _fresh(self.store, datetime.now(UTC), policy.devices.identity_minutes)
        bound = _bound(self.store, policy)
        placed = where(fresh, bound, policy)
        self.by_ip, self.devices = _users(placed, policy), _devices(placed, bound)
