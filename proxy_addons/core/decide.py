"""`decide()`: who is asking and what for, in; allow or block and why, out.

A pure function of the policy, the list index, the identity, the request and the
time, so `policy explain` and the tests call exactly what the proxy calls.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Protocol

from proxy_addons.core.hosts import Host, host_suffixes
from proxy_addons.core.illegal_hashes import hashed_hit
from proxy_addons.core.lists.layout import Match
from proxy_addons.core.policy.model import Action, Decrypt, Policy, Profile, Rule
from proxy_addons.core.schedules import schedule_active
from proxy_addons.core.unblocks import Unblock
from proxy_addons.core.url_keys import illegal_key, key_host, match_key


class Reason(enum.Enum):
    ILLEGAL = "illegal"  # the illegal tier: nothing overrides it
    UNBLOCK = "unblock"  # a temporary educational unblock in force
    RULE = "rule"  # a profile rule matched
    BARE_IP = "bare_ip"  # a web address written as numbers
    DEFAULT = "default"  # no rule matched; the profile's default
    PORTAL = "portal"  # the gateway's own pages
    FRONTING = "fronting"  # TLS name and Host header name different sites
    INVALID = "invalid"  # a host no browser would accept
    UNAVAILABLE = "unavailable"  # no policy in force: fail closed
    CIRCUMVENTION = "circumvention"  # a way round the filter (core/circumvention.py)
    SAFE_SEARCH = "safe_search"  # a search engine that cannot be made safe (core/safe_search.py)


class IndexLookup(Protocol):
    def match_host(self, host: str) -> list[Match]: ...
    def match_url(self, host: str, path_and_query: str) -> list[Match]: ...
    def match_expressions(self, url: str) -> list[Match]: ...


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is asking, as far as the gateway knows."""

    user: str | None = None
    groups: tuple[str, ...] = ()
    ip: str | None = None
    check_profile: str | None = None  # a termly check run from the gateway (checks/identity.py)


@dataclass(frozen=True, slots=True)
class Request:
    host: Host
    path: str | None = None  # path and query; None when only the host name is known
    scheme: str = "https"

    @property
    def url(self) -> str | None:
        return None if self.path is None else f"{self.scheme}://{self.host.name}{self.path}"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: Reason
    profile: str
    identified_by: str  # user, group, network or default
    host: str
    url: str | None = None
    user: str | None = None
    ip: str | None = None
    rule: str | None = None
    category: str | None = None
    category_label: str | None = None
    list_source: str | None = None
    entry: str | None = None
    decrypt: bool = True
    must_decrypt: bool = False  # a path-level entry needs the URL to decide
    allowed_when: tuple[str, ...] = ()  # schedules under which an allow rule would apply
    unblock_id: str | None = None

    @property
    def blocked(self) -> bool:
        return self.action is Action.BLOCK

    def record(self) -> dict[str, Any]:
        """Plain data for `flow.metadata`, logs and alerts."""
        # Every field is immutable (str, bool, None, a tuple of str): a shallow copy is
        # `asdict`'s answer without its deep copies, which cost more than the decision.
        out = {name: getattr(self, name) for name in _DECISION_FIELDS}
        out["action"] = self.action.value
        out["reason"] = self.reason.value
        return out

    def explain(self) -> str:
        lines = [
            f"decision:  {self.action.value.upper()} ({self.reason.value})",
            f"profile:   {self.profile} (identified by {self.identified_by})",
            f"host:      {self.host}",
        ]
        optional = [
            ("url", self.url),
            ("rule", self.rule),
            ("category", f"{self.category} ({self.category_label})" if self.category else None),
            ("list", self.list_source),
            ("entry", self.entry),
            ("unblock", self.unblock_id),
        ]
        if self.blocked and self.allowed_when:
            optional.append(("allowed", "at other times: " + ", ".join(self.allowed_when)))
        lines += [f"{k + ':':<10} {v}" for k, v in optional if v]
        lines.append(f"{'decrypt:':<10} {'yes' if self.decrypt else 'no (host name only)'}")
        return "\n".join(lines)


_DECISION_FIELDS = tuple(f.name for f in fields(Decision))


