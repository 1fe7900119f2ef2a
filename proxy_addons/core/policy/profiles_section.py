"""The policy's `profiles:` (rules, defaults, safe search, circumvention, content filter;
`extends` resolved) and `identities:` (which user, group or network gets which profile).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from typing import Any

from proxy_addons.core.circumvention import KINDS
from proxy_addons.core.hosts import HostError, canonical_url_entry
from proxy_addons.core.policy.checker import (
    RESERVED_CATEGORY,
    Checker,
    domain_names,
    empty_map,
    enum_setting,
    name_set,
)
from proxy_addons.core.policy.content_section import profile_content_filter
from proxy_addons.core.policy.model import (
    Action,
    Audience,
    Category,
    Identities,
    Profile,
    Rule,
    SafeSearch,
    Schedule,
)
from proxy_addons.core.policy.yaml_reader import LList, LMap, Where
from proxy_addons.core.url_keys import match_key

_RULE_KEYS = ("allow", "block", "when", "name")
_MATCH_KEYS = ("categories", "domains", "urls", "bare_ip")


def load_profiles(
    ck: Checker,
    raw: Any,
    where: Where,
    categories: dict[str, Category],
    schedules: dict[str, Schedule],
) -> dict[str, Profile]:
    if not isinstance(raw, LMap) or not raw:
        ck.fail(where, "the policy needs a 'profiles:' section with at least one profile")
        return {}
    keys = ["label", "audience", "extends", "default", "bare_ip", "may_request_unblock", "rules"]
    keys += ["safe_search", "allow_circumvention"]  # docs/policy.md, docs/circumvention.md
    keys += ["content_filter"]  # docs/content-filtering.md
    own: dict[str, tuple[LMap, tuple[Rule, ...]]] = {}
    for name, value in raw.items():
        pm = ck.mapping(value, raw.at(name), f"profile '{name}'", keys + ["illegal"])
        if pm is None:
            continue
        if "illegal" in pm:
            ck.fail(pm.at("illegal"), "the illegal tier cannot be changed or turned off")
        rules = _rules(ck, name, pm.get("rules"), pm.at("rules"), categories, schedules)
        own[name] = (pm, rules)
    out: dict[str, Profile] = {}

    def build(name: str, seen: tuple[str, ...]) -> Profile | None:
        if name in out:
            return out[name]
        pm, rules = own[name]
        parent_name = pm.get("extends")
        parent: Profile | None = None
        if parent_name is not None:
            if parent_name in seen:
                ck.fail(pm.at("extends"), f"profiles extend each other in a circle: {name}")
                return None
            if parent_name not in own:
                ck.fail(pm.at("extends"), f"'{name}' extends '{parent_name}', which is not defined")
                return None
            parent = build(parent_name, (*seen, name))
            if parent is None:
                return None
        audience = enum_setting(ck, Audience, pm, "audience", parent.audience if parent else None)
        default = enum_setting(
            ck, Action, pm, "default", parent.default if parent else Action.ALLOW
        )
        # Bare IPs: inherited within one audience, else blocked for learners only.
        if parent is not None and parent.audience is audience:
            bare_default = parent.bare_ip
        else:
            bare_default = Action.BLOCK if audience is Audience.LEARNER else Action.ALLOW
        bare_ip = enum_setting(ck, Action, pm, "bare_ip", bare_default)
        if audience is None:
            ck.fail(pm.where, f"profile '{name}' needs 'audience: learner, staff or guest'")
            audience = Audience.LEARNER
        may = pm.get("may_request_unblock", audience is Audience.STAFF)
        if not isinstance(may, bool):
            ck.fail(pm.at("may_request_unblock"), "may_request_unblock should be true or false")
            may = False
        profile = Profile(
            name=name,
            label=str(pm.get("label", name)),
            audience=audience,
            rules=rules + (parent.rules if parent else ()),
            default=default or Action.ALLOW,
            bare_ip=bare_ip or Action.BLOCK,
            may_request_unblock=may,
            extends=parent_name,
            where=pm.where,
            safe_search=_safe_search(ck, pm, audience, parent),
            allow_circumvention=_allow_circumvention(ck, pm, audience, parent),
            content_filter=profile_content_filter(ck, pm, parent, categories),
        )
        out[name] = profile
        return profile

    for name in own:
        build(name, ())
    return out


def _safe_search(ck: Checker, pm: LMap, audience: Audience, parent: Profile | None) -> SafeSearch:
    """Own setting, else the parent's within one audience, else strict (moderate for staff)."""
    if parent is not None and parent.audience is audience:
        default = parent.safe_search
    else:
        default = SafeSearch.MODERATE if audience is Audience.STAFF else SafeSearch.STRICT
    if "safe_search" not in pm:
        return default
    value = pm["safe_search"]
    if isinstance(value, bool):  # YAML reads a bare `off` as false (and `on` as true)
        return SafeSearch.STRICT if value else SafeSearch.OFF
    try:
        return SafeSearch(str(value).strip().lower())
    except ValueError:
        ck.fail(
            pm.at("safe_search"),
            f"safe_search should be strict, moderate or off, not '{pm['safe_search']}'",
        )
        return default


def _allow_circumvention(
    ck: Checker, pm: LMap, audience: Audience, parent: Profile | None
) -> frozenset[str]:
    """Ways round the filter a staff or guest profile may use; learners may use none."""
    inherited = parent.allow_circumvention if parent and parent.audience is audience else None
    if "allow_circumvention" not in pm:
        return frozenset() if audience is Audience.LEARNER else inherited or frozenset()
    at = pm.at("allow_circumvention")
    kinds = name_set(ck, pm["allow_circumvention"], at, "allow_circumvention")
    for kind in sorted(kinds - KINDS):
        ck.fail(at, f"'{kind}' is not a kind of circumvention; use {', '.join(sorted(KINDS))}")
    if kinds and audience is Audience.LEARNER:
        ck.fail(at, "learner profiles always block ways round the filter: remove this setting")
        return frozenset()
    return kinds & KINDS


