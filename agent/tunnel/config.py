"""What the gateway and the agent share about a device's tunnel (docs/offsite.md).

`TunnelConfig` is the gateway's answer to POST /api/v1/tunnel: the device's tunnel address,
the gateway's public key and where to reach it (what the agent says back about its tunnel is
a report's `TunnelState`, agent/report.py). Plain JSON validated field by field, as the report
is, so a bad value is refused with a sentence naming the field.

WireGuard keys are Curve25519 keys written in base64 (44 characters); the private key is
made on the device and never leaves it.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent.report import ReportError

KEEPALIVE_SECONDS = 25  # keeps a home router's NAT mapping open
_ENDPOINT = re.compile(r"[A-Za-z0-9.:\[\]-]{1,260}")


def valid_key(text: object) -> bool:
    """A WireGuard key: 32 bytes in base64, spelt the one way `wg` spells it.

    Python's decoder ignores the last character's two spare bits, so four spellings decode
    to the same key; `wg` refuses all but the one with those bits zero. A second spelling
    would get past the store's "one key, one device" and then fail every `wg set`."""
    if not isinstance(text, str) or len(text) != 44:
        return False
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(raw) == 32 and base64.b64encode(raw).decode() == text


def new_private_key() -> str:
    raw = X25519PrivateKey.generate().private_bytes_raw()
    return base64.b64encode(raw).decode()


def public_key(private: str) -> str:
    """The public key that goes with a private one (what `wg pubkey` prints)."""
    key = X25519PrivateKey.from_private_bytes(base64.b64decode(private, validate=True))
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


@dataclass(frozen=True)
class TunnelConfig:
    """The device's side of its tunnel, as the gateway gives it."""

    address: str  # the device's tunnel address, e.g. 10.123.0.7
    gateway_public_key: str
    endpoint: str  # host:port, from outside the school
    gateway_address: str  # the gateway inside the tunnel (its device API answers there)
    allowed_ips: tuple[str, ...]  # what goes through the tunnel: everything but passthrough
    onsite_endpoint: str | None = None  # host:port on the school network
    dns: tuple[str, ...] = ()
    on_site: bool = False  # keep the tunnel up on the school network too
    fail_closed: bool = False  # off site with the tunnel down: block web traffic
    keepalive: int = KEEPALIVE_SECONDS

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "gateway_public_key": self.gateway_public_key,
            "endpoint": self.endpoint,
            "gateway_address": self.gateway_address,
            "allowed_ips": list(self.allowed_ips),
            "onsite_endpoint": self.onsite_endpoint,
            "dns": list(self.dns),
            "on_site": self.on_site,
            "fail_closed": self.fail_closed,
            "keepalive": self.keepalive,
        }


def _address(data: dict[str, Any], key: str) -> str:
    try:
        return str(ipaddress.IPv4Address(str(data.get(key))))
    except ValueError as exc:
        raise ReportError(key, "should be an IPv4 address") from exc


def _endpoint(data: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not _ENDPOINT.fullmatch(value):
        raise ReportError(key, "should be host:port")
    return value


def _flag(data: dict[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise ReportError(key, "should be true or false")
    return value


def parse_config(data: Any) -> TunnelConfig:
    """Validate the gateway's answer into a TunnelConfig; ReportError names the field."""
    if not isinstance(data, dict):
        raise ReportError("tunnel", "should be a JSON object")
    if not valid_key(data.get("gateway_public_key")):
        raise ReportError("gateway_public_key", "should be a WireGuard key (44 characters)")
    allowed = data.get("allowed_ips")
    if not isinstance(allowed, list) or not allowed or len(allowed) > 256:
        raise ReportError("allowed_ips", "should be a list of networks")
    for network in allowed:
        try:
            ipaddress.ip_network(str(network))
        except ValueError as exc:
            raise ReportError("allowed_ips", f"'{str(network)[:50]}' is not a network") from exc
    dns = data.get("dns", [])
    if not isinstance(dns, list) or len(dns) > 4:
        raise ReportError("dns", "should be a list of at most 4 addresses")
    for address in dns:
        try:
            ipaddress.ip_address(str(address))
        except ValueError as exc:
            raise ReportError("dns", f"'{str(address)[:50]}' is not an address") from exc
    keepalive = data.get("keepalive", KEEPALIVE_SECONDS)
    if not isinstance(keepalive, int) or isinstance(keepalive, bool) or not 0 <= keepalive <= 600:
        raise ReportError("keepalive", "should be seconds from 0 to 600")
    endpoint = _endpoint(data, "endpoint")
    assert endpoint is not None
    return TunnelConfig(
        address=_address(data, "address"),
        gateway_public_key=str(data["gateway_public_key"]),
        endpoint=endpoint,
        gateway_address=_address(data, "gateway_address"),
        allowed_ips=tuple(str(n) for n in allowed),
        onsite_endpoint=_endpoint(data, "onsite_endpoint", required=False),
        dns=tuple(str(a) for a in dns),
        on_site=_flag(data, "on_site"),
        fail_closed=_flag(data, "fail_closed"),
        keepalive=keepalive,
    )


__all__ = [
    "KEEPALIVE_SECONDS",
    "TunnelConfig",
    "new_private_key",
    "parse_config",
    "public_key",
    "valid_key",
]
