"""The enrolled devices as the inventory shows them: each device's last report, compliance,
stale or revoked; a device that has not reported for `stale_days` counts as non-compliant."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from proxy_addons.record.access_export import csv_cell
from proxy_addons.store import Store
from proxy_addons.store.schema import devices


@dataclass(frozen=True)
class Device:
    device_id: str
    hostname: str
    enrolled_at: datetime
    os_name: str | None
    os_version: str | None
    serial: str | None
    agent_version: str | None
    last_user: str | None
    last_ips: tuple[str, ...]
    last_macs: tuple[str, ...]
    last_report_at: datetime | None
    last_generated_at: datetime | None
    reported_compliant: bool  # what the last report said
    results: tuple[dict[str, Any], ...]
    stale: bool  # no report within stale_days (or never)
    revoked_at: datetime | None = None  # its token is refused until it enrols again
    revoked_by: str | None = None
    report_address: str | None = None  # where its last report came from
    ignored_ips: tuple[str, ...] = ()  # listed in it but not believed (not where it came from)
    last_tunnel: dict[str, Any] | None = None  # its agent's word on its tunnel (TunnelState)
    tunnel_down_since: datetime | None = None  # off site without its tunnel since then
    allocated_to: str | None = None  # the asset log (devices/asset_log.py)
    asset_tag: str | None = None
    location: str | None = None
    source: str = "agent"  # "mdm": imported from the MDM's export, no agent (mdm_import.py)

    @property
    def from_mdm(self) -> bool:
        return self.source == "mdm"

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def compliant(self) -> bool:
        """Compliant only with a fresh report whose checks all passed, and not revoked."""
        return self.reported_compliant and not self.stale and not self.revoked


def _device(row: sa.Row[Any], now: datetime, stale_days: int) -> Device:
    last = row.last_report_at
    return Device(
        device_id=row.device_id,
        hostname=row.hostname,
        enrolled_at=row.enrolled_at,
        os_name=row.os_name,
        os_version=row.os_version,
        serial=row.serial,
        agent_version=row.agent_version,
        last_user=row.last_user,
        last_ips=tuple(row.last_ips or ()),
        last_macs=tuple(row.last_macs or ()),
        last_report_at=last,
        last_generated_at=row.last_generated_at,
        reported_compliant=bool(row.compliant),
        results=tuple(row.results or ()),
        stale=last is None or now - last > timedelta(days=stale_days),
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
        report_address=row.report_address,
        ignored_ips=tuple(row.ignored_ips or ()),
        last_tunnel=row.last_tunnel,
        tunnel_down_since=row.tunnel_down_since,
        allocated_to=row.allocated_to,
        asset_tag=row.asset_tag,
        location=row.location,
        source=row.source or "agent",
    )


def list_devices(store: Store, now: datetime, stale_days: int) -> list[Device]:
    """Every enrolled device, by hostname."""
    with store.connect() as conn:
        rows = conn.execute(sa.select(devices).order_by(devices.c.hostname, devices.c.device_id))
        return [_device(row, now, stale_days) for row in rows]


def get_device(store: Store, device_id: str, now: datetime, stale_days: int) -> Device | None:
    with store.connect() as conn:
        row = conn.execute(sa.select(devices).where(devices.c.device_id == device_id)).first()
    return None if row is None else _device(row, now, stale_days)


def stale_devices(store: Store, now: datetime, stale_days: int) -> list[Device]:
    """Devices with no report within `stale_days`: non-compliant until they report again."""
    return [d for d in list_devices(store, now, stale_days) if d.stale]


def user_at(store: Store, ip: str, now: datetime, minutes: int) -> str | None:
    """Who a recent report says is signed in on the device at `ip` (for identity)."""
    since = now - timedelta(minutes=minutes)
    for device in list_devices(store, now, stale_days=365):
        if (
            ip in device.last_ips
            and device.last_report_at is not None
            and device.last_report_at >= since
        ):
            return device.last_user
    return None


CSV_FIELDS = (
    "device_id",
    "hostname",
    "os_name",
    "os_version",
    "serial",
    "agent_version",
    "last_user",
    "ips",
    "macs",
    "report_address",
    "ignored_ips",
    "last_report_at",
    "compliant",
    "stale",
    "failing",
    "revoked",
    "allocated_to",
    "asset_tag",
    "location",
    "source",
)


def failing(device: Device) -> list[str]:
    """The checks of the last report that did not pass."""
    return [str(r.get("id")) for r in device.results if r.get("status") != "pass"]


def to_csv(found: list[Device]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    for d in found:
        writer.writerow(
            csv_cell(v)
            for v in [
                d.device_id,
                d.hostname,
                d.os_name or "",
                d.os_version or "",
                d.serial or "",
                d.agent_version or "",
                d.last_user or "",
                " ".join(d.last_ips),
                " ".join(d.last_macs),
                d.report_address or "",
                " ".join(d.ignored_ips),
                d.last_report_at.isoformat() if d.last_report_at else "",
                "yes" if d.compliant else "no",
                "yes" if d.stale else "no",
                " ".join(failing(d)),
                d.revoked_at.isoformat() if d.revoked_at else "",
                d.allocated_to or "",
                d.asset_tag or "",
                d.location or "",
                d.source,
            ]
        )
    return out.getvalue()


__all__ = [
    "CSV_FIELDS",
    "Device",
    "failing",
    "get_device",
    "list_devices",
    "stale_devices",
    "to_csv",
    "user_at",
]
