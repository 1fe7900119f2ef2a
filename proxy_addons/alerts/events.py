"""What an alert is: an `Event`, already cut down for its audience, and the technical events
the gateway raises about itself (a refused policy, a stuck outbox, a refused CA).

An `Event` is built already cut down for its audience (UK GDPR data minimisation): a
safeguarding event carries what the DSL needs to act (the user, the search term, the site);
a technical event, for the IT provider, never names a pupil: it has the profile, the block's
reference (which the school looks up in its access log) and keyed pseudonyms of the user and
device, stable so repeats can be seen, linkable to a person only with the school's key. An
illegal-tier event carries no address at all, only "illegal-tier list entry", the list and
the block's reference, so nobody is sent a link to illegal material.

Events from a request are built in request_events.py, others by their raisers (checks,
devices); dispatch.py raises them all, routing.py picks the channels, the outbox stores and
folds them, and wording.py renders one for sending.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from proxy_addons.core.policy.model import Policy

# Event kinds (also the syslog MSGID and, prefixed "alert.", the notification kind).
RISK_PHRASE = "risk_phrase"
ILLEGAL_TIER = "illegal_tier"
HIGH_RISK_BLOCK = "high_risk_block"
REPEATED_BLOCKS = "repeated_blocks"
CIRCUMVENTION = "circumvention"
POLICY_RELOAD_FAILED = "policy_reload_failed"
OUTBOX_STUCK = "outbox_stuck"
CA_REFUSED = "ca_refused"  # a device that trusted the school's CA refuses it (ca_trust.py)
# Device inventory events (technical; built in devices/watch.py).
DEVICE_NONCOMPLIANT = "device_noncompliant"
DEVICE_STALE = "device_stale"
DEVICE_UNKNOWN = "device_unknown"  # a MAC on the network no enrolled device reported
TUNNEL_DOWN = "tunnel_down"  # a device off site without its tunnel (devices/tunnel_watch.py)


LABELS = {
    "user": "User",
    "device": "Device",
    "profile": "Profile",
    "user_ref": "User (pseudonym)",
    "device_ref": "Device (pseudonym)",
    "search": "Search",
    "site": "Site",
    "page": "Page",
    "category": "Category",
    "phrase": "Matched phrase",
    "matched": "Text matched",
    "score": "Content score",  # content_filter.py: a page blocked for what it says
    "list": "List",
    "attempts": "Attempts",
    "sites": "Sites",
    "categories": "Categories",
    "reference": "Reference",
    "time": "Time",
    "error": "Error",
    "policy": "Policy file",
    "channel": "Channel",
    "waiting": "Alerts waiting",
    "oldest": "Oldest since",
    "hostname": "Hostname",
    "device_id": "Device id",
    "checks": "Failing checks",
    "last_report": "Last report",
    "down_since": "Tunnel down since",
    "meaning": "What it meant",
    "reason": "Reason",
    "mac": "MAC address",
    "ip": "IP address",
    "vendor": "Vendor hint",
    "first_seen": "First seen",
    "lost": "Records lost",  # state_health.py
    "action": "What to do",
    "console": "Act on it in the console",  # dispatch.with_link: the alert's page
    "reporter": "Reported by",  # workflow/user_reports.py: a report from the portal
    "reporter_device": "Reporter's device",
    "reporter_device_id": "Reporter's device id",
    "report": "What they reported",
    "message": "In their words",
}


class Audience(enum.StrEnum):
    SAFEGUARDING = "safeguarding"  # the DSL and deputies
    TECHNICAL = "technical"  # the IT provider


@dataclass(frozen=True)
class Event:
    """Something a person should act on, already cut down to what its audience may see."""

    kind: str
    severity: int  # 1 (note) to 5 (act now)
    audience: Audience
    summary: str  # one line with no personal data: subjects, previews, syslog
    fields: dict[str, str]  # key (see LABELS) -> value, in the order shown
    fold_key: str  # repeats with the same key within the fold window become one alert
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    timezone: str = "UTC"  # the school's, for times shown to people

    def __post_init__(self) -> None:
        if not 1 <= self.severity <= 5:
            raise ValueError(f"severity must be 1-5, not {self.severity}")
        object.__setattr__(self, "audience", Audience(self.audience))
        object.__setattr__(self, "summary", " ".join(self.summary.split()))

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "audience": self.audience.value,
            "summary": self.summary,
            "fields": dict(self.fields),
            "fold_key": self.fold_key,
            "at": self.at.isoformat(),
            "timezone": self.timezone,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Event:
        return cls(
            kind=data["kind"],
            severity=int(data["severity"]),
            audience=Audience(data["audience"]),
            summary=data["summary"],
            fields={str(k): str(v) for k, v in data["fields"].items()},
            fold_key=data["fold_key"],
            at=datetime.fromisoformat(data["at"]),
            timezone=data.get("timezone", "UTC"),
        )


class Pseudonymiser:
    """Stable, keyed pseudonyms for technical alerts: the same device gets the same reference,
    but only someone holding the key (the school) can tell whose it is."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the pseudonym key must be at least 16 bytes")
        self._key = key

    def __call__(self, prefix: str, value: str) -> str:
        mac = hmac.new(self._key, f"{prefix}:{value}".encode(), hashlib.sha256).hexdigest()
        return f"{prefix}-{mac[:12]}"


def local_time(policy_tz: ZoneInfo, at: datetime) -> str:
    """How every alert writes a time: in the school's time zone, with its name."""
    return at.astimezone(policy_tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def reload_failed_event(policy: Policy | None, message: str, at: datetime | None = None) -> Event:
    """A policy edit was refused; the last good policy stays in force until it is fixed."""
    at = at or datetime.now(UTC)
    tz = policy.timezone if policy else ZoneInfo("UTC")
    fields = {"policy": str(policy.path) if policy else "", "error": message.strip()[:2000]}
    fields["time"] = local_time(tz, at)
    return Event(
        kind=POLICY_RELOAD_FAILED,
        severity=4,
        audience=Audience.TECHNICAL,
        summary="Policy reload failed: the last good policy stays in force",
        fields=fields,
        fold_key=f"{POLICY_RELOAD_FAILED}|{fields['policy']}",
        at=at,
        timezone=tz.key,
    )


def ca_refused_event(device: str, site: str, policy: Policy | None) -> Event:
    """A device that completed decrypted handshakes refused the school's CA for a site: a
    pinned app, a CA removed, or a client opting out of monitoring on purpose."""
    at = datetime.now(UTC)
    tz = policy.timezone if policy else ZoneInfo("UTC")
    return Event(
        kind=CA_REFUSED,
        severity=3,
        audience=Audience.TECHNICAL,
        summary="A device that trusted the school's CA refused it for a site",
        fields={"ip": device, "site": site, "time": local_time(tz, at)},
        fold_key=f"{CA_REFUSED}|{device}",
        at=at,
        timezone=tz.key,
    )


def outbox_stuck_event(
    channel: str, waiting: int, oldest: datetime, error: str, timezone: str = "UTC"
) -> Event:
    """Alerts for `channel` keep failing: someone must look at the channel."""
    at = datetime.now(UTC)
    tz = ZoneInfo(timezone)
    return Event(
        kind=OUTBOX_STUCK,
        severity=4,
        audience=Audience.TECHNICAL,
        summary=f"Alerts are not getting through on {channel}",
        fields={
            "channel": channel,
            "waiting": str(waiting),
            "oldest": local_time(tz, oldest),
            "error": error[:500],
            "time": local_time(tz, at),
        },
        fold_key=f"{OUTBOX_STUCK}|{channel}",
        at=at,
        timezone=timezone,
    )
