"""The device report: the one thing the agent and the gateway share.

Plain JSON with a version, validated field by field on both sides, so a
malformed or oversized report is refused with a sentence naming the field.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

SCHEMA_VERSION = 1
MAX_REPORT_BYTES = 256 * 1024
MAX_RESULTS = 64
MAX_EVIDENCE_CHARS = 4000
Status = Literal["pass", "fail", "unknown"]
TunnelUp = Literal["up", "down", "off"]
Where = Literal["on_site", "off_site", "unknown"]
STATUSES = ("pass", "fail", "unknown")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


class ReportError(ValueError):
    """A report that can't be accepted; `field` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class CheckResult:
    id: str  # e.g. "disk_encryption", "screen_lock", "patches", "firewall"
    status: Status  # unknown never counts as compliant
    reason: str  # a sentence for the IT provider
    evidence: dict[str, Any] = field(default_factory=dict)  # raw values read


@dataclass(frozen=True)
class TunnelState:
    """What the agent says about its tunnel in a report."""

    state: TunnelUp  # up; down (wanted but not working); off (not wanted here: on site)
    where: Where  # where the device found itself
    since: datetime | None = None  # when the tunnel entered this state
    last_handshake: datetime | None = None  # the tunnel's latest handshake with the gateway
    fail_closed: bool = False  # the device's web traffic is blocked while the tunnel is down
    reason: str = ""  # a sentence for the IT provider

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "where": self.where,
            "since": self.since.isoformat() if self.since else None,
            "last_handshake": self.last_handshake.isoformat() if self.last_handshake else None,
            "fail_closed": self.fail_closed,
            "reason": self.reason,
        }


def _when(data: dict[str, Any], key: str) -> datetime | None:
    value = data.get(key)
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise ReportError(f"tunnel.{key}", "should be an ISO 8601 time") from exc
    if when.tzinfo is None:
        raise ReportError(f"tunnel.{key}", "should include a time zone")
    return when


def parse_state(data: Any) -> TunnelState | None:
    """A report's `tunnel` field; None when the report has none."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ReportError("tunnel", "should be an object")
    if data.get("state") not in ("up", "down", "off"):
        raise ReportError("tunnel.state", "should be up, down or off")
    if data.get("where") not in ("on_site", "off_site", "unknown"):
        raise ReportError("tunnel.where", "should be on_site, off_site or unknown")
    reason = data.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 500:
        raise ReportError("tunnel.reason", "should be text of at most 500 characters")
    fail_closed = data.get("fail_closed", False)
    if not isinstance(fail_closed, bool):
        raise ReportError("tunnel.fail_closed", "should be true or false")
    return TunnelState(
        state=data["state"],
        where=data["where"],
        since=_when(data, "since"),
        last_handshake=_when(data, "last_handshake"),
        fail_closed=fail_closed,
        reason=reason,
    )


@dataclass(frozen=True)
class DeviceReport:
    device_id: str
    hostname: str
    os_name: str  # linux | macos | windows
    os_version: str
    agent_version: str
    generated_at: datetime
    results: tuple[CheckResult, ...]
    serial: str | None = None
    user: str | None = None  # the signed-in user
    ips: tuple[str, ...] = ()
    macs: tuple[str, ...] = ()
    os_release: str | None = None  # distribution / edition, e.g. "ubuntu 24.04"
    tunnel: TunnelState | None = None  # its off-site tunnel, when it has one

    @property
    def compliant(self) -> bool:
        return bool(self.results) and all(r.status == "pass" for r in self.results)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["schema"] = SCHEMA_VERSION
        out["generated_at"] = self.generated_at.isoformat()
        out["tunnel"] = self.tunnel.to_json() if self.tunnel else None
        return out


def _text(data: dict[str, Any], key: str, limit: int, *, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ReportError(key, "should be non-empty text")
    if len(value) > limit:
        raise ReportError(key, f"is longer than {limit} characters")
    if not value.isprintable():  # a name printed in a terminal or a config file: one line
        raise ReportError(key, "may not contain control characters")
    return value.strip()


def parse_report(data: Any) -> DeviceReport:
    """Validate decoded JSON into a DeviceReport; raise ReportError naming the field."""
    if not isinstance(data, dict):
        raise ReportError("report", "should be a JSON object")
    if data.get("schema") != SCHEMA_VERSION:
        raise ReportError("schema", f"should be {SCHEMA_VERSION}")
    device_id = _text(data, "device_id", 64)
    assert device_id is not None
    if not _ID.fullmatch(device_id):
        raise ReportError("device_id", "may hold letters, digits, '.', '_', ':' and '-' only")
    os_name = _text(data, "os_name", 16)
    if os_name not in ("linux", "macos", "windows"):
        raise ReportError("os_name", "should be linux, macos or windows")
    try:
        generated = datetime.fromisoformat(str(data.get("generated_at")))
    except ValueError as exc:
        raise ReportError("generated_at", "should be an ISO 8601 time") from exc
    if generated.tzinfo is None:
        raise ReportError("generated_at", "should include a time zone")
    raw_results = data.get("results")
    if not isinstance(raw_results, list) or not raw_results:
        raise ReportError("results", "should be a non-empty list of check results")
    if len(raw_results) > MAX_RESULTS:
        raise ReportError("results", f"has more than {MAX_RESULTS} entries")
    results = []
    for i, raw in enumerate(raw_results):
        where = f"results[{i}]"
        if not isinstance(raw, dict):
            raise ReportError(where, "should be an object")
        check_id = raw.get("id")
        if not isinstance(check_id, str) or not _ID.fullmatch(check_id):
            raise ReportError(f"{where}.id", "should be a short name like disk_encryption")
        if raw.get("status") not in STATUSES:
            raise ReportError(f"{where}.status", "should be pass, fail or unknown")
        reason = raw.get("reason")
        if not isinstance(reason, str) or len(reason) > 500:
            raise ReportError(f"{where}.reason", "should be text of at most 500 characters")
        evidence = raw.get("evidence", {})
        if not isinstance(evidence, dict) or len(repr(evidence)) > MAX_EVIDENCE_CHARS:
            raise ReportError(f"{where}.evidence", "should be a small object")
        results.append(CheckResult(check_id, raw["status"], reason, evidence))
    ips = _list(data, "ips", 32)
    for ip in ips:
        try:
            ipaddress.ip_address(ip)
        except ValueError as exc:
            raise ReportError("ips", f"'{ip[:50]}' is not an IP address") from exc
    macs = tuple(m.lower() for m in _list(data, "macs", 32))
    for mac in macs:
        if not _MAC.fullmatch(mac):
            raise ReportError("macs", f"'{mac[:50]}' is not a MAC address like 00:11:22:33:44:55")
    return DeviceReport(
        device_id=device_id,
        hostname=_text(data, "hostname", 253) or "",
        os_name=os_name,
        os_version=_text(data, "os_version", 64) or "",
        agent_version=_text(data, "agent_version", 32) or "",
        generated_at=generated,
        results=tuple(results),
        serial=_text(data, "serial", 128, required=False),
        user=_text(data, "user", 200, required=False),
        ips=ips,
        macs=macs,
        os_release=_text(data, "os_release", 128, required=False),
        tunnel=parse_state(data.get("tunnel")),
    )


def _list(data: dict[str, Any], key: str, limit: int) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or len(value) > limit:
        raise ReportError(key, f"should be a list of at most {limit} entries")
    if not all(isinstance(v, str) and len(v) <= 64 for v in value):
        raise ReportError(key, "should hold short text entries")
    return tuple(value)