def _rules(
    ck: Checker,
    profile: str,
    raw: Any,
    where: Where,
    categories: dict[str, Category],
    schedules: dict[str, Schedule],
) -> tuple[Rule, ...]:
    out: list[Rule] = []
    items = ck.listing(raw, where, f"the rules of '{profile}'")
    for i, item in enumerate(items or []):
        at = items.at(i) if items is not None else where
        rm = ck.mapping(item, at, "a rule", _RULE_KEYS)
        if rm is None:
            continue
        actions = [k for k in ("allow", "block") if k in rm]
        if len(actions) != 1:
            ck.fail(at, "a rule says either 'allow:' or 'block:' (exactly one) and what it covers")
            continue
        action = Action(actions[0])
        spec = rm[actions[0]]
        spec_map: LMap | None
        if isinstance(spec, (LList, str)):
            spec_map = empty_map(rm.at(actions[0]))
            spec_map["categories"] = spec
        else:
            spec_map = ck.mapping(spec, rm.at(actions[0]), "what a rule covers", _MATCH_KEYS)
        if spec_map is None:
            continue
        spec_at = spec_map.where
        cats = frozenset(
            str(c) for c in ck.listing(spec_map.get("categories"), spec_at, "categories") or []
        )
        for cat in sorted(cats):
            if cat.lower() == RESERVED_CATEGORY:
                ck.fail(spec_at, "rules cannot name the illegal tier: it is always blocked")
            elif cat not in ck.declared_categories:
                hint = difflib.get_close_matches(cat, list(categories), n=1)
                tip = f" Did you mean '{hint[0]}'?" if hint else ""
                ck.fail(spec_at, f"category '{cat}' is not defined under 'categories:'{tip}")
        domains = domain_names(ck, spec_map.get("domains"), spec_map.at("domains"))
        urls = _urls(ck, spec_map.get("urls"), spec_map.at("urls"))
        bare_ip = spec_map.get("bare_ip", False)
        if not isinstance(bare_ip, bool):
            ck.fail(spec_map.at("bare_ip"), "bare_ip should be true or false")
            bare_ip = False
        if not (cats or domains or urls or bare_ip):
            ck.fail(at, "this rule covers nothing: give categories, domains, urls or bare_ip")
        when = tuple(str(w) for w in ck.listing(rm.get("when"), rm.at("when"), "when") or [])
        for w in when:
            if w not in schedules:
                ck.fail(rm.at("when"), f"schedule '{w}' is not defined under 'schedules:'")
        name = str(rm["name"]) if "name" in rm else None
        out.append(Rule(action, profile, i + 1, at, name, cats, domains, urls, bare_ip, when))
    return tuple(out)


def _urls(ck: Checker, raw: Any, where: Where) -> tuple[str, ...]:
    """A rule's URL entries as match keys, the form requests are compared in."""
    out: list[str] = []
    items = ck.listing(raw, where, "urls")
    for i, item in enumerate(items or []):
        try:
            out.append(match_key(canonical_url_entry(str(item))))
        except HostError:
            at = items.at(i) if items is not None else where
            ck.fail(at, f"'{item}' is not a web address")
    return tuple(out)


def load_identities(
    ck: Checker, raw: Any, where: Where, profiles: dict[str, Profile]
) -> Identities:
    keys = ["default_profile", "users", "groups", "networks"]
    m = ck.mapping(raw, where, "identities", keys)
    m = m if m is not None else empty_map(where)

    def profile_of(value: Any, at: Where) -> str | None:
        if str(value) in profiles:
            return str(value)
        if profiles:
            ck.fail(at, f"'{value}' is not a profile defined under 'profiles:'")
        return None

    def pairs(key: str) -> list[tuple[str, str, Where]]:
        section = (
            ck.mapping(m.get(key), m.at(key), key, [])
            if not isinstance(m.get(key), LMap)
            else m[key]
        )
        out = []
        for k, v in (section or {}).items():
            at = section.at(k) if section is not None else where
            p = profile_of(v, at)
            if p:
                out.append((str(k), p, at))
        return out

    users = {u.lower(): p for u, p, _ in pairs("users")}
    # Directory DNs are compared without the spaces people put after commas.
    groups = tuple((re.sub(r",\s+", ",", g.strip().lower()), p) for g, p, _ in pairs("groups"))
    networks = []
    for cidr, p, at in pairs("networks"):
        try:
            networks.append((ipaddress.ip_network(cidr, strict=False), p))
        except ValueError:
            ck.fail(at, f"'{cidr}' is not a network; write it like 10.10.0.0/16")
    # Most specific network first, so a /24 inside a /16 wins.
    networks.sort(key=lambda n: -n[0].prefixlen)
    if "default_profile" in m:
        default = profile_of(m["default_profile"], m.at("default_profile")) or ""
    else:
        default = _strictest_learner(profiles)
    if not default and profiles:
        ck.fail(where, "say which profile unidentified devices get: identities.default_profile")
    return Identities(users, groups, tuple(networks), default)


def _strictest_learner(profiles: dict[str, Profile]) -> str:
    """The learner profile that blocks the most: default block first, then most categories."""
    learners = [p for p in profiles.values() if p.audience is Audience.LEARNER]

    def strictness(p: Profile) -> tuple[int, int, int]:
        blocked = {
            c for r in p.rules if r.action is Action.BLOCK and not r.when for c in r.categories
        }
        return (p.default is Action.BLOCK, len(blocked), len(p.rules))

    return max(learners, key=strictness).name if learners else ""
