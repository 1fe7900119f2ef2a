"""Storing a device's report, and which address it speaks for.

A report is accepted only if it is newer than the last one accepted for the device, and the
check is part of the UPDATE itself, so two copies arriving at once are stored once. A report
dated more than `FUTURE_SLACK` ahead of the gateway's clock is refused, and one dated a little
ahead is stored as made when it arrived: a device's clock running fast never holds off the
reports after it.

A report speaks only for the address it came from (`source`: as the gateway saw it, or as a
trusted relay forwarded it; see devices/api.py), and only if the report lists that address
itself. That is all identity uses (`last_ips`); the other addresses it lists are kept apart
(`ignored_ips`), shown and logged, and never put anyone's name or profile on them.

Every accepted report is also kept in `device_reports`, in the same transaction, so the
device's page can show when it became non-compliant and for how long (devices/history.py);
the policy's `retention.device_reports_days` bounds how long (workflow/retention.py)."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from agent.report import DeviceReport
from proxy_addons.core.policy.model import IPNetwork
from proxy_addons.store import Store
from proxy_addons.store.schema import device_reports, devices

logger = logging.getLogger(__name__)

FUTURE_SLACK = timedelta(minutes=2)  # device clocks drift a little; more than this is refused


class ReportRejected(ValueError):
    """A report that is well-formed but can't be accepted (replayed, too far ahead)."""


def believed_ips(claimed: tuple[str, ...], source: str | None) -> tuple[str, ...]:
    """The addresses a report from `source` may speak for: `source`, if the report lists it."""
    here = address_of(source)
    if here is None or here not in {address_of(ip) for ip in claimed}:
        return ()
    return (str(here),)


def address_of(
    text: str | None,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address in one spelling: IPv4 mapped into IPv6 (a dual-stack socket's view) as IPv4."""
    try:
        found = ipaddress.ip_address((text or "").strip())
    except ValueError:
        return None
    mapped = found.ipv4_mapped if isinstance(found, ipaddress.IPv6Address) else None
    return mapped or found


def request_address(environ: Mapping[str, Any], relays: Sequence[IPNetwork]) -> str | None:
    """The address a device API request comes from; None when it can't be told (then it
    speaks for no address).

    The peer as the socket saw it (before any ProxyFix from `--trusted-proxies`); while that
    is a trusted relay, the entry it appended to X-Forwarded-For (read from the right).
    """
    before_fix = environ.get("werkzeug.proxy_fix.orig") or {}
    here = address_of(before_fix.get("REMOTE_ADDR") or environ.get("REMOTE_ADDR"))
    hops = str(environ.get("HTTP_X_FORWARDED_FOR") or "").split(",")
    while here is not None and any(here in relay for relay in relays):
        here = address_of(hops.pop()) if hops else None  # a relay that forwards no one
    return str(here) if here is not None else None


def down_since(report: DeviceReport) -> datetime | None:
    """Since when the device's tunnel has been wanted and down, by its own account."""
    tunnel = report.tunnel
    if tunnel is None or tunnel.state != "down":
        return None
    return min(tunnel.since or report.generated_at, report.generated_at)


def record_report(
    store: Store,
    report: DeviceReport,
    now: datetime,
    *,
    source: str | None,
    tunnels: IPNetwork | None = None,
) -> tuple[str, ...]:
    """Store a report as the device's latest; ReportRejected if it is replayed or from ahead.

    `source` is the address the report came from; it returns the listed addresses that were
    not believed (see the module's docstring). A report from inside `tunnels` (the policy's
    tunnel pool) keeps none of the others: they are the pupil's home network.
    """
    if report.generated_at > now + FUTURE_SLACK:
        minutes = int(FUTURE_SLACK.total_seconds() // 60)
        raise ReportRejected(
            f"generated_at is more than {minutes} minutes ahead of the gateway's clock: "
            "check the device's time"
        )
    made = min(report.generated_at, now)  # never stored ahead of when it arrived
    believed = believed_ips(report.ips, source)
    kept = {address_of(ip) for ip in believed}
    ignored = tuple(ip for ip in report.ips if address_of(ip) not in kept)
    if tunnels is not None and (here := address_of(source)) is not None and here in tunnels:
        # Through its tunnel the device's other addresses are its home's network: nothing
        # the school needs, so neither kept nor logged (nor is a tunnel address believed
        # from a report: identity there is the key's, devices/identity.py).
        ignored = ()
    newer = sa.or_(
        devices.c.last_generated_at.is_(None),
        devices.c.last_generated_at < report.generated_at,
        devices.c.last_generated_at > now,  # stored ahead of the clock (before 0010): no lock
    )
    results = [
        {"id": r.id, "status": r.status, "reason": r.reason, "evidence": r.evidence}
        for r in report.results
    ]
    with store.begin() as conn:
        done = conn.execute(
            devices.update()
            .where(devices.c.device_id == report.device_id, newer)
            .values(
                hostname=report.hostname,
                os_name=report.os_name,
                os_version=report.os_version,
                serial=report.serial,
                agent_version=report.agent_version,
                last_user=report.user,
                last_ips=list(believed),
                last_macs=list(report.macs),
                last_report_at=now,
                last_generated_at=made,
                report_address=source,
                ignored_ips=list(ignored),
                compliant=report.compliant,
                last_tunnel=report.tunnel.to_json() if report.tunnel else None,
                tunnel_down_since=down_since(report),
                results=results,
            )
            .returning(devices.c.enrolled_at)
        ).first()
        if done is None:
            raise ReportRejected("a report at least as new as this one was already accepted")
        conn.execute(
            device_reports.insert().values(
                device_id=report.device_id,
                # History never starts before the device was enrolled: a report dated
                # earlier is a clock gone wrong (a flat CMOS battery) or a copied report, and
                # taken at its word it would write months nobody saw into the term's figures.
                # Its checks still count, kept as of the enrolment.
                generated_at=max(made, done.enrolled_at),
                received_at=now,
                compliant=report.compliant,
                results=results,
                source="agent",
            )
        )
    if ignored:
        log = logger.warning if not believed else logger.info
        log(
            "device %s reported from %s: not believed for %s (a report speaks only for the "
            "address it comes from)",
            report.device_id,
            source or "an unknown address",
            ", ".join(ignored),
        )
    return ignored


__all__ = [
    "FUTURE_SLACK",
    "ReportRejected",
    "address_of",
    "believed_ips",
    "down_since",
    "record_report",
    "request_address",
]
