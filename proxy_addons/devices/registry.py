"""Enrolled devices in the store: enrolment, tokens, reports and the inventory.

A device enrols once with the school's enrolment secret and gets a token of its own,
`<device_id>.<32 random bytes>`. Only the token's SHA-256 is stored: the token is random,
so a fast hash is as good as a slow one, and a stolen database holds no usable token.

A report is accepted only if it is newer than the last one accepted for the device, and the
check is part of the UPDATE itself, so two copies arriving at once are stored once. A report
dated more than `FUTURE_SLACK` ahead of the gateway's clock is refused, and one dated a little
ahead is stored as made when it arrived: a device's clock running fast never holds off the
reports after it.

A report speaks only for the address it came from (`source`: as the gateway saw it, or as a
trusted relay forwarded it; see device_api.py), and only if the report lists that address
itself. That is all identity uses (`last_ips`); the other addresses it lists are kept apart
(`ignored_ips`), shown and logged, and never put anyone's name or profile on them.
A device that has not reported for `stale_days` counts as non-compliant.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import ipaddress
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from agent.report import DeviceReport
from proxy_addons.core.policy.model import IPNetwork
from proxy_addons.store import Store
from proxy_addons.store.schema import devices
from proxy_addons.workflow import audit

logger = logging.getLogger(__name__)

FUTURE_SLACK = timedelta(minutes=2)  # device clocks drift a little; more than this is refused
MAX_HOSTNAME = 253


class EnrolError(ValueError):
    """Enrolment refused; the message is safe to show the device."""


class NoSuchDevice(EnrolError):
    """Enrolling again under an id the gateway doesn't know."""


class DeviceTaken(EnrolError):
    """Enrolling again under the id of a device whose token still works."""


class ReportRejected(ValueError):
    """A report that is well-formed but can't be accepted (replayed, too far ahead)."""


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

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def compliant(self) -> bool:
        """Compliant only with a fresh report whose checks all passed, and not revoked."""
        return self.reported_compliant and not self.stale and not self.revoked


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def read_secret(path: Path | None) -> bytes | None:
    """The enrolment secret from its file (read on each use, so it can be changed)."""
    if path is None:
        return None
    try:
        value = path.read_bytes().strip()
    except OSError as exc:
        logger.error("enrolment secret file %s can't be read: %s", path, exc.strerror)
        return None
    return value or None


def enrol(
    store: Store,
    given: str,
    expected: bytes | None,
    hostname: str,
    now: datetime,
    *,
    device_id: str | None = None,
    current_token: str | None = None,
    address: str | None = None,
) -> tuple[str, str]:
    """Enrol a device: returns (device_id, token); the token is shown once and never stored.

    With `device_id`, the device enrols again under its old id (kept history) and gets a new
    token, the old one stops working. That is allowed for a revoked device, or with the
    device's current token (a key change); never to take over a working device's id.
    """
    if expected is None:
        raise EnrolError("enrolment is not set up on this gateway")
    if not hmac.compare_digest(given.encode(), expected):
        raise EnrolError("the enrolment secret is wrong")
    hostname = hostname.strip()
    if not hostname or len(hostname) > MAX_HOSTNAME:
        raise EnrolError(f"hostname should be text of 1 to {MAX_HOSTNAME} characters")
    if device_id is not None:
        return _reenrol(store, device_id, hostname, now, current_token, address)
    device_id = f"dev-{secrets.token_hex(8)}"
    token = f"{device_id}.{secrets.token_urlsafe(32)}"
    with store.begin() as conn:
        conn.execute(
            devices.insert().values(
                device_id=device_id,
                token_hash=hash_token(token),
                enrolled_at=now,
                hostname=hostname,
                last_ips=[],
                last_macs=[],
                compliant=False,
                results=[],
            )
        )
        audit.append(
            conn,
            actor=f"device {device_id}",
            action="device.enrolled",
            subject=device_id,
            detail={"hostname": hostname},
            address=address,
            at=now,
        )
    logger.info("device %s (%s) enrolled", device_id, hostname)
    return device_id, token


