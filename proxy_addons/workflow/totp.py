"""Time-based one-time codes (RFC 6238: HMAC-SHA1, 30-second steps, 6 digits), as every
authenticator app makes them, and one-time recovery codes for a lost phone.

A few lines of the standard library, so the admin app needs no further package. A code is
accepted for the step it was made in and the one either side (a phone's clock a little
off); the caller remembers the last step accepted, so a code seen over someone's shoulder
can't be used again. Recovery codes are shown once and kept only as SHA-256 digests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from urllib.parse import quote, urlencode

STEP_SECONDS = 30
DIGITS = 6
DRIFT_STEPS = 1  # a step either side
RECOVERY_CODES = 10


def new_secret() -> str:
    """160 random bits in base32 (RFC 4226's recommended length), as apps expect it."""
    return base64.b32encode(secrets.token_bytes(20)).decode()


def code_at(secret: str, step: int, digits: int = DIGITS, digest: str = "sha1") -> str:
    """The code for one time step (RFC 4226's dynamic truncation)."""
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    mac = hmac.new(key, struct.pack(">Q", step), digest).digest()
    offset = mac[-1] & 0x0F
    number = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**digits).zfill(digits)


def step_of(unix_time: float) -> int:
    return int(unix_time // STEP_SECONDS)


def matching_step(secret: str, code: str, unix_time: float, after_step: int | None) -> int | None:
    """The time step `code` belongs to (this one or one either side), if it is later than
    `after_step` (the last one accepted: no replay); None if it doesn't match."""
    typed = "".join(code.split())
    if len(typed) != DIGITS or not typed.isdigit():
        return None
    now = step_of(unix_time)
    for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1):
        if after_step is not None and step <= after_step:
            continue
        if hmac.compare_digest(code_at(secret, step), typed):
            return step
    return None


def otpauth_uri(secret: str, account: str, issuer: str) -> str:
    """The `otpauth://` address authenticator apps read (as text or from a QR code)."""
    label = quote(f"{issuer}:{account}", safe="")
    query = urlencode({"secret": secret, "issuer": issuer, "digits": DIGITS,
                       "period": STEP_SECONDS, "algorithm": "SHA1"})  # fmt: skip
    return f"otpauth://totp/{label}?{query}"


def grouped(secret: str) -> str:
    """The secret in groups of four, easier to type into a phone."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def new_recovery_codes(count: int = RECOVERY_CODES) -> list[str]:
    """Codes like `k7qm-2xrd-9fwp` (60 random bits each): to print and keep somewhere safe."""
    alphabet = "23456789abcdefghjkmnpqrstuvwxyz"  # no 0/o, 1/l/i to misread
    return [
        "-".join("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(3))
        for _ in range(count)
    ]


def recovery_digest(code: str) -> str:
    """What is stored of a recovery code: typed with or without dashes, in any case."""
    plain = "".join(c for c in code.lower() if c.isalnum())
    return hashlib.sha256(plain.encode()).hexdigest()


__all__ = [
    "code_at",
    "grouped",
    "matching_step",
    "new_recovery_codes",
    "new_secret",
    "otpauth_uri",
    "recovery_digest",
    "step_of",
]
