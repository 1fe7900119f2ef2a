"""What is worth telling someone about, who is told, and what they are told (pure functions).

An `Event` is built already cut down for its audience (UK GDPR data minimisation): a
safeguarding event carries what the DSL needs to act (the user, the search term, the site);
a technical event, for the IT provider, never names a pupil: it has the profile, the block's
reference (which the school looks up in its access log) and keyed pseudonyms of the user and
device, stable so repeats can be seen, linkable to a person only with the school's key. An
illegal-tier event carries no address at all, only "illegal-tier list entry", the list and
the block's reference, so nobody is sent a link to illegal material.

The alerting add-on turns decisions into events here, `routes` picks the channels, the outbox
stores and folds them, and `notification_for` renders one for sending.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from proxy_addons.alerts.notify import Notification
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
# Device inventory events (technical; built in device_watch.py).
DEVICE_NONCOMPLIANT = "device_noncompliant"
DEVICE_STALE = "device_stale"
DEVICE_UNKNOWN = "device_unknown"  # a MAC on the network no enrolled device reported

# Category names that mean "a way round the filter"; a domain-fronting block counts too.
CIRCUMVENTION_CATEGORIES = frozenset({"circumvention"})

# Which channels carry which audience. Syslog feeds a SIEM run by technical staff, so it never
# gets safeguarding alerts; chat channels are assumed to be the safeguarding team's.
SAFEGUARDING_CHANNELS: tuple[str, ...] = ("email", "webhook", "teams", "slack")
TECHNICAL_CHANNELS: tuple[str, ...] = ("email", "webhook", "syslog")

# Blocks that say something about what a person tried to do (not a broken URL or an outage).
_MEANINGFUL_BLOCKS = frozenset(
    {"illegal", "rule", "default", "bare_ip", "fronting", "circumvention", "safe_search"}
)

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
    "mac": "MAC address",
    "ip": "IP address",
    "vendor": "Vendor hint",
    "first_seen": "First seen",
    "lost": "Records lost",  # state_health.py
    "action": "What to do",
}


class Audience(enum.StrEnum):
    SAFEGUARDING = "safeguarding"  # the DSL and deputies
    TECHNICAL = "technical"  # the IT provider


class Hit(Protocol):
    """A risk-phrase match (`proxy_addons.core.content.phrases.PhraseHit` has this shape)."""

    @property
    def category(self) -> str: ...
    @property
    def severity(self) -> int: ...
    @property
    def phrase(self) -> str: ...
    @property
    def matched(self) -> str: ...


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


@dataclass(frozen=True)
class Route:
    channel: str
    recipients: tuple[str, ...] = ()  # email addresses, for the email channel


# -- building events -------------------------------------------------------------------------


def local_time(policy_tz: ZoneInfo, at: datetime) -> str:
    """How every alert writes a time: in the school's time zone, with its name."""
    return at.astimezone(policy_tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def _who(record: Mapping[str, Any]) -> str:
    return str(record.get("user") or record.get("ip") or "unknown")


def _person(record: Mapping[str, Any]) -> dict[str, str]:
    """For the DSL: who it was, on which device, in which profile."""
    out = {"user": str(record.get("user") or "not signed in")}
    if record.get("ip"):
        out["device"] = str(record["ip"])
    out["profile"] = str(record.get("profile") or "unknown")
    return out


def _pseudonymous(record: Mapping[str, Any], pseudonym: Pseudonymiser) -> dict[str, str]:
    """For the IT provider: the profile and references, never a name or an address."""
    out = {"profile": str(record.get("profile") or "unknown")}
    if record.get("user"):
        out["user_ref"] = pseudonym("u", str(record["user"]).lower())
    if record.get("ip"):
        out["device_ref"] = pseudonym("d", str(record["ip"]))
    return out


def _humane(name: str) -> str:
    return name.replace("_", " ")


def _category(record: Mapping[str, Any]) -> str:
    return str(record.get("category_label") or record.get("category") or "")


def phrase_event(
    record: Mapping[str, Any],
    policy: Policy,
    hits: Sequence[Hit],
    *,
    search_term: str | None = None,
    page: str | None = None,
    at: datetime | None = None,
) -> Event | None:
    """Risk phrases in a search (`search_term`) or on a page (`page`, no query string)."""
    if not hits:
        return None
    at = at or datetime.now(UTC)
    top = max(hits, key=lambda h: h.severity)
    ranked = sorted(hits, key=lambda h: -h.severity)
    categories = list(dict.fromkeys(_humane(h.category) for h in ranked))
    fields = _person(record)
    if search_term is not None:
        fields["search"] = search_term
    fields["site"] = str(record.get("host") or "")
    if page is not None:
        fields["page"] = page
    fields["category"] = ", ".join(categories)
    fields["phrase"] = top.phrase
    if top.matched and top.matched.lower() != top.phrase.lower():
        fields["matched"] = top.matched
    if record.get("reference"):
        fields["reference"] = str(record["reference"])
    fields["time"] = local_time(policy.timezone, at)
    where = "search" if search_term is not None else "page"
    severity = max(1, min(5, int(top.severity)))
    return Event(
        kind=RISK_PHRASE,
        severity=severity,
        audience=Audience.SAFEGUARDING,
        summary=f"Risk phrase in a {where}: {_humane(top.category)} (severity {severity})",
        fields=fields,
        fold_key=f"{RISK_PHRASE}|{_who(record)}|{top.category}|{where}",
        at=at,
        timezone=policy.timezone.key,
    )


def events_for_decision(
    record: Mapping[str, Any],
    policy: Policy,
    search_term: str | None,
    phrase_hits: Sequence[Hit],
    *,
    pseudonym: Pseudonymiser,
    navigation: bool = True,
    at: datetime | None = None,
) -> list[Event]:
    """The events one final decision raises (a block that was shown, or an allowed request).

    `record` is the Filter's decision record; `phrase_hits` are the risk phrases found in
    `search_term`. `navigation` is False for a page's own images, scripts and frames' fetches
    (a news page's gambling advert is not the pupil's doing): they raise no high-risk alert,
    though an illegal-tier one still does. Repeated attempts are counted by `RepeatTracker`.
    """
    reason = record.get("reason")
    if reason == "portal":
        return []
    at = at or datetime.now(UTC)
    tz = policy.timezone
    blocked = record.get("action") == "block"
    reference = str(record.get("reference") or "")
    if blocked and reason == "illegal":
        # No URL, host, search term or phrase: the alert must not point at the material.
        fields = _person(record)
        fields["site"] = "illegal-tier list entry"
        fields["list"] = Path(str(record.get("list_source") or "")).name or "illegal tier"
        fields["reference"] = reference
        fields["time"] = local_time(tz, at)
        return [
            Event(
                kind=ILLEGAL_TIER,
                severity=5,
                audience=Audience.SAFEGUARDING,
                summary="Illegal-tier list entry blocked",
                fields=fields,
                fold_key=f"{ILLEGAL_TIER}|{_who(record)}|{record.get('entry')}",
                at=at,
                timezone=tz.key,
            )
        ]
    events: list[Event] = []
    phrases = phrase_event(record, policy, phrase_hits, search_term=search_term, at=at)
    if phrases is not None:
        events.append(phrases)
    category = str(record.get("category") or "")
    risky = category and category in policy.monitoring.high_risk_categories
    if blocked and navigation and risky:
        fields = _person(record)
        fields["site"] = str(record.get("host") or "")
        if search_term:
            fields["search"] = search_term
        fields["category"] = _category(record)
        fields["reference"] = reference
        fields["time"] = local_time(tz, at)
        events.append(
            Event(
                kind=HIGH_RISK_BLOCK,
                severity=3,
                audience=Audience.SAFEGUARDING,
                summary=f"High-risk site blocked: {_category(record)}",
                fields=fields,
                fold_key=f"{HIGH_RISK_BLOCK}|{_who(record)}|{category}",
                at=at,
                timezone=tz.key,
            )
        )
    if blocked and (category in CIRCUMVENTION_CATEGORIES or reason == "fronting"):
        how = "domain fronting" if reason == "fronting" else _category(record)
        fields = _pseudonymous(record, pseudonym)
        fields["site"] = str(record.get("host") or "")
        fields["category"] = how
        fields["reference"] = reference
        fields["time"] = local_time(tz, at)
        device = fields.get("device_ref") or fields.get("user_ref") or "unknown"
        events.append(
            Event(
                kind=CIRCUMVENTION,
                severity=3,
                audience=Audience.TECHNICAL,
                summary=f"Circumvention attempt blocked: {how}",
                fields=fields,
                # Built-in checks name their kind (circumvention_addon.py): DoH, Tor, tunnel ...
                fold_key=f"{CIRCUMVENTION}|{device}|"
                f"{record.get('circumvention') or category or reason}",
                at=at,
                timezone=tz.key,
            )
        )
    return events


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


class RepeatTracker:
    """Counts one user's (or, unsigned, one device's) blocked attempts in a sliding window.

    A page load can fire a burst of blocked requests for one site (images, retries, CONNECT
    then request), so blocks of the same site within `debounce_seconds` count once. After an
    alert the count starts again. Used from one thread.
    """

    def __init__(self, debounce_seconds: float = 10.0, max_people: int = 50_000) -> None:
        self.debounce = debounce_seconds
        self.max_people = max_people
        self._attempts: dict[str, deque[tuple[float, str, str]]] = {}

    def observe(
        self,
        record: Mapping[str, Any],
        policy: Policy,
        at: datetime | None = None,
        *,
        navigation: bool = True,
    ) -> Event | None:
        """Count a decision; returns the alert when it completes a run of attempts.

        Only what the person asked for counts (`navigation`), not what a page fetched.
        """
        if not navigation:
            return None
        if record.get("action") != "block" or record.get("reason") not in _MEANINGFUL_BLOCKS:
            return None
        who = record.get("user") or record.get("ip")
        if not who:
            return None
        at = at or datetime.now(UTC)
        now = at.timestamp()
        monitoring = policy.monitoring
        window = monitoring.repeat_minutes * 60
        illegal = record.get("reason") == "illegal"
        site = "illegal-tier list entry" if illegal else str(record.get("host") or "")
        category = "illegal tier" if illegal else _category(record)
        attempts = self._attempts.get(str(who))
        if attempts is None:
            if len(self._attempts) >= self.max_people:
                self._forget_idle(now - window)
            attempts = self._attempts[str(who)] = deque()
        while attempts and attempts[0][0] <= now - window:
            attempts.popleft()
        for t, seen, _ in reversed(attempts):
            if now - t >= self.debounce:
                break
            if seen == site:
                return None  # the same attempt, still loading
        attempts.append((now, site, category))
        if len(attempts) < monitoring.repeat_count:
            return None
        sites = list(dict.fromkeys(s for _, s, _ in attempts))
        categories = list(dict.fromkeys(c for _, _, c in attempts if c))
        attempts.clear()
        fields = _person(record)
        fields["attempts"] = (
            f"{monitoring.repeat_count} blocked in {monitoring.repeat_minutes} minutes"
        )
        fields["sites"] = ", ".join(sites[:5]) + (" …" if len(sites) > 5 else "")
        if categories:
            fields["categories"] = ", ".join(categories)
        fields["time"] = local_time(policy.timezone, at)
        return Event(
            kind=REPEATED_BLOCKS,
            severity=3,
            audience=Audience.SAFEGUARDING,
            summary=f"Repeated blocked attempts ({monitoring.repeat_count} in "
            f"{monitoring.repeat_minutes} min)",
            fields=fields,
            fold_key=f"{REPEATED_BLOCKS}|{who}",
            at=at,
            timezone=policy.timezone.key,
        )

    def _forget_idle(self, before: float) -> None:
        for who in [w for w, q in self._attempts.items() if not q or q[-1][0] <= before]:
            del self._attempts[who]
        if len(self._attempts) >= self.max_people:  # all active: drop the oldest half
            for who in list(self._attempts)[: self.max_people // 2]:
                del self._attempts[who]


# -- routing and rendering -------------------------------------------------------------------


def routes(event: Event, policy: Policy, configured: Collection[str]) -> list[Route]:
    """The channels `event` goes to: the audience's people by email, and the shared channels."""
    monitoring, contacts = policy.monitoring, policy.notifications.contacts
    if event.audience is Audience.SAFEGUARDING:
        people, channels = monitoring.safeguarding, SAFEGUARDING_CHANNELS
    else:
        people, channels = monitoring.technical, TECHNICAL_CHANNELS
    out: list[Route] = []
    for channel in channels:
        if channel not in configured:
            continue
        if channel == "email":
            emails = tuple(sorted({contacts[p] for p in people if p in contacts}))
            if emails:
                out.append(Route("email", emails))
        else:
            out.append(Route(channel))
    return out


def notification_for(
    event: Event,
    *,
    occurrences: int = 1,
    first_at: datetime | None = None,
    last_at: datetime | None = None,
    recipients: Sequence[str] = (),
) -> Notification:
    """The message for one (possibly folded) alert; the same words on every channel."""
    tz = ZoneInfo(event.timezone)
    first_at, last_at = first_at or event.at, last_at or event.at
    who = "Safeguarding" if event.audience is Audience.SAFEGUARDING else "Technical"
    subject = f"Schoolgate {who.lower()} alert: {event.summary}"
    if occurrences > 1:
        subject += f" (x{occurrences})"
    facts = [(LABELS.get(k, k), v) for k, v in event.fields.items() if v]
    if occurrences > 1:
        span = f"{local_time(tz, first_at)} to {local_time(tz, last_at)}"
        facts.append(("Occurrences", f"{occurrences}, {span}"))
    lines = [event.summary, ""] + [f"{label}: {value}" for label, value in facts]
    if event.kind == ILLEGAL_TIER:
        lines += [
            "",
            "The address is deliberately left out. Do not try to visit it; look the "
            "reference up in the access log and follow the school's procedure "
            "(IWF/CTIRU reporting where it applies).",
        ]
    elif occurrences > 1:
        lines += ["", "Each occurrence is in the access log."]
    data: dict[str, Any] = {
        "alert": event.kind,
        "severity": event.severity,
        "audience": event.audience.value,
        "occurrences": occurrences,
        "first_at": first_at.astimezone(UTC).isoformat(timespec="seconds"),
        "last_at": last_at.astimezone(UTC).isoformat(timespec="seconds"),
        "fields": dict(event.fields),
        "facts": [list(f) for f in facts],
    }
    return Notification(
        kind=f"alert.{event.kind}",
        subject=subject,
        text="\n".join(lines) + "\n",
        recipients=tuple(recipients),
        data=data,
    )