def _reenrol(
    store: Store,
    device_id: str,
    hostname: str,
    now: datetime,
    current_token: str | None,
    address: str | None,
) -> tuple[str, str]:
    token = f"{device_id}.{secrets.token_urlsafe(32)}"
    with store.begin() as conn:
        row = conn.execute(
            sa.select(devices.c.token_hash, devices.c.revoked_at)
            .where(devices.c.device_id == device_id)
            .with_for_update()
        ).first()
        if row is None:
            raise NoSuchDevice(f"there is no device {device_id[:64]} to enrol again")
        holds_token = current_token is not None and hmac.compare_digest(
            hash_token(current_token), row.token_hash
        )
        if row.revoked_at is None and not holds_token:
            raise DeviceTaken(
                f"device {device_id} is enrolled and its token works: revoke it first "
                f"(schoolgate devices revoke {device_id}) or enrol as a new device"
            )
        conn.execute(
            devices.update()
            .where(devices.c.device_id == device_id)
            .values(
                token_hash=hash_token(token), hostname=hostname, revoked_at=None, revoked_by=None
            )
        )
        audit.append(
            conn,
            actor=f"device {device_id}",
            action="device.reenrolled",
            subject=device_id,
            detail={"hostname": hostname, "was_revoked": row.revoked_at is not None},
            address=address,
            at=now,
        )
    logger.info("device %s (%s) enrolled again with a new token", device_id, hostname)
    return device_id, token


def revoke(store: Store, device_id: str, by: str, reason: str, now: datetime) -> Device:
    """Refuse the device's token from now on (until it enrols again); audited."""
    with store.begin() as conn:
        done = conn.execute(
            devices.update()
            .where(devices.c.device_id == device_id, devices.c.revoked_at.is_(None))
            .values(revoked_at=now, revoked_by=by)
        ).rowcount
        if done != 1:
            exists = conn.execute(
                sa.select(devices.c.revoked_at).where(devices.c.device_id == device_id)
            ).first()
            if exists is None:
                raise KeyError(device_id)
            raise ValueError(f"device {device_id} is already revoked")
        audit.append(
            conn,
            actor=by,
            action="device.revoked",
            subject=device_id,
            detail={"reason": reason},
            at=now,
        )
    logger.info("device %s revoked by %s", device_id, by)
    found = get_device(store, device_id, now, stale_days=365)
    assert found is not None
    return found


@dataclass(frozen=True)
class TokenCheck:
    device_id: str | None  # the device the token belongs to, when it is valid
    revoked_at: datetime | None = None  # set when it was that device's token, now revoked


def check_token(store: Store, token: str) -> TokenCheck:
    """Whose token this is, and whether it was revoked; constant-time hash comparison."""
    device_id, dot, _ = token.partition(".")
    if not dot or not device_id or len(token) > 200:
        return TokenCheck(None)
    with store.connect() as conn:
        row = conn.execute(
            sa.select(devices.c.token_hash, devices.c.revoked_at).where(
                devices.c.device_id == device_id
            )
        ).first()
    if row is None:
        hmac.compare_digest(hash_token(token), "0" * 64)  # same work either way
        return TokenCheck(None)
    if not hmac.compare_digest(hash_token(token), row.token_hash):
        return TokenCheck(None)
    if row.revoked_at is not None:
        return TokenCheck(None, row.revoked_at)
    return TokenCheck(device_id)


def verify_token(store: Store, token: str) -> str | None:
    """The device id the token belongs to, or None (unknown, wrong or revoked)."""
    return check_token(store, token).device_id


def believed_ips(claimed: tuple[str, ...], source: str | None) -> tuple[str, ...]:
    """The addresses a report from `source` may speak for: `source`, if the report lists it."""
    here = address_of(source)
    if here is None or here not in {address_of(ip) for ip in claimed}:
        return ()
    return (str(here),)


def address_of(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
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


def record_report(
    store: Store, report: DeviceReport, now: datetime, *, source: str | None
) -> tuple[str, ...]:
    """Store a report as the device's latest; ReportRejected if it is replayed or from ahead.

    `source` is the address the report came from; it returns the listed addresses that were
    not believed (see the module's docstring).
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
    newer = sa.or_(
        devices.c.last_generated_at.is_(None),
        devices.c.last_generated_at < report.generated_at,
        devices.c.last_generated_at > now,  # stored ahead of the clock (before 0010): no lock
    )
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
                results=[
                    {"id": r.id, "status": r.status, "reason": r.reason, "evidence": r.evidence}
                    for r in report.results
                ],
            )
        )
    if done.rowcount != 1:
        raise ReportRejected("a report at least as new as this one was already accepted")
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
            _cell(v)
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
            ]
        )
    return out.getvalue()


def _cell(value: str) -> str:
    """A cell a spreadsheet won't run as a formula (hostnames and user names come from devices)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


__all__ = [
    "Device",
    "DeviceTaken",
    "EnrolError",
    "NoSuchDevice",
    "ReportRejected",
    "TokenCheck",
    "address_of",
    "believed_ips",
    "request_address",
    "check_token",
    "enrol",
    "get_device",
    "list_devices",
    "read_secret",
    "record_report",
    "revoke",
    "stale_devices",
    "to_csv",
    "user_at",
    "verify_token",
]
