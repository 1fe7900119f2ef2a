"""Who is at which IP address, from the device agents' fresh reports.

In transparent mode there is no proxy sign-in: a recent report saying which
user is signed in on the device at an address lets the filter and the access
log attribute that address's traffic to the user (for `devices.identity_minutes`).
Read from the store every REFRESH_SECONDS off the request path (`refresh`, a
`core.periodic` job of the gateway's services); the request path
only looks in a dict.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from proxy_addons.core.policy.model import Audience, Policy
from proxy_addons.devices.inventory import list_devices
from proxy_addons.store import Store

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 5.0


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


def users_by_ip(
    store: Store, now: datetime, minutes: int, policy: Policy | None = None
) -> dict[str, str]:
    """IP -> signed-in user, from reports newer than `minutes` (newest report wins); with
    a policy, users it puts in a staff profile are not taken from a report (`may_name`)."""
    since = now - timedelta(minutes=minutes)
    # Freshness is when the device saw that user signed in, not when the report arrived
    # (a report kept in the agent's spool may be old).
    fresh = [
        d
        for d in list_devices(store, now, stale_days=365)
        if d.last_user
        and not d.revoked  # a revoked device's word is no longer taken
        and d.last_generated_at is not None
        and d.last_generated_at >= since
    ]
    fresh.sort(key=lambda d: d.last_generated_at or since)
    named = {}
    for d in fresh:
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
        for ip in d.last_ips:
            named[ip] = user
    return named


class DeviceIdentities:
    def __init__(self, store: Store, policy: Callable[[], Policy]) -> None:
        self.store = store
        self.policy = policy
        self.by_ip: dict[str, str] = {}

    def user_at(self, ip: str | None) -> str | None:
        return self.by_ip.get(ip) if ip else None

    def refresh(self) -> None:
        minutes = self.policy().devices.identity_minutes
        self.by_ip = users_by_ip(self.store, datetime.now(UTC), minutes, self.policy())
