"""Enrolling devices and their tokens.

A device enrols once with the school's enrolment secret and gets a token of its own,
`<device_id>.<32 random bytes>`. Only the token's SHA-256 is stored: the token is random,
so a fast hash is as good as a slow one, and a stolen database holds no usable token.
Revoking a device refuses its token until it enrols again."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from proxy_addons.devices import tunnels
from proxy_addons.devices.inventory import Device, get_device
from proxy_addons.store import Store
from proxy_addons.store.schema import devices
from proxy_addons.workflow import audit

logger = logging.getLogger(__name__)

MAX_HOSTNAME = 253


class EnrolError(ValueError):
    """Enrolment refused; the message is safe to show the device."""


class NoSuchDevice(EnrolError):
    """Enrolling again under an id the gateway doesn't know."""


class DeviceTaken(EnrolError):
    """Enrolling again under the id of a device whose token still works."""


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
    if not hostname or len(hostname) > MAX_HOSTNAME or not hostname.isprintable():
        raise EnrolError(f"hostname should be one line of 1 to {MAX_HOSTNAME} characters")
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
            sa.select(devices.c.token_hash, devices.c.revoked_at, devices.c.source)
            .where(devices.c.device_id == device_id)
            .with_for_update()
        ).first()
        if row is None:
            raise NoSuchDevice(f"there is no device {device_id[:64]} to enrol again")
        if row.source == "mdm":  # imported from the MDM's export: no agent ever held its id
            raise NoSuchDevice(f"device {device_id} is known from the MDM only: enrol as new")
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
                token_hash=hash_token(token),
                hostname=hostname,
                revoked_at=None,
                revoked_by=None,
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
        # Its tunnel address is no longer bound to its key: the gateway's interface drops
        # the peer (ops/wireguard/peers.py) and the address stops naming it.
        address = tunnels.unbind(conn, device_id)
        detail = {"reason": reason} | ({"tunnel_address": address} if address else {})
        audit.append(
            conn,
            actor=by,
            action="device.revoked",
            subject=device_id,
            detail=detail,
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


__all__ = [
    "MAX_HOSTNAME",
    "DeviceTaken",
    "EnrolError",
    "NoSuchDevice",
    "TokenCheck",
    "check_token",
    "enrol",
    "hash_token",
    "read_secret",
    "revoke",
    "verify_token",
]
