"""The thresholds one device is judged by: the policy's, with USB storage allowed only for
a device on `devices.removable_storage.allowed`.

The list names devices the way a school knows them (device id, hostname or asset tag), so
the asset tag is read from the inventory (set from the web app or the asset-log CSV). Each
device is told only whether it is allowed, never which other devices are.
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
    tag = None
    if allowed:
        try:
            with store.connect() as conn:
                tag = conn.execute(
                    sa.select(devices.c.asset_tag).where(devices.c.device_id == device_id)
                ).scalar()
        except sa.exc.DBAPIError:  # the report is stored: answer it, matching id and name only
            logger.warning("device API: asset tag of %s not read", device_id)
    return replace(
        policy.thresholds,
        usb_storage_allowed=usb_storage_allowed(allowed, device_id, hostname, tag),
    )


__all__ = ["thresholds_for"]