def resolve_profile(policy: Policy, identity: Identity) -> tuple[Profile, str]:
    """User mapping, then directory group, then network, then the stated default."""
    ids = policy.identities
    if identity.check_profile in policy.profiles:
        return policy.profiles[identity.check_profile], "check"
    if identity.user:
        name = ids.users.get(identity.user.lower())
        if name:
            return policy.profiles[name], "user"
    if identity.groups:
        member = {g.lower() for g in identity.groups}
        for group, name in ids.groups:
            if group in member:
                return policy.profiles[name], "group"
    if identity.ip:
        name = _network_profile(policy, identity.ip)
        if name:
            return policy.profiles[name], "network"
    return policy.profiles[ids.default_profile], "default"


def _network_profile(policy: Policy, ip: str) -> str | None:
    """The profile of the most specific network holding `ip` (memoised per policy)."""
    cache = policy.memo.setdefault("network_profile", {})
    if ip in cache:
        return cache[ip]  # type: ignore[no-any-return]
    found = None
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        addr = None
    if addr is not None:
        if addr.version == 6 and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        for network, name in policy.identities.networks:
            if addr in network:
                found = name
                break
    if len(cache) > 65536:
        cache.clear()
    cache[ip] = found
    return found


def _active_schedules(policy: Policy, now: datetime) -> frozenset[str]:
    """Schedules in force this minute (their times are whole minutes), memoised."""
    minute = now.replace(second=0, microsecond=0)
    memo = policy.memo
    if memo.get("schedule_minute") != minute:
        active = frozenset(
            n for n, sch in policy.schedules.items() if schedule_active(policy, sch, minute)
        )
        memo["schedule_minute"], memo["schedule_active"] = minute, active
    return memo["schedule_active"]  # type: ignore[no-any-return]


def _covers(domains: frozenset[str], host: str) -> str | None:
    if not domains:
        return None
    if host in domains:
        return host
    rest = host
    while "." in rest:
        rest = rest.split(".", 1)[1]
        if rest in domains:
            return rest
    return None


def url_prefix_match(prefix: str, url: str) -> bool:
    """`a.com/x` covers a.com/x, a.com/x/... and a.com/x?..., but not a.com/xy.

    Both are match keys (core/url_keys.py: match_key), so `url` is read as lenient servers read it.
    """
    if not url.startswith(prefix):
        return False
    if len(url) == len(prefix) or prefix.endswith(("/", "?")):
        return True
    return url[len(prefix)] in "/?"


def _illegal_hit(policy: Policy, host: str, path: str) -> tuple[str, str] | None:
    """(entry, list file) of the illegal-tier entry covering host+path, if any.

    Compared by case-folded match keys: every spelling some server reads as the entry's
    path (slashes, dots, escapes, ';parameters', case) is covered.
    """
    key = illegal_key(host + path)
    tier = policy.illegal
    # An exact entry without a query also covers that URL with any query appended.
    for candidate in (key, key.partition("?")[0]):
        entry = tier.exact_keys.get(candidate)
        if entry is not None:
            return entry, tier.exact[entry]
    for prefix, entry, source, at_boundary in tier.prefix_keys:
        if key.startswith(prefix) and (not at_boundary or url_prefix_match(prefix, key)):
            return entry, source
    digest = hashed_hit(tier.hashed, key)  # a hashed feed's entry: named by its hash only
    if digest is not None:
        return f"sha256:{digest}", tier.hashed[digest]
    return None


