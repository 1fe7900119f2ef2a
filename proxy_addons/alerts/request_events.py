"""The alerts one request raises: risk phrases in a search or on a page, an illegal-tier or
high-risk block, a blocked way round the filter, and a run of blocked attempts
(`RepeatTracker`). Pure functions over the recorder's decision record and the policy.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from proxy_addons.alerts.events import (
    CIRCUMVENTION,
    HIGH_RISK_BLOCK,
    ILLEGAL_TIER,
    REPEATED_BLOCKS,
    RISK_PHRASE,
    Audience,
    Event,
    Pseudonymiser,
    local_time,
)
from proxy_addons.core.policy.model import Policy

# Category names that mean "a way round the filter"; a domain-fronting block counts too.
CIRCUMVENTION_CATEGORIES = frozenset({"circumvention"})

# Blocks that say something about what a person tried to do (not a broken URL or an outage).
_MEANINGFUL_BLOCKS = frozenset(
    {"illegal", "rule", "default", "bare_ip", "fronting", "circumvention", "safe_search"}
)


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


def _who(record: Mapping[str, Any]) -> str:
    return str(record.get("user") or record.get("ip") or "unknown")


def person_fields(record: Mapping[str, Any]) -> dict[str, str]:
    """For the DSL: who it was, on which device, in which profile. An enrolled device (its
    agent's report, or its tunnel's key) is named, with its id and address."""
    out = {"user": str(record.get("user") or "not signed in")}
    if record.get("device_name"):
        out["device"] = str(record["device_name"])
        out["device_id"] = str(record.get("device_id") or "")
        if record.get("ip"):
            out["ip"] = str(record["ip"])
    elif record.get("ip"):
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
    fields = person_fields(record)
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
        fields = person_fields(record)
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
        fields = person_fields(record)
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
                # Built-in checks name their kind (core/circumvention.py): DoH, Tor, tunnel ...
                fold_key=f"{CIRCUMVENTION}|{device}|"
                f"{record.get('circumvention') or category or reason}",
                at=at,
                timezone=tz.key,
            )
        )
    return events


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
        fields = person_fields(record)
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
