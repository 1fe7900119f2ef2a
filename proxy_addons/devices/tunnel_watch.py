"""A school device off site whose tunnel has been down too long: one technical alert.

The device says so itself (its report's `tunnel`, stored as `devices.tunnel_down_since`);
reports made while the tunnel was down wait in the agent's spool and arrive when it is back,
so the alert may come late, but it comes, with how long the device was unfiltered or, when
the policy fails closed, cut off. One alert per time down (device_alerts keeps which).
"""

from __future__ import annotations

from datetime import datetime

from agent.report import DeviceReport
from proxy_addons.alerts.events import TUNNEL_DOWN, Audience, Event, local_time
from proxy_addons.core.policy.model import Policy
from proxy_addons.devices.alert_state import claim, forget
from proxy_addons.devices.reports import down_since
from proxy_addons.devices.watch import raise_technical
from proxy_addons.store import Store


def tunnel_event(report: DeviceReport, policy: Policy, since: datetime, at: datetime) -> Event:
    """Which device (never its user), since when, and what that meant for it."""
    tunnel = report.tunnel
    closed = tunnel is not None and tunnel.fail_closed
    minutes = int((at - since).total_seconds() // 60)
    return Event(
        kind=TUNNEL_DOWN,
        severity=3,
        audience=Audience.TECHNICAL,
        summary=f"Device {report.hostname} has been off site without its tunnel for "
        f"{minutes} minutes",
        fields={
            "hostname": report.hostname,
            "device_id": report.device_id,
            "down_since": local_time(policy.timezone, since),
            "meaning": "its web traffic was blocked (fail closed)"
            if closed
            else "its web traffic was not filtered by the school",
            "reason": (tunnel.reason if tunnel else "")[:200] or "-",
            "time": local_time(policy.timezone, at),
        },
        fold_key=f"{TUNNEL_DOWN}|{report.device_id}|{since.isoformat()}",
        at=at,
        timezone=policy.timezone.key,
    )


def alert_tunnel_down(store: Store, policy: Policy, report: DeviceReport, at: datetime) -> bool:
    """Raise the alert once the tunnel has been down longer than the policy allows; returns
    whether it was raised. A report with the tunnel working again clears the memory."""
    tunnel = policy.devices.tunnel
    since = down_since(report)
    if since is None:
        forget(store, TUNNEL_DOWN, report.device_id)
        return False
    if tunnel is None or (report.generated_at - since).total_seconds() < (
        tunnel.down_alert_minutes * 60
    ):
        return False
    if not claim(store, TUNNEL_DOWN, report.device_id, since.isoformat(), at):
        return False
    raise_technical(store, policy, tunnel_event(report, policy, since, report.generated_at))
    return True


__all__ = ["alert_tunnel_down", "tunnel_event"]