def decide(
    policy: Policy,
    index: IndexLookup,
    identity: Identity,
    request: Request,
    now: datetime,
    unblocks: Sequence[Unblock] = (),
) -> Decision:
    profile, via = resolve_profile(policy, identity)
    host = request.host.name
    path = request.path

    def result(action: Action, reason: Reason, **fields: Any) -> Decision:
        return Decision(
            action,
            reason,
            profile.name,
            via,
            host,
            url=request.url,
            user=identity.user,
            ip=identity.ip,
            **fields,
        )

    if host == policy.portal_host:
        return result(Action.ALLOW, Reason.PORTAL)
    illegal_host = host in policy.illegal.hosts
    hashed = policy.illegal.hashed  # which hosts have hashed entries can't be known
    illegal = None
    if (illegal_host or hashed) and path is not None:
        illegal = _illegal_hit(policy, host, path)
    elif hashed and (digest := hashed_hit(hashed, illegal_key(host))) is not None:
        illegal = (f"sha256:{digest}", hashed[digest])  # the whole site is a hashed entry
    if illegal:
        return result(Action.BLOCK, Reason.ILLEGAL, entry=illegal[0], list_source=illegal[1])
    must_decrypt = illegal_host and path is None

    url_key = host + path if path is not None else None  # unblocks: as the browser wrote it
    rule_key = None  # URL rules: as lenient servers read it (core/url_keys.py)
    if path is not None and any(r.urls for r in profile.rules):
        rule_key = match_key(host + path)
    for unblock in unblocks:
        if (
            unblock.in_force(now)
            and unblock.covers(host, url_key)
            and unblock.applies_to(identity.user, profile.name, identity.ip)
        ):
            until = unblock.ends_at.isoformat(timespec="minutes")
            return result(
                Action.ALLOW,
                Reason.UNBLOCK,
                rule=f"unblock {unblock.id} (until {until})",
                entry=unblock.target,
                unblock_id=unblock.id,
                must_decrypt=must_decrypt,
            )

    matches = index.match_host(host)
    if path is not None:
        matches = matches + index.match_url(host, path)
        if request.url:
            matches = matches + index.match_expressions(request.url)
    by_category: dict[str, Match] = {}
    for m in matches:
        by_category.setdefault(m.category, m)
    suffixes = host_suffixes(host)
    decrypt = _decrypt(policy, suffixes, by_category) or illegal_host
    active = _active_schedules(policy, now) if any(r.when for r in profile.rules) else frozenset()

    allowed_when: tuple[str, ...] = ()
    for rule in profile.rules:
        if rule.when and active.isdisjoint(rule.when):
            if rule.action is Action.ALLOW and _rule_hit(
                rule, request, suffixes, rule_key, by_category
            ):
                allowed_when += tuple(w for w in rule.when if w not in allowed_when)
            continue
        hit = _rule_hit(rule, request, suffixes, rule_key, by_category)
        if hit is None:
            if path is None and rule.action is Action.BLOCK and rule.urls:
                # A URL rule for this host: only the decrypted request can be decided.
                must_decrypt = must_decrypt or any(key_host(u) == host for u in rule.urls)
            continue
        category, source, entry = hit
        return result(
            rule.action,
            Reason.RULE,
            rule=rule.label,
            category=category,
            category_label=policy.categories[category].label if category else None,
            list_source=source,
            entry=entry,
            decrypt=decrypt,
            must_decrypt=must_decrypt,
            allowed_when=allowed_when if rule.action is Action.BLOCK else (),
        )
    if request.host.is_ip:
        return result(
            profile.bare_ip, Reason.BARE_IP, entry=host, decrypt=decrypt, must_decrypt=must_decrypt
        )
    return result(profile.default, Reason.DEFAULT, decrypt=decrypt, must_decrypt=must_decrypt)


def _rule_hit(
    rule: Rule,
    request: Request,
    suffixes: list[str],
    rule_key: str | None,
    by_category: dict[str, Match],
) -> tuple[str | None, str | None, str | None] | None:
    """(category, list source, entry) when the rule covers the request, else None."""
    if rule.bare_ip and request.host.is_ip:
        return None, None, request.host.name
    if rule.domains:
        for domain in suffixes:
            if domain in rule.domains:
                return None, f"{rule.profile} rule {rule.index} domains", domain
    if rule_key is not None:
        for prefix in rule.urls:
            if url_prefix_match(prefix, rule_key):
                return None, f"{rule.profile} rule {rule.index} urls", prefix
    for category, m in by_category.items():
        if category in rule.categories:
            return category, m.source, m.entry
    return None


def _decrypt(policy: Policy, suffixes: list[str], by_category: dict[str, Match]) -> bool:
    rules = policy.decryption
    if rules.host_only_domains and not rules.host_only_domains.isdisjoint(suffixes):
        return False
    if rules.host_only_categories.intersection(by_category):
        return False
    return rules.default is Decrypt.DECRYPT
