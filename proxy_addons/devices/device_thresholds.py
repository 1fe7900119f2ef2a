"""The thresholds one device is judged by: the policy's, with USB storage allowed only for
a device on `devices.removable_storage.allowed`.

The list names devices the way a school knows them (device id, hostname or asset tag), so
the asset tag is read from the inventory (set from the web app or the asset-log CSV). Each
device is told only whether it is allowed, never which other devices are.

The id (issued by the gateway at enrolment) and the asset tag (set by IT) are the gateway's
own; the hostname is whatever the device last said, and anyone with administrator rights on
a laptop can rename it. So a hostname on the list counts only while no other enrolled device
(not revoked) goes by the same name: a pupil's laptop renamed to an allowed device's name
gets nothing, and the allowed device itself is refused too until the clash is cleared, which
the IT provider sees on both devices' pages. Naming devices by id or asset tag avoids this.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import sqlalchemy as sa

from agent.checks.thresholds import Thresholds
from proxy_addons.core.policy.device_lists_section import usb_storage_allowed
from proxy_addons.core.policy.model import Devices
from proxy_addons.store import Store
from proxy_addons.store.schema import devices

logger = logging.getLogger(__name__)


def thresholds_for(store: Store, policy: Devices, device_id: str, hostname: str) -> Thresholds:
    """`policy.thresholds` for this device (its hostname as it just reported it)."""
    allowed = policy.usb_storage_allowed
    tag, name = None, None
    if allowed:
        try:
            with store.connect() as conn:
                tag = conn.execute(
                    sa.select(devices.c.asset_tag).where(devices.c.device_id == device_id)
                ).scalar()
                if usb_storage_allowed(allowed, hostname) and not _name_shared(
                    conn, device_id, hostname
                ):
                    name = hostname
        except sa.exc.DBAPIError:  # the report is stored: answer it, matching the id only
            logger.warning("device API: asset tag of %s not read", device_id)
    return replace(
        policy.thresholds,
        usb_storage_allowed=usb_storage_allowed(allowed, device_id, name, tag),
    )


def _name_shared(conn: sa.Connection, device_id: str, hostname: str) -> bool:
    """Whether another enrolled device (not revoked) goes by this hostname, in any case."""
    other = conn.execute(
        sa.select(devices.c.device_id)
        .where(
            sa.func.lower(devices.c.hostname) == hostname.strip().lower(),
            devices.c.device_id != device_id,
            devices.c.revoked_at.is_(None),
        )
        .limit(1)
    ).first()
    return other is not None


__all__ = ["thresholds_for"]
